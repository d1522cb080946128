"""Agreement metrics of a reduced-precision graph pair against the FP32 reference, accumulated clip by clip.

Per clip ``i`` (outputs of both sides on the same input):

* masks: each side's *selected* query (frame-mean sigmoid score, max over classes, argmax; spec 3.9) and its binary
  mask ``sigmoid(mask logit) > mask_threshold`` at the graph's stride-4 mask resolution ``h × w = H/4 × W/4``;
  per (prompt, frame) the IoU (two empty masks: 1) and the number of **mask pixels that disagree** (XOR count, in
  pixels of the ``h × w`` mask; one mask pixel covers 4 × 4 input pixels);
* clip mask IoU: mean IoU over the clip's prompts and frames (what ``--min-clip-iou`` bounds for the worst clip);
* gate: ``sigmoid(pred_positives) >= pos_thres`` per prompt, same decision or not; query: same selected query;
* absolute errors per output: ``pred_logits``, ``pred_masks``, ``pred_positives`` in **logits**, ``pred_boxes`` in
  normalised box coordinates, ``text_word`` / ``text_sentence`` in feature units (valid tokens only).

Aggregates (:meth:`Comparison.result`, overall ``all`` and per source group): mean / 5th percentile / worst clip IoU
(and which clip), the minimum IoU over single masks, mean / max disagreeing pixels per mask, gate and query agreement,
max / mean absolute error per output, mean latency.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from actionvos.calibration.clips import CalibrationData
from actionvos.calibration.common import sigmoid
from actionvos.calibration.graph_runs import SEG_OUTPUTS, GraphRun

__all__ = ["selected_query", "clip_masks", "Comparison", "compare_runs"]


def selected_query(logits: np.ndarray) -> np.ndarray:
    """``[P, T, Q, K]`` class logits → ``[P]`` selected query (frame-mean sigmoid, max over K, argmax; spec 3.9)."""
    return sigmoid(logits).mean(1).max(-1).argmax(-1)


def clip_masks(out: dict[str, np.ndarray], mask_threshold: float) -> np.ndarray:
    """``[P, T, h, w]`` bool: the selected query's mask per prompt and frame (``sigmoid(logit) > mask_threshold``)."""
    logit_thr = float(np.log(mask_threshold / (1 - mask_threshold)))
    sel = selected_query(out["pred_logits"])
    P = out["pred_masks"].shape[0]
    return out["pred_masks"][np.arange(P), :, sel] > logit_thr


class _Acc:
    """Accumulates the metrics of one (candidate, group)."""

    def __init__(self):
        self.err_max: dict[str, float] = {}
        self.err_sum: dict[str, float] = {}
        self.err_n: dict[str, int] = {}
        self.clip_iou: list[float] = []
        self.clip_names: list[str] = []
        self.mask_iou_sum = 0.0
        self.mask_iou_min = 1.0
        self.masks = 0
        self.disagree_sum = 0
        self.disagree_max = 0
        self.gate_same = 0
        self.query_same = 0
        self.decisions = 0
        self.ms: list[float] = []
        self.ref_ms: list[float] = []
        self.gate_ref_pos = 0
        self.gate_cand_pos = 0
        self.mask_size: list[int] = []

    def add_err(self, name: str, a: np.ndarray, b: np.ndarray) -> None:
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
        if not np.all(np.isfinite(b)):
            d = np.where(np.isfinite(b), d, np.inf)
        self.err_max[name] = max(self.err_max.get(name, 0.0), float(d.max()) if d.size else 0.0)
        self.err_sum[name] = self.err_sum.get(name, 0.0) + float(d.sum())
        self.err_n[name] = self.err_n.get(name, 0) + int(d.size)

    def result(self) -> dict[str, Any]:
        n = max(self.decisions, 1)
        clip_iou = np.asarray(self.clip_iou) if self.clip_iou else np.ones(1)
        worst = int(np.argmin(clip_iou))
        return {
            "clips": len(self.clip_iou),
            "decisions": self.decisions,
            "mask_iou_mean": float(self.mask_iou_sum / max(self.masks, 1)) if self.masks else 1.0,
            "mask_iou_p5": float(np.percentile(clip_iou, 5)),
            "mask_iou_worst_clip": float(clip_iou[worst]),
            "worst_clip": self.clip_names[worst] if self.clip_names else "",
            "mask_iou_min": float(self.mask_iou_min),
            "mask_disagree_px_mean": float(self.disagree_sum / max(self.masks, 1)),
            "mask_disagree_px_max": int(self.disagree_max),
            "mask_size_px": self.mask_size,
            "gate_agreement": self.gate_same / n,
            "query_agreement": self.query_same / n,
            "gate_positive_rate_ref": self.gate_ref_pos / n,
            "gate_positive_rate_cand": self.gate_cand_pos / n,
            "errors": {k: {"max_abs": self.err_max[k], "mean_abs": self.err_sum[k] / max(self.err_n[k], 1)}
                       for k in self.err_max},
            "seg_ms": float(np.mean(self.ms)) if self.ms else None,
            "ref_seg_ms": float(np.mean(self.ref_ms)) if self.ref_ms else None,
        }


class Comparison:
    """Metrics of one candidate against the reference, fed one clip at a time (memory independent of the clips).

    Args:
        data: the evaluation clips (their source groups and names). pos_thres: gate threshold (sigmoid).
        mask_threshold: mask probability threshold. Both come from the model facts; there is no default.
    Attributes:
        per_clip: per added clip ``{"clip": index, "name", "group", "mask_iou", "disagree_px", "worst_prompt",
        "worst_frame"}`` (the mask with the lowest IoU of the clip, for the pictures).
    """

    def __init__(self, data: CalibrationData, pos_thres: float, mask_threshold: float):
        self.data = data
        self.pos_thres = float(pos_thres)
        self.mask_threshold = float(mask_threshold)
        self.groups = data.source_groups
        self.accs: dict[str, _Acc] = {"all": _Acc()}
        self.per_clip: list[dict[str, Any]] = []

    def add_clip(self, i: int, r: dict[str, np.ndarray], c: dict[str, np.ndarray], ms: float | None = None,
                 ref_ms: float | None = None) -> dict[str, Any]:
        """Add clip ``i``: ``r`` / ``c`` are the reference's / candidate's segmenter outputs. Returns its record."""
        g = self.groups[int(self.data.source[i])]
        targets = [self.accs["all"], self.accs.setdefault(g, _Acc())]
        sel_r, sel_c = selected_query(r["pred_logits"]), selected_query(c["pred_logits"])
        mr, mc = clip_masks(r, self.mask_threshold), clip_masks(c, self.mask_threshold)  # [P, T, h, w]
        P = mr.shape[0]
        inter = (mr & mc).sum((-1, -2))
        union = (mr | mc).sum((-1, -2))
        iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)  # [P, T]
        disagree = union - inter  # XOR pixels [P, T]
        gr = sigmoid(r["pred_positives"]).reshape(P) >= self.pos_thres
        gc = sigmoid(c["pred_positives"]).reshape(P) >= self.pos_thres
        name = self.data.clip_name(i)
        clip_iou = float(iou.mean())
        for a in targets:
            for out_name in SEG_OUTPUTS:
                a.add_err(out_name, r[out_name], c[out_name])
            a.clip_iou.append(clip_iou)
            a.clip_names.append(name)
            a.mask_iou_sum += float(iou.sum())
            a.mask_iou_min = min(a.mask_iou_min, float(iou.min()))
            a.masks += int(iou.size)
            a.disagree_sum += int(disagree.sum())
            a.disagree_max = max(a.disagree_max, int(disagree.max()))
            a.mask_size = [int(mr.shape[-2]), int(mr.shape[-1])]
            a.gate_same += int((gr == gc).sum())
            a.query_same += int((sel_r == sel_c).sum())
            a.decisions += P
            a.gate_ref_pos += int(gr.sum())
            a.gate_cand_pos += int(gc.sum())
            if ms is not None:
                a.ms.append(ms)
            if ref_ms is not None:
                a.ref_ms.append(ref_ms)
        p, t = np.unravel_index(int(np.argmin(iou)), iou.shape)
        rec = {"clip": int(i), "name": name, "group": g, "mask_iou": clip_iou,
               "disagree_px": float(disagree.mean()), "worst_prompt": int(p), "worst_frame": int(t)}
        self.per_clip.append(rec)
        return rec

    def add_text(self, rt: dict[str, np.ndarray], ct: dict[str, np.ndarray]) -> None:
        """Add one prompt set's text outputs (errors over valid tokens only)."""
        valid = ~rt["text_mask"]
        self.accs["all"].add_err("text_word", rt["text_word"][valid], ct["text_word"][valid])
        self.accs["all"].add_err("text_sentence", rt["text_sentence"], ct["text_sentence"])

    def result(self) -> dict[str, dict[str, Any]]:
        """``{"all": {...}, "<group>": {...}}`` (see the module docstring for the keys)."""
        return {k: a.result() for k, a in self.accs.items()}


def compare_runs(ref: GraphRun, cand: GraphRun, data: CalibrationData, pos_thres: float,
                 mask_threshold: float) -> dict[str, dict[str, Any]]:
    """Metrics of ``cand`` against ``ref`` for stored runs (:func:`~actionvos.calibration.graph_runs.run_graphs`).

    Returns:
        :meth:`Comparison.result`: keyed ``all`` and by source group.
    """
    cmp = Comparison(data, pos_thres, mask_threshold)
    for i in range(len(data)):
        cmp.add_clip(i, ref.seg[i], cand.seg[i], cand.seg_ms[i] if cand.seg_ms else None,
                     ref.seg_ms[i] if ref.seg_ms else None)
    for rt, ct in zip(ref.text, cand.text):
        cmp.add_text(rt, ct)
    return cmp.result()
