"""The export specs: torch-free import, named dynamic axes, profiles, dummy inputs, feed checks, round trip."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from actionvos.export.spec import (SEGMENTER, TEXT_ENCODER, ExportSpec, build_specs, feature_size, min_input_side)


@pytest.fixture(scope="module")
def specs():
    return build_specs(frames=2, height=360, width=640, max_prompts=8)


def test_spec_modules_import_without_torch():
    code = ("import sys; import actionvos.export.spec, actionvos.export.metadata, actionvos.export.compare, "
            "actionvos.export.custom_ops, actionvos.trt_api; "
            "bad = [m for m in ('torch', 'tensorrt', 'onnxruntime') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_io_names_and_shapes(specs):
    t, s = specs[TEXT_ENCODER], specs[SEGMENTER]
    assert t.input_names == ["input_ids", "attention_mask"]
    assert t.output_names == ["text_word", "text_mask", "text_sentence"]
    assert s.input_names == ["frames", "text_word", "text_mask", "text_sentence"]
    assert s.output_names == ["pred_logits", "pred_boxes", "pred_masks", "pred_positives"]
    shapes = s.shapes(P=3, L=11)
    assert shapes["frames"] == (2, 3, 360, 640) and s.tensor("frames").dtype == "uint8"
    assert shapes["pred_masks"] == (3, 2, 5, 90, 160) and shapes["pred_positives"] == (3, 1)
    assert t.shapes(P=3, L=11)["text_mask"] == (3, 11) and t.tensor("text_mask").dtype == "bool"
    assert s.dynamic_axes()["text_word"] == {0: "P", 1: "L"} and "frames" not in s.dynamic_axes()
    assert s.has_msda and not t.has_msda


def test_profiles(specs):
    prof = specs[SEGMENTER].profile()
    assert prof["text_word"] == ((1, 2, 256), (2, 16, 256), (8, 64, 256))
    assert prof["frames"][0] == prof["frames"][2] == (2, 3, 360, 640)
    assert specs[TEXT_ENCODER].profile()["input_ids"] == ((1, 2), (2, 16), (8, 64))
    one = build_specs(frames=1, height=360, width=640, max_prompts=1)[SEGMENTER]
    assert one.dims["P"].min == one.dims["P"].opt == one.dims["P"].max == 1


def test_dummy_inputs_are_valid_and_traceable(specs):
    t = specs[TEXT_ENCODER]
    d = t.dummy_inputs()
    assert t.trace_dims["P"] >= 2  # a P=1 trace would bake P=1 into decode's broadcast
    assert d["input_ids"].shape == (2, 8) and (d["input_ids"][:, 0] == 0).all()
    assert d["attention_mask"][-1].sum() < 8  # the last prompt is padded
    assert ((d["input_ids"] == 1) == (d["attention_mask"] == 0)).all()
    s = specs[SEGMENTER].dummy_inputs(P=3, L=5)
    assert s["frames"].dtype == np.uint8 and s["text_mask"].dtype == np.bool_
    assert specs[SEGMENTER].check_feed(s) == {"P": 3, "L": 5}


def test_check_feed_errors(specs):
    s = specs[SEGMENTER]
    feed = s.dummy_inputs(P=2, L=4)
    with pytest.raises(ValueError, match="dtype float32, expected uint8"):
        s.check_feed({**feed, "frames": feed["frames"].astype(np.float32)})
    with pytest.raises(ValueError, match="axis 2 is 100"):
        s.check_feed({**feed, "frames": np.zeros((2, 3, 100, 640), np.uint8)})
    with pytest.raises(ValueError, match="P=3 but another input has P=2"):
        s.check_feed({**feed, "text_sentence": np.zeros((3, 256), np.float32)})
    with pytest.raises(ValueError, match="outside the exported range"):
        s.check_feed(s.dummy_inputs(P=9, L=4))
    with pytest.raises(ValueError, match="missing inputs"):
        s.check_feed({"frames": feed["frames"]})


def test_round_trip(specs):
    for spec in specs.values():
        assert ExportSpec.from_dict(spec.to_dict()) == spec
    assert specs[SEGMENTER].tolerance("pred_masks").atol > 0
    assert specs[TEXT_ENCODER].tolerance("text_mask").atol == 0


def test_geometry():
    assert [feature_size(360, s) for s in (4, 8, 16, 32, 64)] == [90, 45, 23, 12, 6]
    assert [feature_size(640, s) for s in (4, 8, 16, 32, 64)] == [160, 80, 40, 20, 10]
    assert min_input_side((8, 4, 2, 1)) == 29 and min_input_side((1, 1, 1, 1)) == 1
