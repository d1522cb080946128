"""``actionvos run``: a thin typer layer over :func:`actionvos.pipeline.run.run` (same names and options).

Video, frame folder or ActionVOS expression file in; palette PNGs, overlay MP4s, probability plots and
``summary.json`` out, with the official clip rule (default) or the causal streaming rule (``--stream``), on any
model: the bundled demo, a checkpoint, an export folder or an engine folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from actionvos import cli_options as opts

__all__ = ["register", "run"]


def run(
    input: Path = typer.Argument(..., help="Video file, folder of frames, or an ActionVOS dataset root / expression_file.json."),
    output: Path = typer.Option(..., "--output", help="Output folder: {output}/{video}/{frame}.png, overlays, plots, summary.json."),
    action: opts.Action = None,
    objects: opts.Objects = None,
    checkpoint: opts.Checkpoint = None,
    onnx: opts.Onnx = None,
    engine: opts.Engine = None,
    tokenizer: opts.Tokenizer = None,
    backend: opts.Backend = "auto",
    device: opts.Device = None,
    preset: opts.Preset = None,
    prompt_template: opts.PromptTemplate = None,
    pos_thres: opts.PosThres = None,
    split: str = typer.Option("val", "--split", help="Split folder of JPEGImages_Sparse for expression-file input."),
    no_overlay: bool = typer.Option(False, "--no-overlay", help="Do not write {video}_overlay.mp4."),
    no_plot: bool = typer.Option(False, "--no-plot", help="Do not write {video}_positive_prob.png."),
    force: opts.Force = False,
    no_progress: opts.NoProgress = False,
    stream: bool = typer.Option(False, "--stream", help="The causal streaming rule (frame by frame) instead of the official clip rule."),
    window: opts.Window = 1,
    temporal: opts.Temporal = "mean",
    horizon: opts.Horizon = 30,
    threads: opts.Threads = None,
    plugin_library: opts.PluginLibrary = None,
    prompt_cache: opts.PromptCache = "off",
) -> None:
    """Segment the objects involved in an action; one palette PNG per frame (spec 3.9)."""
    from actionvos.pipeline.run import run as run_pipeline

    model = opts.model_of(checkpoint, onnx, engine)
    try:
        summary = run_pipeline(input, output, action=action, objects=objects, model=model, tokenizer=tokenizer,
                               backend=backend, device=device, preset=preset, prompt_template=prompt_template,
                               pos_thres=pos_thres, split=split, overlay=not no_overlay, plot=not no_plot, force=force,
                               progress=not no_progress, stream=stream, window=window, temporal=temporal,
                               horizon=horizon, threads=threads, plugin_library=plugin_library,
                               prompt_cache=prompt_cache)
    except KeyboardInterrupt as err:
        # typer turns KeyboardInterrupt into a *returned* 130 when not standalone, which the entry point would drop;
        # exit here so Ctrl-C always ends with status 130 (SIGTERM 143, SIGHUP 129).
        from actionvos.signals import interrupt_exit_code

        typer.echo(f"interrupted: frames already written are kept in {output} (summary.json: interrupted: true)", err=True)
        raise SystemExit(interrupt_exit_code(err)) from None
    n = sum(v.frames_written for v in summary.videos)
    rule = "causal rule" if stream else "clip rule"
    typer.echo(f"wrote {n} label PNGs for {len(summary.videos)} video(s) to {output} ({rule}; summary: {output / 'summary.json'})")


def register(app: typer.Typer) -> None:
    """Add the ``run`` command to the ``actionvos`` app."""
    app.command("run")(run)
