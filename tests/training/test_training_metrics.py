"""Spec §10 metrics: every branch of one (object, frame) pair, the accumulator and folder evaluation."""

import json

import numpy as np
import pytest
from PIL import Image

from actionvos.errors import InputError
from actionvos.training.visor_labels import davis_palette
from actionvos.training.metrics import MetricAccumulator, evaluate_folder, score_pair


def _m(*pixels, shape=(2, 3)):
    a = np.zeros(shape, bool)
    for y, x in pixels:
        a[y, x] = True
    return a


@pytest.mark.parametrize("positive", [True, False])
def test_union_zero_is_tn_and_not_in_miou(positive):
    r = score_pair(_m(), _m(), positive)
    assert (r.outcome, r.giou, r.in_miou) == ("TN", 1.0, False)


@pytest.mark.parametrize("positive", [True, False])
def test_empty_gt_with_prediction_is_fp(positive):
    r = score_pair(_m((0, 0)), _m(), positive)
    assert (r.outcome, r.giou, r.in_miou, r.intersection, r.union) == ("FP", 0.0, True, 0.0, 1.0)


def test_positive_overlap_tp_and_empty_prediction_fn():
    r = score_pair(_m((0, 0), (0, 1)), _m((0, 1), (1, 1), (1, 2)), True)  # I=1, U=4
    assert (r.outcome, r.giou) == ("TP", 0.25)
    r = score_pair(_m(), _m((1, 1)), True)
    assert (r.outcome, r.giou, r.in_miou) == ("FN", 0.0, True)


def test_negative_empty_prediction_tn_and_detection_fp():
    r = score_pair(_m(), _m((1, 1)), False)
    assert (r.outcome, r.giou, r.in_miou) == ("TN", 1.0, True)
    r = score_pair(_m((0, 0), (1, 1)), _m((1, 1)), False)  # I=1, U=2
    assert (r.outcome, r.giou, r.intersection, r.union) == ("FP", 0.0, 1.0, 2.0)


def test_accumulator_by_hand():
    acc = MetricAccumulator()
    acc.update(_m((0, 0), (0, 1)), _m((0, 1), (1, 1), (1, 2)), True)  # pos I1 U4 TP giou .25
    acc.update(_m(), _m((1, 1)), True)  # pos I0 U1 FN giou 0
    acc.update(_m(), _m(), True)  # TN giou 1, not in mIoU
    acc.update(_m((0, 0), (1, 1)), _m((1, 1)), False)  # neg I1 U2 FP giou 0
    acc.update(_m(), _m((0, 2)), False)  # neg I0 U1 TN giou 1
    r = acc.result()
    assert r["p_mIoU"] == pytest.approx(100 * (0.25 + 0) / 2)
    assert r["n_mIoU"] == pytest.approx(100 * (0.5 + 0) / 2)
    assert r["p_cIoU"] == pytest.approx(100 * 1 / 5)
    assert r["n_cIoU"] == pytest.approx(100 * 1 / 3)
    assert r["gIoU"] == pytest.approx(100 * (0.25 + 0 + 1 + 0 + 1) / 5)
    assert r["Acc"] == pytest.approx(100 * 3 / 5)  # TP 1 + TN 2 of 5
    assert (r["TP"], r["TN"], r["FP"], r["FN"]) == (1, 2, 1, 1)


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr.astype(np.uint8))
    im.putpalette(davis_palette())  # L -> P with the indices kept
    im.save(path)


def test_evaluate_folder(tmp_path):
    seqs = [
        {"seq_id": 1, "video": "v", "verb": "take", "noun": "cup", "sparse_frames": ["frame_0000000001.jpg", "frame_0000000002.jpg"],
         "object_classes": {"1": {"positive": 1}, "2": {"positive": 0}}, "redundant": False, "other": False, "missing": False},
        {"seq_id": 2, "video": "v", "verb": "x", "noun": "y", "sparse_frames": ["frame_0000000003.jpg"],
         "object_classes": {"1": {"positive": 1}}, "redundant": True, "other": False, "missing": False},
    ]
    split = tmp_path / "val.json"
    split.write_text(json.dumps(seqs))
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    g1 = np.array([[1, 1, 0, 2]])
    _png(gt / "00000001_v_take_cup" / "frame_0000000001.png", g1)
    _png(gt / "00000001_v_take_cup" / "frame_0000000002.png", np.array([[1, 0, 0, 0]]))
    _png(pred / "00000001_v_take_cup" / "frame_0000000001.png", np.array([[1, 0, 0, 0]]))
    # frame 2 prediction is missing -> empty prediction; the flagged sequence 2 is skipped (no files at all)
    with pytest.warns(UserWarning, match="1 prediction PNG"):
        r = evaluate_folder(pred, gt, split)
    # f1 obj1 pos: I1 U2 TP .5; f1 obj2 neg: p empty, g non-empty -> TN giou 1 (I0 U1)
    # f2 obj1 pos: p empty -> FN (I0 U1); f2 obj2 neg: U=0 -> TN
    assert r["num_sequences"] == 1 and r["missing_predictions"] == 1
    assert r["p_mIoU"] == pytest.approx(25.0)
    assert r["p_cIoU"] == pytest.approx(100 / 3)
    assert r["n_mIoU"] == pytest.approx(0.0) and r["n_cIoU"] == pytest.approx(0.0)
    assert r["gIoU"] == pytest.approx(100 * (0.5 + 1 + 0 + 1) / 4)
    assert r["Acc"] == pytest.approx(75.0)


def test_evaluate_folder_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        evaluate_folder(tmp_path, tmp_path, tmp_path / "nope.json")
    split = tmp_path / "s.json"
    split.write_text(json.dumps([{"seq_id": 1, "video": "v", "verb": "a", "noun": "b",
                                  "sparse_frames": ["f.jpg"], "object_classes": {}}]))
    with pytest.raises(InputError, match="ground-truth mask"):
        evaluate_folder(tmp_path, tmp_path, split)
