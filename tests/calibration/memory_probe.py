"""Peak resident memory of one INT8 range computation, run as its own process (used by test_int8_memory.py and
benchmarks/bench_calibration_memory.py).

Usage: ``python memory_probe.py MODEL.onnx CLIPS METHOD {streamed|ort}`` → prints one JSON line
``{"peak_rss_mb": ..., "base_rss_mb": ..., "tensors": ...}``. The calibration feeds are generated one at a time from a
seed (the reader holds no data), so any growth with CLIPS comes from the calibrator: ``streamed`` is
:func:`actionvos.calibration.int8_calibrators.compute_ranges`, ``ort`` is ONNX Runtime's own
``create_calibrator(...).collect_data(reader)`` (what ``quantize_static`` does).

Peak RSS is the kernel's high-water mark of this process (``VmHWM`` in ``/proc/self/status``; ``ru_maxrss`` where
``/proc`` is missing), so it includes numpy buffers and ONNX Runtime's arena alike.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
from pathlib import Path


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class SeededReader:
    """``CalibrationDataReader``-like: ``clips`` feeds of the model's float inputs, made on demand from a seed."""

    def __init__(self, model_path: str, clips: int):
        import onnx

        m = onnx.load(model_path, load_external_data=False)
        self.inputs = [(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim]) for i in m.graph.input]
        self.clips = clips
        self.i = 0

    def get_next(self):
        import numpy as np

        if self.i >= self.clips:
            return None
        rng = np.random.default_rng(self.i)
        self.i += 1
        return {n: (rng.standard_normal(shape) * (1 + self.i % 3)).astype(np.float32) for n, shape in self.inputs}

    def rewind(self):
        self.i = 0

    def __len__(self):
        return self.clips


def main() -> None:
    model, clips, method, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    import numpy as np  # noqa: F401  (imported before the baseline so it is in both)
    import onnxruntime  # noqa: F401

    from actionvos.calibration.int8_calibrators import _method, calibrator_options, compute_ranges

    base = peak_rss_mb()
    reader = SeededReader(model, clips)
    with tempfile.TemporaryDirectory() as work:
        if mode == "streamed":
            ranges = compute_ranges(Path(model), reader, method, ["Conv", "MatMul", "Gemm"], Path(work), bins=512)
        else:
            import contextlib
            import io

            from onnxruntime.quantization.calibrate import create_calibrator

            cal = create_calibrator(Path(model), ["Conv", "MatMul", "Gemm"], str(Path(work) / "aug.onnx"),
                                    calibrate_method=_method(method), extra_options=calibrator_options(method, 512, 99.999))
            with contextlib.redirect_stdout(io.StringIO()):
                cal.collect_data(reader)
                ranges = cal.compute_data()
    print(json.dumps({"peak_rss_mb": round(peak_rss_mb(), 1), "base_rss_mb": round(base, 1), "tensors": len(list(ranges.keys()))}))


if __name__ == "__main__":
    main()
