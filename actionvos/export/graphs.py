"""The exported graphs as ``nn.Module`` wrappers around the model's stage methods (torch required).

* :class:`TextEncoderGraph` — :meth:`ActionVOS.encode_text` (spec 3.3).
* :class:`SegmenterGraph` — uint8 frames → ``/255`` → ImageNet mean/std → :meth:`ActionVOS.encode_frames` (once per
  clip) → :meth:`ActionVOS.decode` broadcast to P prompts (spec 3.1–3.8). Only the four final outputs are returned
  (aux outputs and reference points are training/debug outputs).
* :class:`FrameEncoderGraph` — one uint8 frame → the per-frame features of :meth:`ActionVOS.encode_frames` that the
  decoder needs (``res2`` and the four ``input_proj`` levels; spec 3.2). Position encodings are not outputs: they
  depend only on the (static) frame size.
* :class:`WindowDecoderGraph` — those features stacked over a window of T frames (T dynamic) + text features →
  :meth:`ActionVOS.decode` (spec 3.4–3.8). Together with the frame encoder it computes exactly what the segmenter
  computes, but the backbone runs once per frame however the frames are grouped into clips or windows.

All are thin: the same code the PyTorch path runs is what gets traced, so parity is checked against the stage
methods themselves. Tensor names and shapes: :mod:`actionvos.export.spec`.
"""

from __future__ import annotations

import torch
from torch import nn

from actionvos.model.actionvos import ActionVOS, FrameFeatures, TextFeatures
from actionvos.model.config import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["TextEncoderGraph", "SegmenterGraph", "FrameEncoderGraph", "WindowDecoderGraph", "normalize_uint8"]


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


class FrameEncoderGraph(nn.Module):
    """``frames [1, 3, H, W]`` uint8 RGB → ``(res2 [1, C2, ceil(H/4), ceil(W/4)], proj0..proj3 [1, d, h_l, w_l])``
    float32: the ResNet stride-4 map (C2 = 4 × backbone width, 256 released) and the ``input_proj`` outputs at
    strides 8, 16, 32, 64 (d = hidden_dim, 256 released). Normalisation (``/255``, ImageNet mean/std) is inside.
    """

    def __init__(self, model: ActionVOS):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor):
        f = self.model.encode_frames(normalize_uint8(frames, self.mean, self.std))
        return (f.backbone[0], *f.proj)


class WindowDecoderGraph(nn.Module):
    """``(res2 [T, C2, h2, w2], proj0..proj3 [T, d, h_l, w_l], text_word [P, L, d], text_mask [P, L] bool,
    text_sentence [P, d])`` → the segmenter's outputs ``pred_logits [P, T, Q, 1]``, ``pred_boxes [P, T, Q, 4]``,
    ``pred_masks [P, T, Q, h2, w2]``, ``pred_positives [P, 1]``, for any window length T.

    The features are :class:`FrameEncoderGraph` outputs of T frames concatenated along axis 0, oldest first.
    T is read from ``res2.shape[0]`` while tracing, so the graph has a dynamic T axis. The 2D sine position
    encodings (spec 3.2) depend only on the frame size (no padding at inference): they are computed once for one
    ``height × width`` frame, stored as constants ``[1, C, h, w]`` and expanded to T frames in the graph.

    Args:
        model: the model (eval mode).
        height, width: the frame size in pixels the features come from (the export's static size).
    """

    def __init__(self, model: ActionVOS, height: int, width: int):
        super().__init__()
        self.model = model
        with torch.no_grad():
            probe = model.encode_frames(torch.zeros(1, 3, height, width))
        self.n_backbone, self.n_proj = len(probe.backbone_pos), len(probe.proj_pos)
        for i, p in enumerate(probe.backbone_pos):
            self.register_buffer(f"backbone_pos{i}", p.clone(), persistent=False)
        for i, p in enumerate(probe.proj_pos):
            self.register_buffer(f"proj_pos{i}", p.clone(), persistent=False)
        self.register_buffer("image_sizes", probe.image_sizes.clone(), persistent=False)  # [1, 2] (H, W)

    def forward(self, res2: torch.Tensor, proj0: torch.Tensor, proj1: torch.Tensor, proj2: torch.Tensor,
                proj3: torch.Tensor, text_word: torch.Tensor, text_mask: torch.Tensor, text_sentence: torch.Tensor):
        T = res2.shape[0]  # a traced size under torch.onnx.export: the graph's T axis stays dynamic

        def per_frame(name: str, n: int) -> list[torch.Tensor]:
            return [getattr(self, f"{name}{i}").expand(T, -1, -1, -1) for i in range(n)]

        feats = FrameFeatures(backbone=[res2], backbone_pos=per_frame("backbone_pos", self.n_backbone),
                              proj=[proj0, proj1, proj2, proj3], proj_pos=per_frame("proj_pos", self.n_proj),
                              masks=None, image_sizes=self.image_sizes, num_frames=T)
        out = self.model.decode(feats, TextFeatures(text_word, text_mask, text_sentence))
        return out["pred_logits"], out["pred_boxes"], out["pred_masks"], out["pred_positives"]
