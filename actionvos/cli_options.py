"""Command-line options shared by ``run``, ``camera``, ``calibrate`` and ``export``, declared once with one type each
(Polygraphy-style option groups). A command declares a parameter as ``action: opts.Action = None``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["STATE", "Debug", "Verbose", "Action", "Objects", "Checkpoint", "Tokenizer", "Onnx", "Engine", "Backend", "Device", "Preset", "PosThres",
           "PromptTemplate", "Threads", "PluginLibrary", "Window", "Temporal", "Horizon", "PromptCache", "Force",
           "NoProgress", "model_of"]

#: Process-wide CLI state set by the option callbacks below (read by :func:`actionvos.cli.run_app`).
STATE = {"debug": False}


def _set_debug(value: bool) -> bool:
    if value:
        STATE["debug"] = True
    return value


def _set_verbose(value: bool) -> bool:
    if value:
        import logging

        logging.getLogger().setLevel(logging.DEBUG)
    return value


Debug = Annotated[bool, typer.Option("--debug", callback=_set_debug, help="Show full tracebacks for errors.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", callback=_set_verbose, help="Log at DEBUG level.")]
Action = Annotated[Optional[str], typer.Option("--action", help="The action (narration) verbatim, e.g. \"move box\".")]
Objects = Annotated[Optional[str], typer.Option("--objects", help="Comma-separated object names, e.g. \"box,pen,right hand\".")]
Checkpoint = Annotated[Optional[Path], typer.Option(
    "--checkpoint", help="ActionVOS .pth (PyTorch). Ours carry their card and tokenizer; an official one needs --tokenizer. "
                         "Default (no --checkpoint/--onnx/--engine): the bundled demo model (not the paper's model).")]
Tokenizer = Annotated[Optional[str], typer.Option(
    "--tokenizer", help="Folder with roberta-base's vocab.json + merges.txt; needed only for an official checkpoint "
                        "(a hub id is fetched only when given and only if it looks like one).")]
Onnx = Annotated[Optional[Path], typer.Option("--onnx", help="Folder written by `actionvos export` (ONNX Runtime).")]
Engine = Annotated[Optional[Path], typer.Option("--engine", help="Engine folder written by `actionvos export --format engine` (TensorRT).")]
Backend = Annotated[str, typer.Option("--backend", help="auto, tensorrt, onnxruntime or pytorch (auto picks the fastest that "
                                                        "runs the given model, and logs why).")]
Device = Annotated[Optional[str], typer.Option("--device", help="PyTorch device (cpu, cuda, cuda:N) or the onnxruntime "
                                                               "provider (auto, tensorrt, cuda, cpu).")]
Preset = Annotated[Optional[str], typer.Option("--preset", help="Architecture of an official checkpoint (default: inferred "
                                                               "from its keys and shapes).")]
PosThres = Annotated[Optional[float], typer.Option("--pos-thres", help="Override the model card's positive-gate threshold, "
                                                                       "in [0, 1] (recorded in summary.json).")]
PromptTemplate = Annotated[Optional[str], typer.Option("--prompt-template", help="Override the card's prompt template "
                                                                                 "(needs {object} and {action}).")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="CPU threads for inference.")]
PluginLibrary = Annotated[Optional[str], typer.Option("--plugin-library", help="MSDA TensorRT plugin .so (default: searched).")]
Window = Annotated[int, typer.Option("--window", help="Causal rule: frames per decode T (earlier frames' features are reused).")]
Temporal = Annotated[str, typer.Option("--temporal", help="Causal rule for query scores and the gate: mean or ema.")]
Horizon = Annotated[int, typer.Option("--horizon", help="EMA time constant in frames (--temporal ema).")]
PromptCache = Annotated[str, typer.Option("--prompt-cache", help="Persist text features: off, auto (next to the model) or a .npz path.")]
Force = Annotated[bool, typer.Option("--force", help="Replace an earlier run's outputs in the output folder as a whole.")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="Hide progress bars.")]


def model_of(checkpoint: Path | None, onnx: Path | None, engine: Path | None) -> Path | None:
    """The one artifact named by ``--checkpoint`` / ``--onnx`` / ``--engine`` (None: the bundled demo).

    Raises:
        ConfigError: more than one given.
    """
    from actionvos.errors import ConfigError

    given = [p for p in (checkpoint, onnx, engine) if p is not None]
    if len(given) > 1:
        raise ConfigError("pass one model: --checkpoint, --onnx or --engine (or none for the bundled demo)")
    return given[0] if given else None
