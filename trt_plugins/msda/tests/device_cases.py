"""Inputs for ``plugin_device_check`` (the C++ driver running the plugin library on a GPU) and the FP64 comparison.

Used by ``benchmarks/gpu_check.py`` and ``tests/gpu/test_plugin_device.py``; standard library, numpy and torch (CPU
is enough: the oracle runs in FP64 on the CPU). Every case is written as raw little-endian files next to a
``cases.txt`` line (format in ``plugin_device_check.cpp``); the cases change shape from one to the next, so the
driver's ``onShapeChange`` → ``enqueue`` sequence sees a shape change each time, and the last case repeats the
first shape.

Tolerances (relative to ``max|oracle|``): FP32 ≤ 1e-5, FP16 ≤ 1e-2 (inputs rounded to FP16 first, so the error is
the kernel's arithmetic plus one output rounding). Any NaN in an output fails (outputs are pre-filled with NaN bytes
by the driver; inputs with NaN locations must give 0, not NaN).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Case", "DEFAULT_CASES", "SANITIZER_CASES", "write_cases", "compare_outputs", "build_driver",
           "TOLERANCE"]

HERE = Path(__file__).resolve().parent
DRIVER_SRC = HERE / "plugin_device_check.cpp"
TOLERANCE = {"f32": 1e-5, "f16": 1e-2}


@dataclass(frozen=True)
class Case:
    """One driver case: name, float type, index types, level shapes, N, Lq, M, D, P, and special locations."""

    name: str
    ftype: str  # f32 | f16
    stype: str  # i32 | i64
    itype: str  # i32 | i64
    levels: tuple[tuple[int, int], ...]
    N: int
    Lq: int
    M: int = 8
    D: int = 32
    P: int = 4
    special: bool = False  # first queries: all outside the image, huge, NaN
    seed: int = 0


ENC = ((45, 80), (23, 40), (12, 20), (6, 10))  # rf_r101_actionvos at 360x640
ODD = ((1, 1), (1, 7), (6, 1), (5, 3))
DEFAULT_CASES = (
    Case("odd_f32", "f32", "i64", "i64", ODD, N=3, Lq=37, D=6, P=3, special=True, seed=1),
    Case("encoder_f32", "f32", "i64", "i32", ENC, N=2, Lq=4820, seed=2),
    Case("decoder_f16", "f16", "i32", "i32", ENC, N=6, Lq=5, seed=3),
    Case("encoder_f16", "f16", "i32", "i64", ENC, N=1, Lq=4820, special=True, seed=4),
    Case("odd_f32_again", "f32", "i64", "i64", ODD, N=3, Lq=37, D=6, P=3, special=True, seed=5),
)
SANITIZER_CASES = (
    Case("san_odd_f32", "f32", "i64", "i32", ODD, N=2, Lq=9, D=6, P=3, special=True, seed=11),
    Case("san_odd_f16", "f16", "i32", "i64", ODD, N=2, Lq=9, D=8, P=2, special=True, seed=12),
    Case("san_small_f32", "f32", "i32", "i32", ((7, 9), (4, 5)), N=1, Lq=11, seed=13),
)


def _inputs(c: Case) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(c.seed)
    S = sum(h * w for h, w in c.levels)
    L = len(c.levels)
    fdt = np.float16 if c.ftype == "f16" else np.float32
    value = rng.standard_normal((c.N, S, c.M, c.D)).astype(fdt)
    loc = (rng.random((c.N, c.Lq, c.M, L, c.P, 2)) * 1.6 - 0.3).astype(fdt)  # some outside [0, 1]
    aw = rng.random((c.N, c.Lq, c.M, L, c.P))
    aw = (aw / aw.reshape(c.N, c.Lq, c.M, -1).sum(-1)[..., None, None]).astype(fdt)
    if c.special and c.Lq >= 3:
        loc[:, 0] = -0.75  # every neighbour outside
        loc[:, 1] = 1e4 if c.ftype == "f16" else 1e9
        loc[:, 2, :, :, :, 0] = np.nan
    sdt = np.int64 if c.stype == "i64" else np.int32
    idt = np.int64 if c.itype == "i64" else np.int32
    shapes = np.array(c.levels, dtype=sdt).reshape(L, 2)
    areas = [h * w for h, w in c.levels]
    starts = np.array([sum(areas[:i]) for i in range(L)], dtype=idt)
    return {"value": value, "shapes": shapes, "starts": starts, "loc": loc, "aw": aw}


def write_cases(directory: str | os.PathLike, cases=DEFAULT_CASES) -> Path:
    """Write ``cases.txt`` and the input files into ``directory`` (created); returns it."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    lines = []
    for c in cases:
        arrs = _inputs(c)
        for k, a in arrs.items():
            np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tofile(d / f"{c.name}.{k}.bin")
        S = sum(h * w for h, w in c.levels)
        lines.append(f"{c.name} {c.ftype} {c.stype} {c.itype} {c.N} {S} {c.M} {c.D} {len(c.levels)} {c.P} {c.Lq}")
    (d / "cases.txt").write_text("\n".join(lines) + "\n")
    return d


def _oracle64(c: Case, arrs: dict[str, np.ndarray]) -> np.ndarray:
    import torch

    from actionvos.model.msda import ms_deform_attn_core

    t = {k: torch.from_numpy(arrs[k].astype(np.float64)) for k in ("value", "loc", "aw")}
    # Contract: a sample with a NaN coordinate contributes 0 (grid_sample would give NaN): move it off the image.
    t["loc"] = torch.nan_to_num(t["loc"], nan=-10.0)
    starts = [int(s) for s in arrs["starts"]]
    out = ms_deform_attn_core(t["value"], list(c.levels), starts, t["loc"], t["aw"])
    return out.numpy()


def compare_outputs(directory: str | os.PathLike, cases=DEFAULT_CASES) -> list[dict]:
    """Compare ``NAME.plain.bin`` / ``NAME.graph.bin`` with the FP64 oracle; one dict per case and mode.

    Keys: ``case``, ``mode`` (plain | graph), ``rel_err`` (max|out - ref| / max|ref|), ``nan`` (count), ``tol``,
    ``ok``; ``error`` when the output file is missing or has the wrong size.
    """
    d = Path(directory)
    rows = []
    for c in cases:
        arrs = _inputs(c)
        ref = _oracle64(c, arrs)
        fdt = np.float16 if c.ftype == "f16" else np.float32
        for mode in ("plain", "graph"):
            row = {"case": c.name, "mode": mode, "tol": TOLERANCE[c.ftype]}
            path = d / f"{c.name}.{mode}.bin"
            if not path.is_file() or path.stat().st_size != ref.size * np.dtype(fdt).itemsize:
                row.update(ok=False, error=f"{path.name} missing or of the wrong size")
                rows.append(row)
                continue
            out = np.fromfile(path, dtype=np.dtype(fdt).newbyteorder("<")).reshape(ref.shape).astype(np.float64)
            nan = int(np.isnan(out).sum())
            scale = float(np.abs(ref).max()) or 1.0
            err = float(np.nanmax(np.abs(out - ref)) / scale) if nan < out.size else float("inf")
            row.update(rel_err=err, nan=nan, ok=nan == 0 and err <= TOLERANCE[c.ftype])
            rows.append(row)
    return rows


def build_driver(out_path: str | os.PathLike, tensorrt_include: str, nvcc: str | None = None) -> Path:
    """Compile ``plugin_device_check.cpp`` with nvcc (CUDA runtime linked statically, no libnvinfer).

    Raises:
        FileNotFoundError: no nvcc.
        RuntimeError: compilation failed (the compiler's last lines in the message).
    """
    nvcc = nvcc or shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    if not Path(nvcc).is_file():
        raise FileNotFoundError("nvcc not found: set CUDACXX or put the CUDA toolkit's bin/ on PATH")
    cmd = [nvcc, "-std=c++17", "-O2", "-isystem", tensorrt_include, str(DRIVER_SRC), "-o", str(out_path), "-ldl"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"compiling {DRIVER_SRC.name} failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    return Path(out_path)
