"""Outputs of offline inference: palette label PNGs, an overlay MP4 and ``summary.json``.

Every file is written atomically (temporary sibling, then rename; :mod:`actionvos.io_utils`), so an
interrupted run leaves whole files only.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from actionvos.errors import ActionVOSError, InputError
from actionvos.io_utils import atomic_path, atomic_write_json

__all__ = [
    "davis_palette",
    "write_label_png",
    "OverlayWriter",
    "ObjectStats",
    "VideoSummary",
    "Summary",
    "write_summary",
    "RANDOM_WEIGHTS_NOTE",
]

RANDOM_WEIGHTS_NOTE = (
    "random-weights checkpoint (pipeline check only): the masks are not meaningful; "
    "use the released ActionVOS weights for real segmentations"
)


def davis_palette(n: int = 256) -> np.ndarray:
    """The DAVIS / PASCAL VOC palette as ``[n, 3]`` uint8 RGB (bit-interleaved label bits).

    0 is black, 1 (128,0,0), 2 (0,128,0), 3 (128,128,0), 4 (0,0,128), ... as in the ActionVOS
    annotation PNGs (spec 3.9 step 5).
    """
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


_PALETTE = davis_palette()


def write_label_png(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write ``labels`` (``[H, W]`` uint8, 0 = background, ``i + 1`` = prompt ``i``) as a palette PNG, atomically.

    Raises:
        ValueError: when ``labels`` is not a 2-D uint8 array.
    """
    from PIL import Image

    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"labels must be [H, W] uint8, got {labels.shape} {labels.dtype}")
    h, w = labels.shape
    img = Image.frombytes("P", (w, h), np.ascontiguousarray(labels).tobytes())
    img.putpalette(_PALETTE.tobytes())
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


class OverlayWriter:
    """MP4 (``mp4v``) of the frames with each object's mask blended in its palette colour and a legend.

    The video is written to a temporary sibling and renamed onto ``path`` by :meth:`close`, so a crash
    never leaves a truncated file under the final name. Use as a context manager, or call
    :meth:`close` (keep what was written) / :meth:`abort` (discard it).
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], names: list[str], alpha: float = 0.5):
        """Open the writer.

        Args:
            path: final ``.mp4`` path.
            fps: frames per second (> 0).
            size: ``(H, W)`` of the frames, in pixels.
            names: object names; object ``i`` is drawn in palette colour ``i + 1``.
            alpha: mask opacity in [0, 1].

        Raises:
            InputError: when OpenCV cannot open an ``mp4v`` writer at ``path``.
        """
        import cv2

        self.path = Path(path)
        self.size = size
        self.names = list(names)
        self.alpha = float(alpha)
        self.frames_written = 0
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        h, w = size
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
        if not self._writer.isOpened():
            self.abort()
            raise InputError(f"cannot write overlay video {str(self.path)!r} (OpenCV has no mp4v encoder?); use --no-overlay")

    def write(self, frame_rgb: np.ndarray, labels: np.ndarray, positive_prob: list[float], passed: list[bool]) -> None:
        """Append one frame.

        Args:
            frame_rgb: ``[H, W, 3]`` uint8 RGB original frame.
            labels: ``[H, W]`` uint8 merged labels (0 background, ``i + 1`` object ``i``).
            positive_prob: per object, the clip's positive probability in [0, 1].
            passed: per object, whether the clip passed the positive gate (spec 3.9 step 3).
        """
        import cv2

        colours = _PALETTE[: len(self.names) + 1].astype(np.float32)
        out = frame_rgb.astype(np.float32)
        mask = labels > 0
        out[mask] = (1 - self.alpha) * out[mask] + self.alpha * colours[labels[mask]]
        bgr = cv2.cvtColor(np.clip(out + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
        self._draw_legend(bgr, positive_prob, passed)
        self._writer.write(bgr)
        self.frames_written += 1

    def _draw_legend(self, bgr: np.ndarray, positive_prob: list[float], passed: list[bool]) -> None:
        import cv2

        h = bgr.shape[0]
        scale = max(0.3, min(1.0, h / 720))
        line = int(22 * scale) + 4
        for i, name in enumerate(self.names):
            y = 4 + i * line
            if y + line > h:
                break
            state = "pass" if passed[i] else "gated"
            text = f"{name}  p={positive_prob[i]:.2f} {state}"
            (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            cv2.rectangle(bgr, (2, y), (2 + line + tw + 6, y + line), (0, 0, 0), -1)
            r, g, b = (int(v) for v in _PALETTE[i + 1])
            cv2.rectangle(bgr, (5, y + 3), (2 + line - 3, y + line - 3), (b, g, r), -1)
            cv2.putText(bgr, text, (2 + line + 3, y + line - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)

    def close(self) -> None:
        """Finish the file and rename it onto ``path`` (also after a partial run). Idempotent.

        With no frame written there is nothing to play (an empty MP4 cannot even be opened), so no file is left.
        """
        if self.frames_written == 0:
            self.abort()
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        """Release the writer and delete the temporary file; ``path`` is left untouched. Idempotent."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            err = RuntimeError("overlay aborted")
            self._ctx.__exit__(RuntimeError, err, None)  # removes the temporary file, does not raise

    def __enter__(self) -> "OverlayWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:
            self.abort()


@dataclass
class ObjectStats:
    """Per-object results of one video; the counts are computed from the written label PNGs' values.

    ``positive_prob`` / ``passed_gate`` are per clip (spec 3.9 step 3 gates whole clips);
    ``passed_any`` is True when at least one clip passed.
    """

    name: str
    prompt: str
    label: int
    positive_prob: list[float] = field(default_factory=list)
    passed_gate: list[bool] = field(default_factory=list)
    frames_with_mask: int = 0
    mask_area_sum: int = 0

    def add_clip(self, positive_prob: float, passed: bool) -> None:
        """Record one clip's gate decision: ``positive_prob`` in [0, 1], ``passed`` = prob >= threshold."""
        self.positive_prob.append(round(float(positive_prob), 6))
        self.passed_gate.append(bool(passed))

    def add_frame(self, labels: np.ndarray) -> None:
        """Record one written frame: ``labels`` is ``[H, W]`` uint8 exactly as stored in its PNG."""
        area = int(np.count_nonzero(labels == self.label))
        self.frames_with_mask += int(area > 0)
        self.mask_area_sum += area

    def to_dict(self) -> dict[str, Any]:
        mean_area = self.mask_area_sum / self.frames_with_mask if self.frames_with_mask else 0.0
        return {
            "name": self.name,
            "prompt": self.prompt,
            "label": self.label,
            "positive_prob": self.positive_prob,
            "passed_gate": self.passed_gate,
            "passed_any": any(self.passed_gate),
            "frames_with_mask": self.frames_with_mask,
            "mean_mask_area_px": round(mean_area, 3),
        }


@dataclass
class VideoSummary:
    """One video's outputs: its frame folder, overlay, size and per-object stats."""

    name: str
    size: tuple[int, int]
    frames_written: int = 0
    clips: int = 0
    overlay: str | None = None
    objects: list[ObjectStats] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "height": self.size[0],
            "width": self.size[1],
            "frames_written": self.frames_written,
            "clips": self.clips,
            "overlay": self.overlay,
            "objects": [o.to_dict() for o in self.objects],
        }


@dataclass
class Summary:
    """Everything ``summary.json`` reports: settings, per-video/per-object stats, time per stage (seconds)."""

    input: str
    input_kind: str
    settings: dict[str, Any]
    weights_note: str | None = None
    videos: list[VideoSummary] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["videos"] = [v.to_dict() for v in self.videos]
        d["timings_s"] = {k: round(v, 4) for k, v in self.timings_s.items()}
        d["frames_written"] = sum(v.frames_written for v in self.videos)
        return d


def write_summary(path: str | os.PathLike, summary: Summary) -> None:
    """Write ``summary`` as JSON to ``path`` atomically."""
    atomic_write_json(path, summary.to_dict())


@contextlib.contextmanager
def summary_on_exit(path: str | os.PathLike, summary: Summary, finish: Callable[[], None]) -> Iterator[Summary]:
    """Record how a run ended and always write its summary (offline and streaming runs share this).

    Ctrl-C sets ``interrupted``; an error sets ``error`` (its one-line message); either is re-raised after
    ``finish()`` (close progress bars, store timings) and the atomic write of ``summary.json`` at ``path``.
    """
    try:
        yield summary
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    except ActionVOSError as err:
        summary.error = str(err)
        raise
    except Exception as err:
        summary.error = f"{type(err).__name__}: {err}"
        raise
    finally:
        finish()
        write_summary(path, summary)
