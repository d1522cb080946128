"""``actionvos calibrate fp16``: FP16 graphs with the measured-sensitive node groups kept in FP32, plus the report.

The conversion (maintained converter, ``keep_io_types=True``) and the node groups live in
:mod:`actionvos.precision.fp16` / :mod:`actionvos.precision.groups` (shared with ``actionvos-export --fp16``); the
measurement of which groups to keep in :mod:`actionvos.calibration.fp16_sensitivity`. This module writes the
directory: every graph of the export folder (text encoder and segmenter, and the frame encoder and window decoder
of the clip rule when present) converted with one keep list, their card with ``precision: fp16`` and the
``actionvos.calibration`` record (kept groups, the clips measured on as ``calibration_frames``), ``card.json`` and
``tokenizer/``, ``fp16_sensitivity.json`` and the accuracy report (segmenter end to end) on clips the measurement
did not use.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

from actionvos.calibration.clips import DEFAULT_HOLDOUT, check_compatible
from actionvos.calibration.common import (
    SEGMENTER_FILE,
    TEXT_FILE,
    atomic_dir,
    check_out_dir,
    load_graph_dir,
    metadata_props,
    write_precision_metadata,
)
from actionvos.calibration.fp16_sensitivity import RULE, GraphConverter, measure_sensitivity
from actionvos.calibration.model_facts import derived_card_files
from actionvos.calibration.npz_store import load_calibration
from actionvos.errors import ConfigError
from actionvos.precision.fp16 import DEFAULT_KEEP_FP32, GROUPS, convert_fp16, converter_version, node_groups

__all__ = ["GROUPS", "DEFAULT_KEEP_FP32", "RULE", "node_groups", "convert_fp16", "measure_sensitivity",
           "convert_dir_fp16"]

log = logging.getLogger(__name__)

#: the clip-rule graphs of an export folder (frame encoder + window decoder), converted with the same keep list
WINDOW_FILES = ("frame_encoder.onnx", "window_decoder.onnx")


def convert_dir_fp16(onnx_dir: str | os.PathLike, out: str | os.PathLike, *, data: str | os.PathLike | None = None,
                     keep_fp32: Sequence[str] | None = None, measure: bool = True, measure_clips: int = 8,
                     report_clips: int | None = None, force: bool = False, threads: int = 2,
                     progress: bool = False, holdout: float = DEFAULT_HOLDOUT) -> dict[str, Any]:
    """Library form of ``actionvos calibrate fp16``: measure (optional), convert both graphs, write, report.

    Args:
        onnx_dir: FP32 export directory. out: directory to write (``text_encoder.onnx``, ``segmenter.onnx``,
            ``export_manifest.json`` copied, ``fp16_sensitivity.json``, ``accuracy_report.json``/``.md``).
        data: calibration ``.npz`` (needed for the measurement and the report).
        keep_fp32: groups to keep in FP32 without measuring (overrides ``measure``).
        measure: run :func:`measure_sensitivity` on ``measure_clips`` clips of ``data`` (needs ``data``).
        report_clips: clips of ``data`` for the accuracy report (default all that the measurement did not use).
        holdout: fraction of ``data``'s clips never used by the measurement (every ``round(1/holdout)``-th clip); the
            measured clips are recorded (``calibration_frames``) and left out of every accuracy report.
        progress: progress bars (measurement configurations, clips).
        force: replace a non-empty ``out``.
    Returns:
        ``{"kept_fp32": [...], "sensitivity": {...} | None, "report": {...} | None, "out": str}``.
    Raises:
        ConfigError: measurement requested without ``data``, plugin graphs with measurement, unknown groups, bad
            ``holdout``.
        InputError: unusable directories, data of another model/size, ``out`` not writable.
    """
    import onnx

    from actionvos.calibration.report import build_report, weights_note, write_report
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
        cal = load_calibration(data, lazy=True)
        check_compatible(cal, graphs)
    if keep_fp32 is not None:
        measure = False
    if measure and cal is None:
        raise ConfigError("the FP16 sensitivity measurement needs --data calib.npz (or pass --keep-fp32 GROUPS / --no-measure)")
    conv = GraphConverter(graphs)
    sens = None
    used: dict[str, list[int]] = {}
    if measure:
        measured = cal.split_holdout(holdout)[0].spread(measure_clips).in_memory()
        used = measured.used_frames()
        sens = measure_sensitivity(graphs, measured, threads=threads, progress=progress, converter=conv)
        kept = sens["kept_fp32"]
    else:
        kept = list(keep_fp32) if keep_fp32 is not None else [g for g in DEFAULT_KEEP_FP32 if g in conv.present()]
        unknown = sorted(set(kept) - set(GROUPS))
        if unknown:
            raise ConfigError(f"unknown --keep-fp32 group(s) {unknown}; choose from {list(GROUPS)}")
    record = {"precision": "fp16", "source_model_hash": graphs.model_hash, "source_dir": str(graphs.path),
              "converter": converter_version(), "keep_io_types": True, "kept_fp32": kept,
              "always_fp32": "converter default op block list, Cast(to=float) nodes, TensorRT MSDA plugin node",
              "measured": sens is not None, "calibration_data": str(cal.path) if sens is not None else "",
              "calibration_clips": len(measured) if sens is not None else 0, "calibration_frames": used}
    report = None
    with atomic_dir(out) as tmp:
        for role, fname in (("text", TEXT_FILE), ("seg", SEGMENTER_FILE)):
            model = onnx.load_from_string(conv.convert(role, kept))
            write_precision_metadata(model, "fp16", record, metadata_props(graphs.path / fname))
            onnx.save(model, str(tmp / fname))
            onnx.checker.check_model(str(tmp / fname))
        for fname in WINDOW_FILES:  # the clip rule's graphs: same keep list (groups match by module scope)
            if (graphs.path / fname).is_file():
                model = convert_fp16(onnx.load(str(graphs.path / fname)), kept)
                write_precision_metadata(model, "fp16", record, metadata_props(graphs.path / fname))
                onnx.save(model, str(tmp / fname))
                onnx.checker.check_model(str(tmp / fname))
        manifest = graphs.path / "export_manifest.json"
        if manifest.is_file():
            (tmp / "export_manifest.json").write_bytes(manifest.read_bytes())
        derived_card_files(graphs.path, tmp, "fp16")  # card.json (precision fp16) + tokenizer/
        if sens is not None:
            atomic_write_json(tmp / "fp16_sensitivity.json", sens)
        if cal is not None:
            cand = load_graph_dir(tmp, "--out")
            report = build_report(graphs, {"fp16": cand}, cal, threads=threads, progress=progress,
                                  extra={"sensitivity": sens} if sens else None, weights_note=weights_note(graphs),
                                  max_clips=report_clips, figures_dir=tmp, figures_prefix="accuracy_report")
            report["candidates"]["fp16"]["dir"] = str(out)
            write_report(report, tmp / "accuracy_report.json", tmp / "accuracy_report.md")
    log.info("wrote FP16 graphs to %s (FP32 groups: %s)", out, ", ".join(kept) or "none")
    return {"kept_fp32": kept, "sensitivity": sens, "report": report, "out": str(out)}
