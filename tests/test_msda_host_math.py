"""CPU check of the MSDA CUDA kernel's maths against the PyTorch oracle (no GPU needed).

``trt_plugins/msda/tests/host_harness.cpp`` compiles the kernel's per-thread code (``compute_item``,
``load_level_meta``, ``bilinear_taps`` from ``msda_kernel.cuh``) with the host C++ compiler and runs it over every
work item as the kernel's grid-stride loop would. This exercises the kernel's index arithmetic, the channel-group
widths (VEC 1/2/4), 32/64-bit item arithmetic, the int32/int64 index tensor paths, FP16 storage and zero padding
for out-of-image points.
Vector loads (float2/half2) are device-only and are covered by ``tests/gpu/test_msda_kernel.py``.
"""

from __future__ import annotations

import inspect
import itertools
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from actionvos.model.msda import level_start_index_from_shapes, ms_deform_attn_core

def oracle(value, shapes_hw, loc, aw):
    """The PyTorch oracle in FP64 (passes level_start_index when the oracle's signature takes it)."""
    kwargs = {}
    if "level_start_index" in inspect.signature(ms_deform_attn_core).parameters:
        kwargs["level_start_index"] = level_start_index_from_shapes(torch.tensor(shapes_hw)).tolist()
    return ms_deform_attn_core(value.double(), spatial_shapes=shapes_hw, sampling_locations=loc.double(),
                               attention_weights=aw.double(), **kwargs)


REPO = Path(__file__).resolve().parents[1]
MSDA_DIR = REPO / "trt_plugins" / "msda"


def _cuda_include() -> Path | None:
    """Directory holding cuda_fp16.h (the kernel header includes it even in host builds)."""
    cands = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        cands.append(str(Path(nvcc).resolve().parents[1]))
    for c in cands:
        if c and (Path(c) / "include" / "cuda_fp16.h").is_file():
            return Path(c) / "include"
    return None


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    inc = _cuda_include()
    if cxx is None:
        pytest.skip("no host C++ compiler (g++/c++) found")
    if inc is None:
        pytest.skip("CUDA headers (cuda_fp16.h) not found; set CUDA_HOME")
    exe = tmp_path_factory.mktemp("msda_harness") / "host_harness"
    cmd = [cxx, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-isystem", str(inc), f"-I{MSDA_DIR}",
           str(MSDA_DIR / "tests" / "host_harness.cpp"), "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"harness compile failed:\n{' '.join(cmd)}\n{res.stderr}"
    return exe


def _run(harness: Path, tmp: Path, value, shapes, starts, loc, aw, vec: int, items: str = "i32") -> torch.Tensor:
    """Runs the harness; ``items`` is the kernel's item-index type (``i32`` or ``i64``)."""
    N, S, M, D = value.shape
    _, Lq, _, L, P, _ = loc.shape
    fp = "fp16" if value.dtype == torch.float16 else "fp32"
    ity = {torch.int32: "i32", torch.int64: "i64"}
    meta = f"{fp} {ity[shapes.dtype]} {ity[starts.dtype]} {items} {vec} {N} {S} {M} {D} {L} {P} {Lq}\n"
    (tmp / "meta.txt").write_text(meta)
    for name, t in (("value", value), ("shapes", shapes), ("starts", starts), ("loc", loc), ("aw", aw)):
        t.contiguous().numpy().tofile(tmp / f"{name}.bin")
    res = subprocess.run([str(harness), str(tmp)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = np.fromfile(tmp / "out.bin", dtype=np.float16 if fp == "fp16" else np.float32)
    return torch.from_numpy(out).view(N, Lq, M * D)


def _inputs(shapes_hw, N=2, Lq=7, M=3, D=8, P=3, dtype=torch.float32, seed=0, spread=0.3):
    """Random MSDA inputs; locations spread ``spread`` beyond [0, 1] on each side so ~1/3 fall outside."""
    g = torch.Generator().manual_seed(seed)
    S = sum(h * w for h, w in shapes_hw)
    L = len(shapes_hw)
    value = torch.randn(N, S, M, D, generator=g)
    loc = torch.rand(N, Lq, M, L, P, 2, generator=g) * (1 + 2 * spread) - spread
    aw = torch.rand(N, Lq, M, L, P, generator=g)
    aw = aw / aw.flatten(-2).sum(-1)[..., None, None]
    return value.to(dtype), loc.to(dtype), aw.to(dtype)


LEVELS = {
    "four_levels": [(9, 16), (5, 8), (3, 4), (2, 2)],
    "one_pixel_and_strips": [(1, 1), (1, 7), (6, 1), (4, 5)],
    "single_level": [(12, 10)],
}


@pytest.mark.parametrize("levels", list(LEVELS), ids=list(LEVELS))
@pytest.mark.parametrize("vec", [1, 2, 4])
@pytest.mark.parametrize("itypes", list(itertools.product([torch.int32, torch.int64], repeat=2)),
                         ids=lambda t: "-".join(str(x).split(".")[-1] for x in t))
def test_fp32_matches_oracle(harness, tmp_path, levels, vec, itypes):
    shapes_hw = LEVELS[levels]
    value, loc, aw = _inputs(shapes_hw, seed=10 * list(LEVELS).index(levels) + vec)
    shapes = torch.tensor(shapes_hw, dtype=itypes[0])
    starts = level_start_index_from_shapes(torch.tensor(shapes_hw)).to(itypes[1])
    ref = oracle(value, shapes_hw, loc, aw).float()
    for items in ("i32", "i64"):  # the kernel's 32- and 64-bit item arithmetic
        out = _run(harness, tmp_path, value, shapes, starts, loc, aw, vec, items)
        assert torch.isfinite(out).all(), "unwritten (NaN-poisoned) or non-finite outputs"
        err = (out - ref).abs().max().item() / ref.abs().max().item()
        assert err <= 1e-5, f"items {items}: max relative error {err:.3g}"


def test_points_on_edges_and_far_outside(harness, tmp_path):
    """Exact pixel centres, edges, the half-pixel border band, far-away, huge and NaN locations."""
    shapes_hw = [(4, 6), (3, 3)]
    value, loc, aw = _inputs(shapes_hw, N=1, Lq=12, M=2, D=4, P=4, seed=3)
    special = torch.tensor([0.0, 1.0, -0.1, 1.1, 0.5 / 6, 1 - 0.5 / 6, -1e9, 1e9, 0.999999, 1e-7, -0.05, 1.05])
    loc[0, :, :, :, :, 0] = special[:, None, None, None]
    loc[0, :, :, :, :, 1] = special.flip(0)[:, None, None, None]
    shapes = torch.tensor(shapes_hw, dtype=torch.int64)
    starts = level_start_index_from_shapes(shapes)
    out = _run(harness, tmp_path, value, shapes, starts, loc, aw, 2)
    ref = oracle(value, shapes_hw, loc, aw).float()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # NaN locations contribute nothing (the kernel never reads memory for them).
    loc[0, 0] = float("nan")
    out_nan = _run(harness, tmp_path, value, shapes, starts, loc, aw, 2)
    assert torch.equal(out_nan[0, 0], torch.zeros_like(out_nan[0, 0]))


def test_fp16_storage(harness, tmp_path):
    """FP16 tensors, FP32 accumulation: compare with the oracle run in FP64 on the same FP16 inputs."""
    shapes_hw = LEVELS["four_levels"]
    value, loc, aw = _inputs(shapes_hw, N=3, Lq=5, M=2, D=8, P=4, dtype=torch.float16, seed=7)
    shapes = torch.tensor(shapes_hw, dtype=torch.int32)
    starts = level_start_index_from_shapes(shapes)
    for vec in (1, 2, 4):
        out = _run(harness, tmp_path, value, shapes, starts, loc, aw, vec)
        ref = oracle(value, shapes_hw, loc, aw)
        assert out.dtype == torch.float16 and torch.isfinite(out).all()
        err = (out.double() - ref).abs().max().item() / ref.abs().max().item()
        assert err <= 1e-3, f"vec={vec}: max relative error {err:.3g} (only the final FP16 rounding expected)"


def test_malformed_level_is_skipped_not_read_out_of_bounds(harness, tmp_path):
    """A level whose start/extent does not fit in S contributes zeros instead of reading outside value;
    the levels after it are still sampled from the right offsets."""
    shapes_hw = [(4, 4), (2, 2), (3, 3)]
    value, loc, aw = _inputs(shapes_hw, N=2, Lq=3, M=2, D=2, P=2, seed=11)
    shapes = torch.tensor(shapes_hw, dtype=torch.int32)
    bad_starts = torch.tensor([0, 27, 20], dtype=torch.int32)  # level 1: 27 + 4 > S = 29
    out = _run(harness, tmp_path, value, shapes, bad_starts, loc, aw, 1)
    keep = [0, 2]
    ref = oracle(torch.cat([value[:, :16], value[:, 20:]], 1), [shapes_hw[i] for i in keep],
                 loc[:, :, :, keep], aw[:, :, :, keep]).float()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
