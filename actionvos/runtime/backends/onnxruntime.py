"""ONNX Runtime backend (no torch): ``text_encoder.onnx`` + ``segmenter.onnx`` from ``actionvos export``.

Execution providers are tried in the order TensorRT → CUDA → CPU (only those this onnxruntime build has):

* TensorRT EP: engine cache and timing cache under ``cache_dir`` (default: beside the graphs) and shape profiles
  for the dynamic prompt/token axes from the graph's own export spec.
* CUDA EP: heuristic cuDNN algorithm search; page-locked host buffers (cuda-python) for the bound inputs and
  outputs; optional CUDA-graph capture (one graph per prompt-set shape ``(P, L)``, ``gpu_graph_id``). A captured
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

Every step runs through an I/O binding with buffers allocated once per prompt set: the uint8 frame buffer
(``[T, 3, H, W]``, device-resident on CUDA and refreshed with ``update_inplace``), the bound text features, and the
four outputs written into preallocated host arrays, so no per-frame allocation happens after warm-up. The
segmenter normalises inside the graph (uint8 in).

Frame window: ``segmenter.onnx`` has a static clip length T and runs the backbone on every frame it is given, so a
sliding window through it would recompute T-1 backbones per step. For ``--window T`` different from the segmenter's
T the backend therefore uses the split graphs of :mod:`actionvos.runtime.window_export`: ``frame_encoder.onnx``
once per frame (its features go to a ring of T + 1 preallocated slots) and ``window_decoder.onnx`` over the stacked
window — the same reuse as the PyTorch backend. With ``T = 1`` (the default) ``segmenter.onnx`` is used.
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

__all__ = ["OrtBackend", "provider_chain", "plugin_graph_refusal", "graph_msda", "TEXT_GRAPH", "SEGMENTER_GRAPH"]

log = logging.getLogger(__name__)

TEXT_GRAPH = "text_encoder.onnx"
SEGMENTER_GRAPH = "segmenter.onnx"
_SEG_OUTPUTS = ("pred_logits", "pred_boxes", "pred_masks", "pred_positives")
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
    """Run the exported graphs with ONNX Runtime.

    Args:
        onnx_dir: folder with ``text_encoder.onnx`` and ``segmenter.onnx`` (``actionvos export`` output), and
            optionally ``frame_encoder.onnx`` + ``window_decoder.onnx`` (:mod:`actionvos.runtime.window_export`).
        provider: ``auto``, ``tensorrt``, ``cuda`` or ``cpu`` (see :func:`provider_chain`).
        threads: CPU intra-op threads (None = onnxruntime's default).
        device_id: CUDA device.
        cache_dir: TensorRT engine/timing caches (default ``onnx_dir/trt_cache``).
        plugin_library: accepted for a uniform factory call and unused: ``--msda plugin`` graphs are refused
            (:func:`plugin_graph_refusal`).
        cuda_graph: capture CUDA graphs on the CUDA EP (needs every node on the GPU).
        window: the clip length T the session will use; None or the segmenter's T runs ``segmenter.onnx``,
            another T needs the split graphs with that T (backbone once per frame).
    Raises:
        InputError: a graph is missing, or lacks the ActionVOS metadata / expected inputs and outputs.
        ConfigError: provider problems (see :func:`provider_chain`), graphs from different checkpoints, or a
            window no graph in the folder was exported for.
    """

    def __init__(self, onnx_dir: str | os.PathLike, provider: str = "auto", threads: int | None = None, device_id: int = 0,
                 cache_dir: str | os.PathLike | None = None, plugin_library: str | None = None, cuda_graph: bool = False,
                 window: int | None = None):
        from actionvos.export.spec import FRAME_ENCODER, GRAPH_FILES, WINDOW_DECODER

        FRAME_ENCODER, WINDOW_DECODER = GRAPH_FILES[FRAME_ENCODER], GRAPH_FILES[WINDOW_DECODER]

        ort = _import_ort()
        self.ort = ort
        onnx_dir = Path(onnx_dir)
        paths = {"text_encoder": onnx_dir / TEXT_GRAPH, "segmenter": onnx_dir / SEGMENTER_GRAPH}
        for role, p in paths.items():
            if not p.is_file():
                raise InputError(f"{p} does not exist; pass --onnx with the folder written by `actionvos export` "
                                 "(text_encoder.onnx + segmenter.onnx)")
        self._so = ort.SessionOptions()
        self._so.log_severity_level = 3
        if threads:
            self._so.intra_op_num_threads = int(threads)
        self._opts = dict(provider=provider, device_id=device_id, cache=Path(cache_dir) if cache_dir else onnx_dir / "trt_cache",
                          plugin_library=plugin_library, cuda_graph=cuda_graph)
        self.sessions, meta = {}, {}
        for role, p in paths.items():
            self.sessions[role], meta[role] = self._open(p, role)
        seg_T = int(self.sessions["segmenter"].get_inputs()[0].shape[0])
        self.split = window is not None and window != seg_T
        if self.split:
            split_paths = {"frame_encoder": onnx_dir / FRAME_ENCODER, "window_decoder": onnx_dir / WINDOW_DECODER}
            if not all(p.is_file() for p in split_paths.values()):
                raise ConfigError(f"--window {window}: {paths['segmenter'].name} takes clips of {seg_T} frames and {onnx_dir} has "
                                  f"no {FRAME_ENCODER}/{WINDOW_DECODER}; write them with actionvos.runtime.window_export."
                                  f"export_window_graphs(onnx_dir, checkpoint, window={window}) or use --window {seg_T}")
            for role, p in split_paths.items():
                self.sessions[role], meta[role] = self._open(p, role)
            dec_T = int(self.sessions["window_decoder"].get_inputs()[0].shape[0])
            if dec_T != window:
                raise ConfigError(f"--window {window}: {WINDOW_DECODER} was written for T={dec_T}; re-export it or use --window {dec_T}")
        self.decoder_role = "window_decoder" if self.split else "segmenter"
        self._check_io()
        shas = {m.get("checkpoint_sha256", "") for m in meta.values()}
        if len(shas) != 1:
            raise ConfigError(f"the graphs in {onnx_dir} come from different checkpoints ({sorted(shas)}); export them together")
        seg = meta["segmenter"]
        cfg = seg.get("config") or {}
        th = seg.get("thresholds") or {}
        text = cfg.get("text") or {}
        dec = self.sessions[self.decoder_role]
        self.provider = dec.get_providers()[0]
        self.on_gpu = self.provider != "CPUExecutionProvider"
        sha = shas.pop() or _graph_hash(paths["text_encoder"])
        H, W = (int(d) for d in self.sessions["segmenter"].get_inputs()[0].shape[2:])
        T = window if self.split else seg_T
        self.info = BackendInfo(
            name=f"onnxruntime-{_PROVIDER_NAMES.get(self.provider, self.provider)}", model_id=f"{sha}:fp32",
            num_queries=int(cfg.get("num_queries", 5)), short_side=int(cfg.get("short_side", min(H, W))),
            input_size=(H, W), window=T, pos_cls_thres=float(th.get("pos_cls_thres", 0.75)),
            mask_threshold=float(th.get("mask_threshold", 0.5)), background_prob=float(th.get("background_prob", 0.1)),
            prompt_template=seg.get("prompt_template") or "{object} used in the action of {action}",
            vocab_size=int(text.get("vocab_size", 50265)), max_text_tokens=int(text.get("max_position_embeddings", 514)) - 2)
        self.metadata = meta
        self.cuda_graph = cuda_graph and self.provider == "CUDAExecutionProvider" and not self.split
        self._device_id = device_id
        self._pinned = _pinned_pool() if self.on_gpu else None
        self._graph_state: dict[tuple[int, int], dict[str, Any]] = {}  # CUDA graphs: fixed device I/O per shape
        self._cuda_rt = self._pinned_rt
        self._outs: dict[int, dict[str, np.ndarray]] = {}
        # Frame-side inputs of the decoder, allocated once: the uint8 window, or the stacked per-frame features.
        if self.split:
            enc = self.sessions["frame_encoder"]
            self._frame_in = np.zeros(tuple(int(d) for d in enc.get_inputs()[0].shape), np.uint8)
            self._dec_in = {i.name: self._alloc(tuple(int(d) for d in i.shape), np.float32) for i in dec.get_inputs()[:5]}
            # T + 1 feature slots: the slot written next is never one of the T frames still in the window.
            self._ring = [{n: np.zeros((1, *a.shape[1:]), np.float32) for n, a in self._dec_in.items()} for _ in range(T + 1)]
            self._ring_bindings = []
            for slot in self._ring:
                b = enc.io_binding()
                b.bind_cpu_input("frames", self._frame_in)
                for n, arr in slot.items():
                    b.bind_output(n, "cpu", 0, np.float32, list(arr.shape), arr.ctypes.data)
                self._ring_bindings.append(b)
            self._ring_next = 0
        else:
            self._dec_in = {"frames": self._alloc((seg_T, 3, H, W), np.uint8)}
        self._dec_in_dev = ({n: ort.OrtValue.ortvalue_from_numpy(a, "cuda", device_id) for n, a in self._dec_in.items()}
                            if self.on_gpu else None)
        log.info("onnxruntime %s: providers %s, input %dx%d, T=%d%s, MSDA %s", ort.__version__, dec.get_providers(), H, W, T,
                 " (split graphs: backbone once per frame)" if self.split else "", seg.get("msda"))

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
        needs_plugin = graph_msda(m) == "plugin" and role in ("segmenter", "window_decoder")
        spec = m.get("spec")
        inputs = [t["name"] for t in (spec or {}).get("inputs", [])]
        chain = provider_chain(ort.get_available_providers(), o["provider"], device_id=o["device_id"], cache_dir=o["cache"],
                               needs_plugin=needs_plugin, spec=spec, inputs=inputs,
                               cuda_graph=o["cuda_graph"] and role == "segmenter", graph=str(path))
        if chain and chain[0][0] == "TensorrtExecutionProvider":
            o["cache"].mkdir(parents=True, exist_ok=True)
        return ort.InferenceSession(str(path), self._so, providers=[n for n, _ in chain],
                                    provider_options=[opt for _, opt in chain]), m

    def _check_io(self) -> None:
        from actionvos.export.spec import FEATURE_NAMES

        text_in = ["text_word", "text_mask", "text_sentence"]
        want = {"text_encoder": (["input_ids", "attention_mask"], text_in),
                "segmenter": (["frames", *text_in], list(_SEG_OUTPUTS)),
                "frame_encoder": (["frames"], list(FEATURE_NAMES)),
                "window_decoder": ([*FEATURE_NAMES, *text_in], list(_SEG_OUTPUTS))}
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
        """Create the decoder's I/O binding for this prompt set: text inputs, frame-side inputs and output buffers,
        all allocated once (per prompt set, or per shape with CUDA graphs) and reused for every frame."""
        if self.cuda_graph:
            return self._bind_text_graph(text)
        sess = self.sessions[self.decoder_role]
        P, L = text.mask.shape
        binding = sess.io_binding()
        keep = []
        for name, arr in _text_feeds(text).items():
            if self.on_gpu:
                value = self.ort.OrtValue.ortvalue_from_numpy(arr, "cuda", self._device_id)
                binding.bind_ortvalue_input(name, value)
                keep.append(value)
            else:
                binding.bind_cpu_input(name, arr)
                keep.append(arr)
        for name, arr in self._dec_in.items():
            if self.on_gpu:
                binding.bind_ortvalue_input(name, self._dec_in_dev[name])
            else:
                binding.bind_cpu_input(name, arr)
        outs = self._host_outputs(P)
        for name, arr in outs.items():
            binding.bind_output(name, "cpu", 0, np.float32, list(arr.shape), arr.ctypes.data)
        return {"binding": binding, "outputs": outs, "keep": keep, "run_options": self.ort.RunOptions()}

    def _output_shapes(self, P: int) -> dict[str, tuple[int, ...]]:
        """The decoder's output shapes for P prompts, from the graph itself (``pred_logits [P, T, Q, 1]``,
        ``pred_boxes [P, T, Q, 4]``, ``pred_masks [P, T, Q, ceil(H/4), ceil(W/4)]``, ``pred_positives [P, 1]``;
        every axis but P is static in an ``actionvos export`` graph).

        Raises:
            InputError: an axis other than P is not static (not a graph written by ``actionvos export``).
        """
        shapes = {}
        for o in self.sessions[self.decoder_role].get_outputs():
            rest = list(o.shape[1:])
            if not all(isinstance(d, int) and d > 0 for d in rest):
                raise InputError(f"{self.decoder_role} output {o.name} has shape {o.shape}: only the prompt axis may be "
                                 "dynamic; re-export the graphs with `actionvos export`")
            shapes[o.name] = (int(P), *rest)
        return shapes

    def _host_outputs(self, P: int) -> dict[str, np.ndarray]:
        """Output host buffers of prompt count P: one set per P, reused across prompt switches."""
        if P not in self._outs:
            self._outs[P] = {n: self._alloc(shape, np.float32) for n, shape in self._output_shapes(P).items()}
        return self._outs[P]

    def _bind_text_graph(self, text: TextArrays):
        """CUDA-graph binding: per shape ``(P, L)`` one binding whose inputs and outputs are device OrtValues
        allocated once (a captured graph replays their addresses). The prompt set's features are uploaded into them
        in place by :meth:`decode` whenever another prompt set of the same shape ran last."""
        ort = self.ort
        P, L = text.mask.shape
        key = (int(P), int(L))
        feeds = _text_feeds(text)
        st = self._graph_state.get(key)
        if st is None:
            binding = self.sessions[self.decoder_role].io_binding()
            text_dev = {n: ort.OrtValue.ortvalue_from_numpy(a, "cuda", self._device_id) for n, a in feeds.items()}
            for name, value in text_dev.items():
                binding.bind_ortvalue_input(name, value)
            for name in self._dec_in:
                binding.bind_ortvalue_input(name, self._dec_in_dev[name])
            out_dev = {n: ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.float32, "cuda", self._device_id)
                       for n, shape in self._output_shapes(key[0]).items()}
            for name, value in out_dev.items():
                binding.bind_ortvalue_output(name, value)
            run_options = ort.RunOptions()
            run_options.add_run_config_entry("gpu_graph_id", str(len(self._graph_state) + 1))  # -1 skips capture; 0 is the default id
            st = self._graph_state[key] = {"binding": binding, "text_dev": text_dev, "out_dev": out_dev,
                                           "run_options": run_options, "owner": None}
        return {"binding": st["binding"], "outputs": self._host_outputs(key[0]), "keep": [], "feeds": feeds,
                "run_options": st["run_options"], "graph_key": key}

    # ------------------------------------------------------------------ frames
    def encode_frame(self, frame: np.ndarray):
        """Segmenter mode: ``[H, W, 3]`` uint8 → ``[3, H, W]`` uint8 (the graph runs the backbone itself).
        Split mode: run ``frame_encoder.onnx`` into the next ring slot and return its feature arrays."""
        H, W = self.info.input_size
        if frame.shape[:2] != (H, W):
            raise InputError(f"frame of {frame.shape[1]}x{frame.shape[0]} for a graph exported at {W}x{H}")
        if not self.split:
            return np.ascontiguousarray(frame.transpose(2, 0, 1))
        self._frame_in[0] = frame.transpose(2, 0, 1)
        k = self._ring_next
        self._ring_next = (k + 1) % len(self._ring)
        self.sessions["frame_encoder"].run_with_iobinding(self._ring_bindings[k])
        return self._ring[k]

    def decode(self, window: Sequence[Any], text) -> StepOutputs:
        """Copy the window into the bound decoder inputs and run the decoder; returns the newest frame's outputs."""
        T = self.info.window
        if len(window) != T:
            raise ValueError(f"window of {len(window)} frames for a T={T} graph")
        if self.split:
            for t, feats in enumerate(window):
                for n, arr in self._dec_in.items():
                    arr[t] = feats[n][0]
        else:
            buf = self._dec_in["frames"]
            for t, f in enumerate(window):
                buf[t] = f
        if self.on_gpu:
            for n, arr in self._dec_in.items():
                self._dec_in_dev[n].update_inplace(arr)
        key = text.get("graph_key")
        if key is not None:  # CUDA graph: refresh the shape's fixed text inputs when another prompt set ran last
            st = self._graph_state[key]
            if st["owner"] is not text:
                for name, arr in text["feeds"].items():
                    st["text_dev"][name].update_inplace(arr)
                st["owner"] = text
        self.sessions[self.decoder_role].run_with_iobinding(text["binding"], text["run_options"])
        o = text["outputs"]
        if key is not None:
            self._download(self._graph_state[key]["out_dev"], o)
        # views into the bound buffers: valid until the next decode (the session consumes them at once)
        return StepOutputs(query_logits=o["pred_logits"][:, -1, :, 0], mask_logits=o["pred_masks"][:, -1],
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
        self._dec_in_dev = None
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


def _graph_hash(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def read_manifest(onnx_dir: str | os.PathLike) -> dict:
    """The export manifest JSON beside the graphs, or ``{}``."""
    p = Path(onnx_dir) / "export_manifest.json"
    return json.loads(p.read_text()) if p.is_file() else {}
