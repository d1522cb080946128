"""Trainer: parameter groups, ReferFormer initialisation, epochs + schedule, checkpoints, resume, AMP (spec §8)."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from actionvos.errors import CheckpointError, ConfigError
from actionvos.model.builder import build_model
from actionvos.model.checkpoint import read_checkpoint, save_checkpoint
from actionvos.model.config import get_preset
from actionvos.training.optim import build_optimizer, build_scheduler, param_groups
from actionvos.training.trainer import TrainConfig, load_init_weights, train
from synthetic_data import make_dataset, train_tiny_tokenizer


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return build_model("demo_small")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def _cfg(data, out, tok, **kw):
    base = dict(data=str(data), output=str(out), preset="demo_small", tokenizer=str(tok), num_frames=2,
                max_size=64, epochs=1, threads=1, progress=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_param_groups_follow_spec8(small_model):
    groups = param_groups(small_model, lr=1e-4, lr_backbone=5e-5)
    by_name = {g["name"]: g for g in groups}
    assert [g["name"] for g in groups] == ["default", "backbone", "text_encoder", "linear_proj"]
    assert by_name["text_encoder"]["params"] == []  # frozen text encoder
    assert by_name["backbone"]["lr"] == 5e-5 and by_name["linear_proj"]["lr"] == 1e-4
    names = {id(p): n for n, p in small_model.named_parameters()}
    assert all("backbone.0" in names[id(p)] for p in by_name["backbone"]["params"])
    assert all(("reference_points" in names[id(p)] or "sampling_offsets" in names[id(p)])
               for p in by_name["linear_proj"]["params"])
    assert len(by_name["linear_proj"]["params"]) == 8  # 3 MSDA sampling_offsets (w, b) + reference_points (w, b)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))  # aliased bbox_embed once
    assert set(ids) == {id(p) for p in small_model.parameters() if p.requires_grad}
    opt = build_optimizer(small_model)
    sched = build_scheduler(opt, (1, 2))
    assert opt.defaults["weight_decay"] == 5e-4
    for _ in range(2):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-6)


def test_init_from_referformer_drops_class_embed(tmp_path, small_model, caplog):
    torch.manual_seed(1)
    src = build_model("demo_small")
    state = {k: v for k, v in src.state_dict().items() if not k.startswith("positive_cls_embed.")}
    state["text_encoder.embeddings.position_ids"] = torch.arange(514)[None]  # legacy buffer
    torch.save({"model": state}, tmp_path / "rf.pth")
    torch.manual_seed(2)
    dst = build_model("demo_small")
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="actionvos.training.trainer"):
        rep = load_init_weights(dst, tmp_path / "rf.pth")
    assert "positive_cls_embed.* (" in caplog.text and "class_embed.* (" in caplog.text
    assert {k.split(".")[0] for k in rep.missing} == {"class_embed", "positive_cls_embed"}
    assert all(k.startswith("class_embed.") for k in rep.dropped if k != "text_encoder.embeddings.position_ids")
    after = dst.state_dict()
    assert torch.equal(after["transformer.level_embed"], src.state_dict()["transformer.level_embed"])
    assert torch.equal(after["class_embed.0.weight"], before["class_embed.0.weight"])  # kept fresh
    assert torch.equal(after["positive_cls_embed.1.bias"], before["positive_cls_embed.1.bias"])

    save_checkpoint(tmp_path / "tiny.pth", build_model("reference_tiny"), get_preset("reference_tiny"))
    with pytest.raises(CheckpointError, match="another shape"):
        load_init_weights(dst, tmp_path / "tiny.pth")


def test_config_errors(data, tok, tmp_path):
    with pytest.raises(ConfigError, match="--tokenizer"):
        _cfg(data, tmp_path, tok, tokenizer=None).validate()
    with pytest.raises(ConfigError, match="--teacher and --dense-frames"):
        _cfg(data, tmp_path, tok, teacher="x.pth").validate()
    with pytest.raises(ConfigError, match="lr-drop"):
        _cfg(data, tmp_path, tok, lr_drop=(5, 3)).validate()
    with pytest.raises(ConfigError, match="lo < hi"):
        _cfg(data, tmp_path, tok, pseudo_hi=0.2, pseudo_lo=0.3).validate()
    with pytest.raises(ConfigError, match="cannot fill one batch"):
        train(_cfg(data, tmp_path / "o", tok, batch_size=100))


def test_epochs_schedule_checkpoints_and_resume(data, tok, tmp_path):
    out = tmp_path / "run"
    res = train(_cfg(data, out, tok, epochs=2, lr_drop=(1,), save_interval=2))
    assert res.epochs_completed == 2 and res.steps == 8  # 2 videos x 2 expressions x 1 start, batch 1
    assert res.last_loss is not None and all(k in res.last_losses for k in ("loss_ce", "loss_positive_labels"))
    state, meta = read_checkpoint(out / "checkpoint.pth")
    assert {"optimizer", "lr_scheduler", "epoch", "args", "card", "tokenizer"} <= set(meta)
    assert meta["epoch"] == 1 and meta["epoch_complete"] and meta["global_step"] == 8
    assert meta["args"]["lr_drop"] == [1] and meta["card"]["config"]["name"] == "demo_small"
    assert (out / "checkpoint0001.pth").is_file()
    assert meta["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-5)  # one milestone: x0.1 after epoch 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if x["kind"] == "step"]
    epochs = [x for x in lines if x["kind"] == "epoch"]
    assert len(steps) == 8 and len(epochs) == 2
    assert steps[0]["lr"] == pytest.approx(1e-4) and steps[-1]["lr"] == pytest.approx(1e-5)
    assert all(set(("loss", "loss_mask", "loss_dice_0", "grad_norm")) <= set(s) for s in steps)

    res2 = train(_cfg(data, out, tok, epochs=3, lr_drop=(1,), resume=str(out / "checkpoint.pth"), max_steps=10))
    assert res2.steps == 10 and res2.epochs_completed == 2  # stopped mid-epoch 2
    _, meta2 = read_checkpoint(out / "checkpoint.pth")
    assert meta2["epoch"] == 2 and not meta2["epoch_complete"] and meta2["global_step"] == 10
    assert meta2["optimizer"]["state"]  # AdamW moments came back and kept going
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert sum(json.loads(x)["kind"] == "step" for x in lines) == 10


def test_amp_bf16_cpu_step(data, tok, tmp_path):
    res = train(_cfg(data, tmp_path / "amp", tok, amp=True, max_steps=1))
    assert res.steps == 1 and res.last_loss is not None and res.last_loss == res.last_loss  # finite
    assert all(p.dtype == torch.float32 for p in res.model.parameters())
