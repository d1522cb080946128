"""FP32 vs FP16 vs INT8 (Q/DQ) latency in ONNX Runtime, with the accuracy agreement beside the timings.

Builds what is missing: the FP32 export (``--msda onnx``) from ``--checkpoint`` (default: the demo model when it
exists, else ``demo_small`` with random weights, labelled as a pipeline check), the calibration file (box.mp4,
cup.mp4 and minivisor val), the FP16 graphs (default FP32 groups, or ``--measure``) and the INT8 graphs; then times
the segmenter (one clip, the clip's prompt set) and the text encoder on this machine's CPU, and, when ONNX Runtime
has them, on CUDA / TensorRT execution providers.

Usage::

    python benchmarks/bench_precision.py [--checkpoint PTH --tokenizer DIR] [--height 192 --width 256]
        [--work DIR] [--runs 10] [--threads 2] [--method percentile] [--measure]
    python benchmarks/bench_precision.py --onnx FP32_DIR --fp16 DIR --int8 DIR --data eval.npz   # existing graphs

Prints a Markdown table (median / min ms over the runs, then mean mask IoU, gate and query agreement against FP32
ORT CPU on all calibration clips). CPU FP16 note: ONNX Runtime's CPU EP has fp16 kernels for few ops and inserts
casts around the rest, so FP16 on CPU is a correctness check, not a speed-up.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ACTIONVOS_SHARED", REPO.parent / "shared"))


def _time_once(fn) -> list[float]:
    t0 = time.perf_counter()
    fn()
    return [(time.perf_counter() - t0) * 1e3]


def _export(args, work: Path) -> tuple[Path, Path, str]:
    """FP32 export + tokenizer; returns (onnx dir, tokenizer dir, weights label)."""
    from actionvos.export.exporter import export_model

    out = work / "fp32"
    ckpt = Path(args.checkpoint) if args.checkpoint else None
    tok = Path(args.tokenizer) if args.tokenizer else None
    if ckpt is None:
        try:
            from actionvos.demo import DEMO_CHECKPOINT, DEMO_TOKENIZER

            if DEMO_CHECKPOINT.is_file():
                ckpt, tok = DEMO_CHECKPOINT, tok or DEMO_TOKENIZER
        except ImportError:
            pass
    if out.is_dir() and (out / "segmenter.onnx").is_file() and not args.rebuild:
        label = "trained" if ckpt else "random weights (pipeline check only)"
        return out, tok or work / "tokenizer", label
    if ckpt is not None:
        export_model(ckpt, out, height=args.height, width=args.width, frames=args.frames, max_prompts=4,
                     max_tokens=32, msda="onnx", force=True, tokenizer=str(tok) if tok else None)
        return out, tok, f"trained ({ckpt.name})"
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from helpers import train_tiny_tokenizer

    from actionvos.model.builder import build_model
    from actionvos.model.config import get_preset

    torch.manual_seed(0)
    model = build_model(get_preset("demo_small")).eval()
    export_model(None, out, model=model, height=args.height, width=args.width, frames=args.frames, max_prompts=4,
                 max_tokens=32, msda="onnx", force=True)
    return out, train_tiny_tokenizer(work / "tokenizer"), "random weights (pipeline check only)"


def _collect(onnx_dir: Path, tok: Path, work: Path, per_video: int, rebuild: bool) -> Path:
    from actionvos.calibration.collect import collect_calibration
    from actionvos.calibration.npz_store import save_calibration
    from actionvos.calibration.sources import InputSpec

    path = work / "calib.npz"
    if path.is_file() and not rebuild:
        return path
    vids = SHARED / "data" / "videos"
    specs = [
        InputSpec(vids / "box.mp4", action="move box", objects="box,pen,right hand"),  # the model card's template
        InputSpec(vids / "cup.mp4", action="rotate bottle", objects="bottle,right hand"),
        InputSpec(SHARED / "data" / "minivisor", None, "val"),
    ]
    data = collect_calibration(specs, tokenizer=tok, onnx_dir=onnx_dir, per_video=per_video, progress=False)
    save_calibration(path, data)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint")
    ap.add_argument("--tokenizer")
    ap.add_argument("--height", type=int, default=192)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--work", help="keep the graphs and calibration file here (default: a temporary directory)")
    ap.add_argument("--per-video", type=int, default=4, help="calibration clips per video / sequence")
    ap.add_argument("--method", default="percentile", choices=["entropy", "percentile", "minmax"])
    ap.add_argument("--measure", action="store_true", help="measure FP16 sensitivity instead of the default FP32 groups")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rebuild", action="store_true", help="rebuild graphs/data even when --work has them")
    ap.add_argument("--onnx", help="existing FP32 export (--msda onnx); skips the export")
    ap.add_argument("--fp16", help="existing FP16 directory")
    ap.add_argument("--int8", help="existing INT8 Q/DQ directory")
    ap.add_argument("--data", help="existing calibration/evaluation .npz for the agreement columns")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import onnxruntime as ort

    from actionvos.calibration.common import load_graph_dir, make_session
    from actionvos.calibration.npz_store import load_calibration
    from actionvos.calibration.fp16 import convert_dir_fp16
    from actionvos.calibration.int8 import quantize_dir_int8
    from actionvos.calibration.report import build_report

    tmp = None
    if args.work:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench-precision-")
        work = Path(tmp.name)
    if args.onnx:
        onnx_dir = Path(args.onnx)
        sha = load_graph_dir(onnx_dir).facts.checkpoint_sha256
        label = f"checkpoint {sha}" if sha else "random weights (pipeline check only)"
        tok = Path(args.tokenizer) if args.tokenizer else None
    else:
        onnx_dir, tok, label = _export(args, work)
    calib = Path(args.data) if args.data else _collect(onnx_dir, tok, work, args.per_video, args.rebuild)
    fp16_dir = Path(args.fp16) if args.fp16 else work / "fp16"
    int8_dir = Path(args.int8) if args.int8 else work / f"int8_{args.method}"
    if not args.fp16 and (args.rebuild or not (fp16_dir / "segmenter.onnx").is_file()):
        convert_dir_fp16(onnx_dir, fp16_dir, data=calib, measure=args.measure, force=True, threads=args.threads)
    if not args.int8 and (args.rebuild or not (int8_dir / "segmenter.onnx").is_file()):
        quantize_dir_int8(onnx_dir, calib, int8_dir, method=args.method, force=True, report=False, threads=args.threads)
    dirs = {"fp32": onnx_dir, "fp16": fp16_dir, "int8": int8_dir}
    graphs = {k: load_graph_dir(v) for k, v in dirs.items()}
    data = load_calibration(calib)

    rep = build_report(graphs["fp32"], {"fp16": graphs["fp16"], "int8": graphs["int8"]}, data, threads=args.threads)

    providers = ["CPUExecutionProvider"]
    avail = ort.get_available_providers()
    for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        if p in avail:
            providers.append(p)
    clip = 0
    feed_text = data.sets[int(data.prompt_set[clip])].text_feed()
    P = feed_text["input_ids"].shape[0]
    rows = []
    for prov in providers:
        # sessions of all precisions first, then the runs interleaved round-robin, so load from other processes on
        # a shared machine hits every precision alike
        live = {}
        for prec, g in graphs.items():
            try:
                text = make_session(g.text, args.threads, [prov])
                seg = make_session(g.segmenter, args.threads, [prov])
            except Exception as err:  # an EP that cannot take this graph
                rows.append((prov, prec, None, None, None, f"not run: {type(err).__name__}"))
                continue
            word, mask, sent = text.run(None, feed_text)
            feed = data.segmenter_feed(clip, {"text_word": word, "text_mask": mask, "text_sentence": sent})
            seg.run(None, feed)  # warm-up
            text.run(None, feed_text)
            live[prec] = (text, seg, feed, [], [])
        for _ in range(args.runs):
            for prec, (text, seg, feed, seg_ms, text_ms) in live.items():
                seg_ms.extend(_time_once(lambda: seg.run(None, feed)))
                text_ms.extend(_time_once(lambda: text.run(None, feed_text)))
        for prec, (_, _, _, seg_ms, text_ms) in live.items():
            m = None if prec == "fp32" else rep["candidates"][prec]["metrics"]["all"]
            rows.append((prov, prec, seg_ms, text_ms, m, ""))

    inp = data.input_size
    print(f"Precision benchmark: {graphs['fp32'].meta.get('preset') or graphs['fp32'].meta.get('card', {}).get('config', {}).get('name')} ({label}), input {inp['frames']}x{inp['height']}x"
          f"{inp['width']} (TxHxW), P={P} prompts, {args.threads} threads, {args.runs} runs interleaved across precisions; agreement vs FP32 ORT CPU "
          f"on {rep['data']['clips']} real clips not used for calibration ({', '.join(sorted(set(data.source_groups)))}); INT8: "
          f"{graphs['int8'].calibration.get('method', args.method)}.")
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), "
          f"onnxruntime {ort.__version__}, providers available: {', '.join(avail)}\n")
    print("| backend | precision | segmenter ms median (min) | text encoder ms median (min) | mask IoU mean (min) "
          "| gate agree | query agree | pred_masks max / mean abs err |")
    print("|---|---|---|---|---|---|---|---|")
    for prov, prec, seg_ms, text_ms, m, note in rows:
        name = {"CPUExecutionProvider": "ORT CPU", "CUDAExecutionProvider": "ORT CUDA",
                "TensorrtExecutionProvider": "ORT TensorRT"}[prov]
        if seg_ms is None:
            print(f"| {name} | {prec} | {note} | | | | | |")
            continue
        agree = ("1 (reference) | 1 | 1 | 0 / 0" if m is None else
                 f"{m['mask_iou_mean']:.4f} ({m['mask_iou_min']:.3f}) | {m['gate_agreement']:.3f} | "
                 f"{m['query_agreement']:.3f} | {m['errors']['pred_masks']['max_abs']:.3g} / "
                 f"{m['errors']['pred_masks']['mean_abs']:.3g}")
        print(f"| {name} | {prec} | {statistics.median(seg_ms):.1f} ({min(seg_ms):.1f}) | "
              f"{statistics.median(text_ms):.2f} ({min(text_ms):.2f}) | {agree} |")
    if "CUDAExecutionProvider" not in avail:
        print("\nGPU: no CUDA/TensorRT execution provider in this onnxruntime build; GPU rows not measured.")
    print("\nFP16 on ORT CPU runs with casts around ops that lack fp16 CPU kernels: slower than FP32 here; "
          "agreement numbers are what matters on CPU.")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
