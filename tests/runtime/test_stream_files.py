"""``run_source`` with the causal driver (``actionvos run --stream``): files through the streaming session on ONNX
Runtime, written by the one sink (PNGs, H.264 overlay, probability plot, summary with the card)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from actionvos.inference.video_io import open_source
from actionvos.pipeline.run import run_source
from actionvos.runtime.session import StreamConfig, StreamSession

from helpers import make_small_clip
from rt_common import ACTION, OBJECTS


def test_stream_run_writes_the_sink_outputs(ort_backend, tokenizer, tmp_path):
    clip = make_small_clip(tmp_path / "clip.mp4", frames=6, short_side=96)
    session = StreamSession(ort_backend, StreamConfig(temporal="ema", horizon=4), tokenizer)
    prompts = session.set_prompts(ACTION, OBJECTS)
    out = tmp_path / "out"
    run_source(open_source(clip), prompts, session, out, progress=False, settings={"model": "x"})
    pngs = sorted((out / "clip").glob("*.png"))
    assert [p.stem for p in pngs] == [f"{i:05d}" for i in range(6)]
    img = Image.open(pngs[0])
    assert img.mode == "P" and img.size == (128, 96)
    assert (out / "clip_overlay.mp4").is_file() and (out / "clip_positive_prob.png").is_file()
    data = json.loads((out / "summary.json").read_text())
    s = data["settings"]
    assert s["rule"] == "causal" and s["backend"] == "onnxruntime-cpu"
    assert s["driver"]["temporal"] == "ema" and s["driver"]["horizon"] == 4
    assert s["card"]["checkpoint_sha256"] == ort_backend.info.card.checkpoint_sha256
    assert s["card"]["input"]["size"] == [48, 64] and s["card"]["precision"] == "fp32"
    assert s["prompt_cache"]["encoder_runs"] == 1
    v = data["videos"][0]
    assert v["frames_written"] == 6 and [o["name"] for o in v["objects"]] == ["box", "pen", "right hand"]
    assert all(len(o["positive_prob"]) == 6 and len(o["positive_prob_per_frame"]) == 6 for o in v["objects"])
    labels = np.asarray(Image.open(pngs[-1]))
    assert labels.max() <= 3
