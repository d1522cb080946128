"""Issue 11 item 4: a truncated video (the first 30 % of box.mp4's bytes; its header still says 456 frames) is
warned about on stderr and recorded in summary.json (frames_expected / frames_decoded / truncated)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hardening_helpers import cli, make_assets, run_args  # noqa: E402
from helpers import box_video_path, shared_dir  # noqa: E402

pytestmark = pytest.mark.skipif(not box_video_path().is_file(), reason=f"shared data not found at {shared_dir()}")


@pytest.fixture(scope="module")
def truncated(tmp_path_factory) -> Path:
    data = box_video_path().read_bytes()
    path = tmp_path_factory.mktemp("trunc") / "box_30pct.mp4"
    path.write_bytes(data[: int(len(data) * 0.3)])
    return path


def _decode_all(video) -> int:
    return sum(len(c.names) for c in video.clips(64))


def test_truncated_file_is_detected(truncated, caplog):
    from actionvos.inference.video_io import VideoFileSource
    from actionvos.inference.writers import VideoSummary

    video = VideoFileSource.open(truncated)
    assert video.frames_expected == 456
    with caplog.at_level(logging.WARNING):
        n = _decode_all(video)
    assert 0 < n < 0.5 * 456 and video.frames_decoded == n and video.truncated
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{n} of the 456 frames" in w for w in warning), warning
    vsum = VideoSummary(name="box_30pct", size=video.size)
    vsum.record_decode(video)
    d = vsum.to_dict()
    assert (d["frames_expected"], d["frames_decoded"], d["truncated"]) == (456, n, True)


def test_complete_file_is_not_truncated(caplog):
    """box.mp4 decodes 455 of the 456 frames its header declares: within the tolerance, no warning."""
    from actionvos.inference.video_io import VideoFileSource

    video = VideoFileSource.open(box_video_path())
    with caplog.at_level(logging.WARNING):
        n = _decode_all(video)
    assert n >= 454 and not video.truncated
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_run_warns_and_records(tmp_path):
    """End to end on a small clip cut the same way (box.mp4's 133 full-size frames would take minutes on 2 busy
    cores): a 60-frame 64-px H.264 clip with its index first (``+faststart``, as box.mp4), cut to its first 30 %."""
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not found")
    from helpers import make_small_clip

    assets = make_assets(tmp_path / "assets", frames=2)
    src = make_small_clip(tmp_path / "src.mp4", frames=60, short_side=64, step=1)
    whole = tmp_path / "whole.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", str(whole)], check=True)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    out = tmp_path / "out"
    res = cli(*run_args(assets, cut, out, "--no-overlay"), timeout=600)
    assert res.returncode == 0, res.stderr
    assert "truncated" in res.stderr and "of the 60 frames" in res.stderr
    v = json.loads((out / "summary.json").read_text())["videos"][0]
    assert v["truncated"] is True and v["frames_expected"] == 60
    assert v["frames_decoded"] == v["frames_written"] == len(list((out / "cut").glob("*.png"))) < 30
