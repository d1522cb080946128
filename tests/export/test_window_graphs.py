"""The window graphs of every export folder: ``frame_encoder.onnx`` once per frame, ``window_decoder.onnx`` over T
stacked frames with a dynamic T, against the PyTorch stage methods (``model.decode(model.encode_frames(clip))``).

T = 1 (a causal window of one frame), 3 (the export's ``--frames``, the profile's opt), 5 (another length) and 36
(the official rule's full clip, the card's ``max_clip_frames``) run through one graph. The demo model (d = 64) at
96x128 keeps T = 36 fast on 2 CPU cores; real frames of box.mp4, prompts through the demo tokenizer.
Tolerances: ``spec.tolerances['fp32']``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _export_helpers import torch_reference, torch_text
from actionvos.errors import InputError
from actionvos.export.compare import assert_outputs_close
from actionvos.export.custom_ops import ort_session
from actionvos.export.metadata import decode_metadata, read_onnx_metadata, read_onnx_props, spec_from_metadata
from actionvos.export.spec import (DECODER_OUTPUTS, FEATURE_NAMES, FRAME_ENCODER, GRAPH_FILES, GRAPH_ROLES, SEGMENTER,
                                   TEXT_FEATURE_NAMES, WINDOW_DECODER)

PROMPTS = ["box used in the action of move box", "right hand used in the action of move box"]


@pytest.fixture(scope="module")
def demo(demo_export):
    """(model, tokenizer, export result, frame-encoder session, window-decoder session)."""
    from actionvos.artifacts import read_checkpoint_artifact
    from actionvos.demo import DEMO_CHECKPOINT

    art = read_checkpoint_artifact(DEMO_CHECKPOINT)
    out = demo_export.output
    return (art.model, art.tokenizer, demo_export, ort_session(out / GRAPH_FILES[FRAME_ENCODER], threads=2),
            ort_session(out / GRAPH_FILES[WINDOW_DECODER], threads=2))


@pytest.fixture(scope="module")
def box36(shared) -> np.ndarray:
    """36 consecutive frames of box.mp4 resized to 96x128 (cv2 bilinear), ``[36, 3, 96, 128]`` uint8 RGB."""
    import cv2

    cap = cv2.VideoCapture(str(shared / "data" / "videos" / "box.mp4"))
    frames = []
    while len(frames) < 36:
        ok, bgr = cap.read()
        assert ok, "box.mp4 ended early"
        frames.append(cv2.cvtColor(cv2.resize(bgr, (128, 96), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB))
    cap.release()
    return np.ascontiguousarray(np.stack(frames).transpose(0, 3, 1, 2))


def _text(model, tokenizer):
    ids, am = tokenizer(PROMPTS)
    return torch_text(model, ids, am)


def _encode(enc_sess, frames: np.ndarray) -> dict[str, np.ndarray]:
    """Frame encoder once per frame, features concatenated on axis 0 (oldest first)."""
    per_frame = [dict(zip(FEATURE_NAMES, enc_sess.run(None, {"frames": frames[i:i + 1]}))) for i in range(len(frames))]
    return {n: np.concatenate([f[n] for f in per_frame]) for n in FEATURE_NAMES}


def test_window_decoder_has_dynamic_T_with_profile(demo):
    """T is a named axis of every feature input and decoder output; its TensorRT profile is 1 / --frames / the
    card's max_clip_frames; the frame encoder is static."""
    _, _, res, _, _ = demo
    dec = spec_from_metadata(read_onnx_metadata(res.onnx[WINDOW_DECODER]))
    assert dec == res.specs[WINDOW_DECODER]
    assert (dec.dims["T"].min, dec.dims["T"].opt, dec.dims["T"].max) == (1, 3, res.card.input.max_clip_frames) == (1, 3, 36)
    assert all(dec.tensor(n).shape[0] == "T" for n in FEATURE_NAMES)
    assert all(dec.tensor(n).shape[1] == "T" for n in DECODER_OUTPUTS if n != "pred_positives")
    assert dec.input_names == [*FEATURE_NAMES, *TEXT_FEATURE_NAMES] and dec.output_names == list(DECODER_OUTPUTS)
    lo, opt, hi = dec.profile()["res2"]
    assert (lo[0], opt[0], hi[0]) == (1, 3, 36)
    enc = res.specs[FRAME_ENCODER]
    assert enc.dims == {} and enc.input_names == ["frames"] and enc.output_names == list(FEATURE_NAMES)
    assert enc.tensor("frames").shape == (1, 3, 96, 128)
    seg = res.specs[SEGMENTER]
    assert seg.tensor("frames").shape[0] == 3 and "T" not in seg.dims  # --frames: the segmenter's static T
    with pytest.raises(ValueError, match=r"T=37 is outside the exported range \[1, 36\]"):
        dec.check_feed(dec.dummy_inputs(T=37, P=1, L=4))


def test_frame_encoder_parity(demo, box36):
    model, _, res, enc_sess, _ = demo
    spec = res.specs[FRAME_ENCODER]
    for i in (0, 17):
        got = dict(zip(spec.output_names, enc_sess.run(None, {"frames": box36[i:i + 1]})))
        with torch.no_grad():
            from actionvos.model.postprocess import normalize_frames

            f = model.encode_frames(normalize_frames(box36[i:i + 1].transpose(0, 2, 3, 1)))
        want = dict(zip(FEATURE_NAMES, (t.numpy() for t in (f.backbone[0], *f.proj))))
        assert_outputs_close(got, want, spec)


@pytest.mark.parametrize("T", [1, 3, 5, 36], ids=["T1", "T3_opt", "T5", "T36_full_clip"])
def test_window_decoder_parity_any_T(demo, box36, T):
    """frame encoder per frame + window decoder over T frames == PyTorch decode(encode_frames(clip)) for any T."""
    model, tokenizer, res, enc_sess, dec_sess = demo
    spec = res.specs[WINDOW_DECODER]
    start = 36 - T  # the last T frames (the official rule's shorter last clip is such a tail)
    clip = box36[start:]
    tf = _text(model, tokenizer)
    feed = {**_encode(enc_sess, clip), "text_word": tf.word.numpy(), "text_mask": tf.mask.numpy(),
            "text_sentence": tf.sentence.numpy()}
    assert spec.check_feed(feed)["T"] == T
    got = dict(zip(spec.output_names, dec_sess.run(None, feed)))
    for name, shape in spec.shapes(T=T, P=len(PROMPTS), L=feed["text_word"].shape[1]).items():
        if name in got:
            assert got[name].shape == shape, name
    assert_outputs_close(got, torch_reference(model, clip, tf), spec)


def test_window_graphs_equal_segmenter_at_its_T(demo, box36):
    """At the segmenter's static T the split graphs compute what segmenter.onnx computes."""
    model, tokenizer, res, enc_sess, dec_sess = demo
    seg_sess = ort_session(res.onnx[SEGMENTER], threads=2)
    clip = box36[:3]
    tf = _text(model, tokenizer)
    text = {"text_word": tf.word.numpy(), "text_mask": tf.mask.numpy(), "text_sentence": tf.sentence.numpy()}
    split = dict(zip(DECODER_OUTPUTS, dec_sess.run(None, {**_encode(enc_sess, clip), **text})))
    whole = dict(zip(DECODER_OUTPUTS, seg_sess.run(None, {"frames": clip, **text})))
    assert_outputs_close(split, whole, res.specs[SEGMENTER])


def test_window_decoder_plugin_graph(tiny, tiny_plugin_export):
    """--msda plugin: the window decoder carries the custom op and matches PyTorch at a T other than --frames (2)."""
    import onnx

    from actionvos.export.trt_plugin import ONNX_DOMAIN

    out = tiny_plugin_export.output
    n_layers = tiny.model.cfg.enc_layers + tiny.model.cfg.dec_layers
    m = onnx.load(str(out / GRAPH_FILES[WINDOW_DECODER]), load_external_data=False)
    assert sum(n.domain == ONNX_DOMAIN for n in m.graph.node) == n_layers
    enc = ort_session(out / GRAPH_FILES[FRAME_ENCODER], threads=2)
    dec = ort_session(out / GRAPH_FILES[WINDOW_DECODER], threads=2)
    frames = np.concatenate([tiny.frames_tchw, tiny.frames_tchw[:1]])  # T = 3
    tf = torch_text(tiny.model, tiny.inputs["input_ids"], tiny.inputs["attention_mask"])
    feed = {**_encode(enc, frames), "text_word": tf.word.numpy(), "text_mask": tf.mask.numpy(),
            "text_sentence": tf.sentence.numpy()}
    spec = tiny_plugin_export.specs[WINDOW_DECODER]
    got = dict(zip(spec.output_names, dec.run(None, feed)))
    assert_outputs_close(got, torch_reference(tiny.model, frames, tf), spec)


def test_every_graph_carries_the_card_and_the_folder_its_tokenizer(demo_export):
    """card.json == the card in each graph's metadata; tokenizer/ holds the checkpoint's tokenizer whose hash is the
    card's; the card says what this folder is (input size, MSDA, precision; no static window, since the window
    decoder takes any T) and keeps the checkpoint's facts."""
    from actionvos.artifacts import read_checkpoint_artifact, read_folder_artifact
    from actionvos.card import card_from_onnx, read_card_file
    from actionvos.demo import DEMO_CHECKPOINT
    from actionvos.tokenizer import TOKENIZER_FILES, Tokenizer

    out = demo_export.output
    card = read_card_file(out)
    assert card == demo_export.card
    for role in GRAPH_ROLES:
        assert card_from_onnx(read_onnx_metadata(out / GRAPH_FILES[role]), role) == card, role
    tok = Tokenizer.from_dir(out / "tokenizer")
    assert sorted(p.name for p in (out / "tokenizer").iterdir()) == sorted(TOKENIZER_FILES)
    assert tok.sha256 == card.tokenizer_sha256
    src = read_checkpoint_artifact(DEMO_CHECKPOINT)
    assert tok.files == src.tokenizer.files
    assert card.checkpoint_sha256 == src.card.checkpoint_sha256 and card.thresholds == src.card.thresholds
    assert card.prompt_template == src.card.prompt_template and card.config == src.card.config
    assert (card.input.size, card.window, card.msda, card.precision.value) == ((96, 128), None, "onnx", "fp32")
    assert card.input.short_side == src.card.input.short_side
    folder_card, folder_tok = read_folder_artifact(out)  # what `--onnx DIR` reads: no --tokenizer needed
    assert folder_card == card and folder_tok.sha256 == card.tokenizer_sha256


def test_one_metadata_reader(demo_export, tmp_path):
    """The protobuf scanner (no onnx, no session) sees exactly what the onnx package sees, for every graph."""
    import onnx

    for role in GRAPH_ROLES:
        path = demo_export.output / GRAPH_FILES[role]
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        assert read_onnx_props(path) == props
        assert read_onnx_metadata(path) == decode_metadata(props)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xff\xff\xff\x0f")
    with pytest.raises(InputError, match="not a readable ONNX model"):
        read_onnx_metadata(bad)
    with pytest.raises(InputError, match="does not exist"):
        read_onnx_metadata(tmp_path / "missing.onnx")
