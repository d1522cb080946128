"""Verify the GPU path in a few minutes: versions, kernel correctness, memcheck, graphs, the plugin, parity, speed.

    python benchmarks/gpu_check.py [--json gpu_check.json] [--frames 50] [--iters 200] [--budget 450] [--plan]
                                   [--only STEP ...]

Made for an H100/H200 machine with PyTorch (CUDA), nvcc and CuPy but no TensorRT, no onnxruntime-gpu and no network;
it runs well under 8 minutes there. Steps, in order (each one is reported and a failing one does not stop the
others; the exit status is 1 when any step failed, 0 otherwise):

 1. ``versions``        nvcc vs ``torch.version.cuda`` vs the driver (:mod:`actionvos.export.cuda_compat`), GPU name
 2. ``extension``       build/load the PyTorch extension of ``trt_plugins/msda/msda_kernel.cu`` (timed)
 3. ``kernel_tests``    ``pytest tests/gpu/test_msda_kernel.py``: FP64 oracle, FP32 ≤ 1e-5, FP16 ≤ 1e-2 relative,
                        NaN-poisoned outputs fully written, odd sizes, points outside the image, NaN locations, a
                        value tensor with > 2^32 elements (64-bit offsets), misaligned pointers, graph capture
 4. ``plugin_build``    ``bash trt_plugins/build.sh`` (every architecture nvcc supports from sm_75) + the C++ driver
 5. ``memcheck``        ``compute-sanitizer --tool memcheck`` over the plugin driver on small odd cases
 6. ``kernel_graph``    the kernel captured in a CUDA graph (torch), replayed on new inputs vs the FP64 oracle
 7. ``plugin_driver``   the plugin library through getCreators → createPlugin → attachToContext → onShapeChange →
                        enqueue on device buffers (no libnvinfer needed), plainly and inside a captured CUDA graph,
                        vs the FP64 oracle, shape changing between cases
 8. ``fast_path``       ``pytest tests/gpu/test_cuda_fast_path.py``: tiny-fixture parity on CUDA through the PyTorch
                        path with our kernel (fixture tolerances), no host sync, graphs vs eager, FP16 decisions
 9. ``msda_timings``    kernel (FP32, FP16) vs grid_sample oracle per MSDA layer shape of rf_r101_actionvos at 360x640
                        (encoder Lq = 4820, decoder Lq = 5; 1 and 4 prompts), median of ``--iters`` after warm-up
10. ``model_timings``   rf_r101_actionvos (random weights), 360x640, one frame per step (backbone + decode over
                        P prompts + outputs to the host): p50 / p99 latency and FPS over ``--frames`` frames after
                        warm-up, for 1 and 4 prompts: oracle FP32 eager, kernel FP32, kernel FP16, kernel FP16 +
                        CUDA graphs

Without network, build.sh cannot download the TensorRT headers: bring ``third_party/`` (what build.sh fetched on
a machine with network) along. Without cmake, ``plugin_build`` compiles the library with one nvcc command for the
local GPU's architecture instead (:func:`nvcc_plugin_build`). The summary Markdown table is printed last; ``--json`` writes every step's data. Without a CUDA GPU (or with
``--plan``) it prints what it would check and exits 0 (CI runs it that way). ``--budget`` seconds: a step that
would start after the budget is spent is skipped (reported).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ENC_LEVELS = [(45, 80), (23, 40), (12, 20), (6, 10)]  # rf_r101_actionvos at 360x640: strides 8..64, S = 4820
M_HEADS, D_HEAD, N_POINTS = 8, 32, 4
PROMPTS = (1, 4)


@dataclass
class Step:
    """One check: ``status`` is ``pass``, ``fail`` or ``skip``; ``detail`` one line; ``data`` for the JSON."""

    name: str
    what: str
    status: str = "skip"
    seconds: float = 0.0
    detail: str = ""
    data: dict = field(default_factory=dict)


class Skip(Exception):
    """Raised by a step that cannot run here (the reason is reported, not a failure)."""


class Fail(Exception):
    """Raised by a step whose check failed (the message is reported)."""


def _plan() -> list[tuple[str, str]]:
    lines = [l.strip() for l in __doc__.split("in order")[1].split("The summary")[0].splitlines()[1:]]
    steps, cur = [], None
    for l in lines:
        if not l:
            continue
        head = l.split()[0].rstrip(".")
        if head.isdigit():
            name = l.split("``")[1]
            cur = [name, l.split("``", 2)[2].strip()]
            steps.append(cur)
        elif cur is not None:
            cur[1] += " " + l
    return [(n, w) for n, w in steps]


# ------------------------------------------------------------------------------------------------- helpers


def _load_device_cases():
    spec = importlib.util.spec_from_file_location("msda_device_cases", REPO / "trt_plugins/msda/tests/device_cases.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _pytest(target: str, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", target]
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired as e:
        raise Fail(f"{target} timed out after {timeout:.0f} s") from e
    out = (res.stdout + res.stderr).strip().splitlines()
    summary = out[-1] if out else ""
    data = {"command": " ".join(cmd), "returncode": res.returncode, "summary": summary,
            "tail": out[-40:], "seconds": round(time.perf_counter() - t0, 1)}
    if res.returncode == 5:
        raise Skip(f"{target}: no tests collected")
    if res.returncode != 0:
        failed = [l for l in out if l.startswith(("FAILED", "ERROR"))]
        raise Fail(f"{summary}; " + " | ".join(failed[:5]))
    if " passed" not in summary:
        raise Skip(f"{target}: {summary}")
    return data


def _headers() -> str | None:
    """TensorRT headers for a direct build: $TENSORRT_INCLUDE_DIR, else those build.sh fetched into third_party/."""
    for cand in (os.environ.get("TENSORRT_INCLUDE_DIR"),
                 str(REPO / "third_party" / "kernel-lens-2.0.1" / "include" / "tensorrt")):
        if cand and (Path(cand) / "NvInferRuntime.h").is_file():
            return cand
    return None


def nvcc_plugin_build(out_dir: Path, nvcc: str, include: str, arch: str) -> tuple[Path, list[str]]:
    """Build ``libactionvos_msda_plugin.so`` with one nvcc command (no cmake): SASS for ``arch`` (e.g. ``90``),
    static CUDA runtime, no libnvinfer (``--no-undefined`` proves it), as the CMake build does.

    Raises:
        RuntimeError: compilation failed (command and the compiler's last lines).
    """
    src = REPO / "trt_plugins" / "msda"
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / "libactionvos_msda_plugin.so"
    cmd = [nvcc, "-std=c++17", "-O3", "-shared", "-Xcompiler", "-fPIC", f"-gencode=arch=compute_{arch},code=sm_{arch}",
           "--cudart", "static", "--expt-relaxed-constexpr", "-I", str(src), "-isystem", include,
           str(src / "msda_plugin.cpp"), str(src / "msda_kernel.cu"), "-Xlinker", "--no-undefined", "-o", str(lib)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{res.stderr[-3000:]}")
    return lib, cmd


def _cuda_time_ms(fn: Callable[[], Any], iters: int, warmup: int) -> list[float]:
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return times


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


# --------------------------------------------------------------------------------------------------- steps


class Checker:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
        self.lib: Path | None = None
        self.build_info: dict[str, str] = {}
        self.driver: Path | None = None
        self.rows: list[dict] = []  # summary table rows

    # 1
    def versions(self) -> tuple[str, dict]:
        import torch
        from torch.utils import cpp_extension

        from actionvos.export import cuda_compat as cc

        nvcc = Path(cpp_extension.CUDA_HOME or "/usr/local/cuda") / "bin" / "nvcc"
        nv = cc.nvcc_version(str(nvcc)) if nvcc.is_file() else None
        drv = cc.driver_cuda_version()
        props = torch.cuda.get_device_properties(0)
        try:
            import cupy

            cupy_v = cupy.__version__
        except Exception as e:  # noqa: BLE001
            cupy_v = f"not importable ({type(e).__name__})"
        data = {"gpu": props.name, "capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1), "gpu_count": torch.cuda.device_count(),
                "nvcc": str(nv) if nv else None, "nvcc_path": str(nvcc), "torch": torch.__version__,
                "torch_cuda": torch.version.cuda, "driver_cuda": str(drv[0]) if drv else None,
                "driver_source": drv[1] if drv else None, "cudnn": torch.backends.cudnn.version(), "cupy": cupy_v,
                "python": platform.python_version(), "ninja": cpp_extension.is_ninja_available(),
                "cmake": shutil.which("cmake"), "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                "tf32_cudnn": torch.backends.cudnn.allow_tf32}
        res = cc.check_versions(nv, torch_cuda=torch.version.cuda, driver=drv[0] if drv else None,
                                driver_source=drv[1] if drv else "", what="the MSDA CUDA extension")
        data["notes"] = res.notes
        line = (f"{props.name} (sm_{props.major}{props.minor}); nvcc {nv}, torch {torch.__version__} CUDA "
                f"{torch.version.cuda}, driver CUDA {data['driver_cuda']}")
        if res.error:
            raise Fail(f"{line}: {res.error}")
        return line, data

    # 2
    def extension(self) -> tuple[str, dict]:
        from actionvos.export.msda_cuda import MsdaExtensionError, load_msda_extension

        t0 = time.perf_counter()
        try:
            load_msda_extension()
        except MsdaExtensionError as e:
            raise Fail(str(e)) from e
        dt = time.perf_counter() - t0
        return f"loaded in {dt:.1f} s", {"seconds": round(dt, 1)}

    # 3
    def kernel_tests(self) -> tuple[str, dict]:
        data = _pytest("tests/gpu/test_msda_kernel.py", timeout=self._left(300))
        return data["summary"], data

    # 4
    def plugin_build(self) -> tuple[str, dict]:
        t0 = time.perf_counter()
        env = dict(os.environ)
        res = subprocess.run(["bash", str(REPO / "trt_plugins" / "build.sh")], capture_output=True, text=True,
                             timeout=self._left(400), cwd=REPO, env=env)
        dt = time.perf_counter() - t0
        tail = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""
        how = "build.sh"
        if res.returncode == 77 and "cmake not found" in tail and _headers():
            import torch
            from torch.utils import cpp_extension

            major, minor = torch.cuda.get_device_capability(0)
            nvcc = str(Path(cpp_extension.CUDA_HOME or "/usr/local/cuda") / "bin" / "nvcc")
            t0 = time.perf_counter()
            try:
                self.lib, cmd = nvcc_plugin_build(self.tmp / "plugin_lib", nvcc, _headers(), f"{major}{minor}")
            except RuntimeError as e:
                raise Fail(f"cmake missing and the direct nvcc build failed: {str(e).splitlines()[0]}") from e
            dt = time.perf_counter() - t0
            self.build_info = {"tensorrt_include_dir": _headers(), "cuda_architectures": f"{major}{minor}-real"}
            how = "nvcc directly (no cmake)"
        elif res.returncode == 77:
            raise Skip(f"build prerequisite missing: {tail}")
        elif res.returncode != 0:
            raise Fail(f"build.sh exit {res.returncode}: {tail}")
        else:
            self.lib = Path(res.stdout.strip().splitlines()[-1])
            self.build_info = dict(l.split("=", 1) for l in
                                   (self.lib.parent / "build_info.txt").read_text().splitlines() if "=" in l)
        dc = _load_device_cases()
        self.driver = dc.build_driver(self.tmp / "plugin_device_check", self.build_info["tensorrt_include_dir"])
        return (f"built with {how} in {dt:.1f} s for {self.build_info['cuda_architectures']}",
                {"seconds": round(dt, 1), "how": how, "build_info": self.build_info, "library": str(self.lib)})

    def _need_driver(self) -> None:
        if self.lib is None or self.driver is None:
            raise Skip("plugin library / driver not built (see plugin_build)")

    # 5
    def memcheck(self) -> tuple[str, dict]:
        self._need_driver()
        from torch.utils import cpp_extension

        cands = [shutil.which("compute-sanitizer"),
                 str(Path(cpp_extension.CUDA_HOME or "/usr/local/cuda") / "bin" / "compute-sanitizer"),
                 "/usr/local/cuda/bin/compute-sanitizer"]
        san = next((c for c in cands if c and Path(c).is_file()), None)
        if san is None:
            raise Skip("compute-sanitizer not found (CUDA toolkit bin/)")
        dc = _load_device_cases()
        d = dc.write_cases(self.tmp / "memcheck", dc.SANITIZER_CASES)
        cmd = [san, "--tool", "memcheck", "--error-exitcode", "3", str(self.driver), str(self.lib), str(d)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=self._left(300))
        summary = next((l for l in res.stdout.splitlines() if "ERROR SUMMARY" in l), "no ERROR SUMMARY line")
        rows = dc.compare_outputs(d, dc.SANITIZER_CASES)
        data = {"command": " ".join(cmd), "returncode": res.returncode, "summary": summary, "comparison": rows,
                "tail": res.stdout.strip().splitlines()[-20:]}
        if res.returncode != 0 or "0 errors" not in summary:
            raise Fail(f"memcheck exit {res.returncode}: {summary}")
        if not all(r["ok"] for r in rows):
            raise Fail(f"memcheck clean but outputs differ from the oracle: {[r for r in rows if not r['ok']]}")
        return summary.strip("= "), data

    # 6
    def kernel_graph(self) -> tuple[str, dict]:
        import torch

        from actionvos.export.msda_cuda import load_msda_extension
        from actionvos.model.msda import ms_deform_attn_core, starts_from_shapes

        ext = load_msda_extension()
        shapes = torch.tensor(ENC_LEVELS, device="cuda")
        starts = torch.tensor(starts_from_shapes(ENC_LEVELS), device="cuda")
        S = sum(h * w for h, w in ENC_LEVELS)
        data = {}
        for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 1e-2)):
            N, Lq = 2, 4820
            bufs = [torch.empty(N, S, M_HEADS, D_HEAD, device="cuda", dtype=dtype),
                    torch.empty(N, Lq, M_HEADS, 4, N_POINTS, 2, device="cuda", dtype=dtype),
                    torch.empty(N, Lq, M_HEADS, 4, N_POINTS, device="cuda", dtype=dtype)]
            out = torch.empty(N, Lq, M_HEADS * D_HEAD, device="cuda", dtype=dtype)

            def fill(seed):
                g = torch.Generator(device="cuda").manual_seed(seed)
                bufs[0].copy_(torch.randn(bufs[0].shape, device="cuda", generator=g))
                bufs[1].copy_(torch.rand(bufs[1].shape, device="cuda", generator=g) * 1.4 - 0.2)
                w = torch.rand(bufs[2].shape, device="cuda", generator=g)
                bufs[2].copy_(w / w.flatten(-2).sum(-1)[..., None, None])

            fill(0)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                ext.msda_forward(bufs[0], shapes, starts, bufs[1], bufs[2], out, 0)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                ext.msda_forward(bufs[0], shapes, starts, bufs[1], bufs[2], out, 0)
            errs = []
            for seed in (1, 2, 3):
                fill(seed)
                out.fill_(float("nan"))
                graph.replay()
                torch.cuda.synchronize()
                if torch.isnan(out).any():
                    raise Fail(f"{dtype}: graph replay left NaN-poisoned elements")
                ref = ms_deform_attn_core(bufs[0].double(), ENC_LEVELS, starts_from_shapes(ENC_LEVELS),
                                          bufs[1].double(), bufs[2].double())
                errs.append(((out.double() - ref).abs().max() / ref.abs().max()).item())
            data[str(dtype).split(".")[-1]] = {"max_rel_err": max(errs), "tol": tol}
            if max(errs) > tol:
                raise Fail(f"{dtype}: graph replay error {max(errs):.2e} > {tol}")
        return "replays match the FP64 oracle: " + ", ".join(
            f"{k} {v['max_rel_err']:.1e}" for k, v in data.items()), data

    # 7
    def plugin_driver(self) -> tuple[str, dict]:
        self._need_driver()
        dc = _load_device_cases()
        d = dc.write_cases(self.tmp / "plugin", dc.DEFAULT_CASES)
        res = subprocess.run([str(self.driver), str(self.lib), str(d)], capture_output=True, text=True,
                             timeout=self._left(300))
        rows = dc.compare_outputs(d, dc.DEFAULT_CASES)
        data = {"returncode": res.returncode, "driver_output": res.stdout.strip().splitlines(), "comparison": rows}
        bad = [r for r in rows if not r["ok"]]
        if res.returncode != 0 or bad:
            raise Fail(f"driver exit {res.returncode}; mismatches: {bad[:3]}; {res.stdout.strip()[-300:]}")
        worst = {m: max(r["rel_err"] for r in rows if r["mode"] == m) for m in ("plain", "graph")}
        return (f"{len(dc.DEFAULT_CASES)} cases x (plain, CUDA graph) match; worst rel err plain "
                f"{worst['plain']:.1e}, graph {worst['graph']:.1e}"), data

    # 8
    def fast_path(self) -> tuple[str, dict]:
        data = _pytest("tests/gpu/test_cuda_fast_path.py", timeout=self._left(300))
        return data["summary"], data

    # 9
    def msda_timings(self) -> tuple[str, dict]:
        import torch

        from actionvos.export.msda_cuda import load_msda_extension
        from actionvos.model.msda import ms_deform_attn_core, starts_from_shapes

        ext = load_msda_extension()
        shapes = torch.tensor(ENC_LEVELS, device="cuda")
        starts_t = torch.tensor(starts_from_shapes(ENC_LEVELS), device="cuda")
        starts_l = starts_from_shapes(ENC_LEVELS)  # python list: the oracle does not sync in the timed region
        S = sum(h * w for h, w in ENC_LEVELS)
        it, wu = self.args.iters, max(10, self.args.iters // 10)
        results = []
        for layer, Lq in (("encoder self-attn", S), ("decoder cross-attn", 5)):
            for P in PROMPTS:
                g = torch.Generator(device="cuda").manual_seed(P)
                v32 = torch.randn(P, S, M_HEADS, D_HEAD, device="cuda", generator=g)
                l32 = torch.rand(P, Lq, M_HEADS, 4, N_POINTS, 2, device="cuda", generator=g) * 1.2 - 0.1
                a32 = torch.rand(P, Lq, M_HEADS, 4, N_POINTS, device="cuda", generator=g)
                a32 = a32 / a32.flatten(-2).sum(-1)[..., None, None]
                v16, l16, a16 = v32.half(), l32.half(), a32.half()
                o32 = torch.empty(P, Lq, M_HEADS * D_HEAD, device="cuda")
                o16 = o32.half()
                t_or = _cuda_time_ms(lambda: ms_deform_attn_core(v32, ENC_LEVELS, starts_l, l32, a32), it, wu)
                t_k32 = _cuda_time_ms(lambda: ext.msda_forward(v32, shapes, starts_t, l32, a32, o32, 0), it, wu)
                t_k16 = _cuda_time_ms(lambda: ext.msda_forward(v16, shapes, starts_t, l16, a16, o16, 0), it, wu)
                base = statistics.median(t_or)
                for variant, ts in (("oracle fp32 (grid_sample)", t_or), ("kernel fp32", t_k32),
                                    ("kernel fp16", t_k16)):
                    med = statistics.median(ts)
                    row = {"what": f"MSDA {layer}", "shape": f"N={P} Lq={Lq} S={S}", "variant": variant,
                           "median_ms": med, "p99_ms": _pct(ts, 0.99), "fps": None, "vs_oracle": base / med}
                    results.append(row)
        self.rows.extend(results)
        enc = [r for r in results if r["what"].startswith("MSDA encoder") and r["shape"].startswith("N=1 ")]
        k = next(r for r in enc if r["variant"] == "kernel fp32")
        return f"encoder layer N=1: kernel fp32 {k['median_ms']:.3f} ms, {k['vs_oracle']:.1f}x the oracle", \
            {"rows": results, "iters": it, "warmup": wu}

    # 10
    def model_timings(self) -> tuple[str, dict]:
        import torch

        from actionvos.model.builder import build_model
        from actionvos.model.config import get_preset
        from actionvos.model.cuda_fast import CudaFastPath, FastPathOptions, use_msda_kernel

        cfg = get_preset("rf_r101_actionvos")
        torch.manual_seed(0)
        model = build_model(cfg).to("cuda").eval()
        frames_n, warm = self.args.frames, 10
        g = torch.Generator(device="cuda").manual_seed(0)
        frame = torch.randn(1, 3, 360, 640, device="cuda", generator=g)  # one normalised frame
        configs = (("oracle fp32 eager", None), ("kernel fp32", FastPathOptions(msda_kernel=True)),
                   ("kernel fp16", FastPathOptions(msda_kernel=True, fp16=True)),
                   ("kernel fp16 + CUDA graphs", FastPathOptions(msda_kernel=True, fp16=True, cuda_graphs=True)))
        results, notes = [], []
        for P in PROMPTS:
            ids = torch.randint(3, cfg.text.vocab_size, (P, 12), generator=torch.Generator().manual_seed(P)).cuda()
            with torch.inference_mode():
                text = model.encode_text(ids, torch.ones_like(ids))
            for name, opts in configs:
                if self._left(0) < 20:
                    notes.append(f"{name} P={P}: skipped, out of time budget")
                    continue
                fast = None
                if opts is None:
                    use_msda_kernel(model, False)
                else:
                    fast = CudaFastPath(model, "cuda", opts)
                    if not fast.kernel:
                        notes.append(f"{name}: kernel unavailable, oracle used")

                def step():
                    with torch.inference_mode():
                        out = model.decode(model.encode_frames(frame), text)
                        return (out["pred_logits"][:, -1, :, 0].float().cpu(), out["pred_masks"][:, -1].float().cpu(),
                                out["pred_positives"][:, 0].float().cpu())

                try:
                    for _ in range(warm):
                        step()
                    torch.cuda.synchronize()
                    lat = []
                    t_all = time.perf_counter()
                    for _ in range(frames_n):
                        t0 = time.perf_counter()
                        step()  # ends with device->host copies: synchronised
                        lat.append((time.perf_counter() - t0) * 1000)
                    total = time.perf_counter() - t_all
                finally:
                    if fast is not None:
                        fast.remove()
                row = {"what": "rf_r101_actionvos frame step", "shape": f"P={P} 360x640 T=1", "variant": name,
                       "median_ms": statistics.median(lat), "p99_ms": _pct(lat, 0.99), "fps": frames_n / total,
                       "vs_oracle": None}
                if fast is not None and fast.decode_graphs is not None:
                    row["graphs"] = fast.decode_graphs.num_graphs
                results.append(row)
            base = next((r for r in results if r["variant"] == "oracle fp32 eager" and r["shape"].startswith(f"P={P}")),
                        None)
            for r in results:
                if base and r["shape"] == base["shape"]:
                    r["vs_oracle"] = base["median_ms"] / r["median_ms"]
        self.rows.extend(results)
        del model
        torch.cuda.empty_cache()
        best = min((r for r in results if r["shape"].startswith("P=1")), key=lambda r: r["median_ms"], default=None)
        line = f"P=1 best: {best['variant']} {best['median_ms']:.1f} ms/frame ({best['fps']:.0f} FPS)" if best else ""
        return line + ("; " + "; ".join(notes) if notes else ""), {"rows": results, "frames": frames_n,
                                                                   "warmup_frames": warm, "notes": notes}

    # ---------------------------------------------------------------------------------------------- driver
    def _left(self, want: float) -> float:
        left = self.deadline - time.perf_counter()
        return max(5.0, min(want, left)) if want else left

    def run(self) -> list[Step]:
        self.deadline = time.perf_counter() + self.args.budget
        steps = []
        for name, what in _plan():
            st = Step(name, what)
            if self.args.only and name not in self.args.only:
                st.detail = "not selected (--only)"
                steps.append(st)
                continue
            if self.deadline - time.perf_counter() < 10:
                st.detail = f"out of the {self.args.budget:.0f} s budget"
                steps.append(st)
                print(f"[skip] {name}: {st.detail}", flush=True)
                continue
            t0 = time.perf_counter()
            try:
                st.detail, st.data = getattr(self, name)()
                st.status = "pass"
            except Skip as e:
                st.status, st.detail = "skip", str(e)
            except Fail as e:
                st.status, st.detail = "fail", str(e)
            except Exception as e:  # noqa: BLE001 -- one broken step must not stop the others
                st.status = "fail"
                st.detail = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                st.data = {"traceback": traceback.format_exc().splitlines()[-15:]}
            st.seconds = round(time.perf_counter() - t0, 1)
            print(f"[{st.status}] {name} ({st.seconds} s): {st.detail}", flush=True)
            steps.append(st)
        return steps


def _fmt(x, spec: str) -> str:
    return "" if x is None else format(x, spec)


def table(steps: list[Step], rows: list[dict]) -> str:
    """One Markdown table: every step's status, then every timing row (ms, FPS, speed-up vs the oracle)."""
    out = ["| kind | item | variant | result | median ms | p99 ms | FPS | vs oracle |",
           "|---|---|---|---|---|---|---|---|"]
    for s in steps:
        detail = s.detail.replace("|", "/")
        out.append(f"| check | {s.name} | | **{s.status}** ({s.seconds} s): {detail[:160]} | | | | |")
    for r in rows:
        out.append(f"| timing | {r['what']} ({r['shape']}) | {r['variant']} | | {_fmt(r['median_ms'], '.3f')} | "
                   f"{_fmt(r['p99_ms'], '.3f')} | {_fmt(r['fps'], '.1f')} | "
                   f"{_fmt(r['vs_oracle'], '.2f')}{'x' if r['vs_oracle'] is not None else ''} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None,
                    help="write the results here (JSON; default gpu_check.json when the checks run, none in plan mode)")
    ap.add_argument("--frames", type=int, default=50, help="timed frames per model configuration (after 10 warm-up)")
    ap.add_argument("--iters", type=int, default=200, help="timed runs per MSDA kernel measurement")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds; later steps are skipped past it")
    ap.add_argument("--only", nargs="*", default=None, help="run only these steps (names in the plan)")
    ap.add_argument("--plan", action="store_true", help="print what would be checked and exit 0")
    args = ap.parse_args(argv)
    if args.frames < 2 or args.iters < 2 or args.budget <= 0:
        print("gpu_check: --frames and --iters must be >= 2 and --budget > 0", file=sys.stderr)
        return 2
    plan = _plan()
    if args.only:
        unknown = sorted(set(args.only) - {n for n, _ in plan})
        if unknown:
            print(f"gpu_check: unknown step(s) {unknown}; choose from {[n for n, _ in plan]}", file=sys.stderr)
            return 2

    try:
        import torch

        has_gpu = torch.cuda.is_available()
        why = "no CUDA GPU visible to PyTorch" if not has_gpu else ""
        if torch.version.cuda is None:
            why = f"PyTorch {torch.__version__} has no CUDA support"
    except ImportError:
        has_gpu, why = False, "PyTorch is not installed"
    if args.plan or not has_gpu:
        print(f"gpu_check: {'--plan' if args.plan else why}: nothing run. On a GPU machine it would check, in order:")
        for i, (name, what) in enumerate(plan, 1):
            print(f"  {i:2d}. {name}: {' '.join(what.replace('``', '').split())}")
        if args.json:
            args.json.write_text(json.dumps({"ran": False, "reason": "--plan" if args.plan else why,
                                             "steps": [{"name": n, "what": " ".join(w.replace("``", "").split())}
                                                       for n, w in plan]},
                                            indent=2))
        return 0

    if args.json is None:
        args.json = Path("gpu_check.json")
    t0 = time.perf_counter()
    checker = Checker(args)
    steps = checker.run()
    total = time.perf_counter() - t0
    failed = [s.name for s in steps if s.status == "fail"]
    result = {"ran": True, "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
              "seconds": round(total, 1), "failed": failed, "steps": [asdict(s) for s in steps],
              "timings": checker.rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    shutil.rmtree(checker.tmp, ignore_errors=True)
    print(f"\ngpu_check: {len(steps) - len(failed)} of {len(steps)} steps without failure, {total:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else "") + "\n")
    print(table(steps, checker.rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
