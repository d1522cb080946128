"""Benchmark the MSDA CUDA kernel (TensorRT plugin kernels, via the torch extension) against the oracle.

    python benchmarks/bench_msda_kernel.py [--iters 50] [--warmup 10] [--vec 0]

Times, with CUDA events (median of ``--iters`` after ``--warmup``), the plugin kernel and the grid_sample oracle
(``actionvos.model.msda.ms_deform_attn_core``) for encoder-like (S = Lq = 4820, 360x640 input) and decoder-like
(Lq = 5) sizes in FP32 and FP16, and prints a table. Without a CUDA GPU it says so and exits 0.

Fair comparison: both sides get their index inputs the way the model hands them over without a host sync — the
kernel device tensors, the oracle python lists (the oracle's ``level_start_index.tolist()`` on a CUDA tensor would
be a device→host copy inside the timed region, which the PyTorch model no longer does either).
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys

import torch

from actionvos.model.msda import level_start_index_from_shapes, ms_deform_attn_core, starts_from_shapes

LEVELS = [(45, 80), (23, 40), (12, 20), (6, 10)]  # 360x640 input, strides 8..64; S = 4820
CASES = [  # name, N (frames x prompts), Lq
    ("encoder N=1", 1, 4820),
    ("encoder N=6", 6, 4820),
    ("decoder N=36", 36, 5),
    ("decoder N=6", 6, 5),
]
M, D, P = 8, 32, 4


def _oracle(value, shapes, starts, loc, aw):
    if "level_start_index" in inspect.signature(ms_deform_attn_core).parameters:
        return ms_deform_attn_core(value, shapes, starts, loc, aw)
    return ms_deform_attn_core(value, shapes, loc, aw)


def _time_ms(fn, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--vec", type=int, default=0, help="channels per thread (0 = automatic, 1, 2, 4)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_msda_kernel: no CUDA GPU available; nothing to benchmark.")
        return 0
    from actionvos.export.msda_cuda import load_msda_extension

    ext = load_msda_extension()
    shapes_hw = LEVELS
    S = sum(h * w for h, w in shapes_hw)
    shapes = torch.tensor(shapes_hw, dtype=torch.int64, device="cuda")
    starts = level_start_index_from_shapes(shapes)
    starts_list = starts_from_shapes(shapes_hw)  # the oracle's offsets as python ints: no .tolist() sync timed
    print(f"device: {torch.cuda.get_device_name()}  M={M} D={D} L={len(shapes_hw)} P={P} S={S}  "
          f"median of {args.iters} (vec={args.vec or 'auto'})")
    print(f"{'case':<16}{'dtype':<8}{'kernel ms':>11}{'oracle ms':>11}{'speed-up':>10}{'max rel err':>13}")
    for name, N, Lq in CASES:
        for dtype in (torch.float32, torch.float16):
            g = torch.Generator(device="cuda").manual_seed(0)
            value = torch.randn(N, S, M, D, device="cuda", generator=g).to(dtype)
            loc = (torch.rand(N, Lq, M, len(shapes_hw), P, 2, device="cuda", generator=g) * 1.2 - 0.1).to(dtype)
            aw = torch.rand(N, Lq, M, len(shapes_hw), P, device="cuda", generator=g)
            aw = (aw / aw.flatten(-2).sum(-1)[..., None, None]).to(dtype)
            out = torch.empty(N, Lq, M * D, device="cuda", dtype=dtype)
            t_kernel = _time_ms(lambda: ext.msda_forward(value, shapes, starts, loc, aw, out, args.vec),
                                args.iters, args.warmup)
            t_oracle = _time_ms(lambda: _oracle(value, shapes_hw, starts_list, loc, aw), args.iters, args.warmup)
            ref = _oracle(value.float(), shapes_hw, starts_list, loc.float(), aw.float())
            err = ((out.float() - ref).abs().max() / ref.abs().max()).item()
            print(f"{name:<16}{str(dtype).split('.')[-1]:<8}{t_kernel:>11.3f}{t_oracle:>11.3f}"
                  f"{t_oracle / t_kernel:>9.1f}x{err:>13.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
