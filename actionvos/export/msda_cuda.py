"""The MSDA CUDA kernels of the TensorRT plugin, callable from PyTorch (tests and benchmarks).

``trt_plugins/msda/msda_kernel.cu`` is JIT-compiled with ``torch.utils.cpp_extension.load`` together with
``trt_plugins/msda/torch_ext.cpp`` the first time :func:`load_msda_extension` runs (needs a CUDA build of
PyTorch and nvcc; the build is cached by PyTorch under ``trt_plugins/msda/build/torch_ext``). Nothing is
imported or built at module import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from actionvos.errors import ActionVOSError

if TYPE_CHECKING:
    import torch

__all__ = ["MsdaExtensionError", "load_msda_extension", "msda_cuda"]

_SRC_DIR = Path(__file__).resolve().parents[2] / "trt_plugins" / "msda"
_EXT_NAME = "actionvos_msda_ext"
_ext = None


class MsdaExtensionError(ActionVOSError):
    """The MSDA CUDA extension cannot be built or used here (no CUDA PyTorch, no nvcc, no sources)."""


def load_msda_extension(verbose: bool = False):
    """Build (first call, ~1 min) or load the extension module exposing ``msda_forward``.

    Raises:
        MsdaExtensionError: PyTorch has no CUDA support, the CUDA toolkit (nvcc) is missing, the kernel sources
            are not available (package installed without the repository), or compilation failed.
    """
    global _ext
    if _ext is not None:
        return _ext
    import torch
    from torch.utils import cpp_extension

    if torch.version.cuda is None:
        raise MsdaExtensionError(
            f"the MSDA CUDA extension needs a CUDA build of PyTorch; this one is {torch.__version__} (CPU only)"
        )
    if cpp_extension.CUDA_HOME is None:
        raise MsdaExtensionError("the MSDA CUDA extension needs the CUDA toolkit (nvcc); set CUDA_HOME")
    sources = [_SRC_DIR / "torch_ext.cpp", _SRC_DIR / "msda_kernel.cu"]
    if not all(s.is_file() for s in sources):
        raise MsdaExtensionError(f"MSDA kernel sources not found under {_SRC_DIR} (needs a repository checkout)")
    build_dir = _SRC_DIR / "build" / "torch_ext"
    build_dir.mkdir(parents=True, exist_ok=True)
    try:
        _ext = cpp_extension.load(
            name=_EXT_NAME,
            sources=[str(s) for s in sources],
            extra_include_paths=[str(_SRC_DIR)],
            extra_cflags=["-O3"],
            extra_cuda_cflags=["-O3"],
            build_directory=str(build_dir),
            verbose=verbose,
        )
    except Exception as e:  # compiler errors surface as RuntimeError / subprocess errors
        raise MsdaExtensionError(f"building the MSDA CUDA extension failed: {e}") from e
    return _ext


def msda_cuda(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor | list[tuple[int, int]],
    level_start_index: torch.Tensor | list[int] | None,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
    vec: int = 0,
) -> torch.Tensor:
    """MSDA sampling core on the GPU with the plugin's kernels; same contract as ``ms_deform_attn_core``.

    Args:
        value: ``[N, S, M, D]`` float32/float16 CUDA tensor.
        spatial_shapes: ``[L, 2]`` int32/int64 tensor or list of ``(H, W)`` (moved to value's device).
        level_start_index: ``[L]`` int32/int64 tensor or list; ``None`` derives it from ``spatial_shapes``.
        sampling_locations: ``[N, Lq, M, L, P, 2]`` of value's dtype, normalised ``(x, y)``.
        attention_weights: ``[N, Lq, M, L, P]`` of value's dtype.
        out: optional contiguous ``[N, Lq, M*D]`` output tensor to write into.
        vec: channels per thread, 0 = automatic (else 1, 2 or 4); for tests and benchmarks.

    Returns:
        ``[N, Lq, M*D]`` tensor of value's dtype.

    Raises:
        MsdaExtensionError: as :func:`load_msda_extension`.
        RuntimeError: bad shapes, dtypes or devices, or a failed kernel launch.
    """
    import torch

    ext = load_msda_extension()
    dev = value.device
    shapes = torch.as_tensor(spatial_shapes, device=dev)
    if shapes.dtype not in (torch.int32, torch.int64):
        shapes = shapes.long()
    if level_start_index is None:
        areas = shapes.long().prod(1)
        level_start_index = torch.cat((areas.new_zeros(1), areas.cumsum(0)[:-1]))
    starts = torch.as_tensor(level_start_index, device=dev)
    if starts.dtype not in (torch.int32, torch.int64):
        starts = starts.long()
    return ext.msda_forward(value, shapes, starts, sampling_locations, attention_weights, out, int(vec))
