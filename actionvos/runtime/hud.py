"""What the camera window shows: mask overlay, per-object legend, HUD line, prompt editor; plus the recorder.

* :class:`LatencyStats` — fixed-size ring buffer of latencies (no growth over a long run), p50/p99 in ms.
* :class:`RateMeter` — frames per second over a sliding window of timestamps.
* :func:`render_frame` — overlay (DAVIS palette colours of :mod:`actionvos.inference.writers`) + legend + HUD.
* :class:`PromptEditor` — key handling for typing a new action (``a``) or object list (``o``) while running.
* :class:`HudRecorder` — :class:`~actionvos.inference.writers.OverlayWriter` (atomic MP4) fed the rendered frames.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass

import numpy as np

from actionvos.inference.writers import OverlayWriter, davis_palette

__all__ = ["LatencyStats", "RateMeter", "HudInfo", "render_frame", "PromptEditor", "HudRecorder"]

_PALETTE = davis_palette()


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


def render_frame(frame_rgb: np.ndarray, labels: np.ndarray, objects, hud: HudInfo | None, alpha: float = 0.5) -> np.ndarray:
    """Compose the window image.

    Args:
        frame_rgb: ``[H, W, 3]`` uint8 RGB.
        labels: ``[H, W]`` uint8 merged labels (0 background, ``i + 1`` object ``i``).
        objects: per-object results with ``name``, ``positive_prob`` (0..1) and ``passed_gate``.
        hud: the HUD numbers, or None for overlay + legend only.
        alpha: mask opacity in [0, 1].
    Returns:
        ``[H, W, 3]`` uint8 BGR (OpenCV order), a new array.
    """
    import cv2

    bgr = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)
    if labels.any():
        colours = _PALETTE[:, ::-1][labels]  # BGR per pixel
        blended = cv2.addWeighted(bgr, 1.0 - alpha, colours, alpha, 0.0)
        mask = labels > 0
        bgr[mask] = blended[mask]
    h, w = bgr.shape[:2]
    scale = max(0.35, min(0.8, h / 720))
    line = int(24 * scale) + 6
    rows = []
    if hud is not None:
        rows.append((f"{hud.fps:4.1f} FPS  p50 {hud.p50_ms:.0f} ms  p99 {hud.p99_ms:.0f} ms  dropped {hud.dropped}"
                     + (f"  reconnects {hud.reconnects}" if hud.reconnects else "") + (f"  [{hud.backend}]" if hud.backend else ""), None))
    for i, o in enumerate(objects):
        rows.append((f"{o.name}  p={o.positive_prob:.2f} {'pass' if o.passed_gate else 'gated'}", i + 1))
    if hud is not None and hud.status:
        rows.append((hud.status, None))
    for r, (text, label) in enumerate(rows):
        y = 4 + r * line
        if y + line > h:
            break
        x = 4
        (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(bgr, (2, y), (min(w - 1, 8 + tw + (line if label else 0)), y + line), (0, 0, 0), -1)
        if label:
            b, g, rr = (int(v) for v in _PALETTE[label][::-1])
            cv2.rectangle(bgr, (5, y + 3), (2 + line - 3, y + line - 3), (b, g, rr), -1)
            x = 2 + line + 2
        cv2.putText(bgr, text, (x, y + line - 7), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return bgr


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


class HudRecorder(OverlayWriter):
    """Record the rendered window frames (overlay + legend + HUD) to an MP4 with :class:`OverlayWriter`'s atomic
    temporary-file-then-rename handling: :meth:`close` (also on Ctrl-C) leaves a complete file at ``path``."""

    def write_bgr(self, bgr: np.ndarray) -> None:
        """Append one ``[H, W, 3]`` uint8 BGR frame of the recording size."""
        if self._writer is None:
            raise RuntimeError("recording already closed")
        h, w = self.size
        if bgr.shape[:2] != (h, w):
            import cv2

            bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
        self._writer.write(bgr)
        self.frames_written += 1
