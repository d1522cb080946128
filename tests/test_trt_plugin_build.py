"""Build the MSDA TensorRT plugin library and check it without TensorRT or a GPU.

* ``bash trt_plugins/build.sh`` (skipped when nvcc is missing) builds ``libactionvos_msda_plugin.so`` against the
  TensorRT headers it finds (kernel-lens 10.14 headers when none are installed);
* the library exports the TensorRT 10 plugin-library entry points and needs neither libnvinfer nor a shared
  libcudart (it dlopens on a machine with no TensorRT and no GPU);
* ``trt_plugins/msda/tests/plugin_host_check.cpp`` drives the plugin through TensorRT's interfaces (creator,
  capabilities, output types/shapes, format combinations, shape validation, lifetime);
* the Python loader's error messages (missing library, wrong TensorRT major);
* the architectures in the library (``cuobjdump --list-elf`` / ``--list-ptx``, cuobjdump from the PyPI package
  ``nvidia-cuda-cuobjdump`` of the ``dev`` extra): SASS for every architecture nvcc supports from sm_75 up and PTX
  for the newest, or exactly ``CUDA_ARCHS`` when that narrowed the build.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from actionvos.export import trt_plugin
from actionvos.export.trt_plugin import PluginLibraryError

REPO = Path(__file__).resolve().parents[1]
BUILD_SH = REPO / "trt_plugins" / "build.sh"
EXPORTS = ("getCreators", "setLoggerFinder", "actionvos_msda_trt_version")


def _nvcc() -> str | None:
    for cand in (os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and Path(cand).is_file():
            return cand
    return None


@pytest.fixture(scope="module")
def plugin_lib() -> Path:
    """Builds (incrementally) and returns the plugin library."""
    if _nvcc() is None:
        pytest.skip("nvcc not found: cannot build the TensorRT plugin")
    res = subprocess.run(["bash", str(BUILD_SH)], capture_output=True, text=True, timeout=1800, cwd=REPO)
    if res.returncode == 77:
        pytest.skip(f"build prerequisite missing: {res.stderr.strip().splitlines()[-1]}")
    assert res.returncode == 0, f"build.sh failed ({res.returncode}):\n{res.stdout}\n{res.stderr[-5000:]}"
    lib = Path(res.stdout.strip().splitlines()[-1])
    assert lib.is_file() and lib.name == trt_plugin.LIBRARY_NAME
    return lib


@pytest.fixture(scope="module")
def build_info(plugin_lib) -> dict[str, str]:
    text = (plugin_lib.parent / "build_info.txt").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _expected_version(build_info) -> int:
    major, minor, patch = (int(x) for x in build_info["tensorrt_version"].split("."))
    return major * 10000 + minor * 100 + patch


def test_exports_entry_points(plugin_lib):
    if shutil.which("nm") is None:
        pytest.skip("nm (binutils) not found")
    out = subprocess.run(["nm", "-D", "--defined-only", str(plugin_lib)], capture_output=True, text=True,
                         check=True).stdout
    defined = {line.split()[-1] for line in out.splitlines() if len(line.split()) >= 3 and line.split()[1] == "T"}
    for sym in EXPORTS:
        assert sym in defined, f"{sym} not exported; exported: {sorted(defined)}"
    # Hidden visibility: no C++ plugin class or static-cudart symbols leak out.
    assert not any("MsdaPlugin" in s or s.startswith("cuda") for s in defined), sorted(defined)


def test_needs_no_tensorrt_or_shared_cudart(plugin_lib, build_info):
    if shutil.which("readelf") is None:
        pytest.skip("readelf (binutils) not found")
    dyn = subprocess.run(["readelf", "-d", str(plugin_lib)], capture_output=True, text=True, check=True).stdout
    needed = [line.split("[")[-1].rstrip("]") for line in dyn.splitlines() if "(NEEDED)" in line]
    if build_info.get("cudart", "static") == "shared":
        major = build_info["cuda_compiler_version"].split(".")[0]
        assert f"libcudart.so.{major}" in needed, f"CUDART=shared must need libcudart.so.{major}: {needed}"
    else:
        assert not any(n.startswith("libcudart") for n in needed), f"cudart must be static: {needed}"
    if build_info.get("static_register", "OFF").upper() in ("OFF", "FALSE", "0", ""):
        assert not any(n.startswith("libnvinfer") for n in needed), needed


def test_ctypes_load_and_version(plugin_lib, build_info):
    lib = trt_plugin.load_plugin_library(plugin_lib)
    assert lib.actionvos_msda_trt_version() == _expected_version(build_info)
    assert trt_plugin.plugin_trt_version(plugin_lib) == tuple(int(x) for x in build_info["tensorrt_version"].split("."))
    assert trt_plugin.plugin_trt_version(plugin_lib)[0] >= 10


def test_plugin_interfaces_on_host(plugin_lib, build_info, tmp_path):
    """Compile and run the C++ check that plays TensorRT's builder/runtime against the library."""
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        pytest.skip("no host C++ compiler")
    cuda_inc = build_info["cuda_include_dir"].split(";")[0]
    exe = tmp_path / "plugin_host_check"
    cmd = [cxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-isystem", build_info["tensorrt_include_dir"],
           "-isystem", cuda_inc, str(REPO / "trt_plugins" / "msda" / "tests" / "plugin_host_check.cpp"),
           "-o", str(exe), "-ldl"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"compile failed:\n{' '.join(cmd)}\n{res.stderr[-5000:]}"
    res = subprocess.run([str(exe), str(plugin_lib), str(_expected_version(build_info))], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, f"plugin host check failed:\n{res.stdout}\n{res.stderr}"
    assert "0 failure(s)" in res.stdout


def test_wrong_trt_major_is_a_clear_error(plugin_lib):
    built = trt_plugin.plugin_trt_version(plugin_lib)
    assert trt_plugin.check_plugin_trt_major(plugin_lib, built[0]) == built
    with pytest.raises(PluginLibraryError, match=r"built against TensorRT \d+\.\d+\.\d+ headers but TensorRT "
                                                 rf"{built[0] + 1}\.x is in use.*build\.sh"):
        trt_plugin.check_plugin_trt_major(plugin_lib, built[0] + 1)


def test_check_without_tensorrt_installed(plugin_lib):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(PluginLibraryError, match=r"(?i)tensorrt.*(not installed|import tensorrt. failed)"):
            trt_plugin.check_plugin_trt_major(plugin_lib)
    else:
        pytest.skip("tensorrt is installed")


def test_env_var_selects_library(plugin_lib, monkeypatch):
    monkeypatch.setenv(trt_plugin.ENV_VAR, str(plugin_lib.parent))
    assert trt_plugin.find_plugin_library() == plugin_lib.resolve()
    monkeypatch.setenv(trt_plugin.ENV_VAR, str(plugin_lib))
    assert trt_plugin.find_plugin_library() == plugin_lib.resolve()


# ---- loader errors that need no build -------------------------------------------------------------------


def test_missing_library_message_says_how_to_build(monkeypatch, tmp_path):
    monkeypatch.delenv(trt_plugin.ENV_VAR, raising=False)
    monkeypatch.setattr(trt_plugin, "_REPO_BUILD_DIR", tmp_path / "build")
    monkeypatch.setattr(trt_plugin, "_PACKAGE_DIR", tmp_path / "pkg")
    assert trt_plugin.find_plugin_library() is None
    with pytest.raises(PluginLibraryError, match=r"not found.*bash trt_plugins/build\.sh"):
        trt_plugin.load_plugin_library()
    with pytest.raises(PluginLibraryError, match=r"does not exist.*bash trt_plugins/build\.sh"):
        trt_plugin.load_plugin_library(tmp_path / "nope.so")


def test_bad_env_var_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv(trt_plugin.ENV_VAR, str(tmp_path / "missing.so"))
    with pytest.raises(PluginLibraryError, match=r"ACTIONVOS_MSDA_PLUGIN=.*build\.sh"):
        trt_plugin.find_plugin_library()


def test_unloadable_file_is_an_error(tmp_path):
    bogus = tmp_path / trt_plugin.LIBRARY_NAME
    bogus.write_bytes(b"not an ELF file")
    with pytest.raises(PluginLibraryError, match=r"cannot load.*build\.sh"):
        trt_plugin.load_plugin_library(bogus)


def test_error_is_an_actionvos_error():
    from actionvos.errors import ActionVOSError

    assert issubclass(PluginLibraryError, ActionVOSError)


def test_module_imports_neither_torch_nor_tensorrt():
    code = ("import sys, actionvos.export.trt_plugin as t; "
            "assert t.PLUGIN_NAME == 'ActionVOS_MSDeformAttn' and t.ONNX_DOMAIN == 'trt.plugins'; "
            "bad = [m for m in ('torch', 'tensorrt') if m in sys.modules]; assert not bad, bad")
    res = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr


# ---- architectures in the library ----------------------------------------------------------------------


def _cuobjdump() -> str | None:
    """cuobjdump on PATH, in the CUDA toolkit, or from the PyPI wheel nvidia-cuda-cuobjdump (nvidia/*/bin)."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    nvcc = _nvcc()
    if nvcc and (Path(nvcc).parent / "cuobjdump").is_file():
        return str(Path(nvcc).parent / "cuobjdump")
    try:
        import nvidia  # namespace package of NVIDIA's wheels
    except ImportError:
        return None
    for base in getattr(nvidia, "__path__", []):
        for cand in sorted(Path(base).glob("*/bin/cuobjdump")):
            if os.access(cand, os.X_OK):
                return str(cand)
    return None


def _nvcc_archs(nvcc: str) -> list[int]:
    out = subprocess.run([nvcc, "--list-gpu-code"], capture_output=True, text=True, check=True).stdout
    return sorted({int(a) for a in re.findall(r"sm_(\d+)\b", out) if int(a) >= 75})


def _expected_archs(build_info) -> tuple[set[int], set[int]]:
    """(SASS archs, PTX archs) from CMAKE_CUDA_ARCHITECTURES syntax: N-real = SASS, N-virtual = PTX, N = both."""
    sass, ptx = set(), set()
    for item in build_info["cuda_architectures"].split(";"):
        num, _, kind = item.partition("-")
        if kind in ("", "real"):
            sass.add(int(num))
        if kind in ("", "virtual"):
            ptx.add(int(num))
    return sass, ptx


def test_default_arch_list_is_every_nvcc_arch_from_75(plugin_lib, build_info):
    if os.environ.get("CUDA_ARCHS"):
        pytest.skip(f"CUDA_ARCHS={os.environ['CUDA_ARCHS']} narrows the build")
    archs = _nvcc_archs(_nvcc())
    sass, ptx = _expected_archs(build_info)
    assert sorted(sass) == archs, f"build_info {build_info['cuda_architectures']} vs nvcc {archs}"
    assert ptx == {archs[-1]}, f"PTX only for the newest ({archs[-1]}): {build_info['cuda_architectures']}"
    assert {80, 86, 89, 90} <= set(archs), "an nvcc >= 11.8 must offer A100, RTX 30xx, RTX 40xx/L4, Hopper"


def test_library_contains_the_architectures(plugin_lib, build_info):
    tool = _cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump not found (pip install nvidia-cuda-cuobjdump, in the dev extra)")
    elf = subprocess.run([tool, "--list-elf", str(plugin_lib)], capture_output=True, text=True)
    assert elf.returncode == 0, elf.stderr
    got_sass = {int(a) for a in re.findall(r"\.sm_(\d+)\.cubin", elf.stdout)}
    ptx = subprocess.run([tool, "--list-ptx", str(plugin_lib)], capture_output=True, text=True)
    got_ptx = {int(a) for a in re.findall(r"\.sm_(\d+)\.ptx", ptx.stdout)}
    want_sass, want_ptx = _expected_archs(build_info)
    assert got_sass == want_sass, f"cuobjdump --list-elf: {sorted(got_sass)}, expected {sorted(want_sass)}"
    assert got_ptx == want_ptx, f"cuobjdump --list-ptx: {sorted(got_ptx)}, expected {sorted(want_ptx)}"
