"""Running an exported graph pair (text encoder + segmenter) on calibration clips in ONNX Runtime CPU.

:func:`run_graphs` keeps every output (for the FP16 sensitivity measurement, which compares several converted
graph pairs with one reference on a few clips); :class:`GraphPair` runs one clip at a time (for the accuracy report,
which streams the clips so its memory does not grow with their number).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from actionvos.calibration.clips import CalibrationData
from actionvos.calibration.common import make_session

__all__ = ["SEG_OUTPUTS", "TEXT_OUTPUTS", "GraphRun", "GraphPair", "run_graphs"]

#: segmenter outputs compared by the report: ``pred_logits [P, T, Q, K]``, ``pred_boxes [P, T, Q, 4]``,
#: ``pred_masks [P, T, Q, H/4, W/4]`` (logits), ``pred_positives [P, 1]`` (gate logit); float32.
SEG_OUTPUTS = ("pred_logits", "pred_boxes", "pred_masks", "pred_positives")
#: text outputs compared: ``text_word [P, L, d]``, ``text_sentence [P, d]`` float32 (``text_mask [P, L]`` bool).
TEXT_OUTPUTS = ("text_word", "text_sentence")


@dataclass
class GraphRun:
    """Outputs of one graph pair on a calibration file.

    Attributes:
        seg: per clip a dict ``name -> array`` of the segmenter outputs (float32, :data:`SEG_OUTPUTS`).
        text: per prompt set a dict of the text outputs (``text_word``, ``text_mask``, ``text_sentence``).
        seg_ms: per clip segmenter latency in ms (one run, after one warm-up run).
        text_ms: per prompt set text-graph latency in ms.
    """

    seg: list[dict[str, np.ndarray]]
    text: list[dict[str, np.ndarray]]
    seg_ms: list[float] = field(default_factory=list)
    text_ms: list[float] = field(default_factory=list)


class GraphPair:
    """ONNX Runtime sessions of one text graph + segmenter (paths or serialised bytes), run one clip at a time.

    Attributes:
        text: per prompt set of ``data`` the text outputs (computed on construction, end to end: the segmenter
            reads these features, as the runtime does). text_ms: their latencies in ms.
    """

    def __init__(self, text_model, seg_model, data: CalibrationData, threads: int = 2):
        self.data = data
        text_sess = make_session(text_model, threads)
        self.seg_sess = make_session(seg_model, threads)
        self.text, self.text_ms = [], []
        for s in data.sets:
            t0 = time.perf_counter()
            word, mask, sent = text_sess.run(["text_word", "text_mask", "text_sentence"], s.text_feed())
            self.text_ms.append((time.perf_counter() - t0) * 1e3)
            self.text.append({"text_word": word.astype(np.float32), "text_mask": mask.astype(bool),
                              "text_sentence": sent.astype(np.float32)})
        self._warm = False

    def run_clip(self, i: int, frames: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], float]:
        """Segmenter outputs (float32 :data:`SEG_OUTPUTS`) of clip ``i`` and their latency in ms.

        Args:
            i: clip index in ``data``. frames: the clip's ``[T, 3, H, W]`` uint8 frames when already read.
        """
        feats = self.text[int(self.data.prompt_set[i])]
        feed = {"frames": np.ascontiguousarray(self.data.frames[i] if frames is None else frames), **feats}
        names = list(SEG_OUTPUTS)
        if not self._warm:
            self.seg_sess.run(names, feed)
            self._warm = True
        t0 = time.perf_counter()
        outs = self.seg_sess.run(names, feed)
        ms = (time.perf_counter() - t0) * 1e3
        return {n: o.astype(np.float32) for n, o in zip(names, outs)}, ms


def run_graphs(text_model, seg_model, data: CalibrationData, threads: int = 2, progress: bool = False,
               desc: str = "run") -> GraphRun:
    """Run a text graph and a segmenter (paths or serialised bytes) on every prompt set and clip of ``data``.

    Keeps every output in memory (``len(data)`` × the segmenter outputs): for a few clips. The segmenter reads the
    text features this text graph produced (end to end), as the runtime does.
    """
    pair = GraphPair(text_model, seg_model, data, threads)
    it = range(len(data))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=desc, unit="clip", leave=False)
    seg_out, seg_ms = [], []
    for i in it:
        out, ms = pair.run_clip(i)
        seg_out.append(out)
        seg_ms.append(ms)
    return GraphRun(seg_out, pair.text, seg_ms, pair.text_ms)
