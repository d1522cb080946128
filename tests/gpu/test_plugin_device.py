"""The plugin library on a GPU, driven like TensorRT's runtime by plugin_device_check.cpp (no libnvinfer needed).

Builds the library (trt_plugins/build.sh), compiles the driver with nvcc against the same TensorRT headers, runs
getCreators → createPlugin → attachToContext → onShapeChange → enqueue for shape-changing cases, plainly and inside
a captured CUDA graph, and compares every output with the FP64 oracle (FP32 ≤ 1e-5, FP16 ≤ 1e-2 relative, no NaN
left from the poisoned output buffers).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")]

REPO = Path(__file__).resolve().parents[2]


def _cases_module():
    spec = importlib.util.spec_from_file_location("msda_device_cases", REPO / "trt_plugins/msda/tests/device_cases.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def built():
    res = subprocess.run(["bash", str(REPO / "trt_plugins/build.sh")], capture_output=True, text=True, timeout=1800)
    if res.returncode == 77:
        pytest.skip(f"build prerequisite missing: {res.stderr.strip().splitlines()[-1]}")
    assert res.returncode == 0, res.stderr[-3000:]
    lib = Path(res.stdout.strip().splitlines()[-1])
    info = dict(l.split("=", 1) for l in (lib.parent / "build_info.txt").read_text().splitlines() if "=" in l)
    return lib, info


def test_plugin_enqueue_plain_and_in_cuda_graph(built, tmp_path):
    lib, info = built
    dc = _cases_module()
    exe = dc.build_driver(tmp_path / "plugin_device_check", info["tensorrt_include_dir"])
    dc.write_cases(tmp_path)
    res = subprocess.run([str(exe), str(lib), str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = dc.compare_outputs(tmp_path)
    bad = [r for r in rows if not r["ok"]]
    assert not bad, bad


def test_memcheck_clean(built, tmp_path):
    """compute-sanitizer --tool memcheck over the driver on small cases (odd sizes, outside and NaN locations)."""
    lib, info = built
    from torch.utils import cpp_extension

    san = shutil.which("compute-sanitizer") or next(
        (str(p) for p in (Path("/usr/local/cuda/bin/compute-sanitizer"),
                          Path(cpp_extension.CUDA_HOME or "/nonexistent") / "bin" / "compute-sanitizer")
         if p.is_file()), None)
    if san is None:
        pytest.skip("compute-sanitizer not found")
    dc = _cases_module()
    exe = dc.build_driver(tmp_path / "plugin_device_check", info["tensorrt_include_dir"])
    dc.write_cases(tmp_path, dc.SANITIZER_CASES)
    res = subprocess.run([san, "--tool", "memcheck", "--error-exitcode", "3", str(exe),
                          str(lib), str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-2000:]
    assert "ERROR SUMMARY: 0 errors" in res.stdout
    assert all(r["ok"] for r in dc.compare_outputs(tmp_path, dc.SANITIZER_CASES))
