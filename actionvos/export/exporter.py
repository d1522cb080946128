"""Export an ActionVOS checkpoint to ``text_encoder.onnx`` + ``segmenter.onnx`` (and optionally TensorRT engines).

:func:`export_model` is the library function that ``actionvos-export`` / ``actionvos export`` wrap. The flow:

1. :func:`validate_options` — every option and combination is checked against the capability table
   (:data:`CAPABILITIES`) before any work; optional tools (onnxsim, tensorrt, the plugin library) are looked up.
2. The model is loaded strictly (:func:`actionvos.model.checkpoint.load_model`) or taken as given.
3. Each graph is traced with the TorchScript-based ``torch.onnx.export(..., dynamo=False)`` from its
   :class:`~actionvos.export.spec.ExportSpec` (names, dynamic axes, opset, dummy inputs). MSDA is written as
   one ``trt.plugins::ActionVOS_MSDeformAttn`` node per layer (``msda="plugin"``) or decomposed into GridSample
   (``msda="onnx"``). Why not the dynamo exporter: on torch 2.13 ``torch.export`` stops at the data-dependent
   ``level_start_index.tolist()`` of the MSDA oracle, and the traced graph matches PyTorch to ~1e-6.
4. Metadata (:mod:`actionvos.export.metadata`) is embedded, the graph is checked with ``onnx.checker`` and
   shape inference (the custom op's schema is registered), optionally simplified, and every graph input and
   output is logged with shape and dtype.
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
from actionvos.io_utils import replace_dir
from actionvos.export.spec import (
    GRAPH_ROLES,
    GRID_SAMPLE_MIN_OPSET,
    MAX_OPSET,
    MIN_OPSET,
    MSDA_MODES,
    SEGMENTER,
    TEXT_ENCODER,
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
        "onnx", "text_encoder.onnx + segmenter.onnx (FP32, or FP16 with --fp16)", frozenset({"simplify", "fp16"}),
        {"onnx": "onnx"}),
    "engine": FormatCapability(
        "engine", "the ONNX graphs plus text_encoder.engine + segmenter.engine with sidecar JSON",
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
        ``export_manifest.json``.
    """

    output: Path
    onnx: dict[str, Path]
    engines: dict[str, Path]
    specs: dict[str, ExportSpec]
    timings: dict[str, float]
    manifest: dict[str, Any]


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


def validate_options(opts: ExportOptions, cfg=None) -> None:
    """Check every option and option combination before any work (no file is written).

    Args:
        opts: the options.
        cfg: the :class:`~actionvos.model.config.ModelConfig` if already known (its FPN ratios and clip length
            bound the sizes); else the ``--preset``'s, or the released model's.
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
    if not 1 <= opts.frames <= cfg.max_clip_frames:
        raise ConfigError(f"--frames {opts.frames} is out of range; a clip has 1..{cfg.max_clip_frames} frames "
                          "(spec 3.1)")
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


def _metadata(role: str, spec: ExportSpec, cfg, opts: ExportOptions, ckpt_sha: str) -> dict[str, str]:
    from actionvos.export.metadata import FORMAT_VERSION, PREFIX
    from actionvos.model.config import IMAGENET_MEAN, IMAGENET_STD

    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "role": role,
        "preset": cfg.name,
        "config": cfg.to_dict(),
        "input": {
            "frames": opts.frames, "height": opts.height, "width": opts.width, "layout": "TCHW", "dtype": "uint8",
            "color": "RGB", "scale": 1 / 255, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "resize": f"resize frames to {opts.height}x{opts.width} (bilinear) before feeding; normalisation is "
                      "inside the segmenter graph",
            "mask_stride": cfg.mask_out_stride,
        },
        "prompt_template": cfg.prompt_template,
        "thresholds": {"pos_cls_thres": cfg.pos_cls_thres, "mask_threshold": cfg.mask_threshold,
                       "background_prob": cfg.background_prob},
        "tokenizer": opts.tokenizer or "",
        "checkpoint_sha256": ckpt_sha,
        "exporter": _versions(),
        "msda": opts.msda,
        "msda_op": {"domain": spec.custom_domain, "op_type": spec.custom_op, "plugin_version": spec.custom_version},
        "spec": spec.to_dict(),
    }
    return {PREFIX + k: (v if isinstance(v, str) else json.dumps(v)) for k, v in meta.items()}


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
            custom_opsets={spec.custom_domain: 1} if msda == "plugin" and spec.has_msda else None,
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
    """
    import onnx

    from actionvos.precision.fp16 import DEFAULT_KEEP_FP32, convert_fp16

    model = onnx.load(str(path))
    out = convert_fp16(model, DEFAULT_KEEP_FP32)
    out.metadata_props.add(key="actionvos.precision", value="fp16")
    out.metadata_props.add(key="actionvos.fp16_keep_fp32", value=",".join(DEFAULT_KEEP_FP32))
    onnx.save(out, str(path))


def _finalise_onnx(path: Path, role: str, spec: ExportSpec, meta: dict[str, str], simplify: bool) -> None:
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
    model.doc_string = f"ActionVOS {role} ({meta.get('actionvos.preset', '')}), MSDA {meta.get('actionvos.msda')}"
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
    """Export a checkpoint (or a model object) to the two ONNX graphs, optionally TensorRT engines.

    Args:
        checkpoint: ``.pth`` file (official ``{'model': state_dict}`` or ours); ignored when ``model`` is given.
        output: directory to create: ``text_encoder.onnx``, ``segmenter.onnx``, ``export_manifest.json``
            (+ ``*.engine`` and ``*.engine.json`` with ``fmt="engine"``).
        model: an :class:`~actionvos.model.actionvos.ActionVOS` to export instead of loading a checkpoint (its
            ``cfg`` is used; metadata then has an empty checkpoint hash). It is put in eval mode.
        preset: model preset; default inferred from the checkpoint (spec 1).
        height, width: static input size in pixels (frames are resized to it by the runtime; 360x640 for VISOR).
        frames: static clip length T (1..36).
        max_prompts: profile max of P (prompts per call); profiles are P 1/min(2, max)/max.
        max_tokens: profile max of L (tokens per prompt); profiles are L 2/16/max.
        opset: default-domain ONNX opset (14..20; >= 16 with ``msda="onnx"``).
        msda: ``plugin`` (custom op for TensorRT) or ``onnx`` (GridSample decomposition, any runtime).
        fmt: ``onnx`` or ``engine``.
        fp16: convert both graphs to FP16 with the sensitive ops kept in FP32 (:func:`_convert_fp16_in_place`).
        simplify: run onnx-simplifier on each graph.
        force: replace an existing non-empty ``output``.
        tokenizer: tokenizer directory or hub id, recorded in the metadata only.
        plugin_library: the MSDA plugin ``.so`` for engine builds (default: searched, see ``trt_plugin``).
        timing_cache: TensorRT timing-cache file (default ``output/timing.cache``).
    Returns:
        :class:`ExportResult`.
    Raises:
        ConfigError: see :func:`validate_options`.
        InputError: ``output`` exists and is not empty (without ``force``), or is not creatable.
        CheckpointError: unreadable checkpoint, or one of another architecture.
    """
    import torch

    from actionvos.export.graphs import SegmenterGraph, TextEncoderGraph
    from actionvos.model.checkpoint import file_sha256, load_model

    opts = ExportOptions(preset=preset, height=height, width=width, frames=frames, max_prompts=max_prompts,
                         max_tokens=max_tokens, opset=opset, msda=msda, fmt=fmt, fp16=fp16, simplify=simplify,
                         force=force, tokenizer=tokenizer, plugin_library=plugin_library, timing_cache=timing_cache)
    output = Path(output)
    timings: dict[str, float] = {}
    with _step("validate", timings):
        validate_options(opts, cfg=getattr(model, "cfg", None))
        check_output(output, force)
        if model is None:
            if checkpoint is None:
                raise CheckpointError("no checkpoint given; pass the path of an ActionVOS .pth file")
            if not Path(checkpoint).is_file():
                raise CheckpointError(f"checkpoint {checkpoint} does not exist; pass the path of a .pth file")

    with _step("load_model", timings):
        if model is None:
            model, cfg, _ = load_model(checkpoint, preset=preset)
            ckpt_sha = file_sha256(checkpoint)
        else:
            cfg = model.cfg
            ckpt_sha = ""
        was_training = model.training
        model.eval()
        validate_options(opts, cfg=cfg)  # sizes/frames against the actual model's FPN ratios and clip length
    log.info("exporting %s (checkpoint sha256 %s) at T=%d, %dx%d, P<=%d, L<=%d, opset %d, MSDA %s, format %s",
             cfg.name, ckpt_sha or "-", frames, height, width, max_prompts, max_tokens, opset, msda, fmt)
    specs = build_specs(frames=frames, height=height, width=width, max_prompts=max_prompts, max_tokens=max_tokens,
                        num_queries=cfg.num_queries, hidden_dim=cfg.hidden_dim, opset=opset)
    wrappers = {TEXT_ENCODER: TextEncoderGraph(model), SEGMENTER: SegmenterGraph(model)}

    output.resolve().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.resolve().parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the output folder gets normal permissions (umask)
    onnx_paths: dict[str, Path] = {}
    engine_paths: dict[str, Path] = {}
    try:
        for role in GRAPH_ROLES:
            spec = specs[role]
            path = tmp / spec.filename
            with _step(f"export_{role}", timings):
                export_graph(wrappers[role], spec, path, msda, model=model)
            with _step(f"check_{role}", timings):
                _finalise_onnx(path, role, spec, _metadata(role, spec, cfg, opts, ckpt_sha), simplify)
            if fp16:
                with _step(f"fp16_{role}", timings):
                    _convert_fp16_in_place(path)
            onnx_paths[role] = output / spec.filename
        if fmt == "engine":
            from actionvos.trt_api import build_engine

            cache = Path(timing_cache) if timing_cache else tmp / "timing.cache"
            for role in GRAPH_ROLES:
                spec = specs[role]
                with _step(f"engine_{role}", timings):
                    build_engine(tmp / spec.filename, tmp / f"{role}.engine", spec, fp16=fp16,
                                 plugin_library=plugin_library, timing_cache=cache, checkpoint_sha256=ckpt_sha,
                                 use_plugin=msda == "plugin")
                engine_paths[role] = output / f"{role}.engine"
        manifest = {
            "preset": cfg.name,
            "checkpoint": str(checkpoint) if checkpoint is not None and ckpt_sha else "",
            "checkpoint_sha256": ckpt_sha,
            "options": dataclasses.asdict(opts),
            "exporter": _versions(),
            "files": {role: {"onnx": specs[role].filename,
                             **({"engine": f"{role}.engine"} if role in engine_paths else {}),
                             "spec": specs[role].to_dict()} for role in GRAPH_ROLES},
            "timings_s": timings,
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        with _step("commit", timings):
            _commit(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        model.train(was_training)
    log.info("wrote %s: %s", output, ", ".join(sorted(p.name for p in output.iterdir())))
    return ExportResult(output, onnx_paths, engine_paths, specs, timings, manifest)
