"""Accuracy report: reduced-precision graphs against the FP32 graphs on real calibration clips.

For every candidate (``fp16=DIR``, ``int8=DIR``) and backend (ONNX Runtime CPU here) the candidate's text graph
encodes each prompt set from the stored token ids, its segmenter runs each stored clip, and the outputs are compared
with the FP32 reference directory's outputs on the same inputs (end to end: text and segmenter both reduced).

Metrics (per candidate, overall and per source group: each video, ``minivisor/val``, ...):

* per output (``pred_logits``, ``pred_boxes``, ``pred_masks``, ``pred_positives``, ``text_word``, ``text_sentence``):
  max and mean absolute error (units of the output: logits, normalised box coordinates, feature values);
* ``mask_iou``: IoU between the reference's and the candidate's binary mask of the *selected* query (each side's
  own selection: frame-mean sigmoid score argmax, spec 3.9) with ``sigmoid(mask logit) > mask_threshold`` (0.5),
  at the graph's stride-4 mask resolution, per clip, prompt and frame; two empty masks count as IoU 1.
  Mean and minimum are reported;
* ``gate_agreement``: fraction of (clip, prompt) with the same positive-gate decision
  ``sigmoid(pred_positives) >= pos_thres`` (0.75);
* ``query_agreement``: fraction of (clip, prompt) where both select the same query;
* ``seg_ms``: mean segmenter latency per clip in ms on this machine (indicative only; see
  ``benchmarks/bench_precision.py`` for timings).

Written as JSON and a Markdown table (atomically); ``min_mask_iou`` / ``min_gate_agreement`` turn shortfalls into
:class:`AccuracyThresholdError` (exit code 3).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from actionvos.calibration.common import GraphDir, load_graph_dir, make_session, require_ort_runnable, sigmoid, to_jsonable
from actionvos.calibration.data import CalibrationData, check_compatible, load_calibration
from actionvos.errors import ActionVOSError, ConfigError, InputError
from actionvos.io_utils import atomic_write_json, atomic_write_text

__all__ = [
    "SEG_OUTPUTS",
    "TEXT_OUTPUTS",
    "AccuracyThresholdError",
    "GraphRun",
    "run_graphs",
    "compare_runs",
    "build_report",
    "report_markdown",
    "write_report",
    "check_thresholds",
    "parse_candidates",
    "accuracy_report",
]

log = logging.getLogger(__name__)

SEG_OUTPUTS = ("pred_logits", "pred_boxes", "pred_masks", "pred_positives")
TEXT_OUTPUTS = ("text_word", "text_sentence")
BACKEND = "onnxruntime-cpu"


class AccuracyThresholdError(ActionVOSError):
    """A candidate's mask IoU or gate agreement is below ``--min-mask-iou`` / ``--min-gate-agreement``."""

    exit_code = 3


@dataclass
class GraphRun:
    """Outputs of one graph pair on a calibration file.

    Attributes:
        seg: per clip a dict ``name -> array`` of the segmenter outputs (float32).
        text: per prompt set a dict of the text outputs.
        seg_ms: per clip segmenter latency in ms (one run, after one warm-up run).
        text_ms: per prompt set text-graph latency in ms.
    """

    seg: list[dict[str, np.ndarray]]
    text: list[dict[str, np.ndarray]]
    seg_ms: list[float] = field(default_factory=list)
    text_ms: list[float] = field(default_factory=list)


def run_graphs(text_model, seg_model, data: CalibrationData, threads: int = 2, progress: bool = False,
               desc: str = "run") -> GraphRun:
    """Run a text graph and a segmenter (paths or serialised bytes) on every prompt set and clip of ``data``.

    The segmenter reads the text features this text graph produced (end to end), as the runtime does.
    """
    text_sess = make_session(text_model, threads)
    seg_sess = make_session(seg_model, threads)
    text_out, text_ms = [], []
    for s in data.sets:
        t0 = time.perf_counter()
        word, mask, sent = text_sess.run(["text_word", "text_mask", "text_sentence"], s.text_feed())
        text_ms.append((time.perf_counter() - t0) * 1e3)
        text_out.append({"text_word": word.astype(np.float32), "text_mask": mask.astype(bool),
                         "text_sentence": sent.astype(np.float32)})
    seg_out, seg_ms = [], []
    names = list(SEG_OUTPUTS)
    it = range(len(data))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=desc, unit="clip", leave=False)
    warmed = False
    for i in it:
        feed = data.segmenter_feed(i, text_out[int(data.prompt_set[i])])
        if not warmed:
            seg_sess.run(names, feed)
            warmed = True
        t0 = time.perf_counter()
        outs = seg_sess.run(names, feed)
        seg_ms.append((time.perf_counter() - t0) * 1e3)
        seg_out.append({n: o.astype(np.float32) for n, o in zip(names, outs)})
    return GraphRun(seg_out, text_out, seg_ms, text_ms)


class _Acc:
    """Accumulates the metrics of one (candidate, group)."""

    def __init__(self):
        self.err_max: dict[str, float] = {}
        self.err_sum: dict[str, float] = {}
        self.err_n: dict[str, int] = {}
        self.ious: list[float] = []
        self.gate_same = 0
        self.query_same = 0
        self.decisions = 0
        self.clips = 0
        self.ms: list[float] = []
        self.ref_ms: list[float] = []
        self.gate_ref_pos = 0
        self.gate_cand_pos = 0

    def add_err(self, name: str, a: np.ndarray, b: np.ndarray) -> None:
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
        if not np.all(np.isfinite(b)):
            d = np.where(np.isfinite(b), d, np.inf)
        self.err_max[name] = max(self.err_max.get(name, 0.0), float(d.max()) if d.size else 0.0)
        self.err_sum[name] = self.err_sum.get(name, 0.0) + float(d.sum())
        self.err_n[name] = self.err_n.get(name, 0) + int(d.size)

    def result(self) -> dict[str, Any]:
        n = max(self.decisions, 1)
        ious = np.asarray(self.ious) if self.ious else np.ones(1)
        return {
            "clips": self.clips,
            "decisions": self.decisions,
            "mask_iou_mean": float(ious.mean()),
            "mask_iou_min": float(ious.min()),
            "gate_agreement": self.gate_same / n,
            "query_agreement": self.query_same / n,
            "gate_positive_rate_ref": self.gate_ref_pos / n,
            "gate_positive_rate_cand": self.gate_cand_pos / n,
            "errors": {k: {"max_abs": self.err_max[k], "mean_abs": self.err_sum[k] / max(self.err_n[k], 1)}
                       for k in self.err_max},
            "seg_ms": float(np.mean(self.ms)) if self.ms else None,
            "ref_seg_ms": float(np.mean(self.ref_ms)) if self.ref_ms else None,
        }


def _selected(logits: np.ndarray) -> np.ndarray:
    """``[P, T, Q, K]`` logits → ``[P]`` selected query (frame-mean sigmoid, max over K, argmax; spec 3.9)."""
    return sigmoid(logits).mean(1).max(-1).argmax(-1)


def compare_runs(ref: GraphRun, cand: GraphRun, data: CalibrationData, pos_thres: float = 0.75,
                 mask_threshold: float = 0.5) -> dict[str, dict[str, Any]]:
    """Metrics of ``cand`` against ``ref`` (see the module docstring), keyed ``all`` and by source group.

    Returns:
        ``{"all": {...}, "<group>": {...}}`` with ``clips``, ``mask_iou_mean``/``_min``, ``gate_agreement``,
        ``query_agreement``, ``errors`` (output → ``max_abs``/``mean_abs``), ``seg_ms``, ``ref_seg_ms``.
    """
    groups = data.source_groups
    accs: dict[str, _Acc] = {"all": _Acc()}
    logit_thr = float(np.log(mask_threshold / (1 - mask_threshold)))
    for i in range(len(data)):
        g = groups[int(data.source[i])]
        targets = [accs["all"], accs.setdefault(g, _Acc())]
        r, c = ref.seg[i], cand.seg[i]
        sel_r, sel_c = _selected(r["pred_logits"]), _selected(c["pred_logits"])
        P = r["pred_masks"].shape[0]
        mr = r["pred_masks"][np.arange(P), :, sel_r] > logit_thr  # [P, T, h, w]
        mc = c["pred_masks"][np.arange(P), :, sel_c] > logit_thr
        inter = (mr & mc).sum((-1, -2))
        union = (mr | mc).sum((-1, -2))
        iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)  # [P, T]
        gr = sigmoid(r["pred_positives"]).reshape(P) >= pos_thres
        gc = sigmoid(c["pred_positives"]).reshape(P) >= pos_thres
        for a in targets:
            a.clips += 1
            for name in SEG_OUTPUTS:
                a.add_err(name, r[name], c[name])
            a.ious.extend(iou.reshape(-1).tolist())
            a.gate_same += int((gr == gc).sum())
            a.query_same += int((sel_r == sel_c).sum())
            a.decisions += P
            a.gate_ref_pos += int(gr.sum())
            a.gate_cand_pos += int(gc.sum())
            if cand.seg_ms:
                a.ms.append(cand.seg_ms[i])
            if ref.seg_ms:
                a.ref_ms.append(ref.seg_ms[i])
    for k, (rt, ct) in enumerate(zip(ref.text, cand.text)):
        valid = ~rt["text_mask"]
        accs["all"].add_err("text_word", rt["text_word"][valid], ct["text_word"][valid])
        accs["all"].add_err("text_sentence", rt["text_sentence"], ct["text_sentence"])
    return {k: a.result() for k, a in accs.items()}


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


def build_report(reference: GraphDir, candidates: dict[str, GraphDir], data: CalibrationData, *, threads: int = 2,
                 progress: bool = False, ref_run: GraphRun | None = None, extra: dict[str, Any] | None = None,
                 weights_note: str | None = None) -> dict[str, Any]:
    """Run the reference and every candidate on ``data`` and collect the metrics (JSON-able dict).

    Raises:
        ConfigError: a graph directory ORT CPU cannot run (``--msda plugin``).
        InputError: ``data`` or a candidate belongs to another model or input size.
    """
    require_ort_runnable(reference, "the accuracy report")
    check_compatible(data, reference)
    if ref_run is None:
        ref_run = run_graphs(reference.text, reference.segmenter, data, threads, progress, "fp32")
    out: dict[str, Any] = {
        "reference": {"dir": str(reference.path), "precision": reference.precision, "model_hash": reference.model_hash},
        "data": {"path": str(data.path) if data.path else "", "clips": len(data),
                 "input": data.input_size, "sources": [s["name"] for s in data.meta["sources"]],
                 "groups": sorted(set(data.source_groups)), "sampling": data.meta.get("sampling", {}),
                 "prompt_sets": data.meta.get("prompt_sets", [])},
        "thresholds": {"pos_cls_thres": reference.pos_thres, "mask_threshold": reference.mask_threshold},
        "weights_note": weights_note or "",
        "candidates": {},
    }
    for name, g in candidates.items():
        require_ort_runnable(g, "the accuracy report")
        if g.model_hash != reference.model_hash or g.input_size != reference.input_size:
            raise InputError(f"candidate {name} ({str(g.path)!r}) was made from model {g.model_hash} at {g.input_size}, "
                             f"the reference is {reference.model_hash} at {reference.input_size}; compare graphs of one model")
        run = run_graphs(g.text, g.segmenter, data, threads, progress, name)
        metrics = compare_runs(ref_run, run, data, reference.pos_thres, reference.mask_threshold)
        out["candidates"][name] = {"dir": str(g.path), "precision": g.precision, "backend": BACKEND,
                                   "calibration": g.calibration, "metrics": metrics}
    if extra:
        out.update(extra)
    return to_jsonable(out)


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 1e-2 and abs(x) < 1e4:
        return f"{x:.{digits}f}"
    return f"{x:.2e}"


def report_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one table row per candidate × source group, errors as ``max / mean``."""
    lines = []
    ref = report["reference"]
    lines.append(f"Reference: `{ref['dir']}` (fp32, model {ref['model_hash']}); data: `{report['data']['path']}` "
                 f"({report['data']['clips']} clips of {report['data']['input']['frames']}x"
                 f"{report['data']['input']['height']}x{report['data']['input']['width']}); thresholds: mask "
                 f"sigmoid > {report['thresholds']['mask_threshold']}, gate sigmoid >= {report['thresholds']['pos_cls_thres']}.")
    if report.get("weights_note"):
        lines.append(f"**{report['weights_note']}**")
    lines.append("")
    cols = ["candidate", "backend", "source", "clips", "mask IoU mean (min)", "gate agree", "query agree",
            "pred_masks max / mean", "pred_logits max / mean", "pred_boxes max / mean", "pred_positives max / mean",
            "text_word max / mean", "seg ms (fp32 ms)"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for name, c in report["candidates"].items():
        groups = ["all"] + sorted(k for k in c["metrics"] if k != "all")
        for gname in groups:
            m = c["metrics"][gname]
            e = m["errors"]

            def pair(k):
                return f"{_fmt(e[k]['max_abs'])} / {_fmt(e[k]['mean_abs'])}" if k in e else "-"

            lines.append("| " + " | ".join([
                f"{name} ({c['precision']})", c["backend"], gname, str(m["clips"]),
                f"{m['mask_iou_mean']:.4f} ({m['mask_iou_min']:.3f})", f"{m['gate_agreement']:.3f}",
                f"{m['query_agreement']:.3f}", pair("pred_masks"), pair("pred_logits"), pair("pred_boxes"),
                pair("pred_positives"), pair("text_word"), f"{_fmt(m['seg_ms'], 1)} ({_fmt(m['ref_seg_ms'], 1)})",
            ]) + " |")
    for name, c in report["candidates"].items():
        cal = c.get("calibration") or {}
        if cal.get("kept_fp32"):
            lines.append("")
            lines.append(f"{name}: kept in FP32: {', '.join(cal['kept_fp32'])}"
                         + (f"; excluded from INT8: {', '.join(cal['excluded_groups'])}" if cal.get("excluded_groups") else ""))
        elif cal.get("excluded_groups"):
            lines.append("")
            lines.append(f"{name}: excluded from INT8 (kept FP32): {', '.join(cal['excluded_groups'])}")
        if cal.get("method"):
            lines.append(f"{name}: calibration {cal['method']}, {cal.get('calibration_clips')} clips, "
                         f"quantized op types {cal.get('op_types')}")
    sens = report.get("sensitivity")
    if sens:
        lines.append("")
        lines.append(sensitivity_markdown(sens))
    if any(c["precision"] == "fp16" for c in report["candidates"].values()):
        lines.append("")
        lines.append("FP16 on ONNX Runtime CPU: most ops have no fp16 CPU kernel, so ORT inserts casts to fp32 around "
                     "them; the errors are representative of fp16 rounding, the ms are not of a GPU.")
    return "\n".join(lines) + "\n"


def sensitivity_markdown(sens: dict[str, Any]) -> str:
    """Markdown table of an FP16 sensitivity measurement (:func:`actionvos.calibration.fp16.measure_sensitivity`)."""
    lines = [f"FP16 sensitivity ({sens['clips']} clips; score = max over outputs of mean|err| / mean|ref|; "
             f"rule: {sens['rule']})", "",
             "| configuration | FP32 groups | score | mask IoU mean | gate agree | query agree | pred_masks mean | pred_positives mean |",
             "|---|---|---|---|---|---|---|---|"]
    for row in sens["rows"]:
        m = row["metrics"]
        lines.append(f"| {row['config']} | {', '.join(row['fp32_groups']) or '-'} | {_fmt(row['score'])} | "
                     f"{m['mask_iou_mean']:.4f} | {m['gate_agreement']:.3f} | {m['query_agreement']:.3f} | "
                     f"{_fmt(m['errors']['pred_masks']['mean_abs'])} | {_fmt(m['errors']['pred_positives']['mean_abs'])} |")
    lines.append("")
    lines.append(f"Kept in FP32: {', '.join(sens['kept_fp32']) or 'nothing beyond the converter defaults'}")
    return "\n".join(lines)


def write_report(report: dict[str, Any], json_path: str | os.PathLike | None, md_path: str | os.PathLike | None) -> str:
    """Write the JSON and Markdown files (atomically, when paths are given); returns the Markdown text."""
    md = report_markdown(report)
    if json_path:
        atomic_write_json(json_path, report)
    if md_path:
        atomic_write_text(md_path, md)
    return md


def check_thresholds(report: dict[str, Any], min_mask_iou: float | None, min_gate_agreement: float | None) -> list[str]:
    """Lines naming every candidate whose overall mean mask IoU / gate agreement is below the thresholds."""
    fails = []
    for name, c in report["candidates"].items():
        m = c["metrics"]["all"]
        if min_mask_iou is not None and m["mask_iou_mean"] < min_mask_iou:
            fails.append(f"{name}: mask IoU {m['mask_iou_mean']:.4f} < --min-mask-iou {min_mask_iou}")
        if min_gate_agreement is not None and m["gate_agreement"] < min_gate_agreement:
            fails.append(f"{name}: gate agreement {m['gate_agreement']:.4f} < --min-gate-agreement {min_gate_agreement}")
    return fails


def accuracy_report(reference: str | os.PathLike, candidates: dict[str, str | os.PathLike], data: str | os.PathLike,
                    *, json_path=None, md_path=None, min_mask_iou: float | None = None,
                    min_gate_agreement: float | None = None, threads: int = 2, progress: bool = False,
                    max_clips: int | None = None, raise_on_fail: bool = True) -> dict[str, Any]:
    """Library form of ``actionvos calibrate report``: build, write, then enforce the thresholds.

    Args:
        reference: FP32 export directory. candidates: name → directory. data: calibration ``.npz``.
        json_path, md_path: where to write (None = do not write).
        min_mask_iou: fail when a candidate's mean mask IoU is below it (0..1).
        min_gate_agreement: fail when a candidate's gate agreement is below it (0..1).
        threads: ORT intra-op threads. max_clips: use at most this many clips (evenly spread).
        raise_on_fail: raise :class:`AccuracyThresholdError` on a shortfall (else only ``report["failures"]``).
    Returns:
        The report dict.
    Raises:
        ConfigError: thresholds outside [0, 1]. InputError: unusable directories or data.
        AccuracyThresholdError: a candidate fell short (after the files were written).
    """
    for flag, v in (("--min-mask-iou", min_mask_iou), ("--min-gate-agreement", min_gate_agreement)):
        if v is not None and not 0.0 <= v <= 1.0:
            raise ConfigError(f"{flag} must be in [0, 1], got {v}")
    ref = load_graph_dir(reference, "--reference")
    cands = {k: load_graph_dir(v, f"--candidates {k}") for k, v in candidates.items()}
    cal = load_calibration(data).spread(max_clips)
    note = _weights_note(ref)
    report = build_report(ref, cands, cal, threads=threads, progress=progress, weights_note=note)
    report["limits"] = {"min_mask_iou": min_mask_iou, "min_gate_agreement": min_gate_agreement}
    fails = check_thresholds(report, min_mask_iou, min_gate_agreement)
    report["failures"] = fails
    write_report(report, json_path, md_path)
    if fails and raise_on_fail:
        raise AccuracyThresholdError("; ".join(fails))
    return report


def _weights_note(g: GraphDir) -> str | None:
    """A warning line when the export says nothing about the weights being trained (no checkpoint hash)."""
    if not g.meta.get("checkpoint_sha256"):
        return ("Exported from a model object without a checkpoint (random weights in tests): agreement numbers are "
                "pipeline checks only, not accuracy evidence.")
    return None
