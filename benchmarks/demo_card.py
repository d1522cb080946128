"""Record the positive-gate threshold chosen for the bundled demo model in its model card (issue 12).

    python benchmarks/demo_card.py --pos-thres T --rule "how T was chosen"

``benchmarks/train_demo.py --install`` writes the demo checkpoint with its card (training scale, official clip rule)
and tokenizer; the threshold is chosen afterwards on the training split (``benchmarks/eval_demo.py --choose-on
train``) and written here: only ``card.thresholds`` changes, the weights and every other fact stay.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    import torch

    from actionvos.card import ModelCard
    from actionvos.demo import DEMO_CHECKPOINT
    from actionvos.errors import CheckpointError
    from actionvos.io_utils import atomic_path
    from actionvos.model.checkpoint import file_sha256, read_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pos-thres", type=float, required=True, help="the gate threshold in [0, 1]")
    ap.add_argument("--rule", required=True, help="how the threshold was chosen (recorded in the card)")
    args = ap.parse_args(argv)
    state, meta = read_checkpoint(DEMO_CHECKPOINT)
    if not isinstance(meta.get("card"), dict):
        raise CheckpointError(f"{DEMO_CHECKPOINT} has no model card; write it with benchmarks/train_demo.py --install")
    card = ModelCard.from_dict(meta["card"], where=str(DEMO_CHECKPOINT))
    card = dataclasses.replace(card, thresholds=dataclasses.replace(card.thresholds, pos_cls_thres=args.pos_thres,
                                                                    rule=args.rule).check())
    meta["card"] = card.to_dict()
    with atomic_path(DEMO_CHECKPOINT) as tmp:
        torch.save({"model": state, **meta}, tmp)
    print(f"wrote {DEMO_CHECKPOINT} (card: gate {card.thresholds.pos_cls_thres}, {card.thresholds.rule}; "
          f"file sha {file_sha256(DEMO_CHECKPOINT)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
