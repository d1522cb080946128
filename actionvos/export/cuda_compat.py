"""CUDA version checks for building the MSDA kernels: nvcc vs TensorRT vs the driver vs PyTorch.

One decision, used by both builds:

* ``trt_plugins/build.sh`` runs this file as a script (standard library only, works without the package being
  installed): ``python3 actionvos/export/cuda_compat.py check-build --nvcc NVCC [--trt-include DIR]
  [--trt-root DIR]``. It prints its findings to stderr and, on a mismatch, one line naming both versions and the
  fix, exiting 1.
* :func:`actionvos.export.msda_cuda.load_msda_extension` calls :func:`check_versions` with ``torch.version.cuda``
  before JIT-compiling the PyTorch extension.

Rules (:func:`check_versions`):

* **TensorRT**: the plugin runs inside a TensorRT built for one CUDA major (its wheels are ``tensorrt-cu12`` /
  ``tensorrt-cu13``, its Debian packages ``10.x-1+cuda12.9``, its tarballs ``...cuda-12.9``); the machines that run
  such a TensorRT have drivers for that major. nvcc's major must equal it. Unknown (headers only, e.g. the
  kernel-lens headers build.sh downloads) → the check is skipped with a log line.
* **Driver**: code built by nvcc ``X.y`` (its statically linked runtime ``X.y``) needs a driver supporting CUDA
  ``X.0`` or newer (CUDA minor-version compatibility, CUDA 11+); a driver for a lower major fails at the first CUDA
  call (``cudaErrorInsufficientDriver``). Same major but an older minor: SASS runs, the PTX of the newest
  architecture does not JIT → a warning. No driver (build machine without a GPU) → skipped with a log line.
* **PyTorch**: ``torch.utils.cpp_extension`` refuses an nvcc whose major differs from ``torch.version.cuda``'s
  (with a long traceback); this check says it in one line first.

Sources: CUDA Compatibility guide (minor version compatibility, "CUDA Toolkit and Corresponding Driver Versions"),
``cuDriverGetVersion`` (CUDA driver API), TensorRT support matrix / wheel names.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CudaVersion",
    "CheckResult",
    "parse_nvcc_version",
    "parse_cuda_version",
    "nvcc_version",
    "driver_cuda_version",
    "tensorrt_cuda_major",
    "check_versions",
    "main",
]

#: Set to ``off`` to skip the checks (at your own risk; e.g. a build machine for a different target).
SKIP_ENV = "ACTIONVOS_CUDA_CHECK"


@dataclass(frozen=True, order=True)
class CudaVersion:
    """A CUDA version ``major.minor`` (e.g. ``12.4``)."""

    major: int
    minor: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


@dataclass
class CheckResult:
    """Outcome of :func:`check_versions`.

    Attributes:
        error: ``None`` when the versions fit, else the one-line message (both versions and the fix).
        notes: log lines (what was checked, what was skipped and why, warnings).
    """

    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_cuda_version(text: str | None) -> CudaVersion | None:
    """``"12.4"`` / ``"12"`` / ``"12.4.1"`` → :class:`CudaVersion`; ``None`` or unparsable → ``None``."""
    if not text:
        return None
    m = re.match(r"\s*(\d+)(?:\.(\d+))?", str(text))
    return CudaVersion(int(m.group(1)), int(m.group(2) or 0)) if m else None


def parse_nvcc_version(text: str) -> CudaVersion | None:
    """The version in ``nvcc --version`` output (``"... release 13.0, V13.0.88"``), or ``None``."""
    m = re.search(r"release (\d+)\.(\d+)", text)
    return CudaVersion(int(m.group(1)), int(m.group(2))) if m else None


def nvcc_version(nvcc: str) -> CudaVersion | None:
    """Runs ``nvcc --version``; ``None`` when it cannot be run or parsed."""
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvcc_version(out)


def driver_cuda_version() -> tuple[CudaVersion, str] | None:
    """Highest CUDA version the installed NVIDIA driver supports, and where that was read.

    ``cuDriverGetVersion`` from ``libcuda.so.1`` (needs no GPU context), else the ``CUDA Version: X.Y`` of
    ``nvidia-smi``. ``None`` when there is no driver (no libcuda, no nvidia-smi).
    """
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        v = ctypes.c_int(0)
        try:
            rc = lib.cuDriverGetVersion(ctypes.byref(v))
        except AttributeError:
            continue
        if rc == 0 and v.value > 0:  # 12040 → 12.4
            return CudaVersion(v.value // 1000, (v.value % 1000) // 10), f"cuDriverGetVersion ({name})"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi], capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        m = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", out)
        if m:
            return CudaVersion(int(m.group(1)), int(m.group(2))), "nvidia-smi"
    return None


_CUDA_IN_NAME = re.compile(r"(?:cuda[-_.]?|\+cuda|[-_]cu)(\d{2})(?:\.(\d+))?", re.IGNORECASE)


def _major_from_text(text: str) -> int | None:
    m = _CUDA_IN_NAME.search(text)
    return int(m.group(1)) if m else None


def tensorrt_cuda_major(include_dir: str | None = None, root: str | None = None) -> tuple[int, str] | None:
    """The CUDA major the installed TensorRT was built for, and where that was read; ``None`` when unknown.

    Looked up, first match wins: ``$TENSORRT_CUDA_MAJOR``; installed Python distributions ``tensorrt-cuNN``,
    ``tensorrt-cuNN-libs`` / ``-bindings``; ``dpkg-query`` of ``libnvinfer10`` (``10.14.1.48-1+cuda12.9``); a
    ``cuda-NN.x`` in the TensorRT root / include path (tarball names); ``libcudart.so.NN`` / ``libcublas*.so.NN``
    named in a ``libnvinfer.so*`` next to the headers. TensorRT headers alone carry no CUDA version.
    """
    env = os.environ.get("TENSORRT_CUDA_MAJOR", "").strip()
    if env.isdigit():
        return int(env), "$TENSORRT_CUDA_MAJOR"
    try:
        from importlib import metadata

        for dist in metadata.distributions():
            name = (dist.metadata.get("Name") or "").lower().replace("_", "-")
            m = re.fullmatch(r"tensorrt-cu(\d+)(?:-libs|-bindings)?", name)
            if m:
                return int(m.group(1)), f"Python package {name} {dist.version}"
    except Exception:  # noqa: BLE001 -- a broken site-packages must not stop the build
        pass
    if shutil.which("dpkg-query"):
        for pkg in ("libnvinfer10", "libnvinfer-dev", "tensorrt"):
            try:
                res = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True,
                                     timeout=30)
            except (OSError, subprocess.SubprocessError):
                continue
            if res.returncode == 0 and "cuda" in res.stdout:
                major = _major_from_text(res.stdout)
                if major:
                    return major, f"Debian package {pkg} {res.stdout.strip()}"
    for p in (root, include_dir):
        if p:
            major = _major_from_text(str(Path(p).resolve()))
            if major:
                return major, f"TensorRT path {p}"
    for p in (root and Path(root) / "lib", include_dir and Path(include_dir).parent / "lib"):
        if not p or not Path(p).is_dir():
            continue
        for lib in sorted(Path(p).glob("libnvinfer.so*")):
            try:
                data = lib.read_bytes()
            except OSError:
                continue
            m = re.search(rb"lib(?:cudart|cublas|cublasLt)\.so\.(\d{2})", data)
            if m:
                return int(m.group(1)), f"{lib} (needs {m.group(0).decode()})"
    return None


def check_versions(nvcc: CudaVersion | None, *, trt_cuda_major: int | None = None, trt_source: str = "",
                   driver: CudaVersion | None = None, driver_source: str = "", torch_cuda: str | None = None,
                   what: str = "the MSDA plugin") -> CheckResult:
    """Decide whether code built by ``nvcc`` fits TensorRT, the driver and PyTorch (see the module docstring).

    Args:
        nvcc: version of the nvcc that will compile the kernels (``None``: unknown → error).
        trt_cuda_major: CUDA major of the TensorRT build, ``None`` when unknown (check skipped).
        driver: highest CUDA version the installed driver supports, ``None`` when no driver (check skipped).
        torch_cuda: ``torch.version.cuda`` (``"12.8"``) for the PyTorch extension build, else ``None``.
        what: what is being built, for the messages.

    Returns:
        :class:`CheckResult`; ``error`` is the first mismatch found, as one line.
    """
    res = CheckResult()
    if nvcc is None:
        res.error = f"cannot read the nvcc version for {what}: set CUDACXX to a working CUDA toolkit's bin/nvcc"
        return res
    fix_nvcc = lambda major: f"CUDACXX=/usr/local/cuda-{major}.x/bin/nvcc"  # noqa: E731
    if torch_cuda is not None:
        tv = parse_cuda_version(torch_cuda)
        if tv is None:
            res.notes.append(f"PyTorch has no CUDA version ({torch_cuda!r}): PyTorch check skipped")
        elif tv.major != nvcc.major:
            res.error = (f"nvcc is CUDA {nvcc} but PyTorch was built for CUDA {tv}: build {what} with a CUDA "
                         f"{tv.major} toolkit (CUDA_HOME=/usr/local/cuda-{tv.major}.x, or put its bin/nvcc first on "
                         f"PATH) or install a PyTorch built for CUDA {nvcc.major}")
            return res
        else:
            res.notes.append(f"nvcc CUDA {nvcc} matches PyTorch's CUDA {tv} (major {tv.major})")
    if trt_cuda_major is None:
        if torch_cuda is None:
            res.notes.append("TensorRT's CUDA version unknown (headers only, no installed TensorRT found): "
                             f"TensorRT check skipped; {what} then needs a TensorRT built for CUDA {nvcc.major}")
    elif trt_cuda_major != nvcc.major:
        res.error = (f"nvcc is CUDA {nvcc} but TensorRT was built for CUDA {trt_cuda_major} ({trt_source}): "
                     f"build with a CUDA {trt_cuda_major} toolkit, e.g. {fix_nvcc(trt_cuda_major)} bash "
                     "trt_plugins/build.sh")
        return res
    else:
        res.notes.append(f"nvcc CUDA {nvcc} matches TensorRT's CUDA {trt_cuda_major} ({trt_source})")
    if driver is None:
        res.notes.append("no NVIDIA driver found (no libcuda, no nvidia-smi): driver check skipped")
    elif driver.major < nvcc.major:
        res.error = (f"nvcc is CUDA {nvcc} but the NVIDIA driver supports only CUDA {driver} ({driver_source}): "
                     f"build with a CUDA {driver.major} toolkit, e.g. {fix_nvcc(driver.major)}, or install a "
                     f"driver for CUDA {nvcc.major}")
        return res
    elif driver < nvcc:
        res.notes.append(f"warning: nvcc is CUDA {nvcc}, the driver supports CUDA {driver} ({driver_source}): the "
                         "compiled SASS runs (minor-version compatibility) but PTX for newer GPUs cannot be JIT-"
                         "compiled by this driver")
    else:
        res.notes.append(f"driver supports CUDA {driver} ({driver_source}) >= nvcc CUDA {nvcc}")
    return res


def main(argv: list[str] | None = None) -> int:
    """``check-build``: the build.sh check (exit 0 fine, 1 mismatch, one line on stderr); ``nvcc-version``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check-build", help="check nvcc against TensorRT and the driver")
    c.add_argument("--nvcc", required=True)
    c.add_argument("--trt-include", default=None)
    c.add_argument("--trt-root", default=None)
    v = sub.add_parser("nvcc-version", help="print nvcc's CUDA version")
    v.add_argument("--nvcc", required=True)
    args = ap.parse_args(argv)
    nv = nvcc_version(args.nvcc)
    if args.cmd == "nvcc-version":
        if nv is None:
            print(f"cannot read the version of {args.nvcc}", file=sys.stderr)
            return 1
        print(nv)
        return 0
    if os.environ.get(SKIP_ENV, "").lower() in ("off", "0", "no"):
        print(f"build.sh: {SKIP_ENV}=off: CUDA version checks skipped", file=sys.stderr)
        return 0
    trt = tensorrt_cuda_major(args.trt_include, args.trt_root)
    drv = driver_cuda_version()
    res = check_versions(nv, trt_cuda_major=trt[0] if trt else None, trt_source=trt[1] if trt else "",
                         driver=drv[0] if drv else None, driver_source=drv[1] if drv else "")
    for note in res.notes:
        print(f"build.sh: {note}", file=sys.stderr)
    if res.error:
        print(f"build.sh: {res.error} (or {SKIP_ENV}=off to skip this check)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
