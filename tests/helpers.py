"""Shared test helpers: a tiny random-weights checkpoint, a tiny trained BPE tokenizer, and shared data paths.

Nothing here downloads anything. The checkpoint is the ``reference_tiny`` preset (spec: ../shared/reference/tiny)
with seeded random weights, marked as random so ``summary.json`` says it is a pipeline check only.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "shared_dir",
    "box_video_path",
    "make_tiny_checkpoint",
    "train_tiny_tokenizer",
    "make_small_clip",
    "PROMPT_CORPUS",
]

#: Sentences the tiny tokenizer is trained on: prompts in the ``promptaction`` format (spec 4).
PROMPT_CORPUS = [
    f"{obj} used in the action of {act}"
    for act in ("move box", "rotate bottle", "put cereals bag into cereals box", "pick up two spoons", "open fridge", "cut bread")
    for obj in ("box", "pen", "right hand", "left hand", "bottle", "lid", "cup", "spoon", "bread", "cereal bag", "fridge", "knife")
]


def shared_dir() -> Path:
    """The project's shared folder: ``$ACTIONVOS_SHARED`` or ``<repo>/../shared``."""
    env = os.environ.get("ACTIONVOS_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared"


def box_video_path() -> Path:
    """``shared/data/videos/box.mp4`` (OpenCV sample, 640x480, 455 decodable frames at ~29.97 fps)."""
    return shared_dir() / "data" / "videos" / "box.mp4"


def make_tiny_checkpoint(path: str | os.PathLike, seed: int = 0, tokenizer: str | os.PathLike | None = None,
                         **card_overrides) -> Path:
    """Build the ``reference_tiny`` preset with ``torch.manual_seed(seed)`` and save it as one of our checkpoints.

    With ``tokenizer`` (a folder from :func:`train_tiny_tokenizer`) the checkpoint is self-contained: it carries its
    model card (``card``) and tokenizer files, like a training output. Without it, it has only ``config`` (like an
    official checkpoint plus our config) and needs ``--tokenizer``. ``card_overrides`` (``short_side=96``,
    ``max_clip_frames=2``, ``pos_cls_thres``, ``mask_threshold``, ``background_prob``, ``prompt_template``) change
    only the card's deployment facts, so end-to-end tests on a 2-core CPU can run the model small. The checkpoint
    says its weights are random (``random_weights``, ``weights_note``, and the card's ``weights_note``). Returns
    ``path``.
    """
    import dataclasses

    import torch

    from actionvos.card import InputRule, Thresholds, card_for_checkpoint
    from actionvos.model.builder import build_model
    from actionvos.model.config import get_preset
    from actionvos.io_utils import atomic_path

    allowed = {"short_side", "max_clip_frames", "pos_cls_thres", "mask_threshold", "background_prob", "prompt_template"}
    if set(card_overrides) - allowed:
        raise TypeError(f"only inference settings can be overridden: {sorted(allowed)}")
    cfg = get_preset("reference_tiny")
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    note = f"random weights (torch.manual_seed({seed})), pipeline check only"
    obj = {"model": model.state_dict(), "random_weights": True, "weights_note": note}
    card = card_for_checkpoint(cfg, f"tiny-seed{seed}", weights_note=note)
    o = card_overrides
    card = dataclasses.replace(
        card,
        input=InputRule(short_side=o.get("short_side", card.input.short_side),
                        max_clip_frames=o.get("max_clip_frames", card.input.max_clip_frames)),
        thresholds=Thresholds(o.get("pos_cls_thres", card.thresholds.pos_cls_thres),
                              o.get("mask_threshold", card.thresholds.mask_threshold),
                              o.get("background_prob", card.thresholds.background_prob), rule="test fixture"),
        prompt_template=o.get("prompt_template", card.prompt_template))
    if tokenizer is not None:
        from actionvos.artifacts import checkpoint_extras
        from actionvos.tokenizer import Tokenizer

        tok = Tokenizer.from_dir(tokenizer)
        obj.update(checkpoint_extras(dataclasses.replace(card, tokenizer_sha256=tok.sha256), tok))
    else:
        obj["config"] = {**cfg.to_dict(), **{k: v for k, v in card_overrides.items()}}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def train_tiny_tokenizer(directory: str | os.PathLike, vocab_size: int = 1000) -> Path:
    """Train a byte-level BPE on :data:`PROMPT_CORPUS` and save ``vocab.json`` + ``merges.txt`` (RoBERTa format).

    Special tokens are ``<s>, <pad>, </s>, <unk>, <mask>`` with ids 0..4 as in RoBERTa, and every id is
    below ``vocab_size`` (<= 1000, the ``reference_tiny`` text vocabulary). Returns ``directory``.
    """
    from tokenizers import ByteLevelBPETokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(
        PROMPT_CORPUS * 4,
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    tok.save_model(str(directory))
    return directory


def make_small_clip(path: str | os.PathLike, frames: int = 8, short_side: int = 160, start: int = 120, step: int = 4,
                    source: str | os.PathLike | None = None) -> Path:
    """Write ``frames`` frames of ``source`` (default box.mp4; every ``step``-th from ``start``), resized to
    ``short_side``, as an mp4v MP4.

    Returns ``path``. Frame ``i`` of the clip is decoded frame ``start + i * step`` of the source.
    """
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # box.mp4 makes FFmpeg log harmless h264 warnings
    cap = cv2.VideoCapture(str(source or box_video_path()))
    out = None
    written = 0
    index = 0
    try:
        while written < frames:
            ok, bgr = cap.read()
            if not ok:
                raise RuntimeError(f"{source or 'box.mp4'} ended after {index} frames")
            if index >= start and (index - start) % step == 0:
                h, w = bgr.shape[:2]
                size = (round(w * short_side / h), short_side) if h <= w else (short_side, round(h * short_side / w))
                small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
                if out is None:
                    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
                out.write(small)
                written += 1
            index += 1
    finally:
        cap.release()
        if out is not None:
            out.release()
    return Path(path)
