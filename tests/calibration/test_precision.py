"""FP16 / INT8 Q/DQ graphs of a small model run in ONNX Runtime CPU; reports are produced; thresholds trip.

The model has random weights: agreement numbers here are pipeline checks, not accuracy evidence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from actionvos.calibration.common import load_graph_dir, make_session
from actionvos.calibration.npz_store import load_calibration
from actionvos.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _io_types(path: Path) -> dict[str, int]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return {v.name: v.type.tensor_type.elem_type for v in list(m.graph.input) + list(m.graph.output)}


def test_node_groups_found(fp32_dir):
    import onnx

    from actionvos.calibration.fp16 import node_groups

    seg = node_groups(onnx.load(str(fp32_dir / "segmenter.onnx")))
    for g in ("msda_sampling_offsets", "msda_attention_weights", "msda_sampling", "softmax_attention", "layer_norm",
              "group_norm", "positive_head", "box_refinement", "mask_head"):
        assert seg[g], g
    assert any(n.endswith("GridSample") for n in seg["msda_sampling"])
    assert any("positive_cls_embed" in n for n in seg["positive_head"])
    assert any(n.endswith("/Log") for n in seg["box_refinement"])
    text = node_groups(onnx.load(str(fp32_dir / "text_encoder.onnx")))
    assert text["layer_norm"] and text["softmax_attention"] and not text["msda_sampling"]


def test_int8_qdq_graph_runs_and_reports(int8_dir, fp32_dir, calib_file):
    import onnx

    seg = onnx.load(str(int8_dir / "segmenter.onnx"))
    ops = {n.op_type for n in seg.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # excluded MSDA / head nodes stay float: no Q/DQ feeds the sampling offsets or the positive head
    deq_out = {o for n in seg.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    for n in seg.graph.node:
        if "sampling_offsets" in n.name or "positive_cls_embed" in n.name:
            assert not set(n.input) & deq_out, n.name
    assert _io_types(int8_dir / "segmenter.onnx") == _io_types(fp32_dir / "segmenter.onnx")
    assert _io_types(int8_dir / "text_encoder.onnx") == _io_types(fp32_dir / "text_encoder.onnx")
    g = load_graph_dir(int8_dir)
    assert g.precision == "int8" and g.model_hash == load_graph_dir(fp32_dir).model_hash
    assert g.calibration["method"] == "minmax" and "msda_sampling" in g.calibration["excluded_groups"]
    data = load_calibration(calib_file)
    outs = make_session(g.segmenter).run(None, data.segmenter_feed(0))
    assert all(np.isfinite(o).all() for o in outs)

    rep = json.loads((int8_dir / "accuracy_report.json").read_text())
    m = rep["candidates"]["int8"]["metrics"]
    assert m["all"]["clips"] == 4 and set(m) >= {"all", "box", "minivisor/val"}
    for k in ("pred_logits", "pred_boxes", "pred_masks", "pred_positives", "text_word", "text_sentence"):
        assert m["all"]["errors"][k]["max_abs"] >= m["all"]["errors"][k]["mean_abs"] >= 0
    assert 0 <= m["all"]["mask_iou_mean"] <= 1 and 0 <= m["all"]["gate_agreement"] <= 1
    md = (int8_dir / "accuracy_report.md").read_text()
    assert "| int8 (int8) | onnxruntime-cpu | all | 4 |" in md and "pipeline checks" in md


def test_fp16_default_groups_and_measurement(fp32_dir, calib_file, tmp_path):
    import onnx

    from actionvos.calibration.npz_store import load_calibration
    from actionvos.calibration.fp16 import convert_dir_fp16, measure_sensitivity

    out = tmp_path / "fp16"
    r = convert_dir_fp16(fp32_dir, out, data=calib_file, measure=False, report_clips=2)
    assert "layer_norm" in r["kept_fp32"] and "msda_sampling_offsets" in r["kept_fp32"]
    seg = onnx.load(str(out / "segmenter.onnx"))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in seg.graph.initializer)
    assert _io_types(out / "segmenter.onnx") == _io_types(fp32_dir / "segmenter.onnx")
    assert _io_types(out / "text_encoder.onnx") == _io_types(fp32_dir / "text_encoder.onnx")
    data = load_calibration(calib_file)
    outs = make_session(out / "segmenter.onnx").run(None, data.segmenter_feed(0))
    assert [o.dtype for o in outs] == [np.float32] * 4
    ln = [n for n in seg.graph.node if n.op_type == "LayerNormalization"]
    assert ln and all(any(i.endswith("_input_cast_0") or "__fp32" in i for i in n.input) for n in ln[:1])
    g = load_graph_dir(out)
    assert g.precision == "fp16" and g.calibration["kept_fp32"] == r["kept_fp32"]
    rep = json.loads((out / "accuracy_report.json").read_text())
    assert rep["candidates"]["fp16"]["metrics"]["all"]["mask_iou_mean"] > 0.9  # FP16 rounding only

    sens = measure_sensitivity(load_graph_dir(fp32_dir), load_calibration(calib_file).spread(2),
                               candidates=["positive_head"])
    assert [row["config"] for row in sens["rows"]] == ["all-fp16", "all-groups-fp32", "fp16:positive_head"]
    assert set(sens["decisions"]) == {"positive_head"} and "rule" in sens
    with pytest.raises(ConfigError, match="unknown --keep-fp32 group"):
        convert_dir_fp16(fp32_dir, tmp_path / "bad", keep_fp32=["not_a_group"])


def test_report_thresholds_trip_exit_code(fp32_dir, int8_dir, calib_file, tmp_path):
    from actionvos.calibration.report import AccuracyThresholdError, accuracy_report

    rep = accuracy_report(fp32_dir, {"int8": int8_dir}, calib_file, max_clips=2, min_mask_iou=0.0,
                          min_gate_agreement=0.0, json_path=tmp_path / "ok.json")
    assert rep["failures"] == [] and (tmp_path / "ok.json").is_file()
    with pytest.raises(ConfigError, match="--min-mask-iou"):
        accuracy_report(fp32_dir, {"int8": int8_dir}, calib_file, min_mask_iou=1.5)
    same = accuracy_report(fp32_dir, {"same": fp32_dir}, calib_file, max_clips=2, min_mask_iou=1.0,
                           min_gate_agreement=1.0)  # FP32 against itself: exact agreement passes 1.0
    assert same["candidates"]["same"]["metrics"]["all"]["errors"]["pred_masks"]["max_abs"] == 0
    iou = rep["candidates"]["int8"]["metrics"]["all"]["mask_iou_mean"]
    if iou >= 1.0:  # pragma: no cover - an INT8 graph identical to FP32
        pytest.skip("INT8 masks equal FP32 masks exactly; no shortfall to trip")
    with pytest.raises(AccuracyThresholdError, match="int8: mask IoU") as err:
        accuracy_report(fp32_dir, {"int8": int8_dir}, calib_file, max_clips=2, min_mask_iou=1.0,
                        json_path=tmp_path / "fail.json")
    assert err.value.exit_code == 3 and "\n" not in str(err.value)
    assert json.loads((tmp_path / "fail.json").read_text())["failures"]  # written before failing


def test_report_cli_exit_code(fp32_dir, int8_dir, calib_file, tmp_path):
    """The real entry point with the calibrate sub-app registered: a threshold shortfall exits 3, files written."""
    code = ("import actionvos.cli as c; from actionvos.calibration.cli import register; register(c.app); c.main()")
    args = [sys.executable, "-c", code, "calibrate", "report", "--reference", str(fp32_dir), "--candidates",
            f"int8={int8_dir}", "--data", str(calib_file), "--max-clips", "2", "--no-progress",
            "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md"), "--min-mask-iou", "1.0"]
    env = dict(os.environ, OMP_NUM_THREADS="2")
    p = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    rep = json.loads((tmp_path / "r.json").read_text())
    iou = rep["candidates"]["int8"]["metrics"]["all"]["mask_iou_mean"]
    if iou < 1.0:
        assert p.returncode == 3, p.stderr
        assert p.stderr.strip().splitlines()[-1].startswith("error: int8: mask IoU")
    else:  # pragma: no cover - an INT8 graph that matches FP32 exactly
        assert p.returncode == 0
    assert "| int8 (int8) |" in (tmp_path / "r.md").read_text()
    bad = subprocess.run(args[:-2] + ["--min-gate-agreement", "2"], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=300)
    assert bad.returncode == 2 and "--min-gate-agreement must be in [0, 1]" in bad.stderr


def test_tensorrt_engine_from_qdq_graph(request):
    """Strongly typed TensorRT engines from the Q/DQ graphs (needs tensorrt + a CUDA GPU)."""
    from actionvos.trt_api import gpu_compute_capability, tensorrt_available

    ok, info = tensorrt_available()
    if not ok:
        pytest.skip(f"TensorRT engine build from the Q/DQ graph needs tensorrt: {info}")
    if gpu_compute_capability() is None:
        pytest.skip("TensorRT engine build from the Q/DQ graph needs a CUDA GPU; none is visible")
    from actionvos.calibration.int8 import build_int8_engines

    engines = build_int8_engines(request.getfixturevalue("int8_dir"))
    assert all(p.is_file() and p.stat().st_size > 0 for p in engines.values())


def test_entropy_ranges_differ_from_minmax(fp32_dir, calib_file, tmp_path):
    """ORT's entropy defaults (128 bins) degenerate to the max; with a real histogram the KL thresholds clip."""
    from actionvos.calibration.npz_store import load_calibration
    from actionvos.calibration.int8 import TextReader, quantize_graph

    data = load_calibration(calib_file)
    ranges = {}
    for method in ("entropy", "minmax"):
        dst = tmp_path / f"text_{method}.onnx"
        info = quantize_graph(fp32_dir / "text_encoder.onnx", dst, TextReader(data), method, [], bins=256)
        assert info["quantize_linear_nodes"] > 0
        raw = json.loads(dst.with_suffix(".ranges.json").read_text())
        ranges[method] = raw
    assert ranges["entropy"] != ranges["minmax"]
