"""Constants and small helpers shared by the runtime tests (imported by name: this folder is on ``sys.path``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: Model input (H, W): box.mp4 is 640x480, so a 48-px short side gives 48x64.
INPUT_SIZE = (48, 64)
OBJECTS = "box,pen,right hand"
ACTION = "move box"
REPO = Path(__file__).resolve().parents[2]

#: Run ``actionvos`` with the camera command registered (works before and after the lead wires it into
#: actionvos/cli.py).
CLI_SHIM = (
    "import sys\n"
    "from actionvos import cli\n"
    "cli._register()\n"
    "if not any(getattr(c, 'name', None) == 'camera' for c in cli.app.registered_commands):\n"
    "    from actionvos.runtime import cli as rc\n"
    "    rc.register(cli.app)\n"
    "sys.argv[0] = 'actionvos'\n"
    "cli.main()\n"
)


def run_cli(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """``actionvos ARGS`` in a subprocess (text output captured)."""
    return subprocess.run([sys.executable, "-c", CLI_SHIM, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def count_video_frames(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


class SlowBackend:
    """A real backend whose ``decode`` also sleeps ``delay`` seconds (inference slower than the camera)."""

    def __init__(self, inner, delay: float):
        self.inner = inner
        self.info = inner.info
        self.delay = delay

    def decode(self, window, text):
        import time

        time.sleep(self.delay)
        return self.inner.decode(window, text)

    def close(self):
        pass

    def __getattr__(self, name):
        return getattr(self.inner, name)


def write_small_video(path: Path, frames: int, size: tuple[int, int] = (48, 64), fps: float = 30.0, moving: bool = True) -> Path:
    """An mp4v video of ``frames`` synthetic frames of ``size`` (H, W): a bright square moving over noise."""
    import cv2
    import numpy as np

    h, w = size
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    for i in range(frames):
        img = base.copy()
        x = (i * 2) % max(1, w - 8) if moving else 0
        img[h // 3: h // 3 + 8, x: x + 8] = 255
        out.write(img)
    out.release()
    return path
