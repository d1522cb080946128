"""benchmarks/gpu_check.py without a GPU (the way CI runs it) and its step runner's robustness.

The no-GPU mode must print the plan and exit 0 quickly; the runner must report a failing or crashing step and go
on with the next ones, exiting 1 at the end; the summary is one Markdown table, printed last.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
STEPS = ["versions", "extension", "kernel_tests", "plugin_build", "memcheck", "kernel_graph", "plugin_driver",
         "fast_path", "msda_timings", "model_timings"]


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_plan_mode_exits_0_and_writes_json(tmp_path):
    out = tmp_path / "gc.json"
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, str(SCRIPT), "--plan", "--json", str(out)], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert time.perf_counter() - t0 < 60
    assert "nothing run" in res.stdout
    data = json.loads(out.read_text())
    assert data["ran"] is False and [s["name"] for s in data["steps"]] == STEPS
    for name in STEPS:
        assert f". {name}: " in res.stdout


def test_default_mode_without_gpu_is_the_plan(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the default mode would run the checks")
    res = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "nothing run" in res.stdout and ("no CUDA" in res.stdout or "no CUDA GPU" in res.stdout)
    assert "64-bit offsets" in res.stdout and "compute-sanitizer" in res.stdout


def test_bad_arguments_are_one_line(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), "--only", "nonsense"], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert res.returncode == 2 and "unknown step(s) ['nonsense']" in res.stderr
    res = subprocess.run([sys.executable, str(SCRIPT), "--frames", "1"], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert res.returncode == 2 and "--frames" in res.stderr


def test_runner_reports_failures_and_continues(capsys):
    gc = _module()
    args = SimpleNamespace(budget=60.0, only=None, iters=2, frames=2)
    checker = gc.Checker(args)
    calls = []

    def ok(name):
        def run():
            calls.append(name)
            return f"{name} fine", {"x": 1}
        return run

    for name in STEPS:
        setattr(checker, name, ok(name))

    def broken():
        calls.append("memcheck")
        raise ZeroDivisionError("boom")

    def failing():
        calls.append("kernel_graph")
        raise gc.Fail("error 3e-4 > 1e-5")

    def skipped():
        calls.append("plugin_build")
        raise gc.Skip("nvcc not found")

    checker.memcheck, checker.kernel_graph, checker.plugin_build = broken, failing, skipped
    steps = checker.run()
    assert calls == STEPS, "every step runs, in plan order"
    status = {s.name: s.status for s in steps}
    assert status["memcheck"] == "fail" and "ZeroDivisionError: boom" in steps[4].detail
    assert status["kernel_graph"] == "fail" and status["plugin_build"] == "skip"
    assert sum(v == "pass" for v in status.values()) == 7
    checker.rows.append({"what": "MSDA encoder self-attn", "shape": "N=1", "variant": "kernel fp32",
                         "median_ms": 0.05, "p99_ms": 0.06, "fps": None, "vs_oracle": 7.5})
    md = gc.table(steps, checker.rows)
    lines = md.splitlines()
    assert lines[0].startswith("| kind | item |") and len(lines) == 2 + len(STEPS) + 1
    assert "| timing | MSDA encoder self-attn (N=1) | kernel fp32 | | 0.050 | 0.060 |  | 7.50x |" in md


def test_budget_skips_later_steps():
    gc = _module()
    checker = gc.Checker(SimpleNamespace(budget=11.0, only=["versions", "extension"], iters=2, frames=2))

    def slow():
        time.sleep(1.5)
        return "ok", {}

    checker.versions = slow
    checker.extension = lambda: ("ok", {})
    steps = {s.name: s for s in checker.run()}
    assert steps["versions"].status == "pass"
    assert steps["extension"].status == "skip" and "budget" in steps["extension"].detail
    assert steps["model_timings"].detail == "not selected (--only)"


def test_direct_nvcc_plugin_build(tmp_path):
    """The no-cmake fallback builds a library with the entry points and no libnvinfer / libcudart dependency."""
    import shutil as sh

    gc = _module()
    nvcc = sh.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    if not Path(nvcc).is_file() or gc._headers() is None:
        pytest.skip("needs nvcc and the TensorRT headers (run trt_plugins/build.sh once)")
    lib, cmd = gc.nvcc_plugin_build(tmp_path, nvcc, gc._headers(), "90")
    assert lib.is_file() and "--no-undefined" in cmd
    if sh.which("nm") and sh.which("readelf"):
        syms = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True).stdout
        assert "getCreators" in syms and "setLoggerFinder" in syms
        dyn = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True).stdout
        assert "libnvinfer" not in dyn and "libcudart" not in dyn
