"""Text side of ActionVOS: RoBERTa built from a config and the shared FeatureResizer (tokenisation: :mod:`actionvos.tokenizer`).

Source: ReferFormer ``models/referformer.py`` (``forward_text``, ``FeatureResizer``); spec 2 and 3.3.
The tokenizer is never called inside the network (``forward`` takes token ids), so the text graph
exports and the runtime can cache text features per prompt.
"""

from __future__ import annotations


import torch
from torch import nn


__all__ = ["FeatureResizer", "build_text_encoder"]



class FeatureResizer(nn.Module):
    """``Linear(768→256) → LayerNorm(256, eps=1e-12) → Dropout`` (one module shared by words and sentence)."""

    def __init__(self, input_feat_size: int, output_feat_size: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(input_feat_size, output_feat_size, bias=True)
        self.layer_norm = nn.LayerNorm(output_feat_size, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., 768]`` → ``[..., 256]``."""
        return self.dropout(self.layer_norm(self.fc(x)))


def build_text_encoder(settings) -> nn.Module:
    """Build a randomly initialised ``transformers.RobertaModel`` (with pooler, eager attention).

    Args:
        settings: :class:`actionvos.model.config.RobertaSettings`. Weights come from the checkpoint;
            nothing is downloaded.
    """
    from transformers import RobertaModel

    cfg = settings.to_hf()
    model = RobertaModel(cfg, add_pooling_layer=True)
    model.config._attn_implementation = "eager"
    return model
