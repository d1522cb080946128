"""Per-frame pre- and post-processing of the one pipeline, in numpy / OpenCV (no torch). The torch reference
implementation of the same rules is :mod:`actionvos.model.postprocess`; ``tests/test_pipeline_postprocess.py``
checks that both give the same labels.

* :func:`resize_frame` — spec 3.1 resize (PIL bilinear as torchvision ``Resize`` on PIL images; OpenCV
  ``INTER_AREA`` when Pillow is absent). The target size comes from :meth:`actionvos.card.InputRule.model_size`.
* :func:`upsample_mask_logits` — spec 3.9 step 2 (bilinear, ``align_corners=False``, straight to the frame size).
* :func:`merge_labels_np` — spec 3.9 step 4 (probabilities < threshold → 0, background plane, argmax).
* :func:`finish_frame` — steps 2–4 for one frame: upsample the selected queries' logits, sigmoid, gate, merge.
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["check_frame", "resize_frame", "upsample_mask_logits", "sigmoid", "merge_labels_np", "finish_frame"]

log = logging.getLogger(__name__)
_warned = {"pil": False}


def check_frame(frame) -> None:
    """Raise :class:`~actionvos.errors.InputError` unless ``frame`` is an ``[H, W, 3]`` uint8 RGB array."""
    from actionvos.errors import InputError

    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        desc = f"{frame.shape} {frame.dtype}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise InputError(f"frames must be [H, W, 3] uint8 RGB arrays, got {desc}")


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``[H, W, 3]`` uint8 RGB to ``size = (h, w)`` the way the reference does (PIL bilinear, spec 3.1).

    Returns the input itself when it already has that size. Raises ValueError on a non-``[H, W, 3]`` uint8 array.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be [H, W, 3] uint8 RGB, got {frame.shape} {frame.dtype}")
    h, w = size
    if frame.shape[:2] == (h, w):
        return frame
    try:
        from PIL import Image
    except ImportError:  # edge box without Pillow: close to PIL's antialiased bilinear, not bit-identical
        import cv2

        if not _warned["pil"]:
            log.warning("Pillow is not installed: frames are resized with OpenCV INTER_AREA (masks differ slightly from offline)")
            _warned["pil"] = True
        return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    return np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float32."""
    x = np.asarray(x, dtype=np.float32)
    return np.exp(-np.logaddexp(np.float32(0), -x)).astype(np.float32)


def upsample_mask_logits(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[h, w]`` (or ``[N, h, w]``) float32 logits → ``size = (H, W)`` with bilinear interpolation,
    ``align_corners=False`` (OpenCV ``INTER_LINEAR`` uses the same half-pixel centres as ``F.interpolate``)."""
    import cv2

    H, W = size
    if logits.ndim == 2:
        return cv2.resize(np.ascontiguousarray(logits, np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
    return np.stack([upsample_mask_logits(x, size) for x in logits]) if len(logits) else np.zeros((0, H, W), np.float32)


def merge_labels_np(probs: np.ndarray, threshold: float, background: float) -> np.ndarray:
    """Merge per-object probabilities ``[P, H, W]`` (gated) into ``[H, W]`` uint8 labels (spec 3.9 step 4).

    0 = background, ``i + 1`` = object ``i``; probabilities below ``threshold`` count as 0; ties go to the lower plane.
    Raises ValueError with more than 255 objects.
    """
    P = probs.shape[0]
    if P > 255:
        raise ValueError("at most 255 objects can be merged into a uint8 label map")
    if P == 0:
        return np.zeros(probs.shape[1:], np.uint8)
    p = np.where(probs < threshold, np.float32(0), probs)
    best = p.argmax(0)
    top = np.take_along_axis(p, best[None], 0)[0]
    return np.where(top > background, best + 1, 0).astype(np.uint8)


def finish_frame(sel_logits: np.ndarray, size: tuple[int, int], passed: np.ndarray, threshold: float,
                 background: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spec 3.9 steps 2–4 for one frame.

    Args:
        sel_logits: ``[P, h, w]`` float32 mask logits of each object's selected query (stride 4).
        size: ``(H, W)`` of the original frame in pixels.
        passed: ``[P]`` bool, the positive gate.
        threshold, background: the card's mask threshold and background constant.
    Returns:
        ``probs [P, H, W]`` float32 in [0, 1] (not gated), ``gated [P, H, W]`` (objects failing the gate zeroed) and
        ``labels [H, W]`` uint8 (0 background, ``i + 1`` object ``i``).
    """
    probs = sigmoid(upsample_mask_logits(np.asarray(sel_logits, np.float32), size))
    gated = probs * np.asarray(passed, bool)[:, None, None].astype(np.float32)
    return probs, gated, merge_labels_np(gated, threshold, background)
