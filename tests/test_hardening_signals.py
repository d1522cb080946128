"""Issue 11 item 5: SIGTERM / SIGHUP are handled like Ctrl-C (outputs finalised, summary.json marked interrupted
with the signal, exit 128 + signal), and temporary files a SIGKILL leaves are removed by the next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hardening_helpers import REPO, cli, cli_argv, env, make_assets, run_args, temp_files  # noqa: E402
from helpers import box_video_path, shared_dir  # noqa: E402

from actionvos.signals import (Terminated, check_termination, deferred_termination, hold_termination, interrupt_exit_code,
                               termination_signals)

needs_video = pytest.mark.skipif(not box_video_path().is_file(), reason=f"shared data not found at {shared_dir()}")


# ------------------------------------------------------------------ the mechanism, in-process
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_becomes_a_keyboard_interrupt(sig, code):
    with pytest.raises(KeyboardInterrupt) as err:
        with termination_signals():
            os.kill(os.getpid(), sig)
            time.sleep(5)  # the handler raises in the main thread well before this ends
    assert isinstance(err.value, Terminated) and err.value.signum == sig and interrupt_exit_code(err.value) == code
    assert signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler) or callable(signal.getsignal(sig))


def test_deferred_section_finishes_and_repeats_are_ignored():
    done = []
    with pytest.raises(Terminated):
        with termination_signals():
            with deferred_termination():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                os.kill(os.getpid(), signal.SIGTERM)  # a repeat while stopping is ignored
                time.sleep(0.05)
                done.append("frame finished")
            done.append("not reached")
    assert done == ["frame finished"]


def test_frame_in_flight_is_finished():
    """A signal during a frame write is held until the next check point: the frame's bookkeeping completes."""
    steps = []
    with pytest.raises(Terminated):
        with termination_signals():
            hold_termination()  # frame 0's PNG is being written
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            steps.append("frame 0 counted")
            check_termination()  # the next frame / chunk
            steps.append("not reached")
    assert steps == ["frame 0 counted"]


def test_held_signal_is_raised_after_the_grace_period():
    """No check point comes (a long model step): the held signal is raised anyway after grace_s."""
    t0 = time.monotonic()
    with pytest.raises(Terminated):
        with termination_signals(grace_s=0.3):
            hold_termination()
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):  # a 10 s "model step" made of Python bytecode
                time.sleep(0.1)
    assert time.monotonic() - t0 < 5


def test_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with termination_signals():
        pass
    assert signal.getsignal(signal.SIGTERM) == before


# ------------------------------------------------------------------ a real run, signalled mid-run
@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_assets(tmp_path_factory.mktemp("signals"), frames=24)


def _start(assets, out: Path) -> subprocess.Popen:
    return subprocess.Popen(cli_argv(*run_args(assets, assets["video"], out)), cwd=REPO, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen, path: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run wrote no PNG in time"
        time.sleep(0.01)


@needs_video
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_mid_run(assets, tmp_path, sig, code):
    out = tmp_path / "out"
    proc = _start(assets, out)
    _wait_for(proc, out / "clip" / "00001.png")  # the first 2-frame clip is written
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=300)
    name = signal.Signals(sig).name
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    data = json.loads((out / "summary.json").read_text())
    assert data["interrupted"] is True and data["signal"] == name and data["error"] is None
    pngs = sorted((out / "clip").glob("*.png"))
    assert 2 <= len(pngs) < 24 and len(pngs) == data["frames_written"]
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(len(pngs))]
    assert not temp_files(out)
    overlay = data["videos"][0]["overlay"]
    if overlay is not None:  # named only when finalised: then it is a playable file
        import cv2

        assert cv2.VideoCapture(str(out / overlay)).read()[0]


@needs_video
def test_sigkill_leftovers_are_cleaned_by_the_next_run(assets, tmp_path):
    """SIGKILL skips every clean-up; the next run into the folder (with --force, the folder is not empty) removes
    the temporaries, and what it leaves agrees with its summary."""
    out = tmp_path / "out"
    proc = _start(assets, out)
    _wait_for(proc, out / "clip" / "00001.png")
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    stale = [out / "clip" / ".00005.png.abcd1234.tmp.png", out / ".clip_overlay.mp4.k3j2h1g0.tmp.mp4", out / ".summary.json.x1y2z3w4.tmp.json"]
    for p in stale:  # what a kill in the middle of those writes leaves
        p.write_bytes(b"partial")
        os.utime(p, (time.time() - 60, time.time() - 60))
    res = cli(*run_args(assets, assets["video"], out, "--force"))
    assert res.returncode == 0, res.stderr
    assert not temp_files(out)
    data = json.loads((out / "summary.json").read_text())
    pngs = sorted((out / "clip").glob("*.png"))
    assert len(pngs) == data["frames_written"] == 24 and data["interrupted"] is False


@needs_video
def test_camera_sigterm_exits_143(assets, tmp_path):
    """A command that stops cleanly on its own (the live view) still reports the signal: exit 143."""
    from helpers import make_small_clip

    video = make_small_clip(tmp_path / "long.mp4", frames=200, short_side=64, step=1)  # 20 s at real time
    proc = subprocess.Popen(cli_argv("camera", "--source", video, "--action", "move box", "--objects", "box",
                                     "--no-display", "--checkpoint", assets["checkpoint"]),
                            cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # the session is open once its log line is out
        seen.append(line)
        if "session:" in line:
            break
    time.sleep(1.0)
    assert proc.poll() is None, "".join(seen)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, "".join(seen) + stderr
    assert "Traceback" not in stderr and "interrupted (SIGTERM)" in stderr
