"""The one output sink of every driver: palette PNGs, the overlay MP4, the probability plot and ``summary.json``.

Layout of ``{output}`` (spec 3.9 step 5; the official ``{output}/{split}/{video}`` layout for expression files is
chosen by the caller through ``output``):

* ``{video}/{frame}.png`` — ``[H, W]`` uint8 palette PNG, 0 background, ``i + 1`` object ``i``;
* ``{video}_overlay.mp4`` — H.264 overlay with the legend ``box 0.716 ≥ 0.62 ✓`` (:mod:`actionvos.render`);
* ``{video}_positive_prob.png`` — each object's positive probability per frame with the gate threshold line;
* ``summary.json`` — the card's facts (checkpoint hash, precision, input rule, thresholds, tokenizer), the rule,
  per-video / per-object results (per clip and per frame), the time per stage.

Names that become paths are checked to stay inside ``output`` (:func:`actionvos.io_utils.safe_child`).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from actionvos.card import ModelCard
from actionvos.inference.writers import ObjectStats, OverlayWriter, VideoSummary, write_label_png
from actionvos.io_utils import safe_child
from actionvos.pipeline.drivers import FrameResult
from actionvos.prompts import Prompt

__all__ = ["VideoSink"]

log = logging.getLogger(__name__)


class VideoSink:
    """Writes one video's outputs as its frames' results arrive (any driver, any backend).

    Args:
        output_dir: the run's output folder.
        name: the video's name (a data-file name: checked to stay inside ``output_dir``).
        fps: playback rate of the overlay (frames per second).
        size: ``(H, W)`` of the frames in pixels.
        prompts: the video's prompts (object ``i`` → label ``i + 1``).
        card: the card the run used (its threshold is drawn in the legend and the plot).
        summary: the :class:`VideoSummary` to fill.
        overlay: also write the overlay MP4.
        plot: also write the probability plot.
        rule: ``clip`` or ``causal`` (the plot draws per-clip values as steps).
    Raises:
        InputError: a name that would leave ``output_dir``.
    """

    def __init__(self, output_dir: Path, name: str, fps: float, size: tuple[int, int], prompts: list[Prompt],
                 card: ModelCard, summary: VideoSummary, *, overlay: bool = True, plot: bool = True, rule: str = "clip",
                 threshold: float | None = None):
        self.output_dir = Path(output_dir)
        self.frame_dir = safe_child(self.output_dir, name, what="video name", nested=True)
        self.frame_dir.mkdir(parents=True, exist_ok=True)
        self.summary = summary
        self.card = card
        self.threshold = card.thresholds.pos_cls_thres if threshold is None else float(threshold)
        self.rule = rule
        self.plot = plot
        self.fps = fps
        summary.objects = [ObjectStats(name=p.name, prompt=p.text, label=i + 1) for i, p in enumerate(prompts)]
        self.overlay_path = safe_child(self.output_dir, f"{name}_overlay.mp4", what="video name", nested=True)
        self.plot_path = safe_child(self.output_dir, f"{name}_positive_prob.png", what="video name", nested=True)
        self._writer = (OverlayWriter(self.overlay_path, fps, size, [p.name for p in prompts], threshold=self.threshold)
                        if overlay else None)
        self._clip: int | None = None
        self._clip_starts: list[int] = []

    def write(self, frame_name: str, frame: np.ndarray, result: FrameResult) -> None:
        """Write one frame's PNG (and overlay frame) and record its statistics.

        Args:
            frame_name: the frame's file stem (checked to stay inside the video folder).
            frame: ``[H, W, 3]`` uint8 RGB original frame.
            result: the driver's :class:`FrameResult` for it.
        """
        write_label_png(safe_child(self.frame_dir, f"{frame_name}.png", what="frame name"), result.labels)
        new_clip = result.clip is None or result.clip != self._clip
        if new_clip:
            self._clip = result.clip
            self._clip_starts.append(self.summary.frames_written)
            self.summary.clips += 1
        for obj, o in zip(self.summary.objects, result.objects):
            if new_clip:
                obj.add_clip(o.positive_prob, o.passed_gate, o.selected_query)
            obj.add_frame(result.labels, o.positive_prob)
        if self._writer is not None:
            self._writer.write(frame, result.labels, [o.positive_prob for o in result.objects],
                               [o.passed_gate for o in result.objects])
        self.summary.frames_written += 1

    def close(self, ok: bool = True) -> None:
        """Finish the overlay (verified, then renamed into place) and draw the plot; name them in the summary.

        ``ok=False`` (an error, not an interrupt) discards the overlay."""
        try:
            if self._writer is not None:
                if ok:
                    self._writer.close()
                else:
                    self._writer.abort()
        finally:
            if self._writer is not None and self.overlay_path.is_file():
                self.summary.overlay = self.overlay_path.name
        if self.plot and ok and self.summary.frames_written:
            from actionvos.plots import plot_positive_probs

            series = {o.name: o.positive_prob_per_frame for o in self.summary.objects}
            plot_positive_probs(self.plot_path, series, self.threshold, fps=self.fps,
                                clip_starts=self._clip_starts if self.rule == "clip" else None,
                                title=f"{self.summary.name}: positive probability ({self.rule} rule)")
            self.summary.plot = self.plot_path.name

    @contextlib.contextmanager
    def opened(self):
        """Context manager: :meth:`close` on success or interrupt (keeping what was written), discard on error."""
        try:
            yield self
        except (KeyboardInterrupt, GeneratorExit):
            self.close(ok=True)
            raise
        except BaseException:
            self.close(ok=False)
            raise
        else:
            self.close(ok=True)


def settings_of(card: ModelCard, rule: str, backend_name: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``settings`` block of ``summary.json``: the card (truthfully, overrides included), the rule, the backend."""
    return {"rule": rule, "backend": backend_name, "card": card.summary(), **(extra or {})}
