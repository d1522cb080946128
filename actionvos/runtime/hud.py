"""What the camera window shows: mask overlay, per-object legend, HUD line, prompt editor; plus the recorder.

* :class:`LatencyStats` — fixed-size ring buffer of latencies (no growth over a long run), p50/p99 in ms.
* :class:`RateMeter` — frames per second over a sliding window of timestamps.
* :func:`render_frame` — overlay + legend + HUD lines, drawn by :func:`actionvos.render.render_overlay` (the same
  renderer as the file overlay); BGR for OpenCV windows. :func:`render_frame_rgb` is the RGB version (web view),
  :func:`hud_lines` the HUD text alone.
* :class:`PromptEditor` — key handling for typing a new action (``a``) or object list (``o``) while running.
* :class:`HudRecorder` — :class:`~actionvos.video_out.H264Writer` (verified, atomic H.264 MP4) fed the rendered
  frames, optionally with their capture timestamps.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass

import numpy as np

from actionvos.render import LegendRow, render_overlay
from actionvos.video_out import H264Writer

__all__ = ["LatencyStats", "RateMeter", "HudInfo", "hud_lines", "render_frame", "render_frame_rgb", "PromptEditor",
           "HudRecorder"]


class LatencyStats:
    """The last ``capacity`` latencies (seconds) in a preallocated ring buffer; percentiles in milliseconds."""

    def __init__(self, capacity: int = 1024):
        self._buf = np.zeros(capacity, np.float64)
        self._n = 0

    def add(self, seconds: float) -> None:
        self._buf[self._n % len(self._buf)] = seconds
        self._n += 1

    @property
    def count(self) -> int:
        return self._n

    def percentile_ms(self, q: float) -> float:
        """The ``q``-th percentile (0..100) in ms of the retained values; 0.0 when empty."""
        n = min(self._n, len(self._buf))
        return float(np.percentile(self._buf[:n], q) * 1e3) if n else 0.0


class RateMeter:
    """Events per second over the last ``window`` events (``time.monotonic`` seconds)."""

    def __init__(self, window: int = 30):
        self._times: collections.deque[float] = collections.deque(maxlen=window)

    def tick(self, now: float | None = None) -> None:
        self._times.append(time.monotonic() if now is None else now)

    @property
    def rate(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


@dataclass
class HudInfo:
    """Numbers on the HUD line: processed FPS, capture-to-result latency p50/p99 (ms), dropped frames,
    reconnects, backend name, and an optional status / editing line."""

    fps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    dropped: int = 0
    reconnects: int = 0
    backend: str = ""
    status: str = ""


def hud_lines(hud: HudInfo) -> list[str]:
    """The HUD's header line: ``"12.3 FPS · p50 81 ms · p99 140 ms · dropped 3 · [pytorch]"`` (reconnects when any)."""
    parts = [f"{hud.fps:.1f} FPS", f"p50 {hud.p50_ms:.0f} ms", f"p99 {hud.p99_ms:.0f} ms", f"dropped {hud.dropped}"]
    if hud.reconnects:
        parts.append(f"reconnects {hud.reconnects}")
    if hud.backend:
        parts.append(f"[{hud.backend}]")
    return [" · ".join(parts)]


def render_frame_rgb(frame_rgb: np.ndarray, labels: np.ndarray, objects, hud: HudInfo | None, alpha: float = 0.5, *,
                     threshold: float | None = None) -> np.ndarray:
    """Compose the live view as ``[H, W, 3]`` uint8 RGB (a new array); arguments as in :func:`render_frame`."""
    rows = [LegendRow(o.name, float(o.positive_prob), bool(o.passed_gate), i) for i, o in enumerate(objects)]
    header = hud_lines(hud) if hud is not None else []
    footer = [hud.status] if hud is not None and hud.status else []
    return render_overlay(frame_rgb, labels, rows, threshold, alpha=alpha, header=header, footer=footer)


def render_frame(frame_rgb: np.ndarray, labels: np.ndarray, objects, hud: HudInfo | None, alpha: float = 0.5, *,
                 threshold: float | None = None) -> np.ndarray:
    """Compose the window image: masks, legend (``box 0.716 ≥ 0.62 ✓``), HUD line on top, status / prompt editor
    line at the bottom, through :func:`actionvos.render.render_overlay` (so it matches the file overlay).

    Args:
        frame_rgb: ``[H, W, 3]`` uint8 RGB.
        labels: ``[H, W]`` uint8 merged labels (0 background, ``i + 1`` object ``i``).
        objects: per-object results with ``name``, ``positive_prob`` (0..1) and ``passed_gate``.
        hud: the HUD numbers, or None for overlay + legend only.
        alpha: mask opacity in [0, 1].
        threshold: the session's positive-gate threshold (``session.pos_thres``, from the model card or
            ``--pos-thres``). Pass it: without it the legend shows probability and decision but not the
            threshold (there is deliberately no numeric default).
    Returns:
        ``[H, W, 3]`` uint8 BGR (OpenCV order), a new array.
    """
    return np.ascontiguousarray(render_frame_rgb(frame_rgb, labels, objects, hud, alpha, threshold=threshold)[..., ::-1])


class PromptEditor:
    """Typing a new action or object list in the window.

    Keys (OpenCV ``waitKey`` codes): ``a`` starts editing the action, ``o`` the objects (pre-filled with the current
    value), printable keys type, Backspace deletes, Enter applies, Esc cancels. Outside editing, ``q`` / Esc quit.
    """

    def __init__(self, action: str, objects: str):
        self.action = action
        self.objects = objects
        self.field: str | None = None
        self.text = ""

    @property
    def editing(self) -> bool:
        return self.field is not None

    def status(self) -> str:
        """The HUD line while editing (``""`` otherwise)."""
        if self.field is None:
            return ""
        return f"{self.field}: {self.text}_   (Enter apply, Esc cancel)"

    def key(self, code: int) -> str | None:
        """Feed one key code; returns ``"quit"``, ``"apply"`` (``self.action``/``self.objects`` updated) or None."""
        if code < 0:
            return None
        code &= 0xFF
        if self.field is None:
            if code in (ord("q"), 27):
                return "quit"
            if code in (ord("a"), ord("o")):
                self.field = "action" if code == ord("a") else "objects"
                self.text = self.action if self.field == "action" else self.objects
            return None
        if code == 27:
            self.field = None
        elif code in (13, 10):
            if self.field == "action":
                self.action = self.text.strip()
            else:
                self.objects = self.text.strip()
            self.field = None
            return "apply"
        elif code in (8, 127):
            self.text = self.text[:-1]
        elif 32 <= code < 127:
            self.text += chr(code)
        return None


class HudRecorder(H264Writer):
    """Record the rendered window frames (overlay + legend + HUD) to an H.264 MP4 with
    :class:`~actionvos.video_out.H264Writer` (temporary file, verified, renamed by :meth:`close`, also on Ctrl-C).

    ``HudRecorder(path, fps, size, names)``: ``size`` is ``(H, W)`` of the recording; ``names`` is accepted for
    compatibility and unused (the legend is already in the rendered frames). Frames may carry their capture time
    (``write_bgr(bgr, t)`` / ``write(rgb, t)``, seconds) so the recording plays in real time.
    """

    def __init__(self, path, fps: float, size: tuple[int, int], names=None):
        super().__init__(path, fps, size)

    def write_bgr(self, bgr: np.ndarray, t: float | None = None) -> None:
        """Append one ``[H, W, 3]`` uint8 BGR frame (resized to the recording size if needed) at time ``t`` seconds
        (None = ``index / fps``)."""
        h, w = self.size
        if bgr.shape[:2] != (h, w):
            import cv2

            bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
        self.write(np.ascontiguousarray(bgr[..., ::-1]), t)
