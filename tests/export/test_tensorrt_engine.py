"""``--format engine``: TensorRT engines from the tiny export (plugin graph), with profiles and sidecar JSON, built
through :mod:`actionvos.trt_api`; a stale timing cache is replaced instead of crashing the build (issue 10 defect 5).

Needs tensorrt, an NVIDIA GPU and the built MSDA plugin library; skips with the reason otherwise.
"""

from __future__ import annotations

import json

import pytest

from actionvos.trt_api import gpu_compute_capability, sidecar_path, tensorrt_available

pytestmark = pytest.mark.trt

_ok, _why = tensorrt_available()


def _skip_reason():
    if not _ok:
        return "tensorrt not importable"
    if gpu_compute_capability() is None:
        return "no GPU"
    from actionvos.export.trt_plugin import find_plugin_library

    if find_plugin_library() is None:
        return "MSDA plugin library not built (bash trt_plugins/build.sh)"
    return None


@pytest.fixture(scope="module")
def engine_export(request, tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    tiny = request.getfixturevalue("tiny")
    from actionvos.export.exporter import export_model

    out = tmp_path_factory.mktemp("engine") / "tiny_engine"
    return export_model(tiny.checkpoint, out, fmt="engine", msda="plugin", frames=2, height=96, width=160,
                        max_prompts=4)


def test_engine_files_and_sidecar(engine_export):
    for role in ("text_encoder", "segmenter"):
        engine = engine_export.engines[role]
        assert engine.is_file() and engine.stat().st_size > 0
        side = json.loads(sidecar_path(engine).read_text())
        assert side["role"] == role and side["tensorrt_version"] and side["compute_capability"]
        assert side["profiles"][0][engine_export.specs[role].input_names[-1]]["max"][0] == 4
        assert side["sidecar_version"] == 1 and side["checkpoint_sha256"]
        if role == "segmenter":
            from actionvos.trt_api import sha256_file

            assert side["plugin"]["sha256"] == sha256_file(side["plugin"]["path"])
    from actionvos.trt_api import check_sidecars, read_sidecar, register_plugin, runtime_facts

    sidecars = {r: read_sidecar(engine_export.engines[r]) for r in ("text_encoder", "segmenter")}
    assert check_sidecars(sidecars, runtime_facts(register_plugin())) is None


def test_stale_timing_cache_is_replaced(engine_export, tmp_path):
    """A timing cache TensorRT refuses (another GPU / version; here: garbage) is logged and replaced, not fatal."""
    from actionvos.trt_api import build_engine

    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"not a TensorRT timing cache" * 10)
    spec = engine_export.specs["text_encoder"]
    side = build_engine(engine_export.output / spec.filename, tmp_path / "text_encoder.engine", spec,
                        timing_cache=cache, use_plugin=False)
    assert (tmp_path / "text_encoder.engine").stat().st_size > 0 and side["role"] == "text_encoder"
    assert cache.read_bytes() != b"not a TensorRT timing cache" * 10 and cache.stat().st_size > 0


def test_engine_parity(engine_export, tiny):
    """Run the segmenter engine by tensor name and compare with PyTorch at the spec's fp32 tolerances."""
    import numpy as np
    import torch

    from _export_helpers import torch_reference, torch_text
    from actionvos.export.compare import assert_outputs_close
    from actionvos.trt_api import create_runtime, register_plugin

    register_plugin()
    spec = engine_export.specs["segmenter"]
    runtime = create_runtime()
    engine = runtime.deserialize_cuda_engine(engine_export.engines["segmenter"].read_bytes())
    ctx = engine.create_execution_context()
    tf = torch_text(tiny.model, tiny.inputs["input_ids"], tiny.inputs["attention_mask"])
    feed = {"frames": tiny.frames_tchw, "text_word": tf.word.numpy(), "text_mask": tf.mask.numpy(),
            "text_sentence": tf.sentence.numpy()}
    dev = {}
    for name, arr in feed.items():
        dev[name] = torch.from_numpy(np.ascontiguousarray(arr)).cuda()
        ctx.set_input_shape(name, arr.shape)
        ctx.set_tensor_address(name, dev[name].data_ptr())
    sizes = spec.check_feed(feed)
    for name, shape in spec.shapes(**sizes).items():
        if name in spec.output_names:
            dev[name] = torch.empty(shape, dtype=torch.float32, device="cuda")
            ctx.set_tensor_address(name, dev[name].data_ptr())
    stream = torch.cuda.current_stream()
    assert ctx.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    got = {n: dev[n].cpu().numpy() for n in spec.output_names}
    assert_outputs_close(got, torch_reference(tiny.model, tiny.frames_tchw, tf), spec)
