"""``actionvos-export`` and ``actionvos export``: a thin typer layer over :func:`actionvos.export.exporter.export_model`.

Options, capability checks and errors are those of the library function; errors a user can cause are printed as
one line (``error: ...``, traceback with ``--debug``) with exit code 2.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from actionvos import cli_options as opts


__all__ = ["export", "register", "app", "main"]

log = logging.getLogger(__name__)


def export(
    checkpoint: Optional[Path] = typer.Argument(None, help="ActionVOS checkpoint (.pth); default: the bundled demo model."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory to create (text_encoder, segmenter, frame_encoder, "
                                                             "window_decoder .onnx, card.json, tokenizer/, "
                                                             "export_manifest.json[, *.engine])."),
    preset: opts.Preset = None,
    height: int = typer.Option(360, "--height", help="Static input height in pixels (frames are resized to it)."),
    width: int = typer.Option(640, "--width", help="Static input width in pixels."),
    frames: int = typer.Option(1, "--frames", help="The segmenter's static clip length T and the window decoder's "
                                                   "optimal T (1..the model's max clip length, 36); the window "
                                                   "decoder takes any T from 1 to that maximum."),
    max_prompts: int = typer.Option(8, "--max-prompts", help="Most prompts per call (TensorRT profile max of P)."),
    max_tokens: int = typer.Option(64, "--max-tokens", help="Most tokens per prompt (TensorRT profile max of L)."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset (14..20; >= 16 with --msda onnx)."),
    msda: str = typer.Option("plugin", "--msda", help="plugin: TensorRT custom op; onnx: GridSample decomposition."),
    fmt: str = typer.Option("onnx", "--format", help="onnx, or engine (also builds TensorRT engines; needs a GPU)."),
    fp16: bool = typer.Option(False, "--fp16", help="FP16 graphs (maintained converter; MSDA, softmax, LayerNorm, positive head and box refinement kept FP32)."),
    simplify: bool = typer.Option(False, "--simplify", help="Run onnx-simplifier on each graph (needs onnxsim)."),
    force: opts.Force = False,
    tokenizer: opts.Tokenizer = None,
    plugin_library: opts.PluginLibrary = None,
    timing_cache: Optional[str] = typer.Option(None, "--timing-cache", help="TensorRT timing-cache file to reuse."),
    debug: opts.Debug = False,
    verbose: opts.Verbose = False,
) -> None:
    """Export a checkpoint to a self-contained folder of ONNX graphs with its model card and tokenizer (optionally
    TensorRT engines)."""
    from actionvos.export.exporter import export_model

    if checkpoint is None:
        from actionvos.demo import DEMO_CHECKPOINT

        log.info("no checkpoint given: exporting the bundled demo model (not the paper's model)")
        checkpoint = DEMO_CHECKPOINT
    result = export_model(
        checkpoint, output, preset=preset, height=height, width=width, frames=frames, max_prompts=max_prompts,
        max_tokens=max_tokens, opset=opset, msda=msda, fmt=fmt, fp16=fp16, simplify=simplify, force=force,
        tokenizer=tokenizer, plugin_library=plugin_library, timing_cache=timing_cache,
    )
    typer.echo(result.summary())


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to the ``actionvos`` app."""
    app.command("export")(export)


app = typer.Typer(name="actionvos-export", add_completion=False, pretty_exceptions_enable=False)
app.command()(export)


def main(argv: list[str] | None = None) -> None:
    """Console entry point ``actionvos-export``: the same command as ``actionvos export``, with the one-line error
    policy (``--debug`` shows tracebacks)."""
    from actionvos.cli import configure_logging, run_app

    configure_logging()
    run_app(app, list(sys.argv[1:] if argv is None else argv), prog_name="actionvos-export")
