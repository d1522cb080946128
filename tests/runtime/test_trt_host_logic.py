"""Host-side rules of the TensorRT path, tested on the CPU (no TensorRT, no GPU needed).

* :func:`actionvos.trt_api.check_sidecars` — engines built for another TensorRT, GPU, plugin library or checkpoint
  are refused with one line naming what differs and how to rebuild (issue 9 item 5);
* :func:`actionvos.trt_api.shape_error` — shapes outside the profile name the limits (issue 10 defect 8);
* :class:`actionvos.runtime.cuda_host.HostBufferPool` — results stay valid after ``close()`` (defect 9), with a real
  malloc/free allocator standing in for ``cudaMallocHost``/``cudaFreeHost``;
* timing-cache handling (defect 5) and the plugin-creator lookup (defect 10) against small stand-ins of the
  TensorRT builder config / plugin registry: only the decisions are exercised, the real calls run in
  ``tests/export/test_tensorrt_engine.py`` on a GPU;
* ``import actionvos.trt_api`` and the TensorRT backend module import without tensorrt, and a missing tensorrt is
  one error saying what to install.
"""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import logging
import subprocess
import sys

import numpy as np
import pytest

from actionvos import trt_api
from actionvos.errors import ConfigError, InputError
from actionvos.runtime.cuda_host import HostBufferPool
from actionvos.trt_api import RuntimeFacts, check_sidecars, shape_error

HAS_TRT = importlib.util.find_spec("tensorrt") is not None

PLUGIN_SHA = "ab" * 32
CKPT = "0123456789abcdef"


def _sidecars(**seg_overrides):
    base = {"sidecar_version": 1, "tensorrt_version": "10.14.1.48", "gpu": "NVIDIA H200", "compute_capability": "9.0",
            "checkpoint_sha256": CKPT}
    text = dict(base, role="text_encoder", plugin={})
    seg = dict(base, role="segmenter", plugin={"path": "/x/libactionvos_msda_plugin.so", "sha256": PLUGIN_SHA})
    seg.update(seg_overrides)
    return {"text_encoder": text, "segmenter": seg}


FACTS = RuntimeFacts("10.14.1.48", "9.0", "NVIDIA H200", PLUGIN_SHA, "/x/libactionvos_msda_plugin.so")


def _one_line_with_fix(msg):
    assert msg is not None and "\n" not in msg
    assert "actionvos-export" in msg and "--format engine" in msg


# ---------------------------------------------------------------------- sidecar check
def test_matching_engines_are_accepted():
    assert check_sidecars(_sidecars(), FACTS) is None


def test_engines_without_plugin_need_no_plugin():
    sc = _sidecars(plugin={})
    assert check_sidecars(sc, RuntimeFacts("10.14.1.48", "9.0")) is None


def test_other_tensorrt_version_is_refused():
    msg = check_sidecars(_sidecars(tensorrt_version="10.9.0.34"), FACTS)
    _one_line_with_fix(msg)
    assert "segmenter.engine was built with TensorRT 10.9.0.34 but TensorRT 10.14.1.48 is running" in msg


def test_other_gpu_architecture_is_refused():
    msg = check_sidecars(_sidecars(compute_capability="8.6", gpu="NVIDIA RTX A6000"), FACTS)
    _one_line_with_fix(msg)
    assert "compute capability 8.6 (NVIDIA RTX A6000)" in msg and "is 9.0" in msg


def test_unknown_gpu_is_not_checked():
    assert check_sidecars(_sidecars(), RuntimeFacts("10.14.1.48", None, "", PLUGIN_SHA)) is None


def test_other_plugin_library_is_refused():
    facts = RuntimeFacts("10.14.1.48", "9.0", "NVIDIA H200", "cd" * 32, "/y/libactionvos_msda_plugin.so")
    msg = check_sidecars(_sidecars(), facts)
    _one_line_with_fix(msg)
    assert "plugin library sha256 abababababab" in msg and "/y/libactionvos_msda_plugin.so has sha256 cdcdcdcdcdcd" in msg
    assert "--plugin-library" in msg


def test_missing_plugin_is_refused():
    msg = check_sidecars(_sidecars(), RuntimeFacts("10.14.1.48", "9.0"))
    _one_line_with_fix(msg)
    assert "none is registered" in msg


def test_engines_of_different_checkpoints_are_refused():
    msg = check_sidecars(_sidecars(checkpoint_sha256="fedcba9876543210"), FACTS)
    _one_line_with_fix(msg)
    assert f"text_encoder.engine (checkpoint {CKPT}) and segmenter.engine (checkpoint fedcba9876543210)" in msg


def test_missing_or_newer_sidecar_is_refused():
    sc = _sidecars()
    sc["text_encoder"] = None
    msg = check_sidecars(sc, FACTS)
    _one_line_with_fix(msg)
    assert "text_encoder.engine has no sidecar" in msg
    msg = check_sidecars(_sidecars(sidecar_version=trt_api.SIDECAR_VERSION + 1), FACTS)
    _one_line_with_fix(msg)
    assert "newer than this actionvos reads" in msg


def test_read_sidecar(tmp_path):
    engine = tmp_path / "segmenter.engine"
    assert trt_api.read_sidecar(engine) is None
    trt_api.sidecar_path(engine).write_text("{not json")
    with pytest.raises(InputError, match=r"segmenter\.engine\.json is not a readable engine sidecar"):
        trt_api.read_sidecar(engine)


# ---------------------------------------------------------------------- profile limits
def test_shape_error_names_profile_limits():
    limits = ((1, 1, 256), (2, 16, 256), (8, 64, 256))
    assert shape_error("text_word", (3, 11, 256), limits) is None
    assert shape_error("text_word", (8, 64, 256), limits) is None
    msg = shape_error("text_word", (9, 11, 256), limits)
    assert "'text_word' of shape [9, 11, 256]" in msg and "min [1, 1, 256], max [8, 64, 256]" in msg
    assert "--max-prompts" in msg
    assert shape_error("text_word", (3, 11), limits) is not None  # wrong rank


# ---------------------------------------------------------------------- pinned buffer lifetime
class _CountingAllocator:
    """malloc/free from libc, counting what is live (stands in for cudaMallocHost/cudaFreeHost)."""

    def __init__(self):
        self.libc = ctypes.CDLL(None)
        self.libc.malloc.restype = ctypes.c_void_p
        self.libc.malloc.argtypes = [ctypes.c_size_t]
        self.libc.free.argtypes = [ctypes.c_void_p]
        self.live: set[int] = set()
        self.freed: list[int] = []

    def alloc(self, nbytes):
        ptr = self.libc.malloc(nbytes)
        self.live.add(ptr)
        return ptr

    def free(self, ptr):
        assert ptr in self.live, "double free"
        self.live.remove(ptr)
        self.freed.append(ptr)
        self.libc.free(ptr)


def test_results_outlive_close():
    """A result (a view of a pinned output buffer) is still readable after close; memory is freed when it dies."""
    a = _CountingAllocator()
    pool = HostBufferPool(a.alloc, a.free)
    out = pool.empty((2, 5, 12, 16), np.float32)
    other = pool.empty((4,), np.uint8)
    assert pool.pinned and pool.live == 2 and len(a.live) == 2
    assert not out.any()  # zero-filled
    out[...] = np.arange(out.size, dtype=np.float32).reshape(out.shape)
    result = out[:, -1]  # what decode returns: a view
    del out, other
    pool.close()
    gc.collect()
    assert len(a.live) == 1 and pool.live == 1  # the unviewed buffer is freed, the viewed one is not
    np.testing.assert_array_equal(result[1, 0], np.arange(16, dtype=np.float32) + (1 * 5 * 12 * 16) + 4 * 12 * 16)
    del result
    gc.collect()
    assert not a.live and pool.live == 0 and len(a.freed) == 2


def test_closed_pool_refuses_new_buffers_and_close_is_idempotent():
    a = _CountingAllocator()
    pool = HostBufferPool(a.alloc, a.free)
    pool.close()
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.empty((2,), np.float32)


def test_pool_without_allocator_is_plain_numpy():
    pool = HostBufferPool()
    arr = pool.empty((3, 4), np.float16)
    assert not pool.pinned and arr.dtype == np.float16 and arr.shape == (3, 4) and pool.live == 0
    with pytest.raises(ValueError, match="both alloc and free"):
        HostBufferPool(alloc=lambda n: 0)


# ---------------------------------------------------------------------- timing cache (defect 5)
class _Cache:
    def __init__(self, data):
        self.data = data

    def serialize(self):
        return b"serialized:" + self.data


class _Config:
    """Stand-in of ``trt.IBuilderConfig``'s timing-cache calls: caches from another GPU/version are refused."""

    def __init__(self):
        self.attached = None

    def create_timing_cache(self, data):
        return _Cache(bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        assert ignore_mismatch is False
        if cache.data.startswith(b"stale"):
            return False
        self.attached = cache
        return True

    def get_timing_cache(self):
        return self.attached


def test_stale_timing_cache_is_replaced(tmp_path, caplog):
    path = tmp_path / "timing.cache"
    path.write_bytes(b"stale cache from another GPU")
    cfg = _Config()
    with caplog.at_level(logging.WARNING, logger="actionvos.trt_api"):
        assert trt_api.attach_timing_cache(cfg, path)
    assert cfg.attached.data == b""  # a fresh cache
    assert "was written by another GPU or TensorRT version" in caplog.text
    assert trt_api.save_timing_cache(cfg, path)
    assert path.read_bytes() == b"serialized:"


def test_valid_and_missing_timing_cache(tmp_path):
    path = tmp_path / "timing.cache"
    cfg = _Config()
    assert trt_api.attach_timing_cache(cfg, path) and cfg.attached.data == b""  # no file yet: empty cache
    path.write_bytes(b"good")
    cfg = _Config()
    assert trt_api.attach_timing_cache(cfg, path) and cfg.attached.data == b"good"
    assert not trt_api.save_timing_cache(cfg, None)


def test_no_timing_cache_is_never_serialized(tmp_path):
    class Refusing(_Config):
        def set_timing_cache(self, cache, ignore_mismatch):
            return False

    cfg = Refusing()
    path = tmp_path / "timing.cache"
    path.write_bytes(b"anything")
    assert not trt_api.attach_timing_cache(cfg, path)
    assert cfg.get_timing_cache() is None
    assert not trt_api.save_timing_cache(cfg, path)  # no `.serialize()` on None
    assert path.read_bytes() == b"anything"


# ---------------------------------------------------------------------- plugin creator lookup (defect 10)
class _Creator:
    def __init__(self, name, version="1", namespace=""):
        self.name, self.plugin_version, self.plugin_namespace = name, version, namespace


class _Registry:
    def __init__(self, creators):
        self.all_creators = creators

    def get_creator(self, *a):  # logs a TensorRT ERROR for an unknown creator: must not be called
        raise AssertionError("get_creator must not be used to probe for a creator")


def test_creator_lookup_reads_the_creator_list():
    reg = _Registry([_Creator("GridAnchor_TRT"), _Creator("ActionVOS_MSDeformAttn")])
    assert trt_api.creator_present(reg, "ActionVOS_MSDeformAttn", "1") is True
    assert trt_api.creator_present(reg, "ActionVOS_MSDeformAttn", "2") is False
    assert trt_api.creator_present(_Registry([_Creator("GridAnchor_TRT")]), "ActionVOS_MSDeformAttn", "1") is False
    assert trt_api.creator_present(_Registry([object()]), "ActionVOS_MSDeformAttn", "1") is None  # not introspectable


def test_logger_levels():
    assert trt_api._python_level("ERROR") == logging.ERROR == trt_api._python_level("INTERNAL_ERROR")
    assert trt_api._python_level("WARNING") == logging.WARNING
    assert trt_api._python_level("INFO") == logging.DEBUG == trt_api._python_level("VERBOSE")


# ---------------------------------------------------------------------- without tensorrt
def test_modules_import_without_tensorrt():
    code = ("import sys, actionvos, actionvos.trt_api, actionvos.runtime.backends.tensorrt, "
            "actionvos.runtime.backends.factory, actionvos.runtime.cuda_host, actionvos.export.trt_plugin; "
            "bad = [m for m in ('tensorrt', 'torch', 'onnxruntime') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here")
def test_missing_tensorrt_says_what_to_install(tmp_path):
    with pytest.raises(ConfigError, match=r"pip install tensorrt"):
        trt_api.import_tensorrt()
    ok, why = trt_api.tensorrt_available()
    assert not ok and "pip install tensorrt" in why
    from actionvos.runtime.backends.tensorrt import TrtBackend

    with pytest.raises(ConfigError, match=r"pip install tensorrt"):
        TrtBackend(tmp_path, None)


# ---------------------------------------------------------------------- CUDA-graph schedule (defect 6)
def test_graph_never_replayed_after_a_shape_change():
    """P1 → P2 → P1: every shape change sets shapes and runs eagerly before a fresh capture; replays only follow a
    capture made with the same shapes."""
    from actionvos.runtime.backends.tensorrt import GraphSchedule

    sched, p1, p2 = GraphSchedule(True), object(), object()
    steps = [((2, 8), p1)] * 3 + [((3, 12), p2)] * 3 + [((2, 8), p1)] * 3
    plans = [sched.next(k, o) for k, o in steps]
    assert [p.action for p in plans] == ["eager", "capture", "replay"] * 3
    assert [p.set_shapes for p in plans] == [True, False, False] * 3
    assert [p.upload_text for p in plans] == [True, False, False] * 3
    captured_for = None
    for (key, _), plan in zip(steps, plans):  # the invariant itself
        if plan.set_shapes:
            captured_for = None
        if plan.action == "capture":
            captured_for = key
        if plan.action == "replay":
            assert captured_for == key


def test_same_shape_prompt_sets_reupload_and_keep_the_graph():
    from actionvos.runtime.backends.tensorrt import GraphSchedule

    sched, a, b = GraphSchedule(True), object(), object()
    plans = [sched.next((2, 8), o) for o in (a, a, b, a, a)]
    assert [p.action for p in plans] == ["eager", "capture", "replay", "replay", "replay"]
    assert [p.upload_text for p in plans] == [True, False, True, True, False]
    assert not any(p.set_shapes for p in plans[1:])


def test_disabled_or_failed_capture_is_eager():
    from actionvos.runtime.backends.tensorrt import GraphSchedule

    off = GraphSchedule(False)
    assert {off.next((2, 8), None).action for _ in range(4)} == {"eager"}
    sched = GraphSchedule(True)
    assert [sched.next((2, 8), None).action for _ in range(2)] == ["eager", "capture"]
    sched.disable()  # capture failed
    assert [sched.next((2, 8), None).action for _ in range(2)] == ["eager", "eager"]
    sched.reset()
    assert sched.next((2, 8), None).set_shapes
