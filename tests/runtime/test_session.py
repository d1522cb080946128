"""The streaming session on real frames of box.mp4 (tiny random checkpoint, 48x64 model input).

* ONNX Runtime (CPU) and PyTorch give the same masks, queries and gate decisions (fp32 tolerances below).
* With ``window = 1`` and the ``mean`` rule, the running query scores and positive probability after frame n equal
  the offline rule (spec 3.9) on the clip 0..n, because everything but the pixel decoder works per frame.
* With ``window = T`` over a T-frame clip, the newest frame's mask equals the offline clip's last frame.
"""

from __future__ import annotations

import numpy as np
import pytest

from actionvos.errors import ConfigError, InputError
from actionvos.runtime.session import StreamConfig, StreamSession
from actionvos.runtime.temporal import RunningAverage

from rt_common import ACTION, INPUT_SIZE, OBJECTS

#: fp32 parity between backends: probabilities (after sigmoid) and positive probabilities.
PROB_ATOL = 1e-4
POS_ATOL = 1e-5


def _run(backend, tokenizer, frames, **cfg):
    s = StreamSession(backend, StreamConfig(return_probs=True, **cfg), tokenizer)
    s.set_prompts(ACTION, OBJECTS)
    return [s.step(f) for f in frames]


def test_ort_and_pytorch_streams_agree(ort_backend, torch_backend, tokenizer, box_frames):
    frames = box_frames[:6]
    a = _run(ort_backend, tokenizer, frames)
    b = _run(torch_backend, tokenizer, frames)
    for ra, rb in zip(a, b):
        assert ra.size == rb.size == (480, 640) and ra.labels.shape == (480, 640)
        np.testing.assert_array_equal(ra.labels, rb.labels)
        for oa, ob in zip(ra.objects, rb.objects):
            assert oa.prob.shape == (480, 640) and oa.prob.dtype == np.float32
            np.testing.assert_allclose(oa.prob, ob.prob, atol=PROB_ATOL)
            assert oa.selected_query == ob.selected_query
            assert abs(oa.positive_prob - ob.positive_prob) < POS_ATOL
            assert oa.passed_gate == ob.passed_gate
            np.testing.assert_array_equal(oa.mask, ob.mask)
        assert set(ra.timings_ms) == {"resize", "encode_frame", "decode", "postprocess", "total"}


def test_running_mean_equals_offline_rule(torch_backend, tokenizer, box_frames):
    """Causal ``mean`` rule after n frames == offline query scores / positive gate of the clip 0..n (window 1)."""
    import torch

    from actionvos.model.postprocess import clip_predictions, normalize_frames
    from actionvos.pipeline.frames import resize_frame

    frames = box_frames[:5]
    results = _run(torch_backend, tokenizer, frames)
    small = np.stack([resize_frame(f, INPUT_SIZE) for f in frames])
    ids, mask = tokenizer([p.text for p in StreamSession(torch_backend, None, tokenizer).set_prompts(ACTION, OBJECTS)])
    model = torch_backend.model
    with torch.no_grad():
        out = model(normalize_frames(small), torch.from_numpy(ids), torch.from_numpy(mask))
    pred = clip_predictions(out, out_size=(480, 640), pos_thres=torch_backend.info.card.thresholds.pos_cls_thres)
    last = results[-1]
    for i, o in enumerate(last.objects):
        np.testing.assert_allclose(o.query_scores, pred.query_scores[i].numpy(), atol=1e-5)
        assert o.selected_query == int(pred.selected_query[i])
        assert abs(o.positive_prob - float(pred.positive_prob[i])) < 1e-5
        assert o.passed_gate == bool(pred.passed_gate[i])


def test_window_reuses_features_and_matches_offline_clip(torch_backend, tokenizer, box_frames):
    import torch

    from actionvos.model.postprocess import clip_predictions, normalize_frames
    from actionvos.pipeline.frames import resize_frame

    T = 3
    frames = box_frames[:T]
    calls = {"n": 0}
    orig = torch_backend.model.encode_frames

    def counting(x, *a, **k):
        calls["n"] += 1
        assert x.shape[0] == 1, "the backbone must run on one frame per step"
        return orig(x, *a, **k)

    torch_backend.model.encode_frames = counting
    try:
        results = _run(torch_backend, tokenizer, frames, window=T)
    finally:
        del torch_backend.model.encode_frames
    assert calls["n"] == T
    s = StreamSession(torch_backend, None, tokenizer)
    ids, mask = tokenizer([p.text for p in s.set_prompts(ACTION, OBJECTS)])
    small = np.stack([resize_frame(f, INPUT_SIZE) for f in frames])
    with torch.no_grad():
        out = torch_backend.model(normalize_frames(small), torch.from_numpy(ids), torch.from_numpy(mask))
    pred = clip_predictions(out, out_size=(480, 640), pos_thres=torch_backend.info.card.thresholds.pos_cls_thres)
    for i, o in enumerate(results[-1].objects):
        assert o.selected_query == int(pred.selected_query[i])
        np.testing.assert_allclose(o.prob, pred.mask_prob[i, -1].numpy(), atol=1e-4)


def test_window_must_fit_the_graph(ort_backend, tokenizer):
    """The window decoder takes 1..max_clip_frames frames: a longer causal window is refused before any frame."""
    with pytest.raises(ConfigError, match="--window"):
        StreamSession(ort_backend, StreamConfig(window=ort_backend.info.card.input.max_clip_frames + 1), tokenizer)


def test_errors_and_sizes(ort_backend, tokenizer, box_frames):
    s = StreamSession(ort_backend, StreamConfig(), tokenizer)
    with pytest.raises(InputError, match="set_prompts"):
        s.step(box_frames[0])
    s.set_prompts(prompts=["box used in the action of move box"])
    with pytest.raises(InputError, match="uint8"):
        s.step(box_frames[0].astype(np.float32))
    with pytest.raises(InputError, match="either"):
        s.set_prompts("move box", "box", prompts=["x"])
    with pytest.raises(InputError):
        s.set_prompts("move box", "box,,pen")
    small = box_frames[0][::4, ::4].copy()  # 120x160: masks come back at the frame's own size
    r = s.step(small)
    assert r.labels.shape == (120, 160) and r.objects[0].mask.shape == (120, 160) and r.objects[0].prob is None
    with pytest.raises(ConfigError):
        StreamSession(ort_backend, StreamConfig(temporal="median"), tokenizer)
    with pytest.raises(ConfigError):
        StreamSession(ort_backend, StreamConfig(pos_thres=1.5), tokenizer)


def test_ema_rule():
    r = RunningAverage("ema", horizon=4)
    vals = [r.update(np.array([x])).copy()[0] for x in (1.0, 3.0, 5.0)]
    assert vals == pytest.approx([1.0, 2.0, 3.0])  # running mean while n <= horizon
    for _ in range(40):
        v = r.update(np.array([10.0]))[0]
    assert v == pytest.approx(10.0, abs=1e-3)  # forgets the past with time constant 4
    m = RunningAverage("mean")
    for x in (1.0, 3.0, 5.0, 7.0):
        m.update(np.array([x]))
    assert m.value[0] == pytest.approx(4.0)


def test_set_prompts_restarts_the_statistics(ort_backend, tokenizer, box_frames):
    s = StreamSession(ort_backend, StreamConfig(temporal="ema", horizon=5), tokenizer)
    s.set_prompts(ACTION, OBJECTS)
    for f in box_frames[:3]:
        s.step(f)
    assert s.steps_since_prompts == 3 and s.positive.count == 3
    s.set_prompts("rotate bottle", "bottle")
    assert s.steps_since_prompts == 0 and s.positive.count == 0
    r = s.step(box_frames[3])
    assert [o.name for o in r.objects] == ["bottle"] and r.index == 3
