"""A tiny synthetic ActionVOS dataset (spec §5 layout) for fast training tests on CPU.

Two sequences of ``frames`` sparse frames of ``size``×``size`` pixels; each has two objects: a positive square
(colour 1, weight code 4) and a negative square (colour 2, weight code 1). Optional dense frames between the
sparse ones for the pseudo-label tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import train_tiny_tokenizer  # noqa: E402,F401  (re-exported for the tests)

SEQS = [("00000001_vid_move_box", "move box", "box"), ("00000002_vid_rotate_bottle", "rotate bottle", "bottle")]


def _palette() -> list[int]:
    pal = []
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def _png(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr.astype(np.uint8), mode="P")
    im.putpalette(_palette())
    im.save(path)


def _frame(size: int, t: float, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    img = (rng.rand(size, size, 3) * 60 + 100).astype(np.uint8)
    lab = np.zeros((size, size), np.uint8)
    o = int(round(2 * t))
    lab[4 + o:size // 2 + o, 4:size // 2] = 1
    lab[size // 2 + 4:size - 4, size // 2 + 4:size - 4] = 2
    img[lab == 1] = (200, 40, 40)
    img[lab == 2] = (40, 40, 200)
    return img, lab


def make_dataset(root: Path, split: str = "train", size: int = 64, frames: int = 2, dense_between: int = 0) -> Path:
    """Write the dataset under ``root``; with ``dense_between > 0`` also ``root/dense/{split}/{seq}/*.jpg``.

    Sparse frame ``i`` is named ``frame_{(dense_between+1)*i:010d}``; dense frames fill the indices between.
    Returns ``root``.
    """
    rng = np.random.RandomState(0)
    root = Path(root)
    meta, split_list = {"videos": {}}, []
    step = dense_between + 1
    for sid, (folder, narration, noun) in enumerate(SEQS, 1):
        names = [f"frame_{i * step:010d}" for i in range(frames)]
        for t, name in enumerate(names):
            img, lab = _frame(size, t, rng)
            (root / "JPEGImages_Sparse" / split / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / "JPEGImages_Sparse" / split / folder / f"{name}.jpg", quality=95)
            _png(lab, root / "Annotations_Sparse" / split / folder / f"{name}.png")
            _png(np.where(lab == 1, 4, 1), root / "Weights_Sparse" / split / folder / f"{name}.png")
        if dense_between:
            for i in range(frames * step - dense_between):
                if i % step:
                    img, _ = _frame(size, i / step, rng)
                    d = root / "dense" / split / folder
                    d.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(img).save(d / f"frame_{i:010d}.jpg", quality=95)
        objs = {"1": {"name": noun, "class_id": 23, "handbox": 1, "narration": 1, "positive": 1},
                "2": {"name": "pen", "class_id": 291, "handbox": 0, "narration": 0, "positive": 0}}
        meta["videos"][folder] = {
            "expressions": {str(i): {"exp": f"{o['name']} used in the action of {narration}", "obj_id": k,
                                     "positive": o["positive"], "class_id": o["class_id"]}
                            for i, (k, o) in enumerate(objs.items())},
            "frames": names,
        }
        verb = narration.split()[0]
        split_list.append({"seq_id": sid, "video": "vid", "start": 0, "end": (frames - 1) * step,
                           "narration": narration, "verb": verb, "verb_class": 1, "noun": noun, "noun_class": 23,
                           "sparse_frames": [f"{n}.jpg" for n in names], "object_classes": objs})
    (root / "ImageSets").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / f"{split}_meta_expressions_promptaction.json").write_text(json.dumps(meta))
    (root / "ImageSets" / f"{split}.json").write_text(json.dumps(split_list))
    return root
