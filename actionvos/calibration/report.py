"""Accuracy report: reduced-precision graphs against the FP32 graphs on real clips the calibration did not see.

For every candidate (``fp16=DIR``, ``int8=DIR``) on ONNX Runtime CPU, the candidate's text graph encodes each prompt
set from the stored token ids, its segmenter runs each clip, and the outputs are compared with the FP32 reference
directory's outputs on the same inputs (end to end: text and segmenter both reduced). Clips are streamed: one clip's
outputs are in memory at a time, whatever the number of clips.

Evaluation clips (:func:`evaluation_clips`): every clip of ``--data`` that shares no frame with the clips a candidate
was calibrated or FP16-measured on (their ``calibration_frames`` record). Overlapping clips are left out and the
report says how many; when none is left the report refuses (collect another file, e.g. another split). ``calibrate
int8`` / ``fp16`` hold out every 4th clip of their ``--data`` so the same file still has evaluation clips.

Metrics: :mod:`~actionvos.calibration.metrics` (mask IoU mean / 5th percentile / worst clip, differing mask pixels,
gate and query agreement, absolute errors in output units). Written as JSON, Markdown
(:mod:`~actionvos.calibration.report_markdown`) and a picture of the worst clips per candidate
(:mod:`~actionvos.calibration.report_figures`), atomically. ``min_mask_iou`` (mean), ``min_clip_iou`` (worst clip)
and ``min_gate_agreement`` turn shortfalls into :class:`AccuracyThresholdError` (exit code 3).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from actionvos.calibration.clips import CalibrationData, check_compatible
from actionvos.calibration.common import GraphDir, load_graph_dir, require_ort_runnable, to_jsonable
from actionvos.calibration.graph_runs import SEG_OUTPUTS, TEXT_OUTPUTS, GraphPair, GraphRun, run_graphs
from actionvos.calibration.metrics import Comparison, clip_masks, compare_runs
from actionvos.calibration.npz_store import load_calibration
from actionvos.calibration.report_markdown import report_markdown, sensitivity_markdown
from actionvos.errors import ActionVOSError, ConfigError, InputError
from actionvos.io_utils import atomic_write_json, atomic_write_text

__all__ = [
    "SEG_OUTPUTS",
    "TEXT_OUTPUTS",
    "AccuracyThresholdError",
    "GraphRun",
    "run_graphs",
    "compare_runs",
    "evaluation_clips",
    "build_report",
    "report_markdown",
    "sensitivity_markdown",
    "write_report",
    "check_thresholds",
    "parse_candidates",
    "accuracy_report",
    "weights_note",
]

log = logging.getLogger(__name__)

BACKEND = "onnxruntime-cpu"
#: worst clips drawn per candidate
WORST_CLIPS = 3


class AccuracyThresholdError(ActionVOSError):
    """A candidate's mask IoU, worst-clip IoU or gate agreement is below its ``--min-*`` bound."""

    exit_code = 3


def parse_candidates(text: str | Sequence[str]) -> dict[str, Path]:
    """``"fp16=DIR,int8=DIR"`` (or a list of ``NAME=DIR``) → ``{name: Path}``.

    Raises:
        ConfigError: an item without ``=``, an empty name, or a repeated name.
    """
    items = [p for part in ([text] if isinstance(text, str) else list(text)) for p in part.split(",") if p.strip()]
    out: dict[str, Path] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--candidates item {item!r} must be NAME=DIR, e.g. fp16=out/fp16,int8=out/int8")
        name, path = item.split("=", 1)
        name = name.strip()
        if not name or name in out:
            raise ConfigError(f"--candidates name {name!r} is empty or repeated; give each candidate its own name")
        out[name] = Path(path.strip())
    if not out:
        raise ConfigError("--candidates is empty; pass e.g. fp16=out/fp16,int8=out/int8")
    return out


def evaluation_clips(data: CalibrationData, candidates: dict[str, GraphDir],
                     max_clips: int | None = None) -> tuple[CalibrationData, dict[str, Any]]:
    """The clips of ``data`` disjoint from every candidate's calibration clips, at most ``max_clips`` (spread).

    Returns:
        ``(clips, info)``; ``info`` (JSON-able) has ``clips_in_file``, ``excluded_calibration_clips``, ``clips``,
        ``unrecorded`` (candidates without a ``calibration_frames`` record: made by an older version, not checked)
        and ``statement`` (one sentence for the report).
    Raises:
        InputError: every clip of ``data`` was used for calibration.
    """
    used: dict[str, set[int]] = {}
    unrecorded = []
    for name, g in candidates.items():
        rec = g.calibration.get("calibration_frames") if g.precision != "fp32" else {}
        if rec is None:
            unrecorded.append(name)
            continue
        for src, frames in rec.items():
            used.setdefault(src, set()).update(int(f) for f in frames)
    overlap = data.overlaps(used) if used else np.zeros(len(data), bool)
    n_file, n_used = len(data), int(overlap.sum())
    where = str(data.path) if data.path else "the calibration data"
    if n_used == n_file:
        raise InputError(
            f"all {n_file} clips of --data {where!r} were used to calibrate {', '.join(candidates)}; evaluate on clips "
            "the calibration did not see: collect another file (e.g. --split val when calibrating on train), or use "
            "the file calibrate int8/fp16 read (they hold out every 4th clip) without --holdout 0")
    sub = data.subset(np.flatnonzero(~overlap)).spread(max_clips)
    statement = (f"Evaluated on {len(sub)} clips disjoint from the calibration clips"
                 + (f" ({n_used} of the {n_file} clips in the data file were used for calibration or the FP16 "
                    "measurement and are left out)." if n_used else f" (none of the {n_file} clips in the data file "
                    "was used for calibration)."))
    if unrecorded:
        statement += (f" Not checked for {', '.join(unrecorded)}: no record of their calibration clips (made by an "
                      "older version); re-run calibrate to record them.")
    return sub, {"clips_in_file": n_file, "excluded_calibration_clips": n_used, "clips": len(sub),
                 "unrecorded": unrecorded, "disjoint_checked": not unrecorded, "statement": statement}


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="clip", leave=False)


def build_report(reference: GraphDir, candidates: dict[str, GraphDir], data: CalibrationData, *, threads: int = 2,
                 progress: bool = False, extra: dict[str, Any] | None = None, weights_note: str | None = None,
                 max_clips: int | None = None, figures_dir: str | os.PathLike | None = None,
                 figures_prefix: str = "accuracy_report", worst: int = WORST_CLIPS) -> dict[str, Any]:
    """Run the reference and every candidate on the evaluation clips of ``data`` and collect the metrics.

    Args:
        reference: FP32 directory. candidates: name → reduced-precision directory. data: calibration clips.
        threads: ORT intra-op threads. progress: progress bar over the clips.
        extra: keys merged into the report. weights_note: warning line (random weights).
        max_clips: at most this many evaluation clips (evenly spread), after the calibration clips are left out.
        figures_dir: where to draw the worst clips (``{figures_prefix}_worst_{name}.png``); None: no picture.
        worst: clips per picture.
    Returns:
        JSON-able dict: ``reference``, ``data``, ``evaluation`` (:func:`evaluation_clips` info), ``thresholds``,
        ``candidates`` (name → ``dir``, ``precision``, ``backend``, ``calibration``, ``metrics`` by group,
        ``per_clip``), ``figures`` (name → file name), ``weights_note``.
    Raises:
        ConfigError: a graph directory ORT CPU cannot run (``--msda plugin``).
        InputError: ``data`` or a candidate belongs to another model or input size; no evaluation clip left.
    """
    require_ort_runnable(reference, "the accuracy report")
    check_compatible(data, reference)
    for name, g in candidates.items():
        require_ort_runnable(g, "the accuracy report")
        if g.model_hash != reference.model_hash or g.input_size != reference.input_size:
            raise InputError(f"candidate {name} ({str(g.path)!r}) was made from model {g.model_hash} at {g.input_size}, "
                             f"the reference is {reference.model_hash} at {reference.input_size}; compare graphs of one model")
    evald, info = evaluation_clips(data, candidates, max_clips)
    pos_thres, mask_thr = reference.pos_thres, reference.mask_threshold
    ref_pair = GraphPair(reference.text, reference.segmenter, evald, threads)
    pairs = {name: GraphPair(g.text, g.segmenter, evald, threads) for name, g in candidates.items()}
    cmps = {name: Comparison(evald, pos_thres, mask_thr) for name in candidates}
    for name, pair in pairs.items():
        for rt, ct in zip(ref_pair.text, pair.text):
            cmps[name].add_text(rt, ct)
    bar = _progress(len(evald), "report", progress)
    try:
        for i in range(len(evald)):
            frames = evald.frames[i]
            r, r_ms = ref_pair.run_clip(i, frames)
            for name, pair in pairs.items():
                c, c_ms = pair.run_clip(i, frames)
                cmps[name].add_clip(i, r, c, c_ms, r_ms)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    out: dict[str, Any] = {
        "reference": {"dir": str(reference.path), "precision": reference.precision, "model_hash": reference.model_hash},
        "data": {"path": str(data.path) if data.path else "", "clips": len(evald), "clips_in_file": len(data),
                 "input": data.input_size, "sources": [s["name"] for s in data.meta["sources"]],
                 "groups": sorted(set(data.source_groups)), "sampling": data.meta.get("sampling", {}),
                 "prompt_sets": data.meta.get("prompt_sets", [])},
        "evaluation": info,
        "thresholds": {"pos_cls_thres": pos_thres, "mask_threshold": mask_thr},
        "weights_note": weights_note or "",
        "candidates": {},
        "figures": {},
    }
    for name, g in candidates.items():
        out["candidates"][name] = {"dir": str(g.path), "precision": g.precision, "backend": BACKEND,
                                   "calibration": g.calibration, "metrics": cmps[name].result(),
                                   "per_clip": cmps[name].per_clip}
    if figures_dir is not None:
        for name in candidates:
            f = _draw_worst(evald, ref_pair, pairs[name], cmps[name], mask_thr, name,
                            Path(figures_dir) / f"{figures_prefix}_worst_{name}.png", worst)
            if f is not None:
                out["figures"][name] = f.name
    if extra:
        out.update(extra)
    return to_jsonable(out)


def _draw_worst(data: CalibrationData, ref: GraphPair, cand: GraphPair, cmp: Comparison, mask_threshold: float,
                name: str, path: Path, worst: int) -> Path | None:
    """Re-run the ``worst`` lowest-IoU clips and draw them (:func:`~actionvos.calibration.report_figures.worst_clips_figure`)."""
    from actionvos.calibration.report_figures import WorstClip, worst_clips_figure

    recs = sorted(cmp.per_clip, key=lambda r: r["mask_iou"])[:max(0, worst)]
    rows = []
    for rec in recs:
        i, p, t = rec["clip"], rec["worst_prompt"], rec["worst_frame"]
        frames = data.frames[i]
        r, _ = ref.run_clip(i, frames)
        c, _ = cand.run_clip(i, frames)
        mr, mc = clip_masks(r, mask_threshold)[p, t], clip_masks(c, mask_threshold)[p, t]
        union = int((mr | mc).sum())
        iou = float((mr & mc).sum() / union) if union else 1.0
        names = data.sets[int(data.prompt_set[i])].names
        rows.append(WorstClip(rec["name"], names[p] if p < len(names) else f"prompt {p}", t, iou, rec["mask_iou"],
                              np.ascontiguousarray(frames[t].transpose(1, 2, 0)), mr, mc))
    if not rows:
        return None
    return worst_clips_figure(rows, path, name)


def write_report(report: dict[str, Any], json_path: str | os.PathLike | None, md_path: str | os.PathLike | None,
                 figures_dir: str | os.PathLike | None = None) -> str:
    """Write the JSON and Markdown files (atomically, when paths are given); returns the Markdown text.

    ``figures_dir``: where the pictures were drawn (default: the Markdown's folder); the Markdown links them
    relative to its own folder.
    """
    rel = None
    if md_path and figures_dir is not None:
        rel = Path(os.path.relpath(Path(figures_dir).resolve(), Path(md_path).resolve().parent))
    md = report_markdown(report, rel)
    if json_path:
        atomic_write_json(json_path, report)
    if md_path:
        atomic_write_text(md_path, md)
    return md


def check_thresholds(report: dict[str, Any], min_mask_iou: float | None, min_gate_agreement: float | None,
                     min_clip_iou: float | None = None) -> list[str]:
    """Lines naming every candidate whose mean mask IoU, worst-clip mask IoU or gate agreement is below its bound."""
    fails = []
    for name, c in report["candidates"].items():
        m = c["metrics"]["all"]
        if min_mask_iou is not None and m["mask_iou_mean"] < min_mask_iou:
            fails.append(f"{name}: mask IoU {m['mask_iou_mean']:.4f} < --min-mask-iou {min_mask_iou}")
        if min_clip_iou is not None and m["mask_iou_worst_clip"] < min_clip_iou:
            fails.append(f"{name}: worst clip {m['worst_clip']} has mask IoU {m['mask_iou_worst_clip']:.4f} "
                         f"< --min-clip-iou {min_clip_iou}")
        if min_gate_agreement is not None and m["gate_agreement"] < min_gate_agreement:
            fails.append(f"{name}: gate agreement {m['gate_agreement']:.4f} < --min-gate-agreement {min_gate_agreement}")
    return fails


def accuracy_report(reference: str | os.PathLike, candidates: dict[str, str | os.PathLike], data: str | os.PathLike,
                    *, json_path=None, md_path=None, min_mask_iou: float | None = None,
                    min_gate_agreement: float | None = None, min_clip_iou: float | None = None, threads: int = 2,
                    progress: bool = False, max_clips: int | None = None, raise_on_fail: bool = True,
                    figures_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Library form of ``actionvos calibrate report``: build, write, then enforce the bounds.

    Args:
        reference: FP32 export directory. candidates: name → directory. data: calibration ``.npz`` (read lazily).
        json_path, md_path: where to write (None = do not write).
        min_mask_iou: fail when a candidate's mean mask IoU is below it (0..1).
        min_clip_iou: fail when a candidate's worst clip (mean IoU over its objects and frames) is below it (0..1).
        min_gate_agreement: fail when a candidate's gate agreement is below it (0..1).
        threads: ORT intra-op threads. max_clips: use at most this many evaluation clips (evenly spread).
        raise_on_fail: raise :class:`AccuracyThresholdError` on a shortfall (else only ``report["failures"]``).
        figures_dir: where to draw the worst clips (default: the Markdown's folder, else the JSON's; none without
            either).
    Returns:
        The report dict.
    Raises:
        ConfigError: bounds outside [0, 1]. InputError: unusable directories or data, no clip disjoint from the
            calibration clips.
        AccuracyThresholdError: a candidate fell short (after the files were written).
    """
    for flag, v in (("--min-mask-iou", min_mask_iou), ("--min-clip-iou", min_clip_iou),
                    ("--min-gate-agreement", min_gate_agreement)):
        if v is not None and not 0.0 <= v <= 1.0:
            raise ConfigError(f"{flag} must be in [0, 1], got {v}")
    ref = load_graph_dir(reference, "--reference")
    cands = {k: load_graph_dir(v, f"--candidates {k}") for k, v in candidates.items()}
    cal = load_calibration(data, lazy=True)
    if figures_dir is None and (md_path or json_path):
        figures_dir = Path(md_path or json_path).resolve().parent
    prefix = Path(md_path or json_path).stem if (md_path or json_path) else "accuracy_report"
    report = build_report(ref, cands, cal, threads=threads, progress=progress, weights_note=weights_note(ref),
                          max_clips=max_clips, figures_dir=figures_dir, figures_prefix=prefix)
    report["limits"] = {"min_mask_iou": min_mask_iou, "min_clip_iou": min_clip_iou,
                        "min_gate_agreement": min_gate_agreement}
    fails = check_thresholds(report, min_mask_iou, min_gate_agreement, min_clip_iou)
    report["failures"] = fails
    write_report(report, json_path, md_path, figures_dir)
    if fails and raise_on_fail:
        raise AccuracyThresholdError("; ".join(fails))
    return report


def weights_note(g: GraphDir) -> str | None:
    """The model's weights note (random weights: agreement numbers are pipeline checks only), else None."""
    return g.facts.weights_note or None
