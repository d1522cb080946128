"""``actionvos calibrate``: collect calibration data, convert to FP16 / INT8 Q/DQ, and report the accuracy.

Wire into the main app with :func:`register` (``actionvos/cli.py``). Heavy imports happen inside the commands.

Typical flow (FP32 graphs exported with ``--msda onnx``)::

    actionvos calibrate collect --input box.mp4 --action "move box" --objects "box,pen,right hand" \\
        --onnx out/fp32 --out calib.npz
    actionvos calibrate collect --input cup.mp4 --action "rotate bottle" --objects "bottle,right hand" \\
        --onnx out/fp32 --out calib.npz --append
    actionvos calibrate collect --input minivisor --split val --onnx out/fp32 --out calib.npz --append
    actionvos calibrate fp16 --onnx out/fp32 --data calib.npz --out out/fp16
    actionvos calibrate int8 --onnx out/fp32 --data calib.npz --method percentile --out out/int8
    actionvos calibrate report --reference out/fp32 --candidates fp16=out/fp16,int8=out/int8 --data calib.npz \\
        --json report.json --markdown report.md --min-mask-iou 0.9 --min-clip-iou 0.8 --min-gate-agreement 0.95
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from actionvos import cli_options as opts

__all__ = ["app", "register"]

app = typer.Typer(name="calibrate", help="Reduced precision (FP16, INT8 Q/DQ) with calibration data and an accuracy report.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


def _groups(text: Optional[str]) -> Optional[list[str]]:
    if text is None:
        return None
    return [g.strip() for g in text.split(",") if g.strip()]


@app.command("collect")
def collect(
    input: List[Path] = typer.Option(..., "--input", "-i", help="Video file, frame folder, ActionVOS dataset root "
                                     "(ImageSets/{split}.json) or expression_file.json; repeatable."),
    action: opts.Action = None,
    objects: opts.Objects = None,
    prompt: Optional[List[str]] = typer.Option(None, "--prompt", help="Explicit prompt text (repeatable); instead of --action/--objects."),
    onnx: opts.Onnx = None,
    checkpoint: opts.Checkpoint = None,
    height: Optional[int] = typer.Option(None, "--height", help="Input height in pixels (with --checkpoint)."),
    width: Optional[int] = typer.Option(None, "--width", help="Input width in pixels (with --checkpoint)."),
    frames: int = typer.Option(1, "--frames", help="Clip length T (with --checkpoint)."),
    tokenizer: opts.Tokenizer = None,
    split: str = typer.Option("val", "--split", help="Dataset split for dataset inputs."),
    per_video: int = typer.Option(8, "--per-video", help="Clips per video / dataset sequence, evenly spaced over time."),
    out: Path = typer.Option(..., "--out", "-o", help="Calibration file to write (.npz)."),
    append: bool = typer.Option(False, "--append", help="Add the clips to an existing --out file (same model and size)."),
    threads: opts.Threads = 2,
    no_progress: opts.NoProgress = False,
) -> None:
    """Collect real clips + prompts pre-processed as the runtime feeds them; write them once to an .npz."""
    from actionvos.calibration.clips import merge_calibration
    from actionvos.calibration.collect import collect_calibration
    from actionvos.calibration.npz_store import load_calibration, save_calibration
    from actionvos.calibration.sources import InputSpec
    from actionvos.errors import ConfigError, InputError

    if out.suffix != ".npz":
        raise InputError(f"--out {str(out)!r} must end in .npz")
    if prompt and (action or objects):
        raise ConfigError("pass either --prompt or --action/--objects, not both")
    prompts = None
    if prompt:
        if any(not p.strip() for p in prompt):
            raise InputError("every --prompt must be a non-empty string")
        prompts = [(p, p) for p in prompt]
    # --action/--objects become prompts with the model's own template when the inputs are opened
    existing = None
    if append:
        if not out.is_file():
            raise InputError(f"--append: {str(out)!r} does not exist yet; run once without --append")
        existing = load_calibration(out)
    data = collect_calibration([InputSpec(p, prompts, split, action, objects) for p in input], tokenizer=tokenizer, onnx_dir=onnx,
                               checkpoint=checkpoint, height=height, width=width, frames=frames, per_video=per_video,
                               progress=not no_progress, threads=threads)
    if existing is not None:
        data = merge_calibration(existing, data)
    save_calibration(out, data)
    inp = data.input_size
    typer.echo(f"wrote {len(data)} clips ({inp['frames']}x{inp['height']}x{inp['width']}) from "
               f"{len(data.meta['sources'])} source(s), {len(data.sets)} prompt set(s), model {data.model_hash} to {out}")


@app.command("fp16")
def fp16(
    onnx: Path = typer.Option(..., "--onnx", help="FP32 export directory."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write the FP16 graphs to."),
    data: Optional[Path] = typer.Option(None, "--data", help="Calibration .npz (measurement and report)."),
    keep_fp32: Optional[str] = typer.Option(None, "--keep-fp32", help="Comma-separated groups to keep FP32 without "
                                            "measuring (msda_sampling_offsets, msda_attention_weights, msda_sampling, "
                                            "softmax_attention, layer_norm, group_norm, positive_head, box_refinement, mask_head)."),
    no_measure: bool = typer.Option(False, "--no-measure", help="Skip the measurement; keep the default groups FP32."),
    measure_clips: int = typer.Option(8, "--measure-clips", help="Clips used per measured configuration."),
    report_clips: Optional[int] = typer.Option(None, "--report-clips", help="Clips for the report (default all not measured on)."),
    holdout: float = typer.Option(0.25, "--holdout", help="Fraction of --data clips never measured on (every 4th), left for the report."),
    force: opts.Force = False,
    threads: opts.Threads = 2,
    no_progress: opts.NoProgress = False,
) -> None:
    """FP16 graphs (maintained converter, keep_io_types) with the measured-sensitive ops kept in FP32."""
    from actionvos.calibration.fp16 import convert_dir_fp16

    r = convert_dir_fp16(onnx, out, data=data, keep_fp32=_groups(keep_fp32), measure=not no_measure,
                         measure_clips=measure_clips, report_clips=report_clips, force=force, threads=threads,
                         progress=not no_progress, holdout=holdout)
    typer.echo(f"wrote FP16 graphs to {out}; kept in FP32: {', '.join(r['kept_fp32']) or 'converter defaults only'}")
    if r["report"] is not None:
        typer.echo((out / "accuracy_report.md").read_text())


@app.command("int8")
def int8(
    onnx: Path = typer.Option(..., "--onnx", help="FP32 export directory (--msda onnx)."),
    data: Path = typer.Option(..., "--data", help="Calibration .npz."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write the Q/DQ graphs to."),
    method: str = typer.Option("percentile", "--method", help="percentile | entropy | minmax (percentile: best mask IoU on the demo model)."),
    exclude: Optional[str] = typer.Option(None, "--exclude", help="Comma-separated groups kept FP32 (default: MSDA "
                                          "groups, positive_head, box_refinement, mask_head; \"\" quantizes all)."),
    calib_clips: Optional[int] = typer.Option(None, "--calib-clips", help="Clips used for calibration (default all not held out)."),
    report_clips: Optional[int] = typer.Option(None, "--report-clips", help="Clips for the report (default all not calibrated on)."),
    holdout: float = typer.Option(0.25, "--holdout", help="Fraction of --data clips never calibrated on (every 4th), left "
                                  "for the report; 0 calibrates on all (then report with another file)."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip the accuracy report."),
    bins: int = typer.Option(2048, "--bins", help="Histogram bins of entropy/percentile (2048 as TensorRT; 512 is ~5x faster)."),
    engine: bool = typer.Option(False, "--engine", help="Also build strongly typed TensorRT engines (GPU + tensorrt)."),
    force: opts.Force = False,
    threads: opts.Threads = 2,
    no_progress: opts.NoProgress = False,
) -> None:
    """INT8 explicit Q/DQ graphs (quantize_static, per-channel weights, symmetric activations)."""
    from actionvos.calibration.int8 import build_int8_engines, quantize_dir_int8

    r = quantize_dir_int8(onnx, data, out, method=method, exclude=_groups(exclude), calib_clips=calib_clips,
                          report_clips=report_clips, report=not no_report, force=force, threads=threads,
                          progress=not no_progress, bins=bins, holdout=holdout)
    typer.echo(f"wrote INT8 Q/DQ graphs ({method}) to {out}: segmenter {r['segmenter']['quantize_linear_nodes']} "
               f"QuantizeLinear nodes, text encoder {r['text_encoder']['quantize_linear_nodes']}")
    if r["report"] is not None:
        typer.echo((out / "accuracy_report.md").read_text())
    if engine:
        engines = build_int8_engines(out)
        typer.echo("built " + ", ".join(str(p) for p in engines.values()))


@app.command("report")
def report(
    reference: Path = typer.Option(..., "--reference", help="FP32 export directory."),
    candidates: str = typer.Option(..., "--candidates", help="NAME=DIR[,NAME=DIR...], e.g. fp16=out/fp16,int8=out/int8."),
    data: Path = typer.Option(..., "--data", help="Calibration .npz (real clips); clips the candidates were calibrated on are left out."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the report as JSON."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write the report as a Markdown table."),
    min_mask_iou: Optional[float] = typer.Option(None, "--min-mask-iou", help="Exit 3 when a candidate's mean mask IoU is lower."),
    min_clip_iou: Optional[float] = typer.Option(None, "--min-clip-iou", help="Exit 3 when a candidate's worst clip (mean mask IoU over its objects and frames) is lower."),
    min_gate_agreement: Optional[float] = typer.Option(None, "--min-gate-agreement", help="Exit 3 when a candidate's gate agreement is lower."),
    max_clips: Optional[int] = typer.Option(None, "--max-clips", help="Use at most this many evaluation clips (evenly spread)."),
    figures: Optional[Path] = typer.Option(None, "--figures", help="Folder for the worst-clip pictures (default: beside --markdown / --json)."),
    threads: opts.Threads = 2,
    no_progress: opts.NoProgress = False,
) -> None:
    """Compare FP16 / INT8 graphs with the FP32 graphs on real clips the calibration did not see (mask IoU mean / p5 /
    worst clip, differing mask pixels, gate and query agreement, absolute errors; pictures of the worst clips)."""
    from actionvos.calibration.report import AccuracyThresholdError, accuracy_report, parse_candidates, report_markdown

    rep = accuracy_report(reference, parse_candidates(candidates), data, json_path=json_path, md_path=markdown,
                          min_mask_iou=min_mask_iou, min_gate_agreement=min_gate_agreement, min_clip_iou=min_clip_iou,
                          threads=threads, progress=not no_progress, max_clips=max_clips, raise_on_fail=False,
                          figures_dir=figures)
    typer.echo(report_markdown(rep))
    if rep["failures"]:
        raise AccuracyThresholdError("; ".join(rep["failures"]))


def register(parent: typer.Typer) -> None:
    """Add the ``calibrate`` sub-app (collect, fp16, int8, report) to the ``actionvos`` app."""
    parent.add_typer(app, name="calibrate")
