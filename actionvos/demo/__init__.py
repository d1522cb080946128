"""The project's demo model: ``demo_small`` trained on CPU on minivisor (two short OpenCV sample videos).

It is NOT the paper's model: it was trained from random initialisation for about 20 minutes on 16 short
sequences, so it only knows the objects and actions of those two videos ("box/pen/right hand used in the
action of move box", "bottle/right hand used in the action of rotate bottle"). Use it to try the pipeline:

    actionvos run VIDEO --action "move box" --objects "box,pen,right hand"     # no model given: the demo

The checkpoint (float32, ~8 MB) is self-contained: its model card (short side 192, the scale it was trained at;
its own gate threshold, chosen on the training split) and its tokenizer are inside, with ``demo_note`` and
``training`` (how it was trained; reproduced by ``benchmarks/train_demo.py``).
The tokenizer is a byte-level BPE in RoBERTa format (``vocab.json`` + ``merges.txt``) trained on the prompts.
"""

from pathlib import Path

__all__ = ["DEMO_DIR", "DEMO_CHECKPOINT", "DEMO_TOKENIZER", "DEMO_NOTE"]

DEMO_DIR = Path(__file__).parent
#: Weights + config of the demo model (``actionvos.model.checkpoint.load_model`` reads it).
DEMO_CHECKPOINT = DEMO_DIR / "actionvos_demo_small.pth"
#: Directory with the demo tokenizer's ``vocab.json`` and ``merges.txt``.
DEMO_TOKENIZER = DEMO_DIR / "tokenizer"
DEMO_NOTE = "demo trained on two short videos (minivisor), not the paper's model"
