"""One export spec per exported graph: names, shapes with named dynamic axes, opset, custom-op identity,
dummy inputs for tracing, TensorRT optimisation profiles and parity tolerances.

The spec is the single source of truth that drives ``torch.onnx.export`` (:mod:`actionvos.export.exporter`),
the TensorRT profiles (:func:`actionvos.trt_api.build_engine`), the parity tests (``tests/export``) and the
runtime's input checks. It is embedded as JSON in every exported graph's ``metadata_props`` (key
``actionvos.spec``) and can be rebuilt with :meth:`ExportSpec.from_dict`.

This module imports numpy only (no torch): an edge runtime with numpy/onnxruntime/tensorrt can use it.

Graph I/O (decided with the runtime; spec sections 3.1, 3.3, 3.6, 3.8):

* ``text_encoder``: ``input_ids [P, L]`` int64, ``attention_mask [P, L]`` int64 →
  ``text_word [P, L, 256]`` float32, ``text_mask [P, L]`` bool (True = padding), ``text_sentence [P, 256]`` float32.
* ``segmenter``: ``frames [T, 3, H, W]`` uint8 RGB (normalisation inside the graph), ``text_word``, ``text_mask``,
  ``text_sentence`` → ``pred_logits [P, T, Q, 1]``, ``pred_boxes [P, T, Q, 4]`` (cxcywh in [0, 1]),
  ``pred_masks [P, T, Q, ceil(H/4), ceil(W/4)]`` (mask logits at stride 4), ``pred_positives [P, 1]`` (logit).
  T (``--frames``), H, W are static; P (and L) dynamic.
* ``frame_encoder``: ``frames [1, 3, H, W]`` uint8 RGB → the per-frame features :data:`FEATURE_NAMES`:
  ``res2 [1, C2, ceil(H/4), ceil(W/4)]`` (ResNet stride 4, C2 = 256 released) and ``proj0..proj3 [1, d, h_l, w_l]``
  (``input_proj`` at strides 8, 16, 32, 64). All static.
* ``window_decoder``: the frame encoder's features of T frames concatenated on axis 0 (``res2 [T, C2, ...]``,
  ``proj0..proj3 [T, d, ...]``) + ``text_word``, ``text_mask``, ``text_sentence`` → the segmenter's four outputs.
  **T is dynamic** (profile 1 / ``--frames`` / the card's ``max_clip_frames``, 36 released), so one graph decodes
  the official rule's clips of at most 36 frames (the last one shorter, spec 3.9) and causal windows of any T.

File names (:data:`GRAPH_FILES`) and tensor names (:data:`FEATURE_NAMES`, :data:`TEXT_FEATURE_NAMES`,
:data:`DECODER_OUTPUTS`) are defined here and imported everywhere else.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actionvos.export.trt_plugin import ONNX_DOMAIN, PLUGIN_NAME, PLUGIN_VERSION

__all__ = [
    "TEXT_ENCODER",
    "SEGMENTER",
    "FRAME_ENCODER",
    "WINDOW_DECODER",
    "GRAPH_ROLES",
    "GRAPH_FILES",
    "FEATURE_NAMES",
    "TEXT_FEATURE_NAMES",
    "DECODER_OUTPUTS",
    "CUSTOM_OPSET_VERSION",
    "MSDA_MODES",
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "MAX_OPSET",
    "GRID_SAMPLE_MIN_OPSET",
    "TensorSpec",
    "DimRange",
    "Tolerance",
    "ExportSpec",
    "feature_size",
    "min_input_side",
    "text_encoder_spec",
    "segmenter_spec",
    "frame_encoder_spec",
    "window_decoder_spec",
    "build_specs",
]

TEXT_ENCODER = "text_encoder"
SEGMENTER = "segmenter"
FRAME_ENCODER = "frame_encoder"
WINDOW_DECODER = "window_decoder"
#: Every graph of an export folder, in export order.
GRAPH_ROLES = (TEXT_ENCODER, SEGMENTER, FRAME_ENCODER, WINDOW_DECODER)
#: File name of each graph inside an export folder (``{role}.onnx``; engines are ``{role}.engine``).
GRAPH_FILES = {role: f"{role}.onnx" for role in GRAPH_ROLES}
#: Per-frame feature tensors from the frame encoder to the window decoder, in graph order.
FEATURE_NAMES = ("res2", "proj0", "proj1", "proj2", "proj3")
#: Outputs of the text encoder = text inputs of the segmenter and the window decoder, in graph order.
TEXT_FEATURE_NAMES = ("text_word", "text_mask", "text_sentence")
#: Outputs of the segmenter and the window decoder, in graph order.
DECODER_OUTPUTS = ("pred_logits", "pred_boxes", "pred_masks", "pred_positives")
#: Opset version of the custom domain (:data:`~actionvos.export.trt_plugin.ONNX_DOMAIN`) in graphs and in the
#: op's ONNX schema (distinct from the op's ``plugin_version`` attribute).
CUSTOM_OPSET_VERSION = 1
#: ``plugin``: one ``trt.plugins::ActionVOS_MSDeformAttn`` node per MSDA layer (TensorRT);
#: ``onnx``: MSDA decomposed into standard ops (GridSample, opset >= 16), runs in any ONNX runtime.
MSDA_MODES = ("plugin", "onnx")
DEFAULT_OPSET = 18
#: The TorchScript-based exporter of torch 2.x supports opsets 7..20; below 14 the model needs ops it lacks.
MIN_OPSET = 14
MAX_OPSET = 20
#: ``GridSample`` entered the default domain in opset 16 (needed by ``--msda onnx``).
GRID_SAMPLE_MIN_OPSET = 16

_DTYPES = ("float32", "float16", "int64", "int32", "bool", "uint8")


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output.

    Attributes:
        name: the ONNX tensor name (the runtime binds by name).
        dtype: numpy dtype name (``float32``, ``int64``, ``bool``, ``uint8``).
        shape: ints for static axes, strings for named dynamic axes (``"P"``, ``"L"``).
        doc: meaning, units and value range.
    """

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    doc: str = ""

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"TensorSpec {self.name}: unsupported dtype {self.dtype!r}")

    def resolve(self, dims: dict[str, int]) -> tuple[int, ...]:
        """Concrete shape with every named axis replaced by ``dims[name]``.

        Raises:
            KeyError: a named axis has no size in ``dims``.
        """
        return tuple(d if isinstance(d, int) else int(dims[d]) for d in self.shape)

    def describe(self) -> str:
        """``name [P, L, 256] float32``."""
        return f"{self.name} [{', '.join(str(d) for d in self.shape)}] {self.dtype}"


@dataclass(frozen=True)
class DimRange:
    """TensorRT optimisation-profile range of one named dynamic axis (``min <= opt <= max``)."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(f"dimension range must satisfy 1 <= min <= opt <= max, got {self}")


@dataclass(frozen=True)
class Tolerance:
    """Parity tolerance of one output: pass when ``|actual - expected| <= atol + rtol * |expected|`` everywhere.

    Boolean and integer outputs use ``atol = rtol = 0`` (exact).
    """

    atol: float
    rtol: float


@dataclass(frozen=True)
class ExportSpec:
    """Everything about one exported graph (optimum ``OnnxConfig`` style).

    Attributes:
        role: one of :data:`GRAPH_ROLES` (also the file stem: ``{role}.onnx``).
        inputs, outputs: :class:`TensorSpec` in graph order.
        dims: profile range per named dynamic axis (``P`` prompts, ``L`` tokens, ``T`` frames of the window decoder).
        trace_dims: sizes of the named axes in the dummy inputs used for tracing. ``P`` must be >= 2: the
            TorchScript tracer records Python branches (``reps == 1`` in ``ActionVOS.decode``), and a P = 1
            trace would bake P = 1 into the graph. ``L`` is traced with padding in the last prompt so the
            attention-mask path is recorded. ``T`` (window decoder) is traced at 2 for the same reason.
        opset: default-domain ONNX opset.
        custom_domain, custom_op, custom_version: the MSDA custom op (``trt.plugins`` /
            ``ActionVOS_MSDeformAttn`` / attribute ``plugin_version``), used by graphs exported with
            ``--msda plugin``.
        tolerances: ``precision -> output name -> Tolerance`` (``fp32``: ONNX Runtime / TensorRT FP32 vs PyTorch
            FP32 on CPU; ``fp16``: provisional, for the calibration issue).
        static: static sizes of the graph (``T``, ``H``, ``W``; no ``T`` when T is dynamic), for metadata.
        has_msda: the graph contains MSDA layers (custom-op nodes when exported with ``--msda plugin``).
    """

    role: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dims: dict[str, DimRange]
    trace_dims: dict[str, int]
    opset: int = DEFAULT_OPSET
    custom_domain: str = ONNX_DOMAIN
    custom_op: str = PLUGIN_NAME
    custom_version: str = PLUGIN_VERSION
    tolerances: dict[str, dict[str, Tolerance]] = field(default_factory=dict)
    static: dict[str, int] = field(default_factory=dict)
    has_msda: bool = False

    # ------------------------------------------------------------------ names and shapes
    @property
    def filename(self) -> str:
        """``{role}.onnx`` (:data:`GRAPH_FILES`)."""
        return GRAPH_FILES[self.role]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def tensor(self, name: str) -> TensorSpec:
        """The input or output called ``name``.

        Raises:
            KeyError: no such tensor.
        """
        for t in self.inputs + self.outputs:
            if t.name == name:
                return t
        raise KeyError(f"{self.role} has no tensor {name!r}; it has {self.input_names + self.output_names}")

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """``torch.onnx.export`` ``dynamic_axes``: ``{tensor: {axis: name}}`` for every named axis."""
        out: dict[str, dict[int, str]] = {}
        for t in self.inputs + self.outputs:
            named = {i: d for i, d in enumerate(t.shape) if isinstance(d, str)}
            if named:
                out[t.name] = named
        return out

    def shapes(self, **dims: int) -> dict[str, tuple[int, ...]]:
        """Concrete shapes of every input and output for the named sizes ``dims`` (e.g. ``P=2, L=12``)."""
        return {t.name: t.resolve(dims) for t in self.inputs + self.outputs}

    def profile(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """TensorRT optimisation profile: ``{input: (min_shape, opt_shape, max_shape)}`` for every input."""
        lo = {k: r.min for k, r in self.dims.items()}
        opt = {k: r.opt for k, r in self.dims.items()}
        hi = {k: r.max for k, r in self.dims.items()}
        return {t.name: (t.resolve(lo), t.resolve(opt), t.resolve(hi)) for t in self.inputs}

    def tolerance(self, output: str, precision: str = "fp32") -> Tolerance:
        """Parity tolerance of ``output`` at ``precision``.

        Raises:
            KeyError: unknown precision or output.
        """
        return self.tolerances[precision][output]

    # ------------------------------------------------------------------ inputs
    def dummy_inputs(self, seed: int = 0, **dims: int) -> dict[str, np.ndarray]:
        """Random but valid inputs (numpy), by default of the tracing sizes :attr:`trace_dims`.

        Token ids are in ``[3, 1000)`` framed by ``<s>`` = 0 and ``</s>`` = 2 with pad id 1; the last prompt is
        padded (when L > 3), and masks agree with the ids. Frames are uniform uint8. Text features are standard
        normal. Shapes follow :meth:`shapes`.
        """
        sizes = {**self.trace_dims, **dims}
        rng = np.random.default_rng(seed)
        P, L = sizes.get("P", 1), sizes.get("L", 2)
        lengths = np.full(P, L)
        if P > 1 and L > 3:
            lengths[-1] = max(3, L // 2)
        valid = np.arange(L)[None, :] < lengths[:, None]  # [P, L]
        out: dict[str, np.ndarray] = {}
        for t in self.inputs:
            shape = t.resolve(sizes)
            if t.name == "input_ids":
                ids = rng.integers(3, 1000, size=shape, dtype=np.int64)
                ids[:, 0] = 0
                ids[np.arange(P), lengths - 1] = 2
                ids[~valid] = 1
                out[t.name] = ids
            elif t.name == "attention_mask":
                out[t.name] = valid.astype(np.int64)
            elif t.name == "text_mask":
                out[t.name] = ~valid
            elif t.dtype == "uint8":
                out[t.name] = rng.integers(0, 256, size=shape, dtype=np.uint8)
            else:
                out[t.name] = rng.standard_normal(shape).astype(t.dtype)
        return out

    def check_feed(self, feed: dict[str, np.ndarray]) -> dict[str, int]:
        """Validate a feed against the spec and the profile ranges; return the named sizes it implies.

        Raises:
            ValueError: a missing/extra input, a wrong dtype or rank, a static size that differs, a named axis
                with two different sizes, or a size outside its profile range (message names the input).
        """
        missing = [n for n in self.input_names if n not in feed]
        extra = [n for n in feed if n not in self.input_names]
        if missing or extra:
            raise ValueError(f"{self.role}: missing inputs {missing}, unexpected inputs {extra}")
        sizes: dict[str, int] = {}
        for t in self.inputs:
            a = np.asarray(feed[t.name])
            if a.dtype != np.dtype(t.dtype):
                raise ValueError(f"{self.role}.{t.name}: dtype {a.dtype}, expected {t.dtype}")
            if a.ndim != len(t.shape):
                raise ValueError(f"{self.role}.{t.name}: shape {a.shape}, expected {t.describe()}")
            for axis, (want, got) in enumerate(zip(t.shape, a.shape)):
                if isinstance(want, int):
                    if want != got:
                        raise ValueError(f"{self.role}.{t.name}: axis {axis} is {got}, expected {want} ({t.describe()})")
                elif sizes.setdefault(want, got) != got:
                    raise ValueError(f"{self.role}.{t.name}: axis {want}={got} but another input has {want}={sizes[want]}")
        for k, v in sizes.items():
            r = self.dims.get(k)
            if r is not None and not r.min <= v <= r.max:
                raise ValueError(f"{self.role}: {k}={v} is outside the exported range [{r.min}, {r.max}]")
        return sizes

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (stored in ``metadata_props['actionvos.spec']``)."""
        d = dataclasses.asdict(self)
        d["inputs"] = [dict(dataclasses.asdict(t), shape=list(t.shape)) for t in self.inputs]
        d["outputs"] = [dict(dataclasses.asdict(t), shape=list(t.shape)) for t in self.outputs]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExportSpec":
        """Inverse of :meth:`to_dict`.

        Raises:
            KeyError, TypeError, ValueError: a malformed dict.
        """
        d = dict(d)
        d["inputs"] = tuple(TensorSpec(**dict(t, shape=tuple(t["shape"]))) for t in d["inputs"])
        d["outputs"] = tuple(TensorSpec(**dict(t, shape=tuple(t["shape"]))) for t in d["outputs"])
        d["dims"] = {k: DimRange(**v) for k, v in d["dims"].items()}
        d["tolerances"] = {p: {k: Tolerance(**v) for k, v in tol.items()} for p, tol in d["tolerances"].items()}
        return cls(**d)


# ---------------------------------------------------------------------- model geometry
def feature_size(size: int, stride: int) -> int:
    """Spatial size of the ResNet feature map of stride ``stride`` (4, 8, ..., 64) for an input side ``size``.

    Every stride-2 stage (conv1 k7 p3, max-pool k3 p1, the stride-2 3×3 convs, ``input_proj[3]``) maps ``n`` to
    ``ceil(n / 2)``, so the stride-``s`` map has ``ceil(size / s)`` pixels (spec 3.2; e.g. 360 → 90, 45, 23, 12, 6).
    """
    n = size
    for _ in range(int(round(math.log2(stride)))):
        n = (n + 1) // 2
    return n


def min_input_side(sr_ratios: tuple[int, ...] = (8, 4, 2, 1)) -> int:
    """Smallest input height/width the model accepts.

    The FPN's spatial-reduction self-attention (spec 3.7) nearest-downsamples the stride ``4 * 2**k`` map by
    ``sr_ratios[k]`` with ``int(h / sr)``, which must stay >= 1 (a 0-sized map raises in ``F.interpolate``).
    For the released ratios (8, 4, 2, 1) this gives 29 pixels. No multiple-of-32 is needed: all sizes are
    rounded up per stage and the top-down path upsamples to the exact lateral size.
    """
    side = 1
    while any(int(feature_size(side, 4 * 2 ** k) / sr) < 1 for k, sr in enumerate(sr_ratios)):
        side += 1
    return side


# ---------------------------------------------------------------------- tolerances
# fp32: measured on CPU (tiny fixture and random-weight R101, torch 2.13 vs ONNX Runtime 1.31) with margin:
# largest observed |diff| was ~2e-6 for text features, ~1e-6 for logits/boxes, ~2e-5 for mask logits (tiny) and a
# few 1e-4 for R101 mask logits (values up to ~1e2). fp16 entries are provisional (FP16 export is deferred).
_TEXT_TOL = {
    "fp32": {"text_word": Tolerance(1e-4, 1e-4), "text_mask": Tolerance(0.0, 0.0),
             "text_sentence": Tolerance(1e-4, 1e-4)},
    "fp16": {"text_word": Tolerance(2e-2, 2e-2), "text_mask": Tolerance(0.0, 0.0),
             "text_sentence": Tolerance(2e-2, 2e-2)},
}
_SEG_TOL = {
    "fp32": {"pred_logits": Tolerance(1e-4, 1e-3), "pred_boxes": Tolerance(1e-5, 1e-4),
             "pred_masks": Tolerance(2e-3, 1e-3), "pred_positives": Tolerance(1e-4, 1e-3)},
    "fp16": {"pred_logits": Tolerance(5e-2, 5e-2), "pred_boxes": Tolerance(5e-3, 1e-2),
             "pred_masks": Tolerance(2e-1, 5e-2), "pred_positives": Tolerance(5e-2, 5e-2)},
}


# frame encoder: ResNet + input_proj only; measured |diff| ~1e-5 on features of magnitude ~10 (demo model, 96x128).
_FRAME_TOL = {
    "fp32": {n: Tolerance(1e-4, 1e-4) for n in FEATURE_NAMES},
    "fp16": {n: Tolerance(5e-2, 5e-2) for n in FEATURE_NAMES},
}


def _prompt_range(max_prompts: int, opt_prompts: int | None) -> DimRange:
    opt = min(2, max_prompts) if opt_prompts is None else opt_prompts
    return DimRange(1, opt, max_prompts)


def _token_range(max_tokens: int) -> DimRange:
    return DimRange(2, min(16, max_tokens), max_tokens)


def text_encoder_spec(*, max_prompts: int = 8, max_tokens: int = 64, opt_prompts: int | None = None,
                      hidden_dim: int = 256, opset: int = DEFAULT_OPSET) -> ExportSpec:
    """Spec of ``text_encoder.onnx`` (spec 3.3): RoBERTa + the shared FeatureResizer.

    Args:
        max_prompts: profile max of P (prompts per call). ``opt_prompts`` defaults to ``min(2, max_prompts)``.
        max_tokens: profile max of L (tokens incl. ``<s>``/``</s>``; RoBERTa allows up to 512).
        hidden_dim: d of the text features (256).
        opset: default-domain opset.
    Raises:
        ValueError: an invalid range.
    """
    d = hidden_dim
    return ExportSpec(
        role=TEXT_ENCODER,
        inputs=(
            TensorSpec("input_ids", "int64", ("P", "L"), "RoBERTa BPE ids, <s>=0 first, </s>=2 last, pad=1"),
            TensorSpec("attention_mask", "int64", ("P", "L"), "1 for tokens, 0 for padding"),
        ),
        outputs=(
            TensorSpec("text_word", "float32", ("P", "L", d), "resized last hidden states (padding rows included)"),
            TensorSpec("text_mask", "bool", ("P", "L"), "True on padding (attention_mask != 1)"),
            TensorSpec("text_sentence", "float32", ("P", d), "resized pooler output"),
        ),
        dims={"P": _prompt_range(max_prompts, opt_prompts), "L": _token_range(max_tokens)},
        trace_dims={"P": 2, "L": 8},
        opset=opset,
        tolerances=_TEXT_TOL,
    )


def segmenter_spec(*, frames: int, height: int, width: int, max_prompts: int = 8, max_tokens: int = 64,
                   opt_prompts: int | None = None, num_queries: int = 5, hidden_dim: int = 256,
                   mask_stride: int = 4, opset: int = DEFAULT_OPSET) -> ExportSpec:
    """Spec of ``segmenter.onnx`` (spec 3.1–3.8): backbone once per clip, decode broadcast to P prompts.

    Args:
        frames, height, width: the static clip size T, H, W (frames already resized to H×W, uint8 RGB).
        max_prompts, max_tokens, opt_prompts: profile ranges of P and L (see :func:`text_encoder_spec`).
        num_queries: Q (5). hidden_dim: d (256). mask_stride: stride of the mask logits (4).
        opset: default-domain opset.
    Raises:
        ValueError: an invalid range.
    """
    d, Q = hidden_dim, num_queries
    h4, w4 = feature_size(height, mask_stride), feature_size(width, mask_stride)
    return ExportSpec(
        role=SEGMENTER,
        inputs=(
            TensorSpec("frames", "uint8", (frames, 3, height, width),
                       "RGB frames resized to the export size, 0..255; /255 and ImageNet mean/std are in the graph"),
            *_text_inputs(d),
        ),
        outputs=_decoder_outputs(frames, Q, h4, w4),
        dims={"P": _prompt_range(max_prompts, opt_prompts), "L": _token_range(max_tokens)},
        trace_dims={"P": 2, "L": 8},
        opset=opset,
        tolerances=_SEG_TOL,
        static={"T": frames, "H": height, "W": width},
        has_msda=True,
    )


def _text_inputs(d: int) -> tuple[TensorSpec, ...]:
    word, mask, sentence = TEXT_FEATURE_NAMES
    return (TensorSpec(word, "float32", ("P", "L", d), "text_encoder output"),
            TensorSpec(mask, "bool", ("P", "L"), "text_encoder output, True on padding"),
            TensorSpec(sentence, "float32", ("P", d), "text_encoder output"))


def _decoder_outputs(frames: int | str, Q: int, h4: int, w4: int) -> tuple[TensorSpec, ...]:
    logits, boxes, masks, positives = DECODER_OUTPUTS
    return (TensorSpec(logits, "float32", ("P", frames, Q, 1), "query class logits"),
            TensorSpec(boxes, "float32", ("P", frames, Q, 4), "boxes, normalised cxcywh in [0, 1]"),
            TensorSpec(masks, "float32", ("P", frames, Q, h4, w4), "mask logits at stride 4"),
            TensorSpec(positives, "float32", ("P", 1), "clip-level positive-action logit"))


def _feature_tensors(frames: int | str, height: int, width: int, res2_channels: int, hidden_dim: int):
    """``res2`` at stride 4 and ``proj0..proj3`` at strides 8..64 (spec 3.2)."""
    out = [TensorSpec(FEATURE_NAMES[0], "float32",
                      (frames, res2_channels, feature_size(height, 4), feature_size(width, 4)),
                      "ResNet stride-4 map (layer1 output)")]
    for level, name in enumerate(FEATURE_NAMES[1:]):
        s = 8 * 2 ** level
        out.append(TensorSpec(name, "float32", (frames, hidden_dim, feature_size(height, s), feature_size(width, s)),
                              f"input_proj level {level} (stride {s})"))
    return tuple(out)


def frame_encoder_spec(*, height: int, width: int, res2_channels: int = 256, hidden_dim: int = 256,
                       opset: int = DEFAULT_OPSET) -> ExportSpec:
    """Spec of ``frame_encoder.onnx`` (spec 3.1–3.2): one uint8 frame → its per-frame features (all static).

    Args:
        height, width: the static frame size in pixels (frames already resized, uint8 RGB).
        res2_channels: channels of ``res2`` (4 × backbone width: 256 released, 64 for ``demo_small``).
        hidden_dim: d of the ``input_proj`` levels (256).
        opset: default-domain opset.
    """
    return ExportSpec(
        role=FRAME_ENCODER,
        inputs=(TensorSpec("frames", "uint8", (1, 3, height, width),
                           "one RGB frame resized to the export size, 0..255; normalisation is in the graph"),),
        outputs=_feature_tensors(1, height, width, res2_channels, hidden_dim),
        dims={},
        trace_dims={},
        opset=opset,
        tolerances=_FRAME_TOL,
        static={"H": height, "W": width},
    )


def window_decoder_spec(*, height: int, width: int, opt_frames: int = 1, max_frames: int = 36,
                        max_prompts: int = 8, max_tokens: int = 64, opt_prompts: int | None = None,
                        num_queries: int = 5, res2_channels: int = 256, hidden_dim: int = 256, mask_stride: int = 4,
                        opset: int = DEFAULT_OPSET) -> ExportSpec:
    """Spec of ``window_decoder.onnx`` (spec 3.4–3.8): per-frame features of T frames + text → decoder outputs.

    Args:
        height, width: the frame size in pixels the features come from (static).
        opt_frames, max_frames: TensorRT profile of the dynamic T axis: min 1, opt ``opt_frames`` (``--frames``),
            max ``max_frames`` (the card's ``input.max_clip_frames``, 36 released: the official rule's clip length).
        max_prompts, max_tokens, opt_prompts: profile ranges of P and L (see :func:`text_encoder_spec`).
        num_queries: Q. res2_channels: channels of ``res2``. hidden_dim: d. mask_stride: 4.
        opset: default-domain opset.
    Raises:
        ValueError: an invalid range (e.g. ``opt_frames > max_frames``).
    """
    h4, w4 = feature_size(height, mask_stride), feature_size(width, mask_stride)
    return ExportSpec(
        role=WINDOW_DECODER,
        inputs=(*_feature_tensors("T", height, width, res2_channels, hidden_dim), *_text_inputs(hidden_dim)),
        outputs=_decoder_outputs("T", num_queries, h4, w4),
        dims={"P": _prompt_range(max_prompts, opt_prompts), "L": _token_range(max_tokens),
              "T": DimRange(1, opt_frames, max_frames)},
        trace_dims={"P": 2, "L": 8, "T": min(2, max_frames)},
        opset=opset,
        tolerances=_SEG_TOL,
        static={"H": height, "W": width},
        has_msda=True,
    )


def build_specs(*, frames: int, height: int, width: int, max_frames: int = 36, max_prompts: int = 8,
                max_tokens: int = 64, opt_prompts: int | None = None, num_queries: int = 5, hidden_dim: int = 256,
                res2_channels: int = 256, opset: int = DEFAULT_OPSET) -> dict[str, ExportSpec]:
    """The specs of every graph of an export folder, keyed by role (:data:`GRAPH_ROLES`), sharing P and L ranges.

    Args:
        frames: ``--frames``: the segmenter's static T and the window decoder's profile opt T.
        height, width: static frame size in pixels.
        max_frames: the window decoder's profile max T (the card's ``input.max_clip_frames``).
        max_prompts, max_tokens, opt_prompts, num_queries, hidden_dim, res2_channels, opset: see the per-graph
            functions.
    Raises:
        ValueError: an invalid range (e.g. ``frames > max_frames``).
    """
    common = dict(max_prompts=max_prompts, max_tokens=max_tokens, opt_prompts=opt_prompts, hidden_dim=hidden_dim,
                  opset=opset)
    return {
        TEXT_ENCODER: text_encoder_spec(**common),
        SEGMENTER: segmenter_spec(frames=frames, height=height, width=width, num_queries=num_queries, **common),
        FRAME_ENCODER: frame_encoder_spec(height=height, width=width, res2_channels=res2_channels,
                                          hidden_dim=hidden_dim, opset=opset),
        WINDOW_DECODER: window_decoder_spec(height=height, width=width, opt_frames=frames, max_frames=max_frames,
                                            num_queries=num_queries, res2_channels=res2_channels, **common),
    }
