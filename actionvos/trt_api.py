"""All TensorRT API use of ActionVOS: one logger adapter, plugin registration, engine build, engine load and run.

Every ``import tensorrt`` of the package is in this module, and only inside functions: ``import actionvos`` and every
``--help`` work without TensorRT, and a missing package gives one :class:`~actionvos.errors.ConfigError` saying what
to install (:func:`import_tensorrt`). The exporter (:mod:`actionvos.export.exporter`, ``--format engine``), the INT8
engine build (:mod:`actionvos.calibration.int8`) and the TensorRT backend
(:mod:`actionvos.runtime.backends.tensorrt`) call it. Locating and version-checking the plugin ``.so`` (ctypes, no
TensorRT) stays in :mod:`actionvos.export.trt_plugin`; the CUDA runtime helpers are in
:mod:`actionvos.runtime.cuda_host`.

API (TensorRT 10+, name-based tensor API only: ``set_input_shape`` / ``set_tensor_address`` /
``execute_async_v3``):

* :func:`import_tensorrt`, :func:`tensorrt_available`, :func:`gpu_compute_capability` — what is installed here;
* :func:`get_logger` — the process-wide ``trt.ILogger`` forwarding to :mod:`logging` (one object for the whole
  process: TensorRT keeps the raw pointer handed to ``init_libnvinfer_plugins``, builders and runtimes, so the
  adapter must never be a function-local that Python may collect);
* :func:`register_plugin` — the MSDA plugin (``IPluginCreatorV3One`` from ``getCreators``), idempotent, without
  ``get_creator`` probes that log a TensorRT ERROR for a creator not registered yet;
* :func:`build_engine` — ONNX → serialized engine + sidecar JSON (strongly typed network, one optimisation profile
  from the export spec, timing cache checked and refreshed when stale);
* :func:`read_sidecar`, :class:`RuntimeFacts`, :func:`runtime_facts`, :func:`check_sidecars` — the refusal of
  engines built for another TensorRT, GPU, plugin library or checkpoint (a pure comparison, tested on the CPU);
* :class:`Engine` — a deserialised engine with one execution context, checked ``set_input_shape``
  (:func:`shape_error` names the profile limits), tensor names, dtypes and max shapes.

Sidecar ``{engine}.json`` (written by :func:`build_engine`, read by the backend), schema version
:data:`SIDECAR_VERSION`:

``sidecar_version`` (int), ``role`` (``text_encoder``/``segmenter``), ``tensorrt_version`` (the building
``tensorrt.__version__``; engines only run on that exact version), ``gpu`` (name), ``compute_capability``
(``"major.minor"``; engines only run on that architecture), ``precision``, ``plugin`` (``{}`` or ``{path, sha256,
built_against_trt}``: the SHA-256 of the plugin ``.so`` whose kernels the engine embeds the creator of),
``onnx``/``onnx_sha256``, ``checkpoint_sha256`` (both engines of a folder must agree), ``inputs``, ``outputs``,
``profiles`` (``[{name: {min, opt, max}}]``), ``spec`` (:meth:`ExportSpec.to_dict`) and, when the caller passes one,
``card`` (the artifact's model card as a dict).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from actionvos.errors import ConfigError, InputError

__all__ = [
    "TRT_INSTALL_HINT", "REBUILD_HINT", "SIDECAR_VERSION", "ENGINE_ROLES",
    "import_tensorrt", "tensorrt_available", "trt_major", "gpu_compute_capability", "get_logger", "init_plugins",
    "PluginInfo", "register_plugin", "creator_present", "sha256_file",
    "sidecar_path", "read_sidecar", "build_engine", "attach_timing_cache", "save_timing_cache",
    "RuntimeFacts", "runtime_facts", "check_sidecars", "shape_error", "Engine", "create_runtime",
]

log = logging.getLogger(__name__)

#: What to install when ``tensorrt`` is missing.
TRT_INSTALL_HINT = "pip install tensorrt (TensorRT 10 or newer) on a machine with an NVIDIA GPU"
#: How to rebuild engines (appended to every refusal).
REBUILD_HINT = ("rebuild them on this machine with `actionvos-export CHECKPOINT --output DIR --format engine` "
                "(add --msda plugin / --plugin-library as before)")
#: Version of the sidecar schema written by :func:`build_engine`.
SIDECAR_VERSION = 1
#: The engines of an engine folder, in load order.
ENGINE_ROLES = ("text_encoder", "segmenter")

# numpy dtype of each TensorRT DataType name
_NP_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_,
              "UINT8": np.uint8, "INT8": np.int8}


# ---------------------------------------------------------------------- what is installed
def import_tensorrt():
    """The ``tensorrt`` module.

    Raises:
        ConfigError: not installed, or its libraries fail to load (message says what to install).
    """
    try:
        import tensorrt as trt
    except Exception as err:  # ImportError, or a broken install raising OSError on its libraries
        raise ConfigError(f"TensorRT is needed here but the `tensorrt` package is not installed or fails to load "
                          f"({type(err).__name__}: {err}); {TRT_INSTALL_HINT}") from None
    return trt


def tensorrt_available() -> tuple[bool, str]:
    """``(True, version)`` when ``tensorrt`` imports, else ``(False, reason)``."""
    try:
        return True, str(import_tensorrt().__version__)
    except ConfigError as err:
        return False, str(err)


def trt_major() -> int:
    """Major version of the installed TensorRT. Raises ConfigError when it is not installed."""
    return int(str(import_tensorrt().__version__).split(".")[0])


def gpu_compute_capability() -> tuple[str, str] | None:
    """``(name, "major.minor")`` of CUDA device 0, or None when no GPU is visible.

    Asks cuda-python first (the TensorRT backend's own dependency, so ``--engine`` runs stay torch-free), then torch.
    """
    try:
        from actionvos.runtime.cuda_host import import_cudart

        cudart = import_cudart()
        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) == 0:
            name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
            return name.rstrip("\x00"), f"{props.major}.{props.minor}"
    except Exception:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return torch.cuda.get_device_name(0), f"{major}.{minor}"
    except Exception:
        pass
    return None


def sha256_file(path: str | os.PathLike) -> str:
    """Full hex SHA-256 of a file (64 digits), read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------- logger
_LOGGER = None
_PLUGINS_INITIALISED = False


def _python_level(severity_name: str) -> int:
    """TensorRT severity name → :mod:`logging` level (INFO and VERBOSE become DEBUG: TensorRT is chatty)."""
    return {"INTERNAL_ERROR": logging.ERROR, "ERROR": logging.ERROR, "WARNING": logging.WARNING}.get(severity_name,
                                                                                                    logging.DEBUG)


def get_logger():
    """The one ``trt.ILogger`` of the process; forwards to the ``actionvos.trt_api`` logger.

    Kept in a module global for the life of the process (TensorRT keeps raw pointers to it).

    Raises:
        ConfigError: tensorrt missing.
    """
    global _LOGGER
    if _LOGGER is None:
        trt = import_tensorrt()

        class _Adapter(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)

            def log(self, severity, msg):
                log.log(_python_level(getattr(severity, "name", str(severity))), "TensorRT: %s", msg)

        _LOGGER = _Adapter()
    return _LOGGER


def init_plugins() -> None:
    """``init_libnvinfer_plugins`` once per process, with :func:`get_logger` (TensorRT's own plugins)."""
    global _PLUGINS_INITIALISED
    if not _PLUGINS_INITIALISED:
        import_tensorrt().init_libnvinfer_plugins(get_logger(), "")
        _PLUGINS_INITIALISED = True


# ---------------------------------------------------------------------- plugin
@dataclass(frozen=True)
class PluginInfo:
    """The MSDA plugin library registered in this process.

    Attributes:
        path: resolved ``.so`` path. sha256: its full SHA-256 (hex). built_against: TensorRT ``(major, minor, patch)``
        of the headers it was built with.
    """

    path: Path
    sha256: str
    built_against: tuple[int, int, int]

    def to_sidecar(self) -> dict[str, Any]:
        """The ``plugin`` entry of an engine sidecar."""
        return {"path": str(self.path), "sha256": self.sha256, "built_against_trt": ".".join(map(str, self.built_against))}


_REGISTERED: PluginInfo | None = None


def _creator_ids(creators) -> set[tuple[str, str, str]] | None:
    """``{(name, version, namespace)}`` of registry creator objects; None when they cannot be introspected."""
    ids = set()
    for c in creators:
        name = getattr(c, "name", None)
        if name is None:
            return None
        ids.add((str(name), str(getattr(c, "plugin_version", "")), str(getattr(c, "plugin_namespace", "") or "")))
    return ids


def creator_present(registry, name: str, version: str, namespace: str = "") -> bool | None:
    """Whether ``registry`` lists the creator, from its creator list (``all_creators`` on TensorRT 10+, else
    ``plugin_creator_list``) — never ``get_creator``, which logs a TensorRT ERROR for an unknown creator.

    Returns:
        True / False, or None when the list cannot be read or its entries carry no names.
    """
    for attr in ("all_creators", "plugin_creator_list"):
        try:
            creators = getattr(registry, attr)
        except Exception:
            continue
        if creators is None:
            continue
        ids = _creator_ids(creators)
        if ids is not None:
            return (name, version, namespace) in ids
    return None


def register_plugin(lib_path: str | os.PathLike | None = None) -> PluginInfo:
    """Make ``ActionVOS_MSDeformAttn`` available to TensorRT (ONNX parsing, engine build, deserialisation).

    Resolves the library (:func:`actionvos.export.trt_plugin.find_plugin_library` when ``lib_path`` is None), checks
    that it was built for the running TensorRT major, initialises TensorRT's own plugins with the process logger,
    then ``registry.load_library`` (TensorRT calls the library's ``getCreators``). Idempotent per process; a second,
    different library is refused (TensorRT cannot hold two creators of one name and version).

    Args:
        lib_path: the ``.so``; None searches (``$ACTIONVOS_MSDA_PLUGIN``, ``trt_plugins/msda/build``, the package).

    Returns:
        :class:`PluginInfo` of the registered library (its SHA-256 goes into sidecars and is checked at run time).

    Raises:
        ConfigError: tensorrt missing.
        PluginLibraryError: library missing / unloadable / built for another TensorRT major, another library already
            registered, or TensorRT refused it (message says how to build or point at it).
    """
    global _REGISTERED
    from actionvos.export.trt_plugin import (PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION, PluginLibraryError,
                                             _resolve, check_plugin_trt_major)

    trt = import_tensorrt()
    if _REGISTERED is not None and lib_path is None:  # "whatever is found": the one already registered is what runs
        return _REGISTERED
    path = _resolve(lib_path)
    if _REGISTERED is not None:
        if _REGISTERED.path == path:
            return _REGISTERED
        raise PluginLibraryError(f"MSDA plugin library {_REGISTERED.path} is already registered in this process, so "
                                 f"{path} cannot be loaded too; use one --plugin-library per process")
    built = check_plugin_trt_major(path, trt_major())
    init_plugins()
    registry = trt.get_plugin_registry()
    if creator_present(registry, PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE):
        log.info("MSDA plugin creator already registered in this process; assuming it comes from %s", path)
    else:
        handle = registry.load_library(str(path))
        if handle is None or creator_present(registry, PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE) is False:
            raise PluginLibraryError(f"TensorRT refused to load plugin library {path} (see the TensorRT log); rebuild "
                                     "it with `bash trt_plugins/build.sh` against the installed TensorRT")
    _REGISTERED = PluginInfo(path, sha256_file(path), built)
    log.info("MSDA plugin %s registered (sha256 %s, built against TensorRT %s)", path, _REGISTERED.sha256[:12],
             ".".join(map(str, built)))
    return _REGISTERED


# ---------------------------------------------------------------------- engine build
def sidecar_path(engine_path: str | os.PathLike) -> Path:
    """``x.engine`` → ``x.engine.json``."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def read_sidecar(engine_path: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar of ``engine_path``, or None when it does not exist.

    Raises:
        InputError: the sidecar is not valid JSON.
    """
    p = sidecar_path(engine_path)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{p} is not a readable engine sidecar ({err}); {REBUILD_HINT}") from None


def attach_timing_cache(config, cache_file: str | os.PathLike | None) -> bool:
    """Give ``config`` (a ``trt.IBuilderConfig``) a timing cache, read from ``cache_file`` when it exists.

    ``set_timing_cache`` returns False for a cache written by another GPU or TensorRT version (it is never
    ignored here): that is logged and a fresh, empty cache is used instead, which :func:`save_timing_cache`
    writes over the stale file after the build.

    Returns:
        Whether a timing cache is attached.
    """
    data = b""
    if cache_file is not None and Path(cache_file).is_file():
        data = Path(cache_file).read_bytes()
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        if data:
            log.info("timing cache %s reused (%d bytes)", cache_file, len(data))
        return True
    if data:
        log.warning("timing cache %s was written by another GPU or TensorRT version and was refused; starting a "
                    "fresh one (it is replaced after this build)", cache_file)
        cache = config.create_timing_cache(b"")
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return True
    log.warning("TensorRT accepted no timing cache; building without one")
    return False


def save_timing_cache(config, cache_file: str | os.PathLike | None) -> bool:
    """Write ``config``'s timing cache to ``cache_file`` (atomically); returns whether something was written.

    Never calls ``serialize`` on a missing cache (``get_timing_cache()`` returns None when none was attached).
    """
    if cache_file is None:
        return False
    cache = config.get_timing_cache()
    if cache is None:
        log.warning("no timing cache to save to %s", cache_file)
        return False
    data = cache.serialize()
    if data is None:
        return False
    from actionvos.io_utils import atomic_write_bytes

    atomic_write_bytes(cache_file, bytes(data))
    return True


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, spec, *, fp16: bool = False,
                 plugin_library: str | os.PathLike | None = None, timing_cache: str | os.PathLike | None = None,
                 checkpoint_sha256: str = "", use_plugin: bool = True, workspace_gib: float | None = None,
                 strongly_typed: bool = True, card: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build a serialized TensorRT engine from an exported graph; write ``engine_path`` and its sidecar JSON.

    Conventions: strongly typed network (precisions come from the graph's types: an FP16 / Q-DQ graph builds an
    FP16 / INT8 engine; ``strongly_typed`` is accepted for callers that pass it and must be True); the MSDA plugin is
    registered (:func:`register_plugin`) before parsing when the graph has MSDA nodes; one optimisation profile from
    :meth:`ExportSpec.profile` (min/opt/max of P and L; T, H, W static).

    Args:
        onnx_path: ``text_encoder.onnx`` or ``segmenter.onnx`` (:func:`~actionvos.export.exporter.export_model`).
        engine_path: where to write the engine (the sidecar goes to ``engine_path + ".json"``).
        spec: the graph's :class:`~actionvos.export.spec.ExportSpec` (profiles and I/O names).
        fp16: the graph was converted to FP16 (recorded in the sidecar).
        plugin_library: MSDA plugin ``.so`` (default: searched).
        timing_cache: timing-cache file, read if it exists (a stale one is replaced, see :func:`attach_timing_cache`)
            and rewritten after the build.
        checkpoint_sha256: recorded in the sidecar (both engines of a folder must carry the same).
        use_plugin: register the plugin library (the graph has MSDA custom-op nodes).
        workspace_gib: optional workspace pool limit in GiB.
        card: the model card of the artifact (``ModelCard.to_dict()``), stored as the sidecar's ``card``.
    Returns:
        The sidecar dict (schema in the module docstring).
    Raises:
        ConfigError: tensorrt not importable, no GPU, ``strongly_typed=False``, or the ONNX parser / builder failed
            (the message carries the parser errors).
        PluginLibraryError: plugin library missing or built for another TensorRT major.
    """
    trt = import_tensorrt()
    if not strongly_typed:
        raise ConfigError("build_engine builds strongly typed networks only (TensorRT 10.12+ has no precision flags); "
                          "convert the ONNX graph to the wanted precision first")
    gpu = gpu_compute_capability()
    if gpu is None:
        raise ConfigError("--format engine needs an NVIDIA GPU visible to CUDA (none found); build engines on the "
                          "target machine from the exported ONNX")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    logger = get_logger()
    plugin: dict[str, Any] = {}
    if use_plugin and spec.has_msda:
        plugin = register_plugin(plugin_library).to_sidecar()
    else:
        init_plugins()

    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConfigError(f"TensorRT could not parse {onnx_path.name}: {errors[:800]}")
    config = builder.create_builder_config()
    if workspace_gib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    attach_timing_cache(config, timing_cache)

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
    from actionvos.io_utils import atomic_write_bytes, atomic_write_json

    atomic_write_bytes(engine_path, bytes(serialized))
    save_timing_cache(config, timing_cache)

    sidecar = {
        "sidecar_version": SIDECAR_VERSION,
        "role": spec.role,
        "tensorrt_version": str(trt.__version__),
        "gpu": gpu[0],
        "compute_capability": gpu[1],
        "precision": ("fp16" if fp16 else "fp32") + " (strongly typed from the ONNX types)",
        "plugin": plugin,
        "onnx": onnx_path.name,
        "onnx_sha256": sha256_file(onnx_path),
        "checkpoint_sha256": checkpoint_sha256,
        "inputs": spec.input_names,
        "outputs": spec.output_names,
        "profiles": [{name: {"min": list(lo), "opt": list(opt), "max": list(hi)}
                      for name, (lo, opt, hi) in shapes.items()}],
        "spec": spec.to_dict(),
    }
    if card is not None:
        sidecar["card"] = dict(card)
    atomic_write_json(sidecar_path(engine_path), sidecar)
    return sidecar


# ---------------------------------------------------------------------- sidecar check
@dataclass(frozen=True)
class RuntimeFacts:
    """What an engine must match on this machine.

    Attributes:
        tensorrt_version: the running ``tensorrt.__version__``.
        compute_capability: ``"major.minor"`` of the GPU the engines will run on (None: unknown, not checked).
        gpu: the GPU's name (for messages).
        plugin_sha256: SHA-256 of the plugin library registered in this process, or None when none is.
        plugin_path: its path (for messages).
    """

    tensorrt_version: str
    compute_capability: str | None
    gpu: str = ""
    plugin_sha256: str | None = None
    plugin_path: str = ""


def runtime_facts(plugin: PluginInfo | None = None) -> RuntimeFacts:
    """The :class:`RuntimeFacts` of this process (imports tensorrt; queries device 0)."""
    trt = import_tensorrt()
    gpu = gpu_compute_capability()
    return RuntimeFacts(str(trt.__version__), gpu[1] if gpu else None, gpu[0] if gpu else "",
                        plugin.sha256 if plugin else None, str(plugin.path) if plugin else "")


def check_sidecars(sidecars: Mapping[str, Mapping[str, Any] | None], facts: RuntimeFacts) -> str | None:
    """Compare the engines' sidecars with this machine; a pure function (no TensorRT, no GPU).

    Checked, in order: every engine of :data:`ENGINE_ROLES` has a sidecar of a known schema; each was built by the
    running TensorRT version (engines are not portable across versions) for this GPU's compute capability; the
    segmenter's plugin library SHA-256 equals the registered library's; text encoder and segmenter carry the same
    checkpoint SHA-256.

    Args:
        sidecars: role → sidecar dict (None when the file is missing).
        facts: :func:`runtime_facts`.
    Returns:
        None when the engines can run here, else one line saying what differs and how to rebuild.
    """
    for role in ENGINE_ROLES:
        sc = sidecars.get(role)
        if not sc:
            return (f"{role}.engine has no sidecar {role}.engine.json, so its TensorRT version, GPU and checkpoint "
                    f"cannot be checked; {REBUILD_HINT}")
        version = int(sc.get("sidecar_version", 1))
        if version > SIDECAR_VERSION:
            return (f"{role}.engine.json has sidecar schema {version}, newer than this actionvos reads "
                    f"({SIDECAR_VERSION}); upgrade actionvos or {REBUILD_HINT}")
        built = str(sc.get("tensorrt_version", "?"))
        if built != facts.tensorrt_version:
            return (f"{role}.engine was built with TensorRT {built} but TensorRT {facts.tensorrt_version} is running; "
                    f"{REBUILD_HINT}")
        cc = str(sc.get("compute_capability", "?"))
        if facts.compute_capability is not None and cc != facts.compute_capability:
            return (f"{role}.engine was built for compute capability {cc} ({sc.get('gpu', 'unknown GPU')}) but this "
                    f"GPU ({facts.gpu or 'device 0'}) is {facts.compute_capability}; {REBUILD_HINT}")
    want = (sidecars["segmenter"].get("plugin") or {}).get("sha256")
    if want:
        if facts.plugin_sha256 is None:
            return (f"segmenter.engine needs the MSDA plugin library (sha256 {want[:12]}…) but none is registered; "
                    "pass --plugin-library with the library the engines were built with, or " + REBUILD_HINT)
        if facts.plugin_sha256 != want:
            return (f"segmenter.engine was built with MSDA plugin library sha256 {want[:12]}… but "
                    f"{facts.plugin_path or 'the registered library'} has sha256 {facts.plugin_sha256[:12]}…; pass "
                    f"--plugin-library with the library the engines were built with, or {REBUILD_HINT}")
    a = str(sidecars["text_encoder"].get("checkpoint_sha256", ""))
    b = str(sidecars["segmenter"].get("checkpoint_sha256", ""))
    if a != b:
        return (f"text_encoder.engine (checkpoint {a or 'unknown'}) and segmenter.engine (checkpoint {b or 'unknown'}) "
                f"come from different checkpoints; export both from one checkpoint: {REBUILD_HINT}")
    return None


# ---------------------------------------------------------------------- engine load and run
def shape_error(name: str, shape: Sequence[int], limits: tuple[Sequence[int], Sequence[int], Sequence[int]]) -> str | None:
    """None when ``shape`` lies within a profile's ``(min, opt, max)`` for input ``name``, else one line naming the
    limits (pure; used before and after ``set_input_shape``)."""
    lo, _, hi = (tuple(int(d) for d in s) for s in limits)
    shape = tuple(int(d) for d in shape)
    if len(shape) != len(lo) or any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
        return (f"input {name!r} of shape {list(shape)} is outside the engine's profile (min {list(lo)}, max "
                f"{list(hi)}); re-export with larger --max-prompts/--max-tokens or send fewer/shorter prompts")
    return None


class Engine:
    """One deserialised engine and one execution context, addressed by tensor name.

    Args:
        runtime: a ``trt.Runtime`` created with :func:`get_logger` (must outlive the engine).
        path: the ``.engine`` file.
    Attributes:
        names / inputs / outputs: tensor names in engine order. dtypes: name → numpy dtype.
        limits: input name → ``(min, opt, max)`` of profile 0 (static inputs: the shape three times).
        max_shapes: every tensor's shape at the profile maximum (outputs inferred by TensorRT).
    Raises:
        ConfigError: the engine cannot be deserialised (another TensorRT version or GPU, or a missing plugin).
    """

    def __init__(self, runtime, path: str | os.PathLike):
        trt = import_tensorrt()
        self.path = Path(path)
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ConfigError(f"TensorRT cannot deserialise {self.path} (see the TensorRT log); {REBUILD_HINT}")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise ConfigError(f"TensorRT could not create an execution context for {self.path} (out of GPU memory?)")
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in self.names if n not in self.inputs]
        self.dtypes = {n: np.dtype(_NP_DTYPES[self.engine.get_tensor_dtype(n).name]) for n in self.names}
        self.limits: dict[str, tuple[tuple[int, ...], ...]] = {}
        for n in self.inputs:
            shape = tuple(self.engine.get_tensor_shape(n))
            if any(d < 0 for d in shape):
                self.limits[n] = tuple(tuple(s) for s in self.engine.get_tensor_profile_shape(n, 0))
            else:
                self.limits[n] = (shape, shape, shape)
        self.max_shapes: dict[str, tuple[int, ...]] = {n: self.limits[n][2] for n in self.inputs}
        for n in self.inputs:  # outputs' max shapes follow from the inputs' max shapes
            self.set_input_shape(n, self.max_shapes[n])
        for n in self.outputs:
            self.max_shapes[n] = tuple(self.context.get_tensor_shape(n))
        self.current: dict[str, tuple[int, ...]] = dict((n, self.max_shapes[n]) for n in self.inputs)

    def nbytes(self, name: str) -> int:
        """Bytes of tensor ``name`` at its maximum shape."""
        return int(np.prod(self.max_shapes[name], dtype=np.int64)) * self.dtypes[name].itemsize

    def set_input_shape(self, name: str, shape: Sequence[int]) -> None:
        """Checked ``context.set_input_shape``.

        Raises:
            InputError: the shape is outside the profile, or TensorRT rejected it (message names the limits).
        """
        shape = tuple(int(d) for d in shape)
        why = shape_error(name, shape, self.limits[name])
        if why is None and not self.context.set_input_shape(name, shape):
            lo, _, hi = self.limits[name]
            why = (f"TensorRT rejected shape {list(shape)} for input {name!r} of {self.path.name} (profile min "
                   f"{list(lo)}, max {list(hi)})")
        if why is not None:
            raise InputError(f"{self.path.name}: {why}")
        if hasattr(self, "current"):
            self.current[name] = shape

    def set_address(self, name: str, ptr: int) -> None:
        """``context.set_tensor_address`` (RuntimeError when TensorRT refuses it)."""
        if not self.context.set_tensor_address(name, int(ptr)):
            raise RuntimeError(f"TensorRT refused the address of tensor {name!r} of {self.path.name}")

    def output_shape(self, name: str) -> tuple[int, ...]:
        """The output's shape for the current input shapes."""
        return tuple(self.context.get_tensor_shape(name))

    def execute(self, stream_handle: int) -> None:
        """``execute_async_v3`` on the stream (RuntimeError when the enqueue fails)."""
        if not self.context.execute_async_v3(int(stream_handle)):
            raise RuntimeError(f"TensorRT failed to enqueue {self.path.name} (see the TensorRT log)")


def create_runtime():
    """A ``trt.Runtime`` with the process logger (TensorRT's own plugins initialised)."""
    trt = import_tensorrt()
    init_plugins()
    return trt.Runtime(get_logger())
