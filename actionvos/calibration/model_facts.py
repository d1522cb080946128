"""The one place where the calibration package reads the facts of a deployed model.

>>> MODEL-CARD SWITCH POINT <<<
Every fact the calibration tools need about a model (clip size, thresholds, prompt template, model identity,
text-feature width, vocabulary, token limit, MSDA mode, tokenizer) is read here and nowhere else in
``actionvos/calibration``: :func:`read_model_facts` for an export directory's graphs and :func:`checkpoint_facts`
for ``calibrate collect --checkpoint``. When the lead's :class:`actionvos.card.ModelCard` lands, replace the bodies
of these two functions with ``actionvos.card.read_card(...)`` and map its fields onto :class:`ModelFacts`; nothing
else in the package changes. No fact has a default here: a graph without them is refused (re-export it).

Sources today: the ``actionvos.*`` ONNX metadata written by :mod:`actionvos.export.metadata` (read with
:func:`actionvos.export.metadata.read_metadata`) and, for reduced-precision directories, the
``actionvos.calibration`` record (the FP32 source model's hash).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actionvos.errors import InputError

__all__ = ["ModelFacts", "read_model_facts", "checkpoint_facts"]


@dataclass(frozen=True)
class ModelFacts:
    """Facts of one deployed model, as the calibration tools use them.

    Attributes:
        frames, height, width: static clip length ``T`` and input size ``H × W`` in pixels of the segmenter.
        pos_thres: positive-gate threshold on ``sigmoid(pred_positives)`` (0.75 for the released model, spec 3.9).
        mask_threshold: mask probability threshold on ``sigmoid(mask logit)`` (0.5).
        prompt_template: the ``{object}`` / ``{action}`` prompt template.
        model_hash: identity of the FP32 model (checkpoint SHA-256 prefix, else a hash of the two FP32 graph files;
            reduced-precision graphs carry their source's).
        hidden_dim: width ``d`` of the text features.
        vocab_size: tokenizer vocabulary size of the text encoder.
        max_tokens: longest token sequence ``L`` the text graph takes.
        msda: ``onnx`` (GridSample decomposition) or ``plugin`` (TensorRT custom op); ``torch`` for a checkpoint.
        tokenizer: tokenizer folder recorded at export time ("" when none).
    """

    frames: int
    height: int
    width: int
    pos_thres: float
    mask_threshold: float
    prompt_template: str
    model_hash: str
    hidden_dim: int
    vocab_size: int
    max_tokens: int
    msda: str
    tokenizer: str


def _files_hash(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def read_model_facts(text: Path, segmenter: Path, meta: dict[str, Any], calibration: dict[str, Any],
                     flag: str = "--onnx") -> ModelFacts:
    """Model facts of an export directory (FP32, FP16 or INT8).

    Args:
        text, segmenter: the two graph files. meta: decoded ``actionvos.*`` metadata of the segmenter.
        calibration: the ``actionvos.calibration`` record of a reduced-precision graph (``{}`` for FP32).
        flag: the CLI option the directory came from (for errors).
    Raises:
        InputError: a fact is missing from the metadata (graphs from another exporter version; re-export).
    """
    try:
        inp, thr, cfg = meta["input"], meta["thresholds"], meta["config"]
        facts = dict(frames=int(inp.get("frames", 1)), height=int(inp["height"]), width=int(inp["width"]),
                     pos_thres=float(thr["pos_cls_thres"]), mask_threshold=float(thr["mask_threshold"]),
                     prompt_template=str(meta["prompt_template"]), hidden_dim=int(cfg["hidden_dim"]),
                     vocab_size=int(cfg["text"]["vocab_size"]))
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{flag} {str(segmenter.parent)!r}: the graph metadata lacks {err} (input size, thresholds, "
                         "prompt template or config); re-export with actionvos export") from None
    if calibration.get("source_model_hash"):
        model_hash = str(calibration["source_model_hash"])
    elif meta.get("checkpoint_sha256"):
        model_hash = str(meta["checkpoint_sha256"])
    else:
        model_hash = "onnx-" + _files_hash(text, segmenter)
    try:
        from actionvos.export.metadata import read_metadata, spec_from_metadata

        max_tokens = int(spec_from_metadata(read_metadata(text)).dims["L"].max)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise InputError(f"{flag} {str(text)!r}: the text graph's metadata has no export spec ({err}); "
                         "re-export with actionvos export") from None
    return ModelFacts(model_hash=model_hash, max_tokens=max_tokens, msda=str(meta.get("msda", "onnx")),
                      tokenizer=str(meta.get("tokenizer") or ""), **facts)


def checkpoint_facts(checkpoint: Path, cfg, frames: int, height: int, width: int) -> ModelFacts:
    """Model facts of a PyTorch checkpoint for ``calibrate collect --checkpoint`` (input size from the options).

    Args:
        checkpoint: the ``.pth`` (hashed: equal to the ``checkpoint_sha256`` of graphs exported from it).
        cfg: its :class:`actionvos.model.config.ModelConfig`. frames, height, width: the export size (T, pixels).
    """
    from actionvos.model.checkpoint import file_sha256

    return ModelFacts(frames=int(frames), height=int(height), width=int(width), pos_thres=float(cfg.pos_cls_thres),
                      mask_threshold=float(cfg.mask_threshold), prompt_template=cfg.prompt_template,
                      model_hash=file_sha256(checkpoint), hidden_dim=int(cfg.hidden_dim),
                      vocab_size=int(cfg.text.vocab_size), max_tokens=512, msda="torch", tokenizer="")
