"""The live view in a real browser: ``actionvos camera --serve`` with the bundled demo model on a real video (box.mp4
frames, looped and paced like a camera), loaded by headless Chromium.

Checks, on the screenshot's pixels: the image is the video frame the app was showing (matched against the source),
with a mask blended in an object's palette colour (``0.5 * frame + 0.5 * colour``) and the darkened legend/HUD
panel with text. Then a prompt typed into the page's form shows up in the HUD and the session's prompts changed (the app's
state and its log line). Skips only where Chromium or chromedriver cannot be found.

Set ``ACTIONVOS_LIVE_VIEW_PNG=path`` to keep the screenshot (benchmarks/live_view.png was made that way).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import cv2
import numpy as np
import pytest

from helpers import box_video_path
from rt_common import CLI_SHIM, REPO

pytestmark = pytest.mark.slow

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome"))
                 if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
SIZE = (480, 640)  # H, W of the served video (box.mp4 at its own size)
PALETTE = {1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0)}  # RGB of objects 0..2 (DAVIS palette)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _looped_video(path, loop_frames: int = 150, seconds: int = 180, fps: int = 10) -> tuple[object, np.ndarray]:
    """box.mp4 (every 3rd frame) looped for ``seconds``; returns the path and one loop ``[N, H, W, 3]`` RGB
    as the app's OpenCV decodes it (read back from the written file, so the comparison is exact up to JPEG)."""
    cap = cv2.VideoCapture(str(box_video_path()))
    frames, i = [], 0
    while len(frames) < loop_frames:
        ok, bgr = cap.read()
        if not ok:
            break
        if i % 3 == 0:
            frames.append(cv2.resize(bgr, SIZE[::-1], interpolation=cv2.INTER_AREA))
        i += 1
    cap.release()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE[::-1])
    for k in range(seconds * fps):
        writer.write(frames[k % len(frames)])
    writer.release()
    cap = cv2.VideoCapture(str(path))
    decoded = []
    while len(decoded) < len(frames):
        ok, bgr = cap.read()
        assert ok
        decoded.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return path, np.stack(decoded)


def _state(url: str) -> dict:
    with urllib.request.urlopen(url + "api/state", timeout=10) as r:
        return json.loads(r.read())


def _wait(pred, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the app exited ({proc.returncode}) while waiting for {what}: {proc.stderr.read()[-3000:]}")
        try:
            value = pred()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _check_overlay(shot_rgb: np.ndarray, loop: np.ndarray) -> dict:
    """Pixel checks of the image region of the screenshot; returns numbers for the failure message."""
    h, w = SIZE
    assert shot_rgb.shape[:2] == (h, w), shot_rgb.shape
    s = shot_rgb.astype(np.float32)
    # 1. it is a frame of the video: the best-matching source frame (median difference below the legend)
    body = slice(h // 2, h)
    errs = [float(np.median(np.abs(s[body] - f[body].astype(np.float32)))) for f in loop]
    k = int(np.argmin(errs))
    frame = loop[k].astype(np.float32)
    assert errs[k] < 6, f"the screenshot matches no video frame (best median error {errs[k]:.1f} at frame {k})"
    # 2. a mask blended in an object's colour: pixels that differ from the frame and equal 0.5 * frame + 0.5 * colour
    differ = np.abs(s - frame).sum(-1) > 40
    differ[: h // 3, : w // 2] = False  # the legend panel
    blended = {lab: (np.abs(s - (0.5 * frame + 0.5 * np.array(c, np.float32))).max(-1) < 24) & differ
               for lab, c in PALETTE.items()}
    best = max(blended, key=lambda lab: int(blended[lab].sum()))
    n_mask = int(blended[best].sum())
    assert n_mask >= 150, f"no mask overlay in the screenshot ({ {k: int(v.sum()) for k, v in blended.items()} } pixels)"
    # 3. the legend / HUD panel at the top left: a darkened box with light text over the frame
    panel, under = s[:40, :120], frame[:40, :120]
    changed = float((np.abs(panel - under).sum(-1) > 60).mean())
    darker = float(np.median(under.mean(-1)) - np.median(panel.mean(-1)))  # median: the text is a few pixels
    bright = int((panel.min(-1) > 200).sum())
    assert changed > 0.3 and darker > 20 and bright >= 20, \
        f"no legend panel: {changed:.2f} of its pixels changed, {darker:.0f} darker, {bright} bright pixels"
    return {"frame": k, "match_err": round(errs[k], 2), "mask_label": best, "mask_pixels": n_mask,
            "panel_darker": round(darker, 1)}


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="Chromium or chromedriver not found (apt-get install -y chromium chromium-driver)")
def test_live_view_in_headless_chromium(tmp_path):
    pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'actionvos[serve]'")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e .[dev])")
    from PIL import Image
    from selenium.webdriver.common.by import By

    video, loop = _looped_video(tmp_path / "camera.mp4")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    args = ["camera", "--source", str(video), "--action", "move box", "--objects", "box,pen,right hand",
            "--serve", f"127.0.0.1:{port}", "--duration", "175", "--threads", "2"]  # no --checkpoint: the demo model
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    app = subprocess.Popen([sys.executable, "-c", CLI_SHIM, *args], cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # Ctrl-C works in CI shells
    driver = None
    t0 = time.monotonic()
    try:
        _wait(lambda: any(o["mask_pixels"] > 200 for o in _state(url)["objects"]), 150, "a result with a mask", app)
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--window-size=1240,760", "--force-device-scale-factor=1"):
            opts.add_argument(arg)
        driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
        driver.set_page_load_timeout(30)
        driver.get(url)
        img = driver.find_element(By.ID, "view")
        _wait(lambda: driver.execute_script("return arguments[0].naturalWidth", img) == SIZE[1], 30, "the MJPEG image")
        _wait(lambda: "FPS" in driver.find_element(By.ID, "perf").text
              and len(driver.find_elements(By.CSS_SELECTOR, "#objects tr")) == 3, 30, "the HUD")
        hud_text = driver.find_element(By.ID, "hud").text
        assert "right hand" in hud_text and "latency p50" in hud_text and "dropped" in hud_text, hud_text
        assert "0.75" in hud_text or "≥" in hud_text or "<" in hud_text, hud_text  # probability against the threshold
        info = {}
        for mode in ("live", "result"):  # the camera at its rate with the latest masks; processed frames, aligned
            if mode == "result":
                driver.find_element(By.ID, "aligned").click()
                _wait(lambda: driver.execute_script("return arguments[0].src", img).endswith("mode=result"), 10, "mode")
                _wait(lambda: driver.execute_script("return arguments[0].naturalWidth", img) == SIZE[1], 30, "the image")
            time.sleep(1.0)  # a few more MJPEG frames
            png = driver.get_screenshot_as_png()
            (tmp_path / f"live_view_{mode}.png").write_bytes(png)
            shot = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
            r = img.rect
            x, y = int(round(r["x"])), int(round(r["y"]))
            info[mode] = _check_overlay(shot[y: y + SIZE[0], x: x + SIZE[1]], loop)
        keep = os.environ.get("ACTIONVOS_LIVE_VIEW_PNG")
        if keep:  # the aligned view: what the closing note shows
            with open(keep, "wb") as f:
                f.write(png)

        # a prompt submitted through the form shows up in the HUD and changes the session's prompts
        for field, text in (("action", "rotate bottle"), ("objects_in", "bottle,right hand")):
            box = driver.find_element(By.ID, field)
            box.clear()
            box.send_keys(text)
        driver.find_element(By.ID, "apply").click()
        _wait(lambda: "action: rotate bottle" in driver.find_element(By.ID, "prompts").text
              and [e.text.split(" ")[0] for e in driver.find_elements(By.CSS_SELECTOR, "#objects tr")] == ["bottle", "right"],
              90, "the new prompts in the HUD", app)
        assert "applied at frame" in driver.find_element(By.ID, "log").text
        state = _state(url)
        assert state["prompts"] == ["bottle used in the action of rotate bottle",
                                    "right hand used in the action of rotate bottle"], state["prompts"]
        assert state["log"][-1]["origin"] == "web form" and state["log"][-1]["error"] is None
    finally:
        if driver is not None:
            driver.quit()
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGINT)
        try:
            stdout, stderr = app.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(app.pid, signal.SIGKILL)
            stdout, stderr = app.communicate(timeout=10)
    assert app.returncode == 0, stderr[-3000:]
    assert "no --checkpoint/--onnx/--engine: using the bundled demo model" in stderr
    assert "prompts changed (web form) at frame" in stderr and "rotate bottle" in stderr
    assert "interrupted (Ctrl-C)" in stdout
    print(f"browser test: {time.monotonic() - t0:.1f} s; overlay {info}")
