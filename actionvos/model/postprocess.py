"""Pre- and post-processing of the official inference rule (spec 3.1 and 3.9): the torch reference implementation.

The pipeline runs the same rules in numpy (:mod:`actionvos.pipeline.frames`, tested against this module); the
constants (short side, gate, mask threshold, background) come from the caller, i.e. from a model card.

* :func:`preprocess_frames` — PIL bilinear resize to a shorter side of 360 (torchvision ``T.Resize(360)`` on PIL
  images), ``/255``, ImageNet normalisation.
* :func:`clip_predictions` — query selection by the frame-mean score, mask upsampling to the output size,
  sigmoid, and the ActionVOS positive gate.
* :func:`merge_labels` — the merge across prompts (probabilities < 0.5 → 0, background plane 0.1, argmax,
  label = prompt index + 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from actionvos.card import resized_size  # the one resize rule (spec 3.1), re-exported here
from actionvos.model.config import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["resized_size", "preprocess_frames", "normalize_frames", "ClipPrediction", "select_queries", "clip_predictions",
           "merge_labels"]


def normalize_frames(frames_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``[T, H, W, 3]`` uint8 RGB → ``[T, 3, H, W]`` float32, ``(x/255 - mean) / std`` (ToTensor + Normalize)."""
    x = torch.as_tensor(np.ascontiguousarray(frames_uint8)).permute(0, 3, 1, 2).float().div(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def preprocess_frames(frames_uint8: np.ndarray, short_side: int) -> torch.Tensor:
    """Resize and normalise RGB frames as the reference does.

    Args:
        frames_uint8: ``[T, H, W, 3]`` uint8 RGB.
        short_side: target shorter side in pixels (360 for the released model).
    Returns:
        ``[T, 3, h, w]`` float32 with ``(h, w) = resized_size(H, W, short_side)``.
    Raises:
        ValueError: not a ``[T, H, W, 3]`` uint8 array.
    """
    from PIL import Image

    if frames_uint8.ndim != 4 or frames_uint8.shape[-1] != 3 or frames_uint8.dtype != np.uint8:
        raise ValueError(f"frames must be [T,H,W,3] uint8 RGB, got {frames_uint8.shape} {frames_uint8.dtype}")
    h, w = resized_size(frames_uint8.shape[1], frames_uint8.shape[2], short_side)
    if (h, w) == frames_uint8.shape[1:3]:
        return normalize_frames(frames_uint8)
    resized = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames_uint8])
    return normalize_frames(resized)


@dataclass
class ClipPrediction:
    """Per-prompt results of one clip after the official post-processing.

    Attributes:
        query_scores: ``[P, Q]`` float, mean over frames of ``sigmoid(pred_logits)``.
        selected_query: ``[P]`` int64, argmax of ``query_scores`` (first index on ties), same for every frame.
        positive_prob: ``[P]`` float, ``sigmoid(pred_positives)``.
        passed_gate: ``[P]`` bool, ``positive_prob >= pos_thres``.
        mask_prob: ``[P, T, H, W]`` float in [0, 1], selected query's mask at the output size (no gate).
        mask_prob_gated: ``mask_prob`` with prompts that fail the gate zeroed.
    """

    query_scores: torch.Tensor
    selected_query: torch.Tensor
    positive_prob: torch.Tensor
    passed_gate: torch.Tensor
    mask_prob: torch.Tensor
    mask_prob_gated: torch.Tensor


def select_queries(pred_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``pred_logits [P, T, Q, K]`` → ``(query_scores [P, Q], selected [P])``: frame-mean sigmoid, max over K, argmax."""
    scores = pred_logits.sigmoid().mean(1).max(-1).values
    return scores, scores.argmax(-1)


def clip_predictions(outputs: dict, out_size: tuple[int, int], pos_thres: float,
                     frames: slice | None = None) -> ClipPrediction:
    """Apply spec 3.9 steps 1–3 to the model outputs of one clip.

    Args:
        outputs: dict from :meth:`ActionVOS.decode` (``pred_logits [P,T,Q,1]``, ``pred_masks [P,T,Q,h,w]``,
            ``pred_positives [P,1]``).
        out_size: ``(H, W)`` of the original frames; masks are bilinearly upsampled (align_corners=False) straight
            to it.
        pos_thres: the positive gate (0.75 for the released model).
        frames: upsample only these frames' masks (``mask_prob`` then has ``len(range(T)[frames])`` frames);
            query selection and the gate still use every frame of the clip. Bounds memory at full resolution
            (P prompts × 36 frames × 1080p would be ~2.4 GB at once).
    """
    scores, idx = select_queries(outputs["pred_logits"])
    masks = outputs["pred_masks"]
    P = masks.shape[0]
    sel = masks[torch.arange(P, device=masks.device), :, idx]  # [P, T, h, w]
    if frames is not None:
        sel = sel[:, frames]
    prob = F.interpolate(sel, size=tuple(out_size), mode="bilinear", align_corners=False).sigmoid()
    positive = outputs["pred_positives"].sigmoid().reshape(P)
    passed = positive >= pos_thres
    gated = prob * passed.to(prob.dtype)[:, None, None, None]
    return ClipPrediction(scores, idx, positive, passed, prob, gated)


def merge_labels(mask_prob: torch.Tensor, threshold: float, background: float) -> torch.Tensor:
    """Merge per-prompt probabilities into one label map (spec 3.9 step 4).

    Args:
        mask_prob: ``[P, T, H, W]`` probabilities (gated or not).
        threshold: probabilities below it are set to 0 (0.5 in the reference).
        background: constant of the prepended background plane (0.1).
    Returns:
        ``[T, H, W]`` uint8: 0 = background, ``i + 1`` = prompt ``i``; ties go to the first plane.
    Raises:
        ValueError: more than 255 prompts (labels are uint8).
    """
    if mask_prob.shape[0] > 255:
        raise ValueError("at most 255 prompts can be merged into a uint8 label map")
    probs = torch.where(mask_prob < threshold, torch.zeros_like(mask_prob), mask_prob)
    planes = torch.cat([torch.full_like(probs[:1], background), probs], 0)
    return planes.argmax(0).to(torch.uint8)
