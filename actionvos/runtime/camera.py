"""The live camera app behind ``actionvos camera`` (library function :func:`run_camera`).

Threads (none waits on another's slow work):

* **capture** (:class:`~actionvos.runtime.capture.CaptureThread`): reads the source into a latest-wins slot (live
  sources, ``realtime`` files: a slow model drops frames instead of falling behind) or an in-order queue (files
  with ``realtime=False``: every frame is processed);
* **inference** (:class:`LiveApp` ``._infer_loop``): takes a frame, applies a pending prompt change (from the keys or
  the web form: the change takes effect on that next frame and is logged), steps the
  :class:`~actionvos.runtime.session.StreamSession`, publishes the result to the :class:`LiveView`, records;
* **keyboard** (:class:`KeyboardThread`): turns key codes into edits of the :class:`~actionvos.runtime.hud.PromptEditor`
  (every key is queued, so typing never loses keys however slow inference is);
* **display** (the calling thread): shows the newest camera frame with the latest masks and HUD at the camera's
  rate and polls the keyboard every few ms (OpenCV's window calls must stay on one thread); without a window it
  only waits for a stop condition;
* **web server** (optional, :mod:`actionvos.runtime.serve`): the same view as MJPEG, the HUD as JSON, a form that
  changes the prompts.

It stops on ``max_frames``, ``duration``, the end of a file, ``q``/Esc, Ctrl-C, or a live source that stays down
longer than the back-off's give-up time; the recording is closed properly in every case. A source that never
delivers a frame is an error (``report.error``).
"""

from __future__ import annotations

import collections
import inspect
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from actionvos.errors import ActionVOSError, ConfigError
from actionvos.runtime.capture import Backoff, CapturedFrame, CaptureThread, SourceSpec, make_frame_queue, parse_source
from actionvos.runtime.hud import HudInfo, LatencyStats, PromptEditor, RateMeter, render_frame
from actionvos.runtime.session import StreamSession

__all__ = ["CameraOptions", "CameraReport", "run_camera", "check_display", "LiveApp", "LiveView", "KeyboardThread",
           "PromptChange", "NO_GUI_MESSAGE"]

log = logging.getLogger(__name__)

#: What to do when OpenCV has no GUI (one line; the two OpenCV wheels share the ``cv2`` folder and conflict).
NO_GUI_MESSAGE = (
    "this OpenCV build has no GUI (actionvos installs opencv-python-headless); for a window install the GUI build: "
    "pip install 'actionvos[gui]' && pip uninstall -y opencv-python-headless && "
    "pip install --force-reinstall --no-deps opencv-python (the two wheels conflict: both provide cv2), "
    "or watch in a browser with --serve 127.0.0.1:8000, or pass --no-display")


@dataclass
class CameraOptions:
    """Settings of :func:`run_camera`.

    Attributes:
        display: show an OpenCV window (needs a GUI build of OpenCV and a display).
        record: MP4 path for the rendered frames, or None. Frames are placed at their capture times, so the video
            lasts as long as the session (see :mod:`actionvos.runtime.recording`).
        record_fps: output frame rate of the recording; None = the source's rate (30 if unknown).
        duration: stop after this many seconds (None = no limit).
        max_frames: stop after this many processed frames (None = no limit).
        realtime: pace file sources at their frame rate, like a camera (False: every frame of the file is
            processed, in order, as fast as inference goes).
        backoff: reconnection policy for live sources.
        first_frame_timeout: seconds to wait for the first frame before giving up with an error.
        window_name: title of the window.
        serve: ``(host, port)`` for the browser view (:mod:`actionvos.runtime.serve`), or None. Port 0 = any free port.
        on_start: called with the :class:`LiveApp` once all threads run (tests; the served URL is ``app.url``).
    """

    display: bool = True
    record: Path | None = None
    record_fps: float | None = None
    duration: float | None = None
    max_frames: int | None = None
    realtime: bool = True
    backoff: Backoff = field(default_factory=Backoff)
    first_frame_timeout: float = 30.0
    window_name: str = "actionvos"
    serve: tuple[str, int] | None = None
    on_start: Callable[["LiveApp"], None] | None = None


@dataclass
class CameraReport:
    """What happened in a :func:`run_camera` call (counts are frames; times in ms)."""

    frames_processed: int = 0
    frames_captured: int = 0
    dropped: int = 0
    reconnects: int = 0
    fps: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    recording: str | None = None
    recorded_frames: int = 0
    recording_s: float = 0.0
    stop_reason: str = ""
    error: str | None = None
    prompt_changes: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    served_at: str | None = None

    def line(self) -> str:
        """One-line summary for the terminal."""
        rec = (f", recorded {self.recorded_frames} frames ({self.recording_s:.1f} s) to {self.recording}"
               if self.recording else "")
        return (f"stopped ({self.stop_reason}): {self.frames_processed} frames processed, {self.dropped} dropped, "
                f"{self.reconnects} reconnects, {self.fps:.1f} FPS, latency p50 {self.latency_p50_ms:.0f} ms / "
                f"p99 {self.latency_p99_ms:.0f} ms, {self.prompt_changes} prompt changes, "
                f"prompt cache {self.cache_hits} hits / {self.cache_misses} misses{rec}")


def check_display() -> None:
    """Raise :class:`ConfigError` when OpenCV cannot open a window (headless build or no display)."""
    import os
    import sys

    import cv2

    if "GUI:                           NONE" in cv2.getBuildInformation() or not _has_gui(cv2):
        raise ConfigError(NO_GUI_MESSAGE)
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ConfigError("no display (DISPLAY is not set); pass --no-display to run headless, "
                          "or --serve 127.0.0.1:8000 to watch in a browser")
    try:
        cv2.namedWindow("actionvos-probe", cv2.WINDOW_NORMAL)
        cv2.destroyWindow("actionvos-probe")
    except cv2.error:
        raise ConfigError(NO_GUI_MESSAGE) from None


def _has_gui(cv2) -> bool:
    """True when the OpenCV build lists a GUI backend (GTK, Qt, Win32, Cocoa, ...)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() != "NONE"
    return True  # unknown layout: let namedWindow decide


# ---------------------------------------------------------------------------------------------- prompts
@dataclass
class PromptChange:
    """One request to change the prompts, and what became of it.

    Attributes:
        action, objects: the requested action and comma-separated objects.
        origin: who asked (``keyboard``, ``web form``, ...).
        requested_at: ``time.time()`` seconds.
        applied_frame: the 0-based index (among the frames this app processed) of the first frame stepped with the
            new prompts; None while pending or on error.
        prompts: the prompt texts the model reads after the change.
        error: why it was refused (the previous prompts stay), or None.
    """

    action: str
    objects: str
    origin: str
    requested_at: float = field(default_factory=time.time)
    applied_frame: int | None = None
    prompts: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "objects": self.objects, "origin": self.origin,
                "requested_at": self.requested_at, "applied_frame": self.applied_frame, "prompts": list(self.prompts),
                "error": self.error}


# ---------------------------------------------------------------------------------------------- view
def _render(frame_rgb: np.ndarray, labels: np.ndarray, objects, hud: HudInfo, threshold: float | None) -> np.ndarray:
    """:func:`~actionvos.runtime.hud.render_frame` (BGR out), passing the gate threshold when it takes one."""
    if threshold is not None and "threshold" in _RENDER_PARAMS:
        return render_frame(frame_rgb, labels, objects, hud, threshold=threshold)
    return render_frame(frame_rgb, labels, objects, hud)


_RENDER_PARAMS = frozenset(inspect.signature(render_frame).parameters)


def legend_line(name: str, prob: float, passed: bool, threshold: float | None) -> str:
    """``"box 0.716 ≥ 0.62 ✓"`` through :func:`actionvos.render.legend_text` when present (else the same format)."""
    try:
        from actionvos.render import legend_text
    except ImportError:
        mark = "✓" if passed else "✗"
        if threshold is None:
            return f"{name} {prob:.3f} {mark}"
        return f"{name} {prob:.3f} {'≥' if passed else '<'} {threshold:g} {mark}"
    return legend_text(name, prob, passed, threshold)


@dataclass(frozen=True)
class _ObjectView:
    name: str
    positive_prob: float
    passed_gate: bool
    mask_pixels: int


class LiveView:
    """What the window and the web page show, shared between threads (all methods are thread-safe).

    The inference thread :meth:`publish` es each result; the display and the web server :meth:`compose` the newest
    camera frame with the latest masks + HUD (so they refresh at the camera's rate) and read :meth:`state`.
    """

    def __init__(self, threshold: float | None, backend: str, log_size: int = 20):
        self._lock = threading.Lock()
        self.threshold = threshold
        self.backend = backend
        self.version = 0  # bumped by every publish / status change
        self._labels: np.ndarray | None = None
        self._result_rgb: np.ndarray | None = None
        self._objects: list[_ObjectView] = []
        self._result_frame = -1
        self._capture_index = -1
        self._hud = HudInfo(backend=backend)
        self._prompts: list[str] = []
        self._action = ""
        self._objects_text = ""
        self._status = ""
        self._status_until = 0.0
        self._editing = ""
        self._log: collections.deque[PromptChange] = collections.deque(maxlen=log_size)
        self._frames_processed = 0
        self.running = True
        self.stop_reason = ""

    def publish(self, capture_index: int, frame_index: int, labels: np.ndarray, objects, hud: HudInfo,
                frames_processed: int, frame_rgb: np.ndarray | None = None) -> None:
        """Store one frame's result (``labels`` ``[H, W]`` uint8; ``objects`` with name/positive_prob/passed_gate;
        ``frame_rgb`` the processed ``[H, W, 3]`` uint8 RGB frame, for :meth:`compose_result`)."""
        objs = [_ObjectView(o.name, float(o.positive_prob), bool(o.passed_gate), int(np.count_nonzero(labels == i + 1)))
                for i, o in enumerate(objects)]
        with self._lock:
            self._labels, self._objects, self._hud = labels, objs, hud
            self._result_rgb = frame_rgb
            self._result_frame, self._capture_index = frame_index, capture_index
            self._frames_processed = frames_processed
            self.version += 1

    def set_prompts(self, action: str, objects: str, prompts: list[str]) -> None:
        with self._lock:
            self._action, self._objects_text, self._prompts = action, objects, list(prompts)
            self.version += 1

    def set_status(self, text: str, seconds: float = 4.0) -> None:
        with self._lock:
            self._status, self._status_until = text, time.monotonic() + seconds
            self.version += 1

    def set_editing(self, text: str) -> None:
        with self._lock:
            if text != self._editing:
                self._editing = text
                self.version += 1

    def add_change(self, change: PromptChange) -> None:
        """Log a prompt change request (its fields are filled in when it is applied or refused)."""
        with self._lock:
            self._log.append(change)
            self.version += 1

    def touch(self) -> None:
        """Something shown changed (a logged request was applied)."""
        with self._lock:
            self.version += 1

    def _status_now(self) -> str:
        if self._editing:
            return self._editing
        return self._status if time.monotonic() < self._status_until else ""

    def compose(self, frame_rgb: np.ndarray) -> np.ndarray:
        """``frame_rgb`` (``[H, W, 3]`` uint8 RGB, normally the newest camera frame) with the latest masks, legend and
        HUD drawn on it; ``[H, W, 3]`` uint8 BGR. Masks of another size (before the first result) are left out."""
        with self._lock:
            labels, objects, hud = self._labels, list(self._objects), self._hud
            status = self._status_now()
        if labels is None or labels.shape != frame_rgb.shape[:2]:
            labels, objects = np.zeros(frame_rgb.shape[:2], np.uint8), []
        hud = HudInfo(fps=hud.fps, p50_ms=hud.p50_ms, p99_ms=hud.p99_ms, dropped=hud.dropped,
                      reconnects=hud.reconnects, backend=hud.backend, status=status)
        return _render(frame_rgb, labels, objects, hud, self.threshold)

    def compose_result(self) -> np.ndarray | None:
        """The last processed frame with its own masks (aligned however slow inference is), BGR; None before the
        first result."""
        with self._lock:
            frame = self._result_rgb
        return None if frame is None else self.compose(frame)

    def state(self) -> dict[str, Any]:
        """JSON-able snapshot: HUD numbers, per-object probability and gate, current prompts, prompt-change log."""
        with self._lock:
            hud = self._hud
            return {
                "running": self.running,
                "stop_reason": self.stop_reason,
                "frames_processed": self._frames_processed,
                "result_frame": self._result_frame,
                "capture_index": self._capture_index,
                "fps": round(hud.fps, 2),
                "p50_ms": round(hud.p50_ms, 1),
                "p99_ms": round(hud.p99_ms, 1),
                "dropped": hud.dropped,
                "reconnects": hud.reconnects,
                "backend": self.backend,
                "threshold": self.threshold,
                "action": self._action,
                "objects_text": self._objects_text,
                "prompts": list(self._prompts),
                "objects": [{"name": o.name, "positive_prob": round(o.positive_prob, 4), "passed_gate": o.passed_gate,
                             "mask_pixels": o.mask_pixels,
                             "legend": legend_line(o.name, o.positive_prob, o.passed_gate, self.threshold)}
                            for o in self._objects],
                "status": self._status_now(),
                "log": [c.to_dict() for c in self._log],
                "version": self.version,
            }


# ---------------------------------------------------------------------------------------------- keyboard
class KeyboardThread(threading.Thread):
    """Apply key codes to a :class:`~actionvos.runtime.hud.PromptEditor` on their own thread.

    :meth:`feed` only queues the code (never blocks, never drops), so the display loop can poll the keyboard every
    few milliseconds while inference takes seconds. ``Enter`` calls ``on_apply(action, objects)``; ``q``/Esc outside
    editing calls ``on_quit()``; the editing line goes to ``on_status(text)`` after every key.
    """

    def __init__(self, editor: PromptEditor, on_apply: Callable[[str, str], None], on_quit: Callable[[], None],
                 on_status: Callable[[str], None] | None = None):
        super().__init__(name="actionvos-keys", daemon=True)
        self.editor = editor
        self.on_apply, self.on_quit, self.on_status = on_apply, on_quit, on_status
        self._queue: queue.Queue[int | None] = queue.Queue()
        self.keys_handled = 0

    def feed(self, code: int) -> None:
        """Queue one OpenCV key code (negative codes — no key — are ignored)."""
        if code >= 0:
            self._queue.put(code)

    def finish(self, timeout: float = 2.0) -> None:
        """Handle the queued keys, then end the thread."""
        self._queue.put(None)
        if self.is_alive():
            self.join(timeout)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every fed key was handled; True if so."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._queue.unfinished_tasks

    def run(self) -> None:
        while True:
            code = self._queue.get()
            try:
                if code is None:
                    return
                what = self.editor.key(code)
                self.keys_handled += 1
                if self.on_status is not None:
                    self.on_status(self.editor.status())
                if what == "apply":
                    self.on_apply(self.editor.action, self.editor.objects)
                elif what == "quit":
                    self.on_quit()
            except Exception:  # a failing callback must not kill key handling
                log.exception("key handling failed")
            finally:
                self._queue.task_done()


# ---------------------------------------------------------------------------------------------- the app
class LiveApp:
    """The running app: threads, shared view, prompt requests. Made and run by :func:`run_camera`.

    Attributes:
        session, spec, options, report: as given / being filled.
        view: the :class:`LiveView`.
        keys: the :class:`KeyboardThread` (``app.keys.feed(code)`` types into the editor).
        url: the browser view's address once served, else None.
    """

    def __init__(self, session: StreamSession, spec: SourceSpec, action: str, objects: str, options: CameraOptions,
                 on_result: Callable[[object, object, CameraReport], None] | None = None):
        self.session, self.spec, self.options, self.on_result = session, spec, options, on_result
        self.report = CameraReport()
        self.stop_event = threading.Event()
        self.view = LiveView(getattr(session, "pos_thres", None), session.backend.info.name)
        self.queue = make_frame_queue(spec, options.realtime)
        self.capture = CaptureThread(spec, self.queue, realtime=options.realtime, backoff=options.backoff)
        self.editor = PromptEditor(action, objects)
        self.keys = KeyboardThread(self.editor, lambda a, o: self.request_prompts(a, o, "keyboard"), self._quit,
                                   self.view.set_editing)
        self.url: str | None = None
        self._pending: list[PromptChange] = []
        self._pending_lock = threading.Lock()
        self._latency = LatencyStats()
        self._rate = RateMeter()
        self._recorder = None
        self._error: BaseException | None = None
        self._t_start = time.monotonic()
        self._current = (action, objects)  # the prompts in use (action, objects)
        self._infer = threading.Thread(target=self._infer_loop, name="actionvos-inference", daemon=True)
        self.view.set_prompts(action, objects, [p.text for p in session.prompts])

    # ----------------------------------------------------------------- control (any thread)
    def request_prompts(self, action: str, objects: str, origin: str) -> PromptChange:
        """Ask for new prompts; they take effect on the next frame the inference thread takes (logged then)."""
        change = PromptChange(action.strip(), objects.strip(), origin)
        with self._pending_lock:
            self._pending.append(change)
        self.view.add_change(change)  # shown as pending until the inference thread takes it
        log.info("prompt change requested (%s): action %r, objects %r", origin, change.action, change.objects)
        return change

    def stop(self, reason: str) -> None:
        """End the app (first reason wins)."""
        if not self.stop_event.is_set():
            self.report.stop_reason = self.report.stop_reason or reason
            self.stop_event.set()

    def _quit(self) -> None:
        self.stop("quit key")

    @property
    def stopped(self) -> bool:
        return self.stop_event.is_set()

    def live_frame(self) -> CapturedFrame | None:
        """The newest captured frame (whether or not inference took it)."""
        return self.queue.peek()

    # ----------------------------------------------------------------- inference thread
    def _apply_pending(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, []
        for change in pending[:-1]:
            change.error = "superseded by a later request before the next frame"
            log.info("prompt change (%s) %r / %r superseded by a later one", change.origin, change.action, change.objects)
        if not pending:
            return
        change = pending[-1]
        try:
            prompts = self.session.set_prompts(change.action, change.objects)
        except ActionVOSError as err:
            change.error = str(err)
            log.warning("prompt change (%s) refused: %s; keeping %s", change.origin, err,
                        [p.text for p in self.session.prompts])
            self.view.set_status(f"error: {err}", 6.0)
            self.editor.action, self.editor.objects = self._current  # the editor shows what is in use
        else:
            change.prompts = [p.text for p in prompts]
            change.applied_frame = self.report.frames_processed  # 0-based index of the frame about to be stepped
            self.report.prompt_changes += 1
            self.editor.action, self.editor.objects = self._current = (change.action, change.objects)
            self.view.set_prompts(change.action, change.objects, change.prompts)
            self.view.set_status(f"prompts: {', '.join(change.prompts)}", 4.0)
            log.info("prompts changed (%s) at frame %d: %s", change.origin, change.applied_frame, change.prompts)
        self.view.touch()

    def _record(self, item: CapturedFrame, bgr: np.ndarray) -> None:
        import cv2

        from actionvos.runtime.recording import open_recorder

        opts = self.options
        fps = opts.record_fps or self.capture.stats.fps or 30.0
        if self._recorder is None:
            self._recorder = open_recorder(opts.record, tuple(item.frame.shape[:2]), fps)
            self.report.recording = str(opts.record)
        self._recorder.write(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self._record_time(item, fps))

    def _record_time(self, item: CapturedFrame, fps: float) -> float:
        """Capture time of ``item`` in seconds: the wall clock for live sources and paced files, the file's own
        timeline (index / fps) for files read as fast as possible."""
        if self.spec.live or self.options.realtime:
            return item.timestamp
        return item.index / (self.capture.stats.fps or fps)

    def _infer_loop(self) -> None:
        opts, report = self.options, self.report
        try:
            while not self.stop_event.is_set():
                item = self.queue.get(timeout=0.2)
                if item is None:
                    if self.queue.closed:
                        report.error = report.error or self.capture.stats.error
                        self.stop("source failed" if self.capture.stats.error else "end of source")
                    continue
                if self.stop_event.is_set():
                    break
                self._apply_pending()
                result = self.session.step(item.frame)
                now = time.monotonic()
                self._latency.add(now - item.timestamp)
                self._rate.tick(now)
                report.frames_processed += 1
                report.dropped, report.reconnects = self.queue.dropped, self.capture.stats.reconnects
                hud = HudInfo(fps=self._rate.rate, p50_ms=self._latency.percentile_ms(50),
                              p99_ms=self._latency.percentile_ms(99), dropped=self.queue.dropped,
                              reconnects=self.capture.stats.reconnects, backend=self.session.backend.info.name)
                self.view.publish(item.index, result.index, result.labels, result.objects, hud, report.frames_processed,
                                  item.frame)
                if opts.record:  # this frame with its own masks (only this thread publishes results)
                    self._record(item, self.view.compose(item.frame))
                if self.on_result is not None:
                    self.on_result(item, result, report)
                if opts.max_frames is not None and report.frames_processed >= opts.max_frames:
                    self.stop(f"--max-frames {opts.max_frames} reached")
        except BaseException as err:  # handed to the main thread, which re-raises it after cleaning up
            self._error = err
            self.stop("error")

    # ----------------------------------------------------------------- main thread
    def run(self) -> CameraReport:
        """Start the threads, run the display (or wait), stop everything; returns the report.

        Raises:
            ConfigError: the web server cannot bind its address.
            Whatever the inference thread raised (after the recording was closed).
        """
        opts, report = self.options, self.report
        server = None
        self.capture.start()
        self.keys.start()
        self._infer.start()
        try:
            if opts.serve is not None:
                from actionvos.runtime.serve import start_server

                server = start_server(self, *opts.serve)
                self.url = report.served_at = server.url
            if opts.on_start is not None:
                opts.on_start(self)
            if opts.display:
                self._display_loop()
            else:
                while not self.stop_event.wait(0.1):
                    self._check_time()
        except KeyboardInterrupt:
            self.stop("interrupted (Ctrl-C)")
        finally:
            self.stop("stopped")
            self._shutdown(server)
        if self._error is not None:
            raise self._error
        return report

    def _check_time(self) -> None:
        opts, elapsed = self.options, time.monotonic() - self._t_start
        if opts.duration is not None and elapsed >= opts.duration:
            self.stop(f"--duration {opts.duration:g} s reached")
        elif self.capture.stats.frames_read == 0 and elapsed > opts.first_frame_timeout:
            self.report.error = (f"no frame from {self.spec} within {opts.first_frame_timeout:.0f} s: "
                                 f"{self.capture.stats.state()}")
            self.stop("source failed")

    def _display_loop(self) -> None:
        """Show the newest camera frame with the latest result at the camera's rate; poll keys every ~5 ms."""
        import cv2

        shown = None
        while not self.stop_event.is_set():
            self._check_time()
            item = self.live_frame()
            if item is not None and (item.index, self.view.version) != shown:
                cv2.imshow(self.options.window_name, self.view.compose(item.frame))
                shown = (item.index, self.view.version)
            self.keys.feed(cv2.waitKey(5))

    def _shutdown(self, server) -> None:
        import cv2

        report = self.report
        self.view.running = False
        self.view.stop_reason = report.stop_reason
        self.queue.cancel()
        self._infer.join(60.0)  # the frame in flight finishes
        self.capture.stop()
        self.keys.finish()
        if server is not None:
            server.stop()
        if self._recorder is not None:
            from actionvos.runtime.recording import recorded_seconds

            try:
                self._recorder.close(t_end=time.monotonic() if (self.spec.live or self.options.realtime) else None)
            except ActionVOSError as err:  # e.g. a full disk: reported after the rest is shut down
                self._error = self._error or err
            report.recorded_frames = self._recorder.frames_written
            report.recording_s = recorded_seconds(self._recorder)
        if self.options.display:
            try:
                cv2.destroyAllWindows()
            except cv2.error:
                pass
        stats = self.capture.stats
        report.frames_captured = stats.frames_read
        report.dropped = self.queue.dropped
        report.reconnects = stats.reconnects
        report.fps = self._rate.rate
        report.latency_p50_ms = self._latency.percentile_ms(50)
        report.latency_p99_ms = self._latency.percentile_ms(99)
        report.cache_hits, report.cache_misses = self.session.cache.stats.hits, self.session.cache.stats.misses
        if stats.frames_read == 0 and report.error is None and self._error is None:
            report.error = (f"no frame from {self.spec} in {time.monotonic() - self._t_start:.0f} s "
                            f"({report.stop_reason}): {stats.state()}; check that the source is running and reachable")
        if report.error:
            log.warning("camera: %s", report.error)
        log.info("camera: final state: %s; capture %s", report.stop_reason, stats.state())


def run_camera(session: StreamSession, source: str | SourceSpec, action: str, objects: str,
               options: CameraOptions | None = None,
               on_result: Callable[[object, object, CameraReport], None] | None = None) -> CameraReport:
    """Segment a live source until a stop condition; returns the :class:`CameraReport`.

    Args:
        session: a session over a loaded backend (its prompt cache makes prompt switches cheap).
        source: ``--source`` string or a parsed :class:`SourceSpec`.
        action, objects: the initial prompts (spec 4 template; ``objects`` comma-separated).
        options: :class:`CameraOptions`.
        on_result: called as ``on_result(captured_frame, frame_result, report)`` on the inference thread after
            each step (tests, logging).
    Raises:
        InputError / ConfigError: bad source, prompts, display or serve address (before anything runs).
        The report's ``error`` is set (and no exception raised) when the source never delivered a frame or a live
        source stays down too long.
    """
    opts = options or CameraOptions()
    spec = source if isinstance(source, SourceSpec) else parse_source(source)
    if opts.display:
        check_display()
    if opts.record is not None and Path(opts.record).suffix.lower() != ".mp4":
        raise ConfigError(f"--record {str(opts.record)!r} must end in .mp4")
    session.set_prompts(action, objects)
    return LiveApp(session, spec, action, objects, opts, on_result).run()
