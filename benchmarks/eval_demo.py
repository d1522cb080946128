"""Evaluate the demo model on minivisor with the one pipeline, over a grid of gate thresholds, and choose the
demo's gate threshold on its training split (issue 12). Prints Markdown tables.

Usage::

    # choose the threshold on train, report train + val at the chosen value and at 0.75 (+ baselines on val)
    python benchmarks/eval_demo.py --splits train val --choose-on train --thresholds 0.30:0.90:0.01 --baselines
    # record it in the demo's card
    python benchmarks/demo_card.py --pos-thres T --rule "<the rule printed above>"
    # the demo at its own (card) threshold and at 0.75 on val; --check-folder re-scores the card threshold through
    # run_source (PNGs on disk) + evaluate_folder, the `actionvos evaluate` path
    python benchmarks/eval_demo.py --check-folder

How: every video of a split (one ActionVOS expression-file video per sequence) runs **once** through
:class:`actionvos.pipeline.drivers.ClipDriver` (the official clip rule: clips of at most 36 frames, query by the
frame-mean score, one positive probability per object and clip) with the gate off (``pos_thres = 0``) and
``return_probs``. For every frame, each gate pattern a threshold can produce (objects whose clip positive
probability is >= the threshold: at most P + 1 patterns) is merged with
:func:`actionvos.pipeline.frames.merge_labels_np` (mask threshold 0.5, background 0.1, the card's) and scored with
:class:`actionvos.training.metrics.MetricAccumulator` (spec §10, the same per-pair rule as ``evaluate_folder``:
every (object colour, sparse frame) pair of the split's unflagged sequences). A threshold then only picks a pattern
per frame, so the whole grid costs one model pass.

Threshold rule (``--choose-on``): the grid value that maximises gIoU on that split; ties (gIoU is piecewise constant
in the threshold) → the middle of the longest run of consecutive maximising grid values (the lower of the two middle
values when the run has an even length); runs of equal length → the one whose middle is closest to 0.75.

Rows: the demo at each ``--report`` threshold (default: the card's and 0.75; plus the chosen one); with
``--baselines`` also the gate off (``pos_thres = 0``) and random weights (``demo_small`` with
``torch.manual_seed(0)``, gate 0.75) on every split.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KEYS = ("p_mIoU", "n_mIoU", "p_cIoU", "n_cIoU", "gIoU", "Acc")
PAPER_THRES = 0.75
RULE_TEXT = ("maximises gIoU on minivisor train (grid {grid}, official clip rule, short side 192; ties: middle of "
             "the longest maximising run)")


@dataclass
class FrameScores:
    """One scored frame: the clip positive probabilities of its objects and, per gate pattern, its pair results."""

    pos_prob: np.ndarray  # [P]
    pairs: dict = field(default_factory=dict)  # tuple(passed) -> list[PairResult]


@dataclass
class SplitScores:
    """All scored frames of one split (``frames``) plus bookkeeping."""

    split: str
    frames: list[FrameScores]
    num_sequences: int
    missing: int
    seconds: float

    def metrics(self, thres: float) -> dict:
        """The spec §10 metrics (percent) with the gate at ``thres``."""
        from actionvos.training.metrics import MetricAccumulator

        acc = MetricAccumulator()
        for f in self.frames:
            key = tuple(bool(v) for v in f.pos_prob >= thres)
            for r in f.pairs[key]:
                acc.add(r)
        out = acc.result()
        out.update(num_sequences=self.num_sequences, missing_predictions=self.missing)
        return out


def parse_grid(spec: str) -> list[float]:
    """``"0.30:0.90:0.01"`` (inclusive) or ``"0.5,0.6,0.75"`` → sorted thresholds rounded to 4 decimals."""
    if ":" in spec:
        lo, hi, step = (float(x) for x in spec.split(":"))
        n = int(round((hi - lo) / step))
        vals = [lo + i * step for i in range(n + 1)]
    else:
        vals = [float(x) for x in spec.split(",") if x.strip()]
    return sorted({round(v, 4) for v in vals})


def choose_threshold(grid: list[float], gious: list[float], prefer: float = PAPER_THRES) -> tuple[float, tuple[float, float]]:
    """The rule of the module docstring. Returns ``(threshold, (first, last) of its maximising run)``."""
    best = max(gious)
    runs, start = [], None
    for i, g in enumerate(gious):
        if abs(g - best) <= 1e-9:
            start = i if start is None else start
        elif start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(gious) - 1))
    mid = lambda r: grid[(r[0] + r[1]) // 2]  # noqa: E731
    s, e = max(runs, key=lambda r: (r[1] - r[0], -abs(mid(r) - prefer)))
    return mid((s, e)), (grid[s], grid[e])


def score_split(backend, tokenizer, data: Path, split: str, progress: bool = True) -> SplitScores:
    """Run every video of ``split`` once (gate off, probability maps kept) and score every gate pattern."""
    from actionvos.inference.video_io import open_source
    from actionvos.pipeline.drivers import ClipDriver, StreamConfig
    from actionvos.pipeline.frames import merge_labels_np
    from actionvos.training.metrics import _read_labels, load_split, score_pair, sequence_folder_name

    gt_root = data / "Annotations_Sparse" / split
    seqs = [s for s in load_split(data / "ImageSets" / f"{split}.json")
            if not (s.get("redundant") or s.get("other") or s.get("missing"))]
    wanted = {sequence_folder_name(s): s for s in seqs}
    source = open_source(data / "ImageSets" / f"{split}_meta_expressions_promptaction.json", split=split)
    driver = ClipDriver(backend, StreamConfig(pos_thres=0.0, return_probs=True), tokenizer)
    thr, bg = driver.mask_threshold, driver.background
    frames: dict[tuple[str, str], FrameScores] = {}
    t0 = time.perf_counter()
    for n, video in enumerate(source.videos):
        seq_name = video.name.split("/", 1)[-1]
        seq = wanted.get(seq_name)
        if seq is None:
            continue
        sparse = {f.rsplit(".", 1)[0] for f in seq["sparse_frames"]}
        colours = {int(k): bool(o["positive"]) for k, o in seq["object_classes"].items()}
        driver.reset()
        driver.set_prompts(prompts=video.prompts)
        names: list[str] = []
        results = []
        for clip in video.clips(driver.clip_frames):
            for name, frame in zip(clip.names, clip.frames):
                names.append(name)
                results += driver.push(frame)
        results += driver.flush()
        for name, res in zip(names, results):
            if name not in sparse:
                continue
            probs = np.stack([o.prob for o in res.objects])  # [P, H, W], not gated
            pp = np.array([o.positive_prob for o in res.objects], np.float64)
            gt = _read_labels(gt_root / seq_name / f"{name}.png")
            fs = FrameScores(pos_prob=pp)
            # every pattern a threshold can give: objects with pp >= v for each v, and none
            for v in sorted(set(pp.tolist())) + [np.inf]:
                passed = pp >= v
                labels = merge_labels_np(probs * passed[:, None, None].astype(np.float32), thr, bg)
                fs.pairs[tuple(bool(x) for x in passed)] = [score_pair(labels == k, gt == k, pos)
                                                            for k, pos in colours.items()]
            frames[(seq_name, name)] = fs
        if progress:
            print(f"  {split} {n + 1}/{len(source.videos)} {seq_name}: positive probabilities "
                  + ", ".join(f"{p.name} {o.positive_prob:.3f}" for p, o in zip(video.prompts, results[0].objects)),
                  file=sys.stderr, flush=True)
    seconds = time.perf_counter() - t0
    ordered, missing = [], 0
    for seq in seqs:  # the split's order; a frame without a prediction scores as an empty one (evaluate_folder)
        folder = sequence_folder_name(seq)
        for f in seq["sparse_frames"]:
            fs = frames.get((folder, f.rsplit(".", 1)[0]))
            if fs is None:
                missing += 1
                gt = _read_labels(gt_root / folder / f.replace("jpg", "png"))
                empty = [score_pair(np.zeros(gt.shape, bool), gt == int(k), bool(o["positive"]))
                         for k, o in seq["object_classes"].items()]
                fs = FrameScores(pos_prob=np.zeros(0), pairs={(): empty})
            ordered.append(fs)
    return SplitScores(split, ordered, len(seqs), missing, seconds)


def steps(curve: dict[float, float]) -> str:
    """``"0.3: 80.1, 0.62: 85.0, ..."``: the first grid value, every value where the metric changes, and the last."""
    items = list(curve.items())
    keep = [(t, g) for i, (t, g) in enumerate(items) if i in (0, len(items) - 1) or g != items[i - 1][1]]
    return ", ".join(f"{t:g}: {g:.1f}" for t, g in keep)


def markdown(rows: list[tuple[str, dict]]) -> str:
    head = "| model | " + " | ".join(k + (" ↓" if k.startswith("n_") else "") for k in KEYS) + " |"
    lines = [head, "|---|" + "---:|" * len(KEYS)]
    for name, m in rows:
        lines.append(f"| {name} | " + " | ".join("n/a" if m[k] != m[k] else f"{m[k]:.1f}" for k in KEYS) + " |")
    return "\n".join(lines)


def check_folder(backend, tokenizer, data: Path, out: Path) -> dict:
    """The card threshold through the `actionvos run` path: run_source → PNGs → evaluate_folder on val."""
    from actionvos.inference.video_io import open_source
    from actionvos.pipeline.drivers import ClipDriver
    from actionvos.pipeline.run import run_source
    from actionvos.training.metrics import evaluate_folder

    source = open_source(data / "ImageSets" / "val_meta_expressions_promptaction.json", split="val")
    run_source(source, None, ClipDriver(backend, None, tokenizer), out, overlay=False, plot=False, progress=False)
    return evaluate_folder(out / "val", data / "Annotations_Sparse" / "val", data / "ImageSets" / "val.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "minivisor")
    ap.add_argument("--model", default=None, help="checkpoint (default: the bundled demo)")
    ap.add_argument("--splits", nargs="+", default=["val"], choices=["train", "val"])
    ap.add_argument("--thresholds", default="0.30:0.90:0.01",
                    help="grid for --choose-on and the gIoU curve: LO:HI:STEP (inclusive) or a comma list")
    ap.add_argument("--choose-on", choices=["train", "val"], default=None,
                    help="choose the gate on this split by the rule of the docstring (must be in --splits)")
    ap.add_argument("--report", type=float, nargs="*", default=None,
                    help="thresholds for the table rows (default: the card's and 0.75)")
    ap.add_argument("--baselines", action="store_true", help="also: gate off, and random weights at 0.75")
    ap.add_argument("--check-folder", action="store_true",
                    help="also score val at the card threshold via run_source + evaluate_folder (PNGs on disk)")
    ap.add_argument("--json", type=Path, default=None, help="write every metric and the gIoU curves here")
    args = ap.parse_args(argv)
    if args.choose_on and args.choose_on not in args.splits:
        ap.error(f"--choose-on {args.choose_on} needs that split in --splits")

    import torch

    torch.set_num_threads(1)
    from actionvos.artifacts import open_model

    backend, tokenizer = open_model(args.model, backend="pytorch", device="cpu")
    card = backend.info.card
    card_thres = card.thresholds.pos_cls_thres
    grid = parse_grid(args.thresholds)
    print(f"model {card.config.name} ({card.model_id}); card gate {card_thres} "
          f"({card.thresholds.rule}); short side {card.input.short_side}; torch {torch.__version__}, 1 thread",
          file=sys.stderr)

    scores = {s: score_split(backend, tokenizer, args.data, s) for s in args.splits}
    report = {"card_threshold": card_thres, "card_rule": card.thresholds.rule, "grid": grid, "splits": {}}
    chosen = None
    if args.choose_on:
        sc = scores[args.choose_on]
        gious = [sc.metrics(t)["gIoU"] for t in grid]
        chosen, run = choose_threshold(grid, gious)
        report["chosen"] = {"threshold": chosen, "maximising_run": run, "gIoU": max(gious),
                            "rule": RULE_TEXT.format(grid=args.thresholds)}
        print(f"\nchosen on {args.choose_on}: gate {chosen} (max gIoU {max(gious):.2f} on [{run[0]}, {run[1]}] of the grid "
              f"{args.thresholds})\nrule: {RULE_TEXT.format(grid=args.thresholds)}")
    thresholds = args.report if args.report is not None else [card_thres, PAPER_THRES]
    if chosen is not None:
        thresholds = [chosen] + thresholds
    thresholds = list(dict.fromkeys(round(t, 4) for t in thresholds))

    random_scores = {}
    if args.baselines:
        from actionvos.model.builder import build_model
        from actionvos.runtime.backends.pytorch import TorchBackend

        torch.manual_seed(0)
        rnd = TorchBackend(build_model(card.config).eval(), card, device="cpu")
        random_scores = {s: score_split(rnd, tokenizer, args.data, s, progress=False) for s in args.splits}

    for s, sc in scores.items():
        rows = []
        for t in thresholds:
            tags = [x for x, v in (("chosen on train", chosen), ("card", card_thres), ("paper", PAPER_THRES)) if v == t]
            rows.append((f"demo, gate {t:g}" + (f" ({', '.join(tags)})" if tags else ""), sc.metrics(t)))
        if args.baselines:
            rows.append(("demo, gate off (all objects positive)", sc.metrics(0.0)))
            rows.append((f"random weights (seed 0), gate {PAPER_THRES}", random_scores[s].metrics(PAPER_THRES)))
        curve = {t: sc.metrics(t)["gIoU"] for t in grid}
        pp = np.concatenate([f.pos_prob for f in sc.frames]) if sc.frames else np.zeros(0)
        print(f"\n### minivisor {s}: {sc.num_sequences} sequences, {rows[0][1]['num_pairs']} object-frame pairs, "
              f"one model pass {sc.seconds:.0f} s (CPU, 1 thread); percent, n_*: lower is better\n")
        print(markdown(rows))
        print(f"\ngIoU over the grid ({s}; where it changes): {steps(curve)}")
        report["splits"][s] = {"rows": dict(rows), "gIoU_curve": curve, "seconds": sc.seconds,
                               "positive_probs_range": [float(pp.min()), float(pp.max())] if len(pp) else None}
    if args.check_folder:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            m = check_folder(backend, tokenizer, args.data, Path(tmp))
        mem = scores["val"].metrics(card_thres) if "val" in scores else None
        print(f"\nrun_source + evaluate_folder on val at the card gate {card_thres}: "
              + " ".join(f"{k} {m[k]:.2f}" for k in KEYS)
              + ("" if mem is None else "  (in-memory: " + " ".join(f"{k} {mem[k]:.2f}" for k in KEYS) + ")"))
        report["check_folder_val"] = m
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
