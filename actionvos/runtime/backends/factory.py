"""Open a backend by name, or pick the fastest available one (``--backend auto``) and log why.

Ranking for ``auto`` (fastest first; measured with ``benchmarks/bench_runtime.py``):

1. ``tensorrt`` — an ``--engine`` folder, the ``tensorrt`` and ``cuda-python`` packages and a GPU;
2. ``onnxruntime`` on a GPU execution provider (TensorRT EP, then CUDA EP) — ``--onnx`` and onnxruntime-gpu;
3. ``pytorch`` on CUDA — ``--checkpoint`` and a CUDA build of torch with a GPU;
4. ``onnxruntime`` on the CPU — ``--onnx`` (faster than PyTorch eager on the CPU);
5. ``pytorch`` on the CPU — ``--checkpoint``.

torch is imported only when a checkpoint is involved, so ``--onnx``/``--engine`` runs stay torch-free.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from actionvos.errors import ConfigError
from actionvos.runtime.backends.base import Backend

__all__ = ["BACKENDS", "open_backend", "choose_backend"]

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
    """None when TensorRT can run here, else the reason it cannot."""
    if not _has("tensorrt"):
        return "the tensorrt package is not installed"
    if not _has("cuda"):
        return "cuda-python is not installed"
    try:
        from cuda import cudart  # noqa: F401  (cuda-python < 13 layout)
    except ImportError:
        try:
            from cuda.bindings import runtime as cudart  # noqa: F401
        except ImportError:
            return "cuda-python has no runtime bindings"
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count < 1:
        return "no CUDA GPU is visible"
    return None


def _torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def choose_backend(checkpoint=None, onnx=None, engine=None) -> tuple[str, str, str]:
    """Pick ``(backend, device_or_provider, reason)`` for ``--backend auto`` from what was given and what is installed.

    Raises:
        ConfigError: none of ``checkpoint``, ``onnx``, ``engine`` was given, or none of them can run here.
    """
    skipped = []
    if engine is not None:
        why = _trt_ready()
        if why is None:
            return "tensorrt", "cuda", "TensorRT engine with the MSDA plugin on the GPU (fastest)"
        skipped.append(f"tensorrt skipped: {why}")
    if onnx is not None:
        gpu = _ort_gpu()
        if gpu is not None:
            return "onnxruntime", "auto", f"onnxruntime with {gpu} ({'; '.join(skipped) or 'no engine given'})"
    if checkpoint is not None and _torch_cuda():
        return "pytorch", "cuda", f"PyTorch on CUDA ({'; '.join(skipped) or 'no engine/GPU onnxruntime'})"
    if onnx is not None:
        if _has("onnxruntime"):
            return "onnxruntime", "cpu", ("onnxruntime on the CPU: no GPU provider here, and it is faster than PyTorch "
                                          f"eager on the CPU ({'; '.join(skipped) or 'no engine given'})")
        skipped.append("onnxruntime skipped: not installed")
    if checkpoint is not None:
        return "pytorch", "cpu", f"PyTorch eager on the CPU, the only runnable option ({'; '.join(skipped) or 'nothing faster given'})"
    if not (checkpoint or onnx or engine):
        raise ConfigError("no model given; pass --checkpoint (PyTorch), --onnx (export folder) or --engine (TensorRT engines)")
    raise ConfigError("no backend can run the given model here: " + "; ".join(skipped))


def open_backend(backend: str = "auto", *, checkpoint: str | Path | None = None, onnx: str | Path | None = None,
                 engine: str | Path | None = None, device: str | None = None, preset: str | None = None,
                 threads: int | None = None, plugin_library: str | None = None, window: int | None = None) -> Backend:
    """Load a backend.

    Args:
        backend: ``auto``, ``tensorrt``, ``onnxruntime`` or ``pytorch``.
        checkpoint: ``.pth`` for ``pytorch``. onnx: ``actionvos export`` folder for ``onnxruntime``.
        engine: folder with ``text_encoder.engine`` + ``segmenter.engine`` for ``tensorrt``.
        device: PyTorch device (``cpu``/``cuda``), or the onnxruntime provider (``auto``/``tensorrt``/``cuda``/``cpu``).
        threads: CPU threads (onnxruntime intra-op, torch ``set_num_threads``).
        window: the session's clip length T (selects the ONNX window graphs when T differs from the segmenter's).
    Raises:
        ConfigError: unknown backend, the backend's model argument missing, or its packages unavailable.
        CheckpointError / InputError: unreadable model files.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown --backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        backend, dev, reason = choose_backend(checkpoint, onnx, engine)
        device = device or dev
        log.info("--backend auto: %s (%s)", backend, reason)
    if backend == "tensorrt":
        if engine is None:
            raise ConfigError("--backend tensorrt needs --engine with the folder of text_encoder.engine + segmenter.engine")
        from actionvos.runtime.backends.tensorrt import TrtBackend

        return TrtBackend(engine, plugin_library=plugin_library)
    if backend == "onnxruntime":
        if onnx is None:
            raise ConfigError("--backend onnxruntime needs --onnx with the folder written by `actionvos export`")
        from actionvos.runtime.backends.onnxruntime import OrtBackend

        return OrtBackend(onnx, provider=device or "auto", threads=threads, plugin_library=plugin_library, window=window)
    if checkpoint is None:
        raise ConfigError("--backend pytorch needs --checkpoint with an ActionVOS .pth file")
    if not _has("torch"):
        raise ConfigError("--backend pytorch needs torch; pip install torch, or use --onnx with onnxruntime")
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} but CUDA is not available to torch {torch.__version__}; use --device cpu")
    from actionvos.runtime.backends.pytorch import TorchBackend

    return TorchBackend.from_checkpoint(checkpoint, device=device, preset=preset)
