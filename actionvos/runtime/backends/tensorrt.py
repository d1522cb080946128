"""TensorRT backend (no torch): the engines written by ``actionvos export --format engine`` run with the MSDA plugin.

Requires ``tensorrt`` (10+) and ``cuda-python``; both are imported when the backend is created. Engines are built
by :func:`actionvos.export.tensorrt_engine.build_engine`; that module has no runner, so running them lives here,
on the name-based tensor API only (``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``).

GPU pipeline (issue 4 item 5), per session:

* one non-blocking CUDA stream;
* device buffers for every tensor allocated **once** at the profile's maximum shapes (P, L), so a prompt switch
  only rewrites shapes and text contents — no allocation per frame or per prompt set;
* pinned (page-locked) host buffers for the uint8 frame window and for the four outputs, so copies are DMA
  transfers; the segmenter takes uint8 and normalises inside the graph (pre-processing on the GPU);
* per prompt-set shape ``(P, L)``, the sequence H2D frame copy → ``execute_async_v3`` → D2H output copies is
  captured once into a CUDA graph and replayed with one ``cudaGraphLaunch`` per frame (falls back to plain stream
  calls if capture fails, e.g. with a plugin that allocates);
* the capture thread (:mod:`actionvos.runtime.capture`) decodes the next frame while this thread waits on the
  stream (cuda-python releases the GIL in ``cudaStreamSynchronize``), so capture overlaps upload/infer/download.

Untested on the CPU-only development machine (tests skip with the reason); see ``tests/runtime/test_backends_gpu.py``.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from actionvos.errors import ConfigError, InputError
from actionvos.runtime.backends.base import Backend, BackendInfo, StepOutputs
from actionvos.runtime.prompt_cache import TextArrays

__all__ = ["TrtBackend", "import_cudart"]

log = logging.getLogger(__name__)

_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_, "UINT8": np.uint8,
       "INT8": np.int8}


def import_cudart():
    """The cuda-python runtime module (``cuda.bindings.runtime`` or the older ``cuda.cudart``).

    Raises:
        ConfigError: cuda-python is not installed.
    """
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise ConfigError("the TensorRT backend needs cuda-python; pip install cuda-python") from None
    return cudart


class _Cuda:
    """Thin checked wrappers over the cuda-python runtime calls this backend uses."""

    def __init__(self):
        self.rt = import_cudart()

    def check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            name = self.rt.cudaGetErrorName(err)[1]
            raise RuntimeError(f"CUDA error {int(err)} ({name.decode() if isinstance(name, bytes) else name})")
        return rest[0] if len(rest) == 1 else (rest or None)

    def malloc(self, nbytes: int) -> int:
        return int(self.check(self.rt.cudaMalloc(max(nbytes, 1))))

    def pinned(self, shape, dtype) -> tuple[int, np.ndarray]:
        """Page-locked host memory as a numpy array (the pointer is kept for freeing)."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ptr = int(self.check(self.rt.cudaMallocHost(max(nbytes, 1))))
        raw = (ctypes.c_uint8 * max(nbytes, 1)).from_address(ptr)
        return ptr, np.frombuffer(raw, dtype=np.uint8, count=nbytes).view(dtype).reshape(shape)

    def h2d(self, dst: int, src: np.ndarray, stream) -> None:
        self.check(self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def d2h(self, dst: np.ndarray, src: int, stream) -> None:
        self.check(self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))


class _Engine:
    """One deserialised engine, its execution context and max-size device buffers addressed by tensor name."""

    def __init__(self, trt, runtime, path: Path, cuda: _Cuda):
        self.path = path
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ConfigError(f"TensorRT cannot deserialise {path} (built with another TensorRT version or GPU?); "
                              "rebuild it with `actionvos export --format engine` on this machine")
        self.context = self.engine.create_execution_context()
        self.cuda = cuda
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.dtypes = {n: np.dtype(_NP[self.engine.get_tensor_dtype(n).name]) for n in self.names}
        self.max_shapes = {}
        for n in self.inputs:
            shape = tuple(self.engine.get_tensor_shape(n))
            if any(d < 0 for d in shape):
                shape = tuple(self.engine.get_tensor_profile_shape(n, 0)[2])  # (min, opt, max)
            self.max_shapes[n] = shape
        for n in self.inputs:  # outputs' max shapes follow from the inputs' max shapes
            self.context.set_input_shape(n, self.max_shapes[n])
        for n in self.names:
            if n not in self.max_shapes:
                self.max_shapes[n] = tuple(self.context.get_tensor_shape(n))
        self.device = {n: cuda.malloc(int(np.prod(self.max_shapes[n])) * self.dtypes[n].itemsize) for n in self.names}
        for n, ptr in self.device.items():
            self.context.set_tensor_address(n, ptr)

    def free(self) -> None:
        for ptr in self.device.values():
            self.cuda.rt.cudaFree(ptr)
        self.device = {}


class TrtBackend(Backend):
    """Run ``text_encoder.engine`` + ``segmenter.engine`` from an export folder.

    Args:
        engine_dir: folder with both engines, their ``.engine.json`` sidecars and (for metadata) the ONNX graphs or
            ``export_manifest.json``.
        plugin_library: MSDA plugin ``.so`` (default: the one recorded in the sidecar, else searched).
        cuda_graph: capture the per-frame work into CUDA graphs.
    Raises:
        ConfigError: tensorrt / cuda-python / GPU missing, engine not deserialisable, plugin problems.
        InputError: missing engine files.
    """

    def __init__(self, engine_dir: str | os.PathLike, plugin_library: str | None = None, cuda_graph: bool = True):
        try:
            import tensorrt as trt
        except ImportError:
            raise ConfigError("the TensorRT backend needs the tensorrt package (pip install tensorrt) and an NVIDIA GPU") from None
        self.trt = trt
        self.cuda = _Cuda()
        engine_dir = Path(engine_dir)
        paths = {r: engine_dir / f"{r}.engine" for r in ("text_encoder", "segmenter")}
        for p in paths.values():
            if not p.is_file():
                raise InputError(f"{p} does not exist; build engines with `actionvos export --format engine`")
        sidecars = {r: _read_json(p.with_name(p.name + ".json")) for r, p in paths.items()}
        self.logger = _make_logger(trt)
        trt.init_libnvinfer_plugins(self.logger, "")
        plugin = plugin_library or (sidecars["segmenter"].get("plugin") or {}).get("path")
        if sidecars["segmenter"].get("plugin") or plugin_library:
            from actionvos.export.trt_plugin import PluginLibraryError, register_plugin

            try:
                register_plugin(trt.get_plugin_registry(), plugin if plugin and Path(plugin).is_file() else None)
            except PluginLibraryError as err:
                raise ConfigError(str(err)) from None
        self.runtime = trt.Runtime(self.logger)
        self.engines = {r: _Engine(trt, self.runtime, p, self.cuda) for r, p in paths.items()}
        self.stream = self.cuda.check(self.cuda.rt.cudaStreamCreateWithFlags(self.cuda.rt.cudaStreamNonBlocking))
        seg = self.engines["segmenter"]
        self.frames_shape = seg.max_shapes["frames"]  # static (T, 3, H, W)
        self._frames_ptr, self.frames_host = self.cuda.pinned(self.frames_shape, np.uint8)
        self._out_host = {n: self.cuda.pinned(seg.max_shapes[n], seg.dtypes[n]) for n in ("pred_logits", "pred_masks", "pred_positives")}
        self.cuda_graph = cuda_graph
        self._graphs: dict[tuple[int, int], Any] = {}
        self.info = _info_from_metadata(engine_dir, sidecars, self.frames_shape)
        log.info("TensorRT %s: engines %s, input %dx%d, T=%d, CUDA graphs %s", trt.__version__, engine_dir,
                 self.frames_shape[2], self.frames_shape[3], self.frames_shape[0], "on" if cuda_graph else "off")

    # ------------------------------------------------------------------ text
    def encode_text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> TextArrays:
        """Run the text engine (pageable copies; once per new prompt)."""
        eng, cuda, s = self.engines["text_encoder"], self.cuda, self.stream
        P, L = input_ids.shape
        for name, arr in (("input_ids", input_ids), ("attention_mask", attention_mask)):
            if any(a > b for a, b in zip(arr.shape, eng.max_shapes[name])):
                raise InputError(f"{P} prompts of {L} tokens exceed the text engine's profile {eng.max_shapes[name]}; "
                                 "re-export with larger --max-prompts/--max-tokens")
            eng.context.set_input_shape(name, arr.shape)
            cuda.h2d(eng.device[name], np.ascontiguousarray(arr, eng.dtypes[name]), s)
        if not eng.context.execute_async_v3(int(s)):
            raise RuntimeError("TensorRT text encoder failed")
        outs = {n: np.empty(tuple(eng.context.get_tensor_shape(n)), eng.dtypes[n]) for n in ("text_word", "text_mask", "text_sentence")}
        for n, arr in outs.items():
            cuda.d2h(arr, eng.device[n], s)
        cuda.check(cuda.rt.cudaStreamSynchronize(s))
        return TextArrays(outs["text_word"].astype(np.float32), outs["text_mask"].astype(bool), outs["text_sentence"].astype(np.float32))

    def bind_text(self, text: TextArrays):
        """Upload a prompt set into the max-size text buffers, set the shapes, warm up and capture its CUDA graph."""
        eng, cuda, s = self.engines["segmenter"], self.cuda, self.stream
        P, L = text.mask.shape
        feeds = {"text_word": text.word, "text_mask": text.mask, "text_sentence": text.sentence}
        for name, arr in feeds.items():
            if any(a > b for a, b in zip(arr.shape, eng.max_shapes[name])):
                raise InputError(f"{P} prompts of {L} tokens exceed the segmenter engine's profile {eng.max_shapes[name]}")
            eng.context.set_input_shape(name, arr.shape)
            cuda.h2d(eng.device[name], np.ascontiguousarray(arr, eng.dtypes[name]), s)
        eng.context.set_input_shape("frames", self.frames_shape)
        cuda.check(cuda.rt.cudaStreamSynchronize(s))
        self._run_frame(P)  # warm-up (TensorRT may allocate on the first run: never inside a capture)
        key = (P, L)
        if self.cuda_graph and key not in self._graphs:
            self._graphs[key] = self._capture(P)
        return {"P": P, "key": key}

    def _enqueue(self, P: int) -> None:
        eng, cuda, s = self.engines["segmenter"], self.cuda, self.stream
        cuda.check(cuda.rt.cudaMemcpyAsync(eng.device["frames"], self._frames_ptr, self.frames_host.nbytes,
                                           cuda.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, s))
        if not eng.context.execute_async_v3(int(s)):
            raise RuntimeError("TensorRT segmenter failed")
        for n, (_, host) in self._out_host.items():
            cuda.d2h(host[:P], eng.device[n], s)

    def _capture(self, P: int):
        rt, cuda, s = self.cuda.rt, self.cuda, self.stream
        try:
            cuda.check(rt.cudaStreamBeginCapture(s, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
            try:
                self._enqueue(P)
            finally:
                graph = cuda.check(rt.cudaStreamEndCapture(s))
            try:
                return cuda.check(rt.cudaGraphInstantiate(graph, 0))
            finally:
                rt.cudaGraphDestroy(graph)  # the executable graph keeps what it needs
        except Exception as err:  # e.g. a plugin that cannot be captured: plain stream calls still work
            log.warning("CUDA graph capture failed (%s); running without CUDA graphs", err)
            self.cuda_graph = False
            return None

    def _run_frame(self, P: int, key=None) -> None:
        graph = self._graphs.get(key) if key is not None else None
        if graph is not None:
            self.cuda.check(self.cuda.rt.cudaGraphLaunch(graph, self.stream))
        else:
            self._enqueue(P)
        self.cuda.check(self.cuda.rt.cudaStreamSynchronize(self.stream))

    # ------------------------------------------------------------------ frames
    def encode_frame(self, frame: np.ndarray) -> np.ndarray:
        """``[H, W, 3]`` uint8 → ``[3, H, W]`` uint8 (the engine runs the backbone and the normalisation)."""
        return np.ascontiguousarray(frame.transpose(2, 0, 1))

    def decode(self, window: Sequence[np.ndarray], text) -> StepOutputs:
        """Copy the window into the pinned frame buffer, launch, wait; returns views into the pinned outputs."""
        if len(window) != self.frames_shape[0]:
            raise ValueError(f"window of {len(window)} frames for a T={self.frames_shape[0]} engine")
        for t, f in enumerate(window):
            self.frames_host[t] = f
        P = text["P"]
        self._run_frame(P, text["key"])
        o = {n: host[:P] for n, (_, host) in self._out_host.items()}
        return StepOutputs(query_logits=o["pred_logits"][:, -1, :, 0], mask_logits=o["pred_masks"][:, -1],
                           positive_logit=o["pred_positives"][:, 0])

    def close(self) -> None:
        rt = getattr(self, "cuda", None) and self.cuda.rt
        if not rt or not getattr(self, "engines", None):
            return
        for g in self._graphs.values():
            if g is not None:
                rt.cudaGraphExecDestroy(g)
        for eng in self.engines.values():
            eng.free()
        for ptr, _ in self._out_host.values():
            rt.cudaFreeHost(ptr)
        rt.cudaFreeHost(self._frames_ptr)
        rt.cudaStreamDestroy(self.stream)
        self.engines = {}


def _make_logger(trt):
    """A ``trt.ILogger`` forwarding to :mod:`logging` (INFO and below as DEBUG)."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, severity, msg):
            level = logging.ERROR if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR) else (
                logging.WARNING if severity == trt.ILogger.WARNING else logging.DEBUG)
            log.log(level, "TensorRT: %s", msg)

    return Logger()


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _info_from_metadata(engine_dir: Path, sidecars: dict, frames_shape) -> BackendInfo:
    """Model settings from the ONNX metadata beside the engines, else the manifest's preset
    (:data:`actionvos.model.config.PRESETS`, torch-free)."""
    from actionvos.runtime.onnx_metadata import read_onnx_metadata

    onnx_path = engine_dir / "segmenter.onnx"
    meta = read_onnx_metadata(onnx_path) if onnx_path.is_file() else {}
    cfg = meta.get("config")
    if cfg is None:
        from actionvos.model.config import get_preset

        preset = _read_json(engine_dir / "export_manifest.json").get("preset", "rf_r101_actionvos")
        cfg = get_preset(preset).to_dict()
    th = meta.get("thresholds") or {k: cfg[k] for k in ("pos_cls_thres", "mask_threshold", "background_prob")}
    T, _, H, W = frames_shape
    sha = sidecars["segmenter"].get("checkpoint_sha256") or sidecars["segmenter"].get("onnx_sha256", "")[:16]
    return BackendInfo(
        name="tensorrt", model_id=f"{sha}:trt-{sidecars['segmenter'].get('precision', 'fp32').split()[0]}",
        num_queries=int(cfg["num_queries"]), short_side=int(cfg["short_side"]), input_size=(H, W), window=T,
        pos_cls_thres=float(th["pos_cls_thres"]), mask_threshold=float(th["mask_threshold"]),
        background_prob=float(th["background_prob"]), prompt_template=meta.get("prompt_template") or cfg["prompt_template"],
        vocab_size=int(cfg["text"]["vocab_size"]), max_text_tokens=int(cfg["text"]["max_position_embeddings"]) - 2)
