"""Helpers of the export tests (PyTorch references)."""

from __future__ import annotations

import numpy as np
import torch


def torch_reference(model, frames_tchw_uint8: np.ndarray, text) -> dict[str, np.ndarray]:
    """PyTorch stage methods on uint8 ``[T, 3, H, W]`` frames and :class:`TextFeatures` (the parity oracle)."""
    from actionvos.model.postprocess import normalize_frames

    with torch.no_grad():
        x = normalize_frames(frames_tchw_uint8.transpose(0, 2, 3, 1))
        out = model.decode(model.encode_frames(x), text)
    return {k: out[k].numpy() for k in ("pred_logits", "pred_boxes", "pred_masks", "pred_positives")}


def torch_text(model, input_ids: np.ndarray, attention_mask: np.ndarray):
    with torch.no_grad():
        return model.encode_text(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
