"""Text side of ActionVOS: RoBERTa built from a config, the shared FeatureResizer, and tokenisation.

Source: ReferFormer ``models/referformer.py`` (``forward_text``, ``FeatureResizer``); spec 2 and 3.3.
The tokenizer is never called inside the network (``forward`` takes token ids), so the text graph
exports and the runtime can cache text features per prompt.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from actionvos.errors import InputError

__all__ = ["FeatureResizer", "build_text_encoder", "load_tokenizer", "tokenize"]

log = logging.getLogger(__name__)


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


def load_tokenizer(dir_or_id: str | Path):
    """Load a RoBERTa BPE tokenizer (``RobertaTokenizerFast``).

    Args:
        dir_or_id: a local directory with ``vocab.json`` + ``merges.txt`` (or ``tokenizer.json``), e.g. a copy
            of ``roberta-base``'s tokenizer files; or a hub id such as ``roberta-base``, which is only fetched
            because the caller passed it explicitly.

    Raises:
        InputError: the directory lacks the tokenizer files, or the id cannot be loaded.
    """
    from transformers import RobertaTokenizerFast

    path = Path(dir_or_id)
    if path.exists():
        if not path.is_dir():
            raise InputError(f"tokenizer path {path} is a file; pass the directory that holds vocab.json and merges.txt")
        has_bpe = (path / "vocab.json").is_file() and (path / "merges.txt").is_file()
        if not has_bpe and not (path / "tokenizer.json").is_file():
            raise InputError(
                f"tokenizer directory {path} has neither vocab.json+merges.txt nor tokenizer.json; "
                "copy roberta-base's tokenizer files there"
            )
        return RobertaTokenizerFast.from_pretrained(str(path), local_files_only=True)
    log.info("tokenizer %r is not a local directory: loading it as a hub id", str(dir_or_id))
    try:
        return RobertaTokenizerFast.from_pretrained(str(dir_or_id))
    except Exception as err:  # network down, unknown id, ...
        raise InputError(
            f"cannot load tokenizer {str(dir_or_id)!r} ({type(err).__name__}); pass a local directory with "
            "roberta-base's vocab.json and merges.txt"
        ) from None


def tokenize(tokenizer, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenise prompts as the reference does (``batch_encode_plus(padding="longest")``, no max length, no lowercasing).

    Returns:
        ``input_ids [P, L]`` int64 (``<s>`` = 0 first, ``</s>`` = 2 last, pad = 1) and
        ``attention_mask [P, L]`` int64 (1 = token, 0 = padding).

    Raises:
        InputError: on an empty prompt list or an empty prompt.
    """
    if not prompts or any(not p.strip() for p in prompts):
        raise InputError("every prompt must be a non-empty string")
    enc = tokenizer(list(prompts), padding="longest", return_tensors="pt")
    return enc["input_ids"].long(), enc["attention_mask"].long()
