"""FP16 graphs with the measured-sensitive ops kept in FP32.

TensorRT 10.12+ has no FP16 builder flag: the precision is written into the ONNX graph. The conversion is the
maintained converter ``onnxconverter_common.float16.convert_float_to_float16`` with ``keep_io_types=True`` (graph
inputs/outputs stay float32 / uint8 / bool, so runtimes feed FP16 graphs exactly like FP32 ones) and a
``node_block_list`` of the node groups kept in FP32.

Node groups (found by module scope and graph pattern in the traced graphs, :func:`node_groups`):

=========================  ==================================================================================
``msda_sampling_offsets``  MSDA ``sampling_offsets`` Linear (offsets in feature pixels, divided by the level
                           size: small relative errors move sampling points)
``msda_attention_weights`` MSDA ``attention_weights`` Linear + its softmax over levels × points
``msda_sampling``          the rest of each MSDA layer: sampling locations, grid, GridSample, weighted sum (with
                           ``--msda plugin`` the custom-op node)
``softmax_attention``      softmax of every other attention (text encoder, fusion, pixel decoder, decoder
                           self-attention)
``layer_norm``             every ``LayerNormalization`` (transformer, pixel decoder, RoBERTa, feature resizer)
``group_norm``             ``InstanceNormalization`` nodes of the GroupNorm layers (input projections, FPN)
``positive_head``          the ActionVOS positive head (query mean + Linear): the clip-level gate logit
``box_refinement``         ``inverse_sigmoid`` (clamp, divide, log), ``bbox_embed`` MLPs, reference add + sigmoid
``mask_head``              dynamic mask head: controller MLP and the per-query 1×1 convs (Einsum)
=========================  ==================================================================================

Always FP32 (not measured): the converter's default op block list (``Resize``, ``Range``, ``CumSum``, ...),
``Cast(to=float)`` nodes (this converter version keeps their ``to`` attribute while re-typing their outputs, which
makes an invalid graph), and the TensorRT MSDA plugin node (its contract is float32).

Measurement (:func:`measure_sensitivity`): on real calibration clips, convert with

* ``all-fp16``: no group kept (only the always-FP32 ops);
* ``all-groups-fp32``: every candidate group kept (the floor);
* ``fp16:<group>``: every group kept except ``<group>`` (leave one out: what converting that group costs);

and record, for each, the output errors against the FP32 graphs and the decision agreements
(:func:`actionvos.calibration.report.compare_runs`). A group is kept in FP32 when converting it alone
(``fp16:<group>``) adds at least 25 % of the gap between the all-fp16 and floor scores and ends above 1.2 × the
floor score (score = max over outputs of mean|err| / mean|ref|), lowers the mean mask IoU by more than 0.002, or
flips a gate / query decision that the floor keeps (:data:`RULE`).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from actionvos.calibration.common import (
    SEGMENTER_FILE,
    TEXT_FILE,
    GraphDir,
    atomic_dir,
    check_out_dir,
    load_graph_dir,
    metadata_props,
    require_ort_runnable,
    write_precision_metadata,
)
from actionvos.calibration.data import CalibrationData, check_compatible, load_calibration
from actionvos.errors import ConfigError

__all__ = [
    "GROUPS",
    "DEFAULT_KEEP_FP32",
    "node_groups",
    "convert_fp16",
    "measure_sensitivity",
    "convert_dir_fp16",
]

log = logging.getLogger(__name__)

GROUPS = ("msda_sampling_offsets", "msda_attention_weights", "msda_sampling", "softmax_attention", "layer_norm",
          "group_norm", "positive_head", "box_refinement", "mask_head")
#: Groups kept in FP32 when no measurement is run (the usual suspects of deformable-attention models).
DEFAULT_KEEP_FP32 = ("msda_sampling_offsets", "msda_attention_weights", "msda_sampling", "softmax_attention",
                     "layer_norm", "positive_head", "box_refinement")
PLUGIN_OP = "ActionVOS_MSDeformAttn"
RULE = ("keep a group in FP32 when converting it alone (others FP32) adds >= 25% of the all-fp16 score gap and "
        "> 1.2x the floor score, lowers mean mask IoU by > 0.002, or flips a gate/query decision the floor keeps")
_SCORE_OUTPUTS = ("pred_logits", "pred_boxes", "pred_masks", "pred_positives", "text_word", "text_sentence")


def _producers(model) -> dict[str, Any]:
    return {o: n for n in model.graph.node for o in n.output}


def _consumers(model) -> dict[str, list]:
    out: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def node_groups(model) -> dict[str, set[str]]:
    """Node names of every group in :data:`GROUPS` for one graph (``text_encoder`` or ``segmenter``, FP32).

    Groups are found from the TorchScript exporter's scoped node names (``/transformer/encoder/layers.0/self_attn/
    sampling_offsets/MatMul``) and, where names are not scoped, from graph patterns (``Log`` of ``inverse_sigmoid``
    and its producers; ``Einsum`` chains of the mask head). Empty groups are included.
    """
    nodes = list(model.graph.node)
    groups: dict[str, set[str]] = {g: set() for g in GROUPS}
    scopes = sorted({n.name.split("sampling_offsets/")[0] for n in nodes if "/sampling_offsets/" in n.name})
    prod, cons = _producers(model), _consumers(model)

    def in_msda(name: str) -> str | None:
        return next((s for s in scopes if name.startswith(s)), None)

    for n in nodes:
        s = in_msda(n.name)
        if n.op_type == PLUGIN_OP:
            groups["msda_sampling"].add(n.name)
        elif s is not None:
            rest = n.name[len(s):]
            if rest.startswith("sampling_offsets/"):
                groups["msda_sampling_offsets"].add(n.name)
            elif rest.startswith("attention_weights/") or n.op_type == "Softmax":
                groups["msda_attention_weights"].add(n.name)
            elif not rest.startswith(("value_proj/", "output_proj/")):
                groups["msda_sampling"].add(n.name)
        elif n.op_type == "Softmax":
            groups["softmax_attention"].add(n.name)
        if n.op_type == "LayerNormalization":
            groups["layer_norm"].add(n.name)
        elif n.op_type == "InstanceNormalization":
            groups["group_norm"].add(n.name)
        if "positive_cls_embed" in n.name:
            groups["positive_head"].add(n.name)
            for i in n.input:  # the query mean feeding the head (ReduceMean, possibly through a Reshape)
                p = prod.get(i)
                for _ in range(3):
                    if p is None or p.op_type not in ("ReduceMean", "Reshape", "Flatten"):
                        break
                    groups["positive_head"].add(p.name)
                    p = prod.get(p.input[0])
        if "bbox_embed" in n.name:
            groups["box_refinement"].add(n.name)
        if "/controller/" in n.name:
            groups["mask_head"].add(n.name)
    for n in nodes:
        if n.op_type == "Log" and in_msda(n.name) is None:  # inverse_sigmoid: log(clamp(x) / clamp(1 - x))
            groups["box_refinement"].add(n.name)
            stack = [n]
            while stack:
                cur = stack.pop()
                for i in cur.input:
                    p = prod.get(i)
                    if p is not None and p.op_type in ("Div", "Clip", "Sub") and p.name not in groups["box_refinement"]:
                        groups["box_refinement"].add(p.name)
                        stack.append(p)
            for c in cons.get(n.output[0], []):  # tmp + inverse_sigmoid(reference), then .sigmoid()
                if c.op_type in ("Add", "Concat"):
                    groups["box_refinement"].add(c.name)
                    for c2 in cons.get(c.output[0], []):
                        if c2.op_type in ("Sigmoid", "Concat"):
                            groups["box_refinement"].add(c2.name)
        if n.op_type == "Einsum":  # dynamic mask head convs: Einsum -> Add -> Relu -> Einsum ...
            stack = [n]
            while stack:
                cur = stack.pop()
                groups["mask_head"].add(cur.name)
                for c in cons.get(cur.output[0], []):
                    if c.op_type in ("Add", "Relu", "Einsum") and c.name not in groups["mask_head"]:
                        stack.append(c)
    return groups


def _always_fp32(model) -> set[str]:
    """Nodes the converter must leave in FP32 whatever the measurement says (see the module docstring)."""
    keep = set()
    for n in model.graph.node:
        if n.op_type == "Cast" and any(a.name == "to" and a.i == 1 for a in n.attribute):
            keep.add(n.name)
        if n.op_type == PLUGIN_OP:
            keep.add(n.name)
    return keep


def _ensure_names(model) -> None:
    """Give unnamed nodes unique names (the converter's node block list matches by name)."""
    seen = set()
    for i, n in enumerate(model.graph.node):
        if not n.name or n.name in seen:
            n.name = f"{n.op_type}_unnamed_{i}"
        seen.add(n.name)


def _unshare_initializers(model, block: set[str]) -> None:
    """Give FP32-kept nodes their own copy of float initializers they share with converted nodes (in place).

    The exporter deduplicates equal constants (e.g. zero biases), and the converter keeps an initializer FP32 as soon
    as one blocked node reads it, which would leave converted readers with an FP32 input.
    """
    from onnx import TensorProto

    inits = {i.name: i for i in model.graph.initializer if i.data_type == TensorProto.FLOAT}
    readers: dict[str, list] = {}
    for n in model.graph.node:
        for i in set(n.input):
            if i in inits:
                readers.setdefault(i, []).append(n)
    for name, nodes in readers.items():
        blocked = [n for n in nodes if n.name in block]
        if blocked and len(blocked) < len(nodes):
            copy = model.graph.initializer.add()
            copy.CopyFrom(inits[name])
            copy.name = f"{name}__fp32"
            for n in blocked:
                for k, i in enumerate(n.input):
                    if i == name:
                        n.input[k] = copy.name


def convert_fp16(model, keep_groups: Sequence[str], groups: dict[str, set[str]] | None = None,
                 shape_inferred: bool = False):
    """Convert one FP32 ModelProto to FP16, keeping ``keep_groups`` (and the always-FP32 ops) in FP32.

    Args:
        model: FP32 ``onnx.ModelProto`` (not modified; a copy is converted).
        keep_groups: names from :data:`GROUPS`.
        groups: :func:`node_groups` of ``model`` (computed when None).
        shape_inferred: ``model`` already went through ``onnx.shape_inference.infer_shapes`` (skips it).
    Returns:
        The FP16 ``ModelProto`` (inputs/outputs keep their FP32 / integer / bool types).
    Raises:
        ConfigError: an unknown group name.
    """
    import onnx
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    unknown = sorted(set(keep_groups) - set(GROUPS))
    if unknown:
        raise ConfigError(f"unknown FP32 group(s) {unknown}; choose from {list(GROUPS)}")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    _ensure_names(m)
    if groups is None:
        groups = node_groups(m)
    block = set(_always_fp32(m))
    for g in keep_groups:
        block |= groups.get(g, set())
    _unshare_initializers(m, block)
    io_types = {v.name: v.type.tensor_type.elem_type for v in list(m.graph.input) + list(m.graph.output)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the float32 number X will be truncated to 1e-07" per constant
        out = convert_float_to_float16(m, keep_io_types=True, disable_shape_infer=shape_inferred,
                                       op_block_list=list(DEFAULT_OP_BLOCK_LIST), node_block_list=sorted(block))
    _restore_output_types(out, io_types)
    return out


def _restore_output_types(model, io_types: dict[str, int]) -> None:
    """Cast graph outputs back to their FP32 type (in place).

    With ``keep_io_types=True`` the converter still re-types a graph output to float16 when the node producing it
    is in the block list (its cast-after-node step rewrites the output's type before the I/O step runs).
    """
    from onnx import TensorProto, helper

    producers = {o: n for n in model.graph.node for o in n.output}
    for v in model.graph.output:
        want = io_types.get(v.name)
        if want == TensorProto.FLOAT and v.type.tensor_type.elem_type == TensorProto.FLOAT16:
            node = producers[v.name]
            inner = f"{v.name}__fp16"
            node.output[list(node.output).index(v.name)] = inner
            model.graph.node.append(helper.make_node("Cast", [inner], [v.name], name=f"{v.name}__to_fp32",
                                                     to=TensorProto.FLOAT))
            v.type.tensor_type.elem_type = TensorProto.FLOAT


class _Converter:
    """Caches the shape-inferred FP32 graphs, their groups and converted bytes per kept-group set."""

    def __init__(self, graphs: GraphDir):
        import onnx

        self.models = {}
        self.groups = {}
        for role, path in (("text", graphs.text), ("seg", graphs.segmenter)):
            m = onnx.load(str(path))
            _ensure_names(m)
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
                        converter: _Converter | None = None) -> dict[str, Any]:
    """Measure which node groups must stay FP32 (see the module docstring for configurations and rule).

    Args:
        graphs: the FP32 export directory (``--msda onnx``: ONNX Runtime CPU runs it).
        data: calibration clips (use a few: every configuration runs all of them).
        candidates: groups to measure (default: every group present in the graphs).
        threads: ORT threads. progress: progress bars.
        ref_run: FP32 outputs on ``data`` when already computed (:func:`~actionvos.calibration.report.run_graphs`).
    Returns:
        JSON-able dict: ``clips``, ``rule``, ``rows`` (config, fp32_groups, score, metrics), ``kept_fp32``,
        ``decisions`` (group → {keep, why}), ``seconds``.
    Raises:
        ConfigError: plugin graphs (ORT cannot run them) or unknown group names.
    """
    from actionvos.calibration.report import compare_runs, run_graphs

    require_ort_runnable(graphs, "the FP16 sensitivity measurement")
    t_start = time.perf_counter()
    conv = converter or _Converter(graphs)
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

    rows = [evaluate("all-fp16", []), evaluate("all-groups-fp32", cands)]
    floor = rows[1]
    decisions = {}
    for g in cands:
        row = evaluate(f"fp16:{g}", [c for c in cands if c != g])
        rows.append(row)
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


def convert_dir_fp16(onnx_dir: str | os.PathLike, out: str | os.PathLike, *, data: str | os.PathLike | None = None,
                     keep_fp32: Sequence[str] | None = None, measure: bool = True, measure_clips: int = 8,
                     report_clips: int | None = None, force: bool = False, threads: int = 2,
                     progress: bool = False) -> dict[str, Any]:
    """Library form of ``actionvos calibrate fp16``: measure (optional), convert both graphs, write, report.

    Args:
        onnx_dir: FP32 export directory. out: directory to write (``text_encoder.onnx``, ``segmenter.onnx``,
            ``export_manifest.json`` copied, ``fp16_sensitivity.json``, ``accuracy_report.json``/``.md``).
        data: calibration ``.npz`` (needed for the measurement and the report).
        keep_fp32: groups to keep in FP32 without measuring (overrides ``measure``).
        measure: run :func:`measure_sensitivity` on ``measure_clips`` clips of ``data`` (needs ``data``).
        report_clips: clips of ``data`` for the accuracy report (default all).
        force: replace a non-empty ``out``.
    Returns:
        ``{"kept_fp32": [...], "sensitivity": {...} | None, "report": {...} | None, "out": str}``.
    Raises:
        ConfigError: measurement requested without ``data``, plugin graphs with measurement, unknown groups.
        InputError: unusable directories, data of another model/size, ``out`` not writable.
    """
    import onnx

    from actionvos.calibration.report import build_report, run_graphs, write_report
    from actionvos.io_utils import atomic_write_json

    if keep_fp32 is not None and sorted(set(keep_fp32) - set(GROUPS)):
        raise ConfigError(f"unknown --keep-fp32 group(s) {sorted(set(keep_fp32) - set(GROUPS))}; choose from {list(GROUPS)}")
    graphs = load_graph_dir(onnx_dir)
    out = Path(out)
    check_out_dir(out, force, [graphs.path])
    if graphs.precision != "fp32":
        raise ConfigError(f"--onnx {str(graphs.path)!r} holds {graphs.precision} graphs; convert the FP32 export")
    cal = None
    if data is not None:
        cal = load_calibration(data)
        check_compatible(cal, graphs)
    if keep_fp32 is not None:
        measure = False
    if measure and cal is None:
        raise ConfigError("the FP16 sensitivity measurement needs --data calib.npz (or pass --keep-fp32 GROUPS / --no-measure)")
    conv = _Converter(graphs)
    sens = None
    if measure:
        sens = measure_sensitivity(graphs, cal.spread(measure_clips), threads=threads, progress=progress, converter=conv)
        kept = sens["kept_fp32"]
    else:
        kept = list(keep_fp32) if keep_fp32 is not None else [g for g in DEFAULT_KEEP_FP32 if g in conv.present()]
        unknown = sorted(set(kept) - set(GROUPS))
        if unknown:
            raise ConfigError(f"unknown --keep-fp32 group(s) {unknown}; choose from {list(GROUPS)}")
    record = {"precision": "fp16", "source_model_hash": graphs.model_hash, "source_dir": str(graphs.path),
              "converter": _converter_version(), "keep_io_types": True, "kept_fp32": kept,
              "always_fp32": "converter default op block list, Cast(to=float) nodes, TensorRT MSDA plugin node",
              "measured": sens is not None}
    report = None
    with atomic_dir(out) as tmp:
        for role, fname in (("text", TEXT_FILE), ("seg", SEGMENTER_FILE)):
            model = onnx.load_from_string(conv.convert(role, kept))
            write_precision_metadata(model, "fp16", record, metadata_props(graphs.path / fname))
            onnx.save(model, str(tmp / fname))
            onnx.checker.check_model(str(tmp / fname))
        manifest = graphs.path / "export_manifest.json"
        if manifest.is_file():
            (tmp / "export_manifest.json").write_bytes(manifest.read_bytes())
        if sens is not None:
            atomic_write_json(tmp / "fp16_sensitivity.json", sens)
        if cal is not None:
            sub = cal.spread(report_clips)
            cand = load_graph_dir(tmp, "--out")
            ref_run = run_graphs(graphs.text, graphs.segmenter, sub, threads, progress, "fp32")
            from actionvos.calibration.report import _weights_note

            report = build_report(graphs, {"fp16": cand}, sub, threads=threads, progress=progress,
                                  ref_run=ref_run, extra={"sensitivity": sens} if sens else None,
                                  weights_note=_weights_note(graphs))
            report["candidates"]["fp16"]["dir"] = str(out)
            write_report(report, tmp / "accuracy_report.json", tmp / "accuracy_report.md")
    log.info("wrote FP16 graphs to %s (FP32 groups: %s)", out, ", ".join(kept) or "none")
    return {"kept_fp32": kept, "sensitivity": sens, "report": report, "out": str(out)}


def _converter_version() -> str:
    try:
        from importlib.metadata import version

        return f"onnxconverter-common {version('onnxconverter-common')} convert_float_to_float16"
    except Exception:  # pragma: no cover - metadata missing
        return "onnxconverter-common convert_float_to_float16"
