"""Bad input to the exporter: each case raises one clear ActionVOSError before anything is written, and an
interrupted export leaves the output directory absent or unchanged."""

from __future__ import annotations

import shutil
import subprocess
import textwrap

import pytest
import torch

from actionvos.errors import CheckpointError, ConfigError, InputError
from actionvos.export import exporter
from actionvos.export.exporter import export_model

TINY = dict(frames=2, height=96, width=160)


@pytest.fixture
def TOK(tiny_tokenizer_dir):
    """``tokenizer=`` of the tiny reference checkpoint (official style: it carries none)."""
    return dict(tokenizer=str(tiny_tokenizer_dir))


def _no_leftovers(parent, name):
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def test_checkpoint_of_another_architecture(tmp_path):
    ckpt = tmp_path / "detr.pth"
    torch.save({"model": {"backbone.body.conv1.weight": torch.zeros(64, 3, 7, 7),
                          "class_embed.weight": torch.zeros(92, 256)}}, ckpt)
    with pytest.raises(CheckpointError, match="not an ActionVOS/ReferFormer checkpoint"):
        export_model(ckpt, tmp_path / "out", **TINY)
    assert not (tmp_path / "out").exists() and not _no_leftovers(tmp_path, "out")


def test_checkpoint_preset_mismatch(tiny, tmp_path, TOK):
    """--preset of another architecture: refused (the checkpoint reader checks the tokenizer against the preset's
    vocabulary first, then the weights), nothing written."""
    with pytest.raises((CheckpointError, ConfigError),
                       match="does not match the model architecture|model's text encoder has 50265"):
        export_model(tiny.checkpoint, tmp_path / "out", preset="rf_r50_actionvos", **TINY, **TOK)
    assert not (tmp_path / "out").exists()


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        export_model(tmp_path / "nope.pth", tmp_path / "out", **TINY)


def test_official_checkpoint_needs_tokenizer(tiny, tmp_path, capsys):
    """A checkpoint without an embedded tokenizer (official) and no --tokenizer: one line naming the fix, nothing
    written."""
    from actionvos.export.cli import main

    with pytest.raises(InputError, match="carries no tokenizer.*pass --tokenizer with the folder"):
        export_model(tiny.checkpoint, tmp_path / "out", **TINY)
    assert not (tmp_path / "out").exists() and not _no_leftovers(tmp_path, "out")
    with pytest.raises(SystemExit) as exc:
        main([str(tiny.checkpoint), "--output", str(tmp_path / "out"), "--height", "96", "--width", "160"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "roberta-base's vocab.json and merges.txt" in err[-1] and "Traceback" not in "\n".join(err)


def test_tokenizer_of_another_model(tiny, tmp_path, tiny_tokenizer_dir):
    """A tokenizer with more tokens (1200) than the tiny reference model's text encoder (1000): refused before any
    work, for a checkpoint and for a model object."""
    import json

    big = tmp_path / "big_tok"
    shutil.copytree(tiny_tokenizer_dir, big)
    vocab = json.loads((big / "vocab.json").read_text(encoding="utf-8"))
    vocab.update({f"<more_{i}>": i for i in range(len(vocab), 1200)})
    (big / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(ConfigError, match="has 1200 tokens but the model's text encoder has 1000"):
        export_model(tiny.checkpoint, tmp_path / "out", tokenizer=str(big), **TINY)
    with pytest.raises(ConfigError, match="has 1200 tokens but the model's text encoder has 1000"):
        export_model(None, tmp_path / "out", model=tiny.model, tokenizer=str(big), **TINY)
    assert not (tmp_path / "out").exists() and not _no_leftovers(tmp_path, "out")


@pytest.mark.parametrize("opset,msda,match", [
    (13, "plugin", "--opset 13 is unsupported"),
    (21, "plugin", "--opset 21 is unsupported"),
    (15, "onnx", "needs --opset >= 16"),
])
def test_unsupported_opset(tiny, tmp_path, opset, msda, match):
    with pytest.raises(ConfigError, match=match):
        export_model(tiny.checkpoint, tmp_path / "out", opset=opset, msda=msda, **TINY)
    assert not (tmp_path / "out").exists()


def test_existing_output_without_force(tiny, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(InputError, match="pass --force"):
        export_model(tiny.checkpoint, out, **TINY)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        export_model(tiny.checkpoint, tmp_path / "afile", **TINY)


@pytest.mark.parametrize("kwargs,match", [
    (dict(frames=2, height=28, width=160), "--height 28 is too small.*>= 29"),
    (dict(frames=2, height=96, width=16), "--width 16 is too small"),
    (dict(frames=2, height=5000, width=160), "larger than 4096"),
    (dict(frames=0, height=96, width=160), "--frames 0 is out of range"),
    (dict(frames=37, height=96, width=160), "--frames 37 is out of range"),
    (dict(frames=2, height=96, width=160, max_prompts=0), "--max-prompts 0"),
    (dict(frames=2, height=96, width=160, max_tokens=600), "--max-tokens 600"),
])
def test_sizes_the_model_cannot_take(tiny, tmp_path, kwargs, match, TOK):
    with pytest.raises(ConfigError, match=match):
        export_model(tiny.checkpoint, tmp_path / "out", **kwargs, **TOK)


@pytest.mark.parametrize("kwargs,match", [
    (dict(msda="cuda"), "unknown --msda"),
    (dict(fmt="tflite"), "unknown --format"),
    (dict(preset="rf_r18"), "unknown preset"),
])
def test_option_combinations(tiny, tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        export_model(tiny.checkpoint, tmp_path / "out", **TINY, **kwargs)


def test_missing_optional_tools(tiny, tmp_path, monkeypatch):
    real = exporter._module_available
    monkeypatch.setattr(exporter, "_module_available", lambda n: False if n in ("onnxsim", "tensorrt") else real(n))
    with pytest.raises(ConfigError, match="pip install onnxsim"):
        export_model(tiny.checkpoint, tmp_path / "out", simplify=True, **TINY)
    with pytest.raises(ConfigError, match="needs the Python package 'tensorrt'"):
        export_model(tiny.checkpoint, tmp_path / "out", fmt="engine", **TINY)


def test_engine_without_gpu(tiny, tmp_path, monkeypatch):
    real = exporter._module_available
    monkeypatch.setattr(exporter, "_module_available", lambda n: True if n == "tensorrt" else real(n))
    monkeypatch.setattr("actionvos.trt_api.gpu_compute_capability", lambda: None)
    with pytest.raises(ConfigError, match="needs an NVIDIA GPU"):
        export_model(tiny.checkpoint, tmp_path / "out", fmt="engine", msda="onnx", **TINY)


def _fake_plugin_library(tmp_path, version: int):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build a fake plugin library")
    src = tmp_path / "fake.c"
    src.write_text(textwrap.dedent(f"""
        int actionvos_msda_trt_version(void) {{ return {version}; }}
        void* getCreators(int* n) {{ *n = 0; return 0; }}
    """))
    lib = tmp_path / "libactionvos_msda_plugin.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


def test_plugin_library_of_wrong_trt_major(tiny, tmp_path, monkeypatch):
    """A plugin built against TensorRT 10.x headers is refused when TensorRT 11 is installed (and vice versa)."""
    from actionvos.export import trt_plugin

    lib = _fake_plugin_library(tmp_path, 100_401)  # built against 10.4.1
    real = exporter._module_available
    monkeypatch.setattr(exporter, "_module_available", lambda n: True if n == "tensorrt" else real(n))
    monkeypatch.setattr(trt_plugin, "installed_trt_major", lambda: 11)
    monkeypatch.setattr("actionvos.trt_api.gpu_compute_capability", lambda: ("Fake GPU", "9.0"))
    with pytest.raises(ConfigError, match=r"built against TensorRT 10\.4\.1 headers but TensorRT 11\.x is in use"):
        export_model(tiny.checkpoint, tmp_path / "out", fmt="engine", plugin_library=str(lib), **TINY)
    assert not (tmp_path / "out").exists()
    assert trt_plugin.check_plugin_trt_major(lib, trt_major=10) == (10, 4, 1)


@pytest.mark.parametrize("existing", [False, True], ids=["new_dir", "force_over_existing"])
def test_interrupted_export_leaves_nothing(tiny, tmp_path, monkeypatch, existing):
    """The segmenter (second graph) export raises: the output is absent (or the old one unchanged), no temp dirs."""
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        (out / "text_encoder.onnx").write_text("previous export")
    real = exporter.export_graph
    calls = []

    def flaky(module, spec, path, msda, model=None):
        calls.append(spec.role)
        if spec.role == "segmenter":
            assert (path.parent / "text_encoder.onnx").is_file()  # the first graph was written (to the temp dir)
            raise KeyboardInterrupt
        return real(module, spec, path, msda, model=model)

    monkeypatch.setattr(exporter, "export_graph", flaky)
    with pytest.raises(KeyboardInterrupt):
        export_model(None, out, model=tiny.model, force=existing, msda="plugin", **TINY)
    assert calls == ["text_encoder", "segmenter"]
    if existing:
        assert [p.name for p in out.iterdir()] == ["text_encoder.onnx"]
        assert (out / "text_encoder.onnx").read_text() == "previous export"
    else:
        assert not out.exists()
    assert not _no_leftovers(tmp_path, "out")
    from actionvos.model.msda import ms_deform_attn_core

    assert all(layer.self_attn.core is ms_deform_attn_core for layer in tiny.model.transformer.encoder.layers)
    assert all(layer.cross_attn.core is ms_deform_attn_core for layer in tiny.model.transformer.decoder.layers)
    assert not tiny.model.training


def test_cli_prints_one_line(tiny, tmp_path, capsys):
    from actionvos.export.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(tiny.checkpoint), "--output", str(tmp_path / "out"), "--opset", "12"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --opset 12 is unsupported") and "Traceback" not in "\n".join(err)


def test_actionvos_export_subcommand(tiny, tmp_path, monkeypatch, capsys):
    """``actionvos export`` is the same command, with the same one-line error policy."""
    import sys

    from actionvos import cli

    monkeypatch.setattr(sys, "argv", ["actionvos", "export", str(tiny.checkpoint), "--output", str(tmp_path / "o"),
                                      "--msda", "onnx", "--opset", "15"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --msda onnx needs --opset >= 16")


def test_fp16_export_runs_in_onnxruntime(tiny, tmp_path, tiny_tokenizer_dir):
    """--fp16 writes FP16 graphs (sensitive ops FP32, I/O types unchanged) whose masks agree with PyTorch FP32."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    from actionvos.card import read_card_file
    from actionvos.export.metadata import read_onnx_metadata

    export_model(tiny.checkpoint, tmp_path / "fp16", **TINY, msda="onnx", fp16=True, tokenizer=str(tiny_tokenizer_dir))
    seg = tmp_path / "fp16" / "segmenter.onnx"
    m = onnx.load(str(seg))
    meta = read_onnx_metadata(seg)
    assert meta["card"]["precision"] == "fp16" and read_card_file(tmp_path / "fp16").precision.value == "fp16"
    assert meta["calibration"]["keep_fp32"] and "precision" not in meta
    assert np.dtype(np.float16) in {onnx.helper.tensor_dtype_to_np_dtype(t.data_type) for t in m.graph.initializer}
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    opts = ort.SessionOptions()
    text = ort.InferenceSession(str(tmp_path / "fp16" / "text_encoder.onnx"), opts, providers=["CPUExecutionProvider"])
    segs = ort.InferenceSession(str(seg), opts, providers=["CPUExecutionProvider"])
    ids, am = tiny.inputs["input_ids"], tiny.inputs["attention_mask"]
    word, mask, sent = text.run(["text_word", "text_mask", "text_sentence"], {"input_ids": ids, "attention_mask": am})
    logits, masks = segs.run(["pred_logits", "pred_masks"], {"frames": tiny.frames_tchw, "text_word": word,
                                                             "text_mask": mask, "text_sentence": sent})
    with torch.no_grad():
        ref = tiny.model(torch.from_numpy(tiny.inputs["frames"]), torch.from_numpy(ids), torch.from_numpy(am))
    agree = ((masks > 0) == (ref["pred_masks"].numpy() > 0)).mean()
    assert np.isfinite(masks).all() and agree > 0.98, f"FP16 mask sign agreement {agree:.4f}"
    assert np.abs(logits - ref["pred_logits"].numpy()).max() < 0.05
