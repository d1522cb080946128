"""ONNX Runtime backend (no torch): the ``text_encoder``, ``frame_encoder`` and ``window_decoder`` graphs of an
``actionvos export`` folder, described by its model card.

Execution providers are tried in the order TensorRT → CUDA → CPU (only those this onnxruntime build has):

* TensorRT EP: engine cache and timing cache under ``cache_dir`` (default: beside the graphs) and shape profiles
  for the dynamic prompt/token/frame axes from the graph's own export spec.
* CUDA EP: heuristic cuDNN algorithm search; page-locked host buffers (cuda-python) for the bound inputs and
  outputs; optional CUDA-graph capture (one graph per decoder shape ``(P, L, T)``, ``gpu_graph_id``). A captured
  graph replays fixed device addresses, so with CUDA graphs every input *and output* of a shape is bound to device
  memory allocated once for that shape (text features are updated in place, never re-bound), and the outputs are
  copied into the page-locked host buffers after each run.
* CPU EP: ``threads`` intra-op threads.

Graphs exported with ``--msda plugin`` are refused on every provider (:func:`plugin_graph_refusal`): the plugin is a
TensorRT ``IPluginV3`` (``IPluginCreatorV3One`` returned by ``getCreators``), and ONNX Runtime's TensorRT EP builds
its ``trt.plugins`` custom-op list from ``getPluginRegistry()->getPluginCreatorList()``, which lists only the old
``IPluginCreator`` creators (microsoft/onnxruntime ``tensorrt_execution_provider_custom_ops.cc``), so session
creation would fail; the CUDA and CPU EPs have no kernel for the op at all. Such graphs run on the TensorRT backend
(engines); ``--msda onnx`` graphs run on every ONNX Runtime provider.

Frames: ``frame_encoder.onnx`` runs the backbone once per frame; ``window_decoder.onnx`` decodes T stacked frames
for any T from 1 to the card's ``max_clip_frames`` (the official rule's clips and the causal rule's windows alike),
through an I/O binding whose buffers are allocated once per (prompt set, T).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from actionvos.errors import ConfigError, InputError
from actionvos.runtime.backends.base import Backend, BackendInfo, StepOutputs
from actionvos.export.metadata import read_onnx_metadata
from actionvos.runtime.prompt_cache import TextArrays

__all__ = ["OrtBackend", "provider_chain", "plugin_graph_refusal", "graph_msda"]

log = logging.getLogger(__name__)

_PROVIDER_NAMES = {"TensorrtExecutionProvider": "tensorrt", "CUDAExecutionProvider": "cuda", "CPUExecutionProvider": "cpu"}


def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("the onnxruntime backend needs onnxruntime; pip install onnxruntime (CPU) or onnxruntime-gpu") from None
    return ort


def _profile_shapes(spec: dict | None, role_inputs: Sequence[str]) -> dict[str, str]:
    """TensorRT EP ``trt_profile_{min,opt,max}_shapes`` strings (``name:1x2x256,...``) from the graph's export spec
    (:meth:`actionvos.export.spec.ExportSpec.profile`); empty when the graph carries no spec."""
    if not spec:
        return {}
    from actionvos.export.spec import ExportSpec

    try:
        profile = ExportSpec.from_dict(spec).profile()
    except Exception as err:  # an older or foreign spec: let the TensorRT EP infer shapes
        log.warning("cannot read the graph's shape profile (%s); the TensorRT EP will build on first use", err)
        return {}
    out = {}
    for i, key in enumerate(("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes")):
        parts = [f"{n}:{'x'.join(str(d) for d in profile[n][i])}" for n in role_inputs if n in profile]
        if parts:
            out[key] = ",".join(parts)
    return out


def plugin_graph_refusal(graph: str | os.PathLike) -> str:
    """The one-line refusal of a ``--msda plugin`` graph on ONNX Runtime (pure; see the module docstring for why)."""
    return (f"{graph} was exported with --msda plugin (TensorRT IPluginV3 op ActionVOS_MSDeformAttn), which ONNX "
            "Runtime cannot run: its TensorRT execution provider lists only old-style IPluginCreator plugins and the "
            "CUDA/CPU providers have no kernel for it; re-export with --msda onnx for ONNX Runtime, or build engines "
            "(actionvos-export CHECKPOINT --output DIR --format engine) and use --backend tensorrt --engine DIR")


def graph_msda(meta: dict[str, Any]) -> str | None:
    """The MSDA mode (``plugin`` / ``onnx``) recorded in a graph's decoded metadata: the card's ``msda``, else the
    top-level ``msda`` key of older exports; None when neither is present."""
    card = meta.get("card")
    if isinstance(card, dict) and card.get("msda"):
        return str(card["msda"])
    return meta.get("msda")


def provider_chain(available: Sequence[str], want: str, *, device_id: int, cache_dir: Path, needs_plugin: bool,
                   spec: dict | None, inputs: Sequence[str], cuda_graph: bool, graph: str = "the graph"
                   ) -> list[tuple[str, dict]]:
    """Execution providers with their options, best first (TensorRT → CUDA → CPU), limited to ``available``.

    Args:
        available: ``onnxruntime.get_available_providers()``.
        want: ``auto`` (every available one in order), ``tensorrt``, ``cuda`` or ``cpu`` (that one first, CPU after).
        needs_plugin: the graph holds ``ActionVOS_MSDeformAttn`` nodes (exported with ``--msda plugin``); refused.
        cuda_graph: ``enable_cuda_graph`` on the CUDA EP.
        graph: the graph's name, for messages.
    Raises:
        ConfigError: ``want`` unknown or unavailable, or a plugin graph (:func:`plugin_graph_refusal`).
    """
    if want not in ("auto", "tensorrt", "cuda", "cpu"):
        raise ConfigError(f"unknown onnxruntime provider {want!r}; use auto, tensorrt, cuda or cpu")
    if needs_plugin:
        raise ConfigError(plugin_graph_refusal(graph))
    order = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    if want != "auto":
        name = {"tensorrt": order[0], "cuda": order[1], "cpu": order[2]}[want]
        if name not in available:
            raise ConfigError(f"onnxruntime here has no {name} (available: {', '.join(available)}); install onnxruntime-gpu "
                              "with CUDA/TensorRT or choose another provider")
        order = [name] + ([] if name == order[2] else [order[2]])
    chain = []
    for name in order:
        if name not in available:
            continue
        if name == "TensorrtExecutionProvider":
            chain.append((name, {"device_id": device_id, "trt_engine_cache_enable": True,
                                 "trt_engine_cache_path": str(cache_dir), "trt_timing_cache_enable": True,
                                 "trt_timing_cache_path": str(cache_dir), "trt_fp16_enable": False,
                                 **_profile_shapes(spec, inputs)}))
        elif name == "CUDAExecutionProvider":
            chain.append((name, {"device_id": device_id, "cudnn_conv_algo_search": "HEURISTIC",
                                 "do_copy_in_default_stream": True, "enable_cuda_graph": bool(cuda_graph)}))
        else:
            chain.append((name, {}))
    return chain


class OrtBackend(Backend):
    """Run an export folder's graphs with ONNX Runtime: ``text_encoder.onnx``, ``frame_encoder.onnx`` (once per frame)
    and ``window_decoder.onnx`` (any T from 1 to the card's ``max_clip_frames``: the clip rule's clips and the causal
    rule's windows).

    Args:
        onnx_dir: folder written by ``actionvos export`` (``card.json``, ``tokenizer/``, the graphs).
        card: the folder's :class:`~actionvos.card.ModelCard` (:func:`actionvos.artifacts.read_folder_artifact`);
            every graph's embedded card must agree with it.
        provider: ``auto``, ``tensorrt``, ``cuda`` or ``cpu`` (see :func:`provider_chain`).
        threads: CPU intra-op threads (None = onnxruntime's default).
        device_id: CUDA device.
        cache_dir: TensorRT EP engine/timing caches (default ``onnx_dir/trt_cache``).
        plugin_library: accepted for a uniform factory call and unused: ``--msda plugin`` graphs are refused
            (:func:`plugin_graph_refusal`).
        cuda_graph: capture CUDA graphs on the CUDA EP (one per decoder shape ``(P, L, T)``).
    Raises:
        InputError: a graph is missing, or lacks the expected inputs and outputs.
        ConfigError: provider problems (see :func:`provider_chain`), or a graph whose card differs from ``card.json``.
    """

    ROLES = ("text_encoder", "frame_encoder", "window_decoder")

    def __init__(self, onnx_dir: str | os.PathLike, card, provider: str = "auto", threads: int | None = None,
                 device_id: int = 0, cache_dir: str | os.PathLike | None = None, plugin_library: str | None = None,
                 cuda_graph: bool = False):
        from actionvos.export.spec import GRAPH_FILES

        ort = _import_ort()
        self.ort = ort
        onnx_dir = Path(onnx_dir)
        paths = {role: onnx_dir / GRAPH_FILES[role] for role in self.ROLES}
        for role, p in paths.items():
            if not p.is_file():
                raise InputError(f"{p} does not exist; pass --onnx with a folder written by this version of "
                                 "`actionvos export` (text_encoder, frame_encoder and window_decoder graphs)")
        self._so = ort.SessionOptions()
        self._so.log_severity_level = 3
        if threads:
            self._so.intra_op_num_threads = int(threads)
        self._opts = dict(provider=provider, device_id=device_id, cache=Path(cache_dir) if cache_dir else onnx_dir / "trt_cache",
                          plugin_library=plugin_library, cuda_graph=cuda_graph)
        self.sessions, meta = {}, {}
        for role, p in paths.items():
            self.sessions[role], meta[role] = self._open(p, role)
        self._check_io()
        self._check_cards(card, meta, onnx_dir)
        dec = self.sessions["window_decoder"]
        self.provider = dec.get_providers()[0]
        self.on_gpu = self.provider != "CPUExecutionProvider"
        self.info = BackendInfo(name=f"onnxruntime-{_PROVIDER_NAMES.get(self.provider, self.provider)}", card=card)
        self.metadata = meta
        self.cuda_graph = cuda_graph and self.provider == "CUDAExecutionProvider"
        self._device_id = device_id
        self._pinned = _pinned_pool() if self.on_gpu else None
        self._graph_state: dict[tuple[int, int, int], dict[str, Any]] = {}  # CUDA graphs: fixed device I/O per shape
        self._cuda_rt = self._pinned_rt
        self._outs: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        self._dec_in: dict[int, dict[str, np.ndarray]] = {}  # T -> stacked per-frame features, allocated once
        self._dec_in_dev: dict[int, dict[str, Any]] = {}
        enc = self.sessions["frame_encoder"]
        self._frame_in = np.zeros(tuple(int(d) for d in enc.get_inputs()[0].shape), np.uint8)
        self._feat_shapes = {o.name: tuple(int(d) for d in o.shape[1:]) for o in enc.get_outputs()}
        H, W = card.input.size
        log.info("onnxruntime %s: providers %s, input %dx%d, window decoder T 1..%d, MSDA %s", ort.__version__,
                 dec.get_providers(), H, W, card.input.max_clip_frames, card.msda)

    def _alloc(self, shape, dtype) -> np.ndarray:
        """Host buffer for a bound input/output: page-locked on the GPU path (when cuda-python is installed), so the
        copies ORT makes are DMA transfers; ordinary memory on the CPU path. Arrays (and the views handed out as
        results) keep their memory alive past :meth:`close` (:class:`~actionvos.runtime.cuda_host.HostBufferPool`)."""
        if self._pinned is not None:
            return self._pinned.empty(shape, dtype)
        return np.zeros(shape, dtype)

    @property
    def _pinned_rt(self):
        """The :class:`~actionvos.runtime.cuda_host.CudaRuntime` behind the pinned pool, or None."""
        return getattr(self._pinned, "cuda", None)

    def _open(self, path: Path, role: str):
        """One session with its provider chain, and its decoded metadata."""
        ort, o = self.ort, self._opts
        m = read_onnx_metadata(path)
        if m.get("role") != role:
            raise InputError(f"{path} carries no ActionVOS {role} metadata; export it with `actionvos export`")
        needs_plugin = graph_msda(m) == "plugin" and role == "window_decoder"
        spec = m.get("spec")
        inputs = [t["name"] for t in (spec or {}).get("inputs", [])]
        chain = provider_chain(ort.get_available_providers(), o["provider"], device_id=o["device_id"], cache_dir=o["cache"],
                               needs_plugin=needs_plugin, spec=spec, inputs=inputs,
                               cuda_graph=o["cuda_graph"] and role == "window_decoder", graph=str(path))
        if chain and chain[0][0] == "TensorrtExecutionProvider":
            o["cache"].mkdir(parents=True, exist_ok=True)
        return ort.InferenceSession(str(path), self._so, providers=[n for n, _ in chain],
                                    provider_options=[opt for _, opt in chain]), m

    @staticmethod
    def _check_cards(card, meta: dict[str, dict], onnx_dir: Path) -> None:
        """Every graph's embedded card must equal the folder's ``card.json`` (same weights, facts and precision)."""
        from actionvos.card import card_from_onnx

        for role, m in meta.items():
            graph_card = card_from_onnx(m, where=f"{onnx_dir}/{role}.onnx")
            if graph_card.to_dict() != {**card.to_dict(), "overrides": graph_card.to_dict()["overrides"]}:
                raise ConfigError(f"{onnx_dir}/{role}.onnx carries another model card than {onnx_dir}/card.json "
                                  f"(checkpoint {graph_card.checkpoint_sha256} vs {card.checkpoint_sha256}, precision "
                                  f"{graph_card.precision.value} vs {card.precision.value}); export the folder again as a whole")
        if card.input.size is None:
            raise ConfigError(f"{onnx_dir}/card.json has no static input size; re-export the folder")

    def _check_io(self) -> None:
        from actionvos.export.spec import DECODER_OUTPUTS, FEATURE_NAMES, TEXT_FEATURE_NAMES

        want = {"text_encoder": (["input_ids", "attention_mask"], list(TEXT_FEATURE_NAMES)),
                "frame_encoder": (["frames"], list(FEATURE_NAMES)),
                "window_decoder": ([*FEATURE_NAMES, *TEXT_FEATURE_NAMES], list(DECODER_OUTPUTS))}
        for role, sess in self.sessions.items():
            ins, outs = [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()]
            if (ins, outs) != want[role]:
                raise InputError(f"{role} graph has inputs {ins} / outputs {outs}, expected {want[role][0]} / {want[role][1]}; "
                                 "re-export it with this version of `actionvos export`")

    # ------------------------------------------------------------------ text
    def encode_text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> TextArrays:
        """Run ``text_encoder.onnx`` on ``[P, L]`` int64 ids and mask."""
        word, mask, sentence = self.sessions["text_encoder"].run(
            None, {"input_ids": np.ascontiguousarray(input_ids, np.int64), "attention_mask": np.ascontiguousarray(attention_mask, np.int64)})
        return TextArrays(word.astype(np.float32, copy=False), mask.astype(bool, copy=False), sentence.astype(np.float32, copy=False))

    def bind_text(self, text: TextArrays):
        """Keep this prompt set's text inputs (on the device once, on the GPU path); the decoder binding of each window
        length T is made on first use and reused for every later window of that length."""
        feeds = _text_feeds(text)
        dev = ({n: self.ort.OrtValue.ortvalue_from_numpy(a, "cuda", self._device_id) for n, a in feeds.items()}
               if self.on_gpu and not self.cuda_graph else None)
        return {"feeds": feeds, "dev": dev, "bindings": {}, "P": int(text.mask.shape[0]), "L": int(text.mask.shape[1])}

    def _output_shapes(self, P: int, T: int) -> dict[str, tuple[int, ...]]:
        """The decoder's output shapes for P prompts and T frames, from the graph (``pred_logits [P, T, Q, 1]``,
        ``pred_boxes [P, T, Q, 4]``, ``pred_masks [P, T, Q, ceil(H/4), ceil(W/4)]``, ``pred_positives [P, 1]``).

        Raises:
            InputError: an axis other than P and T is not static (not a graph written by ``actionvos export``).
        """
        shapes = {}
        for o in self.sessions["window_decoder"].get_outputs():
            dims = [P] + [T if (k == 1 and not isinstance(d, int)) else d for k, d in enumerate(o.shape[1:], start=1)]
            if not all(isinstance(d, int) and d > 0 for d in dims):
                raise InputError(f"window_decoder output {o.name} has shape {o.shape}: only the prompt and frame axes may "
                                 "be dynamic; re-export the graphs with `actionvos export`")
            shapes[o.name] = tuple(int(d) for d in dims)
        return shapes

    def _host_outputs(self, P: int, T: int) -> dict[str, np.ndarray]:
        """Output host buffers of shape (P, T): one set per shape, reused across prompt switches."""
        if (P, T) not in self._outs:
            self._outs[(P, T)] = {n: self._alloc(shape, np.float32) for n, shape in self._output_shapes(P, T).items()}
        return self._outs[(P, T)]

    def _frame_inputs(self, T: int) -> dict[str, np.ndarray]:
        """Stacked feature buffers ``[T, ...]`` for windows of T frames (allocated once per T)."""
        if T not in self._dec_in:
            self._dec_in[T] = {n: self._alloc((T, *shape), np.float32) for n, shape in self._feat_shapes.items()}
            if self.on_gpu:
                self._dec_in_dev[T] = {n: self.ort.OrtValue.ortvalue_from_numpy(a, "cuda", self._device_id)
                                       for n, a in self._dec_in[T].items()}
        return self._dec_in[T]

    def _binding(self, bound: dict, T: int):
        """The decoder's I/O binding for this prompt set and window length (made once, reused)."""
        if self.cuda_graph:
            return self._graph_binding(bound, T)
        if T in bound["bindings"]:
            return bound["bindings"][T]
        frames = self._frame_inputs(T)
        binding = self.sessions["window_decoder"].io_binding()
        for name, arr in bound["feeds"].items():
            if bound["dev"] is not None:
                binding.bind_ortvalue_input(name, bound["dev"][name])
            else:
                binding.bind_cpu_input(name, arr)
        for name, arr in frames.items():
            if self.on_gpu:
                binding.bind_ortvalue_input(name, self._dec_in_dev[T][name])
            else:
                binding.bind_cpu_input(name, arr)
        outs = self._host_outputs(bound["P"], T)
        for name, arr in outs.items():
            binding.bind_output(name, "cpu", 0, np.float32, list(arr.shape), arr.ctypes.data)
        b = bound["bindings"][T] = {"binding": binding, "outputs": outs, "run_options": self.ort.RunOptions(), "key": None}
        return b

    def _graph_binding(self, bound: dict, T: int):
        """CUDA-graph binding: per shape ``(P, L, T)`` one binding whose inputs and outputs are device OrtValues
        allocated once (a captured graph replays their addresses); a prompt set's features are uploaded into them in
        place whenever another prompt set of the same shape ran last."""
        ort = self.ort
        key = (bound["P"], bound["L"], int(T))
        st = self._graph_state.get(key)
        if st is None:
            self._frame_inputs(T)
            binding = self.sessions["window_decoder"].io_binding()
            text_dev = {n: ort.OrtValue.ortvalue_from_numpy(a, "cuda", self._device_id) for n, a in bound["feeds"].items()}
            for name, value in text_dev.items():
                binding.bind_ortvalue_input(name, value)
            for name, value in self._dec_in_dev[T].items():
                binding.bind_ortvalue_input(name, value)
            out_dev = {n: ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.float32, "cuda", self._device_id)
                       for n, shape in self._output_shapes(key[0], T).items()}
            for name, value in out_dev.items():
                binding.bind_ortvalue_output(name, value)
            run_options = ort.RunOptions()
            run_options.add_run_config_entry("gpu_graph_id", str(len(self._graph_state) + 1))  # -1 skips capture; 0 is the default id
            st = self._graph_state[key] = {"binding": binding, "text_dev": text_dev, "out_dev": out_dev,
                                           "run_options": run_options, "owner": None}
        if st["owner"] is not bound:
            for name, arr in bound["feeds"].items():
                st["text_dev"][name].update_inplace(arr)
            st["owner"] = bound
        return {"binding": st["binding"], "outputs": self._host_outputs(key[0], T), "run_options": st["run_options"],
                "key": key}

    # ------------------------------------------------------------------ frames
    def encode_frame(self, frame: np.ndarray):
        """``[H, W, 3]`` uint8 at the graph's size → the frame encoder's features (``res2``, ``proj0..3``, each
        ``[1, C, h_l, w_l]`` float32): the backbone runs once per frame."""
        H, W = self.info.card.input.size
        if frame.shape[:2] != (H, W):
            raise InputError(f"frame of {frame.shape[1]}x{frame.shape[0]} for a graph exported at {W}x{H}")
        self._frame_in[0] = frame.transpose(2, 0, 1)
        outs = self.sessions["frame_encoder"].run(None, {"frames": self._frame_in})
        return dict(zip(self._feat_shapes, outs))

    def decode(self, window: Sequence[Any], text) -> StepOutputs:
        """Stack the window's features into the bound decoder inputs and run the window decoder; returns every
        frame's outputs as views into buffers reused by the next decode of the same shape."""
        T = len(window)
        if not 1 <= T <= self.info.card.input.max_clip_frames:
            raise InputError(f"window of {T} frames; the window decoder takes 1..{self.info.card.input.max_clip_frames}")
        b = self._binding(text, T)
        frames = self._dec_in[T]
        for t, feats in enumerate(window):
            for n, arr in frames.items():
                arr[t] = feats[n][0]
        if self.on_gpu:
            for n, arr in frames.items():
                self._dec_in_dev[T][n].update_inplace(arr)
        self.sessions["window_decoder"].run_with_iobinding(b["binding"], b["run_options"])
        o = b["outputs"]
        if b["key"] is not None:
            self._download(self._graph_state[b["key"]]["out_dev"], o)
        return StepOutputs(query_logits=o["pred_logits"][..., 0], mask_logits=o["pred_masks"],
                           positive_logit=o["pred_positives"][:, 0])

    def _download(self, device: dict[str, Any], host: dict[str, np.ndarray]) -> None:
        """Copy device outputs (CUDA-graph path) into the page-locked host buffers: one ``cudaMemcpy`` each with
        cuda-python (the run has finished: ORT synchronises at the end of a run), else through ``OrtValue.numpy``."""
        rt = self._cuda_rt
        for name, arr in host.items():
            value = device[name]
            if rt is not None:
                rt.check(rt.rt.cudaMemcpy(arr.ctypes.data, value.data_ptr(), arr.nbytes,
                                          rt.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost), "cudaMemcpy(D2H)")
            else:
                arr[...] = value.numpy()

    def close(self) -> None:
        """Drop the sessions and device values; page-locked buffers are freed once no returned view needs them."""
        self.sessions = {}
        self._dec_in_dev = {}
        self._graph_state = {}
        if self._pinned is not None:
            self._pinned.close()


def _text_feeds(text: TextArrays) -> dict[str, np.ndarray]:
    """The decoder's text inputs as contiguous arrays: ``text_word`` ``[P, L, D]`` float32, ``text_mask`` ``[P, L]``
    bool, ``text_sentence`` ``[P, D]`` float32."""
    return {"text_word": np.ascontiguousarray(text.word, np.float32), "text_mask": np.ascontiguousarray(text.mask, bool),
            "text_sentence": np.ascontiguousarray(text.sentence, np.float32)}


def _pinned_pool():
    """A :class:`~actionvos.runtime.cuda_host.HostBufferPool` of page-locked memory (cuda-python), or of ordinary
    numpy memory when cuda-python or the driver is missing. ``pool.cuda`` is the CUDA runtime or None."""
    from actionvos.runtime.cuda_host import CudaRuntime, HostBufferPool

    try:
        cuda = CudaRuntime()
        pool = HostBufferPool(cuda.malloc_host, cuda.free_host)
    except Exception as err:  # ConfigError (no cuda-python) or a driver problem
        log.info("pinned host buffers unavailable (%s); using pageable memory", err)
        cuda, pool = None, HostBufferPool()
    pool.cuda = cuda
    return pool
