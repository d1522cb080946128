"""The one place where the calibration package reads the facts of a deployed model.

>>> MODEL-CARD SWITCH POINT <<<
Every fact the calibration tools need about a model (clip size, thresholds, prompt template, model identity,
precision, text-feature width, vocabulary, token limit, MSDA mode, tokenizer, weights note) is read here and nowhere
else in ``actionvos/calibration``: :func:`read_model_facts` for an export directory's graphs, :func:`checkpoint_facts`
for ``calibrate collect --checkpoint``, and :func:`derived_card_files` / :func:`derived_props` for what an FP16 /
INT8 directory carries. The facts come from the graph's :class:`actionvos.card.ModelCard` (metadata
``actionvos.card``, format "2", :func:`actionvos.card.card_from_onnx`); no fact has a default here, and a graph
without a card (exported by an older version) is refused with the advice to re-export.

Sources: :mod:`actionvos.card` (schema), :mod:`actionvos.export.metadata` (``read_onnx_metadata``,
``read_onnx_props``, ``spec_from_metadata``), and for reduced-precision directories the ``actionvos.calibration``
record (the FP32 source model's hash).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actionvos.errors import ActionVOSError, InputError

__all__ = ["ModelFacts", "read_graph_metadata", "graph_spec", "read_model_facts", "checkpoint_facts",
           "derived_props", "derived_card_files"]



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
        precision: ``fp32``, ``fp16`` or ``int8``.
        hidden_dim: width ``d`` of the text features. vocab_size: tokenizer vocabulary size of the text encoder.
        max_tokens: longest token sequence ``L`` the text graph takes.
        msda: ``onnx`` (GridSample decomposition) or ``plugin`` (TensorRT custom op); ``torch`` for a checkpoint.
        tokenizer: the tokenizer folder of the artifact (its ``tokenizer/``, or the one recorded at export; "").
        weights_note: why the weights are not trained ones (random weights), else "".
        checkpoint_sha256: the weights' hash recorded in the artifact ("" for an export of a model object).
    """

    frames: int
    height: int
    width: int
    pos_thres: float
    mask_threshold: float
    prompt_template: str
    model_hash: str
    precision: str
    hidden_dim: int
    vocab_size: int
    max_tokens: int
    msda: str
    tokenizer: str
    weights_note: str
    checkpoint_sha256: str


def _files_hash(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def read_graph_metadata(path: Path, flag: str = "--onnx") -> dict[str, Any]:
    """Decoded ``actionvos.*`` metadata of one ``.onnx`` (JSON keys parsed).

    Raises:
        InputError: unreadable file or no ActionVOS metadata (re-export).
    """
    from actionvos.export import metadata as md

    try:
        meta = md.read_onnx_metadata(path)
    except InputError as err:
        raise InputError(f"{flag}: {err}") from None
    except ValueError as err:
        raise InputError(f"{flag}: {err}") from None
    except Exception as err:  # onnx.load on a corrupt file (DecodeError and friends)
        raise InputError(f"{flag} {str(Path(path).parent)!r}: cannot read {Path(path).name} ({type(err).__name__}); "
                         "re-export it") from None
    return meta


def graph_spec(path: Path):
    """The :class:`~actionvos.export.spec.ExportSpec` recorded in a graph."""
    from actionvos.export.metadata import spec_from_metadata

    return spec_from_metadata(read_graph_metadata(path))


def _facts_from_card(card, meta: dict[str, Any], text: Path, segmenter: Path) -> dict[str, Any]:
    size = card.input.size
    if size is None:
        raise InputError(f"{str(segmenter)!r} has no static input size in its card; calibration needs graphs "
                         "exported at a fixed --height/--width")
    return dict(frames=int(card.window or 1), height=int(size[0]), width=int(size[1]),
                pos_thres=float(card.thresholds.pos_cls_thres), mask_threshold=float(card.thresholds.mask_threshold),
                prompt_template=str(card.prompt_template), precision=card.precision.value,
                hidden_dim=int(card.config.hidden_dim), vocab_size=int(card.config.text.vocab_size),
                msda=str(card.msda), weights_note=str(card.weights_note or ""),
                checkpoint_sha256=str(card.checkpoint_sha256 or ""),
                tokenizer=str(segmenter.parent / "tokenizer") if (segmenter.parent / "tokenizer").is_dir() else "")


def read_model_facts(text: Path, segmenter: Path, flag: str = "--onnx") -> tuple[ModelFacts, dict[str, Any]]:
    """Model facts of an export directory (FP32, FP16 or INT8) and the segmenter's decoded metadata.

    Args:
        text, segmenter: the two graph files. flag: the CLI option the directory came from (for errors).
    Returns:
        ``(facts, meta)``; ``meta["calibration"]`` is the reduced-precision record (``{}`` for FP32).
    Raises:
        InputError: unreadable graphs, or no export spec (re-export).
        ConfigError: no model card (an older export), or an invalid or newer one
            (:meth:`actionvos.card.ModelCard.from_dict`).
    """
    meta = read_graph_metadata(segmenter, flag)
    read_graph_metadata(text, flag)
    meta.setdefault("calibration", {})
    calibration = meta["calibration"] or {}
    from actionvos.card import card_from_onnx

    facts = _facts_from_card(card_from_onnx(meta, f"{flag} {str(segmenter.parent)!r}"), meta, text, segmenter)
    if calibration.get("source_model_hash"):
        model_hash = str(calibration["source_model_hash"])
    elif facts["checkpoint_sha256"]:
        model_hash = facts["checkpoint_sha256"]
    else:
        model_hash = "onnx-" + _files_hash(text, segmenter)
    try:
        max_tokens = int(graph_spec(text).dims["L"].max)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise InputError(f"{flag} {str(text)!r}: the text graph's metadata has no export spec ({err}); "
                         "re-export with actionvos export") from None
    return ModelFacts(model_hash=model_hash, max_tokens=max_tokens, **facts), meta


def checkpoint_facts(card, frames: int, height: int, width: int) -> ModelFacts:
    """Model facts of a PyTorch checkpoint for ``calibrate collect --checkpoint`` (input size from the options).

    Args:
        card: the checkpoint's :class:`~actionvos.card.ModelCard` (its ``checkpoint_sha256`` equals that of the graphs
            exported from it). frames, height, width: the export size (T, pixels).
    """
    cfg = card.config
    return ModelFacts(frames=int(frames), height=int(height), width=int(width),
                      pos_thres=float(card.thresholds.pos_cls_thres), mask_threshold=float(card.thresholds.mask_threshold),
                      prompt_template=card.prompt_template, model_hash=card.checkpoint_sha256, precision="fp32",
                      hidden_dim=int(cfg.hidden_dim), vocab_size=int(cfg.text.vocab_size), max_tokens=card.max_text_tokens,
                      msda="torch", tokenizer=card.tokenizer_sha256 or "", weights_note=card.weights_note or "",
                      checkpoint_sha256=card.checkpoint_sha256)


def derived_props(source_props: dict[str, str], precision: str, record: dict[str, Any]) -> dict[str, str]:
    """``metadata_props`` of an FP16 / INT8 graph made from a graph with ``source_props``: the source's, with the
    card's precision changed, and the JSON ``actionvos.calibration`` record.

    Raises:
        ConfigError: the source graph carries no (valid) card.
    """
    from actionvos.card import card_from_onnx
    from actionvos.export.metadata import CALIBRATION_KEY, decode_metadata

    card = card_from_onnx(decode_metadata(source_props), "the source graph").with_artifact(precision=precision)
    props = {k: v for k, v in source_props.items() if k != CALIBRATION_KEY}
    props.update(card.onnx_props())
    props[CALIBRATION_KEY] = json.dumps(record)
    return props


def derived_card_files(src_dir: Path, dst_dir: Path, precision: str) -> list[str]:
    """Give an FP16 / INT8 directory what makes an export folder self-contained: ``card.json`` with the new
    precision and a copy of ``tokenizer/`` (when the source folder has them). Returns the names written.

    Raises:
        ConfigError: the source's ``card.json`` is invalid.
    """
    written = []
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    try:
        from actionvos.card import CARD_FILE, read_card_file, write_card
    except ImportError:  # pragma: no cover - before the card module
        return written
    if (src_dir / CARD_FILE).is_file():
        try:
            card = read_card_file(src_dir)
        except ActionVOSError:
            raise
        write_card(dst_dir, card.with_artifact(precision=precision))
        written.append(CARD_FILE)
    if (src_dir / "tokenizer").is_dir():
        shutil.copytree(src_dir / "tokenizer", dst_dir / "tokenizer")
        written.append("tokenizer/")
    return written
