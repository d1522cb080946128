"""``actionvos camera``: live segmentation of a camera, stream or video file (a thin layer over
:func:`actionvos.runtime.camera.run_camera` and :func:`actionvos.runtime.session_builder.open_session`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from actionvos import cli_options as opts

from actionvos.errors import ConfigError, InputError

__all__ = ["register", "camera"]

log = logging.getLogger(__name__)


def camera(
    source: str = typer.Option(..., "--source", help="Camera index (0), /dev/videoN, rtsp://... / http://... URL, or a video file."),
    action: opts.Action = None,
    objects: opts.Objects = None,
    checkpoint: opts.Checkpoint = None,
    onnx: opts.Onnx = None,
    engine: opts.Engine = None,
    tokenizer: opts.Tokenizer = None,
    backend: opts.Backend = "auto",
    device: opts.Device = None,
    preset: opts.Preset = None,
    threads: opts.Threads = None,
    plugin_library: opts.PluginLibrary = None,
    window: opts.Window = 1,
    temporal: opts.Temporal = "mean",
    horizon: opts.Horizon = 30,
    pos_thres: opts.PosThres = None,
    input_size: Optional[str] = typer.Option(None, "--input-size", help="Model input HxW (default: shorter side of the model, or the graph's size)."),
    record: Optional[Path] = typer.Option(None, "--record", help="Record the rendered frames to this MP4 (frames at their capture times: it plays as long as the session ran)."),
    record_fps: Optional[float] = typer.Option(None, "--record-fps", help="Output frame rate of the recording (default: the source's)."),
    no_display: bool = typer.Option(False, "--no-display", help="Run without a window (headless machines)."),
    serve: Optional[str] = typer.Option(None, "--serve", help="Serve the live view, HUD and a prompt form in a browser at HOST:PORT (or PORT: 127.0.0.1). No authentication: bind another address only on a trusted network. Implies --no-display. Needs: pip install 'actionvos\\[serve]'."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Stop after this many seconds."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after this many processed frames."),
    no_realtime: bool = typer.Option(False, "--no-realtime", help="Process every frame of a video file, in order, as fast as inference goes (default: play it at its frame rate like a camera, dropping frames inference cannot keep up with)."),
    reconnect_timeout: float = typer.Option(60.0, "--reconnect-timeout", help="Give up on a dropped live source after this many seconds."),
    prompt_cache: opts.PromptCache = "off",
) -> None:
    """Segment the objects of an action live, with an overlay window (or a browser view), HUD, recording and reconnection.

    Keys in the window: a = type a new action, o = type new objects, Enter = apply, Esc = cancel, q = quit.
    With --serve, the page has a form for the action and objects instead. A source that never delivers a frame is an
    error (exit 2).
    """
    from actionvos.runtime.camera import CameraOptions, run_camera
    from actionvos.runtime.capture import Backoff, parse_source
    from actionvos.runtime.session import StreamConfig
    from actionvos.runtime.session_builder import open_session, parse_size

    from actionvos.prompts import check_action_objects

    check_action_objects(action, objects)  # both required: the live view starts with a prompt set
    if max_frames is not None and max_frames < 1:
        raise ConfigError(f"--max-frames must be >= 1, got {max_frames}")
    if duration is not None and duration <= 0:
        raise ConfigError(f"--duration must be > 0 seconds, got {duration}")
    if reconnect_timeout <= 0:
        raise ConfigError(f"--reconnect-timeout must be > 0 seconds, got {reconnect_timeout}")
    if record is not None and record.suffix.lower() != ".mp4":
        raise ConfigError(f"--record {str(record)!r} must end in .mp4")
    if record_fps is not None and not record_fps > 0:
        raise ConfigError(f"--record-fps must be > 0, got {record_fps}")
    serve_at = None
    if serve is not None:
        from actionvos.runtime.serve import parse_serve_address, require_serve_deps

        serve_at = parse_serve_address(serve)
        require_serve_deps()
        no_display = True
    spec = parse_source(source)
    config = StreamConfig(temporal=temporal, horizon=horizon, window=window, pos_thres=pos_thres,
                          input_size=parse_size(input_size)).check()
    options = CameraOptions(display=not no_display, record=record, record_fps=record_fps, duration=duration,
                            max_frames=max_frames, realtime=not no_realtime,
                            backoff=Backoff(give_up_after=reconnect_timeout), serve=serve_at)
    if options.display:
        from actionvos.runtime.camera import check_display

        check_display()
    if checkpoint is None and onnx is None and engine is None:  # open_session then opens the demo model
        from actionvos.demo import DEMO_NOTE

        log.info("no --checkpoint/--onnx/--engine: using the bundled demo model (%s)", DEMO_NOTE)
    session = open_session(backend, model=opts.model_of(checkpoint, onnx, engine), tokenizer=tokenizer, device=device,
                           preset=preset, threads=threads, plugin_library=plugin_library, config=config,
                           prompt_cache=prompt_cache)
    with session:
        if session.backend.info.weights_note:
            log.warning("%s", session.backend.info.weights_note)
        report = run_camera(session, spec, action, objects, options)
    typer.echo(report.line())
    if report.error:
        raise InputError(report.error)


def register(app: typer.Typer) -> None:
    """Add the ``camera`` command to the ``actionvos`` app."""
    app.command("camera")(camera)
