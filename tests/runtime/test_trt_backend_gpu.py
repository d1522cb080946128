"""TensorRT backend on a GPU (issue 10 defects 6, 8, 9; issue 9 item 5): needs tensorrt, cuda-python, an NVIDIA GPU
and the built MSDA plugin library; every test skips with the reason otherwise.

* CUDA graphs are never replayed after the input shapes changed: prompt sets P1 → P2 → P1 with CUDA graphs give the
  same outputs as a backend without CUDA graphs (eager ``execute_async_v3``) on every frame;
* prompt sets outside the engines' profile are one error naming the limits (checked ``set_input_shape``);
* results returned by ``decode`` stay readable after ``close()``;
* engines whose sidecar names another TensorRT version, GPU or checkpoint are refused before deserialisation.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest

from actionvos.errors import ConfigError, InputError

from rt_common import INPUT_SIZE

pytestmark = [pytest.mark.trt, pytest.mark.gpu]


def _skip_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed (needs an NVIDIA GPU)"
    from actionvos.runtime.backends.factory import _trt_ready

    why = _trt_ready()
    if why:
        return why
    from actionvos.export.trt_plugin import find_plugin_library

    if find_plugin_library() is None:
        return "MSDA plugin library not built (bash trt_plugins/build.sh)"
    return None


@pytest.fixture(scope="module")
def engine_dir(tiny_ckpt, tok_dir, tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from actionvos.export.exporter import export_model

    out = tmp_path_factory.mktemp("trt_engine") / "tiny48"
    export_model(tiny_ckpt, out, height=INPUT_SIZE[0], width=INPUT_SIZE[1], frames=1, msda="plugin", fmt="engine",
                 max_prompts=4, max_tokens=32, tokenizer=str(tok_dir))
    return out


@pytest.fixture(scope="module")
def frames(box_frames):
    import cv2

    H, W = INPUT_SIZE
    return [np.ascontiguousarray(cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA)) for f in box_frames[:3]]


def _prompts(P: int, L: int, seed: int):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 200, size=(P, L)).astype(np.int64)
    ids[:, 0] = 0
    mask = np.ones((P, L), np.int64)
    mask[0, L - 2:] = 0  # one padded prompt
    return ids, mask


def _run(backend, text, frames):
    bound = backend.bind_text(text)
    outs = []
    for f in frames:
        o = backend.decode([backend.encode_frame(f)], bound)
        outs.append([np.array(o.query_logits), np.array(o.mask_logits), np.array(o.positive_logit)])
    return outs


def test_prompt_shape_switches_match_eager(engine_dir, frames):
    """P1 → P2 → P1 with CUDA graphs (recaptured per shape) equals eager execution on every frame."""
    from actionvos.runtime.backends.tensorrt import TrtBackend

    graphs, eager = TrtBackend(engine_dir, cuda_graph=True), TrtBackend(engine_dir, cuda_graph=False)
    try:
        sets = {"P1": _prompts(2, 8, 0), "P2": _prompts(3, 12, 1)}
        texts = {k: (graphs.encode_text(*v), eager.encode_text(*v)) for k, v in sets.items()}
        for name in ("P1", "P2", "P1", "P2"):
            got = _run(graphs, texts[name][0], frames)
            want = _run(eager, texts[name][1], frames)
            for g, w in zip(got, want):
                for a, b in zip(g, w):
                    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=f"prompt set {name}")
        assert graphs.schedule.enabled, "CUDA graph capture failed (see the warning); the test compared eager with eager"
    finally:
        graphs.close()
        eager.close()


def test_profile_limits_are_named(engine_dir):
    from actionvos.runtime.backends.tensorrt import TrtBackend

    b = TrtBackend(engine_dir)
    try:
        with pytest.raises(InputError, match=r"outside the engine's profile.*max \[4, 32\]"):
            b.encode_text(*_prompts(5, 8, 0))
        with pytest.raises(InputError, match=r"outside the engine's profile.*max \[4, 32\]"):
            b.encode_text(*_prompts(2, 40, 0))
    finally:
        b.close()


def test_results_readable_after_close(engine_dir, frames):
    from actionvos.runtime.backends.tensorrt import TrtBackend

    b = TrtBackend(engine_dir)
    out = b.decode([b.encode_frame(frames[0])], b.bind_text(b.encode_text(*_prompts(2, 8, 0))))
    kept = [np.array(out.query_logits), np.array(out.mask_logits)]
    b.close()
    b.close()  # idempotent
    np.testing.assert_array_equal(out.query_logits, kept[0])
    np.testing.assert_array_equal(out.mask_logits, kept[1])


@pytest.mark.parametrize("field,value,expected", [
    ("tensorrt_version", "9.0.0.1", r"segmenter\.engine was built with TensorRT 9\.0\.0\.1 but TensorRT"),
    ("compute_capability", "1.0", r"built for compute capability 1\.0"),
    ("checkpoint_sha256", "0000000000000000", r"come from different checkpoints"),
])
def test_mismatched_sidecar_is_refused(engine_dir, tmp_path, field, value, expected):
    from actionvos.runtime.backends.tensorrt import TrtBackend

    d = tmp_path / "engines"
    shutil.copytree(engine_dir, d)
    side = d / "segmenter.engine.json"
    data = json.loads(side.read_text())
    data[field] = value
    side.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=expected) as err:
        TrtBackend(d)
    assert "actionvos-export" in str(err.value) and "--format engine" in str(err.value)
