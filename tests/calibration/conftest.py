"""Fixtures of the calibration tests: a small FP32 export (demo_small, random weights, 96x160, T=1, --msda onnx),
a tiny tokenizer and a calibration file of real frames (box.mp4 + minivisor val), built once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import shared_dir, train_tiny_tokenizer  # noqa: E402

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


#: the weights note of the test export's card (reports print it: random-weight numbers are not accuracy evidence)
RANDOM_WEIGHTS = "seeded random weights (demo_small): agreement numbers are pipeline checks only, not accuracy evidence"


def videos_dir() -> Path:
    return shared_dir() / "data" / "videos"


def minivisor_dir() -> Path:
    return shared_dir() / "data" / "minivisor"


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer")


@pytest.fixture(scope="session")
def fp32_dir(tmp_path_factory) -> Path:
    """demo_small with seeded random weights exported by the export module at 96x160 (pipeline checks only)."""
    import torch

    from actionvos.export.exporter import export_model
    from actionvos.model.builder import build_model
    from actionvos.model.config import get_preset

    from actionvos.card import card_for_checkpoint
    from actionvos.export.exporter import weights_sha256

    torch.manual_seed(0)
    model = build_model(get_preset("demo_small")).eval()
    out = tmp_path_factory.mktemp("export") / "fp32"
    card = card_for_checkpoint(model.cfg, weights_sha256(model), weights_note=RANDOM_WEIGHTS)  # the card says so
    export_model(None, out, model=model, card=card, height=96, width=160, frames=1, max_prompts=4, max_tokens=32,
                 msda="onnx")
    return out


@pytest.fixture(scope="session")
def calib_file(tmp_path_factory, fp32_dir, tokenizer_dir) -> Path:
    """Real clips: 2 of box.mp4 (move box) and 1 per minivisor val sequence (7), stored once."""
    from actionvos.calibration.collect import collect_calibration
    from actionvos.calibration.npz_store import save_calibration
    from actionvos.calibration.sources import InputSpec

    box = videos_dir() / "box.mp4"
    if not box.is_file() or not (minivisor_dir() / "ImageSets" / "val.json").is_file():
        pytest.skip(f"real frames not found under {shared_dir()}; set ACTIONVOS_SHARED")
    data = collect_calibration([InputSpec(box, action="move box", objects="box,pen,right hand"),
                                InputSpec(minivisor_dir(), None, "val")],
                               tokenizer=tokenizer_dir, onnx_dir=fp32_dir, per_video=2, progress=False)
    path = tmp_path_factory.mktemp("calib") / "calib.npz"
    save_calibration(path, data)
    return path


@pytest.fixture(scope="session")
def int8_dir(tmp_path_factory, fp32_dir, calib_file) -> Path:
    """Q/DQ INT8 graphs (minmax, the fastest calibrator) with the accuracy report on 4 clips."""
    from actionvos.calibration.int8 import quantize_dir_int8

    out = tmp_path_factory.mktemp("int8") / "int8"
    quantize_dir_int8(fp32_dir, calib_file, out, method="minmax", calib_clips=6, report_clips=4)
    return out
