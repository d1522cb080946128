"""Locating, loading and version-checking the MSDA TensorRT plugin library.

The plugin ``ActionVOS_MSDeformAttn`` (contract: ``trt_plugins/msda/README.md``) lives in
``libactionvos_msda_plugin.so``, built by ``bash trt_plugins/build.sh``. This module finds, dlopens (ctypes) and
version-checks the library; it never imports torch or tensorrt. Registering the plugin with TensorRT is
:func:`actionvos.trt_api.register_plugin` (all TensorRT API use is in :mod:`actionvos.trt_api`)::

    from actionvos.trt_api import register_plugin
    info = register_plugin()   # finds, version-checks and registers the library; info.sha256 goes into sidecars

ONNX nodes that TensorRT's parser maps to the plugin: op type :data:`PLUGIN_NAME` in domain
:data:`ONNX_DOMAIN` with attribute ``plugin_version`` = :data:`PLUGIN_VERSION`.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from actionvos.errors import ActionVOSError

__all__ = [
    "PLUGIN_NAME",
    "PLUGIN_VERSION",
    "PLUGIN_NAMESPACE",
    "ONNX_DOMAIN",
    "LIBRARY_NAME",
    "ENV_VAR",
    "PluginLibraryError",
    "find_plugin_library",
    "load_plugin_library",
    "plugin_trt_version",
    "installed_trt_major",
    "check_plugin_trt_major",
]

PLUGIN_NAME = "ActionVOS_MSDeformAttn"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""
ONNX_DOMAIN = "trt.plugins"
LIBRARY_NAME = "libactionvos_msda_plugin.so"
ENV_VAR = "ACTIONVOS_MSDA_PLUGIN"

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # actionvos/
_REPO_BUILD_DIR = _PACKAGE_DIR.parent / "trt_plugins" / "msda" / "build"
_BUILD_HINT = "build it with `bash trt_plugins/build.sh` (needs nvcc) or point ACTIONVOS_MSDA_PLUGIN at the .so"

_loaded: dict[Path, ctypes.CDLL] = {}


class PluginLibraryError(ActionVOSError):
    """The MSDA plugin library is missing, cannot be loaded, or was built for another TensorRT major version."""


def find_plugin_library() -> Path | None:
    """Path of ``libactionvos_msda_plugin.so``, or ``None`` when there is none.

    Search order: ``$ACTIONVOS_MSDA_PLUGIN`` (a file, or a directory holding the library), the repository build
    directory ``trt_plugins/msda/build/``, then next to the package (``actionvos/`` and ``actionvos/export/``).

    Raises:
        PluginLibraryError: ``$ACTIONVOS_MSDA_PLUGIN`` is set but names no existing library.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if p.is_dir():
            p = p / LIBRARY_NAME
        if not p.is_file():
            raise PluginLibraryError(f"{ENV_VAR}={env} does not name an existing {LIBRARY_NAME}; {_BUILD_HINT}")
        return p.resolve()
    for d in (_REPO_BUILD_DIR, _PACKAGE_DIR, _PACKAGE_DIR / "export"):
        if (d / LIBRARY_NAME).is_file():
            return (d / LIBRARY_NAME).resolve()
    return None


def _resolve(path: str | os.PathLike | None) -> Path:
    if path is None:
        found = find_plugin_library()
        if found is None:
            raise PluginLibraryError(
                f"TensorRT plugin library {LIBRARY_NAME} not found (looked in ${ENV_VAR}, {_REPO_BUILD_DIR}, "
                f"{_PACKAGE_DIR}); {_BUILD_HINT}"
            )
        return found
    p = Path(path).expanduser()
    if not p.is_file():
        raise PluginLibraryError(f"TensorRT plugin library {p} does not exist; {_BUILD_HINT}")
    return p.resolve()


def load_plugin_library(path: str | os.PathLike | None = None) -> ctypes.CDLL:
    """dlopen the plugin library into this process (``RTLD_GLOBAL``) and return the handle.

    Loading alone does not register the plugin with TensorRT (the default build has no load-time registration);
    use :func:`actionvos.trt_api.register_plugin` for that. Loading is cached per resolved path.

    Args:
        path: the library; ``None`` searches with :func:`find_plugin_library`.

    Raises:
        PluginLibraryError: the library is missing (message says how to build it), cannot be loaded, or is not an
            ActionVOS MSDA plugin library.
    """
    p = _resolve(path)
    if p in _loaded:
        return _loaded[p]
    try:
        lib = ctypes.CDLL(str(p), mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise PluginLibraryError(f"cannot load TensorRT plugin library {p}: {e}; rebuild it with "
                                 f"`bash trt_plugins/build.sh`") from e
    if not hasattr(lib, "actionvos_msda_trt_version") or not hasattr(lib, "getCreators"):
        raise PluginLibraryError(f"{p} is not an ActionVOS MSDA plugin library (missing entry points); "
                                 f"{_BUILD_HINT}")
    lib.actionvos_msda_trt_version.restype = ctypes.c_int
    lib.actionvos_msda_trt_version.argtypes = []
    _loaded[p] = lib
    return lib


def plugin_trt_version(lib_path: str | os.PathLike | None = None) -> tuple[int, int, int]:
    """TensorRT version ``(major, minor, patch)`` of the headers the plugin library was built with.

    Raises:
        PluginLibraryError: as :func:`load_plugin_library`.
    """
    v = int(load_plugin_library(lib_path).actionvos_msda_trt_version())
    return v // 10000, v // 100 % 100, v % 100


def installed_trt_major() -> int:
    """Major version of the installed ``tensorrt`` Python package (imports it through :mod:`actionvos.trt_api`).

    Raises:
        PluginLibraryError: tensorrt is not installed.
    """
    from actionvos.errors import ConfigError
    from actionvos.trt_api import trt_major

    try:
        return trt_major()
    except ConfigError as e:
        raise PluginLibraryError(str(e)) from None


def check_plugin_trt_major(
    lib_path: str | os.PathLike | None = None, trt_major: int | None = None
) -> tuple[int, int, int]:
    """Check that the plugin library was built for TensorRT major version ``trt_major``.

    TensorRT's plugin ABI differs between majors (e.g. ``ILoggerFinder`` became an ``IVersionedInterface`` in
    11.x, shifting its vtable), so a library built for 10.x must not be loaded by 11.x or vice versa.

    Args:
        lib_path: the library; ``None`` searches with :func:`find_plugin_library`.
        trt_major: the TensorRT major in use; ``None`` reads it from the installed ``tensorrt`` package.

    Returns:
        The library's ``(major, minor, patch)``.

    Raises:
        PluginLibraryError: missing/unloadable library, tensorrt not installed (when ``trt_major`` is None),
            or a major-version mismatch (message says to rebuild against the installed TensorRT's headers).
    """
    built = plugin_trt_version(lib_path)
    if trt_major is None:
        trt_major = installed_trt_major()
    if built[0] != int(trt_major):
        raise PluginLibraryError(
            f"TensorRT plugin library {_resolve(lib_path)} was built against TensorRT "
            f"{built[0]}.{built[1]}.{built[2]} headers but TensorRT {trt_major}.x is in use; rebuild it against the "
            f"installed TensorRT: TENSORRT_ROOT=/path/to/TensorRT bash trt_plugins/build.sh "
            f"(or TENSORRT_INCLUDE_DIR=/dir/with/NvInferRuntime.h)"
        )
    return built
