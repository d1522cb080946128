"""The two exported graphs as ``nn.Module`` wrappers around the model's stage methods (torch required).

* :class:`TextEncoderGraph` — :meth:`ActionVOS.encode_text` (spec 3.3).
* :class:`SegmenterGraph` — uint8 frames → ``/255`` → ImageNet mean/std → :meth:`ActionVOS.encode_frames` (once per
  clip) → :meth:`ActionVOS.decode` broadcast to P prompts (spec 3.1–3.8). Only the four final outputs are returned
  (aux outputs and reference points are training/debug outputs).

Both are thin: the same code the PyTorch path runs is what gets traced, so parity is checked against the stage
methods themselves.
"""

from __future__ import annotations

import torch
from torch import nn

from actionvos.model.actionvos import ActionVOS, TextFeatures
from actionvos.model.config import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["TextEncoderGraph", "SegmenterGraph", "normalize_uint8"]


def normalize_uint8(frames: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``[T, 3, H, W]`` uint8 RGB → float32 ``(x / 255 - mean) / std`` (ToTensor + Normalize, spec 3.1).

    The operation order equals :func:`actionvos.model.postprocess.normalize_frames`, so results are bit-identical.
    """
    return (frames.float().div(255.0) - mean) / std


class TextEncoderGraph(nn.Module):
    """``(input_ids [P, L] int64, attention_mask [P, L] int64)`` →
    ``(text_word [P, L, 256] float32, text_mask [P, L] bool, text_sentence [P, 256] float32)``."""

    def __init__(self, model: ActionVOS):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        t = self.model.encode_text(input_ids, attention_mask)
        return t.word, t.mask, t.sentence


class SegmenterGraph(nn.Module):
    """``(frames [T, 3, H, W] uint8, text_word [P, L, 256], text_mask [P, L] bool, text_sentence [P, 256])`` →
    ``(pred_logits [P, T, Q, 1], pred_boxes [P, T, Q, 4], pred_masks [P, T, Q, H/4, W/4], pred_positives [P, 1])``.

    The backbone runs once for the clip; :meth:`ActionVOS.decode` broadcasts the clip to the P prompts.
    """

    def __init__(self, model: ActionVOS):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor, text_word: torch.Tensor, text_mask: torch.Tensor,
                text_sentence: torch.Tensor):
        x = normalize_uint8(frames, self.mean, self.std)
        out = self.model.decode(self.model.encode_frames(x), TextFeatures(text_word, text_mask, text_sentence))
        return out["pred_logits"], out["pred_boxes"], out["pred_masks"], out["pred_positives"]
