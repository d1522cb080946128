"""MSDA CUDA kernels (the TensorRT plugin's msda_kernel.cu, via the torch extension) against the oracle.

Needs a CUDA GPU, a CUDA build of PyTorch and nvcc; the extension is JIT-built on first use (~1 min).
Every call writes into an output pre-filled with NaN, so an element the kernel skips fails the test.
"""

from __future__ import annotations

import inspect
import itertools

import pytest
import torch

from actionvos.model.msda import level_start_index_from_shapes, ms_deform_attn_core

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"),
]

LEVELS = {
    "encoder_like": [(23, 40), (12, 20), (6, 10), (3, 5)],
    "odd_small": [(1, 1), (1, 7), (6, 1), (5, 3)],
    "single": [(17, 13)],
}


@pytest.fixture(scope="module")
def ext():
    from actionvos.export.msda_cuda import load_msda_extension

    return load_msda_extension()


def oracle(value, shapes_hw, loc, aw) -> torch.Tensor:
    """The oracle in FP64 (passes level_start_index when its signature takes it)."""
    kwargs = {}
    if "level_start_index" in inspect.signature(ms_deform_attn_core).parameters:
        kwargs["level_start_index"] = level_start_index_from_shapes(torch.tensor(shapes_hw)).tolist()
    return ms_deform_attn_core(value.double(), spatial_shapes=shapes_hw, sampling_locations=loc.double(),
                               attention_weights=aw.double(), **kwargs)


def make_inputs(shapes_hw, N=4, Lq=37, M=8, D=32, P=4, dtype=torch.float32, seed=0, spread=0.3):
    g = torch.Generator(device="cuda").manual_seed(seed)
    S = sum(h * w for h, w in shapes_hw)
    L = len(shapes_hw)
    value = torch.randn(N, S, M, D, device="cuda", generator=g)
    loc = torch.rand(N, Lq, M, L, P, 2, device="cuda", generator=g) * (1 + 2 * spread) - spread
    aw = torch.rand(N, Lq, M, L, P, device="cuda", generator=g)
    aw = aw / aw.flatten(-2).sum(-1)[..., None, None]
    return value.to(dtype), loc.to(dtype), aw.to(dtype)


def run(ext, value, shapes_hw, loc, aw, shape_dtype=torch.int64, start_dtype=torch.int64, vec=0):
    shapes = torch.tensor(shapes_hw, dtype=shape_dtype, device="cuda")
    starts = level_start_index_from_shapes(torch.tensor(shapes_hw)).to(device="cuda", dtype=start_dtype)
    N, Lq, M = loc.shape[:3]
    out = torch.full((N, Lq, M * value.shape[3]), float("nan"), dtype=value.dtype, device="cuda")
    res = ext.msda_forward(value, shapes, starts, loc, aw, out, vec)
    torch.cuda.synchronize()
    assert res.data_ptr() == out.data_ptr()
    assert not torch.isnan(out).any(), "kernel left elements unwritten (NaN poison) or produced NaN"
    return out


def rel_err(out, ref) -> float:
    return ((out.double() - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("levels", list(LEVELS))
@pytest.mark.parametrize("vec", [0, 1, 2, 4])
def test_fp32_matches_oracle(ext, levels, vec):
    value, loc, aw = make_inputs(LEVELS[levels], N=8, seed=vec)
    out = run(ext, value, LEVELS[levels], loc, aw, vec=vec)
    assert rel_err(out, oracle(value, LEVELS[levels], loc, aw)) <= 1e-5


@pytest.mark.parametrize("itypes", list(itertools.product([torch.int32, torch.int64], repeat=2)))
def test_index_dtypes(ext, itypes):
    shapes_hw = LEVELS["encoder_like"]
    value, loc, aw = make_inputs(shapes_hw, N=2, seed=5)
    out = run(ext, value, shapes_hw, loc, aw, *itypes)
    assert rel_err(out, oracle(value, shapes_hw, loc, aw)) <= 1e-5


@pytest.mark.parametrize("levels", list(LEVELS))
@pytest.mark.parametrize("vec", [0, 1, 2, 4])
def test_fp16_matches_oracle(ext, levels, vec):
    value, loc, aw = make_inputs(LEVELS[levels], N=8, dtype=torch.float16, seed=10 + vec)
    out = run(ext, value, LEVELS[levels], loc, aw, vec=vec)
    assert out.dtype == torch.float16
    ref32 = oracle(value.float(), LEVELS[levels], loc.float(), aw.float())
    assert rel_err(out, ref32) <= 1e-2


def test_full_size_encoder_and_decoder(ext):
    """360x640 input: S = Lq = 4820 (encoder self-attention) and 5 decoder queries; 6 frames x 6 prompts."""
    shapes_hw = [(45, 80), (23, 40), (12, 20), (6, 10)]
    for Lq, N in ((4820, 2), (5, 36)):
        value, loc, aw = make_inputs(shapes_hw, N=N, Lq=Lq, seed=Lq)
        out = run(ext, value, shapes_hw, loc, aw)
        assert rel_err(out, oracle(value, shapes_hw, loc, aw)) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_misaligned_value_falls_back_to_scalar_loads(ext, dtype):
    shapes_hw = LEVELS["odd_small"]
    value, loc, aw = make_inputs(shapes_hw, N=2, dtype=dtype, seed=3)
    flat = torch.empty(value.numel() + 1, dtype=dtype, device="cuda")
    shifted = flat[1:].view_as(value)  # contiguous but one element off vector alignment
    shifted.copy_(value)
    out = run(ext, shifted, shapes_hw, loc, aw)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert rel_err(out, oracle(value.float(), shapes_hw, loc.float(), aw.float())) <= tol
    with pytest.raises(RuntimeError, match="vec=4 impossible"):
        run(ext, shifted, shapes_hw, loc, aw, vec=4)


def test_out_of_image_and_nan_locations_give_zeros(ext):
    shapes_hw = LEVELS["odd_small"]
    value, loc, aw = make_inputs(shapes_hw, N=1, Lq=3, seed=4)
    loc[0, 0] = -0.75  # left of / above every level: all four neighbours outside
    loc[0, 1] = 1e9
    loc[0, 2] = float("nan")
    out = run(ext, value, shapes_hw, loc, aw)
    assert torch.equal(out, torch.zeros_like(out))


def test_bad_arguments_raise(ext):
    shapes_hw = LEVELS["single"]
    value, loc, aw = make_inputs(shapes_hw, N=1, Lq=2, seed=1)
    shapes = torch.tensor(shapes_hw, device="cuda")
    starts = torch.zeros(1, dtype=torch.int64, device="cuda")
    with pytest.raises(RuntimeError, match="vec=3"):
        ext.msda_forward(value, shapes, starts, loc, aw, None, 3)
    with pytest.raises(RuntimeError, match="dtype"):
        ext.msda_forward(value, shapes, starts, loc.half(), aw, None, 0)
    with pytest.raises(RuntimeError, match="CUDA"):
        ext.msda_forward(value.cpu(), shapes, starts, loc, aw, None, 0)


def test_offsets_beyond_32_bits(ext):
    """value has > 2^32 elements: batch 3 starts at 3*S*M*D = 3.3e9, past int32 and uint32 offsets.

    The kernel's batch n = 3 output is compared with the oracle on value[3:4] alone (whose offsets are small).
    Points near the bottom-right corner make the in-level offsets large too. Needs ~44 GB of GPU memory (FP32 value
    of 17.6 GB plus the FP64 oracle of one batch).
    """
    shapes_hw = [(2048, 2100)]
    S = 2048 * 2100
    N, M, D, Lq, P = 4, 8, 32, 6, 4
    need = N * S * M * D * 4 * 2.5  # value (FP32) + the FP64 oracle's copies of one batch
    free, _ = torch.cuda.mem_get_info()
    if free < need:
        pytest.skip(f"needs {need / 2**30:.1f} GiB free GPU memory, {free / 2**30:.1f} GiB free")
    assert 3 * S * M * D > 2**32
    g = torch.Generator(device="cuda").manual_seed(64)
    value = torch.randn(N, S, M, D, device="cuda", generator=g)
    loc = torch.rand(N, Lq, M, 1, P, 2, device="cuda", generator=g)
    loc[:, :3] = 0.9 + 0.1 * loc[:, :3]  # near the last rows/columns
    aw = torch.rand(N, Lq, M, 1, P, device="cuda", generator=g)
    out = run(ext, value, shapes_hw, loc, aw)
    for n in (0, 3):
        ref = oracle(value[n:n + 1], shapes_hw, loc[n:n + 1], aw[n:n + 1])
        assert rel_err(out[n:n + 1], ref) <= 1e-5, f"batch {n}"
    del value


def test_kernel_in_a_captured_cuda_graph(ext):
    """msda_forward captured once, replayed on new input contents (copied into the captured buffers)."""
    shapes_hw = LEVELS["encoder_like"]
    value, loc, aw = make_inputs(shapes_hw, N=2, seed=21)
    shapes = torch.tensor(shapes_hw, dtype=torch.int64, device="cuda")
    starts = level_start_index_from_shapes(shapes)
    out = torch.full((2, loc.shape[1], 256), float("nan"), device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        ext.msda_forward(value, shapes, starts, loc, aw, out, 0)  # warm-up off the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        ext.msda_forward(value, shapes, starts, loc, aw, out, 0)
    for seed in (22, 23):
        v2, l2, a2 = make_inputs(shapes_hw, N=2, seed=seed)
        value.copy_(v2), loc.copy_(l2), aw.copy_(a2)
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert not torch.isnan(out).any()
        assert rel_err(out, oracle(v2, shapes_hw, l2, a2)) <= 1e-5


def test_python_wrapper_does_not_sync(ext):
    """msda_cuda with python shapes uploads them once (cached); later calls run with sync debug mode = error."""
    from actionvos.export.msda_cuda import msda_cuda

    shapes_hw = LEVELS["encoder_like"]
    value, loc, aw = make_inputs(shapes_hw, N=2, seed=31)
    first = msda_cuda(value, shapes_hw, None, loc, aw)  # uploads and caches the index tensors
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        again = msda_cuda(value, shapes_hw, None, loc, aw)
        listed = msda_cuda(value, shapes_hw, [0, 920, 1160, 1220], loc, aw)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.equal(first, again) and torch.equal(first, listed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("D,M,P,Lq", [(3, 1, 1, 1), (6, 3, 3, 29), (10, 5, 2, 7)])
def test_odd_channel_head_point_counts(ext, dtype, D, M, P, Lq):
    """D not a multiple of the vector width (scalar fallback), odd head / point / query counts."""
    shapes_hw = LEVELS["odd_small"]
    value, loc, aw = make_inputs(shapes_hw, N=3, Lq=Lq, M=M, D=D, P=P, dtype=dtype, seed=D * 100 + M)
    out = run(ext, value, shapes_hw, loc, aw)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert rel_err(out, oracle(value.float(), shapes_hw, loc.float(), aw.float())) <= tol
