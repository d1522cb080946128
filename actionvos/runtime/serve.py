"""The browser view of ``actionvos camera --serve HOST:PORT`` (FastAPI + uvicorn, the ``[serve]`` extra).

Routes (all read-only except the form):

* ``GET /`` — the page: the live overlay, the HUD (FPS, latency p50/p99, dropped frames, per-object positive
  probability and gate against the threshold) and a form to change the action and objects;
* ``GET /stream.mjpg`` — ``multipart/x-mixed-replace`` JPEG frames: the newest camera frame with the latest masks,
  legend and HUD (:meth:`~actionvos.runtime.camera.LiveView.compose`), at the camera's rate (at most ``max_fps``).
  With a slow model the masks lag the picture by the latency shown; ``?mode=result`` streams the processed frames
  with their own masks instead (aligned, at the inference rate);
* ``GET /frame.jpg`` (``?mode=result`` too) — one such frame;
* ``GET /api/state`` — the HUD as JSON (:meth:`~actionvos.runtime.camera.LiveView.state`);
* ``POST /api/prompts`` — JSON ``{"action": str, "objects": str}``: the change is applied to the next frame the
  model takes and logged; the page shows it (and any refusal) from ``/api/state``.

There is no authentication: anyone who can reach the address can watch the camera and change the prompts. The
server binds 127.0.0.1 unless told otherwise and warns when bound elsewhere. It runs on its own thread
(:func:`start_server`) and stops with the app (:meth:`LiveServer.stop`).
"""

import ipaddress
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from actionvos.errors import ConfigError

# No ``from __future__ import annotations`` here: FastAPI reads the request model from the route's annotations at
# definition time, and that model is a class local to :func:`build_app`.

if TYPE_CHECKING:
    from actionvos.runtime.camera import LiveApp

__all__ = ["parse_serve_address", "require_serve_deps", "build_app", "start_server", "LiveServer", "INSTALL_HINT"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'actionvos[serve]'"
#: Longest accepted action / object list (characters) from the form.
MAX_PROMPT_CHARS = 300


def require_serve_deps() -> None:
    """Raise :class:`ConfigError` (one line, with the install command) when FastAPI or uvicorn is missing."""
    missing = []
    for name in ("fastapi", "uvicorn"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(f"--serve needs {' and '.join(missing)}, which are not installed: {INSTALL_HINT}")


def parse_serve_address(text: str) -> tuple[str, int]:
    """``"HOST:PORT"``, ``":PORT"`` or ``"PORT"`` (host 127.0.0.1), ``"[::1]:PORT"`` → ``(host, port)``.

    Raises:
        ConfigError: no valid port in 0..65535 (0 = any free port).
    """
    s = text.strip()
    host, sep, port_text = s.rpartition(":")
    if not sep:
        host, port_text = "", s
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"--serve {text!r} is not HOST:PORT, e.g. 127.0.0.1:8000") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"--serve {text!r}: the port must be in 0..65535")
    return host, port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; :class:`ConfigError` naming the address when that fails."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise ConfigError(f"--serve {host}:{port}: cannot resolve {host!r} ({err.strerror})") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(64)
    except OSError as err:
        sock.close()
        raise ConfigError(f"--serve {host}:{port}: cannot listen there ({err.strerror}); pick another port or address") from None
    sock.set_inheritable(True)
    return sock


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>actionvos live</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font-family: system-ui, sans-serif; margin: 0; background: #111; color: #eee; }
 main { display: flex; flex-wrap: wrap; gap: 16px; padding: 12px; align-items: flex-start; }
 #view { display: block; background: #000; max-width: 100%; }
 #side { min-width: 320px; max-width: 460px; }
 h1 { font-size: 16px; margin: 0 0 8px; }
 #hud div { margin: 2px 0; font-variant-numeric: tabular-nums; }
 table { border-collapse: collapse; margin: 6px 0; }
 td { padding: 2px 8px 2px 0; font-variant-numeric: tabular-nums; }
 .pass { color: #7f7; } .gated { color: #f77; }
 form label { display: block; margin-top: 8px; font-size: 13px; color: #bbb; }
 form input[type=text] { width: 100%; box-sizing: border-box; padding: 4px; }
 button { margin-top: 8px; padding: 4px 12px; }
 #log { font-size: 12px; color: #bbb; padding-left: 18px; }
 .err { color: #f77; }
</style></head>
<body><main>
<img id="view" src="stream.mjpg" alt="live overlay">
<div id="side">
 <h1>actionvos live view</h1>
 <div id="hud">
  <div id="perf">waiting for the first frame…</div>
  <div id="prompts"></div>
  <table id="objects"></table>
  <div id="status"></div>
 </div>
 <form id="form">
  <label for="action">action</label><input id="action" name="action" type="text" autocomplete="off">
  <label for="objects_in">objects (comma-separated)</label><input id="objects_in" name="objects" type="text" autocomplete="off">
  <button id="apply" type="submit">apply</button> <span id="sent"></span>
 </form>
 <label style="display:block;margin-top:10px;font-size:13px;color:#bbb"><input id="aligned" type="checkbox">
  show processed frames (masks aligned, at the model's rate) instead of the live camera</label>
 <h1 style="margin-top:12px">prompt changes</h1>
 <ol id="log"></ol>
</div></main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let filled = false;
function row(cells, cls) {
  const tr = document.createElement("tr");
  for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
  if (cls) tr.className = cls;
  return tr;
}
async function poll() {
  try {
    const r = await fetch("api/state", {cache: "no-store"});
    const s = await r.json();
    $("perf").textContent = `${s.fps.toFixed(1)} FPS · latency p50 ${s.p50_ms.toFixed(0)} ms / p99 ${s.p99_ms.toFixed(0)} ms · ` +
      `dropped ${s.dropped} · reconnects ${s.reconnects} · ${s.backend} · frame ${s.result_frame}` + (s.running ? "" : ` · stopped (${s.stop_reason})`);
    $("prompts").textContent = `action: ${s.action} · objects: ${s.objects_text}`;
    const t = $("objects"); t.replaceChildren();
    for (const o of s.objects) t.appendChild(row([o.legend, o.passed_gate ? "pass" : "gated"], o.passed_gate ? "pass" : "gated"));
    $("status").textContent = s.status;
    const log = $("log"); log.replaceChildren();
    for (const c of s.log.slice().reverse()) {
      const li = document.createElement("li");
      li.textContent = `${c.origin}: "${c.action}" / "${c.objects}" → ` + (c.error ? `refused: ${c.error}` :
        (c.applied_frame === null ? "pending" : `applied at frame ${c.applied_frame}`));
      if (c.error) li.className = "err";
      log.appendChild(li);
    }
    if (!filled) { $("action").value = s.action; $("objects_in").value = s.objects_text; filled = true; }
  } catch (e) { $("status").textContent = "server not reachable"; }
}
$("form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = JSON.stringify({action: $("action").value, objects: $("objects_in").value});
  const r = await fetch("api/prompts", {method: "POST", headers: {"Content-Type": "application/json"}, body});
  const j = await r.json();
  $("sent").textContent = r.ok ? "sent, applied to the next frame" : `refused: ${j.detail}`;
  poll();
});
$("aligned").addEventListener("change", () => {
  $("view").src = $("aligned").checked ? "stream.mjpg?mode=result" : "stream.mjpg";
});
poll(); setInterval(poll, 300);
</script></body></html>
"""


def build_app(live: "LiveApp", max_fps: float = 30.0, jpeg_quality: int = 85):
    """The FastAPI application over a running :class:`~actionvos.runtime.camera.LiveApp`.

    Args:
        live: the app whose view is served and whose prompts the form changes.
        max_fps: upper bound of MJPEG frames per second per client.
        jpeg_quality: 1..100.
    """
    import asyncio

    import cv2
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from pydantic import BaseModel
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="actionvos live", docs_url=None, redoc_url=None, openapi_url=None)
    boundary = "actionvosframe"

    class PromptForm(BaseModel):
        action: str
        objects: str

    def encode(last_key, mode: str = "live"):
        """(key, jpeg bytes) of the current composed view, or (last_key, None) when nothing changed / no frame yet."""
        if mode == "result":
            key = ("result", live.view.version)
            bgr = None if key == last_key else live.view.compose_result()
        else:
            item = live.live_frame()
            key = None if item is None else (item.index, live.view.version)
            bgr = None if key is None or key == last_key else live.view.compose(item.frame)
        if bgr is None:
            return last_key, None
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        return key, (buf.tobytes() if ok else None)

    def check_mode(mode: str) -> str:
        if mode not in ("live", "result"):
            raise HTTPException(400, f"mode must be live or result, got {mode!r}")
        return mode

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return _PAGE

    @app.get("/api/state")
    def state() -> JSONResponse:
        return JSONResponse(live.view.state(), headers={"Cache-Control": "no-store"})

    @app.post("/api/prompts")
    def prompts(form: PromptForm) -> dict:
        action, objects = form.action.strip(), form.objects.strip()
        if not action or not objects:
            raise HTTPException(400, "both the action and at least one object are needed")
        if len(action) > MAX_PROMPT_CHARS or len(objects) > MAX_PROMPT_CHARS:
            raise HTTPException(400, f"action and objects are limited to {MAX_PROMPT_CHARS} characters each")
        if live.stopped:
            raise HTTPException(409, "the camera app has stopped")
        change = live.request_prompts(action, objects, "web form")
        return {"accepted": True, "action": change.action, "objects": change.objects}

    @app.get("/frame.jpg")
    async def frame(mode: str = "live") -> Response:
        _, jpeg = await run_in_threadpool(encode, None, check_mode(mode))
        if jpeg is None:
            raise HTTPException(503, "no frame yet")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/stream.mjpg")
    async def stream(mode: str = "live") -> StreamingResponse:
        check_mode(mode)

        async def frames():
            key, period = None, 1.0 / max(1e-3, max_fps)
            while not live.stopped:
                t0 = time.monotonic()
                key, jpeg = await run_in_threadpool(encode, key, mode)
                if jpeg is not None:
                    yield (f"--{boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                           + jpeg + b"\r\n")
                await asyncio.sleep(max(0.005, period - (time.monotonic() - t0)))

        return StreamingResponse(frames(), media_type=f"multipart/x-mixed-replace; boundary={boundary}",
                                 headers={"Cache-Control": "no-store"})

    return app


@dataclass
class LiveServer:
    """A uvicorn server on its own thread. :attr:`url` is the page's address."""

    url: str
    server: object
    thread: threading.Thread
    sock: socket.socket

    def stop(self, timeout: float = 5.0) -> None:
        """Ask uvicorn to exit (open MJPEG streams end with the app) and wait up to ``timeout`` seconds."""
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(2.0)
        try:
            self.sock.close()
        except OSError:
            pass
        log.info("serve: stopped %s", self.url)


def start_server(live: "LiveApp", host: str = "127.0.0.1", port: int = 8000, timeout: float = 10.0) -> LiveServer:
    """Serve ``live`` at ``http://host:port/`` on a background thread; returns once it accepts connections.

    Raises:
        ConfigError: FastAPI/uvicorn missing, or the address cannot be bound / the server does not start.
    """
    require_serve_deps()
    import uvicorn

    if not _is_loopback(host):
        log.warning("serve: bound to %s, reachable from other machines; the live view has NO authentication: anyone "
                    "who can reach it can watch the camera and change the prompts", host)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(build_app(live), log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=2, ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="actionvos-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        sock.close()
        raise ConfigError(f"--serve {host}:{port}: the web server did not start within {timeout:.0f} s")
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound_port}/"
    log.info("serve: live view at %s (Ctrl-C to stop)", url)
    return LiveServer(url, server, thread, sock)
