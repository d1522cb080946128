"""Checkpoint reading, strict loading and preset inference.

Formats: the official release ``{'model': state_dict}`` (optionally with ``optimizer``, ``lr_scheduler``,
``epoch``, ``args``), our own checkpoints (the same plus ``config``: a :meth:`ModelConfig.to_dict`), and a bare
state dict. Always ``torch.load(..., weights_only=True)``.

Strictness (spec 9): the legacy ``text_encoder.embeddings.position_ids`` buffer (transformers < 4.31) and thop's
``total_ops`` / ``total_params`` keys are dropped with a log line; any other missing, unexpected or mis-shaped
key raises one :class:`CheckpointError` listing the counts and the first keys of each kind.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from actionvos.errors import CheckpointError
from actionvos.io_utils import atomic_path
from actionvos.model.config import PRESETS, ModelConfig, RobertaSettings, get_preset

__all__ = [
    "read_checkpoint",
    "infer_config",
    "resolve_config",
    "load_state_dict_strict",
    "load_model",
    "save_checkpoint",
    "file_sha256",
    "weights_sha256",
    "blocked_global",
]

log = logging.getLogger(__name__)

_LEGACY_KEYS = ("text_encoder.embeddings.position_ids",)
_THOP_SUFFIXES = ("total_ops", "total_params")


def file_sha256(path: str | Path, length: int = 16) -> str:
    """First ``length`` hex digits of the file's SHA-256 (used in artifact metadata)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


#: Phrases of torch's ``weights_only`` unpickler when it refuses a class or function (torch 2.1 .. 2.13 wordings:
#: "Unsupported global: GLOBAL x.y was not an allowed global", "Trying to load unsupported GLOBAL posix.system
#: whose module posix is blocked", "WeightsUnpickler error: ..."), matched case-insensitively.
_BLOCKED_PATTERNS = (
    re.compile(r"unsupported\s+global:?\s+(?:GLOBAL\s+)?([\w.<>]+)", re.IGNORECASE),
    re.compile(r"\bGLOBAL\s+([\w.<>]+)\s+(?:was\s+not\s+an\s+allowed|whose\s+module)", re.IGNORECASE),
    re.compile(r"(?:is\s+blocked|not\s+an\s+allowed\s+global|allowlist|safe_globals)", re.IGNORECASE),
)


def blocked_global(message: str) -> str | None:
    """What torch's ``weights_only`` unpickler refused, from its error ``message``; ``None`` when the message is
    not such a refusal (e.g. corrupt bytes: "invalid load key").

    Returns:
        ``"GLOBAL posix.system"``-like text naming the refused class or function, or ``"a non-allowlisted
        Python object"`` when the message says so without a name.
    """
    for i, pattern in enumerate(_BLOCKED_PATTERNS):
        m = pattern.search(message)
        if m:
            return f"GLOBAL {m.group(1)}" if i < 2 else "a non-allowlisted Python object"
    if "weightsunpickler error" in message.lower() and "global" in message.lower():
        return "a non-allowlisted Python object"
    return None


def weights_sha256(state: dict[str, torch.Tensor], length: int = 16) -> str:
    """First ``length`` hex digits of a SHA-256 over a state dict's keys and tensor bytes (sorted by key).

    The identity of the weights a model card names (``checkpoint_sha256``): unlike the file's hash it does not change
    when a checkpoint is re-saved with other entries (a card, a tokenizer, optimizer state).
    """
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode("utf-8"))
        t = state[k].detach().cpu().contiguous()
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:length]


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint file with ``weights_only=True``.

    Returns:
        ``(state_dict, meta)`` where ``meta`` holds the other top-level entries (``config``, ``epoch``, ...).
    Raises:
        CheckpointError: file missing, unreadable/corrupt, not plain weights (arbitrary pickled objects),
            or no state dict inside.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass --checkpoint with the path of a .pth file")
    try:
        # official training checkpoints carry their argparse.Namespace under 'args' (spec 8): allow that one class
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        blocked = blocked_global(str(err))
        if blocked is None:  # not a pickle of objects: the bytes themselves are broken
            raise CheckpointError(
                f"checkpoint {path} cannot be read (corrupt or not a torch.save archive); re-download or re-save it"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} contains Python objects that are not plain weights ({blocked}) and is refused for "
            "safety: unpickling them could run arbitrary code; if you trust its source, re-save it as "
            "{'model': model.state_dict()} (tensors only)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError, TypeError,
            AttributeError, MemoryError, pickle.PickleError) as err:  # a text file gives KeyError, random bytes others
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}); "
            "the file is corrupt or not a torch.save archive"
        ) from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        state = obj["model"]
        meta = {k: v for k, v in obj.items() if k != "model"}
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, meta = obj, {}
    else:
        raise CheckpointError(
            f"checkpoint {path} holds no state dict (expected {{'model': state_dict}} or a bare state dict, "
            f"got {type(obj).__name__})"
        )
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"checkpoint {path}: state-dict entries that are not tensors: {bad[:5]}")
    return state, meta


def _count_blocks(state: dict, prefix: str) -> int:
    idx = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
    return max(idx) + 1 if idx else 0


def infer_config(state: dict[str, torch.Tensor]) -> ModelConfig:
    """Infer the architecture from an official-format state dict's keys and shapes.

    Reads ResNet block counts, encoder/decoder depths, FFN width, RoBERTa depth/width/vocabulary,
    query count and controller size; returns the matching preset when one equals the result,
    else a config named ``inferred``.

    Raises:
        CheckpointError: the state dict is not an ActionVOS/ReferFormer one (the error lists what is missing).
    """
    need = ["backbone.0.body.conv1.weight", "transformer.level_embed", "query_embed.weight",
            "text_encoder.embeddings.word_embeddings.weight", "controller.layers.0.weight",
            "transformer.decoder.layers.0.linear1.weight", "text_encoder.encoder.layer.0.intermediate.dense.weight",
            "text_encoder.embeddings.position_embeddings.weight", "text_encoder.embeddings.token_type_embeddings.weight",
            "pixel_decoder.mask_features.weight"]
    missing = [k for k in need if k not in state]
    if missing:
        sample = list(state)[:5]
        raise CheckpointError(
            f"not an ActionVOS/ReferFormer checkpoint: {len(missing)} required keys missing (first: {missing[:3]}); "
            f"its first keys are {sample}"
        )
    if not any(k.startswith("positive_cls_embed.") for k in state):
        raise CheckpointError(
            "this is a ReferFormer checkpoint without the ActionVOS positive head (no positive_cls_embed.* keys); "
            "it cannot run ActionVOS inference as is: fine-tune it first (actionvos train --init CHECKPOINT)"
        )
    layers = tuple(_count_blocks(state, f"backbone.0.body.layer{i}.") for i in range(1, 5))
    enc = _count_blocks(state, "transformer.encoder.layers.")
    dec = _count_blocks(state, "transformer.decoder.layers.")
    ffn = state["transformer.decoder.layers.0.linear1.weight"].shape[0]
    vocab, hidden = state["text_encoder.embeddings.word_embeddings.weight"].shape
    text_layers = _count_blocks(state, "text_encoder.encoder.layer.")
    inter = state["text_encoder.encoder.layer.0.intermediate.dense.weight"].shape[0]
    n_levels, d = state["transformer.level_embed"].shape
    text = RobertaSettings(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=text_layers, intermediate_size=inter,
        max_position_embeddings=state["text_encoder.embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=state["text_encoder.embeddings.token_type_embeddings.weight"].shape[0],
        num_attention_heads=RobertaSettings().num_attention_heads,
    )
    heads = RobertaSettings().num_attention_heads
    if hidden % heads:
        heads = next(h for h in (8, 4, 2, 1) if hidden % h == 0)
    text = dataclasses.replace(text, num_attention_heads=heads)
    cfg = ModelConfig(
        name="inferred", backbone_layers=layers, backbone_width=state["backbone.0.body.conv1.weight"].shape[0],
        hidden_dim=d, mask_dim=state["pixel_decoder.mask_features.weight"].shape[0],
        dim_feedforward=ffn, enc_layers=enc, dec_layers=dec,
        num_feature_levels=n_levels, num_queries=state["query_embed.weight"].shape[0],
        controller_layers=_count_blocks(state, "controller.layers."), text=text,
    )
    for preset in PRESETS.values():  # the head count is not in the shapes: compare without it
        heads_as_preset = dataclasses.replace(cfg.text, num_attention_heads=preset.text.num_attention_heads)
        if dataclasses.replace(preset, name="inferred") == dataclasses.replace(cfg, text=heads_as_preset):
            return preset
    return cfg


def resolve_config(state: dict, meta: dict, preset: str | None) -> ModelConfig:
    """Pick the config: ``--preset`` if given, else the checkpoint's own ``config``, else inferred; logs the choice."""
    if preset:
        cfg = get_preset(preset)
        log.info("model config: preset %s (from --preset)", cfg.name)
    elif isinstance(meta.get("config"), dict):
        try:
            cfg = ModelConfig.from_dict(meta["config"])
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"the checkpoint's embedded config is invalid: {err}") from None
        log.info("model config: %s (embedded in the checkpoint)", cfg.name)
    else:
        cfg = infer_config(state)
        log.info("model config: %s (inferred from the checkpoint's keys and shapes: ResNet blocks %s, "
                 "enc/dec layers %d/%d, FFN %d, text layers %d, vocab %d)", cfg.name, list(cfg.backbone_layers),
                 cfg.enc_layers, cfg.dec_layers, cfg.dim_feedforward, cfg.text.num_hidden_layers, cfg.text.vocab_size)
    return cfg


def load_state_dict_strict(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` into ``model`` strictly after dropping the known-harmless legacy keys.

    Raises:
        CheckpointError: one error listing counts and the first keys of missing, unexpected and mis-shaped entries.
    """
    state = dict(state)
    dropped = [k for k in state if k in _LEGACY_KEYS or k.endswith(_THOP_SUFFIXES)]
    for k in dropped:
        del state[k]
    if dropped:
        log.info("dropped %d legacy checkpoint keys (transformers<4.31 position_ids / thop counters): %s",
                 len(dropped), dropped[:3])
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shape = [f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}" for k in expected
             if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shape:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shape)):
            if items:
                parts.append(f"{len(items)} {label} (first: {', '.join(items[:3])})")
        raise CheckpointError("checkpoint does not match the model architecture: " + "; ".join(parts)
                              + "; pass the right --preset or a checkpoint of this model")
    model.load_state_dict(state, strict=True)


def load_model(checkpoint: str | Path, preset: str | None = None, device: str | torch.device = "cpu"):
    """Read a checkpoint, choose the config, build the model and load the weights strictly.

    Returns:
        ``(model, cfg, meta)``: the model in eval mode on ``device``, its :class:`ModelConfig`, and the
        checkpoint's other top-level entries (e.g. ``random_weights``).
    Raises:
        CheckpointError: see :func:`read_checkpoint`, :func:`infer_config` and :func:`load_state_dict_strict`.
        ValueError: unknown ``preset``.
    """
    from actionvos.model.builder import build_model

    state, meta = read_checkpoint(checkpoint)
    cfg = resolve_config(state, meta, preset)
    model = build_model(cfg)
    load_state_dict_strict(model, state)
    return model.to(device).eval(), cfg, meta


def save_checkpoint(path: str | Path, model: torch.nn.Module, cfg: ModelConfig, extra: dict | None = None) -> None:
    """Write ``{'model': state_dict, 'config': cfg.to_dict(), **extra}`` atomically (official format plus our config)."""
    obj = {"model": model.state_dict(), "config": cfg.to_dict()}
    obj.update(extra or {})
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
