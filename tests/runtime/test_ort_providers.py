"""ONNX Runtime providers and ``--backend auto`` (issue 10 defect 1), on the CPU.

ONNX Runtime's TensorRT execution provider builds its ``trt.plugins`` op list from
``getPluginRegistry()->getPluginCreatorList()``, which lists only old-style ``IPluginCreator`` creators; our MSDA
plugin is an ``IPluginCreatorV3One`` from ``getCreators``. So ``--msda plugin`` graphs are refused on every ONNX
Runtime provider with one line pointing to ``--msda onnx`` or the TensorRT backend, and ``--backend auto`` sends
them to the TensorRT backend (engines in the folder, TensorRT runnable) or fails with that line.

The decision is :func:`actionvos.runtime.backends.factory.decide_backend`, a pure function of what was given and what
is installed, so every branch is tested here without GPU packages; one end-to-end test exports a real tiny
``--msda plugin`` folder and checks the refusal through :class:`OrtBackend` and :func:`actionvos.artifacts.open_model`.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from actionvos.errors import ConfigError
from actionvos.runtime.backends.factory import Environment, ModelFiles, decide_backend, onnx_folder_facts
from actionvos.runtime.backends.onnxruntime import plugin_graph_refusal, provider_chain

from rt_common import INPUT_SIZE

ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
TRT_OK = Environment(trt_unavailable=None, ort_installed=True, ort_gpu="TensorrtExecutionProvider", torch_cuda=True)
CPU_ONLY = Environment(trt_unavailable="the tensorrt package is not installed (pip install tensorrt)",
                       ort_installed=True, ort_gpu=None, torch_cuda=False)


def _chain(available, want, needs_plugin, cuda_graph=False):
    return provider_chain(available, want, device_id=0, cache_dir=Path("/tmp/cache"), needs_plugin=needs_plugin,
                          spec=None, inputs=[], cuda_graph=cuda_graph, graph="segmenter.onnx")


def _assert_refusal(msg: str):
    assert "\n" not in msg
    assert "--msda plugin" in msg and "--msda onnx" in msg and "--backend tensorrt" in msg and "--format engine" in msg


# ---------------------------------------------------------------------- provider chain
@pytest.mark.parametrize("want", ["auto", "tensorrt", "cuda", "cpu"])
@pytest.mark.parametrize("available", [ALL, ALL[1:], ALL[2:]], ids=["trt+cuda+cpu", "cuda+cpu", "cpu"])
def test_plugin_graphs_are_refused_on_every_provider(available, want):
    with pytest.raises(ConfigError) as err:
        _chain(available, want, needs_plugin=True)
    _assert_refusal(str(err.value))
    assert str(err.value).startswith("segmenter.onnx was exported with --msda plugin")


def test_onnx_graph_provider_chains():
    chain = _chain(ALL, "auto", needs_plugin=False, cuda_graph=True)
    assert [n for n, _ in chain] == ALL
    trt_opts, cuda_opts = chain[0][1], chain[1][1]
    assert "trt_extra_plugin_lib_paths" not in trt_opts and trt_opts["trt_engine_cache_enable"]
    assert cuda_opts["enable_cuda_graph"] is True
    assert [n for n, _ in _chain(ALL, "cuda", needs_plugin=False)] == ALL[1:]
    assert [n for n, _ in _chain(ALL[2:], "auto", needs_plugin=False)] == ALL[2:]
    with pytest.raises(ConfigError, match="no CUDAExecutionProvider"):
        _chain(ALL[2:], "cuda", needs_plugin=False)
    with pytest.raises(ConfigError, match="unknown onnxruntime provider"):
        _chain(ALL, "rocm", needs_plugin=False)


# ---------------------------------------------------------------------- auto decision
def test_plugin_folder_with_engines_goes_to_tensorrt():
    c = decide_backend(ModelFiles(onnx=True, onnx_msda="plugin", onnx_has_engines=True), TRT_OK)
    assert (c.backend, c.device, c.engine_from_onnx) == ("tensorrt", "cuda", True)


def test_plugin_folder_without_tensorrt_is_one_clear_error():
    with pytest.raises(ConfigError) as err:
        decide_backend(ModelFiles(onnx=True, onnx_msda="plugin", onnx_has_engines=True), CPU_ONLY)
    _assert_refusal(str(err.value))
    assert "the TensorRT backend cannot run here: the tensorrt package is not installed (pip install tensorrt)" in str(err.value)


def test_plugin_folder_without_engines_is_one_clear_error():
    with pytest.raises(ConfigError) as err:
        decide_backend(ModelFiles(onnx=True, onnx_msda="plugin"), TRT_OK)
    _assert_refusal(str(err.value))
    assert "the folder holds no TensorRT engines" in str(err.value)


def test_plugin_folder_falls_back_to_a_given_checkpoint():
    c = decide_backend(ModelFiles(checkpoint=True, onnx=True, onnx_msda="plugin"), CPU_ONLY)
    assert (c.backend, c.device) == ("pytorch", "cpu") and "ONNX Runtime cannot run" in c.reason
    c = decide_backend(ModelFiles(checkpoint=True, onnx=True, onnx_msda="plugin"),
                       Environment(trt_unavailable="no CUDA GPU is visible", ort_installed=True,
                                   ort_gpu="CUDAExecutionProvider", torch_cuda=True))
    assert (c.backend, c.device) == ("pytorch", "cuda")  # never the ORT GPU provider for a plugin graph


@pytest.mark.parametrize("msda", ["onnx", None])
def test_onnx_graph_folders_go_to_onnxruntime(msda):
    c = decide_backend(ModelFiles(onnx=True, onnx_msda=msda), TRT_OK)
    assert (c.backend, c.device) == ("onnxruntime", "auto") and "TensorrtExecutionProvider" in c.reason
    c = decide_backend(ModelFiles(onnx=True, onnx_msda=msda), CPU_ONLY)
    assert (c.backend, c.device) == ("onnxruntime", "cpu")


def test_engine_and_checkpoint_choices():
    assert decide_backend(ModelFiles(engine=True), TRT_OK).backend == "tensorrt"
    c = decide_backend(ModelFiles(engine=True, checkpoint=True), CPU_ONLY)
    assert (c.backend, c.device) == ("pytorch", "cpu") and "tensorrt skipped" in c.reason
    with pytest.raises(ConfigError, match="no backend can run.*pip install tensorrt"):
        decide_backend(ModelFiles(engine=True), CPU_ONLY)
    with pytest.raises(ConfigError, match="no model given"):
        decide_backend(ModelFiles(), TRT_OK)
    with pytest.raises(ConfigError, match="onnxruntime skipped: not installed"):
        decide_backend(ModelFiles(onnx=True, onnx_msda="onnx"), Environment(ort_installed=False))


def test_onnx_folder_facts(tmp_path):
    assert onnx_folder_facts(tmp_path) == (None, False)
    (tmp_path / "card.json").write_text(json.dumps({"msda": "plugin"}))  # the card says how MSDA runs
    for r in ("text_encoder", "segmenter"):
        (tmp_path / f"{r}.engine").write_bytes(b"x")
    assert onnx_folder_facts(tmp_path) == ("plugin", True)


# ---------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def plugin_dir(tiny_ckpt, tok_dir, tmp_path_factory) -> Path:
    """A real ``--msda plugin`` export (ONNX only) of the tiny checkpoint at 48x64, T = 1."""
    from actionvos.export.exporter import export_model

    out = tmp_path_factory.mktemp("rt_plugin") / "tiny48_plugin"
    export_model(tiny_ckpt, out, height=INPUT_SIZE[0], width=INPUT_SIZE[1], frames=1, msda="plugin", max_prompts=4,
                 max_tokens=32, tokenizer=str(tok_dir))
    return out


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed: auto may pick it")
def test_plugin_export_is_refused_end_to_end(plugin_dir):
    from actionvos.artifacts import open_model
    from actionvos.card import read_card_file
    from actionvos.runtime.backends.onnxruntime import OrtBackend

    assert onnx_folder_facts(plugin_dir) == ("plugin", False)
    with pytest.raises(ConfigError) as err:
        OrtBackend(plugin_dir, read_card_file(plugin_dir), provider="cpu")
    _assert_refusal(str(err.value))
    assert "window_decoder.onnx was exported with --msda plugin" in str(err.value)
    with pytest.raises(ConfigError) as err:
        open_model(plugin_dir)
    _assert_refusal(str(err.value))
    assert plugin_graph_refusal("the --onnx folder") in str(err.value)


# ---------------------------------------------------------------------- CUDA graphs (defect 7), GPU only
def _has_cuda_ep() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.gpu
@pytest.mark.skipif(not _has_cuda_ep(), reason="onnxruntime here has no CUDAExecutionProvider (CPU-only machine)")
def test_cuda_graphs_with_device_outputs_match_cpu(onnx_dir, ort_backend, box_frames):
    """CUDA EP with CUDA graphs (inputs and outputs bound to fixed device memory per shape, outputs copied to the
    pinned host buffers after each run) equals the CPU provider across prompt-set switches P1 → P2 → P1."""
    import cv2
    import numpy as np

    from actionvos.runtime.backends.onnxruntime import OrtBackend

    H, W = INPUT_SIZE
    frames = [np.ascontiguousarray(cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA)) for f in box_frames[:3]]
    rng = np.random.default_rng(0)
    sets = {}
    for name, (P, L) in {"P1": (2, 8), "P2": (3, 12)}.items():
        ids = rng.integers(3, 200, size=(P, L)).astype(np.int64)
        sets[name] = (ids, np.ones((P, L), np.int64))
    gpu = OrtBackend(onnx_dir, provider="cuda", cuda_graph=True)
    try:
        assert gpu.cuda_graph
        for name in ("P1", "P2", "P1"):
            tg, tc = gpu.bind_text(gpu.encode_text(*sets[name])), ort_backend.bind_text(ort_backend.encode_text(*sets[name]))
            for f in frames:
                a = gpu.decode([gpu.encode_frame(f)], tg)
                a = [np.array(a.query_logits), np.array(a.mask_logits), np.array(a.positive_logit)]
                b = ort_backend.decode([ort_backend.encode_frame(f)], tc)
                for x, y in zip(a, [b.query_logits, b.mask_logits, b.positive_logit]):
                    np.testing.assert_allclose(x, y, atol=1e-3, err_msg=name)
    finally:
        gpu.close()
