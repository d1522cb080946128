"""TensorRT backend (no torch): the engines written by ``actionvos-export ... --format engine`` with the MSDA plugin.

Needs ``tensorrt`` (10+) and ``cuda-python``, imported when the backend is created. Every TensorRT call goes through
:mod:`actionvos.trt_api` (engine load, checked ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``,
plugin registration, one logger); the CUDA calls through :mod:`actionvos.runtime.cuda_host`.

Before anything is deserialised, the engines' sidecars are checked against this process
(:func:`actionvos.trt_api.check_sidecars`): running TensorRT version, GPU compute capability, SHA-256 of the
registered plugin library, and one checkpoint for both engines. A mismatch is refused with one line saying what
differs and how to rebuild.

GPU pipeline, per backend:

* one non-blocking CUDA stream; device buffers for every tensor allocated **once** at the profile's maximum shapes
  (P, L) with fixed tensor addresses, so a prompt switch only rewrites shapes and text contents;
* frames: :meth:`encode_frame` writes the ``[H, W, 3]`` frame once, transposed to ``[3, H, W]``, into a ring of
  ``T + 1`` page-locked slots (one host copy per frame); :meth:`decode` uploads the window's slots with DMA copies
  (the segmenter takes uint8 and normalises inside the graph);
* outputs land in page-locked host buffers of :class:`~actionvos.runtime.cuda_host.HostBufferPool`: the returned
  :class:`StepOutputs` are views of them, valid until the next :meth:`decode`, and their memory is released only
  when the backend is closed **and** no view is left (never a use after free);
* CUDA graphs: the segmenter's ``execute_async_v3`` + output copies are captured for the shapes the context
  currently has. When a decode needs other shapes (another prompt count P or token length L), the shapes are set
  (each ``set_input_shape`` checked against the profile), the graph is dropped, one eager run follows (TensorRT
  may allocate or update state after a shape change: never inside a capture) and the graph is re-captured on the
  next decode with those shapes — a graph is never replayed after the shapes it was captured with changed. Text
  features of another prompt set with the same shapes are re-uploaded to the same addresses before the launch;
* the capture thread (:mod:`actionvos.runtime.capture`) decodes the next frame while this thread waits on the
  stream (cuda-python releases the GIL in ``cudaStreamSynchronize``).

Untested on the CPU-only development machine (GPU tests skip with the reason): ``tests/runtime/test_backends_gpu.py``
and ``tests/runtime/test_trt_backend_gpu.py``; the host-side rules are tested on the CPU in
``tests/runtime/test_trt_host_logic.py``.
"""

from __future__ import annotations

import dataclasses

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from actionvos.errors import ConfigError, InputError
from actionvos.runtime.backends.base import Backend, BackendInfo, StepOutputs
from actionvos.runtime.prompt_cache import TextArrays

__all__ = ["TrtBackend", "GraphSchedule", "StepPlan"]

log = logging.getLogger(__name__)

_TEXT_INPUTS = ("text_word", "text_mask", "text_sentence")
_RETURNED = ("pred_logits", "pred_masks", "pred_positives")  # pred_boxes stays on the device


@dataclass(eq=False)
class _TextBinding:
    """A bound prompt set: its shapes key ``(P, L)`` and host copies of its features in the engine's dtypes."""

    key: tuple[int, int]
    arrays: dict[str, np.ndarray] = field(repr=False)


@dataclass(frozen=True)
class _FrameSlot:
    """Handle of an encoded frame: ring slot index and the write generation it was written with."""

    slot: int
    generation: int


@dataclass(frozen=True)
class StepPlan:
    """What one :meth:`TrtBackend.decode` does before it waits.

    Attributes:
        set_shapes: give the context the prompt set's shapes (and drop the graph captured for the old ones).
        upload_text: copy the prompt set's features into the device text buffers.
        action: ``"eager"`` (``execute_async_v3`` on the stream), ``"capture"`` (capture that into a CUDA graph, then
            launch it) or ``"replay"`` (launch the graph captured for the current shapes).
    """

    set_shapes: bool
    upload_text: bool
    action: str


class GraphSchedule:
    """The CUDA-graph rule of the TensorRT backend as plain bookkeeping (tested on the CPU).

    A graph is captured for the shapes the context has and replayed only while they stay the same: a decode with other
    shapes sets them, drops the graph and runs eagerly (TensorRT may allocate or update state on the first enqueue
    after a shape change, which must not happen inside a capture); the next decode with those shapes captures, later
    ones replay. Another prompt set with the same shapes is re-uploaded to the same addresses, so the graph stays
    valid. With ``enabled=False`` (or after :meth:`disable`) every step is eager.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.reset()

    def reset(self) -> None:
        """Forget the shapes (the next step sets them again)."""
        self.key: tuple[int, int] | None = None
        self.warm = False
        self.captured = False
        self.owner: object | None = None

    def disable(self) -> None:
        """Capture failed: eager from now on."""
        self.enabled = False
        self.captured = False

    def next(self, key: tuple[int, int], owner: object) -> StepPlan:
        """The plan for a decode with prompt-set shapes ``key = (P, L)`` whose features belong to ``owner``."""
        set_shapes = key != self.key
        if set_shapes:
            self.key, self.warm, self.captured, self.owner = key, False, False, None
        upload = self.owner is not owner
        self.owner = owner
        if not self.enabled or not self.warm:
            self.warm = True
            return StepPlan(set_shapes, upload, "eager")
        if not self.captured:
            self.captured = True
            return StepPlan(set_shapes, upload, "capture")
        return StepPlan(set_shapes, upload, "replay")


class TrtBackend(Backend):
    """Run ``text_encoder.engine`` + ``segmenter.engine`` from an engine folder.

    Args:
        engine_dir: folder with both engines and their ``.engine.json`` sidecars (``actionvos export --format engine``).
        card: the folder's :class:`~actionvos.card.ModelCard` (``card.json``); the sidecars must name its checkpoint.
        plugin_library: MSDA plugin ``.so`` (default: the one recorded in the sidecar when it exists, else searched).
        cuda_graph: capture the per-frame work into CUDA graphs (re-captured after every shape change).
    Raises:
        ConfigError: tensorrt / cuda-python / GPU missing, plugin problems, or the sidecars do not match this
            machine (TensorRT version, compute capability, plugin SHA-256, checkpoints; one line with the fix).
        InputError: missing engine files or an unreadable sidecar.
    """

    def __init__(self, engine_dir: str | os.PathLike, card, plugin_library: str | None = None, cuda_graph: bool = True):
        from actionvos import trt_api
        from actionvos.export.trt_plugin import PluginLibraryError
        from actionvos.runtime.cuda_host import CudaRuntime, HostBufferPool

        trt = trt_api.import_tensorrt()
        engine_dir = Path(engine_dir)
        paths = {r: engine_dir / f"{r}.engine" for r in trt_api.ENGINE_ROLES}
        for p in paths.values():
            if not p.is_file():
                raise InputError(f"{p} does not exist; build engines with `actionvos-export CHECKPOINT --output DIR "
                                 "--format engine`")
        sidecars = {r: trt_api.read_sidecar(p) for r, p in paths.items()}
        self.cuda = CudaRuntime()
        recorded = ((sidecars["segmenter"] or {}).get("plugin") or {}).get("path")
        plugin = None
        if recorded or plugin_library:
            lib = plugin_library or (recorded if Path(recorded).is_file() else None)
            try:
                plugin = trt_api.register_plugin(lib)
            except PluginLibraryError as err:
                raise ConfigError(str(err)) from None
        why = trt_api.check_sidecars(sidecars, trt_api.runtime_facts(plugin))
        if why is not None:
            raise ConfigError(f"{engine_dir}: {why}")
        for role, sc in sidecars.items():
            sha = (sc or {}).get("checkpoint_sha256")
            if sha and sha != card.checkpoint_sha256:
                raise ConfigError(f"{paths[role]} was built from checkpoint {sha} but {engine_dir}/card.json names "
                                  f"{card.checkpoint_sha256}; {trt_api.REBUILD_HINT}")
        self.schedule = GraphSchedule(cuda_graph)
        self._graph = None  # executable graph for the shapes the segmenter context has now
        self._device: dict[str, dict[str, int]] = {}
        self._host = HostBufferPool(self.cuda.malloc_host, self.cuda.free_host)
        self.stream = None
        self.runtime = trt_api.create_runtime()
        self.engines: dict[str, Any] = {}
        try:
            for role, p in paths.items():
                self.engines[role] = eng = trt_api.Engine(self.runtime, p)
                self._device[role] = {n: self.cuda.malloc(eng.nbytes(n)) for n in eng.names}
                for n, ptr in self._device[role].items():
                    eng.set_address(n, ptr)
            self.stream = self.cuda.stream()
            seg = self.engines["segmenter"]
            self.frames_shape = seg.max_shapes["frames"]  # static (T, 3, H, W)
            T = self.frames_shape[0]
            self._ring = [self._host.empty(self.frames_shape[1:], np.uint8) for _ in range(T + 1)]
            self._ring_gen = [0] * len(self._ring)
            self._ring_next = 0
            self._out_host = {n: self._host.empty(seg.max_shapes[n], seg.dtypes[n]) for n in _RETURNED}
        except BaseException:
            self.close()
            raise
        # the segmenter engine decodes clips of exactly T frames (static): the card says so
        self.info = BackendInfo(name="tensorrt", card=card.with_artifact(window=int(T), input=dataclasses.replace(
            card.input, size=(int(self.frames_shape[2]), int(self.frames_shape[3])))))
        log.info("TensorRT %s: engines %s, input %dx%d, T=%d, CUDA graphs %s", trt.__version__, engine_dir,
                 self.frames_shape[2], self.frames_shape[3], T, "on" if cuda_graph else "off")

    # ------------------------------------------------------------------ text
    def encode_text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> TextArrays:
        """Run the text engine on ``[P, L]`` ids and mask (once per new prompt set; features copied out).

        Raises:
            InputError: ``P`` or ``L`` outside the text engine's profile (the message gives its limits).
        """
        eng, dev, cuda, s = self.engines["text_encoder"], self._device["text_encoder"], self.cuda, self.stream
        feeds = {n: np.ascontiguousarray(a, eng.dtypes[n]) for n, a in
                 (("input_ids", input_ids), ("attention_mask", attention_mask))}
        for name, arr in feeds.items():
            eng.set_input_shape(name, arr.shape)
            cuda.h2d(dev[name], arr.ctypes.data, arr.nbytes, s)
        eng.execute(int(s))
        outs = {n: np.empty(eng.output_shape(n), eng.dtypes[n]) for n in _TEXT_INPUTS}
        for n, arr in outs.items():
            cuda.d2h(arr.ctypes.data, dev[n], arr.nbytes, s)
        cuda.sync(s)
        del feeds  # the copies have completed
        return TextArrays(outs["text_word"].astype(np.float32, copy=False), outs["text_mask"].astype(bool, copy=False),
                          outs["text_sentence"].astype(np.float32, copy=False))

    def bind_text(self, text: TextArrays) -> _TextBinding:
        """Check a prompt set against the segmenter's profile and keep it in the engine's dtypes; the upload happens
        in :meth:`decode` (only when another prompt set was uploaded last).

        Raises:
            InputError: P or L outside the segmenter's profile (the message gives its limits).
        """
        from actionvos.trt_api import shape_error

        seg = self.engines["segmenter"]
        feeds = {"text_word": text.word, "text_mask": text.mask, "text_sentence": text.sentence}
        arrays = {}
        for name, arr in feeds.items():
            why = shape_error(name, arr.shape, seg.limits[name])
            if why is not None:
                raise InputError(f"{seg.path.name}: {why}")
            arrays[name] = np.ascontiguousarray(arr, seg.dtypes[name])
        P, L = text.mask.shape
        return _TextBinding((int(P), int(L)), arrays)

    # ------------------------------------------------------------------ frames
    def encode_frame(self, frame: np.ndarray) -> _FrameSlot:
        """Write one ``[H, W, 3]`` uint8 frame, transposed, into the next page-locked ring slot (its only host copy;
        the engine runs the backbone and the normalisation). Returns the slot handle for :meth:`decode`.

        Raises:
            InputError: the frame is not ``[H, W, 3]`` at the engine's input size.
        """
        _, _, H, W = self.frames_shape
        if frame.shape != (H, W, 3) or frame.dtype != np.uint8:
            raise InputError(f"frame of shape {tuple(frame.shape)} {frame.dtype} for an engine built for {W}x{H}: "
                             "pass [H, W, 3] uint8 RGB at the engine's input size")
        k = self._ring_next
        self._ring_next = (k + 1) % len(self._ring)
        np.copyto(self._ring[k], frame.transpose(2, 0, 1))
        self._ring_gen[k] += 1
        return _FrameSlot(k, self._ring_gen[k])

    def _set_shapes(self, text: _TextBinding) -> None:
        """Give the segmenter context the shapes of ``text``'s prompt set; drops the graph captured for the previous
        shapes first (it must never be replayed with these).

        Raises:
            InputError: a shape outside the profile (checked ``set_input_shape``; the message gives the limits).
        """
        seg = self.engines["segmenter"]
        self._drop_graph()
        for name, arr in text.arrays.items():
            seg.set_input_shape(name, arr.shape)
        seg.set_input_shape("frames", self.frames_shape)

    def _drop_graph(self) -> None:
        if self._graph is not None:
            self.cuda.rt.cudaGraphExecDestroy(self._graph)
            self._graph = None

    def _enqueue(self, P: int) -> None:
        """execute_async_v3 + D2H of the returned outputs (the part captured into a CUDA graph)."""
        seg, dev, s = self.engines["segmenter"], self._device["segmenter"], self.stream
        seg.execute(int(s))
        for n, host in self._out_host.items():
            out = host[:P]
            self.cuda.d2h(out.ctypes.data, dev[n], out.nbytes, s)

    def _capture(self, P: int):
        rt, cuda, s = self.cuda.rt, self.cuda, self.stream
        try:
            cuda.check(rt.cudaStreamBeginCapture(s, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
                       "cudaStreamBeginCapture")
            try:
                self._enqueue(P)
            finally:
                graph = cuda.check(rt.cudaStreamEndCapture(s), "cudaStreamEndCapture")
            try:
                return cuda.check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
            finally:
                rt.cudaGraphDestroy(graph)  # the executable graph keeps what it needs
        except Exception as err:  # e.g. a plugin that cannot be captured: plain stream calls still work
            log.warning("CUDA graph capture failed (%s); running without CUDA graphs", err)
            self.schedule.disable()
            return None

    def decode(self, window: Sequence[_FrameSlot], text: _TextBinding) -> StepOutputs:
        """Upload the window's frames (and the prompt set's features when another set was uploaded last), run the
        segmenter, wait; returns every frame's outputs as views into the pinned outputs (overwritten by the next
        decode; still readable after :meth:`close`).

        Raises:
            ValueError: the window does not hold T frames, or holds a frame whose ring slot was overwritten.
            InputError: the prompt set's shapes are outside the profile.
        """
        T = self.frames_shape[0]
        if len(window) != T:
            raise ValueError(f"window of {len(window)} frames for a T={T} engine")
        cuda, s, dev = self.cuda, self.stream, self._device["segmenter"]
        slot_bytes = self._ring[0].nbytes
        for h in window:
            if self._ring_gen[h.slot] != h.generation:
                raise ValueError("a frame handle in the window was overwritten (the window holds more than T frames "
                                 "encoded by this backend); keep at most T handles")
        plan = self.schedule.next(text.key, text)
        if plan.set_shapes:
            try:
                self._set_shapes(text)
            except BaseException:
                self.schedule.reset()
                raise
        if plan.upload_text:
            for name, arr in text.arrays.items():
                cuda.h2d(dev[name], arr.ctypes.data, arr.nbytes, s)
        for t, h in enumerate(window):
            cuda.h2d(dev["frames"] + t * slot_bytes, self._ring[h.slot].ctypes.data, slot_bytes, s)
        P = text.key[0]
        if plan.action == "capture":
            self._graph = self._capture(P)
        if plan.action != "eager" and self._graph is not None:
            cuda.check(cuda.rt.cudaGraphLaunch(self._graph, s), "cudaGraphLaunch")
        else:
            self._enqueue(P)
        cuda.sync(s)
        o = {n: host[:P] for n, host in self._out_host.items()}
        # every frame of the window (StepOutputs: [P, T, Q], [P, T, Q, h, w], [P])
        return StepOutputs(query_logits=o["pred_logits"][..., 0], mask_logits=o["pred_masks"],
                           positive_logit=o["pred_positives"][:, 0])

    def close(self) -> None:
        """Wait for the stream, free device memory, graph and stream; page-locked buffers are released once no
        returned view needs them. Idempotent (also after a failed constructor)."""
        if getattr(self, "_host", None) is None:
            return
        if self.stream is not None:
            try:
                self.cuda.sync(self.stream)
            except Exception as err:  # a failed kernel: still release what can be released
                log.warning("closing the TensorRT backend after a CUDA error: %s", err)
        self._drop_graph()
        for bufs in self._device.values():
            for ptr in bufs.values():
                self.cuda.free(ptr)
        self._device = {}
        self.engines = {}  # contexts and engines before the runtime
        self.schedule.reset()
        self._ring = []
        self._out_host = {}
        self._host.close()
        self._host = None
        if self.stream is not None:
            self.cuda.rt.cudaStreamDestroy(self.stream)
            self.stream = None
