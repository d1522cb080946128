"""Prompt-embedding cache: counters, LRU bound, no text-encoder run for prompts already seen, atomic ``.npz``
persistence, and results unchanged by padding prompts of different lengths together."""

from __future__ import annotations

import numpy as np
import pytest

from actionvos.errors import ConfigError
from actionvos.runtime.prompt_cache import PromptCache, TextArrays
from actionvos.runtime.session import StreamConfig, StreamSession

from rt_common import ACTION, INPUT_SIZE, OBJECTS


class CountingBackend:
    """Delegates to a real backend and counts text-encoder runs (the cache must avoid them)."""

    def __init__(self, inner):
        self.inner = inner
        self.info = inner.info
        self.text_runs = 0

    def encode_text(self, ids, mask):
        self.text_runs += 1
        return self.inner.encode_text(ids, mask)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _fake_encode(texts):
    L = max(len(t) for t in texts) // 4 + 2
    word = np.stack([np.full((L, 4), len(t), np.float32) for t in texts])
    mask = np.zeros((len(texts), L), bool)
    for i, t in enumerate(texts):
        mask[i, len(t) // 4 + 2:] = True
    return TextArrays(word, mask, np.ones((len(texts), 4), np.float32))


def test_counters_and_lru_bound():
    cache = PromptCache("m", "t", capacity=3)
    cache.get_many(["a", "bb", "ccc"], _fake_encode)
    assert (cache.stats.misses, cache.stats.hits, cache.stats.encoder_runs) == (3, 0, 1)
    cache.get_many(["a", "bb"], _fake_encode)
    assert (cache.stats.misses, cache.stats.hits, cache.stats.encoder_runs) == (3, 2, 1)
    cache.get_many(["dddd"], _fake_encode)  # evicts the least recently used: "ccc"
    assert len(cache) == 3 and cache.stats.evictions == 1
    assert "ccc" not in cache and "a" in cache and "dddd" in cache
    for i in range(20):
        cache.get_many([f"p{i}"], _fake_encode)
    assert len(cache) == 3 and cache.stats.evictions == 21
    with pytest.raises(ConfigError):
        PromptCache("m", "t", capacity=0)


def test_cat_pads_and_masks():
    feats = PromptCache("m", "t").get_many(["a", "a much longer prompt here"], _fake_encode)
    assert feats.word.shape[0] == 2 and feats.mask.shape == feats.word.shape[:2]
    n0 = int((~feats.mask[0]).sum())
    assert feats.mask[0, n0:].all() and (feats.word[0, n0:] == 0).all()


def test_persistence_roundtrip(tmp_path):
    path = tmp_path / "cache" / "prompt_cache.npz"
    cache = PromptCache("m", "t", path=path)
    a = cache.get_many(["x y", "zzz"], _fake_encode)
    assert cache.save() and path.is_file()
    assert not list(path.parent.glob(".*tmp*")), "no temporary file may be left behind"
    again = PromptCache("m", "t", path=path)
    assert again.stats.loaded_from_disk == 2
    b = again.get_many(["x y", "zzz"], lambda t: pytest.fail("a persisted prompt went through the encoder"))
    np.testing.assert_array_equal(a.word, b.word)
    np.testing.assert_array_equal(a.mask, b.mask)
    other = PromptCache("other-model", "t", path=path)  # another model never gets these features
    assert len(other) == 0
    path.write_bytes(b"garbage")
    assert len(PromptCache("m", "t", path=path)) == 0  # a damaged cache is ignored, not fatal


def test_session_switching_prompts_costs_no_text_run(ort_backend, tokenizer, box_frames):
    be = CountingBackend(ort_backend)
    s = StreamSession(be, StreamConfig(), tokenizer)
    s.set_prompts(ACTION, OBJECTS)
    assert be.text_runs == 1 and s.cache.stats.misses == 3
    s.step(box_frames[0])
    s.set_prompts("rotate bottle", "bottle,lid")
    assert be.text_runs == 2
    s.set_prompts(ACTION, OBJECTS)  # seen before: served from the cache
    s.set_prompts("rotate bottle", "bottle,lid")
    s.set_prompts(ACTION, "pen,box")  # a subset in another order: still cached
    assert be.text_runs == 2
    assert s.cache.stats.hits == 3 + 2 + 2
    s.step(box_frames[1])


def test_cached_and_padded_features_give_the_same_result(ort_backend, tokenizer, box_frames):
    """Prompts encoded one by one (each trimmed, then padded together) equal a batch encoded together."""
    prompts = ["box used in the action of move box", "right hand used in the action of put cereals bag into cereals box"]
    ids, mask = tokenizer(prompts)
    batch = ort_backend.encode_text(ids, mask)
    one_by_one = TextArrays.cat([ort_backend.encode_text(*tokenizer([p])) for p in prompts])
    np.testing.assert_array_equal(batch.mask, one_by_one.mask)
    valid = ~batch.mask
    np.testing.assert_allclose(batch.word[valid], one_by_one.word[valid], atol=1e-4)
    np.testing.assert_allclose(batch.sentence, one_by_one.sentence, atol=1e-4)
    outs = []
    for feats in (batch, one_by_one):
        text = ort_backend.bind_text(feats)
        o = ort_backend.decode([ort_backend.encode_frame(box_frames[0][::10, ::10][:INPUT_SIZE[0], :INPUT_SIZE[1]].copy())], text)
        outs.append((o.mask_logits.copy(), o.positive_logit.copy()))
    np.testing.assert_allclose(outs[0][0], outs[1][0], atol=1e-3)
    np.testing.assert_allclose(outs[0][1], outs[1][1], atol=1e-4)


def test_open_session_persists_the_cache(onnx_dir, tok_dir, tmp_path):
    from actionvos.runtime.session_builder import open_session

    path = tmp_path / "pc.npz"
    with open_session("onnxruntime", onnx=onnx_dir, tokenizer=tok_dir, device="cpu", threads=2, prompt_cache=str(path)) as s:
        s.set_prompts(ACTION, OBJECTS)
        assert s.cache.stats.encoder_runs == 1
    assert path.is_file()
    with open_session("onnxruntime", onnx=onnx_dir, tokenizer=tok_dir, device="cpu", threads=2, prompt_cache=str(path)) as s:
        assert s.cache.stats.loaded_from_disk == 3
        s.set_prompts(ACTION, OBJECTS)
        assert s.cache.stats.encoder_runs == 0 and s.cache.stats.hits == 3
