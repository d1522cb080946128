"""``actionvos camera`` end to end, headless: HUD + recording path, stop conditions, Ctrl-C, one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import box_video_path
from rt_common import ACTION, CLI_SHIM, REPO, count_video_frames, run_cli, write_small_video


def _args(onnx_dir, tok_dir, *extra):
    return ["camera", "--source", str(box_video_path()), "--action", ACTION, "--objects", "box,pen",
            "--onnx", str(onnx_dir), "--tokenizer", str(tok_dir), "--threads", "2", *extra]


def test_headless_recording_has_n_frames(onnx_dir, tok_dir, tmp_path):
    """--no-realtime: the first 12 frames in order, recorded on the file's own timeline (one output frame each)."""
    out = tmp_path / "rec" / "out.mp4"
    proc = run_cli(_args(onnx_dir, tok_dir, "--no-display", "--no-realtime", "--max-frames", "12", "--record", str(out)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--max-frames 12 reached" in proc.stdout and "recorded 12 frames" in proc.stdout
    assert out.is_file() and count_video_frames(out) == 12
    assert not [p for p in out.parent.iterdir() if p.name != "out.mp4"], "temporary files left behind"
    assert "--backend auto: onnxruntime" in proc.stderr  # auto says what it picked and why


def test_duration_stops_the_app(onnx_dir, tok_dir):
    proc = run_cli(_args(onnx_dir, tok_dir, "--no-display", "--duration", "2"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--duration 2 s reached" in proc.stdout


def _long_source(path, seconds: int = 80, fps: int = 30):
    """A real-frame video long enough (box.mp4's first 60 frames, looped) that Ctrl-C always lands before its end,
    however slowly a loaded machine starts the app (box.mp4 itself plays out in ~15 s)."""
    import cv2

    cap = cv2.VideoCapture(str(box_video_path()))
    frames = []
    while len(frames) < 60:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(f, (160, 120)))
    cap.release()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (160, 120))
    for i in range(seconds * fps):
        writer.write(frames[i % len(frames)])
    writer.release()
    return path


def test_ctrl_c_closes_the_recording(onnx_dir, tok_dir, tmp_path):
    out = tmp_path / "int.mp4"
    src = _long_source(tmp_path.parent / f"{tmp_path.name}_long.mp4")
    args = _args(onnx_dir, tok_dir, "--no-display", "--record", str(out))
    args[args.index("--source") + 1] = str(src)
    # A background shell (nohup, CI runners) may start us with SIGINT ignored, which the child would inherit and
    # Python would keep: restore the default so the app's own Ctrl-C handling is what gets tested.
    proc = subprocess.Popen([sys.executable, "-c", CLI_SHIM, *args],
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(p.name.startswith(".int.mp4") for p in tmp_path.iterdir()):
            time.sleep(0.2)
        time.sleep(1.5)  # a few frames into the recording
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    assert "interrupted (Ctrl-C)" in stdout
    assert out.is_file() and count_video_frames(out) >= 1
    assert not [p for p in tmp_path.iterdir() if p.name != "int.mp4"]


@pytest.mark.parametrize("extra, message", [
    (["--source", "/nonexistent/video.mp4"], "--source"),
    (["--window", "0"], "--window"),
    (["--temporal", "median"], "temporal"),
    (["--record", "x.avi"], ".mp4"),
    (["--serve", "localhost:http"], "--serve"),
])
def test_bad_options_fail_with_one_line(onnx_dir, tok_dir, extra, message):
    proc = run_cli(_args(onnx_dir, tok_dir, "--no-display", "--max-frames", "1", *extra))
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and message in err[0] and "Traceback" not in proc.stderr


def test_display_without_gui_says_use_no_display(onnx_dir, tok_dir):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run([sys.executable, "-c", CLI_SHIM, *_args(onnx_dir, tok_dir, "--max-frames", "1")], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=env)
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(err) == 1 and "--no-display" in err[0] and "--serve" in err[0], proc.stderr
    import cv2

    if not any(ln.strip().startswith("GUI:") and ln.split(":", 1)[1].strip() != "NONE"
               for ln in cv2.getBuildInformation().splitlines()):  # the headless wheel: say how to get a GUI build
        assert "actionvos[gui]" in err[0] and "conflict" in err[0], err[0]


def test_dead_source_is_an_error_with_one_line(onnx_dir, tok_dir):
    """Nothing listens on port 9: no frame at all must not end as a success."""
    args = _args(onnx_dir, tok_dir, "--no-display", "--duration", "5")
    args[args.index("--source") + 1] = "http://127.0.0.1:9/none"
    proc = run_cli(args)
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(err) == 1 and "no frame from stream http://127.0.0.1:9/none" in err[0] and "Traceback" not in proc.stderr
    assert "attempts to open it failed" in err[0]
    assert "cannot open stream http://127.0.0.1:9/none (attempt 2)" in proc.stderr  # reconnect attempts are logged
    assert "final state" in proc.stderr


def test_no_realtime_processes_every_frame(onnx_dir, tok_dir, tmp_path):
    video = write_small_video(tmp_path / "v40.mp4", 40)
    args = _args(onnx_dir, tok_dir, "--no-display", "--no-realtime")
    args[args.index("--source") + 1] = str(video)
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(end of source): 40 frames processed, 0 dropped" in proc.stdout, proc.stdout


def test_serve_without_the_extra_says_how_to_install(onnx_dir, tok_dir):
    shim = "import sys\nsys.modules['fastapi'] = None\n" + CLI_SHIM  # as if fastapi were not installed
    proc = subprocess.run([sys.executable, "-c", shim, *_args(onnx_dir, tok_dir, "--serve", "127.0.0.1:0")], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(err) == 1 and "pip install 'actionvos[serve]'" in err[0], proc.stderr[-2000:]


def test_camera_defaults_to_the_demo_model():
    proc = run_cli(["camera", "--source", str(box_video_path()), "--action", ACTION, "--objects", "box,pen",
                    "--no-display", "--no-realtime", "--max-frames", "2", "--threads", "2"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "bundled demo model" in proc.stderr and "2 frames processed" in proc.stdout
