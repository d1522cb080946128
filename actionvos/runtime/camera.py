"""The live camera loop behind ``actionvos camera`` (library function :func:`run_camera`).

Capture runs on its own thread into a one-slot latest-wins queue (:mod:`actionvos.runtime.capture`), so
reading/decoding overlaps inference and a slow model drops frames instead of falling behind. The main thread
steps the :class:`~actionvos.runtime.session.StreamSession`, renders the overlay + HUD
(:mod:`actionvos.runtime.hud`), shows it (unless headless), records it, and handles keys. It stops on
``max_frames``, ``duration``, the end of a file, ``q``/Esc, Ctrl-C, or a live source that stays down longer than
the back-off's give-up time; the recording is closed properly in every case.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from actionvos.errors import ActionVOSError, ConfigError
from actionvos.runtime.capture import Backoff, CaptureThread, LatestFrameSlot, SourceSpec, parse_source
from actionvos.runtime.hud import HudInfo, HudRecorder, LatencyStats, PromptEditor, RateMeter, render_frame
from actionvos.runtime.session import StreamSession

__all__ = ["CameraOptions", "CameraReport", "run_camera", "check_display"]

log = logging.getLogger(__name__)


@dataclass
class CameraOptions:
    """Settings of :func:`run_camera`.

    Attributes:
        display: show an OpenCV window (needs a GUI build of OpenCV and a display).
        record: MP4 path for the rendered frames, or None.
        record_fps: frame rate written into the recording; None = the source's rate (30 if unknown).
        duration: stop after this many seconds (None = no limit).
        max_frames: stop after this many processed frames (None = no limit).
        realtime: pace file sources at their frame rate, like a camera (False: read as fast as possible).
        backoff: reconnection policy for live sources.
        first_frame_timeout: seconds to wait for the first frame of a live source before giving up.
        window_name: title of the window.
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
    stop_reason: str = ""
    error: str | None = None
    prompt_changes: int = 0
    cache_hits: int = 0
    cache_misses: int = 0

    def line(self) -> str:
        """One-line summary for the terminal."""
        rec = f", recorded {self.recorded_frames} frames to {self.recording}" if self.recording else ""
        return (f"stopped ({self.stop_reason}): {self.frames_processed} frames processed, {self.dropped} dropped, "
                f"{self.reconnects} reconnects, {self.fps:.1f} FPS, latency p50 {self.latency_p50_ms:.0f} ms / "
                f"p99 {self.latency_p99_ms:.0f} ms, prompt cache {self.cache_hits} hits / {self.cache_misses} misses{rec}")


def check_display() -> None:
    """Raise :class:`ConfigError` when OpenCV cannot open a window (headless build or no display)."""
    import os
    import sys

    import cv2

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ConfigError("no display (DISPLAY is not set); pass --no-display to run headless")
    try:
        cv2.namedWindow("actionvos-probe", cv2.WINDOW_NORMAL)
        cv2.destroyWindow("actionvos-probe")
    except cv2.error:
        raise ConfigError("this OpenCV build has no GUI (opencv-python-headless?); install opencv-python or pass --no-display") from None


def run_camera(session: StreamSession, source: str | SourceSpec, action: str, objects: str,
               options: CameraOptions | None = None,
               on_result: Callable[[object, object, CameraReport], None] | None = None) -> CameraReport:
    """Segment a live source until a stop condition; returns the :class:`CameraReport`.

    Args:
        session: a session over a loaded backend (its prompt cache makes prompt switches cheap).
        source: ``--source`` string or a parsed :class:`SourceSpec`.
        action, objects: the initial prompts (spec 4 template; ``objects`` comma-separated).
        options: :class:`CameraOptions`.
        on_result: called as ``on_result(captured_frame, frame_result, report)`` after each step (tests, logging).
    Raises:
        InputError / ConfigError: bad source, prompts or display (before anything runs).
        The report's ``error`` is set (and no exception raised) when a live source stays down too long.
    """
    import cv2

    opts = options or CameraOptions()
    spec = source if isinstance(source, SourceSpec) else parse_source(source)
    if opts.display:
        check_display()
    session.set_prompts(action, objects)
    editor = PromptEditor(action, objects)
    slot = LatestFrameSlot()
    capture = CaptureThread(spec, slot, realtime=opts.realtime, backoff=opts.backoff)
    report = CameraReport()
    latency = LatencyStats()
    rate = RateMeter()
    recorder: HudRecorder | None = None
    status_until, status = 0.0, ""
    t_start = time.monotonic()
    capture.start()
    try:
        while True:
            if opts.duration is not None and time.monotonic() - t_start >= opts.duration:
                report.stop_reason = f"--duration {opts.duration:g} s reached"
                break
            item = slot.get(timeout=0.2)
            if item is None:
                if slot.closed:
                    report.error = capture.stats.error
                    report.stop_reason = "source failed" if capture.stats.error else "end of source"
                    break
                if report.frames_processed == 0 and time.monotonic() - t_start > opts.first_frame_timeout:
                    report.error = f"no frame from {spec} within {opts.first_frame_timeout:.0f} s"
                    report.stop_reason = "source failed"
                    break
                continue
            result = session.step(item.frame)
            now = time.monotonic()
            latency.add(now - item.timestamp)
            rate.tick(now)
            report.frames_processed += 1
            report.dropped, report.reconnects = slot.dropped, capture.stats.reconnects
            hud = HudInfo(fps=rate.rate, p50_ms=latency.percentile_ms(50), p99_ms=latency.percentile_ms(99),
                          dropped=slot.dropped, reconnects=capture.stats.reconnects, backend=session.backend.info.name,
                          status=editor.status() or (status if now < status_until else ""))
            if opts.display or opts.record:
                bgr = render_frame(item.frame, result.labels, result.objects, hud)
                if opts.record:
                    if recorder is None:
                        fps = opts.record_fps or capture.stats.fps or 30.0
                        recorder = HudRecorder(opts.record, fps, tuple(item.frame.shape[:2]), [p.name for p in session.prompts])
                        report.recording = str(opts.record)
                    recorder.write_bgr(bgr)
                if opts.display:
                    cv2.imshow(opts.window_name, bgr)
                    action_key = editor.key(cv2.waitKey(1))
                    if action_key == "quit":
                        report.stop_reason = "quit key"
                        break
                    if action_key == "apply":
                        try:
                            session.set_prompts(editor.action, editor.objects)
                            report.prompt_changes += 1
                            status, status_until = f"prompts: {', '.join(p.text for p in session.prompts)}", now + 3.0
                        except ActionVOSError as err:
                            status, status_until = f"error: {err}", now + 5.0
            if on_result is not None:
                on_result(item, result, report)
            if opts.max_frames is not None and report.frames_processed >= opts.max_frames:
                report.stop_reason = f"--max-frames {opts.max_frames} reached"
                break
    except KeyboardInterrupt:
        report.stop_reason = "interrupted (Ctrl-C)"
    finally:
        capture.stop()
        if recorder is not None:
            recorder.close()
            report.recorded_frames = recorder.frames_written
        if opts.display:
            try:
                cv2.destroyAllWindows()
            except cv2.error:
                pass
        report.frames_captured = capture.stats.frames_read
        report.dropped = slot.dropped
        report.reconnects = capture.stats.reconnects
        report.fps = rate.rate
        report.latency_p50_ms = latency.percentile_ms(50)
        report.latency_p99_ms = latency.percentile_ms(99)
        report.cache_hits, report.cache_misses = session.cache.stats.hits, session.cache.stats.misses
    return report
