"""Build a :class:`~actionvos.runtime.session.StreamSession` from command-line style arguments (backend + model files
+ tokenizer + streaming settings + prompt cache). Shared by ``actionvos camera`` and ``actionvos run --stream``."""

from __future__ import annotations

import logging
from pathlib import Path

from actionvos.errors import ConfigError, InputError
from actionvos.runtime.backends.factory import open_backend
from actionvos.runtime.prompt_cache import PromptCache
from actionvos.runtime.session import StreamConfig, StreamSession
from actionvos.runtime.tokenizer import BpeTokenizer

__all__ = ["open_session", "resolve_tokenizer", "prompt_cache_path", "parse_size"]

log = logging.getLogger(__name__)

PROMPT_CACHE_NAME = "prompt_cache.npz"


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"360x640"`` → ``(360, 640)`` (H × W pixels); None passes through.

    Raises:
        ConfigError: not ``HxW`` with positive integers.
    """
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--input-size {text!r} is not HxW, e.g. 360x640") from None
    if h <= 0 or w <= 0:
        raise ConfigError(f"--input-size {text!r} must be positive")
    return h, w


def resolve_tokenizer(tokenizer: str | Path | None, onnx: str | Path | None) -> Path:
    """The tokenizer folder: ``--tokenizer``, else the folder recorded in the ONNX export's metadata if it exists.

    Raises:
        InputError: none given and none recorded.
    """
    if tokenizer is not None:
        return Path(tokenizer)
    if onnx is not None:
        from actionvos.runtime.backends.onnxruntime import read_manifest

        recorded = (read_manifest(onnx).get("options") or {}).get("tokenizer")
        if recorded and Path(recorded).is_dir():
            log.info("tokenizer: %s (recorded at export)", recorded)
            return Path(recorded)
    raise InputError("no tokenizer given; pass --tokenizer with the folder holding roberta-base's vocab.json and merges.txt")


def prompt_cache_path(setting: str | None, checkpoint=None, onnx=None, engine=None) -> Path | None:
    """Where the prompt cache is persisted: ``off``/None → in memory only; ``auto`` → ``prompt_cache.npz`` next to
    the engine / ONNX folder (or ``<checkpoint>.prompt_cache.npz``); anything else is a file path."""
    if setting is None or setting == "off":
        return None
    if setting != "auto":
        return Path(setting)
    if engine is not None or onnx is not None:
        return Path(engine or onnx) / PROMPT_CACHE_NAME
    if checkpoint is not None:
        return Path(str(checkpoint) + ".prompt_cache.npz")
    return None


def open_session(backend: str = "auto", *, checkpoint=None, onnx=None, engine=None, tokenizer=None, device=None,
                 preset=None, threads=None, plugin_library=None, config: StreamConfig | None = None,
                 prompt_cache: str | None = None, cache_capacity: int = 256) -> StreamSession:
    """Load the backend and tokenizer and return a ready session (prompts not set yet).

    Args:
        backend, checkpoint, onnx, engine, device, preset, threads, plugin_library: see
            :func:`~actionvos.runtime.backends.factory.open_backend`.
        tokenizer: tokenizer folder (see :func:`resolve_tokenizer`).
        config: streaming settings.
        prompt_cache: ``off`` (default), ``auto`` or a ``.npz`` path (see :func:`prompt_cache_path`).
        cache_capacity: LRU bound (entries).
    Raises:
        ConfigError / InputError / CheckpointError: bad options or files (one line each).
    """
    config = (config or StreamConfig()).check()
    tok = BpeTokenizer.from_dir(resolve_tokenizer(tokenizer, onnx))
    be = open_backend(backend, checkpoint=checkpoint, onnx=onnx, engine=engine, device=device, preset=preset,
                      threads=threads, plugin_library=plugin_library, window=config.window)
    try:
        cache = PromptCache(be.info.model_id, tok.tokenizer_id, capacity=cache_capacity,
                            path=prompt_cache_path(prompt_cache, checkpoint, onnx, engine))
        session = StreamSession(be, config, tok, cache)
    except BaseException:
        be.close()
        raise
    log.info("session: backend %s, window %d, temporal %s (horizon %d)", be.info.name, config.window, config.temporal,
             config.horizon)
    return session
