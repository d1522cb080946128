"""Early vision-language fusion (spec 3.4): ``vis = vis * MHA(vis, text + text_pos, text)``.

Multiplicative, no residual, no norm; one module shared by all four feature levels.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["VisionLanguageFusionModule"]


class VisionLanguageFusionModule(nn.Module):
    """``nn.MultiheadAttention(d, nhead, dropout=0)`` under the key ``multihead_attn``."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, memory_key_padding_mask: torch.Tensor | None,
                pos: torch.Tensor) -> torch.Tensor:
        """Args: tgt ``[S, P, d]`` vision tokens; memory ``[L, P, d]`` words; memory_key_padding_mask ``[P, L]`` bool
        (True = padding); pos ``[L, P, d]`` text position encoding. Returns ``[S, P, d]``."""
        attn = self.multihead_attn(query=tgt, key=memory + pos, value=memory,
                                   key_padding_mask=memory_key_padding_mask)[0]
        return tgt * attn
