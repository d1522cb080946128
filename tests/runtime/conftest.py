"""Fixtures of the runtime tests: the tiny random checkpoint at a 48-px short side, the tiny BPE tokenizer, its
``--msda onnx`` export at 48x64 (T = 1, made once per session), real frames of box.mp4, and sessions over both
CPU backends. Sizes are chosen so the whole runtime suite fits in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import box_video_path, make_tiny_checkpoint, train_tiny_tokenizer  # noqa: E402
from rt_common import INPUT_SIZE  # noqa: E402


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, tok_dir) -> Path:
    """The tiny random checkpoint with its card and tokenizer embedded (self-contained, like a training output)."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("rt_ckpt") / "tiny48.pth", seed=0, tokenizer=tok_dir,
                                short_side=INPUT_SIZE[0])


@pytest.fixture(scope="session")
def tok_dir(tmp_path_factory) -> Path:
    return train_tiny_tokenizer(tmp_path_factory.mktemp("rt_tok") / "tok")


@pytest.fixture(scope="session")
def onnx_dir(tiny_ckpt, tok_dir, tmp_path_factory) -> Path:
    """``actionvos export`` output (text_encoder.onnx + segmenter.onnx) at 48x64, T=1, ``--msda onnx``."""
    from actionvos.export.exporter import export_model

    out = tmp_path_factory.mktemp("rt_onnx") / "tiny48"
    export_model(tiny_ckpt, out, height=INPUT_SIZE[0], width=INPUT_SIZE[1], frames=1, msda="onnx", max_prompts=4,
                 max_tokens=32)
    return out


@pytest.fixture(scope="session")
def box_frames() -> np.ndarray:
    """The first 12 decodable frames of box.mp4 as ``[12, 480, 640, 3]`` uint8 RGB."""
    import cv2

    cap = cv2.VideoCapture(str(box_video_path()))
    frames = []
    while len(frames) < 12:
        ok, bgr = cap.read()
        assert ok, "box.mp4 ended early"
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(frames)


@pytest.fixture(scope="session")
def tokenizer(tok_dir):
    from actionvos.tokenizer import Tokenizer

    return Tokenizer.from_dir(tok_dir)


@pytest.fixture(scope="session")
def torch_backend(tiny_ckpt):
    import torch

    torch.set_num_threads(2)
    from actionvos.runtime.backends.pytorch import TorchBackend

    return TorchBackend.from_checkpoint(tiny_ckpt)


@pytest.fixture(scope="session")
def ort_backend(onnx_dir):
    from actionvos.card import read_card_file
    from actionvos.runtime.backends.onnxruntime import OrtBackend

    return OrtBackend(onnx_dir, read_card_file(onnx_dir), provider="cpu", threads=2)
