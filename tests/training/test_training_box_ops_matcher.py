"""Box ops and the single-object matcher against hand-derived values (spec §7)."""

import math

import pytest
import torch

from actionvos.training.box_ops import (box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, elementwise_generalized_box_iou,
                                        generalized_box_iou, masks_to_boxes)
from actionvos.training.matcher import SingleObjectMatcher


def test_box_conversions():
    cx = torch.tensor([[0.5, 0.4, 0.2, 0.6]])
    assert torch.allclose(box_cxcywh_to_xyxy(cx), torch.tensor([[0.4, 0.1, 0.6, 0.7]]))
    assert torch.allclose(box_xyxy_to_cxcywh(torch.tensor([[0.4, 0.1, 0.6, 0.7]])), cx)


def test_giou_known_pair_and_zero_boxes():
    a = torch.tensor([[0.0, 0, 2, 2]])
    b = torch.tensor([[1.0, 1, 3, 3]])
    # inter 1, union 7, enclosing 9: 1/7 - 2/9 = -5/63
    assert generalized_box_iou(a, b).item() == pytest.approx(-5 / 63, abs=1e-5)
    zero = torch.zeros(1, 4)
    # zero vs zero: (0+1e-6)/(0+1e-6) - (0+1e-6)/(0+1e-6) = 0, no NaN
    assert generalized_box_iou(zero, zero).item() == 0.0
    # [.5,.5,1,1] vs zero: iou ~ 0, enclosing area 1, union .25 -> -0.75
    g = generalized_box_iou(torch.tensor([[0.5, 0.5, 1.0, 1.0]]), zero)
    assert not torch.isnan(g).any() and g.item() == pytest.approx(-0.75, abs=1e-5)
    e = elementwise_generalized_box_iou(torch.cat([a, zero]), torch.cat([b, zero]))
    assert e.tolist() == pytest.approx([-5 / 63, 0.0], abs=1e-5)
    with pytest.raises(ValueError):
        generalized_box_iou(torch.tensor([[1.0, 1, 0, 0]]), zero)


def test_masks_to_boxes_inclusive_max_and_empty():
    m = torch.zeros(2, 5, 6)
    m[0, 1, 2] = 1
    m[0, 3, 4] = 1
    assert masks_to_boxes(m).tolist() == [[2.0, 1.0, 4.0, 3.0], [0.0, 0.0, 0.0, 0.0]]


def _cost_class(p):
    return 0.25 * (1 - p) ** 2 * -math.log(p) - 0.75 * p ** 2 * -math.log(1 - p)


def _matcher_case():
    """T=2, Q=2, 32x32 targets -> 8x8 stride-4 masks; see the test for the hand derivation."""
    logits = torch.zeros(1, 2, 2, 1)
    logits[0, :, 1, 0] = math.log(3)  # query 1: p = 0.75
    boxes = torch.zeros(1, 2, 2, 4)
    boxes[0, :, 0] = torch.tensor([0.5, 0.5, 0.5, 0.5])
    boxes[0, :, 1] = torch.tensor([0.5, 0.5, 0.25, 0.25])
    masks = torch.zeros(1, 2, 2, 8, 8)
    masks[0, :, 1] = -math.log(3)  # p = 0.25
    masks[0, 0, 1, 0, 0] = math.log(3)  # p = 0.75 at the only positive subsampled pixel
    tgt_mask = torch.zeros(2, 32, 32)
    tgt_mask[0, :4, :4] = 1  # subsampled [2::4, 2::4] keeps only pixel (2, 2) -> grid (0, 0)
    target = {"masks": tgt_mask, "boxes": torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.0, 0, 0, 0]]),
              "valid": torch.tensor([1, 1]), "labels": torch.zeros(2, dtype=torch.long)}
    return {"pred_logits": logits, "pred_boxes": boxes, "pred_masks": masks}, [target]


def test_matcher_costs_by_hand():
    outputs, targets = _matcher_case()
    ln2, l43 = math.log(2), math.log(4 / 3)
    # query 0: p=.5; boxes: L1 (0 + 2)/2 = 1; GIoU (1 + (-.3125/.5625))/2; masks p=.5 over 128 px, 1 positive
    c0 = (2 * _cost_class(0.5) + 5 * 1.0 - 2 * (1 - 0.3125 / 0.5625) / 2
          + 2 * ln2 * 0.25 * (0.25 * 1 + 0.75 * 127) / 128 - 5 * (2 * 0.5 + 1) / (64 + 1 + 1))
    # query 1: p=.75; L1 (0.5 + 1.5)/2 = 1; GIoU (0.25 + (-0.84))/2; focal: positive .25*.0625*ln(4/3),
    # 127 negatives .75*.0625*ln(4/3); dice (2*.75+1)/(32.5+1+1)
    c1 = (2 * _cost_class(0.75) + 5 * 1.0 - 2 * (0.25 - 0.84) / 2
          + 2 * (0.25 * 0.0625 * l43 + 127 * 0.75 * 0.0625 * l43) / 128 - 5 * 2.5 / 34.5)
    m = SingleObjectMatcher()
    cost = m.cost_matrix(outputs, targets)[0]
    assert cost.tolist() == pytest.approx([c0, c1], abs=1e-4)
    assert c0 == pytest.approx(4.48933, abs=1e-4) and c1 == pytest.approx(4.09381, abs=1e-4)
    idx = m(outputs, targets)
    assert [(s.tolist(), t.tolist()) for s, t in idx] == [([1], [0])]


def test_matcher_class_cost_averages_valid_frames_only():
    outputs, targets = _matcher_case()
    outputs["pred_logits"][0, 1, 1, 0] = 5.0  # only changes an invalid frame
    targets[0]["valid"] = torch.tensor([1, 0])
    m = SingleObjectMatcher(cost_class=1, cost_bbox=0, cost_giou=0, cost_mask=0, cost_dice=0)
    c = m.cost_matrix(outputs, targets)[0]
    assert c.tolist() == pytest.approx([_cost_class(0.5), _cost_class(0.75)], abs=1e-6)


def test_matcher_rejects_mismatched_padding():
    outputs, targets = _matcher_case()
    outputs["pred_masks"] = outputs["pred_masks"][..., :4]
    with pytest.raises(ValueError, match="pred_masks size"):
        SingleObjectMatcher()(outputs, targets)
