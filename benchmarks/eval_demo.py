"""Evaluate the demo model on minivisor's val split against two baselines and print a Markdown table.

Usage::

    python benchmarks/eval_demo.py [--data ../shared/data/minivisor] [--short-side 192] [--json out.json]

Rows (all with the official inference rule of spec 3.9 via :func:`actionvos.inference.offline.run_offline`:
shorter side resized to ``--short-side`` (default: the checkpoint's, 192 = the training scale), one query per
clip by the frame-mean score, positive gate, merge with background 0.1 and threshold 0.5; palette PNGs at
640×480; metrics of spec 10 on every (object, sparse frame) pair of the 7 val sequences):

* **demo model** — ``actionvos/demo/actionvos_demo_small.pth``, gate 0.75;
* **all objects positive** — the same model with the gate off (``pos_thres = 0``);
* **random weights** — ``demo_small`` built with ``torch.manual_seed(0)``, gate 0.75.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KEYS = ("p_mIoU", "n_mIoU", "p_cIoU", "n_cIoU", "gIoU", "Acc")


def predict_and_score(model, cfg, tokenizer, data: Path, out: Path, pos_thres: float) -> dict:
    """Write val predictions with the official rule into ``out`` and return :func:`evaluate_folder`'s dict."""
    from actionvos.inference.offline import run_offline
    from actionvos.inference.video_io import open_source
    from actionvos.training.metrics import evaluate_folder

    source = open_source(data / "ImageSets" / "val_meta_expressions_promptaction.json", split="val")
    run_offline(source, None, model, tokenizer, cfg, out, pos_thres=pos_thres, progress=False, overlay=False)
    return evaluate_folder(out / "val", data / "Annotations_Sparse" / "val", data / "ImageSets" / "val.json")


def markdown(rows: list[tuple[str, dict]]) -> str:
    head = "| model | " + " | ".join(k + (" ↓" if k.startswith("n_") else "") for k in KEYS) + " |"
    sep = "|---|" + "---:|" * len(KEYS)
    lines = [head, sep]
    for name, m in rows:
        lines.append(f"| {name} | " + " | ".join("n/a" if m[k] != m[k] else f"{m[k]:.1f}" for k in KEYS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "minivisor")
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: actionvos.demo.DEMO_CHECKPOINT")
    ap.add_argument("--tokenizer", type=Path, default=None, help="default: actionvos.demo.DEMO_TOKENIZER")
    ap.add_argument("--short-side", type=int, default=None, help="inference short side (default: the checkpoint's)")
    ap.add_argument("--json", type=Path, default=None, help="also write all metrics here")
    ap.add_argument("--keep", type=Path, default=None, help="keep the prediction folders here")
    ap.add_argument("--also-gate", type=float, nargs="*", default=[],
                    help="extra rows: the demo model with these gate thresholds (e.g. 0.5)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from actionvos.demo import DEMO_CHECKPOINT, DEMO_TOKENIZER
    from actionvos.model.builder import build_model
    from actionvos.model.checkpoint import load_model
    from actionvos.model.text import load_tokenizer

    model, cfg, meta = load_model(args.checkpoint or DEMO_CHECKPOINT)
    if args.short_side:
        cfg = dataclasses.replace(cfg, short_side=args.short_side)
    tokenizer = load_tokenizer(args.tokenizer or DEMO_TOKENIZER)
    torch.manual_seed(0)
    random_model = build_model(cfg)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        runs = [(f"demo model (gate {cfg.pos_cls_thres})", model, cfg.pos_cls_thres, "model"),
                ("all objects positive (gate off)", model, 0.0, "all_positive"),
                (f"random weights (seed 0, gate {cfg.pos_cls_thres})", random_model, cfg.pos_cls_thres, "random")]
        runs += [(f"demo model (gate {g})", model, g, f"gate_{g}") for g in args.also_gate]
        for name, net, thr, sub in runs:
            rows.append((name, predict_and_score(net, cfg, tokenizer, args.data, base / sub, thr)))
    print(f"minivisor val: 7 sequences, {rows[0][1]['num_pairs']} object-frame pairs; inference short side "
          f"{cfg.short_side}; metrics in percent (n_mIoU / n_cIoU: lower is better)\n")
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps({n: m for n, m in rows}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
