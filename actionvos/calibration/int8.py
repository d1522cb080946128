"""INT8 graphs with explicit Q/DQ nodes (``onnxruntime.quantization.quantize_static``, ``QuantFormat.QDQ``).

TensorRT 11 has no INT8 calibrators: the scales live in the graph as ``QuantizeLinear``/``DequantizeLinear`` pairs
and a *strongly typed* TensorRT network follows them (built by :func:`actionvos.trt_api.build_engine`). The same
graph runs in ONNX Runtime CPU, which is how the accuracy report measures it here.

Settings (TensorRT's explicit-quantization conventions):

* weights int8, symmetric, per output channel (``per_channel=True``; MatMul weights on axis 1);
* activations int8, symmetric (zero point 0), scales from a calibrator over the stored real clips, streamed one clip
  at a time so memory does not grow with their number (:mod:`~actionvos.calibration.int8_calibrators`):
  ``entropy`` (KL divergence over a 2048-bin histogram with 128 quantized bins, TensorRT's settings;
  ``CalibrationMethod.Entropy``), ``percentile`` (99.999th of a 2048-bin histogram, ``CalibrationMethod.Percentile``)
  or ``minmax`` (``CalibrationMethod.MinMax``); the ranges are written beside the graphs
  (``segmenter.ranges.json``, ``text_encoder.ranges.json``) and read by ``quantize_static`` as its calibration cache;
* only ``Conv``, ``MatMul`` and ``Gemm`` are quantized (``op_types_to_quantize``; TensorRT fuses the rest around them);
* excluded (``nodes_to_exclude``, kept FP32): the MSDA groups (sampling offsets, attention weights + softmax, the
  sampling itself: GridSample decomposition or the custom op), the positive head, the box refinement and the
  dynamic mask head's controller (:data:`DEFAULT_EXCLUDE`, measured; groups as in
  :func:`actionvos.precision.groups.node_groups`).
* held out: every ``round(1 / holdout)``-th clip of ``--data`` (default every 4th) is never used for calibration, so
  the accuracy report (built in, or ``calibrate report`` on the same file) evaluates on clips the calibration did not
  see; the clips used are recorded in the graphs (``calibration_frames`` of the ``actionvos.calibration`` record).

The segmenter is calibrated with the stored clips and the stored FP32 text features (what the runtime feeds it);
the text encoder with the stored token ids; when the export folder has the clip rule's graphs, the frame encoder
with every frame of the clips and the window decoder with the FP32 frame encoder's features of each clip.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from actionvos.calibration.common import (
    SEGMENTER_FILE,
    TEXT_FILE,
    atomic_dir,
    check_out_dir,
    load_graph_dir,
    metadata_props,
    require_ort_runnable,
    write_precision_metadata,
)
from actionvos.calibration.clips import DEFAULT_HOLDOUT, check_compatible
from actionvos.calibration.int8_calibrators import METHODS, _method, compute_ranges
from actionvos.calibration.int8_readers import FrameEncoderReader, SegmenterReader, TextReader, WindowDecoderReader
from actionvos.calibration.model_facts import derived_card_files
from actionvos.calibration.npz_store import load_calibration
from actionvos.errors import ConfigError
from actionvos.precision.groups import GROUPS, node_groups

__all__ = ["METHODS", "DEFAULT_EXCLUDE", "DEFAULT_OP_TYPES", "DEFAULT_HOLDOUT", "SegmenterReader", "TextReader",
           "quantize_graph", "quantize_dir_int8", "build_int8_engines"]

log = logging.getLogger(__name__)

#: Measured on the demo model (percentile, 72 real clips): quantizing everything drops the positive-gate agreement
#: to 0.967; keeping the positive head + box refinement FP32 gives 0.984, adding the MSDA groups 0.989; keeping the
#: mask head FP32 as well cuts the mask-logit error by a third (mean 0.79 -> 0.53, mask IoU 0.9903 -> 0.9910).
DEFAULT_EXCLUDE = ("msda_sampling_offsets", "msda_attention_weights", "msda_sampling", "positive_head", "box_refinement",
                   "mask_head")
DEFAULT_OP_TYPES = ("Conv", "MatMul", "Gemm")
#: the clip rule's graphs of an export folder: the frame encoder is calibrated on every frame of the clips, the
#: window decoder on the FP32 frame encoder's features of each clip (:mod:`~actionvos.calibration.int8_readers`)
FRAME_ENCODER_FILE = "frame_encoder.onnx"
WINDOW_DECODER_FILE = "window_decoder.onnx"


def quantize_graph(src: Path, dst: Path, reader, method: str, exclude_groups: Sequence[str],
                   op_types: Sequence[str] = DEFAULT_OP_TYPES, percentile: float = 99.999,
                   bins: int = 2048, progress: bool = False) -> dict[str, Any]:
    """Quantize one FP32 graph to Q/DQ INT8.

    Args:
        src: FP32 ``.onnx``. dst: where to write the Q/DQ ``.onnx``.
        reader: a ``CalibrationDataReader`` (:class:`SegmenterReader` / :class:`TextReader`).
        method: ``entropy``, ``percentile`` or ``minmax``.
        exclude_groups: :data:`~actionvos.precision.groups.GROUPS` whose nodes stay FP32.
        op_types: op types to quantize.
        percentile: the percentile of the ``percentile`` method.
        bins: histogram bins of ``entropy`` / ``percentile`` (2048 as TensorRT; ORT's KL search is pure numpy and
            takes ~1 s per tensor at 2048 bins, ~4 min for the segmenter on 2 cores; 512 is ~5x faster).
        progress: progress bars over the calibration clips.
    Returns:
        ``{"excluded_nodes": int, "quantize_linear_nodes": int, "seconds": float}``; the activation ranges are
        kept beside ``dst`` as ``{stem}.ranges.json`` (ORT ``save_tensors_data`` format).
    Raises:
        ConfigError: unknown method or group.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    unknown = sorted(set(exclude_groups) - set(GROUPS))
    if unknown:
        raise ConfigError(f"unknown --exclude group(s) {unknown}; choose from {list(GROUPS)}")
    calib = _method(method)
    model = onnx.load(str(src))
    groups = node_groups(model)
    exclude = sorted({n for g in exclude_groups for n in groups.get(g, ())})
    t0 = time.perf_counter()
    extra = {
        "ActivationSymmetric": True,  # TensorRT: zero points must be 0
        "WeightSymmetric": True,
        "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
        "ForceQuantizeNoInputCheck": False,
    }
    # quantize_static cannot pass the histogram sizes to its calibrators, and ORT's entropy defaults (128 bins,
    # 128 quantized bins) leave the KL search a single candidate, i.e. the max (entropy == minmax); its calibrators
    # also keep every clip's activations (memory grows with the clips). The ranges are computed here by streaming the
    # clips through ORT's augmented model (int8_calibrators), saved with save_tensors_data, and quantize_static reads
    # them through calibration_cache_path.
    from onnxruntime.quantization.calibrate import save_tensors_data

    with tempfile.TemporaryDirectory(prefix="actionvos-int8-") as work:
        # the calibrators write augmented copies of the model; keep them out of the result
        work = Path(work)
        ranges = compute_ranges(Path(src), reader, method, op_types, work, bins=bins, percentile=percentile,
                                progress=progress, desc=f"int8 {Path(src).stem} {method}")
        cache = dst.with_suffix(".ranges.json")
        save_tensors_data(ranges, cache)
        tmp_out = work / dst.name
        quantize_static(str(src), str(tmp_out), None, quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types),
                        per_channel=True, reduce_range=False, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=exclude, calibrate_method=calib,
                        extra_options=extra, calibration_cache_path=str(cache))
        q = onnx.load(str(tmp_out))
    n_q = sum(1 for n in q.graph.node if n.op_type == "QuantizeLinear")
    write_precision_metadata(q, "int8", {}, metadata_props(src))  # replaced by the caller's record
    onnx.save(q, str(dst))
    return {"excluded_nodes": len(exclude), "quantize_linear_nodes": n_q, "seconds": round(time.perf_counter() - t0, 1)}


def quantize_dir_int8(onnx_dir: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike, *,
                      method: str = "percentile", exclude: Sequence[str] | None = None,
                      op_types: Sequence[str] = DEFAULT_OP_TYPES, calib_clips: int | None = None,
                      report_clips: int | None = None, report: bool = True, force: bool = False, threads: int = 2,
                      progress: bool = False, bins: int = 2048, holdout: float = DEFAULT_HOLDOUT) -> dict[str, Any]:
    """Library form of ``actionvos calibrate int8``: quantize both graphs, write the directory, report.

    Args:
        onnx_dir: FP32 export directory exported with ``--msda onnx`` (ONNX Runtime runs the calibration).
        data: calibration ``.npz`` of this model and input size (read lazily: one clip in memory at a time).
        out: directory to write (``text_encoder.onnx`` + ``segmenter.onnx`` and, when the export has them,
            ``frame_encoder.onnx`` + ``window_decoder.onnx`` with Q/DQ, ``*.ranges.json``, ``card.json`` (precision
            int8), ``tokenizer/``, ``export_manifest.json``, ``accuracy_report.json``/``.md`` and the worst-clip
            picture).
        method: ``percentile`` (default) | ``entropy`` | ``minmax``; on the demo model entropy clipped the heavy
            tails of the mask features and lost mask IoU (0.956 vs 0.990 percentile / 0.989 minmax on real clips).
        exclude: groups kept FP32 (default :data:`DEFAULT_EXCLUDE`).
        op_types: op types to quantize.
        calib_clips: clips used for calibration (default all that are not held out, evenly spread).
        report_clips: clips for the report (default all that the calibration did not use). report: write it.
        bins: histogram bins of the entropy / percentile calibrators (>= 256; see :func:`quantize_graph`).
        holdout: fraction of ``data``'s clips never used for calibration (every ``round(1/holdout)``-th clip), left for
            the report; 0 calibrates on every clip (then evaluate with another file).
        force: replace a non-empty ``out``.
    Returns:
        ``{"out", "method", "segmenter": {...}, "text_encoder": {...}, "report": {...} | None}``.
    Raises:
        ConfigError: unknown method/group, bad bins/holdout, plugin graphs, non-FP32 input.
        InputError: unusable directory/data, data of another model or size, ``out`` not writable, no clip left for
            the report.
    """
    import onnx

    from actionvos.calibration.report import build_report, weights_note, write_report

    _method(method)
    if bins < 256:
        raise ConfigError(f"--bins must be >= 256 (128 quantized bins need a larger histogram), got {bins}")
    graphs = load_graph_dir(onnx_dir)
    require_ort_runnable(graphs, "INT8 calibration")
    if graphs.precision != "fp32":
        raise ConfigError(f"--onnx {str(graphs.path)!r} holds {graphs.precision} graphs; quantize the FP32 export")
    out = Path(out)
    check_out_dir(out, force, [graphs.path])
    cal = load_calibration(data, lazy=True)
    check_compatible(cal, graphs)
    exclude = list(DEFAULT_EXCLUDE if exclude is None else exclude)
    pool, held = cal.split_holdout(holdout)
    sub = pool.spread(calib_clips)
    result: dict[str, Any] = {"out": str(out), "method": method}
    record = {"precision": "int8", "source_model_hash": graphs.model_hash, "source_dir": str(graphs.path),
              "method": method, "quant_format": "QDQ", "per_channel": True, "activations": "int8 symmetric",
              "weights": "int8 symmetric per-channel", "op_types": list(op_types), "excluded_groups": exclude,
              "calibration_clips": len(sub), "histogram_bins": bins if method != "minmax" else None,
              "calibration_data": str(cal.path), "holdout": holdout, "heldout_clips": len(held),
              "calibration_prompt_sets": len(sub.sets),
              "calibration_frames": sub.used_frames()}
    rep = None
    with atomic_dir(out) as tmp:
        result["segmenter"] = quantize_graph(graphs.segmenter, tmp / SEGMENTER_FILE, SegmenterReader(sub), method,
                                             exclude, op_types, bins=bins, progress=progress)
        log.info("segmenter quantized (%s): %s", method, result["segmenter"])
        result["text_encoder"] = quantize_graph(graphs.text, tmp / TEXT_FILE, TextReader(sub), method, exclude, op_types,
                                                bins=bins, progress=progress)
        log.info("text encoder quantized (%s): %s", method, result["text_encoder"])
        written = [SEGMENTER_FILE, TEXT_FILE]
        fe, wd = graphs.path / FRAME_ENCODER_FILE, graphs.path / WINDOW_DECODER_FILE
        if fe.is_file() and wd.is_file():  # the clip rule's graphs, calibrated on the same clips
            result["frame_encoder"] = quantize_graph(fe, tmp / FRAME_ENCODER_FILE, FrameEncoderReader(sub), method,
                                                     exclude, op_types, bins=bins, progress=progress)
            result["window_decoder"] = quantize_graph(wd, tmp / WINDOW_DECODER_FILE,
                                                      WindowDecoderReader(sub, fe, threads), method, exclude, op_types,
                                                      bins=bins, progress=progress)
            written += [FRAME_ENCODER_FILE, WINDOW_DECODER_FILE]
        for fname in written:
            m = onnx.load(str(tmp / fname))
            write_precision_metadata(m, "int8", record, metadata_props(graphs.path / fname))
            onnx.save(m, str(tmp / fname))
            onnx.checker.check_model(str(tmp / fname))
        manifest = graphs.path / "export_manifest.json"
        if manifest.is_file():
            (tmp / "export_manifest.json").write_bytes(manifest.read_bytes())
        derived_card_files(graphs.path, tmp, "int8")  # card.json (precision int8) + tokenizer/
        if report:
            cand = load_graph_dir(tmp, "--out")
            rep = build_report(graphs, {"int8": cand}, cal, threads=threads, progress=progress,
                               weights_note=weights_note(graphs), max_clips=report_clips, figures_dir=tmp,
                               figures_prefix="accuracy_report")
            rep["candidates"]["int8"]["dir"] = str(out)
            write_report(rep, tmp / "accuracy_report.json", tmp / "accuracy_report.md")
    result["report"] = rep
    return result


def build_int8_engines(int8_dir: str | os.PathLike, *, plugin_library: str | None = None,
                       timing_cache: str | None = None) -> dict[str, Path]:
    """Build TensorRT engines from the Q/DQ (or FP16) graphs of ``int8_dir`` (``{role}.engine`` beside them).

    All TensorRT API use is in :mod:`actionvos.trt_api`, whose ``build_engine`` creates *strongly
    typed* networks (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``): the engine follows the graph's Q/DQ nodes and
    casts (TensorRT 10.12+ has no INT8/FP16 builder flags, 11 no calibrators).

    Raises:
        ConfigError: tensorrt or a GPU is missing, or the build failed (message from the engine module).
    """
    from actionvos.trt_api import build_engine as build

    extra = {"strongly_typed": True}
    g = load_graph_dir(int8_dir)
    engines = {}
    for role, path in (("text_encoder", g.text), ("segmenter", g.segmenter)):
        dst = g.path / f"{role}.engine"
        build(path, dst, g.spec(role), fp16=False, plugin_library=plugin_library,
              timing_cache=Path(timing_cache) if timing_cache else g.path / "timing.cache",
              checkpoint_sha256=g.facts.checkpoint_sha256, use_plugin=g.msda == "plugin", **extra)
        engines[role] = dst
    return engines
