"""Which FP16 node groups must stay FP32: measured on real calibration clips (``calibrate fp16``'s measurement).

Measurement (:func:`measure_sensitivity`): on real calibration clips, convert with

* ``all-fp16``: no group kept (only the always-FP32 ops);
* ``all-groups-fp32``: every candidate group kept (the floor);
* ``fp16:<group>``: every group kept except ``<group>`` (leave one out: what converting that group costs);

and record, for each, the output errors against the FP32 graphs and the decision agreements
(:func:`actionvos.calibration.metrics.compare_runs`). A group is kept in FP32 when converting it alone
(``fp16:<group>``) adds at least 25 % of the gap between the all-fp16 and floor scores and ends above 1.2 × the
floor score (score = max over outputs of mean|err| / mean|ref|), lowers the mean mask IoU by more than 0.002, or
flips a gate / query decision that the floor keeps (:data:`RULE`).

Node groups and the conversion itself: :mod:`actionvos.precision.groups`, :mod:`actionvos.precision.fp16`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np

from actionvos.calibration.clips import CalibrationData
from actionvos.calibration.common import GraphDir, require_ort_runnable
from actionvos.calibration.graph_runs import run_graphs
from actionvos.calibration.metrics import compare_runs
from actionvos.errors import ConfigError
from actionvos.precision.fp16 import GROUPS, convert_fp16, ensure_names, node_groups

__all__ = ["RULE", "GraphConverter", "measure_sensitivity"]

log = logging.getLogger(__name__)

RULE = ("keep a group in FP32 when converting it alone (others FP32) adds >= 25% of the all-fp16 score gap and "
        "> 1.2x the floor score, lowers mean mask IoU by > 0.002, or flips a gate/query decision the floor keeps")
_SCORE_OUTPUTS = ("pred_logits", "pred_boxes", "pred_masks", "pred_positives", "text_word", "text_sentence")


class GraphConverter:
    """Caches the shape-inferred FP32 graphs of an export directory, their node groups, and the converted FP16
    graphs (serialised bytes) per kept-group set: ``convert("text" | "seg", keep_groups) -> bytes``."""

    def __init__(self, graphs: GraphDir):
        import onnx

        self.models = {}
        self.groups = {}
        for role, path in (("text", graphs.text), ("seg", graphs.segmenter)):
            m = onnx.load(str(path))
            ensure_names(m)
            m = onnx.shape_inference.infer_shapes(m)
            self.models[role] = m
            self.groups[role] = node_groups(m)
        self.cache: dict[tuple[str, frozenset], bytes] = {}

    def convert(self, role: str, keep: Sequence[str]):
        key = (role, frozenset(n for g in keep for n in self.groups[role].get(g, ())))
        if key not in self.cache:
            t0 = time.perf_counter()
            self.cache[key] = convert_fp16(self.models[role], keep, self.groups[role], shape_inferred=True).SerializeToString()
            log.debug("fp16 %s with %s kept: %.1f s", role, sorted(keep), time.perf_counter() - t0)
        return self.cache[key]

    def present(self) -> list[str]:
        """Groups with at least one node in either graph."""
        return [g for g in GROUPS if self.groups["text"][g] or self.groups["seg"][g]]


def _score(metrics: dict[str, Any], ref_scale: dict[str, float]) -> float:
    e = metrics["errors"]
    return max(e[k]["mean_abs"] / max(ref_scale.get(k, 1.0), 1e-12) for k in _SCORE_OUTPUTS if k in e)


def _ref_scale(ref_run, data) -> dict[str, float]:
    scale = {}
    for k in ("pred_logits", "pred_boxes", "pred_masks", "pred_positives"):
        scale[k] = float(np.mean([np.abs(o[k]).mean() for o in ref_run.seg]))
    scale["text_word"] = float(np.mean([np.abs(t["text_word"][~t["text_mask"]]).mean() for t in ref_run.text]))
    scale["text_sentence"] = float(np.mean([np.abs(t["text_sentence"]).mean() for t in ref_run.text]))
    return scale


def measure_sensitivity(graphs: GraphDir, data: CalibrationData, *, candidates: Sequence[str] | None = None,
                        threads: int = 2, progress: bool = False, ref_run=None,
                        converter: GraphConverter | None = None) -> dict[str, Any]:
    """Measure which node groups must stay FP32 (see the module docstring for configurations and rule).

    Args:
        graphs: the FP32 export directory (``--msda onnx``: ONNX Runtime CPU runs it).
        data: calibration clips (use a few: every configuration runs all of them).
        candidates: groups to measure (default: every group present in the graphs).
        threads: ORT threads. progress: progress bars.
        ref_run: FP32 outputs on ``data`` when already computed (:func:`~actionvos.calibration.graph_runs.run_graphs`).
    Returns:
        JSON-able dict: ``clips``, ``rule``, ``rows`` (config, fp32_groups, score, metrics), ``kept_fp32``,
        ``decisions`` (group → {keep, why}), ``seconds``.
    Raises:
        ConfigError: plugin graphs (ORT cannot run them) or unknown group names.
    """
    require_ort_runnable(graphs, "the FP16 sensitivity measurement")
    t_start = time.perf_counter()
    conv = converter or GraphConverter(graphs)
    cands = list(candidates) if candidates is not None else conv.present()
    unknown = sorted(set(cands) - set(GROUPS))
    if unknown:
        raise ConfigError(f"unknown FP32 group(s) {unknown}; choose from {list(GROUPS)}")
    if ref_run is None:
        ref_run = run_graphs(graphs.text, graphs.segmenter, data, threads)
    scale = _ref_scale(ref_run, data)

    def evaluate(name: str, keep: list[str]) -> dict[str, Any]:
        run = run_graphs(conv.convert("text", keep), conv.convert("seg", keep), data, threads, progress, name)
        m = compare_runs(ref_run, run, data, graphs.pos_thres, graphs.mask_threshold)["all"]
        row = {"config": name, "fp32_groups": sorted(keep), "score": _score(m, scale), "metrics": m}
        log.info("fp16 sensitivity %-32s score %.2e  mask IoU %.4f  gate %.3f  query %.3f", name, row["score"],
                 m["mask_iou_mean"], m["gate_agreement"], m["query_agreement"])
        return row

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=2 + len(cands), desc="fp16 sensitivity", unit="config")

    def step(row):
        if bar is not None:
            bar.update(1)
        return row

    try:
        rows = [step(evaluate("all-fp16", [])), step(evaluate("all-groups-fp32", cands))]
        for g in cands:
            rows.append(step(evaluate(f"fp16:{g}", [c for c in cands if c != g])))
    finally:
        if bar is not None:
            bar.close()
    floor = rows[1]
    decisions = {}
    for row in rows[2:]:
        g = row["config"].split(":", 1)[1]
        fm, m = floor["metrics"], row["metrics"]
        why = []
        gap = max(rows[0]["score"] - floor["score"], 0.0)
        share = (row["score"] - floor["score"]) / gap if gap > 0 else 0.0
        if share >= 0.25 and row["score"] > 1.2 * floor["score"]:
            why.append(f"score {row['score']:.2e} vs floor {floor['score']:.2e} ({share:.0%} of the all-fp16 gap)")
        if fm["mask_iou_mean"] - m["mask_iou_mean"] > 0.002:
            why.append(f"mask IoU {m['mask_iou_mean']:.4f} vs {fm['mask_iou_mean']:.4f}")
        if m["gate_agreement"] < fm["gate_agreement"]:
            why.append(f"gate agreement {m['gate_agreement']:.3f} vs {fm['gate_agreement']:.3f}")
        if m["query_agreement"] < fm["query_agreement"]:
            why.append(f"query agreement {m['query_agreement']:.3f} vs {fm['query_agreement']:.3f}")
        decisions[g] = {"keep_fp32": bool(why), "why": "; ".join(why) or "no measurable effect"}
    kept = [g for g in cands if decisions[g]["keep_fp32"]]
    return {
        "clips": len(data),
        "candidates": cands,
        "rule": RULE,
        "rows": rows,
        "decisions": decisions,
        "kept_fp32": kept,
        "group_sizes": {g: {"text_encoder": len(conv.groups["text"][g]), "segmenter": len(conv.groups["seg"][g])}
                        for g in GROUPS},
        "seconds": round(time.perf_counter() - t_start, 1),
    }
