"""Training dataset and transforms on the real minivisor data (spec §6 last block, §8)."""

import random

import numpy as np
import pytest

from actionvos.errors import InputError
import torch
from PIL import Image

from actionvos.training.dataset import ActionVOSDataset, code_to_lambda, collate, sample_frame_indices
from actionvos.training.transforms import (Compose, Pad, RandomHorizontalFlip, ToTensorNormalize,
                                           swap_left_right)


def test_code_to_lambda_by_hand():
    label = np.array([[1, 1, 0], [2, 1, 0]])
    codes = np.array([[4, 3, 2], [2, 2, 1]])
    m, w = code_to_lambda(label, codes, 1, True)
    assert m.tolist() == [[1, 0, 0], [0, 1, 0]]  # code 3 inside the object -> background
    assert w.tolist() == [[5, 5, 1], [1, 2, 1]]  # outside object -> 1; 3, 4 -> 5; 2 stays
    m, w2 = code_to_lambda(label, codes, 1, False)
    assert m.sum() == 0 and w2.tolist() == w.tolist()  # negatives: no mask, weights kept


def test_sampling_rule():
    assert sample_frame_indices(0, 2, 5, random.Random(0)) == [0, 0, 0, 1, 1]
    for seed in range(20):
        idx = sample_frame_indices(5, 8, 5, random.Random(seed))
        assert len(idx) == 5 and idx == sorted(idx) and 5 in idx and all(0 <= i < 8 for i in idx)


def test_swap_left_right():
    assert swap_left_right("left hand and right hand") == "right hand and left hand"


def test_dataset_samples_and_collate(minivisor):
    ds = ActionVOSDataset(minivisor, "train", seed=3)
    # 8 box seqs x 3 objects + 2 box seqs x 2 + 6 cup seqs x 2 = 40 expressions, 8 frames -> starts 0, 5
    assert len(ds) == 80
    negatives = [i for i, m in enumerate(ds.metas) if not m["positive"]]
    assert negatives and all(ds.metas[i]["exp"].startswith("pen ") for i in negatives)
    items = [ds[0], ds[negatives[0]], ds[len(ds) - 1]]
    for imgs, t in items:
        T, _, H, W = imgs.shape
        assert (T, imgs.shape[1]) == (5, 3) and imgs.dtype == torch.float32
        assert t["masks"].shape == t["weights"].shape == (5, H, W) and t["boxes"].shape == (5, 4)
        assert t["size"].tolist() == [H, W] and max(H, W) <= 512
        assert t["valid"].tolist() == [1] * 5 and len(t["frames_idx"]) == 5
        assert set(t["weights"].unique().tolist()) <= {1.0, 2.0, 5.0}
    neg = items[1][1]
    assert neg["masks"].sum() == 0 and neg["boxes"].abs().sum() == 0 and not neg["positive"].any()
    assert items[0][1]["masks"].sum() > 0 and items[0][1]["positive"].all()
    batch = collate(items)
    B, T, C, Hp, Wp = batch["imgs"].shape
    assert (B, T, C) == (3, 5, 3) and Hp % 32 == 0 and Wp % 32 == 0
    for (imgs, t0), t in zip(items, batch["targets"]):
        h, w = imgs.shape[-2:]
        assert t["weights"].shape == (5, Hp, Wp)
        assert set(t["weights"].unique().tolist()) <= {0.0, 1.0, 2.0, 5.0}
        assert t["weights"][:, h:].sum() == 0 and t["weights"][:, :, w:].sum() == 0  # padded lambda is 0
        assert torch.equal(t["weights"][:, :h, :w], t0["weights"])
    assert batch["pad_mask"][0, 0, : items[0][0].shape[-2], : items[0][0].shape[-1]].any().item() is False


def test_dataset_is_deterministic(minivisor):
    a = ActionVOSDataset(minivisor, "train", seed=7)
    b = ActionVOSDataset(minivisor, "train", seed=7)
    (ia, ta), (ib, tb) = a[4], b[4]
    assert torch.equal(ia, ib) and torch.equal(ta["weights"], tb["weights"]) and ta["caption"] == tb["caption"]


def test_flip_swaps_caption_and_mirrors_targets(minivisor):
    flip = ActionVOSDataset(minivisor, "train", transforms=Compose([RandomHorizontalFlip(1.0), ToTensorNormalize()]))
    plain = ActionVOSDataset(minivisor, "train", transforms=Compose([ToTensorNormalize()]))
    i = next(k for k, m in enumerate(flip.metas) if m["exp"].startswith("right hand"))
    (fi, ft), (pi, pt) = flip[i], plain[i]  # same seed and index -> same frames
    assert ft["caption"] == "left hand used in the action of move box" and pt["caption"].startswith("right hand")
    assert torch.equal(ft["masks"], pt["masks"].flip(-1)) and torch.equal(ft["weights"], pt["weights"].flip(-1))
    assert torch.allclose(fi, pi.flip(-1))
    # cxcywh: the flip mirrors the centre (pixel-edge convention of the reference: x' = W - x)
    W = pi.shape[-1]
    assert torch.allclose(ft["boxes"][:, 0], 1 - pt["boxes"][:, 0], atol=1e-6)
    assert torch.allclose(ft["boxes"][:, 1:], pt["boxes"][:, 1:])
    j = next(k for k, m in enumerate(flip.metas) if not m["positive"])
    assert flip[j][1]["boxes"].abs().sum() == 0  # zero boxes stay zero under flip


def test_pad_uses_weight_one():
    clip = [Image.new("RGB", (4, 3))]
    t = {"masks": torch.ones(1, 3, 4), "weights": torch.full((1, 3, 4), 2.0), "boxes": torch.zeros(1, 4),
         "caption": "", "size": torch.tensor([3, 4])}
    clip, t = Pad(2, 1)(clip, t)
    assert clip[0].size == (6, 4) and t["weights"][0, 3].tolist() == [1.0] * 6 and t["masks"][0, :, 4:].sum() == 0


def test_missing_dataset_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="expression file"):
        ActionVOSDataset(tmp_path, "train")
