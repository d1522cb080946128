"""Per-frame pre- and post-processing in numpy / OpenCV (no torch), the streaming twins of
:mod:`actionvos.model.postprocess`.

* :func:`model_input_size` / :func:`resize_frame` — spec 3.1 resize (shorter side → ``short_side``, PIL bilinear
  as torchvision ``Resize`` on PIL images; OpenCV ``INTER_AREA`` when Pillow is absent).
* :func:`upsample_mask_logits` — spec 3.9 step 2 (bilinear, ``align_corners=False``, straight to the frame size).
* :func:`merge_labels_np` — spec 3.9 step 4 (probabilities < 0.5 → 0, background plane 0.1, argmax).
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["model_input_size", "resize_frame", "upsample_mask_logits", "sigmoid", "merge_labels_np"]

log = logging.getLogger(__name__)
_warned = {"pil": False}


def model_input_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(H, W)`` after torchvision ``Resize(short_side)``: long side ``int(short_side * long / short)`` (spec 3.1)."""
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


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


def merge_labels_np(probs: np.ndarray, threshold: float = 0.5, background: float = 0.1) -> np.ndarray:
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
