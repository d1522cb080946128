"""Shared pieces of the ``test_hardening_*`` tests (issue 11): run the real CLI in a subprocess and check its output.

Runs use the ``reference_tiny`` random checkpoint with ``short_side=64`` and ``max_clip_frames=2`` (so a run writes
its first PNGs within a second or two and can be interrupted mid-run) and a tiny tokenizer, on short clips of
``shared/data/videos/box.mp4``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import make_small_clip, make_tiny_checkpoint, train_tiny_tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def env() -> dict:
    """The environment of a CLI subprocess: the repository first on ``PYTHONPATH``."""
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def cli_argv(*args: str) -> list[str]:
    """``python -m actionvos ARGS``."""
    return [sys.executable, "-m", "actionvos", *[str(a) for a in args]]


def cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m actionvos ARGS`` from the repository root, capturing text output."""
    return subprocess.run(cli_argv(*args), cwd=REPO, env=env(), capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_one_error(res: subprocess.CompletedProcess, *fragments: str, code: int | None = None) -> str:
    """Non-zero exit (``code`` if given), exactly one ``error:`` line containing every fragment, no traceback."""
    assert res.returncode != 0, res.stderr
    if code is not None:
        assert res.returncode == code, res.stderr
    errors = error_lines(res.stderr)
    assert len(errors) == 1, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    for frag in fragments:
        assert frag in errors[0], errors[0]
    return errors[0]


def make_assets(folder: Path, frames: int = 6) -> dict:
    """A ``frames``-frame 64-px clip of box.mp4 (``clip.mp4``) and the fast tiny checkpoint (carrying its card and
    tokenizer, so runs need no ``--tokenizer``)."""
    folder.mkdir(parents=True, exist_ok=True)
    tok = train_tiny_tokenizer(folder / "tok")
    return {
        "video": make_small_clip(folder / "clip.mp4", frames=frames, short_side=64, step=1),
        "checkpoint": make_tiny_checkpoint(folder / "tiny.pth", tokenizer=tok, short_side=64, max_clip_frames=2),
        "tokenizer": tok,
        "dir": folder,
    }


def run_args(assets: dict, video, out, *extra) -> list[str]:
    """Arguments of ``actionvos run`` with the tiny model (no progress bar)."""
    return ["run", str(video), "--action", "move box", "--objects", "box,pen", "--checkpoint", str(assets["checkpoint"]),
            "--output", str(out), "--no-progress", *extra]


def temp_files(folder: Path) -> list[Path]:
    """Leftover atomic-write temporaries (``.{name}.*.tmp*``) anywhere under ``folder``."""
    return [p for p in Path(folder).rglob(".*") if ".tmp" in p.name]
