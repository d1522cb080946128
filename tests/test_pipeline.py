"""The one pipeline: numpy post-processing equals the torch reference (model/postprocess.py), the clip driver equals
the official rule run directly on the model, cards and tokenizers are read from every artifact, and the README's
Python API snippet runs as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import box_video_path, make_tiny_checkpoint, train_tiny_tokenizer  # noqa: E402

from actionvos.errors import ConfigError, InputError  # noqa: E402


def _read_frames(path: Path, n: int, start: int = 0, step: int = 1) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames, i = [], 0
    while len(frames) < n:
        ok, bgr = cap.read()
        assert ok, f"{path} ended early"
        if i >= start and (i - start) % step == 0:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        i += 1
    cap.release()
    return np.stack(frames)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_postprocess_equals_torch_reference(seed):
    """Frame-mean query selection, gate, upsample, sigmoid and merge: pipeline (numpy) vs model/postprocess.py."""
    from actionvos.model.postprocess import clip_predictions, merge_labels
    from actionvos.pipeline.frames import finish_frame, sigmoid

    rng = np.random.default_rng(seed)
    P, T, Q, h, w, H, W = 3, 5, 4, 12, 16, 45, 67
    logits = rng.normal(size=(P, T, Q, 1)).astype(np.float32)
    masks = (rng.normal(size=(P, T, Q, h, w)) * 3).astype(np.float32)
    pos = rng.normal(size=(P, 1)).astype(np.float32)
    thres, mthr, bg = 0.45, 0.5, 0.1
    ref = clip_predictions({"pred_logits": torch.from_numpy(logits), "pred_masks": torch.from_numpy(masks),
                            "pred_positives": torch.from_numpy(pos)}, out_size=(H, W), pos_thres=thres)
    ref_labels = merge_labels(ref.mask_prob_gated, threshold=mthr, background=bg).numpy()
    scores = sigmoid(logits[..., 0]).mean(1)
    sel = scores.argmax(-1)
    passed = sigmoid(pos[:, 0]) >= thres
    np.testing.assert_array_equal(sel, ref.selected_query.numpy())
    np.testing.assert_array_equal(passed, ref.passed_gate.numpy())
    for t in range(T):
        probs, _, labels = finish_frame(masks[np.arange(P), t, sel], (H, W), passed, mthr, bg)
        np.testing.assert_allclose(probs, ref.mask_prob[:, t].numpy(), atol=1e-5)  # cv2 vs torch bilinear: float rounding
        assert (labels == ref_labels[t]).mean() > 0.999  # ties at exactly 0.5 may flip a pixel


@pytest.fixture(scope="module")
def demo_backend():
    from actionvos.artifacts import open_model

    torch.set_num_threads(2)
    be, tok = open_model(None, backend="pytorch", device="cpu")
    return be, tok


def test_clip_driver_equals_official_rule_on_model(demo_backend):
    """ClipDriver over the PyTorch backend = encode_frames + decode on the whole clip + model/postprocess.py, on real
    box.mp4 frames, with a last clip shorter than the others."""
    from actionvos.model.postprocess import clip_predictions, merge_labels, preprocess_frames
    from actionvos.pipeline.drivers import ClipDriver

    be, tok = demo_backend
    card = be.info.card
    frames = _read_frames(box_video_path(), 7, start=100, step=5)
    d = ClipDriver(be, None, tok, clip_frames=4)
    prompts = d.set_prompts("move box", "box,pen,right hand")
    results = list(d.run(frames))
    assert [r.index for r in results] == list(range(7)) and [r.clip for r in results] == [0] * 4 + [1] * 3
    ids, mask = tok.encode_for([p.text for p in prompts], card)
    model = be.model
    with torch.no_grad():
        text = model.encode_text(torch.from_numpy(ids), torch.from_numpy(mask))
        for c, sl in enumerate((slice(0, 4), slice(4, 7))):
            x = preprocess_frames(frames[sl], short_side=card.input.short_side)
            out = model.decode(model.encode_frames(x), text)
            ref = clip_predictions(out, out_size=frames.shape[1:3], pos_thres=card.thresholds.pos_cls_thres)
            labels = merge_labels(ref.mask_prob_gated, card.thresholds.mask_threshold, card.thresholds.background_prob)
            for t, r in enumerate(results[sl]):
                assert [o.selected_query for o in r.objects] == ref.selected_query.tolist()
                assert [o.passed_gate for o in r.objects] == ref.passed_gate.tolist()
                np.testing.assert_allclose([o.positive_prob for o in r.objects], ref.positive_prob.numpy(), atol=1e-5)
                assert (r.labels == labels[t].numpy()).mean() > 0.999


def test_card_overrides_are_recorded(demo_backend):
    from actionvos.pipeline.drivers import ClipDriver, StreamConfig

    be, tok = demo_backend
    d = ClipDriver(be, StreamConfig(pos_thres=0.3), tok)
    assert d.pos_thres == 0.3 and dict(d.card.overrides) == {"pos_cls_thres": 0.3}
    assert be.info.card.thresholds.pos_cls_thres != 0.3 or True  # the backend's card is untouched
    assert be.info.card.overrides == ()
    with pytest.raises(ConfigError, match="pos-thres"):
        ClipDriver(be, StreamConfig(pos_thres=1.5), tok)


def test_card_roundtrip_and_schema_errors(demo_backend):
    from actionvos.card import CARD_SCHEMA_VERSION, ModelCard

    card = demo_backend[0].info.card
    d = card.to_dict()
    assert ModelCard.from_dict(d) == card
    with pytest.raises(ConfigError, match="newer"):
        ModelCard.from_dict({**d, "schema": CARD_SCHEMA_VERSION + 1})
    broken = dict(d)
    broken.pop("thresholds")
    with pytest.raises(ConfigError, match="lacks"):
        ModelCard.from_dict(broken)


def test_checkpoint_cards_and_tokenizers(tmp_path):
    """Ours carry card + tokenizer (no --tokenizer needed); one without needs --tokenizer, and a wrong one is refused."""
    from actionvos.artifacts import read_checkpoint_artifact

    tok_dir = train_tiny_tokenizer(tmp_path / "tok")
    ours = make_tiny_checkpoint(tmp_path / "ours.pth", tokenizer=tok_dir, short_side=64)
    art = read_checkpoint_artifact(ours)
    assert art.card.input.short_side == 64 and art.card.tokenizer_sha256 == art.tokenizer.sha256
    bare = make_tiny_checkpoint(tmp_path / "bare.pth", short_side=64)
    with pytest.raises(InputError, match="--tokenizer"):
        read_checkpoint_artifact(bare)
    assert read_checkpoint_artifact(bare, tokenizer=tok_dir).card.tokenizer_sha256 is None
    with pytest.raises(ConfigError, match="not the one this model was trained with"):
        from actionvos.demo import DEMO_TOKENIZER

        read_checkpoint_artifact(ours, tokenizer=DEMO_TOKENIZER)


def test_tokenizer_checks_against_the_model(tmp_path):
    """Issue 11 item 1: a tokenizer that cannot be the model's is refused (vocabulary size of the released
    architectures, special-token ids, a placeholder vocabulary), and a path-like name never goes to the hub."""
    import json

    from actionvos.card import card_for_checkpoint
    from actionvos.model.config import get_preset
    from actionvos.tokenizer import Tokenizer, load_tokenizer, looks_like_hub_id

    tok = Tokenizer.from_dir(train_tiny_tokenizer(tmp_path / "tok"))
    with pytest.raises(ConfigError, match="tokens but the model's text encoder has 50265"):
        tok.check_model(card_for_checkpoint(get_preset("rf_r50_actionvos"), "x"))
    tok.check_model(card_for_checkpoint(get_preset("reference_tiny"), "x"))  # fits a smaller preset
    placeholder = tmp_path / "placeholder"
    placeholder.mkdir()
    (placeholder / "vocab.json").write_text(json.dumps({"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}))
    (placeholder / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(ConfigError, match="encodes different prompts identically"):
        Tokenizer.from_dir(placeholder).check_model(card_for_checkpoint(get_preset("reference_tiny"), "x"))
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    vocab = json.loads(tok.files["vocab.json"])
    vocab["<s>"], vocab["<pad>"] = vocab["<pad>"], vocab["<s>"]
    (swapped / "vocab.json").write_text(json.dumps(vocab))
    (swapped / "merges.txt").write_text(tok.files["merges.txt"])
    with pytest.raises(ConfigError, match="special tokens at the wrong ids"):
        Tokenizer.from_dir(swapped).check_model(card_for_checkpoint(get_preset("reference_tiny"), "x"))
    assert not looks_like_hub_id("./tok_nope") and not looks_like_hub_id("models/tok/") and not looks_like_hub_id("/abs/tok")
    assert looks_like_hub_id("roberta-base") and looks_like_hub_id("FacebookAI/roberta-base")
    with pytest.raises(InputError, match="does not exist"):
        load_tokenizer(tmp_path / "tok_nope")  # path-like: never the hub


def test_hub_id_fails_fast_offline(monkeypatch):
    """A name that looks like a hub id is tried on the hub only, and fails in seconds with one line when offline."""
    import time

    from actionvos.tokenizer import load_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="could not be fetched from the hub"):
        load_tokenizer("tok_nope")
    assert time.perf_counter() - t0 < 30


def test_readme_python_api_snippet_runs():
    """The README's "Python API" snippet, extracted from the README and run as written (on real box.mp4 frames)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    m = re.search(r"## Python API.*?```python\n(.*?)```", readme, re.S)
    assert m, "README has no Python API snippet"
    code = m.group(1)
    frames = _read_frames(box_video_path(), 3, start=200, step=10)
    ns = {"frames": list(frames), "frame": frames[0]}
    exec(compile(code, "README.md", "exec"), ns)
    assert "predictor" in ns
