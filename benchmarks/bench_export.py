"""Per-frame latency on this machine's CPU: PyTorch eager vs ONNX Runtime (``--msda onnx`` export), R101 preset.

The ``rf_r101_actionvos`` preset with seeded random weights is exported at 360x640 (T = 1 frame) with
:func:`actionvos.export.exporter.export_model` (or an existing export is reused with ``--onnx-dir``). The same
inputs go to both backends: one real frame of ``shared/data/videos/box.mp4`` (resized with cv2; random pixels if the
video is missing) and P random prompts of 12 tokens. The segmenter (backbone once, P prompts decoded in one batch)
is timed for each P; text encoding is timed separately (the runtime caches it per prompt). Reported: median and
min over ``--runs`` runs after one warm-up, per frame (clip latency / T), plus the largest |ORT - PyTorch| of the
mask logits.

On a machine where ``torch.cuda.is_available()``, the MSDA plugin kernels (``actionvos.export.msda_cuda``) are also
timed against the grid_sample oracle at the R101 decoder/encoder sizes (guarded; skipped on CPU).

Usage: python benchmarks/bench_export.py [--runs 5] [--threads 2] [--prompts 1 4] [--onnx-dir DIR]
Prints Markdown tables to stdout only.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from actionvos.export.custom_ops import ort_session  # noqa: E402
from actionvos.export.exporter import export_model  # noqa: E402
from actionvos.export.graphs import normalize_uint8  # noqa: E402
from actionvos.export.metadata import read_onnx_metadata, spec_from_metadata  # noqa: E402
from actionvos.model.builder import build_model  # noqa: E402


def _time(fn, runs: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _frame(height: int, width: int) -> np.ndarray:
    """``[1, 3, H, W]`` uint8 RGB: frame 0 of box.mp4, or random pixels."""
    shared = Path(os.environ.get("ACTIONVOS_SHARED", REPO.parent / "shared"))
    video = shared / "data" / "videos" / "box.mp4"
    try:
        import cv2

        cap = cv2.VideoCapture(str(video))
        ok, bgr = cap.read()
        cap.release()
        if ok:
            rgb = cv2.cvtColor(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
            return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
    except ImportError:
        pass
    return np.random.default_rng(0).integers(0, 256, size=(1, 3, height, width), dtype=np.uint8)


def _gpu_msda_table(runs: int) -> list[str]:
    """Plugin kernel vs grid_sample oracle at R101 sizes (360x640, P=4 prompts, T=1), CUDA only."""
    from actionvos.export.msda_cuda import MsdaExtensionError, msda_cuda
    from actionvos.model.msda import level_start_index_from_shapes, ms_deform_attn_core

    shapes = torch.tensor([(45, 80), (23, 40), (12, 20), (6, 10)], device="cuda")
    S = int(shapes.prod(1).sum())
    starts = level_start_index_from_shapes(shapes)
    rows = ["", "| MSDA core (CUDA) | Lq | oracle (grid_sample) ms | plugin kernel ms |", "|---|---|---|---|"]
    for label, lq in (("encoder self-attn", S), ("decoder cross-attn", 5)):
        N, M, D, L, P = 4, 8, 32, 4, 4
        value = torch.randn(N, S, M, D, device="cuda")
        loc = torch.rand(N, lq, M, L, P, 2, device="cuda")
        w = torch.rand(N, lq, M, L * P, device="cuda").softmax(-1).view(N, lq, M, L, P)

        def timed(fn):
            fn()
            torch.cuda.synchronize()
            out = []
            for _ in range(runs):
                t0 = time.perf_counter()
                fn()
                torch.cuda.synchronize()
                out.append((time.perf_counter() - t0) * 1e3)
            return statistics.median(out)

        oracle = timed(lambda: ms_deform_attn_core(value, shapes, starts, loc, w))
        try:
            plugin = f"{timed(lambda: msda_cuda(value, shapes, starts, loc, w)):.3f}"
        except MsdaExtensionError as err:
            plugin = f"n/a ({err})"
        rows.append(f"| {label} | {lq} | {oracle:.3f} | {plugin} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="rf_r101_actionvos")
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--tokens", type=int, default=12)
    ap.add_argument("--onnx-dir", type=Path, default=None,
                    help="reuse an export of the same preset made with --msda onnx (random weights seed 0)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.preset)
    tmp = None
    export_s = None
    if args.onnx_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_export_")
        out = Path(tmp.name) / "export"
        t0 = time.perf_counter()
        export_model(None, out, model=model, msda="onnx", frames=1, height=args.height, width=args.width,
                     max_prompts=max(args.prompts))
        export_s = time.perf_counter() - t0
    else:
        out = args.onnx_dir
    specs = {r: spec_from_metadata(read_onnx_metadata(out / f"{r}.onnx")) for r in ("text_encoder", "segmenter")}
    # no spinning: idle ORT threads would otherwise steal the cores PyTorch is timed on
    text_sess = ort_session(out / "text_encoder.onnx", threads=args.threads, spinning=False)
    seg_sess = ort_session(out / "segmenter.onnx", threads=args.threads, spinning=False)
    frames = _frame(args.height, args.width)
    T = frames.shape[0]
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    rows = []
    with torch.inference_mode():
        for P in args.prompts:
            feed_text = specs["text_encoder"].dummy_inputs(seed=P, P=P, L=args.tokens)
            feed_text["attention_mask"][:] = 1
            feed_text["input_ids"][:, -1] = 2
            ids_t, am_t = torch.from_numpy(feed_text["input_ids"]), torch.from_numpy(feed_text["attention_mask"])
            text = model.encode_text(ids_t, am_t)
            seg_feed = {"frames": frames, "text_word": text.word.numpy(), "text_mask": text.mask.numpy(),
                        "text_sentence": text.sentence.numpy()}
            frames_t = torch.from_numpy(frames)

            def torch_seg():
                return model.decode(model.encode_frames(normalize_uint8(frames_t, mean, std)), text)

            def ort_seg():
                return seg_sess.run(None, seg_feed)

            ref = torch_seg()["pred_masks"].numpy()
            got = dict(zip(specs["segmenter"].output_names, ort_seg()))["pred_masks"]
            diff = float(np.abs(got - ref).max())
            t_torch, t_ort = _time(torch_seg, args.runs), _time(ort_seg, args.runs)
            tt_torch = _time(lambda: model.encode_text(ids_t, am_t), args.runs)
            tt_ort = _time(lambda: text_sess.run(None, feed_text), args.runs)
            rows.append((P, t_torch, t_ort, tt_torch, tt_ort, diff, float(np.abs(ref).max())))

    ms = lambda xs: f"{statistics.median(xs) / T * 1e3:.0f} (min {min(xs) / T * 1e3:.0f})"  # noqa: E731
    print(f"### Segmenter per-frame latency, {args.preset} (random weights), {args.height}x{args.width}, T={T}")
    print()
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads; "
          f"torch {torch.__version__}; onnxruntime {__import__('onnxruntime').__version__}; median (min) of "
          f"{args.runs} runs in ms" + (f"; export took {export_s:.0f} s" if export_s else ""))
    print()
    print("| prompts P | PyTorch eager ms/frame | ONNX Runtime (--msda onnx) ms/frame | speed-up | "
          "max abs diff pred_masks (max abs value) |")
    print("|---|---|---|---|---|")
    for P, a, b, _, _, diff, scale in rows:
        print(f"| {P} | {ms(a)} | {ms(b)} | {statistics.median(a) / statistics.median(b):.2f}x | "
              f"{diff:.2e} ({scale:.1f}) |")
    print()
    print(f"### Text encoder (separate, cached per prompt by the runtime), L={args.tokens} tokens")
    print()
    print("| prompts P | PyTorch eager ms | ONNX Runtime ms |")
    print("|---|---|---|")
    for P, _, _, a, b, _, _ in rows:
        print(f"| {P} | {statistics.median(a) * 1e3:.0f} | {statistics.median(b) * 1e3:.0f} |")
    if torch.cuda.is_available():
        print("\n".join(_gpu_msda_table(args.runs)))
    else:
        print()
        print("(no CUDA: the plugin-kernel vs grid_sample comparison runs only on a GPU)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
