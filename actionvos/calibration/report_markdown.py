"""The accuracy report as Markdown: two narrow tables with named units, the worst clips, the pictures.

Table 1 (decisions, per candidate × source group): mask IoU mean / 5th percentile over clips / worst clip, mask
pixels that disagree per mask (mean / max, pixels of the ``h × w`` stride-4 mask), gate and query agreement.
Table 2 (outputs, per candidate): absolute error max / mean in each output's unit (logits for masks, classes and
the gate; normalised coordinates for boxes; feature units for text) and the segmenter latency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["report_markdown", "sensitivity_markdown", "fmt"]


def fmt(x: float | None, digits: int = 3) -> str:
    """A number for a table: ``-`` for None, fixed digits in [0.01, 1e4), else scientific."""
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 1e-2 and abs(x) < 1e4:
        return f"{x:.{digits}f}"
    return f"{x:.2e}"


def _pair(e: dict[str, Any], k: str) -> str:
    return f"{fmt(e[k]['max_abs'])} / {fmt(e[k]['mean_abs'])}" if k in e else "-"


def report_markdown(report: dict[str, Any], figures_rel: Path | None = None) -> str:
    """The report as Markdown (see the module docstring).

    Args:
        report: :func:`actionvos.calibration.report.build_report`'s dict.
        figures_rel: folder of the pictures relative to the Markdown file (``report["figures"]`` names them);
            None writes the image links with the file names only.
    """
    lines = []
    ref, data = report["reference"], report["data"]
    inp = data["input"]
    lines.append(f"Reference: `{ref['dir']}` (fp32, model {ref['model_hash']}); data: `{data['path']}` "
                 f"({data['clips']} clips of {inp['frames']}x{inp['height']}x{inp['width']}); thresholds: mask "
                 f"sigmoid > {report['thresholds']['mask_threshold']}, gate sigmoid >= {report['thresholds']['pos_cls_thres']}.")
    ev = report.get("evaluation") or {}
    if ev:
        lines.append("")
        lines.append(ev.get("statement", ""))
    if report.get("weights_note"):
        lines.append("")
        lines.append(f"**{report['weights_note']}**")
    lines.append("")
    size = None
    for c in report["candidates"].values():
        size = c["metrics"]["all"].get("mask_size_px") or size
    px = f"{size[0]}x{size[1]} mask px" if size else "mask px"
    cols = ["candidate", "backend", "source", "clips", "mask IoU mean / p5 / worst clip",
            f"differing {px} per mask, mean / max", "gate agree", "query agree"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for name, c in report["candidates"].items():
        groups = ["all"] + sorted(k for k in c["metrics"] if k != "all")
        for gname in groups:
            m = c["metrics"][gname]
            lines.append("| " + " | ".join([
                f"{name} ({c['precision']})", c["backend"], gname, str(m["clips"]),
                f"{m['mask_iou_mean']:.4f} / {m['mask_iou_p5']:.3f} / {m['mask_iou_worst_clip']:.3f}",
                f"{m['mask_disagree_px_mean']:.1f} / {m['mask_disagree_px_max']}",
                f"{m['gate_agreement']:.3f}", f"{m['query_agreement']:.3f}",
            ]) + " |")
    lines.append("")
    lines.append("Worst clip (lowest clip mask IoU = mean over its objects and frames): " + "; ".join(
        f"{name}: `{c['metrics']['all']['worst_clip']}` IoU {c['metrics']['all']['mask_iou_worst_clip']:.3f} "
        f"(worst single mask {c['metrics']['all']['mask_iou_min']:.3f})" for name, c in report["candidates"].items()))
    lines.append("")
    cols2 = ["candidate", "pred_masks (logit)", "pred_logits (logit)", "pred_positives (gate logit)",
             "pred_boxes (box coord, 0-1)", "text_word (feature)", "segmenter ms (fp32 ms)"]
    lines.append("Absolute error against FP32, max / mean, in each output's unit:")
    lines.append("")
    lines.append("| " + " | ".join(cols2) + " |")
    lines.append("|" + "|".join("---" for _ in cols2) + "|")
    for name, c in report["candidates"].items():
        m = c["metrics"]["all"]
        e = m["errors"]
        lines.append("| " + " | ".join([f"{name} ({c['precision']})", _pair(e, "pred_masks"), _pair(e, "pred_logits"),
                                        _pair(e, "pred_positives"), _pair(e, "pred_boxes"), _pair(e, "text_word"),
                                        f"{fmt(m['seg_ms'], 1)} ({fmt(m['ref_seg_ms'], 1)})"]) + " |")
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
    figs = report.get("figures") or {}
    if figs:
        lines.append("")
        lines.append("Worst clips (columns: FP32 mask, candidate mask, disagreement: red = FP32 only, "
                     "blue = candidate only):")
        for name, f in figs.items():
            rel = (Path(figures_rel) / Path(f).name) if figures_rel is not None else Path(Path(f).name)
            lines.append("")
            lines.append(f"![{name}: worst clips]({rel.as_posix()})")
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
    """Markdown table of an FP16 sensitivity measurement
    (:func:`actionvos.calibration.fp16_sensitivity.measure_sensitivity`)."""
    lines = [f"FP16 sensitivity ({sens['clips']} clips; score = max over outputs of mean|err| / mean|ref|; "
             f"rule: {sens['rule']})", "",
             "| configuration | FP32 groups | score | mask IoU mean | gate agree | query agree | pred_masks mean abs (logit) | pred_positives mean abs (logit) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in sens["rows"]:
        m = row["metrics"]
        lines.append(f"| {row['config']} | {', '.join(row['fp32_groups']) or '-'} | {fmt(row['score'])} | "
                     f"{m['mask_iou_mean']:.4f} | {m['gate_agreement']:.3f} | {m['query_agreement']:.3f} | "
                     f"{fmt(m['errors']['pred_masks']['mean_abs'])} | {fmt(m['errors']['pred_positives']['mean_abs'])} |")
    lines.append("")
    lines.append(f"Kept in FP32: {', '.join(sens['kept_fp32']) or 'nothing beyond the converter defaults'}")
    return "\n".join(lines)
