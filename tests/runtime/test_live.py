"""The live app's threads: keys typed while inference is slow are all kept (headless editor and the real display
loop with OpenCV's window calls replaced), the window refreshes at the camera's rate, and recordings last as long
as the session."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from actionvos.runtime import camera as camera_mod
from actionvos.runtime.camera import CameraOptions, KeyboardThread, run_camera
from actionvos.runtime.hud import PromptEditor
from actionvos.runtime.recording import ConstantRateRecorder
from actionvos.runtime.session import StreamConfig, StreamSession

from helpers import box_video_path
from rt_common import ACTION, SlowBackend, write_small_video


def _typing(text: str, field: str = "a", old: str = ACTION) -> list[int]:
    """Key codes: start editing ``field``, erase the pre-filled ``old`` text, type ``text``, Enter."""
    return [ord(field)] + [8] * len(old) + [ord(c) for c in text] + [13]


def test_keyboard_thread_keeps_every_key():
    applied = []
    editor = PromptEditor(ACTION, "box,pen")
    keys = KeyboardThread(editor, lambda a, o: applied.append((a, o)), lambda: applied.append("quit"))
    keys.start()
    codes = _typing("pour water") + _typing("cup,kettle", "o", "box,pen")
    for code in codes:  # all at once: faster than anyone types
        keys.feed(code)
    keys.feed(-1)  # "no key" from waitKey is ignored
    assert keys.wait_idle(5.0)
    keys.finish()
    assert keys.keys_handled == len(codes)
    assert applied == [("pour water", "box,pen"), ("pour water", "cup,kettle")]


def test_keys_typed_during_slow_inference_are_applied_to_the_next_frame(ort_backend, tokenizer):
    """Inference takes >= 0.6 s per frame; the whole prompt is typed within a few ms while a frame is in flight."""
    session = StreamSession(SlowBackend(ort_backend, 0.6), StreamConfig(), tokenizer)
    live, typed = {}, {}

    def on_result(item, result, report):
        if report.frames_processed >= 2 and not typed and "app" in live:
            for code in _typing("pour water"):
                live["app"].keys.feed(code)
            typed["after_frame"] = result.index

    opts = CameraOptions(display=False, max_frames=6, on_start=lambda app: live.setdefault("app", app))
    report = run_camera(session, str(box_video_path()), ACTION, "box,pen", opts, on_result=on_result)
    assert report.prompt_changes == 1, report
    app = live["app"]
    log = app.view.state()["log"]
    assert len(log) == 1 and log[0]["action"] == "pour water" and log[0]["origin"] == "keyboard", log
    assert log[0]["error"] is None and log[0]["applied_frame"] <= typed["after_frame"] + 2, (log, typed)
    assert [p.text.endswith("pour water") for p in session.prompts] == [True, True]


class _FakeWindow:
    """Stands in for OpenCV's window calls: counts what was shown, types a script of keys one per ``waitKey``."""

    def __init__(self, script: list[int]):
        self.script = list(script)
        self.shown: list[int] = []
        self.calls = 0
        self.lock = threading.Lock()

    def imshow(self, name, bgr):
        assert bgr.ndim == 3 and bgr.dtype == np.uint8
        self.shown.append(int(bgr.sum() % 1_000_003))

    def waitKey(self, ms):  # noqa: N802 - OpenCV's name
        time.sleep(ms / 1000)
        self.calls += 1
        return self.script.pop(0) if self.script else -1


def test_display_refreshes_at_camera_rate_and_loses_no_key(ort_backend, tokenizer, monkeypatch):
    """The real display loop, with imshow/waitKey replaced: a 30 fps file while inference takes >= 0.4 s."""
    fake = _FakeWindow([-1] * 40 + _typing("pour water"))
    monkeypatch.setattr(camera_mod, "check_display", lambda: None)
    monkeypatch.setattr(cv2, "imshow", fake.imshow)
    monkeypatch.setattr(cv2, "waitKey", fake.waitKey)
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    session = StreamSession(SlowBackend(ort_backend, 0.4), StreamConfig(), tokenizer)
    t0 = time.monotonic()
    report = run_camera(session, str(box_video_path()), ACTION, "box,pen", CameraOptions(display=True, duration=4.0))
    elapsed = time.monotonic() - t0
    assert report.stop_reason.startswith("--duration"), report
    assert not fake.script, "keys left unread"
    assert report.prompt_changes == 1 and all(p.text.endswith("pour water") for p in session.prompts), report
    # the window showed new camera frames far more often than inference produced results
    assert report.frames_processed <= elapsed / 0.4 + 1
    assert len(fake.shown) >= 3 * report.frames_processed and len(fake.shown) >= 30, (len(fake.shown), report)


def test_recording_lasts_as_long_as_the_session(ort_backend, tokenizer, tmp_path):
    """~3 s at ~3 processed FPS: the file must play ~3 s (writing one frame per result would give ~0.3 s)."""
    out = tmp_path / "rec.mp4"
    session = StreamSession(SlowBackend(ort_backend, 0.3), StreamConfig(), tokenizer)
    report = run_camera(session, str(box_video_path()), ACTION, "box,pen",
                        CameraOptions(display=False, duration=3.0, record=out))
    try:
        from actionvos.video_out import probe_video
    except ImportError:  # the mp4v fallback: constant rate
        cap = cv2.VideoCapture(str(out))
        seconds = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) / cap.get(cv2.CAP_PROP_FPS)
        cap.release()
    else:
        info = probe_video(out)
        seconds = info.duration_s
        assert info.codec == "h264" and info.pix_fmt == "yuv420p", info
    assert 3 <= report.recorded_frames <= 12, report
    assert 2.3 <= seconds <= 3.6, f"recording plays {seconds:.2f} s for a 3 s session ({report})"
    assert abs(seconds - report.recording_s) < 0.1


def test_constant_rate_recorder_places_frames_at_their_times(tmp_path):
    rec = ConstantRateRecorder(tmp_path / "t.mp4", (48, 64), fps=10.0)
    frames = [np.full((48, 64, 3), v, np.uint8) for v in (0, 120, 250)]
    for f, t in zip(frames, (100.0, 100.5, 101.2)):  # any clock; only differences matter
        rec.write(f, t)
    rec.close(t_end=102.0)
    cap = cv2.VideoCapture(str(tmp_path / "t.mp4"))
    means = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        means.append(float(bgr.mean()))
    cap.release()
    assert len(means) == 20 and rec.frames_written == 3  # 2.0 s at 10 fps
    levels = [int(np.argmin([abs(m - v) for v in (0, 120, 250)])) for m in means]
    assert levels == [0] * 5 + [1] * 7 + [2] * 8, levels


def test_no_realtime_file_processes_every_frame_in_order(ort_backend, tokenizer, tmp_path):
    video = write_small_video(tmp_path / "v.mp4", 40)
    session = StreamSession(SlowBackend(ort_backend, 0.02), StreamConfig(), tokenizer)
    seen = []
    report = run_camera(session, str(video), ACTION, "box", CameraOptions(display=False, realtime=False),
                        on_result=lambda item, result, rep: seen.append(item.index))
    assert report.stop_reason == "end of source" and report.error is None, report
    assert seen == list(range(40)) and report.frames_processed == 40 and report.dropped == 0, (seen, report)


def test_a_refused_prompt_change_keeps_the_running_prompts(ort_backend, tokenizer):
    session = StreamSession(SlowBackend(ort_backend, 0.05), StreamConfig(), tokenizer)
    live = {}

    def on_result(item, result, report):
        app = live.get("app")
        if app is not None and report.frames_processed == 2:
            app.request_prompts("move box", " , ,", "keyboard")  # no object names at all
        elif app is not None and report.frames_processed == 4:
            app.request_prompts("open jar", "jar", "web form")  # superseded before the next frame...
            app.request_prompts("open jar", "jar,lid", "web form")  # ...by this one

    run_camera(session, str(box_video_path()), ACTION, "box,pen",
               CameraOptions(display=False, max_frames=7, on_start=lambda app: live.setdefault("app", app)),
               on_result=on_result)
    log = live["app"].view.state()["log"]
    assert [c["objects"] for c in log] == [", ,", "jar", "jar,lid"], log
    assert log[0]["error"] and log[0]["applied_frame"] is None
    assert "superseded" in log[1]["error"]
    assert log[2]["error"] is None and log[2]["applied_frame"] == 4
    assert [p.text for p in session.prompts] == log[2]["prompts"] and len(log[2]["prompts"]) == 2
    assert (live["app"].editor.action, live["app"].editor.objects) == ("open jar", "jar,lid")
