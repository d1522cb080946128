"""The released architecture (``rf_r101_actionvos``, random weights, built with ``build_model``) exported at
360x640 with ``--msda onnx`` and run in ONNX Runtime: output shapes from the spec, finite values, and parity with
PyTorch at the spec's fp32 tolerances (measured: text 3e-6, logits 1.4e-6, boxes 1.6e-7, mask logits 8e-5 for
values up to ~20, positives 2.4e-7). The window graphs run too: frame encoder per frame, window decoder at T = 2
(a T other than the export's ``--frames 1``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _export_helpers import torch_reference, torch_text
from actionvos.export.compare import OutputDiff, compare_outputs
from actionvos.export.custom_ops import ort_session
from actionvos.export.exporter import export_model
from actionvos.export.spec import FEATURE_NAMES, FRAME_ENCODER, SEGMENTER, TEXT_ENCODER, WINDOW_DECODER

pytestmark = pytest.mark.slow


def test_r101_export_runs_in_onnxruntime(tmp_path):
    from actionvos.model.builder import build_model

    torch.manual_seed(0)
    model = build_model("rf_r101_actionvos")
    res = export_model(None, tmp_path / "r101", model=model, msda="onnx", frames=1, height=360, width=640,
                       max_prompts=4)
    specs = res.specs
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(1, 3, 360, 640), dtype=np.uint8)
    feed_text = specs[TEXT_ENCODER].dummy_inputs(seed=1, P=2, L=10)
    text_sess = ort_session(res.output / "text_encoder.onnx", threads=2)
    text_out = dict(zip(specs[TEXT_ENCODER].output_names, text_sess.run(None, feed_text)))
    del text_sess
    tf = torch_text(model, feed_text["input_ids"], feed_text["attention_mask"])
    diffs = compare_outputs(text_out, {"text_word": tf.word.numpy(), "text_mask": tf.mask.numpy(),
                                       "text_sentence": tf.sentence.numpy()}, specs[TEXT_ENCODER])
    seg_sess = ort_session(res.output / "segmenter.onnx", threads=2)
    got = dict(zip(specs[SEGMENTER].output_names, seg_sess.run(None, {"frames": frames, **text_out})))
    for name, shape in specs[SEGMENTER].shapes(P=2, L=10).items():
        if name in got:
            assert got[name].shape == shape and np.isfinite(got[name]).all(), name
    assert got["pred_masks"].shape == (2, 1, 5, 90, 160)
    want = torch_reference(model, frames, tf)
    diffs += compare_outputs(got, want, specs[SEGMENTER])
    del seg_sess
    clip = rng.integers(0, 256, size=(2, 3, 360, 640), dtype=np.uint8)
    enc = ort_session(res.onnx[FRAME_ENCODER], threads=2)
    feats = [enc.run(None, {"frames": clip[i:i + 1]}) for i in range(2)]
    del enc
    dec = ort_session(res.onnx[WINDOW_DECODER], threads=2)
    feed = {n: np.concatenate([f[k] for f in feats]) for k, n in enumerate(FEATURE_NAMES)}
    got = dict(zip(specs[WINDOW_DECODER].output_names, dec.run(None, {**feed, **text_out})))
    assert got["pred_masks"].shape == (2, 2, 5, 90, 160)
    diffs += compare_outputs(got, torch_reference(model, clip, tf), specs[WINDOW_DECODER])
    failed: list[OutputDiff] = [d for d in diffs if not d.ok]
    assert not failed, "\n".join(str(d) for d in diffs)
