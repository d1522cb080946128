"""Sine position encodings of ReferFormer (spec 3.2 and 3.3).

* 2D (vision): ``embed = (cumsum(not_mask) - 0.5) / (last + 1e-6) * 2π`` per axis (note the -0.5 shift,
  which DETR does not have), channels ``cat(pos_y, pos_x)``, sin on even / cos on odd indices, interleaved.
* 1D (text): ``embed = cumsum(not_mask) / (last + 1e-6) * 2π`` (no shift), 256 channels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["PositionEmbeddingSine2D", "PositionEmbeddingSine1D"]


def _inverse_frequencies(num_pos_feats: int, temperature: float, device) -> torch.Tensor:
    """``temperature ** (2 * (i // 2) / num_pos_feats)`` for ``i`` in ``[0, num_pos_feats)`` (DETR's divisors)."""
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=device)
    return temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)


def _interleave_sin_cos(x: torch.Tensor) -> torch.Tensor:
    """``[..., C]`` → ``[..., C]`` with ``sin`` of even and ``cos`` of odd channels, interleaved."""
    return torch.stack((x[..., 0::2].sin(), x[..., 1::2].cos()), dim=-1).flatten(-2)


class PositionEmbeddingSine2D(nn.Module):
    """2D sine encoding, ``2 * num_pos_feats`` channels (256 for the model). No parameters."""

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = 2 * math.pi

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """Args: ``mask [N, H, W]`` bool, True on padding. Returns ``[N, 2*num_pos_feats, H, W]`` float32."""
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        eps = 1e-6
        y_embed = (y_embed - 0.5) / (y_embed[:, -1:, :] + eps) * self.scale
        x_embed = (x_embed - 0.5) / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = _inverse_frequencies(self.num_pos_feats, self.temperature, mask.device)
        pos_x = _interleave_sin_cos(x_embed[:, :, :, None] / dim_t)
        pos_y = _interleave_sin_cos(y_embed[:, :, :, None] / dim_t)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class PositionEmbeddingSine1D(nn.Module):
    """1D sine encoding of word positions, ``num_pos_feats`` channels. No parameters."""

    def __init__(self, num_pos_feats: int = 256, temperature: float = 10000.0):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = 2 * math.pi

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """Args: ``mask [B, L]`` bool, True on padding. Returns ``[B, num_pos_feats, L]`` float32."""
        not_mask = ~mask
        x_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = x_embed / (x_embed[:, -1:] + 1e-6) * self.scale
        dim_t = _inverse_frequencies(self.num_pos_feats, self.temperature, mask.device)
        return _interleave_sin_cos(x_embed[:, :, None] / dim_t).permute(0, 2, 1)
