"""INT8 graphs with explicit Q/DQ nodes (``onnxruntime.quantization.quantize_static``, ``QuantFormat.QDQ``).

TensorRT 11 has no INT8 calibrators: the scales live in the graph as ``QuantizeLinear``/``DequantizeLinear`` pairs
and a *strongly typed* TensorRT network follows them (built by :mod:`actionvos.export.tensorrt_engine`). The same
graph runs in ONNX Runtime CPU, which is how the accuracy report measures it here.

Settings (TensorRT's explicit-quantization conventions):

* weights int8, symmetric, per output channel (``per_channel=True``; MatMul weights on axis 1);
* activations int8, symmetric (zero point 0), scales from a calibrator over the stored real clips:
  ``entropy`` (KL divergence over a 2048-bin histogram with 128 quantized bins, TensorRT's settings;
  ``CalibrationMethod.Entropy``), ``percentile`` (99.999th of a 2048-bin histogram, ``CalibrationMethod.Percentile``)
  or ``minmax`` (``CalibrationMethod.MinMax``); the ranges are written beside the graphs
  (``segmenter.ranges.json``, ``text_encoder.ranges.json``) and read by ``quantize_static`` as its calibration cache;
* only ``Conv``, ``MatMul`` and ``Gemm`` are quantized (``op_types_to_quantize``; TensorRT fuses the rest around them);
* excluded (``nodes_to_exclude``, kept FP32): the MSDA groups (sampling offsets, attention weights + softmax, the
  sampling itself: GridSample decomposition or the custom op), the positive head, the box refinement and the
  dynamic mask head's controller (:data:`DEFAULT_EXCLUDE`, measured; groups as in
  :func:`actionvos.calibration.fp16.node_groups`).

The segmenter is calibrated with the stored clips and the stored FP32 text features (what the runtime feeds it);
the text encoder with the stored token ids.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

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
from actionvos.calibration.data import CalibrationData, check_compatible, load_calibration
from actionvos.calibration.fp16 import GROUPS, node_groups
from actionvos.errors import ConfigError

__all__ = ["METHODS", "DEFAULT_EXCLUDE", "DEFAULT_OP_TYPES", "SegmenterReader", "TextReader", "quantize_graph",
           "quantize_dir_int8", "build_int8_engines"]

log = logging.getLogger(__name__)

METHODS = ("entropy", "percentile", "minmax")
#: Measured on the demo model (percentile, 72 real clips): quantizing everything drops the positive-gate agreement
#: to 0.967; keeping the positive head + box refinement FP32 gives 0.984, adding the MSDA groups 0.989; keeping the
#: mask head FP32 as well cuts the mask-logit error by a third (mean 0.79 -> 0.53, mask IoU 0.9903 -> 0.9910).
DEFAULT_EXCLUDE = ("msda_sampling_offsets", "msda_attention_weights", "msda_sampling", "positive_head", "box_refinement",
                   "mask_head")
DEFAULT_OP_TYPES = ("Conv", "MatMul", "Gemm")


def _reader_base():
    from onnxruntime.quantization import CalibrationDataReader

    return CalibrationDataReader


def _uniform_sets(data: CalibrationData) -> list[dict[str, np.ndarray]]:
    """Every prompt set padded to the largest P and L of the file (ORT's histogram calibrators stack each tensor
    over the batches, so all batches need one shape).

    Tokens are right-padded with the pad id and ``attention_mask`` 0, text features with zeros and ``text_mask``
    True, exactly as the runtime concatenates prompt sets (:meth:`actionvos.runtime.prompt_cache.TextArrays.cat`);
    masked positions do not change the other positions' values. Missing prompts repeat the set's prompts in order.
    """
    P = max(len(s.texts) for s in data.sets)
    L = max(s.input_ids.shape[1] for s in data.sets)
    out = []
    for s in data.sets:
        rows = [i % len(s.texts) for i in range(P)]
        p_, l_ = s.input_ids.shape
        ids = np.ones((P, L), np.int64)  # RoBERTa pad id 1
        am = np.zeros((P, L), np.int64)
        word = np.zeros((P, L, s.text_word.shape[-1]), np.float32)
        tmask = np.ones((P, L), bool)
        ids[:, :l_], am[:, :l_] = s.input_ids[rows], s.attention_mask[rows]
        word[:, :l_], tmask[:, :l_] = s.text_word[rows], s.text_mask[rows]
        out.append({"input_ids": ids, "attention_mask": am, "text_word": word, "text_mask": tmask,
                    "text_sentence": s.text_sentence[rows].astype(np.float32)})
    return out


class SegmenterReader(_reader_base()):
    """``CalibrationDataReader`` over the stored clips: ``frames [T, 3, H, W]`` uint8 + the clip's FP32 text
    features, padded to one P and L for the whole file (:func:`_uniform_sets`)."""

    def __init__(self, data: CalibrationData):
        self.data = data
        self.sets = _uniform_sets(data)
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.data):
            return None
        s = self.sets[int(self.data.prompt_set[self.i])]
        feed = self.data.segmenter_feed(self.i, {k: s[k] for k in ("text_word", "text_mask", "text_sentence")})
        self.i += 1
        return feed

    def rewind(self) -> None:
        self.i = 0


class TextReader(_reader_base()):
    """``CalibrationDataReader`` over the stored prompt sets: ``input_ids`` / ``attention_mask`` ``[P, L]`` int64
    (padded to one P and L, :func:`_uniform_sets`)."""

    def __init__(self, data: CalibrationData):
        self.sets = _uniform_sets(data)
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.sets):
            return None
        s = self.sets[self.i]
        self.i += 1
        return {"input_ids": s["input_ids"], "attention_mask": s["attention_mask"]}

    def rewind(self) -> None:
        self.i = 0


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
             "minmax": CalibrationMethod.MinMax}
    if name not in table:
        raise ConfigError(f"unknown --method {name!r}; choose one of {list(METHODS)}")
    return table[name]


def quantize_graph(src: Path, dst: Path, reader, method: str, exclude_groups: Sequence[str],
                   op_types: Sequence[str] = DEFAULT_OP_TYPES, percentile: float = 99.999,
                   bins: int = 2048) -> dict[str, Any]:
    """Quantize one FP32 graph to Q/DQ INT8.

    Args:
        src: FP32 ``.onnx``. dst: where to write the Q/DQ ``.onnx``.
        reader: a ``CalibrationDataReader`` (:class:`SegmenterReader` / :class:`TextReader`).
        method: ``entropy``, ``percentile`` or ``minmax``.
        exclude_groups: :data:`~actionvos.calibration.fp16.GROUPS` whose nodes stay FP32.
        op_types: op types to quantize.
        percentile: the percentile of the ``percentile`` method.
        bins: histogram bins of ``entropy`` / ``percentile`` (2048 as TensorRT; ORT's KL search is pure numpy and
            takes ~1 s per tensor at 2048 bins, ~4 min for the segmenter on 2 cores; 512 is ~5x faster).
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
    # 128 quantized bins) leave the KL search a single candidate, i.e. the max (entropy == minmax). The ranges are
    # computed here with ORT's own calibrator and TensorRT's entropy settings (2048 bins, 128 quantized bins), saved
    # with save_tensors_data, and quantize_static reads them through calibration_cache_path.
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calib_opts: dict[str, Any] = {"symmetric": True}
    if method == "entropy":
        calib_opts.update(num_bins=int(bins), num_quantized_bins=128)
    elif method == "percentile":
        calib_opts.update(num_bins=int(bins), percentile=percentile)
    with tempfile.TemporaryDirectory(prefix="actionvos-int8-") as work:
        # the calibrators write augmented copies of the model; keep them out of the result
        work = Path(work)
        calibrator = create_calibrator(Path(src), list(op_types), augmented_model_path=str(work / "augmented.onnx"),
                                       calibrate_method=calib, extra_options=calib_opts)
        calibrator.collect_data(reader)
        ranges = calibrator.compute_data()
        del calibrator
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
                      progress: bool = False, bins: int = 2048) -> dict[str, Any]:
    """Library form of ``actionvos calibrate int8``: quantize both graphs, write the directory, report.

    Args:
        onnx_dir: FP32 export directory exported with ``--msda onnx`` (ONNX Runtime runs the calibration).
        data: calibration ``.npz`` of this model and input size.
        out: directory to write (``text_encoder.onnx`` + ``segmenter.onnx`` with Q/DQ, ``export_manifest.json``,
            ``accuracy_report.json``/``.md``).
        method: ``percentile`` (default) | ``entropy`` | ``minmax``; on the demo model entropy clipped the heavy
            tails of the mask features and lost mask IoU (0.956 vs 0.990 percentile / 0.989 minmax on real clips).
        exclude: groups kept FP32 (default :data:`DEFAULT_EXCLUDE`).
        op_types: op types to quantize. calib_clips: clips used for calibration (default all, evenly spread).
        report_clips: clips for the report (default all). report: write the accuracy report.
        bins: histogram bins of the entropy / percentile calibrators (>= 256; see :func:`quantize_graph`).
        force: replace a non-empty ``out``.
    Returns:
        ``{"out", "method", "segmenter": {...}, "text_encoder": {...}, "report": {...} | None}``.
    Raises:
        ConfigError: unknown method/group, plugin graphs, non-FP32 input.
        InputError: unusable directory/data, data of another model or size, ``out`` not writable.
    """
    import onnx

    from actionvos.calibration.report import _weights_note, build_report, write_report

    _method(method)
    if bins < 256:
        raise ConfigError(f"--bins must be >= 256 (128 quantized bins need a larger histogram), got {bins}")
    graphs = load_graph_dir(onnx_dir)
    require_ort_runnable(graphs, "INT8 calibration")
    if graphs.precision != "fp32":
        raise ConfigError(f"--onnx {str(graphs.path)!r} holds {graphs.precision} graphs; quantize the FP32 export")
    out = Path(out)
    check_out_dir(out, force, [graphs.path])
    cal = load_calibration(data)
    check_compatible(cal, graphs)
    exclude = list(DEFAULT_EXCLUDE if exclude is None else exclude)
    sub = cal.spread(calib_clips)
    result: dict[str, Any] = {"out": str(out), "method": method}
    record = {"precision": "int8", "source_model_hash": graphs.model_hash, "source_dir": str(graphs.path),
              "method": method, "quant_format": "QDQ", "per_channel": True, "activations": "int8 symmetric",
              "weights": "int8 symmetric per-channel", "op_types": list(op_types), "excluded_groups": exclude,
              "calibration_clips": len(sub), "histogram_bins": bins if method != "minmax" else None,
              "calibration_data": str(cal.path),
              "calibration_prompt_sets": len(sub.sets)}
    rep = None
    with atomic_dir(out) as tmp:
        result["segmenter"] = quantize_graph(graphs.segmenter, tmp / SEGMENTER_FILE, SegmenterReader(sub), method,
                                             exclude, op_types, bins=bins)
        log.info("segmenter quantized (%s): %s", method, result["segmenter"])
        result["text_encoder"] = quantize_graph(graphs.text, tmp / TEXT_FILE, TextReader(sub), method, exclude, op_types,
                                                bins=bins)
        log.info("text encoder quantized (%s): %s", method, result["text_encoder"])
        for fname in (SEGMENTER_FILE, TEXT_FILE):
            m = onnx.load(str(tmp / fname))
            write_precision_metadata(m, "int8", record, metadata_props(graphs.path / fname))
            onnx.save(m, str(tmp / fname))
            onnx.checker.check_model(str(tmp / fname))
        manifest = graphs.path / "export_manifest.json"
        if manifest.is_file():
            (tmp / "export_manifest.json").write_bytes(manifest.read_bytes())
        if report:
            cand = load_graph_dir(tmp, "--out")
            rep = build_report(graphs, {"int8": cand}, cal.spread(report_clips), threads=threads, progress=progress,
                               weights_note=_weights_note(graphs))
            rep["candidates"]["int8"]["dir"] = str(out)
            write_report(rep, tmp / "accuracy_report.json", tmp / "accuracy_report.md")
    result["report"] = rep
    return result


def build_int8_engines(int8_dir: str | os.PathLike, *, plugin_library: str | None = None,
                       timing_cache: str | None = None) -> dict[str, Path]:
    """Build TensorRT engines from the Q/DQ (or FP16) graphs of ``int8_dir`` (``{role}.engine`` beside them).

    All TensorRT API use is in :mod:`actionvos.export.tensorrt_engine`, whose ``build_engine`` creates *strongly
    typed* networks (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``): the engine follows the graph's Q/DQ nodes and
    casts (TensorRT 10.12+ has no INT8/FP16 builder flags, 11 no calibrators). ``strongly_typed=True`` is passed
    when that function takes the option.

    Raises:
        ConfigError: tensorrt or a GPU is missing, or the build failed (message from the engine module).
    """
    import inspect

    try:
        from actionvos.export import tensorrt_engine
    except ImportError as err:
        raise ConfigError(f"TensorRT engine builds need actionvos.export.tensorrt_engine and tensorrt ({err}); "
                          "run this on a machine with an NVIDIA GPU and pip install tensorrt") from None
    build = tensorrt_engine.build_engine
    extra = {"strongly_typed": True} if "strongly_typed" in inspect.signature(build).parameters else {}
    g = load_graph_dir(int8_dir)
    engines = {}
    for role, path in (("text_encoder", g.text), ("segmenter", g.segmenter)):
        dst = g.path / f"{role}.engine"
        build(path, dst, g.spec(role), fp16=False, plugin_library=plugin_library,
              timing_cache=Path(timing_cache) if timing_cache else g.path / "timing.cache",
              checkpoint_sha256=g.meta.get("checkpoint_sha256", ""), use_plugin=g.msda == "plugin", **extra)
        engines[role] = dst
    return engines
