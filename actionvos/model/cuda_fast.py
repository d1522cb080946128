"""PyTorch on CUDA, fast: our MSDA kernel, FP16 with the sensitive ops in FP32, CUDA graphs of fixed-shape steps.

Three independent switches (:class:`FastPathOptions`), applied to a loaded :class:`~actionvos.model.actionvos.ActionVOS`
by :class:`CudaFastPath` (the PyTorch backend installs one on CUDA devices):

* **MSDA kernel** (default on): every ``MSDeformAttn.core`` becomes
  :func:`actionvos.export.msda_cuda.msda_kernel_core`, the TensorRT plugin's CUDA kernel (``trt_plugins/msda/
  msda_kernel.cu``) through the PyTorch extension built from the same source. The extension is built once and
  cached (a log line says so while it builds); when it cannot be built (CPU-only PyTorch, no nvcc, a CUDA version
  mismatch, a compiler error) one warning names the reason and the grid_sample oracle stays in place.
* **FP16** (default off): ``encode_frames`` / ``decode`` run under ``torch.autocast(float16)`` with the node groups of
  :data:`actionvos.precision.fp16.FP16_SENSITIVE_OPS` — the one list the FP16 ONNX export uses — kept in FP32.
  Text encoding stays FP32 (its features are cached per prompt under the FP32 model id).
* **CUDA graphs** (default off): ``encode_frames`` (one frame) and ``decode`` (per window length × prompt count ×
  size) are captured on first use and replayed; a step that cannot be captured (a host sync inside it) is logged
  once and runs eagerly from then on.

How each FP16-sensitive group maps onto the PyTorch model (:func:`fp32_regions`):

=========================  =====================================================================================
``msda_sampling_offsets``  ``MSDeformAttn.sampling_offsets`` runs in FP32 (so do the locations computed from it)
``msda_attention_weights`` ``MSDeformAttn.attention_weights`` in FP32; its softmax is FP32 under autocast anyway
``msda_sampling``          the MSDA core gets FP32 value / locations / weights (the FP32 kernel); else the FP16 kernel
``softmax_attention``      every other attention is ``nn.MultiheadAttention`` with ``need_weights=True``: an explicit
                           ``softmax``, which autocast always runs in FP32
``layer_norm``             ``layer_norm`` is always FP32 under autocast
``group_norm``             ``group_norm`` is always FP32 under autocast (so it is FP32 even when not listed)
``positive_head``          ``positive_cls_embed`` modules in FP32
``box_refinement``         ``bbox_embed`` MLPs in FP32; ``inverse_sigmoid`` computes in FP32 for half inputs
``mask_head``              ``controller`` MLP in FP32 (the dynamic convs follow autocast)
=========================  =====================================================================================

Environment defaults read by :meth:`FastPathOptions.from_env` (the backend's constructor has no such arguments):
``ACTIONVOS_TORCH_MSDA`` = ``kernel`` (default) | ``oracle``; ``ACTIONVOS_TORCH_FP16`` = ``1`` | ``0`` (default);
``ACTIONVOS_TORCH_CUDA_GRAPHS`` = ``1`` | ``0`` (default).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from actionvos.errors import ConfigError

__all__ = [
    "FastPathOptions",
    "CudaFastPath",
    "GraphCache",
    "use_msda_kernel",
    "fp32_regions",
    "enable_fp16",
    "disable_fp16",
    "sensitive_groups",
]

log = logging.getLogger(__name__)

MSDA_ENV = "ACTIONVOS_TORCH_MSDA"
FP16_ENV = "ACTIONVOS_TORCH_FP16"
GRAPHS_ENV = "ACTIONVOS_TORCH_CUDA_GRAPHS"
_WRAPPED = "_actionvos_fp32_original_forward"
_CORE_WRAPPED = "_actionvos_fp32_original_core"


def sensitive_groups() -> tuple[str, ...]:
    """The FP16-sensitive node groups kept in FP32 (the single list of the FP16 export, imported, not copied)."""
    from actionvos.precision.fp16 import FP16_SENSITIVE_OPS

    return tuple(FP16_SENSITIVE_OPS)


def _all_groups() -> tuple[str, ...]:
    from actionvos.precision.groups import GROUPS

    return tuple(GROUPS)


# ----------------------------------------------------------------------------------------------- MSDA kernel


def use_msda_kernel(model: nn.Module, enable: bool = True) -> bool:
    """Make every ``MSDeformAttn`` of ``model`` use our CUDA kernel (``enable``) or the grid_sample oracle.

    Builds/loads the extension first (:func:`actionvos.export.msda_cuda.load_msda_extension`); when that fails,
    logs one warning with the reason and leaves the oracle in place.

    Returns:
        True when the kernel is now in use, False when the oracle is (asked for, or the fallback).
    """
    from actionvos.export.msda_cuda import MsdaExtensionError, load_msda_extension, msda_kernel_core
    from actionvos.model.deformable_transformer import MSDeformAttn
    from actionvos.model.msda import ms_deform_attn_core

    layers = [m for m in model.modules() if isinstance(m, MSDeformAttn)]
    core: Callable = ms_deform_attn_core
    if enable:
        try:
            load_msda_extension()
            core = msda_kernel_core
        except MsdaExtensionError as e:
            log.warning("MSDA CUDA kernel unavailable, using the grid_sample oracle: %s", e)
    for m in layers:
        base = getattr(m, _CORE_WRAPPED, None)
        if base is not None:  # keep an FP32 wrapper installed by enable_fp16 around the new core
            setattr(m, _CORE_WRAPPED, core)
            m.core = _fp32_core(core)
        else:
            m.core = core
    return core is not ms_deform_attn_core


# ------------------------------------------------------------------------------------------------------ FP16


def _to_fp32(x: Any) -> Any:
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != torch.float32:
        return x.float()
    if isinstance(x, (list, tuple)):
        return type(x)(_to_fp32(v) for v in x)
    return x


def _fp32_forward(forward: Callable) -> Callable:
    @functools.wraps(forward)
    def run(*args, **kwargs):
        device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cuda")
        with torch.autocast(device_type=device, enabled=False):
            return forward(*_to_fp32(args), **{k: _to_fp32(v) for k, v in kwargs.items()})

    return run


def _fp32_core(core: Callable) -> Callable:
    from actionvos.model.msda import ms_deform_attn_core, starts_from_shapes

    def run(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        if (core is ms_deform_attn_core and isinstance(level_start_index, torch.Tensor)
                and level_start_index.device.type != "cpu" and not isinstance(spatial_shapes, torch.Tensor)):
            level_start_index = starts_from_shapes(spatial_shapes)  # the oracle would read it back (a sync)
        with torch.autocast(device_type=value.device.type, enabled=False):
            return core(value.float(), spatial_shapes, level_start_index, sampling_locations.float(),
                        attention_weights.float())

    run.__name__ = f"fp32_{getattr(core, '__name__', 'core')}"
    return run


def fp32_regions(model: nn.Module, keep_fp32: Sequence[str]) -> tuple[list[tuple[str, nn.Module]], list[nn.Module]]:
    """Modules of ``model`` to run in FP32 for the groups ``keep_fp32`` (mapping: module docstring).

    Returns:
        ``(modules, msda_layers)``: ``(name, module)`` pairs whose forward runs in FP32, and the ``MSDeformAttn``
        layers whose sampling core gets FP32 inputs (group ``msda_sampling``).

    Raises:
        ConfigError: a group name that is not one of :data:`actionvos.precision.groups.GROUPS`.
    """
    from actionvos.model.deformable_transformer import MSDeformAttn

    unknown = sorted(set(keep_fp32) - set(_all_groups()))
    if unknown:
        raise ConfigError(f"unknown FP32 group(s) {unknown}; choose from {list(_all_groups())}")
    keep = set(keep_fp32)
    out: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()
    cores: list[nn.Module] = []

    def add(name: str, mod: nn.Module) -> None:
        if id(mod) not in seen:
            seen.add(id(mod))
            out.append((name, mod))

    for name, mod in model.named_modules():
        if isinstance(mod, MSDeformAttn):
            if "msda_sampling_offsets" in keep:
                add(f"{name}.sampling_offsets", mod.sampling_offsets)
            if "msda_attention_weights" in keep:
                add(f"{name}.attention_weights", mod.attention_weights)
            if "msda_sampling" in keep:
                cores.append(mod)
        leaf = name.rsplit(".", 1)[-1]
        parent = name.rsplit(".", 2)[-2] if name.count(".") >= 1 else ""
        if "positive_head" in keep and parent == "positive_cls_embed" and leaf.isdigit():
            add(name, mod)
        if "box_refinement" in keep and parent == "bbox_embed" and leaf.isdigit():
            add(name, mod)
        if "mask_head" in keep and name == "controller":
            add(name, mod)
    return out, cores


def enable_fp16(model: nn.Module, keep_fp32: Sequence[str] | None = None) -> list[str]:
    """Install FP32 regions for ``keep_fp32`` (default :func:`sensitive_groups`); returns the module names.

    The model itself stays FP32 (weights untouched); FP16 happens under ``torch.autocast`` around the calls
    (:class:`CudaFastPath` does that). Idempotent; :func:`disable_fp16` undoes it.

    Raises:
        ConfigError: unknown group names.
    """
    disable_fp16(model)
    regions, cores = fp32_regions(model, sensitive_groups() if keep_fp32 is None else keep_fp32)
    for _, mod in regions:
        setattr(mod, _WRAPPED, mod.forward)
        mod.forward = _fp32_forward(mod.forward)
    for m in cores:
        setattr(m, _CORE_WRAPPED, m.core)
        m.core = _fp32_core(m.core)
    return [n for n, _ in regions] + [f"{n}.core" for n, m in model.named_modules() if m in cores]


def disable_fp16(model: nn.Module) -> None:
    """Remove what :func:`enable_fp16` installed (no-op when nothing is)."""
    for mod in model.modules():
        if _WRAPPED in mod.__dict__:
            del mod.__dict__["forward"]
            delattr(mod, _WRAPPED)
        if _CORE_WRAPPED in mod.__dict__:
            mod.core = getattr(mod, _CORE_WRAPPED)
            delattr(mod, _CORE_WRAPPED)


# ------------------------------------------------------------------------------------------------ CUDA graphs


def _flatten(obj: Any, leaves: list[torch.Tensor]) -> Any:
    """Structure of ``obj`` with tensors replaced by their index in ``leaves`` (appended)."""
    if isinstance(obj, torch.Tensor):
        leaves.append(obj)
        return _Leaf(len(leaves) - 1)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _Dc(type(obj), {f.name: _flatten(getattr(obj, f.name), leaves) for f in dataclasses.fields(obj)})
    if isinstance(obj, dict):
        return {k: _flatten(v, leaves) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_flatten(v, leaves) for v in obj)
    return obj


def _unflatten(spec: Any, leaves: Sequence[torch.Tensor]) -> Any:
    if isinstance(spec, _Leaf):
        return leaves[spec.i]
    if isinstance(spec, _Dc):
        return spec.cls(**{k: _unflatten(v, leaves) for k, v in spec.fields.items()})
    if isinstance(spec, dict):
        return {k: _unflatten(v, leaves) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return type(spec)(_unflatten(v, leaves) for v in spec)
    return spec


@dataclasses.dataclass(frozen=True)
class _Leaf:
    i: int


@dataclasses.dataclass
class _Dc:
    cls: type
    fields: dict

    def __eq__(self, other) -> bool:
        return isinstance(other, _Dc) and self.cls is other.cls and self.fields == other.fields


def _signature(spec: Any, leaves: Sequence[torch.Tensor]) -> tuple:
    return (repr(spec), tuple((tuple(t.shape), t.dtype, t.device, t.stride()) for t in leaves))


@dataclasses.dataclass
class _Graph:
    graph: Any
    inputs: list[torch.Tensor]
    out_spec: Any
    outputs: list[torch.Tensor]


class GraphCache:
    """Capture ``fn`` once per input signature (shapes, dtypes, strides, non-tensor arguments) and replay it.

    Inputs are copied into the captured buffers before each replay; outputs are cloned out (the captured buffers
    are overwritten by the next replay). Runs under ``torch.inference_mode`` (outputs are inference tensors: no
    autograd). Warm-up runs (eager, on a side stream) precede each capture, so lazily
    built caches (index tensors, the extension) exist before capturing. A signature whose capture fails is logged
    once and runs eagerly afterwards; so does everything once ``max_graphs`` graphs exist.

    Args:
        fn: a function of tensors / dataclasses / lists / dicts of tensors, returning the same kinds.
        name: for log lines.
        max_graphs: most graphs kept (each holds its own input and output buffers).
        warmup: eager runs before a capture.
    """

    def __init__(self, fn: Callable, name: str, max_graphs: int = 8, warmup: int = 2):
        self.fn, self.name, self.max_graphs, self.warmup = fn, name, max_graphs, warmup
        self._graphs: dict[tuple, _Graph | None] = {}
        self._pool = None
        self.replays = 0
        self.eager_runs = 0

    @torch.inference_mode()
    def __call__(self, *args: Any) -> Any:
        leaves: list[torch.Tensor] = []
        spec = _flatten(args, leaves)
        key = _signature(spec, leaves)
        g = self._graphs.get(key, ...)
        if g is ...:
            g = self._capture(spec, leaves) if len(self._graphs) < self.max_graphs else None
            self._graphs[key] = g
        if g is None:
            self.eager_runs += 1
            return self.fn(*args)
        for dst, src in zip(g.inputs, leaves):
            dst.copy_(src)
        g.graph.replay()
        self.replays += 1
        return _unflatten(g.out_spec, [t.clone() for t in g.outputs])

    def _capture(self, spec: Any, leaves: list[torch.Tensor]) -> _Graph | None:
        try:
            static = [t.clone() for t in leaves]
            args = _unflatten(spec, static)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(self.warmup):
                    self.fn(*args)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            with torch.cuda.graph(graph, pool=self._pool):
                out = self.fn(*args)
            outs: list[torch.Tensor] = []
            out_spec = _flatten(out, outs)
            log.info("captured a CUDA graph of %s for %d input tensors", self.name, len(leaves))
            return _Graph(graph, static, out_spec, outs)
        except Exception as e:  # noqa: BLE001 -- capture failures (syncs, unsupported ops) fall back to eager
            log.warning("CUDA graph capture of %s failed, running it eagerly for these shapes: %s", self.name,
                        str(e).splitlines()[0] if str(e) else type(e).__name__)
            with contextlib.suppress(Exception):
                torch.cuda.synchronize()
            return None

    @property
    def num_graphs(self) -> int:
        return sum(g is not None for g in self._graphs.values())


# ------------------------------------------------------------------------------------------------ fast path


@dataclasses.dataclass
class FastPathOptions:
    """What :class:`CudaFastPath` turns on.

    Attributes:
        msda_kernel: our CUDA kernel for MSDA (fallback: the oracle, logged).
        fp16: autocast FP16 with ``keep_fp32`` groups in FP32.
        cuda_graphs: capture ``encode_frames`` / ``decode`` per input signature.
        keep_fp32: group names kept in FP32 with ``fp16``; ``None`` = :func:`sensitive_groups`.
        max_graphs: most captured ``decode`` graphs (one per window length × prompt count × size).
    """

    msda_kernel: bool = True
    fp16: bool = False
    cuda_graphs: bool = False
    keep_fp32: tuple[str, ...] | None = None
    max_graphs: int = 16

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "FastPathOptions":
        """Options from ``ACTIONVOS_TORCH_MSDA`` / ``ACTIONVOS_TORCH_FP16`` / ``ACTIONVOS_TORCH_CUDA_GRAPHS``.

        Raises:
            ConfigError: a value other than those listed in the module docstring.
        """
        env = os.environ if environ is None else environ

        def flag(name: str) -> bool:
            v = env.get(name, "0").strip().lower()
            if v in ("1", "true", "yes", "on"):
                return True
            if v in ("0", "false", "no", "off", ""):
                return False
            raise ConfigError(f"{name}={v!r}: use 1 or 0")

        msda = env.get(MSDA_ENV, "kernel").strip().lower() or "kernel"
        if msda not in ("kernel", "oracle"):
            raise ConfigError(f"{MSDA_ENV}={msda!r}: use kernel or oracle")
        return cls(msda_kernel=msda == "kernel", fp16=flag(FP16_ENV), cuda_graphs=flag(GRAPHS_ENV))


class CudaFastPath:
    """Applies :class:`FastPathOptions` to a model on a CUDA device by wrapping its ``encode_frames`` / ``decode``.

    The wrappers are instance attributes of ``model`` (:meth:`remove` deletes them; a new ``CudaFastPath`` on the
    same model replaces the previous one's): callers keep calling
    ``model.encode_frames(x)`` / ``model.decode(frames, text)``. ``encode_frames`` gets its ``image_sizes`` from a
    cached device constant (building it per call would be a host→device copy, a sync, and impossible to capture).

    Args:
        model: an :class:`~actionvos.model.actionvos.ActionVOS` on ``device`` in eval mode.
        device: a CUDA device.
        options: default :meth:`FastPathOptions.from_env`.

    Raises:
        ConfigError: ``device`` is not CUDA, or bad options.
    """

    def __init__(self, model: nn.Module, device: torch.device | str, options: FastPathOptions | None = None):
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ConfigError(f"the CUDA fast path needs a CUDA device, got {self.device}; use the plain backend")
        self.model = model
        self.options = options or FastPathOptions.from_env()
        for attr in ("encode_frames", "decode"):  # replace an earlier fast path rather than wrapping it
            model.__dict__.pop(attr, None)
        disable_fp16(model)
        self.kernel = use_msda_kernel(model, self.options.msda_kernel)
        self.fp32_modules: list[str] = []
        if self.options.fp16:
            self.fp32_modules = enable_fp16(model, self.options.keep_fp32)
        self._encode = model.encode_frames
        self._decode = model.decode
        self._sizes: dict[tuple, torch.Tensor] = {}
        self.encode_graphs = GraphCache(self._encode_impl, "encode_frames", max_graphs=4) \
            if self.options.cuda_graphs else None
        self.decode_graphs = GraphCache(self._decode_impl, "decode", max_graphs=self.options.max_graphs) \
            if self.options.cuda_graphs else None
        model.encode_frames = self.encode_frames
        model.decode = self.decode
        log.info("PyTorch CUDA path: %s", self.describe())

    def describe(self) -> str:
        """One line: MSDA implementation, precision (with the FP32 groups), graphs."""
        prec = "fp32"
        if self.options.fp16:
            keep = sensitive_groups() if self.options.keep_fp32 is None else self.options.keep_fp32
            prec = f"fp16 (fp32: {', '.join(keep) or 'none'})"
        return (f"msda={'kernel' if self.kernel else 'oracle'}, {prec}, "
                f"cuda_graphs={'on' if self.options.cuda_graphs else 'off'}")

    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        if self.options.fp16:
            # Captured graphs must not rely on autocast's weight-cast cache (PyTorch CUDA graphs docs: autocast with
            # cache_enabled=False inside torch.cuda.graph); eager runs keep the cache (it lives for one call).
            with torch.autocast(device_type="cuda", dtype=torch.float16, cache_enabled=not self.options.cuda_graphs):
                yield
        else:
            yield

    def _image_sizes(self, frames: torch.Tensor) -> torch.Tensor:
        B = frames.shape[0] if frames.dim() == 5 else 1
        H, W = int(frames.shape[-2]), int(frames.shape[-1])
        key = (B, H, W, frames.device)
        t = self._sizes.get(key)
        if t is None:
            with torch.inference_mode(False), torch.no_grad():
                t = torch.tensor([[H, W]] * B, dtype=torch.float32, device=frames.device)
            self._sizes[key] = t
        return t

    def _encode_impl(self, frames: torch.Tensor, image_sizes: torch.Tensor):
        with self._precision():
            return self._encode(frames, None, image_sizes)

    def _decode_impl(self, frames, text):
        with self._precision():
            return self._decode(frames, text)

    def encode_frames(self, frames: torch.Tensor, pad_mask: torch.Tensor | None = None,
                      image_sizes: torch.Tensor | None = None):
        """``ActionVOS.encode_frames`` with the options applied (padded batches run eagerly)."""
        if pad_mask is not None or frames.device.type != "cuda":
            with self._precision():
                return self._encode(frames, pad_mask, image_sizes)
        sizes = self._image_sizes(frames) if image_sizes is None else image_sizes
        if self.encode_graphs is not None:
            return self.encode_graphs(frames, sizes)
        return self._encode_impl(frames, sizes)

    def decode(self, frames, text) -> dict:
        """``ActionVOS.decode`` with the options applied."""
        if self.decode_graphs is not None:
            return self.decode_graphs(frames, text)
        return self._decode_impl(frames, text)

    def remove(self) -> None:
        """Restore the plain model: oracle cores, no FP32 wrappers, original methods."""
        for attr in ("encode_frames", "decode"):
            self.model.__dict__.pop(attr, None)
        disable_fp16(self.model)
        use_msda_kernel(self.model, False)
        self.encode_graphs = self.decode_graphs = None
