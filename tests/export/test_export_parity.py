"""Graph-level parity on CPU: ONNX Runtime runs the exported graphs; PyTorch stage methods are the reference.

* ``--msda onnx`` graphs run in plain ONNX Runtime.
* ``--msda plugin`` graphs run in ONNX Runtime with the custom op supplied through onnxruntime-extensions
  (:func:`actionvos.export.custom_ops.ort_session`), after ``onnx.checker`` and strict shape inference.

Inputs: the tiny fixture (2 frames 96x160, its 2 prompts), the same clip with P = 1, 2 and 3 (3 is above the
profile's opt = 2, so dynamic P is shown), a different token count L, and real frames of box.mp4.
Tolerances come from the specs (``spec.tolerances['fp32']``).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from _export_helpers import torch_reference, torch_text
from actionvos.export.compare import assert_outputs_close
from actionvos.export.custom_ops import ort_session, register_onnx_schema
from actionvos.export.metadata import KEYS, read_onnx_metadata, spec_from_metadata
from actionvos.export.spec import GRAPH_FILES, GRAPH_ROLES, SEGMENTER, TEXT_ENCODER
from actionvos.export.trt_plugin import ONNX_DOMAIN, PLUGIN_NAME, PLUGIN_VERSION


def _text_feed(tf):
    return {"text_word": tf.word.numpy(), "text_mask": tf.mask.numpy(), "text_sentence": tf.sentence.numpy()}


@pytest.fixture(scope="module", params=["onnx", "plugin"])
def exported(request, tiny_onnx_export, tiny_plugin_export):
    """(mode, directory, text session, segmenter session, specs from metadata)."""
    out = tiny_onnx_export if request.param == "onnx" else tiny_plugin_export.output
    specs = {role: spec_from_metadata(read_onnx_metadata(out / GRAPH_FILES[role])) for role in (TEXT_ENCODER, SEGMENTER)}
    return (request.param, out, ort_session(out / "text_encoder.onnx", threads=2),
            ort_session(out / "segmenter.onnx", threads=2), specs)


def test_text_encoder_parity(exported, tiny):
    mode, _, text_sess, _, specs = exported
    spec = specs[TEXT_ENCODER]
    ids, am = tiny.inputs["input_ids"], tiny.inputs["attention_mask"]
    feeds = [(ids, am), (ids[:1], am[:1])]
    alt = spec.dummy_inputs(seed=3, P=3, L=20)  # L differs from the trace (8) and the fixture (12)
    feeds.append((alt["input_ids"], alt["attention_mask"]))
    for i, m in feeds:
        spec.check_feed({"input_ids": i, "attention_mask": m})
        got = dict(zip(spec.output_names, text_sess.run(None, {"input_ids": i, "attention_mask": m})))
        tf = torch_text(tiny.model, i, m)
        assert got["text_mask"].dtype == np.bool_
        assert_outputs_close(got, {"text_word": tf.word.numpy(), "text_mask": tf.mask.numpy(),
                                   "text_sentence": tf.sentence.numpy()}, spec)


@pytest.mark.parametrize("prompts", [[0, 1], [1], [1, 0, 1]], ids=["P2", "P1", "P3_above_opt"])
def test_segmenter_parity_fixture(exported, tiny, prompts):
    mode, _, _, seg_sess, specs = exported
    spec = specs[SEGMENTER]
    assert len(prompts) == 1 or spec.dims["P"].opt < 3
    tf = torch_text(tiny.model, tiny.inputs["input_ids"], tiny.inputs["attention_mask"]).select(prompts)
    feed = {"frames": tiny.frames_tchw, **_text_feed(tf)}
    assert spec.check_feed(feed)["P"] == len(prompts)
    got = dict(zip(spec.output_names, seg_sess.run(None, feed)))
    want = torch_reference(tiny.model, tiny.frames_tchw, tf)
    for name, shape in spec.shapes(P=len(prompts), L=feed["text_word"].shape[1]).items():
        if name in got:
            assert got[name].shape == shape, name
    assert_outputs_close(got, want, spec)


def test_segmenter_parity_real_frames(exported, tiny, shared):
    """Two real frames of box.mp4 resized to 96x160 (cv2, RGB) with the fixture's prompts."""
    import cv2

    mode, _, text_sess, seg_sess, specs = exported
    cap = cv2.VideoCapture(str(shared / "data" / "videos" / "box.mp4"))
    frames = []
    for idx in (0, 30):
        cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
        ok, bgr = cap.read()
        assert ok, f"cannot read frame {idx} of box.mp4"
        frames.append(cv2.cvtColor(cv2.resize(bgr, (160, 96), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB))
    cap.release()
    clip = np.ascontiguousarray(np.stack(frames).transpose(0, 3, 1, 2))
    ids, am = tiny.inputs["input_ids"], tiny.inputs["attention_mask"]
    # the whole ONNX chain: text graph outputs feed the segmenter graph
    text_out = dict(zip(specs[TEXT_ENCODER].output_names, text_sess.run(None, {"input_ids": ids, "attention_mask": am})))
    got = dict(zip(specs[SEGMENTER].output_names, seg_sess.run(None, {"frames": clip, **text_out})))
    want = torch_reference(tiny.model, clip, torch_text(tiny.model, ids, am))
    assert_outputs_close(got, want, specs[SEGMENTER])


def test_metadata_and_io(exported, tiny, tiny_tokenizer_dir):
    """Every graph: the documented keys only, the card (the export's facts), its spec, I/O names and shapes."""
    from actionvos.card import card_from_onnx, read_card_file
    from actionvos.tokenizer import Tokenizer

    mode, out, _, _, specs = exported
    card = read_card_file(out)
    assert card.msda == mode and card.config.name == "reference_tiny" and card.config.enc_layers == 1
    # no static window in the card: the window decoder takes any T (the segmenter's static T is in its spec)
    assert card.input.size == (96, 160) and card.window is None and card.precision.value == "fp32"
    assert specs[SEGMENTER].static["T"] == 2
    assert card.input.mean == pytest.approx((0.485, 0.456, 0.406)) and card.input.max_clip_frames == 36
    assert (card.thresholds.pos_cls_thres, card.thresholds.mask_threshold, card.thresholds.background_prob) == (0.75, 0.5, 0.1)
    assert "{object}" in card.prompt_template and len(card.checkpoint_sha256) == 16
    assert card.tokenizer_sha256 == Tokenizer.from_dir(tiny_tokenizer_dir).sha256
    for role in GRAPH_ROLES:
        path = out / GRAPH_FILES[role]
        meta = read_onnx_metadata(path)
        assert set(meta) <= set(KEYS) and meta["role"] == role and meta["format"] == "2"
        assert card_from_onnx(meta, str(path)) == card
        assert "torch" in meta["exporter"]
        spec = spec_from_metadata(meta)
        assert (spec.custom_domain, spec.custom_op, spec.custom_version) == (ONNX_DOMAIN, PLUGIN_NAME, PLUGIN_VERSION)
        model = onnx.load(str(path), load_external_data=False)
        assert [i.name for i in model.graph.input] == spec.input_names
        assert [o.name for o in model.graph.output] == spec.output_names
        for vi in list(model.graph.input) + list(model.graph.output):
            dims = [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
            assert tuple(dims) == spec.tensor(vi.name).shape, vi.name
    manifest = json.loads((out / "export_manifest.json").read_text())
    assert set(manifest["files"]) == set(GRAPH_ROLES)
    assert manifest["card"] == "card.json" and manifest["tokenizer"] == "tokenizer"
    assert manifest["options"]["msda"] == mode


def test_graph_structure(exported, tiny):
    """Plugin graphs: one custom node per MSDA layer with the contract's inputs; onnx graphs: GridSample only."""
    mode, out, _, _, _ = exported
    register_onnx_schema()
    model = onnx.load(str(out / "segmenter.onnx"))
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    custom = [n for n in model.graph.node if n.domain == ONNX_DOMAIN]
    n_layers = tiny.model.cfg.enc_layers + tiny.model.cfg.dec_layers
    if mode == "onnx":
        assert not custom
        assert any(n.op_type == "GridSample" for n in model.graph.node)
        assert ONNX_DOMAIN not in {o.domain for o in model.opset_import}
        return
    assert len(custom) == n_layers
    assert not any(n.op_type == "GridSample" for n in model.graph.node)
    assert {o.domain: o.version for o in model.opset_import}[ONNX_DOMAIN] == 1
    vinfo = {v.name: v for v in inferred.graph.value_info}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    consts = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node
              if n.op_type == "Constant"}
    for node in custom:
        assert node.op_type == PLUGIN_NAME and len(node.input) == 5 and len(node.output) == 1
        assert {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute} == {"plugin_version": b"1"}
        shapes = inits.get(node.input[1], consts.get(node.input[1]))
        starts = inits.get(node.input[2], consts.get(node.input[2]))
        assert shapes.dtype == np.int64 and starts.dtype == np.int64
        assert shapes.tolist() == [[12, 20], [6, 10], [3, 5], [2, 3]]  # strides 8..64 of 96x160
        assert starts.tolist() == [0, 240, 300, 315]
        out_t = vinfo[node.output[0]].type.tensor_type
        assert out_t.elem_type == onnx.TensorProto.FLOAT and len(out_t.shape.dim) == 3
        assert out_t.shape.dim[2].dim_value == 256  # M * D
        lq = out_t.shape.dim[1].dim_value
        assert lq in (321, 5)  # encoder: every pixel of the 4 levels; decoder: the 5 queries


@pytest.mark.parametrize("mode", ["onnx", "plugin"])
def test_simplified_export_parity(tiny, tmp_path, mode):
    """``--simplify`` (onnx-simplifier, optional) keeps the I/O, metadata and parity at P = 3 (above opt)."""
    pytest.importorskip("onnxsim", reason="onnxsim not installed")
    from actionvos.export.exporter import export_model

    res = export_model(None, tmp_path / "sim", model=tiny.model, msda=mode, simplify=True, frames=2, height=96,
                       width=160)
    spec = res.specs[SEGMENTER]
    assert read_onnx_metadata(res.onnx[SEGMENTER])["card"]["msda"] == mode
    tf = torch_text(tiny.model, tiny.inputs["input_ids"], tiny.inputs["attention_mask"]).select([1, 0, 1])
    got = dict(zip(spec.output_names, ort_session(res.onnx[SEGMENTER]).run(None, {"frames": tiny.frames_tchw,
                                                                                  **_text_feed(tf)})))
    assert_outputs_close(got, torch_reference(tiny.model, tiny.frames_tchw, tf), spec)
