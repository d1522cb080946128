"""Open any ActionVOS artifact: read its card and tokenizer once, and load the backend that runs it.

Artifacts (see :mod:`actionvos.card` for where each keeps its card):

* nothing → the bundled demo model (:mod:`actionvos.demo`);
* a ``.pth`` file → our checkpoint (card + tokenizer inside: ``--tokenizer`` not needed) or an official
  ReferFormer/ActionVOS checkpoint (no card: the architecture comes from ``--preset`` or is inferred, the facts
  from :data:`~actionvos.card.OFFICIAL_FACTS`, and ``--tokenizer`` is required);
* an export folder (``card.json``, ``tokenizer/``, ``*.onnx``) → ONNX Runtime;
* an engine folder (``card.json``, ``tokenizer/``, ``*.engine``) → TensorRT.

:func:`open_model` is the one entry point used by ``actionvos run``, ``actionvos camera``, the calibration report,
the evaluation flow, the benchmarks and the Python API (:mod:`actionvos.api`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actionvos.card import CARD_FILE, ModelCard, card_for_checkpoint, read_card_file
from actionvos.errors import CheckpointError, ConfigError, InputError
from actionvos.tokenizer import TOKENIZER_DIR, Tokenizer, load_tokenizer

__all__ = ["ARTIFACT_KINDS", "CheckpointArtifact", "artifact_kind", "read_checkpoint_artifact", "read_folder_artifact",
           "open_model", "checkpoint_extras", "check_device"]

log = logging.getLogger(__name__)

#: What :func:`artifact_kind` can answer.
ARTIFACT_KINDS = ("demo", "checkpoint", "onnx", "engine")


def artifact_kind(path: str | Path | None) -> str:
    """Which kind of artifact ``path`` is (one of :data:`ARTIFACT_KINDS`; a folder with graphs is ``onnx`` even when it
    also holds engines).

    Raises:
        InputError: the path does not exist, or is a folder with neither graphs nor engines.
    """
    if path is None:
        return "demo"
    p = Path(path)
    if p.is_file():
        return "checkpoint"
    if p.is_dir():
        if any(p.glob("*.onnx")):
            return "onnx"
        if any(p.glob("*.engine")):
            return "engine"
        raise InputError(f"{p} holds neither ONNX graphs nor TensorRT engines; pass a checkpoint (.pth), an "
                         "`actionvos export` folder or an engine folder")
    raise InputError(f"model {p} does not exist; pass a checkpoint (.pth), an `actionvos export` folder or an engine folder")


@dataclass
class CheckpointArtifact:
    """A checkpoint read and checked: model (eval mode), card and tokenizer.

    Attributes:
        model: :class:`~actionvos.model.actionvos.ActionVOS` on the requested device.
        card: its :class:`~actionvos.card.ModelCard`.
        tokenizer: its :class:`~actionvos.tokenizer.Tokenizer`, checked against the card.
        meta: the checkpoint's other top-level entries (``epoch``, ``training``, ...).
    """

    model: Any
    card: ModelCard
    tokenizer: Tokenizer
    meta: dict


def checkpoint_extras(card: ModelCard, tokenizer: Tokenizer) -> dict[str, Any]:
    """The entries that make a checkpoint self-contained: ``{"card": ..., "tokenizer": {file: text}}``.

    Writers (the trainer, the demo script) add these to ``{'model': state_dict}``; :func:`read_checkpoint_artifact`
    reads them back.
    """
    return {"card": card.to_dict(), "tokenizer": dict(tokenizer.files)}


def _random_note(meta: dict) -> str | None:
    if meta.get("random_weights"):
        from actionvos.inference.writers import RANDOM_WEIGHTS_NOTE

        return str(meta.get("weights_note") or RANDOM_WEIGHTS_NOTE)
    return meta.get("weights_note") or meta.get("demo_note")


def read_checkpoint_artifact(path: str | Path | None, *, tokenizer: str | Path | None = None, preset: str | None = None,
                             device: str = "cpu") -> CheckpointArtifact:
    """Read a checkpoint (or the demo when ``path`` is None), build its card and tokenizer, load the model strictly.

    Args:
        path: a ``.pth`` file, or None for the bundled demo model.
        tokenizer: ``--tokenizer`` (needed only by a checkpoint without an embedded tokenizer).
        preset: ``--preset`` (only for a checkpoint without a card; ours fix their architecture).
        device: torch device string.
    Raises:
        CheckpointError: unreadable or mismatched checkpoint.
        InputError: an official checkpoint without ``--tokenizer``, an unreadable tokenizer.
        ConfigError: a tokenizer that is not the model's, ``--preset`` on a checkpoint with a card, an invalid card.
    """
    from actionvos.model.builder import build_model
    from actionvos.model.checkpoint import file_sha256, load_state_dict_strict, read_checkpoint, resolve_config

    if path is None:
        from actionvos.demo import DEMO_CHECKPOINT

        path = DEMO_CHECKPOINT
        log.info("model: the bundled demo model (not the paper's model; pass a checkpoint or export folder for real use)")
    state, meta = read_checkpoint(path)
    where = str(path)
    if isinstance(meta.get("card"), dict):
        if preset:
            raise ConfigError(f"--preset {preset}: {path} carries its own model card; drop --preset")
        card = ModelCard.from_dict(meta["card"], where=where)
        cfg = card.config
        log.info("model card: %s (embedded in the checkpoint)", cfg.name)
    else:
        cfg = resolve_config(state, meta, preset)
        legacy = meta.get("config") if isinstance(meta.get("config"), dict) else None
        card = card_for_checkpoint(cfg, file_sha256(path), legacy=legacy, weights_note=_random_note(meta))
    tok = _checkpoint_tokenizer(meta, tokenizer, where)
    if card.tokenizer_sha256 is None and "tokenizer" in meta:
        card = dataclasses.replace(card, tokenizer_sha256=tok.sha256)
    tok.check_model(card)
    model = build_model(cfg)
    load_state_dict_strict(model, state)
    return CheckpointArtifact(model.to(device).eval(), card, tok, meta)


def _checkpoint_tokenizer(meta: dict, arg: str | Path | None, where: str) -> Tokenizer:
    embedded = meta.get("tokenizer")
    if arg is not None:
        if isinstance(embedded, dict):
            log.info("--tokenizer %s replaces the tokenizer embedded in %s (it must be the same files)", arg, where)
        return load_tokenizer(arg)
    if isinstance(embedded, dict):
        return Tokenizer.from_files(embedded, source=where)
    from actionvos.demo import DEMO_CHECKPOINT, DEMO_TOKENIZER

    if Path(where).resolve() == Path(DEMO_CHECKPOINT).resolve():
        return Tokenizer.from_dir(DEMO_TOKENIZER)
    raise InputError(f"{where} carries no tokenizer (an official checkpoint); pass --tokenizer with the folder holding "
                     "roberta-base's vocab.json and merges.txt")


def read_folder_artifact(folder: str | Path, tokenizer: str | Path | None = None) -> tuple[ModelCard, Tokenizer]:
    """The card and tokenizer of an export / engine / FP16 / INT8 folder.

    Raises:
        InputError: no ``card.json`` or no ``tokenizer/`` (a folder of an older version: re-export it).
        ConfigError: an invalid card, or ``tokenizer`` is not the model's.
    """
    folder = Path(folder)
    card = read_card_file(folder)
    if tokenizer is not None:
        tok = load_tokenizer(tokenizer)
    else:
        tdir = folder / TOKENIZER_DIR
        if not tdir.is_dir():
            raise InputError(f"{folder} has no {TOKENIZER_DIR}/ folder; re-export it with this version of actionvos "
                             "(export folders carry their tokenizer)")
        tok = Tokenizer.from_dir(tdir)
    return card, tok.check_model(card)


def check_device(device: str) -> str:
    """Return ``device`` if torch can use it: ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ConfigError: an unknown device string, or CUDA requested where torch has no usable GPU.
    """
    import torch

    if device == "cpu":
        return device
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device} was requested but CUDA is not available to torch {torch.__version__}; "
                              "use --device cpu")
        index = int(device[5:]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
        return device
    raise ConfigError(f"unknown --device {device!r}; use cpu, cuda or cuda:N")


def open_model(model: str | Path | None = None, *, backend: str = "auto", tokenizer: str | Path | None = None,
               preset: str | None = None, device: str | None = None, threads: int | None = None,
               plugin_library: str | None = None):
    """Load any artifact and return ``(backend, tokenizer)``; the card is ``backend.info.card``.

    Args:
        model: a checkpoint, an export folder, an engine folder, or None for the bundled demo.
        backend: ``auto``, ``pytorch``, ``onnxruntime`` or ``tensorrt`` (checked against the artifact kind).
        tokenizer: ``--tokenizer``; needed only for an official checkpoint.
        preset: ``--preset`` for an official checkpoint.
        device: PyTorch device, or the onnxruntime provider (``auto``/``cuda``/``tensorrt``/``cpu``).
        threads: CPU threads.
        plugin_library: the MSDA plugin ``.so`` for TensorRT.
    Raises:
        ConfigError / InputError / CheckpointError: one line naming the problem and the fix.
    """
    from actionvos.runtime.backends.factory import BACKENDS, choose

    if backend not in BACKENDS:
        raise ConfigError(f"unknown --backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    kind = artifact_kind(model)
    folder = Path(model) if kind in ("onnx", "engine") else None
    has_onnx = folder is not None and any(folder.glob("*.onnx"))
    has_engine = folder is not None and any(folder.glob("*.engine"))
    if backend == "auto":
        c = choose(checkpoint="demo" if kind == "demo" else (model if kind == "checkpoint" else None),
                   onnx=folder if has_onnx else None, engine=folder if has_engine and not has_onnx else None)
        backend, device = c.backend, device or c.device
        log.info("--backend auto: %s (%s)", backend, c.reason)
    needs = {"pytorch": kind in ("demo", "checkpoint"), "onnxruntime": has_onnx, "tensorrt": has_engine}
    if not needs[backend]:
        what = {"pytorch": "a checkpoint (--checkpoint)", "onnxruntime": "an `actionvos export` folder (--onnx)",
                "tensorrt": "a folder of TensorRT engines (--engine; `actionvos export --format engine`)"}[backend]
        raise ConfigError(f"--backend {backend} runs {what}, but {model if model is not None else 'the bundled demo'} is "
                          f"not one; pass the matching model or another --backend")
    if backend == "pytorch":
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        device = check_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        from actionvos.runtime.backends.pytorch import TorchBackend

        art = read_checkpoint_artifact(model, tokenizer=tokenizer, preset=preset, device=device)
        return TorchBackend(art.model, art.card, device=device), art.tokenizer
    if preset is not None:
        raise ConfigError(f"--preset applies to official checkpoints only; {model} carries its own model card")
    card, tok = read_folder_artifact(folder, tokenizer)
    if backend == "onnxruntime":
        from actionvos.runtime.backends.onnxruntime import OrtBackend

        return OrtBackend(folder, card, provider=device or "auto", threads=threads, plugin_library=plugin_library), tok
    from actionvos.runtime.backends.tensorrt import TrtBackend

    return TrtBackend(folder, card, plugin_library=plugin_library), tok
