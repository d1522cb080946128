"""ActionVOS training criterion (spec §7; ReferFormer ``SetCriterion`` + ActionVOS ``criterion.py``).

Model outputs (one dict, ``B`` clips of ``T`` frames, ``Q`` queries, input padded to ``H×W``, a
multiple of 32):
    ``pred_logits [B,T,Q,1]`` logits; ``pred_boxes [B,T,Q,4]`` cxcywh in [0,1];
    ``pred_masks [B,T,Q,H/4,W/4]`` logits; ``pred_positives [B,1]`` logit;
    ``aux_outputs``: list of dicts with the same keys for the earlier decoder layers.

Targets: a list of ``B`` dicts (as built by :mod:`actionvos.training.dataset`):
    ``masks [T,H_i,W_i]`` float 0/1 (zero for negative expressions);
    ``weights [T,H_i,W_i]`` float λ ∈ {1,2,5} (padding added here or by the collate is 0);
    ``boxes [T,4]`` float cxcywh normalised by the post-augmentation size, ``[0,0,0,0]`` when absent;
    ``valid [T]`` int 0/1 (all ones in ActionVOS); ``positive [T]`` bool/int (expression flag,
    repeated per frame); ``labels [T]`` int64 class ids (unused for the binary head);
    ``size`` int64 ``(H_i, W_i)`` post-augmentation size before padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .box_ops import box_cxcywh_to_xyxy, elementwise_generalized_box_iou
from .matcher import SingleObjectMatcher, pad_stack, subsample_targets

__all__ = ["ActionVOSCriterion", "sigmoid_focal_loss", "sigmoid_focal_loss_weighted", "dice_loss", "WEIGHT_DICT"]

WEIGHT_DICT = {
    "loss_ce": 2.0,
    "loss_bbox": 5.0,
    "loss_giou": 2.0,
    "loss_mask": 2.0,
    "loss_dice": 5.0,
    "loss_positive_labels": 2.0,
}


def sigmoid_focal_loss_weighted(
    inputs: Tensor, targets: Tensor, num_boxes: float, weights: Tensor | None = None,
    alpha: float = 0.25, gamma: float = 2.0,
) -> Tensor:
    """RetinaNet focal loss, optionally λ-weighted: ``α_t (1−p_t)^γ · λ·BCE``, ``mean(1).sum()/num_boxes``.

    Args:
        inputs: ``[N, K]`` logits. targets: ``[N, K]`` 0/1 floats. weights: ``[N, K]`` λ or None.
    Returns:
        scalar tensor.
    """
    prob = inputs.sigmoid()
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none", weight=weights)
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t).pow(gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_boxes


def sigmoid_focal_loss(inputs: Tensor, targets: Tensor, num_boxes: float, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Unweighted :func:`sigmoid_focal_loss_weighted`."""
    return sigmoid_focal_loss_weighted(inputs, targets, num_boxes, None, alpha, gamma)


def dice_loss(inputs: Tensor, targets: Tensor, num_boxes: float) -> Tensor:
    """``Σ_n [1 − (2Σpq+1)/(Σp+Σq+1)] / num_boxes`` with ``p = sigmoid(inputs)``; inputs/targets ``[N, K]``."""
    p = inputs.sigmoid().flatten(1)
    loss = 1 - (2 * (p * targets).sum(1) + 1) / (p.sum(1) + targets.sum(1) + 1)
    return loss.sum() / num_boxes


def _dist_num_boxes(num: float, device: torch.device) -> float:
    n = torch.as_tensor([num], dtype=torch.float, device=device)
    world = 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(n)
        world = torch.distributed.get_world_size()
    return torch.clamp(n / world, min=1).item()


class ActionVOSCriterion(nn.Module):
    """Sum of the ActionVOS losses over the final and each auxiliary decoder layer (spec §7).

    ``forward(outputs, targets)`` returns a dict of *unweighted* losses ``loss_ce, loss_bbox,
    loss_giou, loss_mask, loss_dice, loss_positive_labels`` plus the same keys suffixed ``_0.._{L-2}``
    for ``aux_outputs`` (the matcher is re-run per layer). :meth:`total` applies :data:`WEIGHT_DICT`
    (2/5/2/2/5/2, the same for every layer) and sums.

    ``num_boxes`` = Σ valid frames over the batch, all-reduced when ``torch.distributed`` is
    initialised, divided by the world size, clamped ≥ 1.
    """

    def __init__(self, matcher: SingleObjectMatcher | None = None, weight_dict: dict | None = None,
                 focal_alpha: float = 0.25, use_weights: bool = True, use_positive_cls: bool = True):
        super().__init__()
        self.matcher = matcher or SingleObjectMatcher()
        self.weight_dict = dict(weight_dict or WEIGHT_DICT)
        self.focal_alpha = focal_alpha
        self.use_weights = use_weights
        self.use_positive_cls = use_positive_cls

    # -- individual losses -------------------------------------------------------------------
    def loss_labels(self, outputs: dict, targets: list[dict], indices, num_boxes: float) -> dict:
        """Focal loss on all ``T·Q`` logits; target 1 for the matched query in every valid frame
        (also for negative expressions). ``mean(1).sum()/num_boxes × (T·Q)``."""
        logits = outputs["pred_logits"]
        b, nf, nq = logits.shape[:3]
        flat = logits.flatten(1, 2)  # [B, T*Q, 1]
        tgt = torch.zeros_like(flat)
        for i, (t, (src, _)) in enumerate(zip(targets, indices)):
            vf = t["valid"].nonzero().flatten().to(logits.device)
            tgt[i, vf * nq + src.to(logits.device), 0] = 1.0
        return {"loss_ce": sigmoid_focal_loss(flat, tgt, num_boxes, self.focal_alpha) * flat.shape[1]}

    def loss_boxes(self, outputs: dict, targets: list[dict], indices, num_boxes: float) -> dict:
        """L1 and ``1 − GIoU`` of the matched query in every frame, each ``sum/num_boxes``."""
        boxes = outputs["pred_boxes"]
        src = torch.cat([boxes[i, :, s[0]] for i, (s, _) in enumerate(indices)])  # [B*T, 4]
        tgt = torch.cat([t["boxes"] for t in targets]).to(src)
        loss_giou = 1 - elementwise_generalized_box_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt))
        return {
            "loss_bbox": F.l1_loss(src, tgt, reduction="none").sum() / num_boxes,
            "loss_giou": loss_giou.sum() / num_boxes,
        }

    def _matched_masks(self, outputs: dict, targets: list[dict], indices):
        masks = outputs["pred_masks"]
        hw = tuple(masks.shape[-2:])
        src = torch.stack([masks[i, :, s[0]] for i, (s, _) in enumerate(indices)]).flatten(1)  # [B, T*h*w]
        tgt = subsample_targets(pad_stack([t["masks"] for t in targets]), hw).to(src).flatten(1)
        return src, tgt, hw

    def loss_weighted_masks(self, outputs: dict, targets: list[dict], indices, num_boxes: float) -> dict:
        """λ-weighted focal loss (padding λ = 0) and unweighted dice on the matched query's masks."""
        src, tgt, hw = self._matched_masks(outputs, targets, indices)
        w = subsample_targets(pad_stack([t["weights"] for t in targets], value=0.0), hw).to(src).flatten(1)
        return {
            "loss_mask": sigmoid_focal_loss_weighted(src, tgt, num_boxes, w, self.focal_alpha),
            "loss_dice": dice_loss(src, tgt, num_boxes),
        }

    def loss_masks(self, outputs: dict, targets: list[dict], indices, num_boxes: float) -> dict:
        """Unweighted variant (ReferFormer ``loss_masks``; used when ``use_weights`` is False)."""
        src, tgt, _ = self._matched_masks(outputs, targets, indices)
        return {
            "loss_mask": sigmoid_focal_loss(src, tgt, num_boxes, self.focal_alpha),
            "loss_dice": dice_loss(src, tgt, num_boxes),
        }

    def loss_positive_labels(self, outputs: dict, targets: list[dict], indices, num_boxes: float) -> dict:
        """Focal loss on ``pred_positives [B,1]``; target = ``positive.any()``; ``mean(1).sum()/B``."""
        logits = outputs["pred_positives"]
        tgt = torch.tensor([[1.0 if bool(torch.as_tensor(t["positive"]).any()) else 0.0] for t in targets],
                           dtype=logits.dtype, device=logits.device)
        return {"loss_positive_labels": sigmoid_focal_loss(logits, tgt, logits.shape[0], self.focal_alpha)}

    # -- driver ------------------------------------------------------------------------------
    def _layer(self, outputs: dict, targets: list[dict], num_boxes: float) -> dict:
        indices = self.matcher(outputs, targets)
        losses = {}
        losses.update(self.loss_labels(outputs, targets, indices, num_boxes))
        losses.update(self.loss_boxes(outputs, targets, indices, num_boxes))
        if self.use_positive_cls:
            losses.update(self.loss_positive_labels(outputs, targets, indices, num_boxes))
        masks_fn = self.loss_weighted_masks if self.use_weights else self.loss_masks
        losses.update(masks_fn(outputs, targets, indices, num_boxes))
        return losses

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, Tensor]:
        if len(targets) != outputs["pred_logits"].shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {outputs['pred_logits'].shape[0]} clips")
        valid = torch.stack([torch.as_tensor(t["valid"]) for t in targets]).reshape(-1)
        num_boxes = _dist_num_boxes(float(valid.sum().item()), outputs["pred_logits"].device)
        main = {k: v for k, v in outputs.items() if k != "aux_outputs"}
        losses = self._layer(main, targets, num_boxes)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update({f"{k}_{i}": v for k, v in self._layer(aux, targets, num_boxes).items()})
        return losses

    def total(self, losses: dict[str, Tensor]) -> Tensor:
        """``Σ weight_dict[base_name] × loss`` over every layer (the training objective)."""
        out = 0.0
        for k, v in losses.items():
            base = k.rsplit("_", 1)[0] if k.rsplit("_", 1)[-1].isdigit() else k
            out = out + self.weight_dict[base] * v
        return out
