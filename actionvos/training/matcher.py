"""Single lowest-cost query matcher (spec §7; ReferFormer ``models/matcher.py``).

Each training sample refers to exactly one object, so the Hungarian matching of ReferFormer reduces
to an argmin over the ``Q`` queries of

    C = 2·cost_class + 5·L1(box) + 2·(−GIoU) + 2·focal_mask + 5·(−dice_coef)

and the chosen query is used for every frame of the clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .box_ops import box_cxcywh_to_xyxy, generalized_box_iou

__all__ = ["SingleObjectMatcher", "pad_stack", "subsample_targets", "MASK_OUT_STRIDE"]

MASK_OUT_STRIDE = 4
SIZE_DIVISIBILITY = 32


def pad_stack(tensors: list[Tensor], divisor: int = SIZE_DIVISIBILITY, value: float = 0.0) -> Tensor:
    """Stack ``B`` tensors ``[T, H_i, W_i]`` into ``[B, T, Hp, Wp]``, padding bottom/right with ``value``.

    ``Hp, Wp`` are the batch maxima rounded up to a multiple of ``divisor`` (ReferFormer's
    ``nested_tensor_from_tensor_list(size_divisibility=32)``). Already padded inputs are unchanged.
    """
    if not tensors:
        raise ValueError("pad_stack needs at least one tensor")
    t = max(x.shape[0] for x in tensors)
    h = max(x.shape[-2] for x in tensors)
    w = max(x.shape[-1] for x in tensors)
    h = (h + divisor - 1) // divisor * divisor
    w = (w + divisor - 1) // divisor * divisor
    out = tensors[0].new_full((len(tensors), t, h, w), value, dtype=torch.float32)
    for i, x in enumerate(tensors):
        out[i, : x.shape[0], : x.shape[-2], : x.shape[-1]] = x.float()
    return out


def subsample_targets(padded: Tensor, pred_hw: tuple[int, int], stride: int = MASK_OUT_STRIDE) -> Tensor:
    """``[B, T, Hp, Wp]`` → ``[B, T, Hp/4, Wp/4]`` by taking pixels ``[2::4, 2::4]`` (spec §7).

    Raises:
        ValueError: the subsampled size differs from the predicted mask size ``pred_hw``
            (targets and model input were padded differently).
    """
    start = stride // 2
    out = padded[:, :, start::stride, start::stride]
    if tuple(out.shape[-2:]) != tuple(pred_hw) or out.shape[-2] * stride != padded.shape[-2]:
        raise ValueError(
            f"target size {tuple(padded.shape[-2:])} (padded to /32, subsampled to {tuple(out.shape[-2:])}) "
            f"does not match pred_masks size {tuple(pred_hw)}; pad the images and targets the same way"
        )
    return out


def focal_cost_class(prob: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """ReferFormer binary class cost ``α(1−p)^γ(−log(p+1e-8)) − (1−α)p^γ(−log(1−p+1e-8))`` (elementwise)."""
    neg = (1 - alpha) * prob.pow(gamma) * (-(1 - prob + 1e-8).log())
    pos = alpha * (1 - prob).pow(gamma) * (-(prob + 1e-8).log())
    return pos - neg


@dataclass(frozen=True)
class SingleObjectMatcher:
    """Argmin matcher of spec §7 with ReferFormer's default weights.

    Call with ``(outputs, targets)``:
        outputs: ``pred_logits [B,T,Q,1]`` logits, ``pred_boxes [B,T,Q,4]`` cxcywh in [0,1],
            ``pred_masks [B,T,Q,h,w]`` logits at stride 4 of the padded input.
        targets: list of ``B`` dicts with ``boxes [T,4]`` cxcywh normalised, ``masks [T,H,W]`` 0/1,
            ``valid [T]`` 0/1 (see :mod:`actionvos.training.losses`).
    Returns:
        list of ``B`` tuples ``(src [1] int64 query index, tgt [1] int64 = 0)``, the format of
        ReferFormer's ``SetCriterion``.

    Averaging rules: the class cost is averaged over valid frames (0 if no frame is valid; the
    reference would crash there), box costs over all frames, the mask focal cost over all ``T·h·w``
    subsampled pixels, and dice is ``(2Σpq+1)/(Σp+Σq+1)`` over the whole clip. Ties pick the lowest
    query index (``torch.min``).
    """

    cost_class: float = 2.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    cost_mask: float = 2.0
    cost_dice: float = 5.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0

    def cost_matrix(self, outputs: dict, targets: list[dict]) -> list[Tensor]:
        """Per batch element, the ``[Q]`` total cost (used by :meth:`__call__`, exposed for tests)."""
        logits, boxes, masks = outputs["pred_logits"], outputs["pred_boxes"], outputs["pred_masks"]
        bs, nf, nq, h, w = masks.shape
        tgt_masks = subsample_targets(pad_stack([t["masks"] for t in targets]), (h, w)).to(masks)
        costs = []
        for i in range(bs):
            prob = logits[i].sigmoid()  # [T,Q,1]
            valid = targets[i]["valid"].bool()
            if valid.any():
                c_cls = focal_cost_class(prob[valid, :, 0], self.focal_alpha, self.focal_gamma).mean(0)
            else:
                c_cls = prob.new_zeros(nq)
            tgt_box = targets[i]["boxes"].to(boxes)  # [T,4]
            c_l1 = (boxes[i] - tgt_box[:, None, :]).abs().sum(-1).mean(0)  # [Q]
            c_giou = torch.stack(
                [-generalized_box_iou(box_cxcywh_to_xyxy(boxes[i, t]), box_cxcywh_to_xyxy(tgt_box[t : t + 1]))[:, 0]
                 for t in range(nf)]
            ).mean(0)
            x = masks[i].transpose(0, 1).flatten(1)  # [Q, T*h*w]
            y = tgt_masks[i].flatten().unsqueeze(0).expand_as(x)
            p = x.sigmoid()
            ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
            p_t = p * y + (1 - p) * (1 - y)
            alpha_t = self.focal_alpha * y + (1 - self.focal_alpha) * (1 - y)
            c_mask = (alpha_t * ce * (1 - p_t).pow(self.focal_gamma)).mean(1)
            dice = (2 * (p * y).sum(1) + 1) / (p.sum(1) + y.sum(1) + 1)
            costs.append(
                self.cost_class * c_cls + self.cost_bbox * c_l1 + self.cost_giou * c_giou
                + self.cost_mask * c_mask - self.cost_dice * dice
            )
        return costs

    @torch.no_grad()
    def __call__(self, outputs: dict, targets: list[dict]) -> list[tuple[Tensor, Tensor]]:
        out = []
        for c in self.cost_matrix(outputs, targets):
            src = torch.argmin(c).reshape(1).long()  # first minimum, like torch.min(C, dim=0)
            out.append((src, torch.zeros(1, dtype=torch.long, device=src.device)))
        return out
