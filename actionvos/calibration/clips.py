"""In-memory calibration data: the clips, their prompt sets, and which source frames each clip holds.

:class:`CalibrationData` is what ``actionvos calibrate collect`` builds (:mod:`~actionvos.calibration.collect`), the
``.npz`` file stores (:mod:`~actionvos.calibration.npz_store`) and the FP16 measurement, the INT8 calibrators and
the accuracy report read. Its ``frames`` are either a numpy array or, when loaded with ``lazy=True``, a
:class:`~actionvos.calibration.npz_store.LazyClipArray` that reads one clip at a time from the file (memory that does
not grow with the number of clips).

Clip identity (used to keep evaluation clips disjoint from calibration clips): a clip holds the frames
``(source name, frame number)`` of ``frame_index[i]``; two clips overlap when they share one such frame.
:meth:`CalibrationData.used_frames` gives the JSON-able record ``{source name: [frame numbers]}`` that FP16/INT8
directories store under ``calibration_frames``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from actionvos.calibration.common import GraphDir
from actionvos.errors import ConfigError, InputError

__all__ = ["DEFAULT_HOLDOUT", "PromptSet", "CalibrationData", "check_compatible", "merge_calibration"]

#: fraction of a calibration file's clips kept out of calibration / FP16 measurement for the accuracy report
#: (every 4th clip; :meth:`CalibrationData.split_holdout`).
DEFAULT_HOLDOUT = 0.25


@dataclass
class PromptSet:
    """The prompts of one video (or dataset sequence) with their tokens and FP32 text features.

    Attributes:
        names: object names (label order). texts: the prompt strings the model reads.
        input_ids, attention_mask: ``[P, L]`` int64 (RoBERTa ids, pad = 1; 1 = token).
        text_word: ``[P, L, d]`` float32. text_mask: ``[P, L]`` bool (True = padding). text_sentence: ``[P, d]`` float32.
    """

    names: list[str]
    texts: list[str]
    input_ids: np.ndarray
    attention_mask: np.ndarray
    text_word: np.ndarray
    text_mask: np.ndarray
    text_sentence: np.ndarray

    def text_feed(self) -> dict[str, np.ndarray]:
        """Feed of ``text_encoder.onnx``."""
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}

    def features(self) -> dict[str, np.ndarray]:
        """The stored FP32 text features as segmenter inputs."""
        return {"text_word": self.text_word, "text_mask": self.text_mask, "text_sentence": self.text_sentence}


@dataclass
class CalibrationData:
    """Calibration clips and prompt sets (see the module docstring for the layout).

    Attributes:
        frames: ``[N, T, 3, H, W]`` uint8 RGB at the graph's input size (an array, or a
            :class:`~actionvos.calibration.npz_store.LazyClipArray` that reads clip ``i`` on ``frames[i]``).
        prompt_set: ``[N]`` int32. source: ``[N]`` int32. frame_index: ``[N, T]`` int64.
        sets: the :class:`PromptSet` list. meta: JSON-able metadata. path: file it was loaded from (if any).
    """

    frames: np.ndarray
    prompt_set: np.ndarray
    source: np.ndarray
    frame_index: np.ndarray
    sets: list[PromptSet]
    meta: dict[str, Any]
    path: Path | None = None

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def input_size(self) -> dict[str, int]:
        """``{"frames": T, "height": H, "width": W}``."""
        inp = self.meta["input"]
        return {"frames": int(inp["frames"]), "height": int(inp["height"]), "width": int(inp["width"])}

    @property
    def model_hash(self) -> str:
        return str(self.meta["model_hash"])

    @property
    def source_names(self) -> list[str]:
        """Display name of every source (``box``, ``minivisor/val/00000001_box_move_box``, ...)."""
        return [s["name"] for s in self.meta["sources"]]

    @property
    def source_groups(self) -> list[str]:
        """Per source the group it is reported under: the video name, or ``{dataset}/{split}`` for dataset sequences."""
        return [s.get("group", s["name"]) for s in self.meta["sources"]]

    def segmenter_feed(self, i: int, text: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Feed of ``segmenter.onnx`` for clip ``i``: its frames plus ``text`` (default: the stored FP32 features)."""
        feats = text if text is not None else self.sets[int(self.prompt_set[i])].features()
        return {"frames": np.ascontiguousarray(self.frames[i]), **feats}

    def subset(self, idx: Sequence[int]) -> "CalibrationData":
        """The clips ``idx`` (prompt sets and metadata shared)."""
        idx = np.asarray(idx, dtype=np.int64)
        return CalibrationData(self.frames[idx], self.prompt_set[idx], self.source[idx], self.frame_index[idx],
                               self.sets, self.meta, self.path)

    def spread(self, n: int | None) -> "CalibrationData":
        """At most ``n`` clips, evenly spread over the file (all when ``n`` is None or >= N)."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ConfigError(f"the number of clips must be >= 1, got {n}")
        return self.subset(np.unique(np.round(np.linspace(0, len(self) - 1, n)).astype(np.int64)))

    def in_memory(self) -> "CalibrationData":
        """The same clips with ``frames`` read into an array (for a few clips that are run many times)."""
        return CalibrationData(np.asarray(self.frames), self.prompt_set, self.source, self.frame_index, self.sets,
                               self.meta, self.path)

    def split_holdout(self, fraction: float) -> tuple["CalibrationData", "CalibrationData"]:
        """``(calibration pool, held out)``: every ``round(1 / fraction)``-th clip (the ``k-1``-th, ``2k-1``-th, ...)
        is held out for the accuracy report; ``fraction`` 0 holds out nothing.

        Raises:
            ConfigError: ``fraction`` outside [0, 0.5].
        """
        if not 0.0 <= float(fraction) <= 0.5:
            raise ConfigError(f"--holdout must be in [0, 0.5] (fraction of clips kept out of calibration), got {fraction}")
        idx = np.arange(len(self))
        if fraction == 0:
            return self, self.subset(idx[:0])
        k = max(2, int(round(1.0 / float(fraction))))
        held = idx % k == k - 1
        return self.subset(idx[~held]), self.subset(idx[held])

    def used_frames(self) -> dict[str, list[int]]:
        """``{source name: sorted frame numbers}`` of every frame these clips hold (JSON-able record)."""
        names = self.source_names
        out: dict[str, set[int]] = {}
        for i in range(len(self)):
            out.setdefault(names[int(self.source[i])], set()).update(int(f) for f in self.frame_index[i])
        return {k: sorted(v) for k, v in out.items()}

    def overlaps(self, used: dict[str, Sequence[int]]) -> np.ndarray:
        """``[N]`` bool: clip ``i`` holds at least one frame of ``used`` (``{source name: frame numbers}``)."""
        names = self.source_names
        sets = {k: set(int(f) for f in v) for k, v in used.items()}
        return np.array([bool(sets.get(names[int(self.source[i])], set()) & set(int(f) for f in self.frame_index[i]))
                         for i in range(len(self))], dtype=bool)

    def clip_name(self, i: int) -> str:
        """``{source name}@{first}-{last}`` (frame numbers of clip ``i``; ``@{n}`` for one-frame clips)."""
        a, b = int(self.frame_index[i, 0]), int(self.frame_index[i, -1])
        return f"{self.source_names[int(self.source[i])]}@{a}" + (f"-{b}" if b != a else "")


def check_compatible(data: CalibrationData, graphs: GraphDir, what: str = "--data") -> None:
    """Check that ``data`` was collected for the model and input size of ``graphs``.

    Raises:
        InputError: different clip length / input size, different model hash, or different text-feature width.
    """
    name = str(data.path) if data.path else "calibration data"
    d, g = data.input_size, graphs.input_size
    if (d["frames"], d["height"], d["width"]) != (g["frames"], g["height"], g["width"]):
        raise InputError(
            f"{what} {name!r} holds {d['frames']}x{d['height']}x{d['width']} (TxHxW) clips but the graphs in "
            f"{str(graphs.path)!r} take {g['frames']}x{g['height']}x{g['width']}; re-run actionvos calibrate collect "
            f"with --onnx {graphs.path}")
    if data.model_hash != graphs.model_hash:
        raise InputError(
            f"{what} {name!r} was collected for model {data.model_hash} but {str(graphs.path)!r} holds model "
            f"{graphs.model_hash}; re-run actionvos calibrate collect with --onnx {graphs.path}")
    dim = data.sets[0].text_word.shape[-1]
    if dim != graphs.hidden_dim:
        raise InputError(f"{what} {name!r} has {dim}-wide text features but the graphs take {graphs.hidden_dim}; "
                         f"re-run actionvos calibrate collect with --onnx {graphs.path}")


def merge_calibration(a: CalibrationData, b: CalibrationData) -> CalibrationData:
    """Append ``b``'s clips, prompt sets and sources to ``a`` (for ``collect --append``).

    Raises:
        InputError: different input size or model hash.
    """
    if a.input_size != b.input_size or a.model_hash != b.model_hash:
        raise InputError(
            f"cannot append: the existing file holds {a.input_size} clips of model {a.model_hash}, the new clips are "
            f"{b.input_size} of model {b.model_hash}; write a new file instead of --append")
    meta = dict(a.meta)
    meta["sources"] = list(a.meta["sources"]) + list(b.meta["sources"])
    meta["prompt_sets"] = list(a.meta["prompt_sets"]) + list(b.meta["prompt_sets"])
    meta["sampling"] = dict(a.meta.get("sampling", {}), appended=a.meta.get("sampling", {}).get("appended", 0) + 1)
    return CalibrationData(
        np.concatenate([a.frames, b.frames]), np.concatenate([a.prompt_set, b.prompt_set + len(a.sets)]),
        np.concatenate([a.source, b.source + len(a.meta["sources"])]), np.concatenate([a.frame_index, b.frame_index]),
        a.sets + b.sets, meta)
