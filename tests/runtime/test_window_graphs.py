"""T-frame windows on ONNX Runtime with the split graphs (frame encoder once per frame + window decoder) agree with
the PyTorch backend's window, which concatenates kept per-frame features."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from actionvos.errors import ConfigError
from actionvos.runtime.backends.onnxruntime import OrtBackend
from actionvos.runtime.session import StreamConfig, StreamSession
from actionvos.runtime.window_export import export_window_graphs

from rt_common import ACTION, OBJECTS

T = 3


@pytest.fixture(scope="module")
def window_dir(onnx_dir, tiny_ckpt, tmp_path_factory):
    d = tmp_path_factory.mktemp("rt_window") / "onnx"
    shutil.copytree(onnx_dir, d)
    export_window_graphs(d, tiny_ckpt, window=T)
    return d


def test_split_graphs_match_pytorch_window(window_dir, torch_backend, tokenizer, box_frames):
    ort_split = OrtBackend(window_dir, provider="cpu", threads=2, window=T)
    assert ort_split.split and ort_split.info.window == T
    runs = {"n": 0}
    enc = ort_split.sessions["frame_encoder"]

    class Counting:
        def __getattr__(self, name):
            return getattr(enc, name)

        def run_with_iobinding(self, *a):
            runs["n"] += 1
            return enc.run_with_iobinding(*a)

    ort_split.sessions["frame_encoder"] = Counting()
    frames = box_frames[:5]
    results = {}
    for name, be in (("ort", ort_split), ("torch", torch_backend)):
        s = StreamSession(be, StreamConfig(window=T, return_probs=True, input_size=(48, 64)), tokenizer)
        s.set_prompts(ACTION, OBJECTS)
        results[name] = [s.step(f) for f in frames]
    assert runs["n"] == len(frames), "the backbone must run once per frame"
    for ra, rb in zip(results["ort"], results["torch"]):
        for oa, ob in zip(ra.objects, rb.objects):
            np.testing.assert_allclose(oa.prob, ob.prob, atol=1e-4)
            assert oa.selected_query == ob.selected_query and abs(oa.positive_prob - ob.positive_prob) < 1e-5


def test_window_without_split_graphs_is_a_config_error(onnx_dir):
    with pytest.raises(ConfigError, match="export_window_graphs"):
        OrtBackend(onnx_dir, provider="cpu", window=4)


def test_metadata_reader_matches_onnx(window_dir):
    """The torch/onnx-free metadata reader sees exactly what the onnx package sees."""
    import onnx

    from actionvos.export.metadata import decode_metadata
    from actionvos.runtime.onnx_metadata import read_onnx_metadata

    for name in ("text_encoder.onnx", "segmenter.onnx", "frame_encoder.onnx", "window_decoder.onnx"):
        props = {p.key: p.value for p in onnx.load(str(window_dir / name), load_external_data=False).metadata_props}
        assert read_onnx_metadata(window_dir / name) == decode_metadata(props)
    assert read_onnx_metadata(window_dir / "window_decoder.onnx")["role"] == "window_decoder"
