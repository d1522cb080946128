"""``CalibrationDataReader`` s of the INT8 calibration: the stored clips and prompt sets, one feed at a time.

The readers hold the (small) prompt sets and read each clip when asked (``data.frames`` may be a lazy view of the
file, :class:`~actionvos.calibration.npz_store.LazyClipArray`), so they never hold all clips; ``rewind`` starts
again (the histogram calibrators read the data twice, :mod:`~actionvos.calibration.int8_calibrators`).
"""

from __future__ import annotations

import numpy as np

from actionvos.calibration.clips import CalibrationData

__all__ = ["uniform_prompt_sets", "SegmenterReader", "TextReader", "FrameEncoderReader", "WindowDecoderReader"]


def _reader_base():
    from onnxruntime.quantization import CalibrationDataReader

    return CalibrationDataReader


def uniform_prompt_sets(data: CalibrationData) -> list[dict[str, np.ndarray]]:
    """Every prompt set padded to the largest P and L of the file (ONNX Runtime's own histogram calibrators stack
    each tensor over the batches, so all batches need one shape; the streaming calibrators here do not need it, but
    keep it so that their ranges equal ORT's on the same feeds).

    Tokens are right-padded with the pad id and ``attention_mask`` 0, text features with zeros and ``text_mask``
    True, exactly as the runtime concatenates prompt sets (:meth:`actionvos.runtime.prompt_cache.TextArrays.cat`);
    masked positions do not change the other positions' values. Missing prompts repeat the set's prompts in order.
    """
    P = max(len(s.texts) for s in data.sets)
    L = max(s.input_ids.shape[1] for s in data.sets)
    out = []
    for s in data.sets:
        rows = [i % len(s.texts) for i in range(P)]
        p_, l_ = s.input_ids.shape
        ids = np.ones((P, L), np.int64)  # RoBERTa pad id 1
        am = np.zeros((P, L), np.int64)
        word = np.zeros((P, L, s.text_word.shape[-1]), np.float32)
        tmask = np.ones((P, L), bool)
        ids[:, :l_], am[:, :l_] = s.input_ids[rows], s.attention_mask[rows]
        word[:, :l_], tmask[:, :l_] = s.text_word[rows], s.text_mask[rows]
        out.append({"input_ids": ids, "attention_mask": am, "text_word": word, "text_mask": tmask,
                    "text_sentence": s.text_sentence[rows].astype(np.float32)})
    return out


class SegmenterReader(_reader_base()):
    """``CalibrationDataReader`` over the stored clips: ``frames [T, 3, H, W]`` uint8 + the clip's FP32 text
    features, padded to one P and L for the whole file (:func:`uniform_prompt_sets`)."""

    def __init__(self, data: CalibrationData):
        self.data = data
        self.sets = uniform_prompt_sets(data)
        self.i = 0
        self.n = len(data)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.data):
            return None
        s = self.sets[int(self.data.prompt_set[self.i])]
        feed = self.data.segmenter_feed(self.i, {k: s[k] for k in ("text_word", "text_mask", "text_sentence")})
        self.i += 1
        return feed

    def rewind(self) -> None:
        self.i = 0

    def __len__(self) -> int:
        return self.n


class TextReader(_reader_base()):
    """``CalibrationDataReader`` over the stored prompt sets: ``input_ids`` / ``attention_mask`` ``[P, L]`` int64
    (padded to one P and L, :func:`uniform_prompt_sets`)."""

    def __init__(self, data: CalibrationData):
        self.sets = uniform_prompt_sets(data)
        self.i = 0
        self.n = len(self.sets)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.sets):
            return None
        s = self.sets[self.i]
        self.i += 1
        return {"input_ids": s["input_ids"], "attention_mask": s["attention_mask"]}

    def rewind(self) -> None:
        self.i = 0

    def __len__(self) -> int:
        return self.n


class FrameEncoderReader(_reader_base()):
    """``CalibrationDataReader`` of the clip rule's frame encoder: ``frames [1, 3, H, W]`` uint8, every frame of
    every clip (``N × T`` feeds), one clip read at a time."""

    def __init__(self, data: CalibrationData):
        self.data = data
        self.T = int(data.input_size["frames"])
        self.n = len(data) * self.T
        self.i = 0
        self._clip: tuple[int, np.ndarray] | None = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= self.n:
            return None
        c, t = divmod(self.i, self.T)
        if self._clip is None or self._clip[0] != c:
            self._clip = (c, self.data.frames[c])
        self.i += 1
        return {"frames": np.ascontiguousarray(self._clip[1][t:t + 1])}

    def rewind(self) -> None:
        self.i = 0
        self._clip = None

    def __len__(self) -> int:
        return self.n


class WindowDecoderReader(_reader_base()):
    """``CalibrationDataReader`` of the clip rule's window decoder: per clip the FP32 frame encoder's features of its
    ``T`` frames (``res2``, ``proj0..3`` ``[T, C, h, w]`` float32, computed on the fly with ONNX Runtime CPU) and the
    clip's FP32 text features padded to one P and L (:func:`uniform_prompt_sets`)."""

    def __init__(self, data: CalibrationData, frame_encoder, threads: int = 2):
        from actionvos.calibration.common import make_session

        self.data = data
        self.sets = uniform_prompt_sets(data)
        self.encoder = make_session(frame_encoder, threads)
        self.names = [o.name for o in self.encoder.get_outputs()]
        self.n = len(data)
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= self.n:
            return None
        clip = self.data.frames[self.i]
        feats = [self.encoder.run(self.names, {"frames": np.ascontiguousarray(clip[t:t + 1])}) for t in range(len(clip))]
        s = self.sets[int(self.data.prompt_set[self.i])]
        self.i += 1
        feed = {n: np.concatenate([f[k] for f in feats]).astype(np.float32) for k, n in enumerate(self.names)}
        feed.update({k: s[k] for k in ("text_word", "text_mask", "text_sentence")})
        return feed

    def rewind(self) -> None:
        self.i = 0

    def __len__(self) -> int:
        return self.n
