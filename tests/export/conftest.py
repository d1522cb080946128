"""Fixtures of the export tests: the tiny reference model, its two exports (``--msda onnx`` through the CLI,
``--msda plugin`` through :func:`export_model`), each made once per session, and PyTorch reference outputs.

The tiny fixture (``shared/reference/tiny``: 2 frames 96x160, 2 prompts) is exported with ``--frames 2 --height 96
--width 160``; its ``frames_uint8`` ``[T, H, W, 3]`` are fed transposed to ``[T, 3, H, W]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from actionvos.export.exporter import ExportResult, export_model

TINY_SIZE = dict(frames=2, height=96, width=160)


@dataclass
class Tiny:
    model: torch.nn.Module
    inputs: dict[str, np.ndarray]
    checkpoint: Path

    @property
    def frames_tchw(self) -> np.ndarray:
        """``[T, 3, H, W]`` uint8 RGB."""
        return np.ascontiguousarray(self.inputs["frames_uint8"].transpose(0, 3, 1, 2))


@pytest.fixture(scope="session")
def tiny(shared) -> Tiny:
    from actionvos.model.checkpoint import load_model

    ckpt = shared / "reference" / "tiny" / "checkpoint.pth"
    model, cfg, _ = load_model(ckpt)
    assert cfg.name == "reference_tiny"
    return Tiny(model, dict(np.load(shared / "reference" / "tiny" / "inputs.npz")), ckpt)


@pytest.fixture(scope="session")
def tiny_onnx_export(tiny, tmp_path_factory) -> Path:
    """``--msda onnx`` export of the tiny checkpoint, made through the ``actionvos-export`` CLI."""
    from actionvos.export.cli import main

    out = tmp_path_factory.mktemp("export") / "tiny_onnx"
    main([str(tiny.checkpoint), "--output", str(out), "--frames", "2", "--height", "96", "--width", "160",
          "--msda", "onnx", "--tokenizer", "roberta-base"])
    return out


@pytest.fixture(scope="session")
def tiny_plugin_export(tiny, tmp_path_factory) -> ExportResult:
    """``--msda plugin`` export of the tiny checkpoint through :func:`export_model`."""
    out = tmp_path_factory.mktemp("export") / "tiny_plugin"
    return export_model(tiny.checkpoint, out, msda="plugin", **TINY_SIZE)
