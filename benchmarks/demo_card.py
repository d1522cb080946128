"""Give the bundled demo checkpoint its model card and tokenizer (self-contained artifact, issue 9), and record the
positive-gate threshold chosen for it (issue 12).

    python benchmarks/demo_card.py --pos-thres T --rule "how T was chosen"

Reads ``actionvos/demo/actionvos_demo_small.pth`` (weights + config of version 0.1, or an earlier card), writes it
back with ``card`` (demo_small architecture, short side 192 = its training scale, the official 36-frame clips, mask
0.5 / background 0.1, the given gate threshold and rule, weights note) and ``tokenizer`` (the files of
``actionvos/demo/tokenizer``).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    import torch

    from actionvos.artifacts import checkpoint_extras
    from actionvos.card import InputRule, ModelCard, Thresholds, card_for_checkpoint
    from actionvos.demo import DEMO_CHECKPOINT, DEMO_NOTE, DEMO_TOKENIZER
    from actionvos.io_utils import atomic_path
    from actionvos.model.checkpoint import file_sha256, read_checkpoint, weights_sha256
    from actionvos.model.config import ModelConfig
    from actionvos.tokenizer import Tokenizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pos-thres", type=float, default=None, help="the gate threshold (default: keep the card's)")
    ap.add_argument("--rule", default=None, help="how the threshold was chosen (recorded in the card; default: keep)")
    args = ap.parse_args(argv)
    state, meta = read_checkpoint(DEMO_CHECKPOINT)
    tok = Tokenizer.from_dir(DEMO_TOKENIZER)
    if isinstance(meta.get("card"), dict):
        card = ModelCard.from_dict(meta["card"], where=str(DEMO_CHECKPOINT))
    else:
        raw = dict(meta["config"])
        card = card_for_checkpoint(ModelConfig.from_dict(raw), "", legacy=raw)
    card = dataclasses.replace(
        card, checkpoint_sha256=weights_sha256(state), tokenizer_sha256=tok.sha256, weights_note=DEMO_NOTE,
        input=InputRule(short_side=192, max_clip_frames=36),
        thresholds=Thresholds(card.thresholds.pos_cls_thres if args.pos_thres is None else args.pos_thres, 0.5, 0.1,
                              rule=card.thresholds.rule if args.rule is None else args.rule), overrides=())
    obj = {"model": state, **checkpoint_extras(card, tok)}
    obj.update({k: v for k, v in meta.items() if k in ("training", "epoch", "demo_note", "threshold_selection")})
    with atomic_path(DEMO_CHECKPOINT) as tmp:
        torch.save(obj, tmp)
    print(f"wrote {DEMO_CHECKPOINT} (card: gate {card.thresholds.pos_cls_thres}, {card.thresholds.rule}; "
          f"file sha {file_sha256(DEMO_CHECKPOINT)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
