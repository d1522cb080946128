"""Box utilities for the training losses (spec §7), following ReferFormer ``util/box_ops.py``.

Boxes are float tensors whose last dimension is 4: ``cxcywh`` (centre x, centre y, width, height) or
``xyxy`` (x0, y0, x1, y1), in any consistent unit (normalised [0, 1] in the losses).

Degenerate boxes: like the reference, IoU and GIoU add ``1e-6`` to numerator and denominator, so the
all-zero box ``[0, 0, 0, 0]`` (the GT of negative expressions and absent frames, spec §7) gives no NaN:
``GIoU(zero, zero) = 1 - 1 = 0`` and ``GIoU(pred, zero)`` is finite.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "box_area",
    "box_iou",
    "generalized_box_iou",
    "elementwise_generalized_box_iou",
    "masks_to_boxes",
]

_EPS = 1e-6


def box_cxcywh_to_xyxy(x: Tensor) -> Tensor:
    """``[..., 4]`` cxcywh → ``[..., 4]`` xyxy (same dtype and unit)."""
    cx, cy, w, h = x.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(x: Tensor) -> Tensor:
    """``[..., 4]`` xyxy → ``[..., 4]`` cxcywh (same dtype and unit)."""
    x0, y0, x1, y1 = x.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """``[..., 4]`` xyxy → ``[...]`` area ``(x1 - x0) * (y1 - y0)`` (not clamped, as torchvision)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _check_xyxy(boxes: Tensor, name: str) -> None:
    if boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have a last dimension of 4 (xyxy), got shape {tuple(boxes.shape)}")
    if not bool((boxes[..., 2:] >= boxes[..., :2]).all()):
        raise ValueError(f"{name} has boxes with x1 < x0 or y1 < y0; convert cxcywh with non-negative w, h")


def box_iou(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise IoU with the reference's ``1e-6`` smoothing.

    Args:
        boxes1: ``[N, 4]`` xyxy. boxes2: ``[M, 4]`` xyxy.
    Returns:
        ``(iou [N, M], union [N, M])`` with ``iou = (inter + 1e-6) / (union + 1e-6)``.
    """
    area1, area2 = box_area(boxes1), box_area(boxes2)
    lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2 - inter
    return (inter + _EPS) / (union + _EPS), union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalised IoU (https://giou.stanford.edu/), ReferFormer variant.

    ``giou = iou - ((enclose - union) + 1e-6) / (enclose + 1e-6)``; in [-1, 1].

    Args:
        boxes1: ``[N, 4]`` xyxy. boxes2: ``[M, 4]`` xyxy.
    Returns:
        ``[N, M]`` float tensor.
    Raises:
        ValueError: a box has ``x1 < x0`` or ``y1 < y0``.
    """
    _check_xyxy(boxes1, "boxes1")
    _check_xyxy(boxes2, "boxes2")
    iou, union = box_iou(boxes1, boxes2)
    lt = torch.min(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.max(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    area = wh[..., 0] * wh[..., 1]
    return iou - ((area - union) + _EPS) / (area + _EPS)


def elementwise_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """GIoU of matching rows: ``[N, 4]`` xyxy × ``[N, 4]`` xyxy → ``[N]``.

    Equal to ``diag(generalized_box_iou(boxes1, boxes2))`` (what the reference loss uses) without
    building the N×N matrix.
    """
    _check_xyxy(boxes1, "boxes1")
    _check_xyxy(boxes2, "boxes2")
    if boxes1.shape != boxes2.shape:
        raise ValueError(f"shapes differ: {tuple(boxes1.shape)} vs {tuple(boxes2.shape)}")
    area1, area2 = box_area(boxes1), box_area(boxes2)
    lt = torch.max(boxes1[:, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = area1 + area2 - inter
    iou = (inter + _EPS) / (union + _EPS)
    lt = torch.min(boxes1[:, :2], boxes2[:, :2])
    rb = torch.max(boxes1[:, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    area = wh[:, 0] * wh[:, 1]
    return iou - ((area - union) + _EPS) / (area + _EPS)


def masks_to_boxes(masks: Tensor) -> Tensor:
    """Tight xyxy boxes of binary masks, in pixel indices (max inclusive, as the reference loader).

    Args:
        masks: ``[N, H, W]`` bool/0-1 tensor.
    Returns:
        ``[N, 4]`` float32 ``(x_min, y_min, x_max, y_max)``; an empty mask gives ``[0, 0, 0, 0]``
        (the ActionVOS convention for absent objects, spec §7).
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {tuple(masks.shape)}")
    m = masks.bool()
    out = torch.zeros((m.shape[0], 4), dtype=torch.float32, device=m.device)
    rows, cols = m.any(dim=2), m.any(dim=1)
    for i in range(m.shape[0]):
        ys = torch.nonzero(rows[i]).flatten()
        xs = torch.nonzero(cols[i]).flatten()
        if ys.numel():
            out[i] = torch.stack([xs[0], ys[0], xs[-1], ys[-1]]).float()
    return out
