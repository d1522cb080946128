"""Fixtures of the export tests: the tiny reference model, its two exports (``--msda onnx`` through the CLI,
``--msda plugin`` through :func:`export_model`), the demo model's export, each made once per session, and a
tokenizer for the tiny reference checkpoint.

The tiny fixture (``shared/reference/tiny``: 2 frames 96x160, 2 prompts) is exported with ``--frames 2 --height 96
--width 160``; its ``frames_uint8`` ``[T, H, W, 3]`` are fed transposed to ``[T, 3, H, W]``. It is an official-style
checkpoint (no card, no tokenizer), so its exports get ``--tokenizer`` with :func:`tiny_tokenizer_dir`.
The demo model (``actionvos/demo``, d = 64) carries its card and tokenizer; it is exported at 96x128 with
``--frames 3`` for the window-graph tests (T up to its card's 36 frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from actionvos.export.exporter import ExportResult, export_model

TINY_SIZE = dict(frames=2, height=96, width=160)
#: The demo export of the window-graph tests: opt T = 3, and 96x128 keeps T = 36 fast on 2 CPU cores.
DEMO_SIZE = dict(frames=3, height=96, width=128)


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
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """A RoBERTa-format byte-level BPE (``vocab.json`` + ``merges.txt``) with exactly the tiny reference model's 1000
    tokens: the prompt-corpus BPE of ``tests/helpers.py`` (specials at ids 0..4), its vocabulary filled up with
    ``<unused_i>`` tokens that no prompt produces (an official checkpoint's tokenizer must match its vocabulary)."""
    import json

    from helpers import train_tiny_tokenizer

    d = train_tiny_tokenizer(tmp_path_factory.mktemp("export_tok") / "tok")
    vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
    n = len(vocab)
    vocab.update({f"<unused_{i}>": i for i in range(n, 1000)})
    (d / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    return d


@pytest.fixture(scope="session")
def tiny_onnx_export(tiny, tiny_tokenizer_dir, tmp_path_factory) -> Path:
    """``--msda onnx`` export of the tiny checkpoint, made through the ``actionvos-export`` CLI."""
    from actionvos.export.cli import main

    out = tmp_path_factory.mktemp("export") / "tiny_onnx"
    main([str(tiny.checkpoint), "--output", str(out), "--frames", "2", "--height", "96", "--width", "160",
          "--msda", "onnx", "--tokenizer", str(tiny_tokenizer_dir)])
    return out


@pytest.fixture(scope="session")
def tiny_plugin_export(tiny, tiny_tokenizer_dir, tmp_path_factory) -> ExportResult:
    """``--msda plugin`` export of the tiny checkpoint through :func:`export_model`."""
    out = tmp_path_factory.mktemp("export") / "tiny_plugin"
    return export_model(tiny.checkpoint, out, msda="plugin", tokenizer=str(tiny_tokenizer_dir), **TINY_SIZE)


@pytest.fixture(scope="session")
def demo_export(tmp_path_factory) -> ExportResult:
    """``--msda onnx`` export of the bundled demo checkpoint (card and tokenizer embedded; no ``--tokenizer``)."""
    from actionvos.demo import DEMO_CHECKPOINT

    out = tmp_path_factory.mktemp("export") / "demo_onnx"
    return export_model(DEMO_CHECKPOINT, out, msda="onnx", max_prompts=4, max_tokens=32, **DEMO_SIZE)
