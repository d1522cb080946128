"""Host-side checks of the GPU plugin driver (trt_plugins/msda/tests/plugin_device_check.cpp + device_cases.py).

On a machine without a GPU: the driver compiles against the TensorRT headers build.sh uses and exits 77 ("no CUDA
device"); the case files and the FP64 comparison accept a correct output and reject a NaN-poisoned or perturbed
one. The GPU run itself is tests/gpu/test_plugin_device.py (and a step of benchmarks/gpu_check.py).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "trt_plugins" / "msda" / "tests"


def _load():
    spec = importlib.util.spec_from_file_location("msda_device_cases", TESTS / "device_cases.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


dc = _load()


def _write_oracle_outputs(directory: Path, cases, mode: str) -> None:
    for c in cases:
        ref = dc._oracle64(c, dc._inputs(c))
        fdt = np.float16 if c.ftype == "f16" else np.float32
        ref.astype(fdt).tofile(directory / f"{c.name}.{mode}.bin")


def test_cases_and_comparison(tmp_path):
    cases = dc.SANITIZER_CASES
    dc.write_cases(tmp_path, cases)
    lines = (tmp_path / "cases.txt").read_text().split("\n")
    assert lines[0].split()[:4] == ["san_odd_f32", "f32", "i64", "i32"]
    value = np.fromfile(tmp_path / "san_odd_f32.value.bin", dtype=np.float32)
    assert value.size == 2 * sum(h * w for h, w in dc.ODD) * 8 * 6
    _write_oracle_outputs(tmp_path, cases, "plain")
    _write_oracle_outputs(tmp_path, cases, "graph")
    rows = dc.compare_outputs(tmp_path, cases)
    assert len(rows) == 2 * len(cases) and all(r["ok"] for r in rows), rows
    # The special queries (outside, huge, NaN locations) must come out as exact zeros.
    ref = dc._oracle64(cases[0], dc._inputs(cases[0]))
    assert np.all(ref[:, :3] == 0)
    # A poisoned (unwritten) element fails, and so does an error above the FP32 tolerance.
    out = np.fromfile(tmp_path / "san_odd_f32.plain.bin", dtype=np.float32)
    out[5] = np.nan
    out.tofile(tmp_path / "san_odd_f32.plain.bin")
    out = np.fromfile(tmp_path / "san_small_f32.graph.bin", dtype=np.float32)
    out[7] += 1e-3 * np.abs(out).max()
    out.tofile(tmp_path / "san_small_f32.graph.bin")
    (tmp_path / "san_odd_f16.graph.bin").unlink()
    bad = {(r["case"], r["mode"]) for r in dc.compare_outputs(tmp_path, cases) if not r["ok"]}
    assert bad == {("san_odd_f32", "plain"), ("san_small_f32", "graph"), ("san_odd_f16", "graph")}


def test_driver_compiles_and_needs_a_gpu(tmp_path):
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    inc = REPO / "third_party" / "kernel-lens-2.0.1" / "include" / "tensorrt"
    lib = REPO / "trt_plugins" / "msda" / "build" / "libactionvos_msda_plugin.so"
    if not Path(nvcc).is_file():
        pytest.skip("nvcc not found")
    if not inc.is_dir() or not lib.is_file():
        pytest.skip("run trt_plugins/build.sh first (headers and library)")
    exe = dc.build_driver(tmp_path / "plugin_device_check", str(inc), nvcc)
    # No libnvinfer: the driver and the plugin need only libc/libdl (+ the driver's libcuda at run time).
    needed = subprocess.run(["readelf", "-d", str(exe)], capture_output=True, text=True).stdout \
        if shutil.which("readelf") else ""
    assert "libnvinfer" not in needed
    res = subprocess.run([str(exe), str(lib), str(tmp_path)], capture_output=True, text=True, timeout=120)
    try:
        import ctypes

        ctypes.CDLL("libcuda.so.1")
        has_driver = True
    except OSError:
        has_driver = False
    if has_driver:
        pytest.skip(f"a CUDA driver is present here; the GPU run is tests/gpu/test_plugin_device.py ({res.returncode})")
    assert res.returncode == 77, res.stdout + res.stderr
    assert "no CUDA device" in res.stdout
    res = subprocess.run([str(exe)], capture_output=True, text=True)
    assert res.returncode == 2 and "usage" in res.stderr
