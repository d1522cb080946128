"""CUDA runtime helpers shared by the TensorRT and ONNX Runtime backends: checked cuda-python calls and page-locked
host buffers whose memory lives as long as any numpy view of it.

Nothing here imports cuda-python at import time; :func:`import_cudart` does, when a GPU backend is created.

Buffer lifetime (issue 10, defect 9): a backend returns :class:`~actionvos.runtime.backends.base.StepOutputs` that
are *views* into its pinned output buffers (no copy per frame). Freeing those buffers in ``close()`` while a caller
still holds a result would leave the caller reading freed (and possibly reused) memory. :class:`HostBufferPool`
therefore ties each allocation to a Python object that every numpy view keeps alive (``ndarray.base`` chain), and
frees the memory in that object's finaliser: ``close()`` only drops the pool's own references, so memory is returned
to CUDA when the last view is gone — never earlier. The allocator is injectable, so the rule is tested on the CPU
(``tests/runtime/test_trt_host_logic.py``).
"""

from __future__ import annotations

import ctypes
import logging
import weakref
from typing import Callable

import numpy as np

from actionvos.errors import ConfigError

__all__ = ["import_cudart", "CudaRuntime", "HostBufferPool"]

log = logging.getLogger(__name__)


def import_cudart():
    """The cuda-python runtime module (``cuda.bindings.runtime``, or ``cuda.cudart`` before cuda-python 12.6).

    Raises:
        ConfigError: cuda-python is not installed (message says what to install).
    """
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise ConfigError("the GPU backends need cuda-python; pip install cuda-python (matching your CUDA major)") from None
    return cudart


class CudaRuntime:
    """Thin checked wrappers over the cuda-python runtime calls the GPU backends use.

    Every wrapper raises ``RuntimeError("CUDA error N (cudaErrorName) in call")`` on a non-zero status.
    Pointers are Python ints; streams are cuda-python ``cudaStream_t`` objects.
    """

    def __init__(self):
        self.rt = import_cudart()

    def check(self, result, what: str = "CUDA call"):
        """Unpack a cuda-python ``(err, *values)`` tuple; returns the single value, a tuple, or None."""
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            name = self.rt.cudaGetErrorName(err)[1]
            name = name.decode() if isinstance(name, bytes) else name
            raise RuntimeError(f"CUDA error {int(err)} ({name}) in {what}")
        return rest[0] if len(rest) == 1 else (tuple(rest) or None)

    def malloc(self, nbytes: int) -> int:
        """Device memory of ``nbytes`` bytes (at least 1); returns the pointer."""
        return int(self.check(self.rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        """Free device memory (errors are logged, not raised: used on teardown)."""
        err = self.rt.cudaFree(ptr)
        if int(err[0] if isinstance(err, tuple) else err) != 0:
            log.debug("cudaFree(%#x) failed: %s", ptr, err)

    def malloc_host(self, nbytes: int) -> int:
        """Page-locked host memory of ``nbytes`` bytes (at least 1); returns the pointer."""
        return int(self.check(self.rt.cudaMallocHost(max(int(nbytes), 1)), "cudaMallocHost"))

    def free_host(self, ptr: int) -> None:
        """Free page-locked host memory (errors logged: runs from finalisers)."""
        err = self.rt.cudaFreeHost(ptr)
        if int(err[0] if isinstance(err, tuple) else err) != 0:
            log.debug("cudaFreeHost(%#x) failed: %s", ptr, err)

    def h2d(self, dst: int, src_ptr: int, nbytes: int, stream) -> None:
        """Async host → device copy of ``nbytes`` on ``stream``."""
        self.check(self.rt.cudaMemcpyAsync(dst, src_ptr, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream),
                   "cudaMemcpyAsync(H2D)")

    def d2h(self, dst_ptr: int, src: int, nbytes: int, stream) -> None:
        """Async device → host copy of ``nbytes`` on ``stream``."""
        self.check(self.rt.cudaMemcpyAsync(dst_ptr, src, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream),
                   "cudaMemcpyAsync(D2H)")

    def stream(self):
        """A new non-blocking stream."""
        return self.check(self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")

    def sync(self, stream) -> None:
        """Wait for ``stream`` (cuda-python releases the GIL meanwhile)."""
        self.check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")


class HostBufferPool:
    """Host buffers as numpy arrays whose memory is freed only when neither the pool nor any view needs it.

    Args:
        alloc: ``nbytes -> pointer`` (e.g. :meth:`CudaRuntime.malloc_host`); None gives ordinary numpy memory
            (the CPU path, or no cuda-python).
        free: ``pointer -> None`` releasing what ``alloc`` returned; required with ``alloc``.

    Use: ``arr = pool.empty((P, Q), np.float32)`` (zero-filled); return views of ``arr`` freely; ``pool.close()``
    when the backend closes. Memory of an array is released when the pool is closed **and** the last view of it is
    gone (checked by ``tests/runtime/test_trt_host_logic.py``). Not thread-safe (one backend, one thread).
    """

    def __init__(self, alloc: Callable[[int], int] | None = None, free: Callable[[int], None] | None = None):
        if (alloc is None) != (free is None):
            raise ValueError("HostBufferPool needs both alloc and free, or neither")
        self._alloc, self._free = alloc, free
        self._arrays: list[np.ndarray] = []
        self._live: set[int] = set()
        self.closed = False

    @property
    def pinned(self) -> bool:
        """Whether buffers come from the injected (page-locked) allocator."""
        return self._alloc is not None

    @property
    def live(self) -> int:
        """Allocations not yet freed (still held by the pool or by a view)."""
        return len(self._live)

    def empty(self, shape, dtype) -> np.ndarray:
        """A zero-filled C-contiguous array of ``shape`` / ``dtype``.

        Raises:
            RuntimeError: the pool is closed, or the allocator failed.
        """
        if self.closed:
            raise RuntimeError("HostBufferPool is closed (the backend was closed); open a new backend")
        shape = tuple(int(d) for d in shape)
        dtype = np.dtype(dtype)
        if self._alloc is None:
            arr = np.zeros(shape, dtype)
        else:
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            ptr = int(self._alloc(max(nbytes, 1)))
            raw = (ctypes.c_uint8 * max(nbytes, 1)).from_address(ptr)
            self._live.add(ptr)
            # every ndarray made from ``raw`` keeps ``raw`` alive through its ``base`` chain
            weakref.finalize(raw, self._release, ptr)
            arr = np.frombuffer(raw, dtype=np.uint8, count=nbytes).view(dtype).reshape(shape)
            arr[...] = 0
        self._arrays.append(arr)
        return arr

    def _release(self, ptr: int) -> None:
        self._live.discard(ptr)
        try:
            self._free(ptr)
        except Exception as err:  # finaliser: never raise (e.g. CUDA already shut down at exit)
            log.debug("freeing host buffer %#x failed: %s", ptr, err)

    def close(self) -> None:
        """Drop the pool's references. Buffers no view holds are freed now, the others when their last view dies.
        Idempotent."""
        self.closed = True
        self._arrays = []
