"""Peak memory of ``actionvos calibrate int8`` per calibration method, for N and 2N clips (issue 11 item 11).

Builds (or reuses, with ``--work``) the FP32 export (``--msda onnx``) and a calibration file the way
``benchmarks/bench_precision.py`` does (the demo model when it exists, else ``demo_small`` with random weights;
clips of box.mp4, cup.mp4 and minivisor val), then runs each measurement in its own process and reports that
process's peak resident memory (``VmHWM``: numpy buffers and ONNX Runtime's arenas alike):

* ``streamed``: :func:`actionvos.calibration.int8.quantize_dir_int8` (``calibrate int8``: lazy clip reading,
  streamed calibrators, both graphs, ``quantize_static``), report off;
* ``ort``: ONNX Runtime's own ``create_calibrator(...).collect_data(reader)`` on the segmenter with the same reader
  (what ``quantize_static`` does with a data reader, i.e. the code before the fix), for comparison.

Usage::

    python benchmarks/bench_calibration_memory.py [--work DIR] [--clips 8] [--methods minmax,entropy,percentile]
        [--bins 2048] [--threads 2]

Prints a Markdown table: method, mode, clips, peak RSS MB, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(args) -> None:
    """One measurement (runs in its own process)."""
    import numpy as np  # noqa: F401
    import onnxruntime  # noqa: F401

    t0 = time.perf_counter()
    if args.mode == "streamed":
        from actionvos.calibration.int8 import quantize_dir_int8

        with tempfile.TemporaryDirectory() as out:
            quantize_dir_int8(args.onnx, args.data, Path(out) / "int8", method=args.method, calib_clips=args.clips,
                              report=False, bins=args.bins, threads=args.threads, holdout=0.25)
    else:
        import contextlib
        import io

        from onnxruntime.quantization.calibrate import create_calibrator

        from actionvos.calibration.common import load_graph_dir
        from actionvos.calibration.int8 import DEFAULT_OP_TYPES
        from actionvos.calibration.int8_calibrators import _method, calibrator_options
        from actionvos.calibration.int8_readers import SegmenterReader
        from actionvos.calibration.npz_store import load_calibration

        g = load_graph_dir(args.onnx)
        sub = load_calibration(args.data, lazy=True).split_holdout(0.25)[0].spread(args.clips)
        with tempfile.TemporaryDirectory() as work:
            cal = create_calibrator(g.segmenter, list(DEFAULT_OP_TYPES), str(Path(work) / "aug.onnx"),
                                    calibrate_method=_method(args.method),
                                    extra_options=calibrator_options(args.method, args.bins, 99.999))
            with contextlib.redirect_stdout(io.StringIO()):
                cal.collect_data(SegmenterReader(sub))
                cal.compute_data()
    print(json.dumps({"peak_rss_mb": round(_peak_rss_mb(), 1), "seconds": round(time.perf_counter() - t0, 1)}))


def _measure(onnx: Path, data: Path, method: str, mode: str, clips: int, bins: int, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--onnx", str(onnx), "--data", str(data),
           "--method", method, "--mode", mode, "--clips", str(clips), "--bins", str(bins), "--threads", str(threads)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", help="keep the export and calibration file here (default: a temporary directory)")
    ap.add_argument("--clips", type=int, default=8, help="N: measured at N and 2N calibration clips")
    ap.add_argument("--methods", default="minmax,entropy,percentile")
    ap.add_argument("--modes", default="streamed,ort")
    ap.add_argument("--bins", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--per-video", type=int, default=4)
    ap.add_argument("--height", type=int, default=192)
    ap.add_argument("--width", type=int, default=256)
    # child mode
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--onnx", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return

    sys.path.insert(0, str(HERE))
    import bench_precision as bp

    tmp = None
    if args.work:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench-calib-mem-")
        work = Path(tmp.name)
    ns = argparse.Namespace(checkpoint=None, tokenizer=None, height=args.height, width=args.width, frames=1,
                            rebuild=False)
    onnx_dir, tok, label = bp._export(ns, work)
    calib = bp._collect(onnx_dir, tok, work, args.per_video, False)
    from actionvos.calibration.npz_store import load_calibration

    n_file = len(load_calibration(calib, lazy=True))
    print(f"Model: {label}, input 1x{args.height}x{args.width}; calibration file {n_file} clips; histogram bins "
          f"{args.bins}; {args.threads} ORT threads; peak RSS = VmHWM of a fresh process per row.\n")
    print("| method | calibrator | clips | peak RSS MB | seconds |")
    print("|---|---|---|---|---|")
    for method in args.methods.split(","):
        for mode in args.modes.split(","):
            if mode == "ort" and method != "percentile" and "--all-ort" not in sys.argv:
                continue
            for n in (args.clips, 2 * args.clips):
                r = _measure(onnx_dir, calib, method, mode, n, args.bins, args.threads)
                name = "streamed (calibrate int8)" if mode == "streamed" else "ORT collect_data (before)"
                if "error" in r:
                    print(f"| {method} | {name} | {n} | error: {r['error'][:80]} | |", flush=True)
                else:
                    print(f"| {method} | {name} | {n} | {r['peak_rss_mb']:.0f} | {r['seconds']:.0f} |", flush=True)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
