"""Official key layout (spec 9), strict loading and preset inference."""

from __future__ import annotations

import logging

import pytest
import torch

from actionvos.errors import CheckpointError
from actionvos.model.builder import build_model
from actionvos.model.checkpoint import infer_config, load_model, load_state_dict_strict, read_checkpoint, save_checkpoint
from actionvos.model.config import ModelConfig, get_preset


def _tsv(path):
    rows = path.read_text().strip().splitlines()[1:]
    return [tuple(r.split("\t")) for r in rows]


@pytest.fixture(scope="module")
def r101():
    torch.manual_seed(0)
    return build_model("rf_r101_actionvos")


def test_r101_state_dict_equals_official_key_list(shared, r101):
    expected = _tsv(shared / "reference" / "referformer_r101_actionvos_state_dict.tsv")
    got = [(k, str(list(v.shape)).replace(" ", ""), str(v.dtype).replace("torch.", ""))
           for k, v in r101.state_dict().items()]
    norm = [(k, s.replace(" ", ""), d) for k, s, d in expected]
    assert len(got) == len(norm) == 1067
    assert sorted(got) == sorted(norm)


def test_r101_parameter_count(r101):
    unique = {id(p): p.numel() for p in r101.parameters()}
    assert sum(unique.values()) == 195_203_139
    assert sum(p.numel() for p in r101.parameters() if p.requires_grad) == 70_335_107


def test_bbox_embed_is_aliased(r101):
    assert r101.transformer.decoder.bbox_embed is r101.bbox_embed


def test_infer_preset_from_official_r101_keys(r101):
    assert infer_config(r101.state_dict()).name == "rf_r101_actionvos"


def test_infer_preset_from_tiny_checkpoint(shared):
    state, meta = read_checkpoint(shared / "reference" / "tiny" / "checkpoint.pth")
    assert meta == {}
    assert infer_config(state) == get_preset("reference_tiny")


def test_legacy_keys_are_dropped_with_log(tmp_path, caplog):
    model = build_model("reference_tiny")
    state = model.state_dict()
    state["text_encoder.embeddings.position_ids"] = torch.arange(514)[None]
    state["backbone.0.body.total_ops"] = torch.zeros(1)
    with caplog.at_level(logging.INFO):
        load_state_dict_strict(build_model("reference_tiny"), state)
    assert "dropped 2 legacy" in caplog.text


def test_mismatch_lists_counts_and_keys():
    state = build_model("reference_tiny").state_dict()
    state.pop("query_embed.weight")
    state["extra.weight"] = torch.zeros(1)
    state["controller.layers.2.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointError) as err:
        load_state_dict_strict(build_model("reference_tiny"), state)
    msg = str(err.value)
    assert "1 missing (first: query_embed.weight)" in msg
    assert "1 unexpected (first: extra.weight)" in msg
    assert "1 wrong shape (first: controller.layers.2.bias (7,)" in msg


def test_our_checkpoint_roundtrip_carries_config(tmp_path):
    cfg = get_preset("reference_tiny")
    model = build_model(cfg)
    save_checkpoint(tmp_path / "c.pth", model, cfg, {"random_weights": True})
    loaded, cfg2, meta = load_model(tmp_path / "c.pth")
    assert cfg2 == cfg and meta["random_weights"] is True
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_bare_state_dict_and_other_architecture(tmp_path):
    torch.save(build_model("reference_tiny").state_dict(), tmp_path / "bare.pth")
    _, cfg, _ = load_model(tmp_path / "bare.pth")
    assert cfg.name == "reference_tiny"
    torch.save({"model": torch.nn.Linear(3, 4).state_dict()}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not an ActionVOS/ReferFormer checkpoint"):
        load_model(tmp_path / "other.pth")


def test_not_plain_weights(tmp_path):
    torch.save({"model": {"a": torch.zeros(1)}, "obj": ModelConfig}, tmp_path / "pickle.pth")
    with pytest.raises(CheckpointError, match="not plain weights"):
        read_checkpoint(tmp_path / "pickle.pth")


def test_corrupt_file(tmp_path):
    (tmp_path / "bad.pth").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="cannot be read"):
        read_checkpoint(tmp_path / "bad.pth")


def test_referformer_without_positive_head_is_explained(tmp_path):
    state = {k: v for k, v in build_model("reference_tiny").state_dict().items()
             if not k.startswith("positive_cls_embed.")}
    torch.save({"model": state}, tmp_path / "rf.pth")
    with pytest.raises(CheckpointError, match="without the ActionVOS positive head"):
        load_model(tmp_path / "rf.pth")


def test_official_training_checkpoint_with_args_namespace(tmp_path):
    """Spec 8: training checkpoints hold model, optimizer, lr_scheduler, epoch and an argparse.Namespace."""
    import argparse

    model = build_model("reference_tiny")
    torch.save({"model": model.state_dict(), "optimizer": {}, "lr_scheduler": {}, "epoch": 5,
                "args": argparse.Namespace(backbone="resnet101", lr=1e-4)}, tmp_path / "train.pth")
    _, cfg, meta = load_model(tmp_path / "train.pth")
    assert cfg.name == "reference_tiny" and meta["epoch"] == 5 and meta["args"].lr == 1e-4


def test_partial_checkpoint_is_a_clear_error(tmp_path):
    state = build_model("reference_tiny").state_dict()
    state.pop("pixel_decoder.mask_features.weight")
    torch.save({"model": state}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="required keys missing"):
        load_model(tmp_path / "partial.pth")
