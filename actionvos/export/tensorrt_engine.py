"""All TensorRT API use of the exporter: ONNX → serialized engine with profiles from the spec, plus a sidecar JSON.

``import tensorrt`` happens inside the functions (the module itself imports without TensorRT). Conventions:

* strongly typed network (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``): precisions come from the ONNX
  graph's types, so an FP32 graph builds an FP32 engine (``--fp16`` converts the ONNX graph to FP16 first);
* the MSDA plugin library is registered through :func:`actionvos.export.trt_plugin.register_plugin` (which checks
  its TensorRT major) before parsing, so the parser maps ``trt.plugins::ActionVOS_MSDeformAttn`` to the plugin;
* one optimisation profile from :meth:`ExportSpec.profile` (min/opt/max of P and L; T, H, W static);
* a timing cache file is read if present and written back after the build;
* tensors are addressed by name (``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3`` at run time).

Sidecar ``{engine}.json``: TensorRT version, GPU name and compute capability, plugin library path and SHA-256,
checkpoint SHA-256, the ONNX file's SHA-256, profiles and I/O names, so the runtime can refuse a mismatched engine.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from actionvos.errors import ConfigError
from actionvos.export.spec import ExportSpec

__all__ = ["tensorrt_available", "gpu_compute_capability", "build_engine", "sidecar_path"]

log = logging.getLogger(__name__)


def tensorrt_available() -> tuple[bool, str]:
    """``(True, version)`` when ``tensorrt`` imports, else ``(False, reason)`` (``"tensorrt not importable"``)."""
    try:
        import tensorrt as trt
    except Exception as err:  # ImportError, or a broken install raising OSError on its libraries
        return False, f"tensorrt not importable ({type(err).__name__}: {err})"
    return True, str(trt.__version__)


def gpu_compute_capability() -> tuple[str, str] | None:
    """``(name, "major.minor")`` of CUDA device 0, or None when no GPU is visible (tries torch, then cuda-python)."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return torch.cuda.get_device_name(0), f"{major}.{minor}"
    except Exception:
        pass
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6

        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) == 0:
            return props.name.decode(errors="replace").rstrip("\x00"), f"{props.major}.{props.minor}"
    except Exception:
        pass
    return None


def sidecar_path(engine_path: str | Path) -> Path:
    """``x.engine`` → ``x.engine.json``."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def _sha256(path: Path) -> str:
    from actionvos.model.checkpoint import file_sha256

    return file_sha256(path, length=64)


class _Logger:
    """A ``trt.ILogger`` that forwards to :mod:`logging` (created lazily, needs tensorrt)."""

    @staticmethod
    def create(trt):
        class Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)

            def log(self, severity, msg):
                level = {trt.ILogger.INTERNAL_ERROR: logging.ERROR, trt.ILogger.ERROR: logging.ERROR,
                         trt.ILogger.WARNING: logging.WARNING, trt.ILogger.INFO: logging.DEBUG}.get(severity,
                                                                                                     logging.DEBUG)
                log.log(level, "TensorRT: %s", msg)

        return Logger()


def build_engine(onnx_path: str | Path, engine_path: str | Path, spec: ExportSpec, *, fp16: bool = False,
                 plugin_library: str | Path | None = None, timing_cache: str | Path | None = None,
                 checkpoint_sha256: str = "", use_plugin: bool = True, workspace_gib: float | None = None
                 ) -> dict[str, Any]:
    """Build a serialized TensorRT engine from an exported graph and write ``engine_path`` + its sidecar JSON.

    Args:
        onnx_path: ``text_encoder.onnx`` or ``segmenter.onnx`` from :func:`~actionvos.export.exporter.export_model`.
        engine_path: where to write the engine (the sidecar goes to ``engine_path + ".json"``).
        spec: the graph's spec (profiles and I/O names).
        fp16: the graph was converted to FP16 (``--fp16``); recorded in the sidecar. The network is strongly
            typed, so precision comes from the graph's types, not from builder flags.
        plugin_library: MSDA plugin ``.so`` (default: found by ``trt_plugin.find_plugin_library``).
        timing_cache: timing-cache file, read if it exists and rewritten after the build.
        checkpoint_sha256: recorded in the sidecar.
        use_plugin: register the plugin library (needed when the graph has MSDA custom-op nodes).
        workspace_gib: optional workspace pool limit in GiB.
    Returns:
        The sidecar dict.
    Raises:
        ConfigError: tensorrt not importable, no GPU, or the ONNX parser/builder failed
            (the message carries the parser errors).
        PluginLibraryError: plugin library missing or built for another TensorRT major.
    """
    ok, info = tensorrt_available()
    if not ok:
        raise ConfigError(f"--format engine: {info}; pip install tensorrt on a machine with an NVIDIA GPU")
    gpu = gpu_compute_capability()
    if gpu is None:
        raise ConfigError("--format engine needs an NVIDIA GPU visible to CUDA (none found); build engines on the "
                          "target machine from the exported ONNX")
    import tensorrt as trt

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    logger = _Logger.create(trt)
    plugin_info: dict[str, Any] = {}
    if use_plugin and spec.has_msda:
        from actionvos.export.trt_plugin import _resolve, check_plugin_trt_major, register_plugin

        lib = _resolve(plugin_library)
        built = check_plugin_trt_major(lib, int(str(trt.__version__).split(".")[0]))
        trt.init_libnvinfer_plugins(logger, "")
        register_plugin(trt.get_plugin_registry(), lib)
        plugin_info = {"path": str(lib), "sha256": _sha256(lib), "built_against_trt": ".".join(map(str, built))}

    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConfigError(f"TensorRT could not parse {onnx_path.name}: {errors[:800]}")
    config = builder.create_builder_config()
    if workspace_gib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    cache_bytes = b""
    if timing_cache is not None and Path(timing_cache).is_file():
        cache_bytes = Path(timing_cache).read_bytes()
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    profile = builder.create_optimization_profile()
    shapes = spec.profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name not in shapes:
            raise ConfigError(f"{onnx_path.name}: input {name!r} is not in the {spec.role} spec; re-export the ONNX")
        lo, opt, hi = shapes[name]
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)

    log.info("building %s engine (TensorRT %s, %s sm_%s)", spec.role, trt.__version__, gpu[0], gpu[1])
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConfigError(f"TensorRT failed to build the {spec.role} engine (see the TensorRT log above)")
    engine_path.write_bytes(bytes(serialized))
    if timing_cache is not None:
        Path(timing_cache).write_bytes(bytes(config.get_timing_cache().serialize()))

    sidecar = {
        "role": spec.role,
        "tensorrt_version": str(trt.__version__),
        "gpu": gpu[0],
        "compute_capability": gpu[1],
        "precision": ("fp16" if fp16 else "fp32") + " (strongly typed from the ONNX types)",
        "plugin": plugin_info,
        "onnx": onnx_path.name,
        "onnx_sha256": _sha256(onnx_path),
        "checkpoint_sha256": checkpoint_sha256,
        "inputs": spec.input_names,
        "outputs": spec.output_names,
        "profiles": [{name: {"min": list(lo), "opt": list(opt), "max": list(hi)}
                      for name, (lo, opt, hi) in shapes.items()}],
        "spec": spec.to_dict(),
    }
    sidecar_path(engine_path).write_text(json.dumps(sidecar, indent=2) + "\n")
    return sidecar
