"""Browser-playable MP4 output: H.264 (``avc1``, ``yuv420p``) through PyAV, verified before it gets its name.

Browsers, GitHub, Slack and VS Code play H.264 in yuv420p; they do not play OpenCV's ``mp4v``. PyAV's wheels ship
libx264, so no system FFmpeg is needed.

* :class:`H264Writer` — frames in (``[H, W, 3]`` uint8 RGB), optionally with their timestamps in seconds, so a
  live recording plays in real time. The file is written under a temporary name in the target folder, closed,
  re-opened and checked (:func:`probe_video`: codec, pixel format, frame count), and only then renamed onto
  its final name (:func:`actionvos.io_utils.atomic_path`). Any failure (full disk, unwritable folder, a file
  that does not read back) leaves nothing under the final name and raises :class:`VideoWriteError`.
* :func:`probe_video` — codec, pixel format, size, frame count and duration of an MP4 (reads packets, decodes
  the first frame only).

Example (a camera loop)::

    with H264Writer("rec.mp4", fps=30) as rec:          # size taken from the first frame
        for frame_rgb, t_capture in frames:              # t_capture: time.monotonic() of the capture
            rec.write(frame_rgb, t_capture)              # the first t is time zero
    # rec.mp4 now exists, plays for (last t - first t + 1/fps) seconds
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from actionvos.errors import ActionVOSError
from actionvos.io_utils import atomic_path

__all__ = ["H264Writer", "VideoInfo", "VideoWriteError", "probe_video", "TIME_BASE"]

TIME_BASE = Fraction(1, 90000)
"""Timestamp unit of the written streams (the MPEG 90 kHz clock): timestamps are rounded to 1/90000 s."""


class VideoWriteError(ActionVOSError, OSError):
    """A video could not be written or did not read back; nothing was left under its final name.

    Both an :class:`~actionvos.errors.ActionVOSError` (the CLI prints one line) and an :class:`OSError`
    (``errno`` is the underlying one when known, ``filename`` the final path).
    """

    def __init__(self, message: str, path: str | os.PathLike, errno: int | None = None):
        super().__init__(message)
        self.errno = errno
        self.filename = str(path)

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` found: ``codec`` (e.g. ``"h264"``), ``codec_tag`` (``"avc1"``), ``pix_fmt``
    (``"yuv420p"``), ``width`` / ``height`` in pixels, ``frames`` (video packets), ``duration_s`` (seconds)."""

    codec: str
    codec_tag: str
    pix_fmt: str
    width: int
    height: int
    frames: int
    duration_s: float


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Open ``path`` with PyAV and report its first video stream (see :class:`VideoInfo`).

    Frames are counted by demuxing every packet (cheap) and the first frame is decoded, so a file whose index
    (``moov``) or first frame is damaged fails here.

    Raises:
        VideoWriteError: the file cannot be opened, has no video stream, or its first frame does not decode.
    """
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise VideoWriteError(f"{path} has no video stream", path)
            s = c.streams.video[0]
            cc = s.codec_context
            frames, last_end, first_ok = 0, 0.0, False
            for pkt in c.demux(s):
                if pkt.size == 0:
                    continue
                frames += 1
                if pkt.pts is not None and pkt.time_base is not None:
                    last_end = max(last_end, float((pkt.pts + (pkt.duration or 0)) * pkt.time_base))
                if not first_ok:
                    for _ in pkt.decode():
                        first_ok = True
            if frames and not first_ok:  # the encoder may need more than one packet before the first frame
                first_ok = any(True for _ in s.codec_context.decode(None))
            if frames and not first_ok:
                raise VideoWriteError(f"{path}: no frame decodes", path)
            if s.duration is not None:  # the container's own (mp4: sum of the sample durations)
                duration = float(s.duration * s.time_base)
            elif c.duration is not None:
                duration = c.duration / 1e6
            else:
                duration = last_end - (float(s.start_time * s.time_base) if s.start_time is not None else 0.0)
            return VideoInfo(codec=cc.name, codec_tag=str(s.codec_tag), pix_fmt=str(cc.pix_fmt), width=cc.width,
                             height=cc.height, frames=frames, duration_s=max(0.0, duration))
    except VideoWriteError:
        raise
    except (OSError, av.FFmpegError) as err:
        raise VideoWriteError(f"{path} cannot be read as a video: {err}", path, getattr(err, "errno", None)) from err


class H264Writer:
    """Write ``[H, W, 3]`` uint8 RGB frames to an H.264 / yuv420p MP4 (``avc1``, ``+faststart``), atomically.

    Timestamps: :meth:`write` takes an optional time ``t`` in seconds for each frame. The first frame's ``t`` is
    time zero (so ``time.monotonic()`` readings can be passed as they are); without ``t`` the frame is placed at
    ``index / fps``. Do not mix the two in one file. Timestamps must not go backwards; two equal ones are moved
    apart by one tick (1/90000 s). The last frame is shown for ``1 / fps``, so the file plays for
    ``t_last - t_first + 1 / fps`` seconds, or until ``t_end`` given to :meth:`close`. The interface matches
    :class:`actionvos.runtime.recording.TimedFrameSink` (``write(frame_rgb, t_seconds)``, ``close(t_end)``,
    ``abort()``, ``path``, ``frames_written``).

    Odd sizes: yuv420p needs an even width and height, so a frame with an odd one is **padded** by one pixel
    (a copy of its last row / column) at the bottom / right; nothing is cropped. :attr:`video_size` is the
    size in the file.

    Lifecycle: frames go to a temporary file next to ``path``. :meth:`close` finishes it, verifies it
    (:func:`probe_video`: codec h264, yuv420p, as many frames as written) and renames it onto ``path``; with
    no frame written nothing is created. :meth:`abort` discards it. As a context manager, a normal exit or
    Ctrl-C closes (keeps what was written), any other exception aborts.

    Raises (from the constructor, :meth:`write` and :meth:`close`):
        VideoWriteError: the file cannot be created or written (``errno`` kept: ENOSPC, EACCES, ...) or does not
            verify; the temporary file is removed and nothing exists under ``path``.
        ValueError: a frame that is not ``[H, W, 3]`` uint8, whose size differs from the first, or a bad ``t``.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int] | None = None, *,
                 crf: int = 20, preset: str = "veryfast"):
        """Create the temporary output file.

        Args:
            path: final ``.mp4`` path (its folder is created if missing).
            fps: nominal frames per second (> 0): the rate without timestamps, and the last frame's duration.
            size: ``(H, W)`` of the frames in pixels; None = the first frame's.
            crf: x264 constant rate factor (0 = lossless … 51; 18–23 look clean).
            preset: x264 speed preset (``ultrafast`` … ``veryslow``); ``veryfast`` keeps up with live video.
        """
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        self.path = Path(path)
        self.fps = float(fps)
        self.size: tuple[int, int] | None = None if size is None else (int(size[0]), int(size[1]))
        self.crf, self.preset = int(crf), str(preset)
        self.frames_written = 0
        self.info: VideoInfo | None = None
        self._container = None
        self._stream = None
        self._t0: float | None = None
        self._last_pts = -1
        self._timed: bool | None = None
        self._encoded = 0  # frames given to the encoder (frames_written + the one close(t_end) may repeat)
        self._last_frame = None
        self._ctx = atomic_path(self.path)
        try:
            self._tmp = self._ctx.__enter__()
        except OSError as err:
            raise self._error(err, "cannot create") from err
        self._open = True
        try:
            import av

            self._container = av.open(str(self._tmp), "w", format="mp4", options={"movflags": "+faststart"})
        except Exception as err:
            self.abort()
            raise self._error(err, "cannot create") from err

    # ------------------------------------------------------------------------------------------------ helpers
    def _error(self, err: BaseException, what: str) -> VideoWriteError:
        errno = getattr(err, "errno", None)
        reason = os.strerror(errno) if isinstance(errno, int) and errno > 0 else str(err)
        return VideoWriteError(f"{what} video {str(self.path)!r}: {reason}; nothing was written under that name "
                               "(check free space and permissions of the folder, or choose another output)",
                               self.path, errno if isinstance(errno, int) else None)

    @property
    def video_size(self) -> tuple[int, int] | None:
        """``(H, W)`` in the file: :attr:`size` rounded up to even numbers (None before the first frame)."""
        if self.size is None:
            return None
        return self.size[0] + self.size[0] % 2, self.size[1] + self.size[1] % 2

    def _add_stream(self) -> None:
        vh, vw = self.video_size
        rate = Fraction(self.fps).limit_denominator(100000)
        # bf=0: no B-frames, so decode order = presentation order and the MP4's duration (from decode times)
        # equals the presentation end even with irregular timestamps (with B-frames it came out short).
        s = self._container.add_stream("libx264", rate=rate, options={"crf": str(self.crf), "preset": self.preset, "bf": "0"})
        s.width, s.height, s.pix_fmt = vw, vh, "yuv420p"
        s.codec_context.time_base = TIME_BASE
        s.time_base = TIME_BASE
        self._stream = s

    def _pts(self, t: float | None) -> int:
        timed = t is not None
        if self._timed is None:
            self._timed = timed
        elif self._timed != timed:
            raise ValueError("give a timestamp for every frame or for none (mixed in one video)")
        if not timed:
            return int(round(self.frames_written / self.fps / TIME_BASE))
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"frame timestamp must be a finite number of seconds, got {t}")
        if self._t0 is None:
            self._t0 = t
        pts = int(round((t - self._t0) / TIME_BASE))
        if pts < self._last_pts:
            raise ValueError(f"frame timestamps must not go backwards: {t - self._t0:.6f} s after "
                             f"{self._last_pts * float(TIME_BASE):.6f} s")
        return max(pts, self._last_pts + 1)

    # ------------------------------------------------------------------------------------------------ API
    def write(self, frame_rgb: np.ndarray, t: float | None = None) -> None:
        """Append one frame.

        Args:
            frame_rgb: ``[H, W, 3]`` uint8 RGB (the size given to the constructor, or the first frame's).
            t: the frame's time in seconds (any clock; the first frame's ``t`` is time zero), or None for
                ``index / fps``.
        Raises:
            ValueError: wrong shape / dtype / size, mixed or backwards timestamps.
            VideoWriteError: the encoder or the disk failed (the temporary file is removed).
            RuntimeError: the writer was already closed or aborted.
        """
        if not self._open:
            raise RuntimeError(f"video writer for {self.path} is already closed")
        if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.dtype != np.uint8:
            raise ValueError(f"frame must be [H, W, 3] uint8 RGB, got {frame_rgb.shape} {frame_rgb.dtype}")
        if self.size is None:
            self.size = (int(frame_rgb.shape[0]), int(frame_rgb.shape[1]))
        if frame_rgb.shape[:2] != self.size:
            raise ValueError(f"frame size {frame_rgb.shape[:2]} differs from the video's {self.size} (H, W)")
        pts = self._pts(t)
        h, w = self.size
        if h % 2 or w % 2:  # yuv420p: pad one copied row / column at the bottom / right
            frame_rgb = np.pad(frame_rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        import av

        try:
            if self._stream is None:
                self._add_stream()
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_rgb), format="rgb24").reformat(format="yuv420p")
            self._encode(frame, pts)
        except Exception as err:
            self.abort()
            raise self._error(err, "cannot write") from err
        self._last_frame = frame
        self.frames_written += 1

    def _encode(self, frame, pts: int) -> None:
        frame.pts, frame.time_base = pts, TIME_BASE
        for pkt in self._stream.encode(frame):
            self._container.mux(pkt)
        self._last_pts = pts
        self._encoded += 1

    def close(self, t_end: float | None = None) -> VideoInfo | None:
        """Flush, verify and rename onto :attr:`path`; returns what :func:`probe_video` read back (also in
        :attr:`info`), or None when no frame was written (then no file is created). Idempotent.

        Args:
            t_end: optional end of the recording on the clock of :meth:`write`'s ``t`` (without timestamps:
                seconds from the first frame). When later than the last frame's end, the last frame is repeated
                once so the video lasts until ``t_end`` (a live session that stopped between two processed frames
                keeps its real length).

        Raises:
            VideoWriteError: flushing or verification failed; nothing is left under :attr:`path`.
        """
        if not self._open:
            return self.info
        if self.frames_written == 0:
            self.abort()
            return None
        try:
            if t_end is not None and math.isfinite(float(t_end)):
                end_pts = int(round((float(t_end) - (self._t0 or 0.0)) / TIME_BASE))
                hold_pts = end_pts - int(round(1.0 / self.fps / TIME_BASE))
                if hold_pts > self._last_pts:
                    self._encode(self._last_frame, hold_pts)
            for pkt in self._stream.encode(None):
                self._container.mux(pkt)
            self._container.close()
        except Exception as err:
            self.abort()
            raise self._error(err, "cannot finish") from err
        self._container = None
        try:
            info = probe_video(self._tmp)
            problems = []
            if info.codec != "h264" or info.pix_fmt != "yuv420p":
                problems.append(f"codec {info.codec}/{info.pix_fmt}, expected h264/yuv420p")
            if info.frames != self._encoded:
                problems.append(f"{info.frames} frames read back of {self._encoded} written")
            if problems:
                raise VideoWriteError(f"video {str(self.path)!r} did not verify after writing ({'; '.join(problems)}); "
                                      "nothing was written under that name (check free disk space)", self.path)
        except VideoWriteError as err:
            self.abort()
            if str(self.path) in str(err):
                raise
            raise VideoWriteError(f"video {str(self.path)!r} did not verify after writing ({err}); nothing was written "
                                  "under that name (check free disk space)", self.path, err.errno) from err
        self._open = False
        try:
            self._ctx.__exit__(None, None, None)  # chmod + rename onto path
        except OSError as err:
            raise self._error(err, "cannot rename") from err
        self.info = info
        return info

    def abort(self) -> None:
        """Discard the temporary file; :attr:`path` is left untouched. Idempotent, never raises."""
        if not self._open:
            return
        self._open = False
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None
        err = RuntimeError("video aborted")
        try:
            self._ctx.__exit__(RuntimeError, err, None)  # removes the temporary file
        except Exception:
            pass

    def __enter__(self) -> "H264Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:
            self.abort()
