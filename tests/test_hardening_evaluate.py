"""Issue 11 item 9: ``actionvos evaluate`` refuses inputs that would only give a table of NaN or of empty
predictions (exit 2, one line), and ``--json`` on a folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hardening_helpers import assert_one_error, cli  # noqa: E402
from helpers import shared_dir  # noqa: E402

from actionvos.errors import InputError
from actionvos.training.metrics import evaluate_folder

MINI = shared_dir() / "data" / "minivisor"
needs_mini = pytest.mark.skipif(not (MINI / "ImageSets" / "val.json").is_file(), reason=f"minivisor not found under {shared_dir()}")


def _seq(**kw) -> dict:
    return {"seq_id": 1, "video": "v", "verb": "take", "noun": "cup", "sparse_frames": ["f1.jpg"],
            "object_classes": {"1": {"positive": 1}}, **kw}


def _gt(tmp_path: Path) -> Path:
    from PIL import Image

    gt = tmp_path / "gt" / "00000001_v_take_cup"
    gt.mkdir(parents=True)
    Image.fromarray(np.array([[1, 0]], dtype=np.uint8), mode="L").save(gt / "f1.png")
    return tmp_path / "gt"


def test_empty_split(tmp_path):
    (tmp_path / "s.json").write_text("[]")
    with pytest.raises(InputError, match="lists no sequences"):
        evaluate_folder(tmp_path, _gt(tmp_path), tmp_path / "s.json")


def test_all_sequences_flagged(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps([_seq(redundant=True)]))
    with pytest.raises(InputError, match="flagged"):
        evaluate_folder(tmp_path, _gt(tmp_path), tmp_path / "s.json")


def test_no_pairs(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps([_seq(object_classes={})]))
    with pytest.raises(InputError, match="no \\(object, frame\\) pair"):
        evaluate_folder(tmp_path, _gt(tmp_path), tmp_path / "s.json")


def test_no_prediction_at_all(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps([_seq()]))
    (tmp_path / "pred").mkdir()
    with pytest.raises(InputError, match="no prediction PNG"):
        evaluate_folder(tmp_path / "pred", _gt(tmp_path), tmp_path / "s.json")


def test_some_predictions_missing_still_scores(tmp_path):
    """One prediction present, one missing: scored (missing = empty), with the warning; no error."""
    from PIL import Image

    gt = _gt(tmp_path)
    Image.fromarray(np.array([[0, 1]], dtype=np.uint8), mode="L").save(gt / "00000001_v_take_cup" / "f2.png")
    (tmp_path / "s.json").write_text(json.dumps([_seq(sparse_frames=["f1.jpg", "f2.jpg"])]))
    pred = tmp_path / "pred" / "00000001_v_take_cup"
    pred.mkdir(parents=True)
    Image.fromarray(np.array([[1, 0]], dtype=np.uint8), mode="L").save(pred / "f1.png")
    with pytest.warns(UserWarning, match="1 prediction PNG"):
        r = evaluate_folder(tmp_path / "pred", gt, tmp_path / "s.json")
    assert r["missing_predictions"] == 1 and r["num_pairs"] == 2


def test_traversing_sequence_name_is_refused(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps([_seq(sparse_frames=["../../x.jpg"])]))
    with pytest.raises(InputError, match="refused"):
        evaluate_folder(tmp_path, _gt(tmp_path), tmp_path / "s.json")


@needs_mini
def test_cli_empty_split(tmp_path):
    (tmp_path / "s.json").write_text("[]")
    res = cli("evaluate", "--pred", MINI / "Annotations_Sparse" / "val", "--gt", MINI / "Annotations_Sparse" / "val",
              "--split-json", tmp_path / "s.json")
    assert_one_error(res, "lists no sequences", code=2)
    assert "nan" not in res.stdout.lower()


@needs_mini
def test_cli_no_predictions(tmp_path):
    (tmp_path / "pred").mkdir()
    res = cli("evaluate", "--pred", tmp_path / "pred", "--gt", MINI / "Annotations_Sparse" / "val",
              "--split-json", MINI / "ImageSets" / "val.json", "--json", tmp_path / "m.json")
    assert_one_error(res, "no prediction PNG", "--pred", code=2)
    assert not (tmp_path / "m.json").exists()


@needs_mini
def test_cli_json_on_a_folder_fails_before_evaluating(tmp_path):
    (tmp_path / "m.json").mkdir()
    res = cli("evaluate", "--pred", MINI / "Annotations_Sparse" / "val", "--gt", MINI / "Annotations_Sparse" / "val",
              "--split-json", MINI / "ImageSets" / "val.json", "--json", tmp_path / "m.json")
    assert_one_error(res, "--json", "is a folder", code=2)
    assert "p_mIoU" not in res.stdout  # refused before the table
