"""Teacher pseudo-labels (PRVOS-style): confident labels, weight 0 exactly on uncertain pixels, used in training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from actionvos.errors import ConfigError
from actionvos.model.builder import build_model
from actionvos.model.checkpoint import save_checkpoint
from actionvos.model.config import get_preset
from actionvos.training.dataset import collate
from actionvos.training.pseudo_labels import (CODE_UNCERTAIN, PseudoLabelConfig, PseudoLabelDataset,
                                              codes_to_target, label_dense_frames, refine_probabilities)
from actionvos.training.trainer import TrainConfig, train
from actionvos.training.transforms import Compose, ToTensorNormalize
from synthetic_data import make_dataset, train_tiny_tokenizer

SIZE = 48


def test_refine_thresholds_are_strict():
    p = np.array([0.0, 0.05, 0.1, 0.5, 0.9, 0.95, 1.0])
    assert refine_probabilities(p, 0.9, 0.1).tolist() == [0, 0, 255, 255, 255, 1, 1]
    m, w = codes_to_target(refine_probabilities(p, 0.9, 0.1))
    assert m.tolist() == [0, 0, 0, 0, 0, 1, 1] and w.tolist() == [1, 1, 0, 0, 0, 1, 1]
    with pytest.raises(ConfigError):
        PseudoLabelConfig(hi=0.1, lo=0.9)


class FakeTeacher:
    """Mask logits +6 on the left third, 0 in the middle, -6 on the right, at the frame size (no resampling)."""

    def eval(self):
        return self

    def encode_text(self, ids, mask):
        return ids.shape[0]

    def encode_frames(self, x):
        return x.shape[0]

    def decode(self, t, p):
        logits = torch.zeros(p, t, 2, SIZE, SIZE)
        logits[..., : SIZE // 3] = 6.0
        logits[..., 2 * SIZE // 3:] = -6.0
        return {"pred_logits": torch.zeros(p, t, 2, 1), "pred_masks": logits, "pred_positives": torch.zeros(p, 1)}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("pseudo")
    data = make_dataset(root / "data", size=SIZE, frames=2, dense_between=2)
    tok_dir = train_tiny_tokenizer(root / "tok")
    import dataclasses

    from actionvos.card import card_for_checkpoint
    from actionvos.tokenizer import Tokenizer

    card = card_for_checkpoint(get_preset("reference_tiny"), "fake")
    card = dataclasses.replace(card, input=dataclasses.replace(card.input, short_side=SIZE))
    stats = label_dense_frames(FakeTeacher(), Tokenizer.from_dir(tok_dir), card, data, data / "dense", "train",
                               root / "pl", PseudoLabelConfig(0.9, 0.1))
    return data, root / "pl", tok_dir, stats


def test_label_maps_weight_zero_exactly_on_uncertain(labelled):
    data, pl, _, stats = labelled
    assert stats["sequences"] == 2 and stats["frames"] == 4  # 2 dense frames per sequence, sparse ones skipped
    seq = "00000001_vid_move_box"
    pos = np.array(Image.open(pl / "train" / seq / "1" / "frame_0000000001.png"))
    neg = np.array(Image.open(pl / "train" / seq / "2" / "frame_0000000001.png"))
    assert not (pl / "train" / seq / "1" / "frame_0000000000.png").exists()  # sparse frame: has ground truth
    assert (pos[:, : SIZE // 3] == 1).all() and (pos[:, 2 * SIZE // 3:] == 0).all()
    assert (pos[:, SIZE // 3: 2 * SIZE // 3] == CODE_UNCERTAIN).all()
    assert (neg == 0).all()  # negative expression: confident background everywhere
    ds = PseudoLabelDataset(data, data / "dense", pl, "train", num_frames=2, transforms=Compose([ToTensorNormalize()]))
    assert len(ds) == 4
    batch = collate([ds[i] for i in range(len(ds))])
    for t in batch["targets"]:
        w, m = t["weights"][:, :SIZE, :SIZE], t["masks"][:, :SIZE, :SIZE]
        if bool(t["positive"].any()):
            assert (w[..., SIZE // 3: 2 * SIZE // 3] == 0).all() and (w[..., : SIZE // 3] == 1).all()
            assert (m[..., : SIZE // 3] == 1).all() and (m[..., SIZE // 3:] == 0).all()
            assert t["boxes"].abs().sum() > 0
        else:
            assert (w == 1).all() and (m == 0).all()


def test_train_with_teacher_consumes_pseudo_labels(tmp_path):
    data = make_dataset(tmp_path / "data", size=SIZE, frames=2, dense_between=1)
    tok = train_tiny_tokenizer(tmp_path / "tok")
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "teacher.pth", build_model("demo_small"), get_preset("demo_small"))
    res = train(TrainConfig(data=str(data), output=str(tmp_path / "out"), preset="demo_small", tokenizer=str(tok),
                            teacher=str(tmp_path / "teacher.pth"), dense_frames=str(data / "dense"),
                            num_frames=2, max_size=64, epochs=1, threads=1, progress=False, device="cpu"))
    # 4 sparse samples + 4 pseudo samples (2 sequences x 2 expressions, dense frames 1 of each) in one epoch
    assert res.steps == 8
    codes = sorted((tmp_path / "out" / "pseudo_labels" / "train").rglob("*.png"))
    assert len(codes) == 4 and (tmp_path / "out" / "pseudo_labels" / "train" / "stats.json").is_file()
