"""Activation ranges for INT8 with memory that does not grow with the number of calibration clips.

ONNX Runtime's calibrators (``onnxruntime.quantization.calibrate``, 1.18-1.32) keep the augmented model's outputs of
*every* batch until the end: ``HistogramCalibrater.collect_data`` (entropy, percentile) appends each batch's full
intermediate tensors to a list and builds the histograms from the whole list, so memory grows by the size of all
calibrated activations per clip (18 GB for 128 clips of the released model at 360×640). ``MinMaxCalibrater`` has an
``extra_options["max_intermediate_outputs"]`` bound (``CalibMaxIntermediateOutputs`` of ``quantize_static``), but in
ORT 1.32 reaching it *clears the collected outputs without merging them into the ranges* (calibrate.py,
``MinMaxCalibrater.collect_data``), i.e. it silently drops data, and the histogram calibrators have no bound at all.

So the clips are streamed here, one feed at a time, through the augmented model ORT's own ``create_calibrator``
builds, and only per-tensor summaries are kept; ORT's own code then turns them into ranges:

* ``minmax``: running element-wise ``fmin`` / ``fmax`` of the ``ReduceMin`` / ``ReduceMax`` outputs, handed to
  ``MinMaxCalibrater.compute_data`` as a single batch (same result as ORT on all batches at once).
* ``entropy`` / ``percentile``: two passes over the clips. Pass 1 keeps per tensor the min / max (and the min / max
  of ``|x|``); pass 2 adds each clip's ``np.histogram`` over that global range with ``num_bins`` bins. This is the
  histogram ORT builds from all clips at once (same range, same bins, counts summed), so
  ``HistogramCollector.compute_percentile`` / ``compute_entropy`` give ORT's thresholds exactly, while ORT's own
  incremental ``merge_histogram`` would change the bin count as the range grows. Cost: the clips run twice.

Peak memory: one clip's calibrated activations + ``num_bins`` counts per tensor + the model, whatever the clip count
(measured in benchmarks/RESULTS.md, "INT8 calibration memory").
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from actionvos.errors import ConfigError, InputError

__all__ = ["METHODS", "calibrator_options", "compute_ranges"]

METHODS = ("entropy", "percentile", "minmax")


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
             "minmax": CalibrationMethod.MinMax}
    if name not in table:
        raise ConfigError(f"unknown --method {name!r}; choose one of {list(METHODS)}")
    return table[name]


def calibrator_options(method: str, bins: int, percentile: float) -> dict[str, Any]:
    """``extra_options`` of ``create_calibrator``: symmetric activations (TensorRT: zero points 0); for entropy
    TensorRT's histogram settings (``bins`` bins, 128 quantized bins), for percentile ``bins`` bins and the
    ``percentile``."""
    opts: dict[str, Any] = {"symmetric": True}
    if method == "entropy":
        opts.update(num_bins=int(bins), num_quantized_bins=128)
    elif method == "percentile":
        opts.update(num_bins=int(bins), percentile=float(percentile))
    return opts


def _feeds(reader, progress: bool, desc: str) -> Iterator[dict[str, np.ndarray]]:
    """Every feed of ``reader`` from the start (rewinds first when it can), with an optional progress bar."""
    if hasattr(reader, "rewind"):
        reader.rewind()
    bar = None
    if progress:
        from tqdm import tqdm

        total = len(reader) if hasattr(reader, "__len__") else None
        bar = tqdm(total=total, desc=desc, unit="clip", leave=False)
    try:
        while True:
            feed = reader.get_next()
            if not feed:
                return
            yield feed
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def _run(sess, feed) -> list[np.ndarray]:
    try:
        return sess.run(None, feed)
    except Exception as err:  # onnxruntime's InvalidArgument / Fail for a feed that does not fit the graph
        raise InputError(f"the calibration data does not fit the graph ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:160]}); re-run actionvos calibrate collect for this export") from None


def _minmax(calibrator, reader, progress: bool, desc: str):
    sess = calibrator.infer_session
    names = [o.name for o in sess.get_outputs()]
    original = calibrator.model_original_outputs
    running: list[np.ndarray | None] = [None] * len(names)
    n = 0
    for feed in _feeds(reader, progress, desc):
        for k, (name, v) in enumerate(zip(names, _run(sess, feed))):
            if name in original:
                continue
            if running[k] is None:
                running[k] = np.array(v, copy=True)
            elif name.endswith("_ReduceMin"):
                running[k] = np.fmin(running[k], v)
            else:
                running[k] = np.fmax(running[k], v)
        n += 1
    if n == 0:
        raise InputError("the calibration data holds no clips; run actionvos calibrate collect")
    calibrator.intermediate_outputs = [running]  # one merged "batch": compute_data pairs and symmetrises as ORT
    return calibrator.compute_data()


def _histograms(calibrator, reader, method: str, opts: dict[str, Any], progress: bool, desc: str):
    from onnxruntime.quantization.calibrate import HistogramCollector

    sess = calibrator.infer_session
    names = [o.name for o in sess.get_outputs()]
    wanted = [(k, n) for k, n in enumerate(names) if n in calibrator.tensors_to_calibrate]
    symmetric = bool(opts.get("symmetric", False))
    absolute = method == "percentile" and symmetric  # ORT: collect_absolute_value, else collect_value
    bins = int(opts["num_bins"])
    # pass 1: global min / max (and of |x|) per tensor
    lo: dict[str, np.ndarray] = {}
    hi: dict[str, np.ndarray] = {}
    alo: dict[str, np.ndarray] = {}
    ahi: dict[str, np.ndarray] = {}
    n_feeds = 0
    for feed in _feeds(reader, progress, f"{desc} 1/2"):
        outs = _run(sess, feed)
        for k, name in wanted:
            a = outs[k]
            if a.size == 0:
                continue
            mn, mx = np.nanmin(a), np.nanmax(a)
            lo[name] = mn if name not in lo else min(lo[name], mn)
            hi[name] = mx if name not in hi else max(hi[name], mx)
            if absolute:
                ab = np.absolute(a)
                amn, amx = np.nanmin(ab), np.nanmax(ab)
                alo[name] = amn if name not in alo else min(alo[name], amn)
                ahi[name] = amx if name not in ahi else max(ahi[name], amx)
        n_feeds += 1
        del outs
    if n_feeds == 0:
        raise InputError("the calibration data holds no clips; run actionvos calibrate collect")
    # pass 2: histograms over the global ranges, counts summed clip by clip
    ranges: dict[str, tuple] = {}
    hists: dict[str, np.ndarray] = {}
    edges: dict[str, np.ndarray] = {}
    for feed in _feeds(reader, progress, f"{desc} 2/2"):
        outs = _run(sess, feed)
        for k, name in wanted:
            if name not in lo:
                continue
            a = outs[k].reshape(-1)
            if absolute:
                rng = ranges.setdefault(name, (alo[name], ahi[name]))
                h, e = np.histogram(np.absolute(a), bins=bins, range=rng)
            else:
                thr = ranges.setdefault(name, (np.array(max(abs(lo[name]), abs(hi[name])), dtype=a.dtype),))[0]
                h, e = np.histogram(a, bins, range=(-thr, thr))
            if name in hists:
                hists[name] += h
            else:
                hists[name], edges[name] = h, e
        del outs
    hist_dict = {}
    for name in hists:
        if absolute:
            hist_dict[name] = (hists[name], edges[name].astype(np.asarray(ahi[name]).dtype), lo[name], hi[name])
        else:
            hist_dict[name] = (hists[name], edges[name], lo[name], hi[name], ranges[name][0])
    collector = HistogramCollector(method=method, symmetric=symmetric, num_bins=bins,
                                   num_quantized_bins=int(opts.get("num_quantized_bins", 128)),
                                   percentile=float(opts.get("percentile", 99.999)), scenario="same")
    collector.histogram_dict = hist_dict
    calibrator.collector = collector
    with contextlib.redirect_stdout(io.StringIO()):  # ORT prints "Number of tensors ..." per call
        return calibrator.compute_data()


def compute_ranges(src: Path, reader, method: str, op_types: Sequence[str], work: Path, *, bins: int = 2048,
                   percentile: float = 99.999, progress: bool = False, desc: str = "calibrate"):
    """Activation ranges of the tensors ``quantize_static`` will quantize, streaming ``reader`` (see module doc).

    Args:
        src: FP32 ``.onnx``. reader: a ``CalibrationDataReader`` with ``rewind`` (read twice for histograms).
        method: ``entropy``, ``percentile`` or ``minmax``. op_types: op types whose tensors are calibrated.
        work: a scratch folder (ORT writes the augmented model there).
        bins: histogram bins (entropy / percentile). percentile: the percentile method's percentile.
        progress: progress bars per pass. desc: their label.
    Returns:
        ORT ``TensorsData`` (for ``save_tensors_data`` / ``quantize_static(calibration_cache_path=...)``).
    Raises:
        ConfigError: unknown method. InputError: no clips, or a feed the graph does not take.
    """
    from onnxruntime.quantization.calibrate import create_calibrator

    calib = _method(method)
    opts = calibrator_options(method, bins, percentile)
    calibrator = create_calibrator(Path(src), list(op_types), augmented_model_path=str(Path(work) / "augmented.onnx"),
                                   calibrate_method=calib, extra_options=opts)
    try:
        if method == "minmax":
            return _minmax(calibrator, reader, progress, desc)
        return _histograms(calibrator, reader, method, opts, progress, desc)
    finally:
        calibrator.intermediate_outputs = []
        del calibrator
