"""GPU backends: TensorRT engines and ONNX Runtime's CUDA / TensorRT execution providers against ONNX Runtime CPU.

These need an NVIDIA GPU with tensorrt + cuda-python (TensorRT backend) or onnxruntime-gpu (CUDA EP); they skip
with the reason on the CPU-only development machine.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from actionvos.runtime.session import StreamConfig, StreamSession

from rt_common import ACTION, OBJECTS


def _ort_has(provider: str) -> bool:
    import onnxruntime as ort

    return provider in ort.get_available_providers()


def _trt_skip_reason() -> str | None:
    from actionvos.runtime.backends.factory import _trt_ready

    return _trt_ready()


def _stream(backend, tokenizer, frames):
    s = StreamSession(backend, StreamConfig(return_probs=True), tokenizer)
    s.set_prompts(ACTION, OBJECTS)
    return [s.step(f) for f in frames]


def _assert_close(a, b, atol):
    for ra, rb in zip(a, b):
        for oa, ob in zip(ra.objects, rb.objects):
            np.testing.assert_allclose(oa.prob, ob.prob, atol=atol)
            assert oa.selected_query == ob.selected_query and oa.passed_gate == ob.passed_gate


@pytest.mark.gpu
@pytest.mark.skipif(not _ort_has("CUDAExecutionProvider"), reason="onnxruntime here has no CUDAExecutionProvider (CPU-only machine)")
def test_ort_cuda_matches_cpu(onnx_dir, ort_backend, tokenizer, box_frames):
    from actionvos.runtime.backends.onnxruntime import OrtBackend

    gpu = OrtBackend(onnx_dir, provider="cuda")
    assert gpu.info.name == "onnxruntime-cuda"
    _assert_close(_stream(gpu, tokenizer, box_frames[:4]), _stream(ort_backend, tokenizer, box_frames[:4]), 1e-3)


@pytest.mark.trt
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="tensorrt is not installed (needs an NVIDIA GPU)")
def test_tensorrt_engine_matches_ort_cpu(tiny_ckpt, tok_dir, ort_backend, tokenizer, box_frames, tmp_path):
    reason = _trt_skip_reason()
    if reason:
        pytest.skip(reason)
    from actionvos.export.exporter import export_model
    from actionvos.runtime.backends.tensorrt import TrtBackend

    out = tmp_path / "engine"
    export_model(tiny_ckpt, out, height=48, width=64, frames=1, msda="plugin", fmt="engine", max_prompts=4, max_tokens=32)
    trt_backend = TrtBackend(out)
    try:
        _assert_close(_stream(trt_backend, tokenizer, box_frames[:4]), _stream(ort_backend, tokenizer, box_frames[:4]), 1e-3)
    finally:
        trt_backend.close()
