"""Cross-modal FPN pixel decoder of ReferFormer (spec 3.7).

Top-down over strides 32 → 16 → 8 using the encoder memory, then stride 4 from backbone res2. At every
level a :class:`VisionLanguageBlock` mixes all frames of a clip in one token sequence (spatial-reduction
self-attention, cross-attention to the words, FFN). Keys: ``adapter_{1..4}``, ``layer_{1..4}``,
``cross_attn_{1..4}``, ``mask_features``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VisionLanguageBlock", "CrossModalFPNDecoder", "ConvNorm"]


class ConvNorm(nn.Conv2d):
    """detectron2-style ``Conv2d`` with an optional ``.norm`` submodule and activation (keys ``weight``, ``norm.*``)."""

    def __init__(self, *args, norm: nn.Module | None = None, relu: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x) if self.relu else x


def _to_tokens(x: torch.Tensor, p: int, t: int) -> torch.Tensor:
    """``[(p t), c, h, w]`` → ``[(t h w), p, c]`` (all frames of a prompt in one sequence)."""
    n, c, h, w = x.shape
    return x.reshape(p, t, c, h * w).permute(1, 3, 0, 2).reshape(t * h * w, p, c)


def _from_tokens(x: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
    """``[(t h w), p, c]`` → ``[(p t), c, h, w]``."""
    p, c = x.shape[1], x.shape[2]
    return x.reshape(t, h * w, p, c).permute(2, 0, 3, 1).reshape(p * t, c, h, w)


class VisionLanguageBlock(nn.Module):
    """Post-norm block: spatially reduced self-attention across frames, cross-attention to text, FFN.

    With ``sr_ratio > 1`` q, k, v are nearest-downsampled to ``(int(h/sr), int(w/sr))`` before the
    self-attention, whose output is bilinearly upsampled back (align_corners=False).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1, sr_ratio: int = 1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.sr_ratio = sr_ratio

    def forward(self, tgt, memory, t, h, w, tgt_key_padding_mask=None, memory_key_padding_mask=None, pos=None,
                query_pos=None):
        """Args:
            tgt: ``[(t h w), P, d]`` vision tokens; memory: ``[L, P, d]`` words; pos: ``[L, P, d]`` text pos;
            query_pos: ``[(t h w), P, d]`` vision pos; tgt_key_padding_mask: ``[P, (t h w)]`` or None;
            memory_key_padding_mask: ``[P, L]`` bool (True = padding).
        Returns ``[(t h w), P, d]``.
        """
        p = tgt.shape[1]
        q = k = tgt + query_pos
        v = tgt
        if self.sr_ratio > 1:
            size = (int(h / self.sr_ratio), int(w / self.sr_ratio))
            q, k, v = (_to_tokens(F.interpolate(_from_tokens(x, t, h, w), size=size, mode="nearest"), p, t)
                       for x in (q, k, v))
            if tgt_key_padding_mask is not None:
                m = tgt_key_padding_mask.reshape(p * t, h, w)
                m = F.interpolate(m[None].float(), size=size, mode="nearest").bool()[0]
                tgt_key_padding_mask = m.reshape(p, t * size[0] * size[1])
        tgt2 = self.self_attn(q, k, value=v, key_padding_mask=tgt_key_padding_mask)[0]
        if self.sr_ratio > 1:
            tgt2 = _from_tokens(tgt2, t, size[0], size[1])
            tgt2 = _to_tokens(F.interpolate(tgt2, size=(h, w), mode="bilinear", align_corners=False), p, t)
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        tgt2 = self.multihead_attn(query=tgt + query_pos, key=memory + pos, value=memory,
                                   key_padding_mask=memory_key_padding_mask)[0]
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2 = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(tgt2))


class CrossModalFPNDecoder(nn.Module):
    """Pixel decoder producing stride-4 mask features ``[(P T), mask_dim, H/4, W/4]``.

    Module ``*_k`` serves stride ``4 * 2**(k-1)``: 1 → 4x (sr 8), 2 → 8x (sr 4), 3 → 16x (sr 2), 4 → 32x (sr 1).
    """

    def __init__(self, conv_dim: int = 256, mask_dim: int = 256, dim_feedforward: int = 2048, nhead: int = 8,
                 sr_ratios=(8, 4, 2, 1), in_channels=(256, 256, 256, 256)):
        """``in_channels``: inputs of adapter_1..4 (res2's channels, then the encoder width three times)."""
        super().__init__()
        for idx, c_in in enumerate(in_channels):
            stage = idx + 1
            adapter = ConvNorm(c_in, conv_dim, 1, bias=False, norm=nn.GroupNorm(8, conv_dim))
            layer = ConvNorm(conv_dim, conv_dim, 3, padding=1, bias=False, norm=nn.GroupNorm(8, conv_dim), relu=True)
            for m in (adapter, layer):  # c2_xavier_fill
                nn.init.kaiming_uniform_(m.weight, a=1)
            self.add_module(f"adapter_{stage}", adapter)
            self.add_module(f"layer_{stage}", layer)
            block = VisionLanguageBlock(conv_dim, nhead, dim_feedforward, sr_ratio=sr_ratios[idx])
            for prm in block.parameters():
                if prm.dim() > 1:
                    nn.init.xavier_uniform_(prm)
            self.add_module(f"cross_attn_{stage}", block)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 3, padding=1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.constant_(self.mask_features.bias, 0)

    def forward(self, res2, res2_pos, memory, memory_pos, words, text_mask, text_pos, num_frames, masks=None):
        """Args:
            res2: ``[(P T), 256, H/4, W/4]`` backbone layer1 output; ``res2_pos`` its 2D encoding (same shape).
            memory: encoder memory at strides 8, 16, 32, each ``[(P T), 256, h, w]``; ``memory_pos`` the backbone
                2D encodings of res3..res5 (same shapes).
            words: ``[L, P, 256]`` word features; text_mask ``[P, L]`` bool (True = padding); text_pos ``[L, P, 256]``
                their 1D sine encoding (the same one the early fusion uses; the reference recomputes it here).
            num_frames: T.  masks: optional padding masks ``[res2, res3, res4, res5]`` each ``[(P T), h, w]``.
        Returns ``[(P T), mask_dim, H/4, W/4]``.
        """
        t = num_frames
        p = words.shape[1]
        levels = [(memory[i], memory_pos[i], i + 2) for i in (2, 1, 0)] + [(res2, res2_pos, 1)]
        y = None
        for feat, pos, stage in levels:
            h, w = feat.shape[-2:]
            vis = _to_tokens(getattr(self, f"adapter_{stage}")(feat), p, t)
            vmask = None if masks is None else masks[stage - 1].reshape(p, t * h * w)
            cur = getattr(self, f"cross_attn_{stage}")(
                vis, words, t, h, w, tgt_key_padding_mask=vmask, memory_key_padding_mask=text_mask, pos=text_pos,
                query_pos=_to_tokens(pos, p, t))
            cur = _from_tokens(cur, t, h, w)
            if y is not None:
                cur = cur + F.interpolate(y, size=cur.shape[-2:], mode="nearest")
            y = getattr(self, f"layer_{stage}")(cur)
        return self.mask_features(y)
