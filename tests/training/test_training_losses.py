"""ActionVOSCriterion terms against hand-derived values (spec §7)."""

import math

import pytest
import torch

from actionvos.training.losses import WEIGHT_DICT, ActionVOSCriterion

LN2 = math.log(2)
IDX1 = [(torch.tensor([1]), torch.tensor([0]))]  # query 1 matched


def _target(t=2, hw=(32, 32), positive=True, valid=None):
    return {"masks": torch.zeros(t, *hw), "weights": torch.ones(t, *hw), "boxes": torch.zeros(t, 4),
            "valid": torch.ones(t, dtype=torch.long) if valid is None else torch.tensor(valid),
            "positive": torch.full((t,), positive), "labels": torch.zeros(t, dtype=torch.long),
            "size": torch.tensor(hw)}


def test_loss_labels_all_valid_and_negative_expression():
    crit = ActionVOSCriterion()
    out = {"pred_logits": torch.zeros(1, 2, 2, 1)}
    # p=.5 everywhere; 2 positives (.25*.25*ln2) + 2 negatives (.75*.25*ln2): mean .125 ln2,
    # / num_boxes 2, x (t*q = 4) -> .25 ln2
    for positive in (True, False):  # target is 1 also for negative expressions
        loss = crit.loss_labels(out, [_target(positive=positive)], IDX1, 2.0)["loss_ce"]
        assert loss.item() == pytest.approx(0.25 * LN2, abs=1e-6)


def test_loss_labels_skips_invalid_frames():
    crit = ActionVOSCriterion()
    out = {"pred_logits": torch.zeros(1, 2, 2, 1)}
    # 1 positive + 3 negatives: (.0625 + 3*.1875) ln2 / 4 / 1 * 4 = .625 ln2
    loss = crit.loss_labels(out, [_target(valid=[1, 0])], IDX1, 1.0)["loss_ce"]
    assert loss.item() == pytest.approx(0.625 * LN2, abs=1e-6)


def test_loss_boxes_l1_and_giou_with_zero_gt():
    crit = ActionVOSCriterion()
    boxes = torch.zeros(1, 2, 2, 4)
    boxes[0, :, 0] = 0.9  # unmatched query, must be ignored
    boxes[0, :, 1] = torch.tensor([0.5, 0.5, 0.25, 0.25])
    tgt = _target()
    tgt["boxes"] = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.0, 0, 0, 0]])
    losses = crit.loss_boxes({"pred_boxes": boxes}, [tgt], IDX1, 2.0)
    # L1: (0.5 + 1.5) / 2; GIoU: frame0 .0625/.25 = .25, frame1 (vs zero box) -(.390625-.0625)/.390625 = -.84
    assert losses["loss_bbox"].item() == pytest.approx(1.0, abs=1e-6)
    assert losses["loss_giou"].item() == pytest.approx(((1 - 0.25) + (1 + 0.84)) / 2, abs=1e-4)


def _mask_case():
    tgt = _target(t=1, hw=(30, 30))  # padded to 32 -> subsampled row/col 7 is padding (lambda 0)
    tgt["masks"][0, 2, 2] = 1  # subsampled (0, 0)
    tgt["weights"][0, 2, 2] = 5
    for x in (6, 10, 14):  # subsampled (0, 1), (0, 2), (0, 3)
        tgt["weights"][0, 2, x] = 2
    tgt["masks"][0, 0, 0] = 1  # not on the [2::4, 2::4] grid: ignored
    out = {"pred_masks": torch.zeros(1, 1, 2, 8, 8)}
    out["pred_masks"][0, 0, 0] = 7.0  # unmatched query
    return out, tgt


def test_loss_weighted_masks_by_hand():
    out, tgt = _mask_case()
    losses = ActionVOSCriterion().loss_weighted_masks(out, [tgt], IDX1, 1.0)
    # p=.5: per pixel alpha_t * .25 * lambda * ln2. Positive: .25*5; negatives: .75*(3*2 + 45*1);
    # 15 padded pixels have lambda 0. Mean over 64 pixels.
    expected_focal = 0.25 * LN2 * (0.25 * 5 + 0.75 * (3 * 2 + 45)) / 64
    assert losses["loss_mask"].item() == pytest.approx(expected_focal, abs=1e-6)
    # dice is unweighted and includes padding: 1 - (2*.5 + 1) / (32 + 1 + 1)
    assert losses["loss_dice"].item() == pytest.approx(1 - 2 / 34, abs=1e-6)


def test_loss_positive_labels_by_hand():
    crit = ActionVOSCriterion()
    out = {"pred_positives": torch.tensor([[0.0], [math.log(3)]])}
    tgts = [_target(positive=True), _target(positive=False)]
    loss = crit.loss_positive_labels(out, tgts, None, 99.0)["loss_positive_labels"]
    # sample 0: y=1, p=.5 -> .25*.25*ln2; sample 1: y=0, p=.75 -> .75*.5625*ln4; sum / B=2
    assert loss.item() == pytest.approx((0.0625 * LN2 + 0.75 * 0.5625 * math.log(4)) / 2, abs=1e-6)


def _layer(best_query):
    logits = torch.full((1, 2, 2, 1), -3.0)
    boxes = torch.full((1, 2, 2, 4), 0.3)
    boxes[0, :, best_query] = torch.tensor([0.5, 0.5, 0.5, 0.5])
    masks = torch.full((1, 2, 2, 8, 8), -5.0)
    return {"pred_logits": logits, "pred_boxes": boxes, "pred_masks": masks, "pred_positives": torch.zeros(1, 1)}


def test_forward_reruns_matcher_per_aux_layer_and_weights_total():
    tgt = _target()
    tgt["boxes"][:] = torch.tensor([0.5, 0.5, 0.5, 0.5])
    out = _layer(0)
    out["aux_outputs"] = [_layer(1), _layer(0)]
    crit = ActionVOSCriterion()
    losses = crit(out, [tgt])
    names = ["loss_ce", "loss_bbox", "loss_giou", "loss_positive_labels", "loss_mask", "loss_dice"]
    assert set(losses) == {n + s for n in names for s in ("", "_0", "_1")}
    # each layer's matched query has a perfect box: L1 0 and GIoU loss ~0 whichever query it is
    for s in ("", "_0", "_1"):
        assert losses["loss_bbox" + s].item() == pytest.approx(0.0, abs=1e-6)
        assert losses["loss_giou" + s].item() == pytest.approx(0.0, abs=1e-5)
    total = sum(WEIGHT_DICT[k.rstrip("_01") if k[-1].isdigit() else k] * v.item() for k, v in losses.items())
    assert crit.total(losses).item() == pytest.approx(total, rel=1e-6)


def test_num_boxes_clamped_to_one():
    tgt = _target(valid=[0, 0])
    out = _layer(0)
    # zero GT boxes: query 1 (all 0.3) is closest. No valid frame: num_boxes = max(0, 1) = 1,
    # so L1 = 2 frames x 4 coords x 0.3 = 2.4 (not divided by 0)
    losses = ActionVOSCriterion()(out, [tgt])
    assert losses["loss_bbox"].item() == pytest.approx(2.4, abs=1e-6)
