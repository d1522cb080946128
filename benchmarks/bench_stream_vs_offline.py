"""How much does causal streaming differ from the offline rule (spec 3.9) on the same checkpoint?

For each video (default: shared/data/videos/box.mp4 and cup.mp4) the first ``--frames`` frames form one offline
clip (the reference clips are up to 36 frames): the offline rule sees the whole clip at once (one query per object
for the clip, one clip-level gate, the pixel decoder mixing all frames). The streaming session sees one frame at a
time with a causal rule. Per (video, rule) the table reports, over every (frame, object):

* mask IoU of the final labels (gated and merged, what the PNGs hold; empty vs empty counts as 1),
* mask IoU of the ungated masks (selected query, probability >= 0.5) — meaningful even when gates reject,
* gate agreement (streaming running gate == offline clip gate) and query agreement.

Both paths run PyTorch eager on the CPU with the same checkpoint, tokenizer and input size.

Usage::

    python benchmarks/bench_stream_vs_offline.py --checkpoint ckpt.pth --tokenizer tok/ [--frames 36] \
        [--short-side 360] [--action "move box"] [--objects "box,pen,right hand"] [--threads 2]

Without ``--checkpoint`` the bundled demo model (``actionvos.demo``) is used; a checkpoint marked as random
weights makes the table title say so.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


#: Prompts of the shared videos (minivisor's expressions, spec 4 template); ``--action``/``--objects`` override.
VIDEO_PROMPTS = {"box": ("move box", "box,pen,right hand"), "cup": ("rotate bottle", "bottle,right hand")}


def read_frames(path: Path, n: int, start: int = 0, step: int = 1) -> np.ndarray:
    """``n`` decodable frames of a video (every ``step``-th from ``start``) as ``[n, H, W, 3]`` uint8 RGB."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    index = 0
    while len(frames) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        if index >= start and (index - start) % step == 0:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        index += 1
    cap.release()
    if not frames:
        raise SystemExit(f"cannot read frames from {path}")
    return np.stack(frames)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; 1.0 when both are empty."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def offline(model, tokenizer, frames, prompts, cfg, size):
    """The official rule on one clip: labels ``[T, H, W]``, ungated masks ``[P, T, H, W]``, gate ``[P]``, query ``[P]``."""
    import torch

    from actionvos.model.postprocess import clip_predictions, merge_labels, normalize_frames
    from actionvos.runtime.frame_ops import resize_frame

    small = np.stack([resize_frame(f, size) for f in frames])
    ids, mask = tokenizer([p.text for p in prompts])
    with torch.no_grad():
        out = model(normalize_frames(small), torch.from_numpy(ids), torch.from_numpy(mask))
    pred = clip_predictions(out, out_size=frames.shape[1:3], pos_thres=cfg.pos_cls_thres)
    labels = merge_labels(pred.mask_prob_gated, cfg.mask_threshold, cfg.background_prob).numpy()
    return labels, (pred.mask_prob >= cfg.mask_threshold).numpy(), pred.passed_gate.numpy(), pred.selected_query.numpy()


def streaming(backend, tokenizer, frames, prompts, config):
    from actionvos.runtime.session import StreamSession

    s = StreamSession(backend, config, tokenizer)
    s.set_prompts(prompts=prompts)
    labels, masks, gates, queries = [], [], [], []
    for f in frames:
        r = s.step(f)
        labels.append(r.labels)
        masks.append([o.prob >= s.mask_threshold for o in r.objects])
        gates.append([o.passed_gate for o in r.objects])
        queries.append([o.selected_query for o in r.objects])
    return np.stack(labels), np.array(masks).transpose(1, 0, 2, 3), np.array(gates).T, np.array(queries).T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--tokenizer", type=Path)
    ap.add_argument("--videos", type=Path, nargs="+")
    ap.add_argument("--frames", type=int, default=36, help="frames per video = the offline clip (<= 36)")
    ap.add_argument("--short-side", type=int, default=None, help="model input short side (default: the checkpoint's)")
    ap.add_argument("--action", default=None, help="action for every video (default: per video, see VIDEO_PROMPTS)")
    ap.add_argument("--objects", default=None, help="objects for every video (default: per video)")
    ap.add_argument("--start", type=int, default=0, help="first decoded frame")
    ap.add_argument("--step", type=int, default=1, help="take every step-th frame (minivisor: 4 for box, 3 for cup)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ema-horizon", type=int, default=10)
    ap.add_argument("--window", type=int, default=4)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from actionvos.inference.prompts import build_prompts
    from actionvos.runtime.backends.pytorch import TorchBackend
    from actionvos.runtime.frame_ops import model_input_size
    from actionvos.runtime.session import StreamConfig
    from actionvos.runtime.tokenizer import BpeTokenizer

    if args.checkpoint is None:  # the bundled demo model, on which benchmarks/RESULTS.md was measured
        from actionvos.demo import DEMO_CHECKPOINT, DEMO_TOKENIZER

        args.checkpoint, args.tokenizer = DEMO_CHECKPOINT, args.tokenizer or DEMO_TOKENIZER
    if args.tokenizer is None:
        raise SystemExit("--tokenizer is required with --checkpoint")
    shared = REPO.parent / "shared" / "data" / "videos"
    videos = args.videos or [shared / "box.mp4", shared / "cup.mp4"]
    backend = TorchBackend.from_checkpoint(args.checkpoint)
    cfg = backend.cfg
    tok = BpeTokenizer.from_dir(args.tokenizer)
    short = args.short_side or cfg.short_side
    rules = [("mean, window 1", StreamConfig(temporal="mean")),
             (f"ema h={args.ema_horizon}, window 1", StreamConfig(temporal="ema", horizon=args.ema_horizon)),
             (f"mean, window {args.window}", StreamConfig(temporal="mean", window=args.window))]
    rows = []
    t0 = time.perf_counter()
    for video in videos:
        action, objects = VIDEO_PROMPTS.get(video.stem, ("move box", "box,pen,right hand"))
        prompts = build_prompts(args.action or action, args.objects or objects, cfg.prompt_template)
        frames = read_frames(video, min(args.frames, cfg.max_clip_frames), args.start, args.step)
        size = model_input_size(*frames.shape[1:3], short)
        rules_sized = [(n, StreamConfig(**{**c.__dict__, "input_size": size, "return_probs": True})) for n, c in rules]
        off_labels, off_masks, off_gate, off_query = offline(backend.model, tok, frames, prompts, cfg, size)
        for name, config in rules_sized:
            labels, masks, gates, queries = streaming(backend, tok, frames, prompts, config)
            P, T = masks.shape[:2]
            iou_lab = np.mean([iou(labels[t] == i + 1, off_labels[t] == i + 1) for i in range(P) for t in range(T)])
            iou_raw = np.mean([iou(masks[i, t], off_masks[i, t]) for i in range(P) for t in range(T)])
            gate_agree = np.mean(gates == off_gate[:, None])
            query_agree = np.mean(queries == off_query[:, None])
            rows.append((video.stem, f"{T} × {size[0]}x{size[1]}", args.action or action, name, iou_lab, iou_raw, gate_agree, np.mean(gates[:, -1] == off_gate),
                         query_agree, int(off_gate.sum()), P))
    note = " — RANDOM WEIGHTS (pipeline check only: masks and gates are not meaningful)" if backend.info.weights_note else ""
    print(f"\n### Streaming vs offline rule, PyTorch CPU, checkpoint {args.checkpoint.name}{note}\n")
    print(f"Offline = one clip of all frames (spec 3.9), frames {args.start}, {args.start + args.step}, ... of each video; "
          f"elapsed {time.perf_counter() - t0:.0f} s\n")
    print("| video | clip | action | streaming rule | IoU labels | IoU ungated masks | gate agreement (all frames) | gate agreement (last frame) | query agreement | offline gates passed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for v, clip, act, name, a, b, g, gl, q, npass, P in rows:
        print(f"| {v} | {clip} | {act} | {name} | {a:.3f} | {b:.3f} | {g:.3f} | {gl:.3f} | {q:.3f} | {npass}/{P} |")


if __name__ == "__main__":
    main()
