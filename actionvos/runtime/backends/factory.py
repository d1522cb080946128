"""Open a backend by name, or pick the fastest available one (``--backend auto``) and log why.

Ranking for ``auto`` (fastest first; measured with ``benchmarks/bench_runtime.py``):

1. ``tensorrt`` — an ``--engine`` folder (or an ``--onnx`` folder that also holds the engines), the ``tensorrt``
   and ``cuda-python`` packages and a GPU;
2. ``onnxruntime`` on a GPU execution provider (TensorRT EP, then CUDA EP) — ``--onnx`` and onnxruntime-gpu;
3. ``pytorch`` on CUDA — ``--checkpoint`` and a CUDA build of torch with a GPU;
4. ``onnxruntime`` on the CPU — ``--onnx`` (faster than PyTorch eager on the CPU);
5. ``pytorch`` on the CPU — ``--checkpoint``.

Graphs exported with ``--msda plugin`` never go to ONNX Runtime: its TensorRT EP cannot see our ``IPluginV3``
plugin and the other providers have no kernel for it (:func:`~actionvos.runtime.backends.onnxruntime.plugin_graph_refusal`).
Such a folder runs on the TensorRT backend when it holds engines and TensorRT can run here, else ``auto`` fails
with one line saying what to do (or falls back to ``--checkpoint`` when one was given).

The decision itself is :func:`decide_backend`, a pure function of what was given (:class:`ModelFiles`) and what is
installed (:class:`Environment`), tested on the CPU; :func:`choose` gathers those facts.

torch is imported only when a checkpoint is involved, so ``--onnx``/``--engine`` runs stay torch-free.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from actionvos.errors import ConfigError

__all__ = ["BACKENDS", "choose", "decide_backend", "ModelFiles", "Environment", "Choice",
           "onnx_folder_facts"]

log = logging.getLogger(__name__)

#: Values of ``--backend``.
BACKENDS = ("auto", "tensorrt", "onnxruntime", "pytorch")


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _ort_gpu() -> str | None:
    if not _has("onnxruntime"):
        return None
    import onnxruntime as ort

    avail = ort.get_available_providers()
    for name in ("TensorrtExecutionProvider", "CUDAExecutionProvider"):
        if name in avail:
            return name
    return None


def _trt_ready() -> str | None:
    """None when the TensorRT backend can run here, else the reason it cannot (with what to install)."""
    if not _has("tensorrt"):
        return "the tensorrt package is not installed (pip install tensorrt)"
    from actionvos.errors import ConfigError as _Missing
    from actionvos.runtime.cuda_host import import_cudart

    try:
        cudart = import_cudart()
    except _Missing:
        return "cuda-python is not installed (pip install cuda-python)"
    try:
        err, count = cudart.cudaGetDeviceCount()
    except Exception as e:  # a driver problem
        return f"the CUDA runtime failed ({e})"
    if int(err) != 0 or count < 1:
        return "no CUDA GPU is visible"
    return None


def _torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@dataclass(frozen=True)
class ModelFiles:
    """What the user gave ``--backend auto``.

    Attributes:
        checkpoint / onnx / engine: whether ``--checkpoint``, ``--onnx``, ``--engine`` was given.
        onnx_msda: the ``--onnx`` folder's MSDA mode (``"plugin"``, ``"onnx"``, or None when unknown / no folder).
        onnx_has_engines: the ``--onnx`` folder also holds ``text_encoder.engine`` + ``segmenter.engine``.
    """

    checkpoint: bool = False
    onnx: bool = False
    engine: bool = False
    onnx_msda: str | None = None
    onnx_has_engines: bool = False


@dataclass(frozen=True)
class Environment:
    """What can run here.

    Attributes:
        trt_unavailable: None when the TensorRT backend can run (tensorrt, cuda-python, a GPU), else why not.
        ort_installed: onnxruntime imports. ort_gpu: its best GPU provider name, or None.
        torch_cuda: torch with a visible CUDA GPU (only looked up when a checkpoint was given).
    """

    trt_unavailable: str | None = "the tensorrt package is not installed"
    ort_installed: bool = False
    ort_gpu: str | None = None
    torch_cuda: bool = False


@dataclass(frozen=True)
class Choice:
    """Result of :func:`decide_backend`: ``backend``, its ``device`` (torch device or onnxruntime provider),
    the ``reason`` logged, and whether the engines come from the ``--onnx`` folder (``engine_from_onnx``)."""

    backend: str
    device: str
    reason: str
    engine_from_onnx: bool = False


def decide_backend(files: ModelFiles, env: Environment) -> Choice:
    """The ``--backend auto`` decision (pure: no imports, no files, no GPU).

    Raises:
        ConfigError: nothing given; a ``--msda plugin`` ONNX folder that cannot run here (the line says to re-export
            with ``--msda onnx`` or to build engines for the TensorRT backend, and why TensorRT cannot run when it
            cannot); or nothing given can run here.
    """
    from actionvos.runtime.backends.onnxruntime import plugin_graph_refusal

    if not (files.checkpoint or files.onnx or files.engine):
        raise ConfigError("no model given; pass --checkpoint (PyTorch), --onnx (export folder) or --engine (TensorRT engines)")
    skipped = []
    if files.engine:
        if env.trt_unavailable is None:
            return Choice("tensorrt", "cuda", "TensorRT engine with the MSDA plugin on the GPU (fastest)")
        skipped.append(f"tensorrt skipped: {env.trt_unavailable}")
    onnx_ok = files.onnx
    if files.onnx and files.onnx_msda == "plugin":
        onnx_ok = False
        if files.onnx_has_engines and env.trt_unavailable is None:
            return Choice("tensorrt", "cuda", "the --onnx folder holds a --msda plugin export with its TensorRT engines; "
                          "ONNX Runtime cannot run plugin graphs", engine_from_onnx=True)
        if not files.checkpoint:
            extra = []
            if not files.onnx_has_engines:
                extra.append("the folder holds no TensorRT engines")
            if env.trt_unavailable is not None:
                extra.append(f"the TensorRT backend cannot run here: {env.trt_unavailable}")
            raise ConfigError(plugin_graph_refusal("the --onnx folder") + (f" ({'; '.join(extra)})" if extra else ""))
        skipped.append("onnxruntime skipped: the --onnx folder holds --msda plugin graphs, which ONNX Runtime cannot run")
    if onnx_ok and env.ort_gpu is not None:
        return Choice("onnxruntime", "auto", f"onnxruntime with {env.ort_gpu} ({'; '.join(skipped) or 'no engine given'})")
    if files.checkpoint and env.torch_cuda:
        return Choice("pytorch", "cuda", f"PyTorch on CUDA ({'; '.join(skipped) or 'no engine/GPU onnxruntime'})")
    if onnx_ok:
        if env.ort_installed:
            return Choice("onnxruntime", "cpu", "onnxruntime on the CPU: no GPU provider here, and it is faster than "
                          f"PyTorch eager on the CPU ({'; '.join(skipped) or 'no engine given'})")
        skipped.append("onnxruntime skipped: not installed (pip install onnxruntime)")
    if files.checkpoint:
        return Choice("pytorch", "cpu", "PyTorch eager on the CPU, the only runnable option "
                      f"({'; '.join(skipped) or 'nothing faster given'})")
    raise ConfigError("no backend can run the given model here: " + "; ".join(skipped))


def onnx_folder_facts(onnx: str | Path) -> tuple[str | None, bool]:
    """``(msda mode, holds the engines)`` of an export folder: the mode from its ``card.json`` (None when it has none:
    :class:`~actionvos.runtime.backends.onnxruntime.OrtBackend` then reports the folder)."""
    from actionvos.card import CARD_FILE

    d = Path(onnx)
    msda = None
    if (d / CARD_FILE).is_file():
        try:
            msda = json.loads((d / CARD_FILE).read_text(encoding="utf-8")).get("msda")
        except (OSError, ValueError, AttributeError):
            msda = None
    has_engines = all((d / f"{r}.engine").is_file() for r in ("text_encoder", "segmenter"))
    return msda, has_engines


def choose(checkpoint=None, onnx=None, engine=None) -> Choice:
    """The :class:`Choice` for ``--backend auto`` from what was given and what is installed (facts gathered here,
    decision by :func:`decide_backend`).

    Raises:
        ConfigError: as :func:`decide_backend`.
    """
    msda, has_engines = onnx_folder_facts(onnx) if onnx is not None else (None, False)
    files = ModelFiles(checkpoint is not None, onnx is not None, engine is not None, msda, has_engines)
    needs_trt = engine is not None or msda == "plugin"
    env = Environment(trt_unavailable=_trt_ready() if needs_trt else "not checked (no engines given)",
                      ort_installed=onnx is not None and _has("onnxruntime"),
                      ort_gpu=_ort_gpu() if onnx is not None and msda != "plugin" else None,
                      torch_cuda=checkpoint is not None and _torch_cuda())
    return decide_backend(files, env)
