"""Build a :class:`~actionvos.runtime.session.StreamSession` from command-line style arguments (any artifact + streaming
settings + prompt cache). Shared by ``actionvos camera`` and ``actionvos run --stream``."""

from __future__ import annotations

import logging
from pathlib import Path

from actionvos.errors import ConfigError, InputError
from actionvos.runtime.prompt_cache import PromptCache
from actionvos.runtime.session import StreamConfig, StreamSession

__all__ = ["open_session", "prompt_cache_path", "parse_size"]

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


def prompt_cache_path(setting: str | None, model=None) -> Path | None:
    """Where the prompt cache is persisted: ``off``/None → in memory only; ``auto`` → ``prompt_cache.npz`` inside an
    export / engine folder, or ``<checkpoint>.prompt_cache.npz`` (in memory for the bundled demo); anything else is
    a file path."""
    if setting is None or setting == "off":
        return None
    if setting != "auto":
        return Path(setting)
    if model is None:
        return None
    if Path(model).is_dir():
        return Path(model) / PROMPT_CACHE_NAME
    return Path(str(model) + ".prompt_cache.npz")


def open_session(backend: str = "auto", *, model=None, checkpoint=None, onnx=None, engine=None, tokenizer=None,
                 device=None, preset=None, threads=None, plugin_library=None, config: StreamConfig | None = None,
                 prompt_cache: str | None = None, cache_capacity: int = 256) -> StreamSession:
    """Load any artifact (:func:`actionvos.artifacts.open_model`) and return a ready session (prompts not set yet).

    Args:
        backend, tokenizer, device, preset, threads, plugin_library: see :func:`~actionvos.artifacts.open_model`.
        model / checkpoint / onnx / engine: the artifact (at most one; none = the bundled demo model). Artifacts of
            ours carry their tokenizer; only an official checkpoint needs ``tokenizer``.
        config: streaming settings (their threshold / template overrides are recorded in the card).
        prompt_cache: ``off`` (default), ``auto`` or a ``.npz`` path (see :func:`prompt_cache_path`).
        cache_capacity: LRU bound (entries).
    Raises:
        ConfigError / InputError / CheckpointError: bad options or files (one line each).
    """
    from actionvos.artifacts import open_model

    given = [m for m in (model, checkpoint, onnx, engine) if m is not None]
    if len(given) > 1:
        raise ConfigError("pass one model: --checkpoint, --onnx or --engine (or none for the bundled demo)")
    config = (config or StreamConfig()).check()
    be, tok = open_model(given[0] if given else None, backend=backend, tokenizer=tokenizer, preset=preset,
                         device=device, threads=threads, plugin_library=plugin_library)
    try:
        cache = PromptCache(be.info.card.model_id, tok.sha256, capacity=cache_capacity,
                            path=prompt_cache_path(prompt_cache, given[0] if given else None))
        session = StreamSession(be, config, tok, cache)
    except BaseException:
        be.close()
        raise
    log.info("session: backend %s, window %d, temporal %s (horizon %d)", be.info.name, config.window, config.temporal,
             config.horizon)
    return session
