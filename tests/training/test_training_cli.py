"""``prepare-visor`` / ``train`` / ``evaluate`` / ``extract-dense-frames`` commands (registered on a private app)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from actionvos.errors import ConfigError, InputError
from actionvos.training.cli import METRIC_KEYS, parse_milestones, register
from actionvos.training.metrics import evaluate_folder
from synthetic_data import make_dataset, train_tiny_tokenizer


@pytest.fixture(scope="module")
def app():
    a = typer.Typer()

    @a.callback()
    def _cb():  # keep subcommands as subcommands
        pass

    register(a)
    return a


def test_help_lists_commands(app):
    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0
    for name in ("prepare-visor", "train", "evaluate", "extract-dense-frames"):
        assert name in res.output


def test_parse_milestones():
    assert parse_milestones(["3", "5"]) == (3, 5) == parse_milestones(["3,5"])
    with pytest.raises(ConfigError):
        parse_milestones(["three"])


def test_evaluate_writes_json_matching_library(app, tmp_path):
    data = make_dataset(tmp_path / "d", split="val", size=32)
    gt = data / "Annotations_Sparse" / "val"
    pred = tmp_path / "pred"
    for png in gt.rglob("*.png"):  # predict colour 1 correctly, never colour 2
        lab = np.array(Image.open(png))
        dst = pred / png.parent.name / png.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.where(lab == 1, 1, 0).astype(np.uint8), mode="P").save(dst)
    out = tmp_path / "m.json"
    res = CliRunner().invoke(app, ["evaluate", "--pred", str(pred), "--gt", str(gt),
                                   "--split-json", str(data / "ImageSets" / "val.json"), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "p_mIoU" in res.output and "Acc" in res.output
    got = json.loads(out.read_text())
    assert list(got)[:6] == list(METRIC_KEYS)
    ref = evaluate_folder(pred, gt, data / "ImageSets" / "val.json")
    for k in METRIC_KEYS:
        assert (got[k] is None and math.isnan(ref[k])) or got[k] == pytest.approx(ref[k])
    assert got["p_mIoU"] == pytest.approx(100.0) and got["Acc"] == pytest.approx(100.0)


def test_evaluate_missing_pred_is_input_error(app, tmp_path):
    res = CliRunner().invoke(app, ["evaluate", "--pred", str(tmp_path / "nope"), "--gt", str(tmp_path),
                                   "--split-json", str(tmp_path / "x.json")])
    assert isinstance(res.exception, InputError)


def test_train_command_one_step(app, tmp_path):
    data = make_dataset(tmp_path / "d", size=32)
    tok = train_tiny_tokenizer(tmp_path / "tok")
    out = tmp_path / "out"
    args = ["train", "--data", str(data), "--output", str(out), "--preset", "demo_small", "--tokenizer", str(tok),
            "--num-frames", "1", "--max-size", "64", "--max-steps", "1", "--lr-drop", "3,5", "--threads", "1",
            "--device", "cpu", "--no-progress"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "trained 1 steps" in res.output and (out / "checkpoint.pth").is_file()
    res = CliRunner().invoke(app, args + ["--epochs", "0"])
    assert isinstance(res.exception, ConfigError) and "--epochs" in str(res.exception)


def test_demo_package_loads():
    from actionvos.artifacts import read_checkpoint_artifact
    from actionvos.demo import DEMO_CHECKPOINT, DEMO_NOTE, DEMO_TOKENIZER
    from actionvos.tokenizer import Tokenizer

    assert DEMO_CHECKPOINT.stat().st_size < 20e6
    art = read_checkpoint_artifact(DEMO_CHECKPOINT)
    cfg = art.card.config
    assert cfg.name == "demo_small" and art.card.weights_note == DEMO_NOTE and art.meta["training"]["steps"] > 0
    assert all(p.dtype == torch.float32 for p in art.model.parameters())
    assert art.tokenizer.sha256 == Tokenizer.from_dir(DEMO_TOKENIZER).sha256 == art.card.tokenizer_sha256
    ids, _ = art.tokenizer.encode_for(["right hand used in the action of move box"], art.card)
    assert ids[0, 0] == 0 and ids[0, -1] == 2 and int(ids.max()) < cfg.text.vocab_size
