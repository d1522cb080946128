"""Recordings that play at real time: frames are written at their capture timestamps.

The live loop processes frames at its own rate (0.7 FPS on a small CPU, 30 on a GPU), so writing each processed
frame as one frame of a fixed-rate video makes a 20 s session play for 0.3 s. Every sink here takes
``write(frame_rgb, t_seconds)``: the frame and the time it was captured (any clock, seconds; only differences
matter), and the file's timeline follows those times.

* :class:`TimedFrameSink` — that interface (``write`` / ``close`` / ``abort``, ``frames_written``, ``path``).
* :class:`ConstantRateRecorder` — the fallback behind the interface: a constant-rate MP4 (``fps`` output frames per
  second) in which each recorded frame is repeated until the next one's timestamp, so the duration is the session's
  (to one output frame). It writes through :class:`~actionvos.runtime.hud.HudRecorder` (the atomic MP4 writer).
* :func:`open_recorder` — the sink used by ``actionvos camera --record``.

With PyAV installed (a dependency), :func:`open_recorder` returns :class:`actionvos.video_out.H264Writer`, which
takes the timestamps directly as presentation times (H.264, browser-playable); :class:`ConstantRateRecorder` is the
fallback without PyAV.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["TimedFrameSink", "ConstantRateRecorder", "open_recorder", "recorded_seconds"]

#: A gap longer than this between two recorded frames (a source that was down) is not filled frame by frame
#: beyond this many seconds, so a long outage cannot write gigabytes of repeated frames.
MAX_GAP_S = 600.0


@runtime_checkable
class TimedFrameSink(Protocol):
    """A video sink that places each frame at its capture time.

    Attributes:
        path: the final file.
        frames_written: frames given to :meth:`write` (not output frames).
    """

    path: Path
    frames_written: int

    def write(self, frame_rgb: np.ndarray, t_seconds: float) -> None:
        """Append ``frame_rgb`` (``[H, W, 3]`` uint8 RGB) captured at ``t_seconds`` (non-decreasing)."""

    def close(self, t_end: float | None = None) -> None:
        """Finish the file (the last frame is held until ``t_end`` when given) and give it its final name."""

    def abort(self) -> None:
        """Discard the file."""


class ConstantRateRecorder:
    """A :class:`TimedFrameSink` over a constant-rate MP4 writer: frame ``k`` captured at ``t_k`` occupies output
    frames ``round((t_k - t_0) * fps)`` up to the next frame's, so the video lasts ``t_last - t_0`` (+ one frame,
    or up to ``t_end`` given to :meth:`close`).

    Args:
        path: final ``.mp4`` path (written atomically: temporary sibling, renamed on :meth:`close`).
        size: ``(H, W)`` of the recording in pixels; other frame sizes are resized.
        fps: output frames per second (> 0), normally the camera's rate.
    Raises:
        InputError: the MP4 writer cannot be opened at ``path``.
        ValueError: ``fps`` <= 0.
    """

    def __init__(self, path: str | os.PathLike, size: tuple[int, int], fps: float):
        from actionvos.runtime.hud import HudRecorder

        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.path = Path(path)
        self.fps = float(fps)
        self.size = tuple(size)
        self.frames_written = 0
        self.output_frames = 0
        self._writer = HudRecorder(self.path, self.fps, self.size, [])
        self._t0: float | None = None
        self._last_bgr: np.ndarray | None = None

    def _emit(self, bgr: np.ndarray) -> None:
        self._writer.write_bgr(bgr)
        self.output_frames += 1

    def _fill_until(self, t: float) -> None:
        """Repeat the last frame until the output timeline reaches ``t`` (capture clock, seconds)."""
        if self._last_bgr is None or self._t0 is None:
            return
        target = int(round(min(t - self._t0, (self.output_frames / self.fps) + MAX_GAP_S) * self.fps))
        while self.output_frames < target:
            self._emit(self._last_bgr)

    def write(self, frame_rgb: np.ndarray, t_seconds: float) -> None:
        """Append one ``[H, W, 3]`` uint8 RGB frame captured at ``t_seconds``."""
        import cv2

        if self._t0 is None:
            self._t0 = float(t_seconds)
        self._fill_until(float(t_seconds))
        bgr = cv2.cvtColor(np.ascontiguousarray(frame_rgb), cv2.COLOR_RGB2BGR)
        self._emit(bgr)
        self._last_bgr = bgr
        self.frames_written += 1

    def close(self, t_end: float | None = None) -> None:
        """Hold the last frame until ``t_end`` (if given), finish the MP4 and rename it onto :attr:`path`."""
        if t_end is not None:
            self._fill_until(float(t_end))
        self._writer.close()

    def abort(self) -> None:
        self._writer.abort()

    @property
    def duration_s(self) -> float:
        """Seconds of video written so far."""
        return self.output_frames / self.fps


def open_recorder(path: str | os.PathLike, size: tuple[int, int], fps: float) -> TimedFrameSink:
    """The recording sink of ``actionvos camera --record``: frames placed at their capture times.

    :class:`actionvos.video_out.H264Writer` (H.264 / yuv420p, browser-playable, each frame's timestamp as its
    presentation time, verified before it gets its name) when PyAV is installed; else :class:`ConstantRateRecorder`
    (``mp4v``, frames repeated to keep the timeline). ``fps`` is the camera's rate (how long the last frame shows;
    the output rate of the fallback).

    Raises:
        VideoWriteError / InputError: the file cannot be created.
    """
    try:
        import av  # noqa: F401
        from actionvos.video_out import H264Writer
    except ImportError:
        return ConstantRateRecorder(path, size, fps)
    return H264Writer(path, fps, size)


def recorded_seconds(sink: TimedFrameSink) -> float:
    """How long the closed recording plays, in seconds (0.0 when unknown or nothing was written)."""
    info = getattr(sink, "info", None)
    if info is not None and getattr(info, "duration_s", None) is not None:
        return float(info.duration_s)
    return float(getattr(sink, "duration_s", 0.0) or 0.0)
