"""INT8 calibration memory does not grow with the number of clips, and the streamed ranges equal ONNX Runtime's.

Issue 11 item 11: ``calibrate int8 --method percentile`` on 128 clips grew to 18 GB because ONNX Runtime's histogram
calibrators keep every clip's activations. The probe (memory_probe.py) runs one range computation per process and
reports its peak RSS; the same probe on ONNX Runtime's own ``collect_data`` must show the growth (so the measure is
able to see it), the streamed calibrators must not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import memory_probe  # noqa: E402

# 8 x 192 x 192 float32 = 1.2 MB per activation; ~6 calibrated tensors: ~7 MB per clip kept by ORT's calibrator
C, S = 8, 192


def _tiny_conv_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = "x"
    for k in range(3):
        w = numpy_helper.from_array((rng.standard_normal((C, C, 3, 3)) * 0.2).astype(np.float32), f"w{k}")
        b = numpy_helper.from_array(np.zeros(C, np.float32), f"b{k}")
        inits += [w, b]
        nodes.append(helper.make_node("Conv", [x, f"w{k}", f"b{k}"], [f"c{k}"], pads=[1, 1, 1, 1], name=f"conv{k}"))
        nodes.append(helper.make_node("Relu", [f"c{k}"], [f"r{k}"], name=f"relu{k}"))
        x = f"r{k}"
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, S, S])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, C, S, S])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return _tiny_conv_model(tmp_path_factory.mktemp("tiny") / "tiny_conv.onnx")


def _peak(model: Path, clips: int, method: str, mode: str) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, str(HERE / "memory_probe.py"), str(model), str(clips), method, mode],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def test_int8_calibration_memory_flat_when_clips_double(tiny_model):
    ort = [_peak(tiny_model, n, "percentile", "ort") for n in (8, 16)]
    # the measure sees ONNX Runtime's growth: 8 more clips keep >= 8 x 7 MB of activations
    assert ort[1] - ort[0] > 40, f"probe cannot see the growth of ORT's calibrator: {ort} MB"
    for method in ("percentile", "entropy", "minmax"):
        streamed = [_peak(tiny_model, n, method, "streamed") for n in (8, 16)]
        assert streamed[1] - streamed[0] < 10, f"{method}: peak RSS grew from {streamed[0]} to {streamed[1]} MB"
        assert streamed[1] < ort[1], f"{method}: {streamed[1]} MB streamed vs {ort[1]} MB ORT at 16 clips"


@pytest.mark.parametrize("method", ["percentile", "entropy", "minmax"])
def test_streamed_ranges_equal_onnxruntime(tiny_model, tmp_path, method):
    """Same feeds, same histogram settings: the two-pass streamed ranges are ORT's all-at-once ranges."""
    import contextlib
    import io

    from onnxruntime.quantization.calibrate import create_calibrator

    from actionvos.calibration.int8_calibrators import _method, calibrator_options, compute_ranges

    ours = compute_ranges(tiny_model, memory_probe.SeededReader(str(tiny_model), 5), method, ["Conv"], tmp_path,
                          bins=512)
    cal = create_calibrator(tiny_model, ["Conv"], str(tmp_path / "aug.onnx"), calibrate_method=_method(method),
                            extra_options=calibrator_options(method, 512, 99.999))
    with contextlib.redirect_stdout(io.StringIO()):
        cal.collect_data(memory_probe.SeededReader(str(tiny_model), 5))
        theirs = cal.compute_data()
    assert set(ours.keys()) == set(theirs.keys()) and len(ours.keys()) >= 4
    for name in theirs.keys():
        np.testing.assert_allclose(np.asarray(ours[name].range_value, np.float64),
                                   np.asarray(theirs[name].range_value, np.float64), rtol=1e-6, atol=0, err_msg=name)
