"""The MSDA CUDA kernels of the TensorRT plugin, callable from PyTorch (the CUDA backend, tests, benchmarks).

``trt_plugins/msda/msda_kernel.cu`` is JIT-compiled with ``torch.utils.cpp_extension.load`` together with
``trt_plugins/msda/torch_ext.cpp`` the first time :func:`load_msda_extension` runs (needs a CUDA build of
PyTorch and nvcc; the build is cached by PyTorch under ``trt_plugins/msda/build/torch_ext``, and a log line says
when it builds). Before building, nvcc's CUDA version is checked against ``torch.version.cuda`` and the driver
(:mod:`actionvos.export.cuda_compat`, the same check ``trt_plugins/build.sh`` runs against TensorRT). Nothing is
imported or built at module import time.

:func:`msda_kernel_core` is a drop-in ``MSDeformAttn.core`` (same contract as the oracle
:func:`actionvos.model.msda.ms_deform_attn_core`); index tensors are uploaded once per level-shape set and cached.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from actionvos.errors import ActionVOSError

if TYPE_CHECKING:
    import torch

__all__ = ["MsdaExtensionError", "load_msda_extension", "msda_cuda", "msda_kernel_core", "extension_status"]

log = logging.getLogger(__name__)

_SRC_DIR = Path(__file__).resolve().parents[2] / "trt_plugins" / "msda"
_EXT_NAME = "actionvos_msda_ext"
_ext = None
_ext_error: "MsdaExtensionError | None" = None
_lock = threading.Lock()
_index_cache: dict[tuple, "torch.Tensor"] = {}


class MsdaExtensionError(ActionVOSError):
    """The MSDA CUDA extension cannot be built or used here (no CUDA PyTorch, no nvcc, no sources)."""


def _check_toolchain(torch_cuda: str | None, cuda_home: str | None) -> None:
    """Raise :class:`MsdaExtensionError` (one line) unless nvcc under ``cuda_home`` fits PyTorch and the driver."""
    from actionvos.export import cuda_compat as cc

    if torch_cuda is None:
        raise MsdaExtensionError("the MSDA CUDA extension needs a CUDA build of PyTorch; this one is CPU only "
                                 "(install a CUDA wheel of torch)")
    if cuda_home is None:
        raise MsdaExtensionError("the MSDA CUDA extension needs the CUDA toolkit (nvcc); set CUDA_HOME")
    nvcc = Path(cuda_home) / "bin" / "nvcc"
    drv = cc.driver_cuda_version()
    res = cc.check_versions(cc.nvcc_version(str(nvcc)), torch_cuda=torch_cuda, driver=drv[0] if drv else None,
                            driver_source=drv[1] if drv else "", what="the MSDA CUDA extension")
    for note in res.notes:
        log.debug("msda_cuda: %s", note)
    if res.error:
        raise MsdaExtensionError(res.error)


def load_msda_extension(verbose: bool = False):
    """Build (first call, ~1 min; logged) or load the extension module exposing ``msda_forward``.

    A failure is remembered: later calls raise the same error without trying again.

    Raises:
        MsdaExtensionError: PyTorch has no CUDA support, the CUDA toolkit (nvcc) is missing or its CUDA major
            differs from PyTorch's (or exceeds the driver's), the kernel sources are not available (package
            installed without the repository), or compilation failed (with ninja through
            ``cpp_extension.load``, without it through setuptools).
    """
    global _ext, _ext_error
    if _ext is not None:
        return _ext
    if _ext_error is not None:
        raise _ext_error
    with _lock:
        if _ext is not None:
            return _ext
        try:
            _ext = _build(verbose)
        except MsdaExtensionError as e:
            _ext_error = e
            raise
    return _ext


def _build(verbose: bool):
    import time

    import torch
    from torch.utils import cpp_extension

    _check_toolchain(torch.version.cuda, cpp_extension.CUDA_HOME)
    sources = [_SRC_DIR / "torch_ext.cpp", _SRC_DIR / "msda_kernel.cu"]
    if not all(s.is_file() for s in sources):
        raise MsdaExtensionError(f"MSDA kernel sources not found under {_SRC_DIR} (needs a repository checkout)")
    build_dir = _SRC_DIR / "build" / "torch_ext"
    build_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if not cpp_extension.is_ninja_available():
        ext = _build_without_ninja(sources, build_dir, verbose)
        log.info("MSDA CUDA extension ready (%.1f s, setuptools build)", time.perf_counter() - t0)
        return ext
    built = build_dir / f"{_EXT_NAME}.so"
    newest_src = max(s.stat().st_mtime for s in sources + [_SRC_DIR / "msda_kernel.cuh"])
    if not built.is_file() or built.stat().st_mtime < newest_src:
        log.warning("building the MSDA CUDA extension (first use, about a minute) in %s", build_dir)
    try:
        ext = cpp_extension.load(
            name=_EXT_NAME,
            sources=[str(s) for s in sources],
            extra_include_paths=[str(_SRC_DIR)],
            extra_cflags=["-O3"],
            extra_cuda_cflags=["-O3"],
            build_directory=str(build_dir),
            verbose=verbose,
        )
    except Exception as e:  # compiler errors surface as RuntimeError / subprocess errors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MsdaExtensionError(f"building the MSDA CUDA extension failed: {first} "
                                 f"(rerun with verbose=True for the compiler output)") from e
    log.info("MSDA CUDA extension ready (%.1f s)", time.perf_counter() - t0)
    return ext


def _build_without_ninja(sources: list[Path], build_dir: Path, verbose: bool):
    """``cpp_extension.load`` needs ninja; without it, build the same extension with setuptools (serial, no
    incremental rebuild: the result is reused while it is newer than the sources) and import it from its path."""
    import importlib.machinery
    import importlib.util
    import sysconfig

    from torch.utils import cpp_extension

    out_dir = build_dir / "setuptools"
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    target = out_dir / f"{_EXT_NAME}{suffix}"
    newest_src = max(p.stat().st_mtime for p in sources + [_SRC_DIR / "msda_kernel.cuh"])
    if not target.is_file() or target.stat().st_mtime < newest_src:
        log.warning("ninja not found: building the MSDA CUDA extension with setuptools (slower) in %s", out_dir)
        import contextlib
        import io

        from setuptools import setup

        sink = io.StringIO()
        try:
            ext = cpp_extension.CUDAExtension(
                _EXT_NAME, [str(p) for p in sources], include_dirs=[str(_SRC_DIR)],
                extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3"]})
            with contextlib.nullcontext() if verbose else contextlib.redirect_stdout(sink):
                setup(name=_EXT_NAME, ext_modules=[ext],
                      cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=False)},
                      script_args=["-q", "build_ext", "--build-lib", str(out_dir), "--build-temp",
                                   str(build_dir / "setuptools_tmp")])
        except (Exception, SystemExit) as e:  # setuptools reports compiler failures as SystemExit
            raise MsdaExtensionError(f"building the MSDA CUDA extension (setuptools, no ninja) failed: {e}; "
                                     "pip install ninja for the usual build") from e
    loader = importlib.machinery.ExtensionFileLoader(_EXT_NAME, str(target))
    spec = importlib.util.spec_from_file_location(_EXT_NAME, str(target), loader=loader)
    if spec is None or not target.is_file():
        raise MsdaExtensionError(f"the setuptools build did not produce {target}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def extension_status() -> str:
    """``"loaded"``, ``"failed: <reason>"`` or ``"not built"`` (never builds; for logs and reports)."""
    if _ext is not None:
        return "loaded"
    if _ext_error is not None:
        return f"failed: {_ext_error}"
    return "not built"


def _device_index(values, dtype: "torch.dtype", device: "torch.device") -> "torch.Tensor":
    """``values`` (python ints, nested) as a cached tensor on ``device`` (uploaded once per distinct value set)."""
    import torch

    key = (str(values), dtype, device)
    t = _index_cache.get(key)
    if t is None:
        with torch.inference_mode(False), torch.no_grad():
            t = torch.tensor(values, dtype=dtype, device=device)
        if len(_index_cache) > 256:
            _index_cache.clear()
        _index_cache[key] = t
    return t


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
        spatial_shapes: ``[L, 2]`` int32/int64 tensor or list of ``(H, W)``. A list is uploaded once and cached
            (per distinct shapes and device), so repeated calls do not copy host→device.
        level_start_index: ``[L]`` int32/int64 tensor or list (cached like ``spatial_shapes``); ``None`` derives it
            from ``spatial_shapes`` (from the python list when given one, else on the device).
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
    if isinstance(spatial_shapes, torch.Tensor):
        shapes = spatial_shapes.to(dev)
        if shapes.dtype not in (torch.int32, torch.int64):
            shapes = shapes.long()
    else:
        hw = [[int(h), int(w)] for h, w in spatial_shapes]
        shapes = _device_index(hw, torch.int64, dev)
        if level_start_index is None:
            from actionvos.model.msda import starts_from_shapes

            level_start_index = starts_from_shapes(hw)
    if level_start_index is None:
        areas = shapes.long().prod(1)
        starts = torch.cat((areas.new_zeros(1), areas.cumsum(0)[:-1]))
    elif isinstance(level_start_index, torch.Tensor):
        starts = level_start_index.to(dev)
        if starts.dtype not in (torch.int32, torch.int64):
            starts = starts.long()
    else:
        starts = _device_index([int(x) for x in level_start_index], torch.int64, dev)
    return ext.msda_forward(value, shapes, starts, sampling_locations, attention_weights, out, int(vec))


def msda_kernel_core(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    """``MSDeformAttn.core`` running the plugin's CUDA kernel; the oracle where the kernel does not apply.

    Same contract as :func:`actionvos.model.msda.ms_deform_attn_core`. Uses the kernel when ``value`` is a
    float32/float16 CUDA tensor, the locations/weights have its dtype (else they are cast to it) and no gradient
    is needed (the kernel has no backward); otherwise — CPU tensors, training, float64 — it calls the oracle, so a
    model with this core still trains and runs anywhere.

    Raises:
        MsdaExtensionError: the extension cannot be built (callers that install this core load it first, see
            :func:`actionvos.model.cuda_fast.use_msda_kernel`).
        RuntimeError: bad shapes or a failed kernel launch.
    """
    import torch

    from actionvos.model.msda import ms_deform_attn_core

    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (value, sampling_locations, attention_weights))
    if (value.device.type != "cuda" or value.dtype not in (torch.float32, torch.float16) or needs_grad
            or torch.jit.is_tracing()):
        if (isinstance(level_start_index, torch.Tensor) and level_start_index.device.type != "cpu"
                and not isinstance(spatial_shapes, torch.Tensor)):
            from actionvos.model.msda import starts_from_shapes

            level_start_index = starts_from_shapes(spatial_shapes)  # no device->host read (see MSDeformAttn)
        return ms_deform_attn_core(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    dt = value.dtype
    return msda_cuda(value, spatial_shapes, level_start_index, sampling_locations.to(dt), attention_weights.to(dt))
