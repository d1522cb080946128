"""Prompt-embedding cache: text features per prompt, computed once, kept in a bounded LRU, optionally on disk.

Key: ``(model_id, tokenizer_id, prompt text)``. ``model_id`` names the text encoder's weights and precision
(e.g. the checkpoint hash), ``tokenizer_id`` the vocabulary files, so a cache file can never serve features of
another model or tokenizer. Each entry holds one prompt's features trimmed to its own token count; a prompt set
is assembled with :meth:`TextArrays.cat` (right padding, masked; spec 3.3 and ``TextFeatures.cat``).
Persistence: one ``.npz`` written atomically (temporary sibling + rename, :mod:`actionvos.io_utils`).
numpy only (no torch), so every backend can use it.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from actionvos.errors import ConfigError
from actionvos.io_utils import atomic_path

__all__ = ["TextArrays", "CacheStats", "PromptCache"]

log = logging.getLogger(__name__)
_FORMAT = "actionvos-prompt-cache-v1"


@dataclass
class TextArrays:
    """Text features of P prompts as numpy arrays (the :class:`~actionvos.model.actionvos.TextFeatures` layout).

    Attributes:
        word: ``[P, L, 256]`` float32 word features.
        mask: ``[P, L]`` bool, True on padding.
        sentence: ``[P, 256]`` float32 sentence (pooler) features.
    """

    word: np.ndarray
    mask: np.ndarray
    sentence: np.ndarray

    def __len__(self) -> int:
        return int(self.word.shape[0])

    def row(self, i: int) -> "TextArrays":
        """Prompt ``i`` alone, trimmed to its own token count (padding removed)."""
        n = int((~self.mask[i]).sum())
        return TextArrays(self.word[i:i + 1, :n].copy(), self.mask[i:i + 1, :n].copy(), self.sentence[i:i + 1].copy())

    @staticmethod
    def cat(items: list["TextArrays"]) -> "TextArrays":
        """Concatenate along P, right-padding words with zeros and masks with True to the longest L."""
        L = max(t.word.shape[1] for t in items)
        d = items[0].word.shape[2]
        P = sum(len(t) for t in items)
        word = np.zeros((P, L, d), np.float32)
        mask = np.ones((P, L), bool)
        p = 0
        for t in items:
            n, l = t.word.shape[:2]
            word[p:p + n, :l] = t.word
            mask[p:p + n, :l] = t.mask
            p += n
        return TextArrays(word, mask, np.concatenate([t.sentence for t in items]).astype(np.float32, copy=False))


@dataclass
class CacheStats:
    """Counters since the cache was created: lookups that hit/missed, text-encoder runs, LRU evictions, disk loads."""

    hits: int = 0
    misses: int = 0
    encoder_runs: int = 0
    evictions: int = 0
    loaded_from_disk: int = 0


class PromptCache:
    """Bounded LRU of per-prompt :class:`TextArrays` with hit/miss counters and optional ``.npz`` persistence.

    Args:
        model_id: identifies the text encoder (weights hash and precision); part of every key.
        tokenizer_id: identifies the tokenizer files; part of every key.
        capacity: most entries kept (>= 1); the least recently used is evicted first.
        path: optional ``.npz`` file; loaded now when it exists (entries of other models/tokenizers are ignored)
            and rewritten atomically by :meth:`save`.
        enabled: False turns the cache off (every lookup misses and nothing is stored; for benchmarks).
    Raises:
        ConfigError: capacity < 1.
    """

    def __init__(self, model_id: str, tokenizer_id: str, capacity: int = 256, path: str | os.PathLike | None = None,
                 enabled: bool = True):
        if capacity < 1:
            raise ConfigError(f"prompt cache capacity must be >= 1, got {capacity}")
        self.model_id = model_id
        self.tokenizer_id = tokenizer_id
        self.capacity = int(capacity)
        self.path = Path(path) if path is not None else None
        self.enabled = enabled
        self.stats = CacheStats()
        self._entries: OrderedDict[tuple[str, str, str], TextArrays] = OrderedDict()
        self._dirty = False
        if self.path is not None and self.path.is_file() and enabled:
            self._load()

    def key(self, prompt: str) -> tuple[str, str, str]:
        """The cache key of ``prompt``: ``(model_id, tokenizer_id, prompt)``."""
        return (self.model_id, self.tokenizer_id, prompt)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, prompt: str) -> bool:
        return self.key(prompt) in self._entries

    def get_many(self, prompts: list[str], encode) -> TextArrays:
        """Features of ``prompts`` in order, encoding only the misses (in one batch).

        Args:
            prompts: prompt texts (duplicates allowed).
            encode: ``encode(list_of_texts) -> TextArrays`` for the missing prompts (one text-encoder run).
        Returns:
            :class:`TextArrays` of all prompts, right-padded to the longest.
        """
        found: dict[str, TextArrays] = {}
        missing: list[str] = []
        for p in prompts:
            k = self.key(p)
            if self.enabled and k in self._entries:
                self._entries.move_to_end(k)
                found[p] = self._entries[k]
                self.stats.hits += 1
            else:
                self.stats.misses += 1
                if p not in missing:
                    missing.append(p)
        if missing:
            feats = encode(missing)
            self.stats.encoder_runs += 1
            for i, p in enumerate(missing):
                found[p] = feats.row(i)
                if self.enabled:
                    self._put(self.key(p), found[p])
        return TextArrays.cat([found[p] for p in prompts])

    def _put(self, key, value: TextArrays) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        self._dirty = True
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
            self.stats.evictions += 1

    def save(self) -> bool:
        """Write the entries to :attr:`path` atomically when something changed; returns whether it wrote."""
        if self.path is None or not self._dirty or not self.enabled:
            return False
        arrays: dict[str, np.ndarray] = {}
        keys = []
        for i, (k, v) in enumerate(self._entries.items()):
            keys.append(list(k))
            arrays[f"w{i}"], arrays[f"m{i}"], arrays[f"s{i}"] = v.word, v.mask, v.sentence
        arrays["__index__"] = np.frombuffer(json.dumps({"format": _FORMAT, "keys": keys}).encode(), dtype=np.uint8)
        with atomic_path(self.path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        self._dirty = False
        return True

    def _load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as z:
                index = json.loads(z["__index__"].tobytes().decode())
                if index.get("format") != _FORMAT:
                    raise ValueError(f"format {index.get('format')!r}")
                for i, k in enumerate(index["keys"]):
                    key = tuple(k)
                    if key[:2] != (self.model_id, self.tokenizer_id):
                        continue
                    self._entries[key] = TextArrays(z[f"w{i}"], z[f"m{i}"], z[f"s{i}"])
                    self.stats.loaded_from_disk += 1
        except Exception as err:  # a damaged cache is only a lost speed-up
            log.warning("ignoring prompt cache %s (%s: %s); it will be rewritten", self.path, type(err).__name__, err)
            self._entries.clear()
            self.stats.loaded_from_disk = 0
            return
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        log.info("prompt cache: %d entries loaded from %s", len(self._entries), self.path)
