"""``actionvos run``: offline segmentation of a video, a frame folder or an ActionVOS expression file.

A thin layer over :func:`actionvos.inference.offline.run_offline`. Every check that can fail on user input
(device, output folder, prompts, input frames, tokenizer, checkpoint) runs before anything is written.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import typer

from actionvos.errors import ConfigError, InputError

__all__ = ["register", "check_output_dir", "check_device"]

log = logging.getLogger(__name__)


def check_device(device: str) -> str:
    """Return ``device`` if torch can use it: ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ConfigError: an unknown device string, or CUDA requested where torch has no usable GPU.
    """
    import torch

    if device == "cpu":
        return device
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device} was requested but CUDA is not available to torch {torch.__version__}; use --device cpu")
        index = int(device[5:]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
        return device
    raise ConfigError(f"unknown --device {device!r}; use cpu, cuda or cuda:N")


def check_output_dir(path: Path, force: bool) -> None:
    """Check that ``path`` can be created or written, without creating it.

    Raises:
        InputError: ``path`` is a file, lies under a file, is not writable, or is a non-empty folder
            while ``force`` is False.
    """
    if path.exists():
        if not path.is_dir():
            raise InputError(f"output {str(path)!r} is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError(f"output folder {str(path)!r} is not writable")
        if not force and any(path.iterdir()):
            raise InputError(f"output folder {str(path)!r} is not empty; pass --force to write into it")
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot create output folder {str(path)!r}: {str(parent)!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot create output folder {str(path)!r}: {str(parent)!r} is not writable")


def _clear_stale_frames(output: Path, names: list[str]) -> None:
    """With ``--force``, remove old label PNGs of the videos about to be written, so counts match the new run."""
    for name in names:
        folder = output / name
        if folder.is_dir():
            for png in folder.glob("*.png"):
                png.unlink()


def _resolve_weights(checkpoint: Optional[Path], tokenizer: Optional[str]) -> tuple[Path, str]:
    """Default to the bundled demo model and its tokenizer; a user checkpoint needs its own ``--tokenizer``.

    Raises:
        ConfigError: ``--checkpoint`` given without ``--tokenizer``.
    """
    from actionvos.demo import DEMO_CHECKPOINT, DEMO_NOTE, DEMO_TOKENIZER

    if checkpoint is None:
        log.info("no --checkpoint: using the bundled demo model %s (%s)", DEMO_CHECKPOINT, DEMO_NOTE)
        return DEMO_CHECKPOINT, tokenizer or str(DEMO_TOKENIZER)
    if tokenizer is None:
        raise ConfigError("--tokenizer is required with --checkpoint: pass the folder with roberta-base's "
                          "vocab.json and merges.txt (or the tokenizer your checkpoint was trained with)")
    return checkpoint, tokenizer


def _weights_note(meta: dict) -> Optional[str]:
    """The summary's ``weights_note``: set when the checkpoint marks itself as random weights or as the demo model.

    ``save_checkpoint(..., extra={"random_weights": True, "weights_note": "..."})`` stores the marker next to
    ``'model'``; ``load_model`` returns those entries as ``meta``.
    """
    from actionvos.inference.writers import RANDOM_WEIGHTS_NOTE

    if meta.get("random_weights"):
        return str(meta.get("weights_note") or RANDOM_WEIGHTS_NOTE)
    if meta.get("demo_note"):
        return str(meta["demo_note"])
    return None


def run(
    input: Path = typer.Argument(..., help="Video file, folder of frames, or an ActionVOS dataset root / expression_file.json."),
    action: Optional[str] = typer.Option(None, "--action", help="The action (narration) verbatim, e.g. \"move box\"."),
    objects: Optional[str] = typer.Option(None, "--objects", help="Comma-separated object names, e.g. \"box,pen,right hand\"."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="ActionVOS checkpoint (.pth with a 'model' state dict). Default: the bundled demo model (trained on two short videos, not the paper's model)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Folder with RoBERTa vocab.json + merges.txt (a hub id is fetched only if given). Default: the demo model's tokenizer (only with the demo model)."),
    output: Path = typer.Option(..., "--output", help="Output folder: {output}/{video}/{frame}.png, overlays, summary.json."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Model preset; inferred from the checkpoint when omitted."),
    prompt_template: Optional[str] = typer.Option(None, "--prompt-template", help="Prompt template with {object} and {action} (default: the checkpoint's)."),
    pos_thres: Optional[float] = typer.Option(None, "--pos-thres", help="Positive-gate threshold in [0, 1] (default 0.75, spec 3.9)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default cpu; with --stream the backend's own choice)."),
    split: str = typer.Option("val", "--split", help="Split folder of JPEGImages_Sparse for expression-file input."),
    no_overlay: bool = typer.Option(False, "--no-overlay", help="Do not write {video}_overlay.mp4."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty output folder (old PNGs of the same videos are removed)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
    stream: bool = typer.Option(False, "--stream", help="Run frame by frame through the streaming runtime (causal rules) instead of the offline clip rule."),
    backend: str = typer.Option("pytorch", "--backend", help="With --stream: auto, pytorch, onnxruntime or tensorrt."),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="With --stream: folder of exported ONNX graphs (onnxruntime backend)."),
    engine: Optional[Path] = typer.Option(None, "--engine", help="With --stream: TensorRT engine folder (tensorrt backend)."),
    window: int = typer.Option(1, "--window", help="With --stream: frames per decode (the pixel decoder mixes them)."),
    temporal: str = typer.Option("mean", "--temporal", help="With --stream: causal rule for query and positive scores, mean or ema."),
) -> None:
    """Segment the objects involved in an action; writes one palette PNG per frame (spec 3.9)."""
    try:
        _run(**locals())
    except KeyboardInterrupt as err:
        # typer turns KeyboardInterrupt into a *returned* 130 when not standalone, which the entry point
        # would drop; exit here so Ctrl-C always ends with status 130 (SIGTERM 143, SIGHUP 129).
        from actionvos.signals import interrupt_exit_code

        typer.echo(f"interrupted: frames already written are kept in {output} (summary.json: interrupted: true)", err=True)
        raise SystemExit(interrupt_exit_code(err)) from None


def _run(input, action, objects, checkpoint, tokenizer, output, preset, prompt_template, pos_thres, device, split, no_overlay,
         force, no_progress, stream, backend, onnx, engine, window, temporal) -> None:
    from actionvos.inference.offline import run_offline
    from actionvos.inference.prompts import build_prompts, check_template
    from actionvos.inference.video_io import open_source

    if not stream or backend == "pytorch":
        device = check_device(device or "cpu")
    check_output_dir(output, force)
    if pos_thres is not None and not 0.0 <= pos_thres <= 1.0:
        raise ConfigError(f"--pos-thres must be in [0, 1], got {pos_thres}")
    if prompt_template is not None:
        check_template(prompt_template)
    if preset is not None:
        from actionvos.model.config import get_preset

        try:
            get_preset(preset)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    source = open_source(input, split=split)
    prompts = None
    if source.kind == "expression_file":
        if action is not None or objects is not None:
            log.warning("the expression file's own prompts are used; --action/--objects are ignored")
    else:
        from actionvos.model.config import PROMPT_TEMPLATE

        prompts = build_prompts(action, objects, prompt_template or PROMPT_TEMPLATE)

    from actionvos.model.checkpoint import load_model
    from actionvos.model.text import load_tokenizer

    if not stream and (onnx is not None or engine is not None or window != 1 or backend != "pytorch"
                       or temporal != "mean"):
        raise ConfigError("--backend, --onnx, --engine, --window and --temporal need --stream")
    if stream and onnx is None and engine is None:
        checkpoint, tokenizer = _resolve_weights(checkpoint, tokenizer)
    if stream:
        _run_stream(source, prompts, (action, objects), output, checkpoint=checkpoint, tokenizer=tokenizer, onnx=onnx, engine=engine,
                    backend=backend, device=device, preset=preset, window=window, temporal=temporal, pos_thres=pos_thres,
                    prompt_template=prompt_template, overlay=not no_overlay, progress=not no_progress, force=force)
        return
    checkpoint, tokenizer = _resolve_weights(checkpoint, tokenizer)
    tok = load_tokenizer(tokenizer)
    model, cfg, meta = load_model(checkpoint, preset=preset, device=device)
    if prompts is not None and prompt_template is None:
        prompts = build_prompts(action, objects, cfg.prompt_template)  # the checkpoint's own template
    from actionvos.inference.writers import prepare_output_dir

    prepare_output_dir(output, force, [v.name for v in source.videos])
    summary = run_offline(
        source,
        prompts,
        model,
        tok,
        cfg,
        output,
        device=device,
        pos_thres=pos_thres,
        progress=not no_progress,
        overlay=not no_overlay,
        weights_note=_weights_note(meta),
        settings={"checkpoint": str(checkpoint), "tokenizer": str(tokenizer), "preset": cfg.name, "prompt_template": prompt_template or cfg.prompt_template},
    )
    n = sum(v.frames_written for v in summary.videos)
    typer.echo(f"wrote {n} label PNGs for {len(summary.videos)} video(s) to {output} (summary: {output / 'summary.json'})")


def _run_stream(source, prompts, action_objects, output, *, checkpoint, tokenizer, onnx, engine, backend, device, preset, window, temporal,
                pos_thres, prompt_template, overlay, progress, force) -> None:
    """``run --stream``: the same outputs through :class:`actionvos.runtime.session.StreamSession` (issue 4 item 7)."""
    from actionvos.inference.prompts import build_prompts
    from actionvos.runtime.files import run_stream
    from actionvos.runtime.session import StreamConfig
    from actionvos.runtime.session_builder import open_session

    config = StreamConfig(window=window, temporal=temporal, pos_thres=pos_thres, prompt_template=prompt_template)
    session = open_session(backend, checkpoint=checkpoint, onnx=onnx, engine=engine, tokenizer=tokenizer,
                           device=device, preset=preset, config=config)
    if prompts is not None and prompt_template is None:  # the model's own template, as the offline path does
        prompts = build_prompts(*action_objects, session.template)
    from actionvos.inference.writers import prepare_output_dir

    prepare_output_dir(output, force, [v.name for v in source.videos])
    with session:
        summary = run_stream(source, prompts, session, output, overlay=overlay, progress=progress,
                             settings={"checkpoint": str(checkpoint), "onnx": str(onnx), "engine": str(engine),
                                       "tokenizer": str(tokenizer), "backend": backend})
    n = sum(v.frames_written for v in summary.videos)
    typer.echo(f"wrote {n} label PNGs for {len(summary.videos)} video(s) to {output} (streaming; summary: {output / 'summary.json'})")


def register(app: typer.Typer) -> None:
    """Add the ``run`` command to the ``actionvos`` app."""
    app.command("run")(run)
