"""Export an ActionVOS checkpoint to a self-contained folder of ONNX graphs (and optionally TensorRT engines).

:func:`export_model` is the library function that ``actionvos-export`` / ``actionvos export`` wrap. An export
folder holds (spec and I/O of each graph: :mod:`actionvos.export.spec`):

* ``text_encoder.onnx`` (P, L dynamic), ``segmenter.onnx`` (static T = ``--frames``), ``frame_encoder.onnx`` (one
  frame) and ``window_decoder.onnx`` (dynamic T: 1 .. the card's ``max_clip_frames``, opt ``--frames``);
* ``card.json``: the export's :class:`~actionvos.card.ModelCard` (also in every graph's ``metadata_props``,
  :mod:`actionvos.export.metadata`), and ``tokenizer/`` (``vocab.json`` + ``merges.txt``, hash = the card's
  ``tokenizer_sha256``), so running the folder needs no ``--tokenizer``;
* ``export_manifest.json``: options, tool versions, files and specs, timings (the model's facts are in the card);
* with ``fmt="engine"``: ``{role}.engine`` + ``{role}.engine.json`` per graph.

The flow:

1. :func:`validate_options` — every option and combination is checked against the capability table
   (:data:`CAPABILITIES`) before any work; optional tools (onnxsim, tensorrt, the plugin library) are looked up.
2. The checkpoint is read with its card and tokenizer (:func:`actionvos.artifacts.read_checkpoint_artifact`: the
   card and tokenizer embedded in our checkpoints, ``--tokenizer`` for an official one) and the model is loaded
   strictly; or a model object is taken as given. The export's card is the checkpoint's with the artifact facts
   (input size, MSDA mode, precision) replaced; its ``window`` is null because the window decoder takes any T (the
   segmenter's static T is in its spec).
3. Each graph is traced with the TorchScript-based ``torch.onnx.export(..., dynamo=False)`` from its
   :class:`~actionvos.export.spec.ExportSpec` (names, dynamic axes, opset, dummy inputs). MSDA is written as
   one ``trt.plugins::ActionVOS_MSDeformAttn`` node per layer (``msda="plugin"``) or decomposed into GridSample
   (``msda="onnx"``). Why not the dynamo exporter: on torch 2.13 ``torch.export`` stops at the data-dependent
   ``level_start_index.tolist()`` of the MSDA oracle, and the traced graph matches PyTorch to ~1e-6.
4. Metadata (:mod:`actionvos.export.metadata`) is embedded, the graph is checked with ``onnx.checker`` and
   shape inference (the custom op's schema is registered), optionally simplified, and every graph input and
   output is logged with shape and dtype. ``card.json`` and ``tokenizer/`` are written.
5. With ``fmt="engine"``, :func:`actionvos.trt_api.build_engine` builds one engine per graph.
6. Everything is written into a temporary sibling directory that is renamed onto ``output`` at the end; an
   error or Ctrl-C removes it, leaving ``output`` absent or unchanged.

Every step is timed (log lines ``step <name>: <seconds> s``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from actionvos.errors import CheckpointError, ConfigError, InputError
from actionvos.io_utils import atomic_write_text, replace_dir
from actionvos.export.spec import (
    CUSTOM_OPSET_VERSION,
    FRAME_ENCODER,
    GRAPH_ROLES,
    GRID_SAMPLE_MIN_OPSET,
    MAX_OPSET,
    MIN_OPSET,
    MSDA_MODES,
    SEGMENTER,
    TEXT_ENCODER,
    WINDOW_DECODER,
    ExportSpec,
    build_specs,
    min_input_side,
)

__all__ = [
    "FORMATS",
    "CAPABILITIES",
    "FormatCapability",
    "ExportOptions",
    "ExportResult",
    "validate_options",
    "export_model",
    "export_graph",
    "describe_io",
    "MANIFEST_NAME",
    "weights_sha256",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "export_manifest.json"
MAX_PROMPTS_LIMIT = 64
#: RoBERTa's 514 learned positions minus the two offset rows (pad id 1 + 1).
MAX_TOKENS_LIMIT = 512


@dataclass(frozen=True)
class FormatCapability:
    """What one output format supports (Ultralytics-style capability table).

    Attributes:
        name: ``onnx`` or ``engine``.
        description: what gets written.
        options: boolean/valued options the format accepts (``fp16``, ``simplify``).
        requires: Python modules that must be importable, with the pip package to install.
        not_yet: options accepted by the CLI but not implemented yet, with the reason shown to the user.
    """

    name: str
    description: str
    options: frozenset[str]
    requires: dict[str, str]
    not_yet: dict[str, str] = field(default_factory=dict)


CAPABILITIES: dict[str, FormatCapability] = {
    "onnx": FormatCapability(
        "onnx", "text_encoder / segmenter / frame_encoder / window_decoder .onnx, card.json, tokenizer/ (FP32, or "
        "FP16 with --fp16)", frozenset({"simplify", "fp16"}), {"onnx": "onnx"}),
    "engine": FormatCapability(
        "engine", "the ONNX folder plus one {graph}.engine with sidecar JSON per graph",
        frozenset({"simplify", "fp16"}), {"onnx": "onnx", "tensorrt": "tensorrt (needs an NVIDIA GPU)"}),
}
FORMATS = tuple(CAPABILITIES)


@dataclass(frozen=True)
class ExportOptions:
    """Validated export settings (the CLI flags; see :func:`export_model` for meanings)."""

    preset: str | None = None
    height: int = 360
    width: int = 640
    frames: int = 1
    max_prompts: int = 8
    max_tokens: int = 64
    opset: int = 18
    msda: str = "plugin"
    fmt: str = "onnx"
    fp16: bool = False
    simplify: bool = False
    force: bool = False
    tokenizer: str | None = None
    plugin_library: str | None = None
    timing_cache: str | None = None


@dataclass
class ExportResult:
    """What :func:`export_model` wrote.

    Attributes:
        output: the export directory.
        onnx: role → ``.onnx`` path. engines: role → ``.engine`` path (``fmt="engine"`` only).
        specs: role → :class:`ExportSpec`. timings: step → seconds. manifest: the JSON written to
        ``export_manifest.json``. card: the export's :class:`~actionvos.card.ModelCard` (``card.json``).
        tokenizer: the :class:`~actionvos.tokenizer.Tokenizer` copied to ``tokenizer/``, or None (a model object
        exported without one).
    """

    output: Path
    onnx: dict[str, Path]
    engines: dict[str, Path]
    specs: dict[str, ExportSpec]
    timings: dict[str, float]
    manifest: dict[str, Any]
    card: Any = None
    tokenizer: Any = None

    def summary(self) -> str:
        """Two lines for the CLI: the card's main facts, then the files written."""
        c = self.card
        H, W = c.input.size
        tok = f"tokenizer {c.tokenizer_sha256}" if c.tokenizer_sha256 else "no tokenizer (pass --tokenizer when running)"
        files = ", ".join(sorted(p.name for p in self.output.iterdir()))
        return (f"exported {c.config.name} (checkpoint {c.checkpoint_sha256}) to {self.output} in "
                f"{sum(self.timings.values()):.1f} s: {c.precision.value}, {H}x{W}, segmenter T={self.specs[SEGMENTER].static['T']}, "
                f"window decoder T=1..{self.specs[WINDOW_DECODER].dims['T'].max}, MSDA {c.msda}, {tok}\n  files: {files}")


# ---------------------------------------------------------------------- validation
def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_output(output: Path, force: bool) -> None:
    """Check that ``output`` can become the export directory, without touching it.

    Raises:
        InputError: ``output`` is a file, or a non-empty directory while ``force`` is False, or its parent is not
            writable.
    """
    if output.exists():
        if not output.is_dir():
            raise InputError(f"--output {str(output)!r} is a file; pass a directory path")
        if not force and any(output.iterdir()):
            raise InputError(f"--output {str(output)!r} exists and is not empty; pass --force to replace it")
    parent = output.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot create --output {str(output)!r}: {str(parent)!r} is not a writable directory")


def validate_options(opts: ExportOptions, cfg=None, max_frames: int | None = None) -> None:
    """Check every option and option combination before any work (no file is written).

    Args:
        opts: the options.
        cfg: the :class:`~actionvos.model.config.ModelConfig` if already known (its FPN ratios bound the sizes);
            else the ``--preset``'s, or the released model's.
        max_frames: the longest clip (the card's ``input.max_clip_frames``); default the released model's (36).
    Raises:
        ConfigError: unknown format/MSDA mode/preset, opset out of range (or < 16 with ``--msda onnx``),
            frames/sizes/prompt counts the model cannot take, an unavailable option,
            ``--simplify`` without onnxsim, ``--format engine`` without tensorrt or without a GPU, a plugin
            library that is missing or built for another TensorRT major.
    """
    from actionvos.model.config import ModelConfig, get_preset

    if opts.fmt not in CAPABILITIES:
        raise ConfigError(f"unknown --format {opts.fmt!r}; choose one of {list(FORMATS)}")
    cap = CAPABILITIES[opts.fmt]
    if opts.msda not in MSDA_MODES:
        raise ConfigError(f"unknown --msda {opts.msda!r}; choose one of {list(MSDA_MODES)}")
    if cfg is None:
        if opts.preset is not None:
            try:
                cfg = get_preset(opts.preset)
            except ValueError as err:
                raise ConfigError(str(err)) from None
        else:
            cfg = ModelConfig()
    if not MIN_OPSET <= opts.opset <= MAX_OPSET:
        raise ConfigError(f"--opset {opts.opset} is unsupported; the exporter supports {MIN_OPSET}..{MAX_OPSET} "
                          f"(default 18)")
    if opts.msda == "onnx" and opts.opset < GRID_SAMPLE_MIN_OPSET:
        raise ConfigError(f"--msda onnx needs --opset >= {GRID_SAMPLE_MIN_OPSET} (GridSample); got {opts.opset}")
    if max_frames is None:
        from actionvos.card import OFFICIAL_FACTS

        max_frames = OFFICIAL_FACTS["input"].max_clip_frames
    if not 1 <= opts.frames <= max_frames:
        raise ConfigError(f"--frames {opts.frames} is out of range; a clip has 1..{max_frames} frames "
                          "(spec 3.1, the model card's max_clip_frames)")
    side = min_input_side(tuple(cfg.fpn_sr_ratios))
    for flag, v in (("--height", opts.height), ("--width", opts.width)):
        if v < side:
            raise ConfigError(f"{flag} {v} is too small: the FPN's stride-4 map downsampled by "
                              f"{cfg.fpn_sr_ratios[0]} must keep >= 1 pixel, so sizes must be >= {side} "
                              "(the released model uses 360x640)")
        if v > 4096:
            raise ConfigError(f"{flag} {v} is larger than 4096; resize frames first (the model uses 360x640)")
    if not 1 <= opts.max_prompts <= MAX_PROMPTS_LIMIT:
        raise ConfigError(f"--max-prompts {opts.max_prompts} must be in 1..{MAX_PROMPTS_LIMIT}")
    if not 2 <= opts.max_tokens <= MAX_TOKENS_LIMIT:
        raise ConfigError(f"--max-tokens {opts.max_tokens} must be in 2..{MAX_TOKENS_LIMIT} (RoBERTa positions)")
    for opt in ("fp16", "simplify"):
        if getattr(opts, opt):
            if opt in cap.not_yet:
                raise ConfigError(cap.not_yet[opt])
            if opt not in cap.options:
                raise ConfigError(f"--{opt} is not supported with --format {opts.fmt}")
    for module, package in cap.requires.items():
        if not _module_available(module):
            raise ConfigError(f"--format {opts.fmt} needs the Python package {module!r}; pip install {package}")
    if opts.simplify and not _module_available("onnxsim"):
        raise ConfigError("--simplify needs onnx-simplifier; pip install onnxsim (or drop --simplify)")
    if opts.fmt == "engine":
        from actionvos.trt_api import gpu_compute_capability

        if gpu_compute_capability() is None:
            raise ConfigError("--format engine needs an NVIDIA GPU visible to CUDA (none found); export with "
                              "--format onnx here and build engines on the target machine")
    if opts.fmt == "engine" and opts.msda == "plugin":
        from actionvos.export.trt_plugin import PluginLibraryError, check_plugin_trt_major

        try:
            check_plugin_trt_major(opts.plugin_library)
        except PluginLibraryError as err:
            raise ConfigError(str(err)) from None


# ---------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _step(name: str, timings: dict[str, float]) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - t0, 3)
        log.info("step %s: %.2f s", name, timings[name])


_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}


def describe_io(model) -> list[str]:
    """``["input frames [2, 3, 96, 160] uint8", ...]`` for a ModelProto's graph inputs and outputs."""
    lines = []
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for v in values:
            tt = v.type.tensor_type
            dims = [d.dim_param if d.HasField("dim_param") else (str(d.dim_value) if d.HasField("dim_value") else "?")
                    for d in tt.shape.dim]
            lines.append(f"{kind} {v.name} [{', '.join(dims)}] {_ONNX_DTYPES.get(tt.elem_type, tt.elem_type)}")
    return lines


def _versions() -> dict[str, str]:
    import onnx
    import torch

    import actionvos

    return {"actionvos": actionvos.__version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "exporter": "torch.onnx.export(dynamo=False) (TorchScript tracer)"}


def _metadata(role: str, spec: ExportSpec, card) -> dict[str, str]:
    """The ``metadata_props`` of one graph (keys documented in :mod:`actionvos.export.metadata`)."""
    from actionvos.export.metadata import FORMAT_VERSION, encode_metadata

    props = encode_metadata({"format": FORMAT_VERSION, "role": role, "spec": spec.to_dict(), "exporter": _versions()})
    props.update(card.onnx_props())
    return props


def export_graph(module, spec: ExportSpec, path: Path, msda: str, model=None) -> None:
    """Trace ``module`` (a :mod:`actionvos.export.graphs` wrapper, eval mode) to ``path`` as described by ``spec``.

    Args:
        module: the graph wrapper (its ``forward`` takes the spec's inputs in order).
        spec: names, dynamic axes, opset and the dummy inputs.
        path: the ``.onnx`` file to write.
        msda: ``plugin`` or ``onnx`` (how MSDA layers are written).
        model: the module whose ``MSDeformAttn`` cores are swapped (default ``module``).
    """
    import torch

    from actionvos.export.msda_export import msda_mode

    dummy = {k: torch.from_numpy(v) for k, v in spec.dummy_inputs(seed=0).items()}
    args = tuple(dummy[n] for n in spec.input_names)
    module.eval()
    with torch.no_grad(), msda_mode(model or module, msda) as n_layers, warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        torch.onnx.export(
            module, args, str(path), dynamo=False, input_names=spec.input_names, output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes(), opset_version=spec.opset, do_constant_folding=True,
            custom_opsets={spec.custom_domain: CUSTOM_OPSET_VERSION} if msda == "plugin" and spec.has_msda else None,
        )
    log.debug("%s: traced with %d MSDA layers as %s", spec.role, n_layers, msda)


def _declare_io_shapes(graph, spec: ExportSpec) -> None:
    """Write the spec's shapes (named axes as ``dim_param``) onto the graph inputs and outputs, replacing the
    tracer's generated names (``Reshapepred_masks_dim_3``); strict shape inference then checks they agree."""
    for vi in list(graph.input) + list(graph.output):
        t = spec.tensor(vi.name)
        shape = vi.type.tensor_type.shape
        del shape.dim[:]
        for d in t.shape:
            dim = shape.dim.add()
            if isinstance(d, int):
                dim.dim_value = d
            else:
                dim.dim_param = d


def _convert_fp16_in_place(path: Path) -> None:
    """FP16 graph for ``--fp16`` (TensorRT >= 10.12 builds precision from the graph's types, strongly typed).

    Uses the maintained converter through :func:`actionvos.precision.fp16.convert_fp16` with its default FP32
    keep list (MSDA sampling offsets / attention weights / sampling, attention softmax, LayerNorm, positive head,
    box refinement); I/O types stay FP32 / int64 / bool / uint8. ``actionvos calibrate fp16`` measures the keep list
    on real data instead and writes the accuracy report.

    The card (already ``precision: fp16``) is kept; the record ``actionvos.calibration`` says how the graph was made.
    """
    import onnx

    from actionvos.export.metadata import encode_metadata
    from actionvos.precision.fp16 import DEFAULT_KEEP_FP32, convert_fp16

    model = onnx.load(str(path))
    out = convert_fp16(model, DEFAULT_KEEP_FP32)
    kept = {p.key: p.value for p in model.metadata_props}
    kept.update(encode_metadata({"calibration": {"method": "actionvos-export --fp16 (default keep list, no measurement)",
                                                 "keep_fp32": list(DEFAULT_KEEP_FP32)}}))
    del out.metadata_props[:]
    for k, v in kept.items():
        out.metadata_props.add(key=k, value=v)
    onnx.save(out, str(path))


def _finalise_onnx(path: Path, role: str, spec: ExportSpec, meta: dict[str, str], simplify: bool,
                   description: str = "") -> None:
    """Embed metadata, optionally simplify, check (checker + strict shape inference) and save in place."""
    import onnx

    from actionvos.export.custom_ops import register_onnx_schema

    register_onnx_schema()
    model = onnx.load(str(path))
    if simplify:
        import onnxsim

        model, ok = onnxsim.simplify(model)
        if not ok:
            raise RuntimeError(f"onnxsim could not validate the simplified {role} graph")
    _declare_io_shapes(model.graph, spec)
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    model.producer_name = "actionvos-export"
    model.doc_string = f"ActionVOS {role} ({description})"
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    names = [o.name for o in inferred.graph.output]
    if names != spec.output_names:
        raise RuntimeError(f"{role}: graph outputs {names} differ from the spec's {spec.output_names}")
    for line in describe_io(model):
        log.info("%s %s", role, line)


def _commit(tmp: Path, output: Path) -> None:
    """Move the finished ``tmp`` directory onto ``output`` (replacing an existing one, as late as possible)."""
    replace_dir(tmp, output)


# ---------------------------------------------------------------------- export
def export_model(
    checkpoint: str | Path | None,
    output: str | Path,
    *,
    model=None,
    card=None,
    preset: str | None = None,
    height: int = 360,
    width: int = 640,
    frames: int = 1,
    max_prompts: int = 8,
    max_tokens: int = 64,
    opset: int = 18,
    msda: str = "plugin",
    fmt: str = "onnx",
    fp16: bool = False,
    simplify: bool = False,
    force: bool = False,
    tokenizer: str | None = None,
    plugin_library: str | None = None,
    timing_cache: str | None = None,
) -> ExportResult:
    """Export a checkpoint (or a model object) to a self-contained folder of ONNX graphs, optionally TensorRT engines.

    Args:
        checkpoint: ``.pth`` file (ours, with card and tokenizer; or official ``{'model': state_dict}``); ignored
            when ``model`` is given.
        output: directory to create (layout in the module docstring).
        model: an :class:`~actionvos.model.actionvos.ActionVOS` to export instead of loading a checkpoint. It is put
            in eval mode. Its card is ``card``, else one built from ``model.cfg`` with the released model's facts and
            a hash of its weights (:func:`weights_sha256`).
        card: the :class:`~actionvos.card.ModelCard` of ``model`` (ignored for a checkpoint, which carries or
            implies its own).
        preset: model preset of an official checkpoint; default inferred (spec 1).
        height, width: static input size in pixels (frames are resized to it by the runtime; 360x640 for VISOR).
        frames: the segmenter's static clip length T and the window decoder's profile opt T (1..max_clip_frames).
        max_prompts: profile max of P (prompts per call); profiles are P 1/min(2, max)/max.
        max_tokens: profile max of L (tokens per prompt); profiles are L 2/16/max.
        opset: default-domain ONNX opset (14..20; >= 16 with ``msda="onnx"``).
        msda: ``plugin`` (custom op for TensorRT) or ``onnx`` (GridSample decomposition, any runtime).
        fmt: ``onnx`` or ``engine``.
        fp16: convert every graph to FP16 with the sensitive ops kept in FP32 (:func:`_convert_fp16_in_place`);
            the card says ``precision: fp16``.
        simplify: run onnx-simplifier on each graph.
        force: replace an existing non-empty ``output``.
        tokenizer: ``--tokenizer`` folder (or hub id): needed for an official checkpoint; our checkpoints and the
            demo carry theirs. Copied into ``output/tokenizer/``. A model object without one is exported without
            a tokenizer (the card's ``tokenizer_sha256`` is null; running it then needs ``--tokenizer``).
        plugin_library: the MSDA plugin ``.so`` for engine builds (default: searched, see ``trt_plugin``).
        timing_cache: TensorRT timing-cache file (default ``output/timing.cache``).
    Returns:
        :class:`ExportResult`.
    Raises:
        ConfigError: see :func:`validate_options`; a tokenizer that is not the model's.
        InputError: ``output`` exists and is not empty (without ``force``), or is not creatable; an official
            checkpoint without ``--tokenizer``; an unreadable tokenizer.
        CheckpointError: unreadable checkpoint, or one of another architecture.
    """
    opts = ExportOptions(preset=preset, height=height, width=width, frames=frames, max_prompts=max_prompts,
                         max_tokens=max_tokens, opset=opset, msda=msda, fmt=fmt, fp16=fp16, simplify=simplify,
                         force=force, tokenizer=tokenizer, plugin_library=plugin_library, timing_cache=timing_cache)
    output = Path(output)
    timings: dict[str, float] = {}
    with _step("validate", timings):
        validate_options(opts, cfg=getattr(model, "cfg", None),
                         max_frames=card.input.max_clip_frames if model is not None and card is not None else None)
        check_output(output, force)
        if model is None:
            if checkpoint is None:
                raise CheckpointError("no checkpoint given; pass the path of an ActionVOS .pth file")
            if not Path(checkpoint).is_file():
                raise CheckpointError(f"checkpoint {checkpoint} does not exist; pass the path of a .pth file")

    from_checkpoint = model is None
    with _step("load_model", timings):
        model, base_card, tok = _load_source(checkpoint, model, card, tokenizer, preset)
        cfg = model.cfg
        was_training = model.training
        model.eval()
        # sizes against the actual model's FPN ratios; frames against its card's clip length
        validate_options(opts, cfg=cfg, max_frames=base_card.input.max_clip_frames)
    card = base_card.with_artifact(msda=msda, input=dataclasses.replace(base_card.input, size=(height, width)),
                                   window=None, precision="fp16" if fp16 else "fp32")  # the window decoder takes any T
    max_frames = card.input.max_clip_frames
    log.info("exporting %s (checkpoint %s) at T=%d (window decoder T=1..%d), %dx%d, P<=%d, L<=%d, opset %d, MSDA %s, "
             "format %s", cfg.name, card.checkpoint_sha256, frames, max_frames, height, width, max_prompts,
             max_tokens, opset, msda, fmt)
    specs = build_specs(frames=frames, height=height, width=width, max_frames=max_frames, max_prompts=max_prompts,
                        max_tokens=max_tokens, num_queries=cfg.num_queries, hidden_dim=cfg.hidden_dim,
                        res2_channels=_res2_channels(model), opset=opset)
    wrappers = _graph_wrappers(model, height, width)

    output.resolve().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.resolve().parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the output folder gets normal permissions (umask)
    onnx_paths: dict[str, Path] = {}
    engine_paths: dict[str, Path] = {}
    description = f"{cfg.name}, checkpoint {card.checkpoint_sha256}, {height}x{width}, MSDA {msda}"
    try:
        for role in GRAPH_ROLES:
            spec = specs[role]
            path = tmp / spec.filename
            with _step(f"export_{role}", timings):
                export_graph(wrappers[role], spec, path, msda, model=model)
            with _step(f"check_{role}", timings):
                _finalise_onnx(path, role, spec, _metadata(role, spec, card), simplify, description)
            if fp16:
                with _step(f"fp16_{role}", timings):
                    _convert_fp16_in_place(path)
            onnx_paths[role] = output / spec.filename
        from actionvos.card import CARD_FILE, write_card
        from actionvos.tokenizer import TOKENIZER_DIR

        write_card(tmp, card)
        if tok is not None:
            tok.save(tmp / TOKENIZER_DIR)
        if fmt == "engine":
            from actionvos.trt_api import build_engine

            cache = Path(timing_cache) if timing_cache else tmp / "timing.cache"
            for role in GRAPH_ROLES:
                spec = specs[role]
                with _step(f"engine_{role}", timings):
                    build_engine(tmp / spec.filename, tmp / f"{role}.engine", spec, fp16=fp16,
                                 plugin_library=plugin_library, timing_cache=cache,
                                 checkpoint_sha256=card.checkpoint_sha256, use_plugin=msda == "plugin")
                engine_paths[role] = output / f"{role}.engine"
        manifest = {
            "card": CARD_FILE,
            "tokenizer": TOKENIZER_DIR if tok is not None else None,
            "checkpoint": str(checkpoint) if from_checkpoint else "",
            "options": dataclasses.asdict(opts),
            "exporter": _versions(),
            "files": {role: {"onnx": specs[role].filename,
                             **({"engine": f"{role}.engine"} if role in engine_paths else {}),
                             "spec": specs[role].to_dict()} for role in GRAPH_ROLES},
            "timings_s": timings,
        }
        atomic_write_text(tmp / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
        with _step("commit", timings):
            _commit(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        model.train(was_training)
    log.info("wrote %s: %s", output, ", ".join(sorted(p.name for p in output.iterdir())))
    return ExportResult(output, onnx_paths, engine_paths, specs, timings, manifest, card, tok)


def weights_sha256(model) -> str:
    """16 hex digits of the SHA-256 over a model's state dict (names, dtypes, shapes and bytes in key order): the
    card's ``checkpoint_sha256`` of a model object exported without a checkpoint file."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        a = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{a.dtype}:{tuple(t.shape)}".encode())
        h.update(a.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _load_source(checkpoint, model, card, tokenizer, preset):
    """``(model, card, tokenizer or None)`` of what is exported: a checkpoint (its card and tokenizer, see
    :func:`actionvos.artifacts.read_checkpoint_artifact`) or a model object (``card`` or a built one)."""
    from actionvos.tokenizer import load_tokenizer

    if model is None:
        from actionvos.artifacts import read_checkpoint_artifact

        art = read_checkpoint_artifact(checkpoint, tokenizer=tokenizer, preset=preset)
        card = art.card
        if card.tokenizer_sha256 is None:  # an official checkpoint + --tokenizer: the folder carries that tokenizer
            card = dataclasses.replace(card, tokenizer_sha256=art.tokenizer.sha256)
        return art.model, card, art.tokenizer
    if card is None:
        from actionvos.card import card_for_checkpoint

        card = card_for_checkpoint(model.cfg, weights_sha256(model))
    tok = None
    if tokenizer is not None:
        tok = load_tokenizer(tokenizer)
        if tok.vocab_size > card.vocab_size:
            raise ConfigError(f"the tokenizer {tok.source} has {tok.vocab_size} tokens but the model's text encoder has "
                              f"{card.vocab_size}; pass the tokenizer that belongs to this model with --tokenizer")
        if card.tokenizer_sha256 is None:
            card = dataclasses.replace(card, tokenizer_sha256=tok.sha256)
        tok.check_model(card)
    elif card.tokenizer_sha256 is not None:
        raise InputError(f"the model's card names tokenizer {card.tokenizer_sha256} but none was given; pass "
                         "--tokenizer with its folder")
    else:
        log.warning("exporting a model object without a tokenizer: the folder will need --tokenizer to run")
    return model, card, tok


def _res2_channels(model) -> int:
    """Channels of the ResNet stride-4 map (``res2``): 4 × backbone width (256 released)."""
    return int(model.backbone[0].num_channels[0])


def _graph_wrappers(model, height: int, width: int) -> dict[str, Any]:
    """The traced module of each role (:mod:`actionvos.export.graphs`)."""
    from actionvos.export.graphs import FrameEncoderGraph, SegmenterGraph, TextEncoderGraph, WindowDecoderGraph

    return {TEXT_ENCODER: TextEncoderGraph(model), SEGMENTER: SegmenterGraph(model),
            FRAME_ENCODER: FrameEncoderGraph(model), WINDOW_DECODER: WindowDecoderGraph(model, height, width)}
