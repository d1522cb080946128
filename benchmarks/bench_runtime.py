"""End-to-end streaming throughput and latency per backend, prompt count and prompt-cache setting.

One step = the session's whole per-frame path (resize, backbone, decoder, post-processing to full-resolution
masks and labels) on the same decoded frames of one video (default box.mp4; frames are decoded once up front so
video decoding is not measured). The prompt set alternates between two sets every ``--switch-every`` frames (a user
changing prompts): with the cache on, only the first appearance of each set runs the text encoder; with it off,
every switch does. The switch cost is charged to the frame that follows it.

Backends: ``pytorch`` (CPU, or CUDA when torch sees a GPU), ``onnxruntime-cpu``, and when available
``onnxruntime-cuda`` / ``onnxruntime-tensorrt`` (onnxruntime-gpu) and ``tensorrt`` (``--engine``).

Usage::

    python benchmarks/bench_runtime.py --checkpoint ckpt.pth --tokenizer tok/ [--onnx export_dir] [--engine dir] \
        [--frames 40] [--warmup 5] [--short-side 360] [--threads 2]

Without ``--onnx`` the checkpoint is exported (``--msda onnx``) to a temporary folder at the benchmark's input
size. Without ``--checkpoint`` the bundled demo model (``actionvos.demo``) is used; a checkpoint marked as random
weights makes the title say so.
Prints one Markdown table naming the device.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SETS = [("move box", ["box", "pen", "right hand", "left hand"]), ("rotate bottle", ["bottle", "lid", "right hand", "cup"])]


def device_name() -> str:
    """CPU model and core count, plus the GPU name when one is visible."""
    cpu = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    name = f"{cpu} ({os.cpu_count()} cores)"
    try:
        import subprocess

        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=10).stdout.strip().splitlines()
        if gpu:
            name += f", GPU {gpu[0]}"
    except (OSError, subprocess.SubprocessError):
        pass
    return name


def read_frames(path: Path, n: int) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def bench(backend, tokenizer, frames, n_prompts: int, cache_on: bool, warmup: int, switch_every: int, size):
    """Run the session; returns ``(fps, p50_ms, p99_ms, text_encoder_runs)`` over the timed frames."""
    from actionvos.runtime.prompt_cache import PromptCache
    from actionvos.runtime.session import StreamConfig, StreamSession

    cache = PromptCache(backend.info.model_id, tokenizer.sha256, enabled=cache_on)
    s = StreamSession(backend, StreamConfig(input_size=size), tokenizer, cache)
    sets = [(a, objs[:n_prompts]) for a, objs in SETS]
    s.set_prompts(*sets[0])
    for i in range(warmup):
        s.step(frames[i % len(frames)])
    runs0 = cache.stats.encoder_runs
    lat = []
    t_all = time.perf_counter()
    for i, f in enumerate(frames):
        t0 = time.perf_counter()
        if i % switch_every == 0:
            s.set_prompts(*sets[(i // switch_every + 1) % 2])
        s.step(f)
        lat.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_all
    lat_ms = np.array(lat) * 1e3
    return len(frames) / total, float(np.percentile(lat_ms, 50)), float(np.percentile(lat_ms, 99)), cache.stats.encoder_runs - runs0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--tokenizer", type=Path)
    ap.add_argument("--onnx", type=Path, help="export folder (default: export the checkpoint to a temporary folder)")
    ap.add_argument("--engine", type=Path, help="TensorRT engine folder (tensorrt backend)")
    ap.add_argument("--video", type=Path, default=REPO.parent / "shared" / "data" / "videos" / "box.mp4")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--switch-every", type=int, default=10, help="frames between prompt-set switches")
    ap.add_argument("--short-side", type=int, default=None, help="model input short side (default: the checkpoint's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--backends", nargs="+", default=None,
                    help="subset of pytorch onnxruntime-cpu onnxruntime-gpu tensorrt (default: all available)")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    torch.set_num_threads(args.threads)
    from actionvos.runtime.backends.onnxruntime import OrtBackend
    from actionvos.runtime.backends.pytorch import TorchBackend
    from actionvos.tokenizer import Tokenizer

    tmp = tempfile.TemporaryDirectory()
    if args.checkpoint is None:  # the bundled demo model, on which benchmarks/RESULTS.md was measured
        from actionvos.demo import DEMO_CHECKPOINT, DEMO_TOKENIZER

        args.checkpoint, args.tokenizer = DEMO_CHECKPOINT, args.tokenizer or DEMO_TOKENIZER
    if args.tokenizer is None:
        raise SystemExit("--tokenizer is required with --checkpoint")
    tok = Tokenizer.from_dir(args.tokenizer)
    frames = read_frames(args.video, args.frames)
    torch_dev = "cuda" if torch.cuda.is_available() else "cpu"
    tb = TorchBackend.from_checkpoint(args.checkpoint, device=torch_dev)
    rule = tb.info.card.input
    size = (dataclasses.replace(rule, short_side=args.short_side) if args.short_side else rule).model_size(*frames[0].shape[:2])
    onnx_dir = args.onnx
    if onnx_dir is None:
        from actionvos.export.exporter import export_model

        onnx_dir = Path(tmp.name) / "onnx"
        print(f"exporting {args.checkpoint.name} to ONNX at {size[0]}x{size[1]} ...", file=sys.stderr)
        export_model(args.checkpoint, onnx_dir, height=size[0], width=size[1], frames=1, msda="onnx",
                     max_prompts=max(args.prompts), max_tokens=32)
    backends = {f"pytorch-{torch_dev}": lambda: tb,
                "onnxruntime-cpu": lambda: OrtBackend(onnx_dir, provider="cpu", threads=args.threads)}
    avail = ort.get_available_providers()
    if "CUDAExecutionProvider" in avail:
        backends["onnxruntime-cuda"] = lambda: OrtBackend(onnx_dir, provider="cuda")
    if "TensorrtExecutionProvider" in avail:
        backends["onnxruntime-tensorrt"] = lambda: OrtBackend(onnx_dir, provider="tensorrt")
    if args.engine is not None:
        from actionvos.runtime.backends.tensorrt import TrtBackend

        backends["tensorrt"] = lambda: TrtBackend(args.engine)
    if args.backends:
        backends = {k: v for k, v in backends.items() if any(k.startswith(b.replace("-gpu", "")) for b in args.backends)}
    rows = []
    for name, make in backends.items():
        be = make()
        for n_prompts in args.prompts:
            for cache_on in (True, False):
                fps, p50, p99, runs = bench(be, tok, frames, n_prompts, cache_on, args.warmup, args.switch_every, size)
                rows.append((be.info.name, n_prompts, "on" if cache_on else "off", fps, p50, p99, runs))
                print(f"  {rows[-1]}", file=sys.stderr)
    note = " — RANDOM WEIGHTS (speed only)" if tb.info.weights_note else ""
    print(f"\n### Streaming runtime on {device_name()}{note}\n")
    print(f"Model {tb.cfg.name} ({args.checkpoint.name}), input {size[0]}x{size[1]} from {args.video.name} "
          f"({frames[0].shape[1]}x{frames[0].shape[0]}), {len(frames)} timed frames after {args.warmup} warm-up, "
          f"prompt set switched every {args.switch_every} frames, {args.threads} CPU threads, onnxruntime {ort.__version__}, "
          f"torch {torch.__version__}\n")
    print("| backend | prompts | prompt cache | FPS | p50 latency (ms) | p99 latency (ms) | text-encoder runs |")
    print("|---|---|---|---|---|---|---|")
    for name, n, cache, fps, p50, p99, runs in rows:
        print(f"| {name} | {n} | {cache} | {fps:.2f} | {p50:.1f} | {p99:.1f} | {runs} |")
    tmp.cleanup()


if __name__ == "__main__":
    main()
