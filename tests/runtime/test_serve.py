"""``--serve``: address parsing, the missing-extra message, bind errors, the no-authentication warning, and the
HTTP API of a running app (page, state, JPEG frame, MJPEG stream, prompt form applied to the next frame).
Every server binds 127.0.0.1 and is stopped by the test."""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'actionvos[serve]'")
pytest.importorskip("uvicorn", reason="needs the serve extra: pip install 'actionvos[serve]'")

from actionvos.errors import ConfigError  # noqa: E402
from actionvos.runtime import serve  # noqa: E402
from actionvos.runtime.camera import CameraOptions, run_camera  # noqa: E402
from actionvos.runtime.session import StreamConfig, StreamSession  # noqa: E402

from helpers import box_video_path  # noqa: E402
from rt_common import ACTION, SlowBackend  # noqa: E402


def test_parse_serve_address():
    assert serve.parse_serve_address("8000") == ("127.0.0.1", 8000)
    assert serve.parse_serve_address(":8001") == ("127.0.0.1", 8001)
    assert serve.parse_serve_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert serve.parse_serve_address("[::1]:9001") == ("::1", 9001)
    for bad in ("host:port", "127.0.0.1:70000", "x"):
        with pytest.raises(ConfigError, match="--serve"):
            serve.parse_serve_address(bad)


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"uvicorn.*pip install 'actionvos\[serve\]'"):
        serve.require_serve_deps()


def test_port_in_use_is_one_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}: cannot listen there"):
            serve._bind("127.0.0.1", port)


class _NoLive:
    stopped = True


def test_other_address_warns_no_authentication(monkeypatch, caplog):
    real_bind = serve._bind
    monkeypatch.setattr(serve, "_bind", lambda host, port: real_bind("127.0.0.1", 0))  # tests bind loopback only
    with caplog.at_level(logging.WARNING, logger="actionvos.runtime.serve"):
        server = serve.start_server(_NoLive(), "0.0.0.0", 0)
    try:
        assert any("NO authentication" in r.getMessage() for r in caplog.records)
    finally:
        server.stop()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="actionvos.runtime.serve"):
        server = serve.start_server(_NoLive(), "127.0.0.1", 0)
    server.stop()
    assert not any("authentication" in r.getMessage() for r in caplog.records)


def _get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def _post(url: str, payload: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_http_api_of_a_running_app(ort_backend, tokenizer):
    session = StreamSession(SlowBackend(ort_backend, 0.2), StreamConfig(), tokenizer)
    live, out = {}, {}
    opts = CameraOptions(display=False, duration=60, serve=("127.0.0.1", 0), on_start=lambda app: live.setdefault("app", app))

    def target():
        try:
            out["report"] = run_camera(session, str(box_video_path()), ACTION, "box,pen", opts)
        except BaseException as err:  # surfaced below
            out["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        app = _wait(lambda: live.get("app"), 60, "the app to start")
        url = app.url
        assert url.startswith("http://127.0.0.1:")
        page = _get(url).decode()
        for needle in ('id="view"', 'src="stream.mjpg"', 'id="form"', 'id="action"', 'id="objects_in"', 'id="perf"'):
            assert needle in page
        state = _wait(lambda: (s := json.loads(_get(url + "api/state")))["frames_processed"] >= 2 and s, 60, "frames")
        assert state["running"] and state["threshold"] == pytest.approx(session.pos_thres)
        assert [o["name"] for o in state["objects"]] == ["box", "pen"]
        assert all(0.0 <= o["positive_prob"] <= 1.0 and "legend" in o for o in state["objects"])
        for mode in ("", "?mode=result"):  # the live camera frame / the processed frame with its own masks
            img = cv2.imdecode(np.frombuffer(_get(url + "frame.jpg" + mode), np.uint8), cv2.IMREAD_COLOR)
            assert img.shape == (480, 640, 3) and img.std() > 10
        with pytest.raises(urllib.error.HTTPError, match="400"):
            _get(url + "frame.jpg?mode=bogus")
        with urllib.request.urlopen(url + "stream.mjpg", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            head = r.read(200)
        assert head.startswith(b"--actionvosframe\r\nContent-Type: image/jpeg") and b"\xff\xd8" in head
        code, body = _post(url + "api/prompts", {"action": "  ", "objects": "cup"})
        assert code == 400 and "action" in body["detail"]
        code, body = _post(url + "api/prompts", {"action": "pour water", "objects": "cup,kettle"})
        assert code == 200 and body["accepted"], body
        state = _wait(lambda: (s := json.loads(_get(url + "api/state")))["log"] and s["log"][-1]["applied_frame"] is not None
                      and s, 30, "the change to be applied")
        change = state["log"][-1]
        assert change["origin"] == "web form" and change["error"] is None
        assert state["action"] == "pour water" and [o["name"] for o in state["objects"]] in (["cup", "kettle"], ["box", "pen"])
        assert [p.text for p in session.prompts] == change["prompts"] and all("pour water" in t for t in change["prompts"])
        _wait(lambda: [o["name"] for o in json.loads(_get(url + "api/state"))["objects"]] == ["cup", "kettle"], 30,
              "the HUD to show the new objects")
    finally:
        if "app" in live:
            live["app"].stop("test over")
        thread.join(60)
    assert not thread.is_alive() and "error" not in out, out
    assert out["report"].stop_reason == "test over" and out["report"].prompt_changes == 1
    with pytest.raises(OSError):  # the server is gone with the app
        _get(url, timeout=2)
