"""Per-frame latency of the rf_r101_actionvos preset (random weights) at 360×640 on this machine's CPU.

(a) the reference way: the whole model once per prompt (what inference_actionvos.py does);
(b) this package's way: the backbone once per frame, the P prompts decoded in one batch.
Text encoding is excluded from both (the runtime caches it per prompt) and timed separately.

Usage: python benchmarks/bench_model.py [--runs 5] [--threads 2] [--prompts 1 4] [--preset rf_r101_actionvos]
Prints a Markdown table: median and min over the runs, per frame.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from actionvos.model.builder import build_model


def _time(fn, runs: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="rf_r101_actionvos")
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, nargs="+", default=[1, 4])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.preset)
    frames = torch.randn(1, 3, args.height, args.width)
    rows = []
    with torch.inference_mode():
        for P in args.prompts:
            ids = torch.randint(3, 1000, (P, 12))
            ids[:, 0], ids[:, -1] = 0, 2
            am = torch.ones_like(ids)
            text = model.encode_text(ids, am)
            singles = [text.select(slice(i, i + 1)) for i in range(P)]

            def reference_way():
                for t in singles:  # whole model (backbone included) once per prompt
                    model.decode(model.encode_frames(frames), t)

            def batched_way():
                model.decode(model.encode_frames(frames), text)

            t_text = _time(lambda: model.encode_text(ids, am), args.runs)
            t_ref = _time(reference_way, args.runs)
            t_bat = _time(batched_way, args.runs)
            rows.append((P, statistics.median(t_ref), min(t_ref), statistics.median(t_bat), min(t_bat),
                         statistics.median(t_text)))
    print(f"\n{args.preset} (random weights), {args.height}x{args.width}, 1 frame, CPU {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, torch {torch.__version__}, median of {args.runs} runs (min in brackets)\n")
    print("| prompts | (a) model once per prompt, s/frame | (b) backbone once + batched prompts, s/frame | speed-up | text encode (cached at runtime), s |")
    print("|---|---|---|---|---|")
    for P, mr, nr, mb, nb, tt in rows:
        print(f"| {P} | {mr:.2f} ({nr:.2f}) | {mb:.2f} ({nb:.2f}) | {mr / mb:.2f}x | {tt:.3f} |")


if __name__ == "__main__":
    main()
