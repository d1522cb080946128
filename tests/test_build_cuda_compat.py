"""The CUDA version decision shared by trt_plugins/build.sh and the PyTorch extension build (fake versions, no GPU).

:func:`actionvos.export.cuda_compat.check_versions` decides; build.sh runs the same module as a script before
CMake, so the end-to-end cases below use a fake ``nvcc`` (a shell script printing a version) and never compile.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from actionvos.export import cuda_compat as cc
from actionvos.export.cuda_compat import CudaVersion, check_versions

REPO = Path(__file__).resolve().parents[1]
BUILD_SH = REPO / "trt_plugins" / "build.sh"

NVCC_13 = "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 13.0, V13.0.88\n"
NVCC_12 = "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 12.4, V12.4.131\n"


def test_parse_versions():
    assert cc.parse_nvcc_version(NVCC_13) == CudaVersion(13, 0)
    assert cc.parse_nvcc_version(NVCC_12) == CudaVersion(12, 4)
    assert cc.parse_nvcc_version("garbage") is None
    assert cc.parse_cuda_version("12.8") == CudaVersion(12, 8)
    assert cc.parse_cuda_version("13") == CudaVersion(13, 0)
    assert cc.parse_cuda_version(None) is None
    assert str(CudaVersion(12, 4)) == "12.4"
    assert CudaVersion(12, 4) < CudaVersion(12, 8) < CudaVersion(13, 0)


def test_all_match():
    r = check_versions(CudaVersion(12, 4), trt_cuda_major=12, trt_source="x", driver=CudaVersion(12, 8))
    assert r.ok, r.error
    assert any("matches TensorRT" in n for n in r.notes)


def test_trt_major_mismatch_is_one_line_with_both_versions_and_fix():
    r = check_versions(CudaVersion(13, 0), trt_cuda_major=12, trt_source="Python package tensorrt-cu12 10.14.1")
    assert not r.ok
    assert "\n" not in r.error
    assert "CUDA 13.0" in r.error and "CUDA 12" in r.error and "tensorrt-cu12" in r.error
    assert "CUDACXX=/usr/local/cuda-12.x/bin/nvcc" in r.error


def test_driver_too_old_for_nvcc_major():
    r = check_versions(CudaVersion(13, 0), driver=CudaVersion(12, 8), driver_source="nvidia-smi")
    assert not r.ok and "\n" not in r.error
    assert "CUDA 13.0" in r.error and "CUDA 12.8" in r.error and "CUDACXX=/usr/local/cuda-12.x/bin/nvcc" in r.error


def test_driver_older_minor_is_a_warning_only():
    r = check_versions(CudaVersion(12, 8), driver=CudaVersion(12, 2), driver_source="cuDriverGetVersion")
    assert r.ok
    assert any(n.startswith("warning:") and "12.2" in n for n in r.notes)


def test_no_driver_and_unknown_trt_are_skipped_with_a_note():
    r = check_versions(CudaVersion(13, 0))
    assert r.ok
    assert any("driver check skipped" in n for n in r.notes)
    assert any("TensorRT check skipped" in n for n in r.notes)


def test_torch_mismatch():
    r = check_versions(CudaVersion(13, 0), torch_cuda="12.8", what="the MSDA CUDA extension")
    assert not r.ok and "\n" not in r.error
    assert "CUDA 13.0" in r.error and "PyTorch was built for CUDA 12.8" in r.error
    assert check_versions(CudaVersion(12, 4), torch_cuda="12.8").ok  # same major: fine


def test_unknown_nvcc_is_an_error():
    r = check_versions(None)
    assert not r.ok and "CUDACXX" in r.error


def test_tensorrt_cuda_major_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("TENSORRT_CUDA_MAJOR", "12")
    assert cc.tensorrt_cuda_major() == (12, "$TENSORRT_CUDA_MAJOR")
    monkeypatch.delenv("TENSORRT_CUDA_MAJOR")
    # A tarball layout: TensorRT-10.14.1.48.Linux.x86_64-gnu.cuda-12.9/{include,lib}
    root = tmp_path / "TensorRT-10.14.1.48.Linux.x86_64-gnu.cuda-12.9"
    (root / "include").mkdir(parents=True)
    found = cc.tensorrt_cuda_major(root=str(root))
    if found is not None and not found[1].startswith("TensorRT path"):
        pytest.skip(f"an installed TensorRT answers first: {found}")
    assert found == (12, f"TensorRT path {root}")
    # A library next to the headers naming the CUDA runtime it needs.
    plain = tmp_path / "trt" / "include"
    plain.mkdir(parents=True)
    (plain.parent / "lib").mkdir()
    (plain.parent / "lib" / "libnvinfer.so.10").write_bytes(b"\x7fELF...libcudart.so.13\x00...")
    found = cc.tensorrt_cuda_major(include_dir=str(plain))
    assert found is not None and found[0] == 13 and "libcudart.so.13" in found[1]


def test_kernel_lens_headers_give_no_cuda_major():
    inc = REPO / "third_party" / "kernel-lens-2.0.1" / "include" / "tensorrt"
    if not inc.is_dir():
        pytest.skip("kernel-lens headers not fetched (run trt_plugins/build.sh)")
    found = cc.tensorrt_cuda_major(include_dir=str(inc))
    if found is not None and "kernel-lens" in found[1]:
        pytest.fail(f"headers-only TensorRT must not claim a CUDA major: {found}")


# ---- build.sh end to end with a fake nvcc (stops at the check, before CMake) ----------------------------------


def _fake_nvcc(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bin" / "nvcc"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("#!/bin/sh\ncat <<'EOF'\n" + text + "EOF\n")
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return p


def _run_build(env_extra: dict[str, str], path_prefix: Path | None = None) -> subprocess.CompletedProcess:
    if shutil.which("cmake") is None:
        pytest.skip("cmake not found (build.sh exits 77 before the check)")
    env = {k: v for k, v in os.environ.items() if k not in ("TENSORRT_CUDA_MAJOR", cc.SKIP_ENV)}
    env.update(env_extra)
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(["bash", str(BUILD_SH)], capture_output=True, text=True, timeout=600, env=env, cwd=REPO)


def _headers_available() -> bool:
    return (REPO / "third_party" / "kernel-lens-2.0.1" / "include" / "tensorrt" / "NvInferRuntime.h").is_file()


def test_build_sh_refuses_nvcc_tensorrt_mismatch(tmp_path):
    if not _headers_available() and not os.environ.get("TENSORRT_INCLUDE_DIR"):
        pytest.skip("no TensorRT headers here (build.sh would download them first)")
    nvcc = _fake_nvcc(tmp_path, NVCC_12)
    res = _run_build({"CUDACXX": str(nvcc), "TENSORRT_CUDA_MAJOR": "13", "BUILD_DIR": str(tmp_path / "b")})
    assert res.returncode == 1, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert "nvcc is CUDA 12.4 but TensorRT was built for CUDA 13" in last
    assert "CUDACXX=/usr/local/cuda-13.x/bin/nvcc" in last
    assert not (tmp_path / "b").exists(), "the check must run before CMake"


def _libcuda_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def test_build_sh_refuses_nvcc_newer_than_driver(tmp_path):
    if _libcuda_present():
        pytest.skip("a real driver (libcuda) answers before nvidia-smi; the fake nvidia-smi would be ignored")
    if not _headers_available() and not os.environ.get("TENSORRT_INCLUDE_DIR"):
        pytest.skip("no TensorRT headers here (build.sh would download them first)")
    nvcc = _fake_nvcc(tmp_path, NVCC_13)
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '| NVIDIA-SMI 570.86.15    Driver Version: 570.86.15    CUDA Version: 12.8 |'\n")
    smi.chmod(0o755)
    res = _run_build({"CUDACXX": str(nvcc), "BUILD_DIR": str(tmp_path / "b")}, path_prefix=tmp_path / "bin")
    assert res.returncode == 1, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert "nvcc is CUDA 13.0 but the NVIDIA driver supports only CUDA 12.8 (nvidia-smi)" in last
    # The override is documented in the same line and works.
    assert f"{cc.SKIP_ENV}=off" in last


def test_script_mode_needs_no_package(tmp_path):
    """build.sh runs the file directly with python3: it must not import actionvos."""
    nvcc = _fake_nvcc(tmp_path, NVCC_12)
    code = ("import runpy, sys; sys.argv = ['cuda_compat.py', 'nvcc-version', '--nvcc', %r]; "
            "sys.modules['actionvos'] = None; runpy.run_path(%r, run_name='__main__')") % (
        str(nvcc), str(REPO / "actionvos" / "export" / "cuda_compat.py"))
    res = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "12.4"


def test_extension_build_checks_torch_cuda(monkeypatch):
    from actionvos.export import msda_cuda

    with pytest.raises(msda_cuda.MsdaExtensionError, match="CPU only"):
        msda_cuda._check_toolchain(None, "/usr/local/cuda")
    with pytest.raises(msda_cuda.MsdaExtensionError, match="CUDA_HOME"):
        msda_cuda._check_toolchain("12.8", None)
    monkeypatch.setattr(cc, "nvcc_version", lambda nvcc: CudaVersion(13, 0))
    monkeypatch.setattr(cc, "driver_cuda_version", lambda: None)
    with pytest.raises(msda_cuda.MsdaExtensionError,
                       match=r"nvcc is CUDA 13\.0 but PyTorch was built for CUDA 12\.8.*CUDA_HOME=/usr/local/cuda-12"):
        msda_cuda._check_toolchain("12.8", "/usr/local/cuda")
    msda_cuda._check_toolchain("13.0", "/usr/local/cuda")  # same major: no error
