"""How much does the causal streaming rule differ from the official clip rule (spec 3.9), through the one pipeline?

For each video (default: shared/data/videos/box.mp4 and cup.mp4), EVERY frame is segmented twice with the same
model, backend, tokenizer and card: once by :class:`~actionvos.pipeline.drivers.ClipDriver` (36-frame clips, one
query per object per clip, one gate per clip, the pixel decoder mixing the clip's frames) and once by
:class:`~actionvos.pipeline.drivers.CausalDriver` per streaming rule (one frame at a time, running or EMA
statistics, ``--window`` frames per decode). Per (video, rule) the table reports, over every (frame, object):

* mask IoU of the final labels (gated and merged, what the PNGs hold; empty vs empty counts as 1),
* mask IoU of the ungated masks (selected query, probability >= the mask threshold),
* gate agreement (streaming gate == the clip's gate) and query agreement (same selected query).

Usage::

    python benchmarks/bench_stream_vs_offline.py [--model CKPT_OR_FOLDER] [--backend auto] [--max-frames N]

Without ``--model`` the bundled demo model is used (its card's weights note is printed with the table).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Prompts of the shared videos (minivisor's expressions); ``--action``/``--objects`` override.
VIDEO_PROMPTS = {"box": ("move box", "box,pen,right hand"), "cup": ("rotate bottle", "bottle,right hand")}


def read_all_frames(path: Path, limit: int | None = None) -> np.ndarray:
    """Every decodable frame of a video (at most ``limit``) as ``[N, H, W, 3]`` uint8 RGB."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while limit is None or len(frames) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise SystemExit(f"cannot read frames from {path}")
    return np.stack(frames)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; two empty masks count as 1."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def collect(results, P: int):
    """Per frame: labels, ungated masks ``[P, H, W]``, gates ``[P]``, selected queries ``[P]``."""
    out = []
    for r in results:
        out.append((r.labels, np.stack([o.prob >= 0.5 for o in r.objects]), np.array([o.passed_gate for o in r.objects]),
                    np.array([o.selected_query for o in r.objects])))
    assert all(len(o[2]) == P for o in out)
    return out


def compare(ref, other, P: int) -> dict:
    lab, ung, gate, query = [], [], [], []
    for (l0, m0, g0, q0), (l1, m1, g1, q1) in zip(ref, other):
        for i in range(P):
            lab.append(iou(l0 == i + 1, l1 == i + 1))
            ung.append(iou(m0[i], m1[i]))
        gate.append(g0 == g1)
        query.append(q0 == q1)
    return {"iou_labels": float(np.mean(lab)), "iou_ungated": float(np.mean(ung)),
            "gate": float(np.mean(np.concatenate(gate))), "query": float(np.mean(np.concatenate(query)))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint, export folder or engine folder (default: the demo)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--videos", nargs="+", type=Path,
                    default=[REPO.parent / "shared" / "data" / "videos" / f"{v}.mp4" for v in VIDEO_PROMPTS])
    ap.add_argument("--max-frames", type=int, default=None, help="limit frames per video (default: every frame)")
    ap.add_argument("--window", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    from actionvos.artifacts import open_model
    from actionvos.pipeline.drivers import CausalDriver, ClipDriver, StreamConfig

    torch.set_num_threads(args.threads)
    be, tok = open_model(args.model, backend=args.backend, tokenizer=args.tokenizer, threads=args.threads)
    card = be.info.card
    rows = []
    for video in args.videos:
        action, objects = VIDEO_PROMPTS.get(video.stem, (None, None))
        frames = read_all_frames(video, args.max_frames)
        cfg = StreamConfig(return_probs=True)
        clip = ClipDriver(be, cfg, tok)
        prompts = clip.set_prompts(action, objects)
        P = len(prompts)
        t0 = time.perf_counter()
        ref = collect(clip.run(frames), P)
        t_clip = time.perf_counter() - t0
        clip_gates = np.stack([r[2] for r in ref])
        for temporal, horizon in (("mean", 30), ("ema", 30)):
            d = CausalDriver(be, StreamConfig(temporal=temporal, horizon=horizon, window=args.window, return_probs=True),
                             tok, clip.cache)
            d.set_prompts(prompts=prompts)
            t0 = time.perf_counter()
            other = collect((d.step(f) for f in frames), P)
            t_stream = time.perf_counter() - t0
            m = compare(ref, other, P)
            rows.append((video.stem, action, f"{temporal} (horizon {horizon}), T={args.window}", len(frames), m,
                         float(clip_gates.mean()), t_clip, t_stream))
    print(f"\nStreaming (causal rule) vs the official clip rule through the one pipeline: {card.config.name}, "
          f"backend {be.info.name}, gate {card.thresholds.pos_cls_thres} ({card.thresholds.rule}); "
          f"{card.weights_note or 'released weights'}\n")
    print("| video | action | causal rule | frames | IoU labels | IoU ungated masks | gate agreement | query agreement "
          "| clip gates passed | clip rule s | causal s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for v, a, rule, n, m, passed, tc, ts in rows:
        print(f"| {v} | {a} | {rule} | {n} | {m['iou_labels']:.3f} | {m['iou_ungated']:.3f} | {m['gate']:.3f} | "
              f"{m['query']:.3f} | {passed:.3f} | {tc:.1f} | {ts:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
