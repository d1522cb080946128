"""Frame capture for live use: a capture thread feeding a one-slot, latest-wins queue.

When inference is slower than the source, older frames are overwritten (and counted as dropped): the consumer
always gets the newest frame, so latency stays bounded by one inference instead of growing without limit. That
latest-wins :class:`LatestFrameSlot` is for live sources and ``realtime`` file playback; a file read with
``realtime=False`` goes through the bounded FIFO :class:`FrameQueue` instead, whose :meth:`~FrameQueue.put` waits for
the consumer, so every frame is processed, in order (:func:`make_frame_queue` picks the right one).

Sources (:func:`parse_source`): a camera index (``0``), a V4L2 device (``/dev/video2``), a network stream
(``rtsp://``, ``http://``, ...; anything with ``://``) or a video file. Live sources (camera, device, stream) that
fail to open or stop delivering are reopened with exponential back-off; files end at their last frame and are
paced at their own frame rate (like a camera) unless ``realtime=False``.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from actionvos.errors import InputError

__all__ = ["SourceSpec", "parse_source", "CapturedFrame", "LatestFrameSlot", "FrameQueue", "make_frame_queue", "Backoff",
           "CaptureThread"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``--source``.

    Attributes:
        kind: ``camera`` (index), ``device`` (``/dev/videoN``), ``stream`` (URL) or ``file``.
        target: ``int`` camera index, or the path / URL string.
        live: True for camera, device and stream (drops are reconnected; there is no end).
    """

    kind: str
    target: int | str
    live: bool

    def __str__(self) -> str:
        return f"{self.kind} {self.target}"


def parse_source(source: str) -> SourceSpec:
    """Classify ``--source``: ``0``/``1``/… camera index, ``/dev/videoN``, ``scheme://…`` stream, else a file.

    Raises:
        InputError: a file source that does not exist.
    """
    s = str(source).strip()
    if s.isdigit():
        return SourceSpec("camera", int(s), True)
    if s.startswith("/dev/video"):
        return SourceSpec("device", s, True)
    if "://" in s:
        return SourceSpec("stream", s, True)
    if not Path(s).is_file():
        raise InputError(f"--source {s!r} is neither a camera index, /dev/videoN, a stream URL nor an existing video file")
    return SourceSpec("file", s, False)


@dataclass
class CapturedFrame:
    """One frame from the source.

    Attributes:
        index: running capture index (0-based, counts every frame read, across reconnects).
        timestamp: ``time.monotonic()`` seconds when it was read (for capture-to-result latency).
        frame: ``[H, W, 3]`` uint8 RGB.
    """

    index: int
    timestamp: float
    frame: np.ndarray


class LatestFrameSlot:
    """A one-slot queue: :meth:`put` overwrites an unconsumed frame (counted in :attr:`dropped`), :meth:`get` takes
    the newest. Thread-safe. Invariant: ``put_count == served + dropped + (1 if a frame is waiting else 0)``."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item: CapturedFrame | None = None
        self._newest: CapturedFrame | None = None
        self._closed = False
        self.put_count = 0
        self.served = 0
        self.dropped = 0
        self.latest_index = -1
        self.stale_served = 0  # frames served while a newer one existed: stays 0 by construction

    def put(self, item: CapturedFrame) -> None:
        """Offer a frame; replaces (drops) the waiting one if the consumer has not taken it."""
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = self._newest = item
            self.put_count += 1
            self.latest_index = item.index
            self._cond.notify()

    def get(self, timeout: float | None = None) -> CapturedFrame | None:
        """The newest frame, waiting up to ``timeout`` seconds; None on timeout or when closed and empty."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            if item is not None:
                self.served += 1
                if item.index != self.latest_index:
                    self.stale_served += 1
            return item

    def peek(self) -> CapturedFrame | None:
        """The newest frame ever put (consumed or not), without taking it: what a display shows at the camera's rate."""
        with self._cond:
            return self._newest

    def close(self) -> None:
        """Wake a waiting consumer; later :meth:`get` calls return the waiting frame, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def cancel(self) -> None:
        """The consumer is leaving: close (a latest-wins :meth:`put` never blocks, so nothing else is needed)."""
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed


class FrameQueue:
    """A bounded FIFO with the :class:`LatestFrameSlot` interface, for files read as fast as possible
    (``realtime=False``): :meth:`put` waits while ``capacity`` frames are queued, so nothing is dropped and frames
    are served in capture order. :attr:`dropped` stays 0 (except frames discarded by :meth:`cancel`, which are not
    counted: the consumer asked to stop). Thread-safe.

    Args:
        capacity: frames buffered ahead of the consumer (>= 1); bounds memory at ``capacity`` decoded frames.
    """

    def __init__(self, capacity: int = 4):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._cond = threading.Condition()
        self._items: collections.deque[CapturedFrame] = collections.deque()
        self._capacity = capacity
        self._closed = False
        self._cancelled = False
        self._newest: CapturedFrame | None = None
        self.put_count = 0
        self.served = 0
        self.dropped = 0
        self.latest_index = -1
        self.stale_served = 0

    def put(self, item: CapturedFrame) -> None:
        """Append a frame, waiting while the queue is full; returns at once (discarding it) after :meth:`cancel`."""
        with self._cond:
            while len(self._items) >= self._capacity and not self._cancelled:
                self._cond.wait(0.5)
            if self._cancelled:
                return
            self._items.append(item)
            self._newest = item
            self.put_count += 1
            self.latest_index = item.index
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> CapturedFrame | None:
        """The oldest queued frame, waiting up to ``timeout`` seconds; None on timeout or when closed and empty."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            self.served += 1
            self._cond.notify_all()
            return item

    def peek(self) -> CapturedFrame | None:
        """The newest frame put so far (not consumed)."""
        with self._cond:
            return self._newest

    def close(self) -> None:
        """No more frames will come: the consumer drains what is queued, then :meth:`get` returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def cancel(self) -> None:
        """The consumer is leaving: drop the queue and release a producer blocked in :meth:`put`."""
        with self._cond:
            self._cancelled = self._closed = True
            self._items.clear()
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


def make_frame_queue(source: SourceSpec, realtime: bool) -> LatestFrameSlot | FrameQueue:
    """The queue between capture and inference: latest-wins for live sources and realtime file playback (a slow
    model drops frames instead of falling behind); an in-order :class:`FrameQueue` for a file read with
    ``realtime=False`` (every frame is processed)."""
    if source.live or realtime:
        return LatestFrameSlot()
    return FrameQueue()


@dataclass
class Backoff:
    """Reconnection delays: ``initial`` seconds, doubled after each failure up to ``maximum``; give up after
    ``give_up_after`` seconds without a frame (None = never)."""

    initial: float = 0.5
    maximum: float = 5.0
    give_up_after: float | None = 60.0


@dataclass
class CaptureStats:
    """Counters of a :class:`CaptureThread` (read by the HUD and the final report)."""

    frames_read: int = 0
    reconnects: int = 0
    open_attempts: int = 0
    open_failures: int = 0
    fps: float = 0.0
    size: tuple[int, int] | None = None
    error: str | None = None
    ended: bool = False
    history: list[str] = field(default_factory=list)

    def state(self) -> str:
        """The capture's state in words (logged when the thread ends, shown in the final error)."""
        if self.frames_read == 0:
            opened = self.open_attempts - self.open_failures
            what = f"never delivered a frame ({self.open_failures} of {self.open_attempts} attempts to open it failed"
            return what + (f", {opened} opened but sent nothing)" if opened else ")")
        return (f"{self.frames_read} frames read, {self.reconnects} reconnects"
                + (f", {self.open_failures} failed opens" if self.open_failures else ""))


class CaptureThread(threading.Thread):
    """Read frames from a source into a :class:`LatestFrameSlot` on a daemon thread.

    Args:
        source: a :class:`SourceSpec`.
        slot: where frames go (the consumer side): a :class:`LatestFrameSlot` or a :class:`FrameQueue`
            (see :func:`make_frame_queue`).
        realtime: pace file sources at their frame rate (a file then behaves like a camera); ignored for live ones.
        backoff: reconnection policy for live sources.
        open_timeout_s, read_timeout_s: FFmpeg open/read timeouts for streams (seconds).
    After the thread ends (file end, :meth:`stop`, or reconnection given up), the slot is closed and
    :attr:`stats` says why (``ended`` / ``error``).
    """

    def __init__(self, source: SourceSpec, slot: LatestFrameSlot | FrameQueue, realtime: bool = True, backoff: Backoff | None = None,
                 open_timeout_s: float = 5.0, read_timeout_s: float = 5.0):
        super().__init__(name="actionvos-capture", daemon=True)
        self.source = source
        self.slot = slot
        self.realtime = realtime
        self.backoff = backoff or Backoff()
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.stats = CaptureStats()
        self._stop_event = threading.Event()
        self._opened = threading.Event()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to end and wait up to ``timeout`` seconds."""
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    def wait_opened(self, timeout: float) -> bool:
        """Wait until the source delivered its first frame (or the thread ended); True if it did."""
        self._opened.wait(timeout)
        return self.stats.frames_read > 0

    def _open(self):
        import cv2

        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        try:  # OpenCV's own "can't open" warnings duplicate the capture log lines
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        except AttributeError:
            pass
        src = self.source
        if src.kind == "stream":
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000)]
            cap = cv2.VideoCapture(src.target, cv2.CAP_FFMPEG, params)
        elif src.kind == "device":
            cap = cv2.VideoCapture(src.target, cv2.CAP_V4L2)
        else:
            cap = cv2.VideoCapture(src.target)
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def run(self) -> None:  # noqa: C901 - one loop with its three exits is clearer than split helpers
        import cv2

        delay = self.backoff.initial
        last_frame_time = time.monotonic()
        try:
            while not self._stop_event.is_set():
                self.stats.open_attempts += 1
                cap = self._open()
                if cap is None:
                    self.stats.open_failures += 1
                    self.stats.history.append(f"open attempt {self.stats.open_attempts} failed")
                    if not self.source.live:
                        self.stats.error = f"cannot open {self.source}"
                        return
                    if self._give_up(last_frame_time):
                        return
                    log.warning("capture: cannot open %s (attempt %d); retrying in %.1f s", self.source,
                                self.stats.open_attempts, delay)
                    self._stop_event.wait(delay)
                    delay = min(delay * 2, self.backoff.maximum)
                    continue
                fps = cap.get(cv2.CAP_PROP_FPS)
                self.stats.fps = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else 0.0
                t0, n = time.monotonic(), 0
                got_any = False
                while not self._stop_event.is_set():
                    ok, bgr = cap.read()
                    if not ok or bgr is None:
                        break
                    got_any = True
                    delay = self.backoff.initial
                    now = time.monotonic()
                    last_frame_time = now
                    if bgr.ndim == 2:
                        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
                    self.stats.size = bgr.shape[:2]
                    self.slot.put(CapturedFrame(self.stats.frames_read, now, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
                    self.stats.frames_read += 1
                    self._opened.set()
                    n += 1
                    if self.realtime and not self.source.live and self.stats.fps > 0:
                        wait = t0 + n / self.stats.fps - time.monotonic()
                        if wait > 0:
                            self._stop_event.wait(wait)
                cap.release()
                if self._stop_event.is_set():
                    return
                if not self.source.live:
                    self.stats.ended = True
                    if not got_any:
                        self.stats.error = f"{self.source} has no decodable frames"
                    return
                self.stats.reconnects += 1
                self.stats.history.append(f"drop after frame {self.stats.frames_read}")
                log.warning("capture: %s dropped after %d frames; reconnecting (attempt %d)", self.source,
                            self.stats.frames_read, self.stats.reconnects)
                if self._give_up(last_frame_time):
                    return
                self._stop_event.wait(delay)
                delay = min(delay * 2, self.backoff.maximum)
        except Exception as err:  # a capture-thread crash must end the app, not hang it
            self.stats.error = f"capture failed: {type(err).__name__}: {err}"
            log.exception("capture thread failed")
        finally:
            self._opened.set()
            self.slot.close()
            if self.stats.error:
                log.warning("capture: %s ended: %s (%s)", self.source, self.stats.error, self.stats.state())
            else:
                log.info("capture: %s %s: %s", self.source, "ended" if self.stats.ended else "stopped", self.stats.state())

    def _give_up(self, last_frame_time: float) -> bool:
        limit = self.backoff.give_up_after
        if limit is not None and time.monotonic() - last_frame_time > limit:
            self.stats.error = f"{self.source} delivered no frame for {limit:.0f} s; gave up reconnecting"
            return True
        return False
