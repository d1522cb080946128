"""Flat memory over long runs.

Two parts, because the real model is too slow on 2 CPU cores for 2000 steps inside the suite's time budget:

1. The session loop with the real ONNX Runtime backend (tiny model, 48x64 input, tiny 48x64 frames): 150 steps
   after warm-up, with prompt switches between cached sets. Python heap growth (tracemalloc, which also tracks
   numpy buffers) and process RSS growth (onnxruntime's arena) must stay flat.
2. The capture → latest-wins slot → HUD render + latency stats path of the camera app over 2000 frames of a tiny
   video read as fast as possible (no model): tracemalloc growth must stay flat.
"""

from __future__ import annotations

import gc
import time
import tracemalloc

import numpy as np

from actionvos.runtime.capture import CaptureThread, LatestFrameSlot, parse_source
from actionvos.runtime.hud import HudInfo, LatencyStats, RateMeter, render_frame
from actionvos.runtime.session import StreamConfig, StreamSession

from rt_common import write_small_video

#: Allowed growth after warm-up (bytes): far below one leaked frame-sized buffer per step.
HEAP_LIMIT = 256 * 1024
RSS_LIMIT = 8 * 1024 * 1024


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_session_loop_memory_is_flat(ort_backend, tokenizer):
    frames = [np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8) for i in range(8)]
    session = StreamSession(ort_backend, StreamConfig(temporal="ema", horizon=10), tokenizer)
    sets = [("move box", "box,pen"), ("rotate bottle", "bottle,lid")]
    for i in range(30):  # warm-up: arenas, caches, both prompt sets
        if i % 10 == 0:
            session.set_prompts(*sets[(i // 10) % 2])
        session.step(frames[i % 8])
    gc.collect()
    tracemalloc.start()
    base_heap = tracemalloc.get_traced_memory()[0]
    base_rss = _rss()
    for i in range(150):
        if i % 25 == 0:
            session.set_prompts(*sets[(i // 25) % 2])  # cached: no encoder run, no growth
        session.step(frames[i % 8])
    gc.collect()
    heap = tracemalloc.get_traced_memory()[0] - base_heap
    tracemalloc.stop()
    rss = _rss() - base_rss
    assert session.cache.stats.encoder_runs == 2
    assert heap < HEAP_LIMIT, f"Python heap grew by {heap} bytes over 150 steps"
    assert rss < RSS_LIMIT, f"RSS grew by {rss / 2**20:.1f} MiB over 150 steps"


def test_capture_and_hud_path_memory_is_flat_over_2000_frames(tmp_path):
    video = write_small_video(tmp_path / "long.mp4", frames=2000)
    slot = LatestFrameSlot()
    cap = CaptureThread(parse_source(str(video)), slot, realtime=False)
    latency, rate = LatencyStats(), RateMeter()
    labels = np.zeros((48, 64), np.uint8)
    labels[10:20, 10:30] = 1

    class Obj:
        name, positive_prob, passed_gate = "box", 0.9, True

    tracemalloc.start()
    cap.start()
    served, base = 0, None
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        item = slot.get(timeout=0.5)
        if item is None:
            if slot.closed:
                break
            continue
        served += 1
        latency.add(time.monotonic() - item.timestamp)
        rate.tick()
        hud = HudInfo(rate.rate, latency.percentile_ms(50), latency.percentile_ms(99), slot.dropped)
        render_frame(item.frame, labels, [Obj()], hud)
        if base is None and item.index >= 200:
            gc.collect()
            base = tracemalloc.get_traced_memory()[0]
    cap.stop()
    gc.collect()
    growth = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert cap.stats.frames_read == 2000 and cap.stats.ended
    assert served + slot.dropped == 2000
    assert growth < HEAP_LIMIT, f"capture/HUD path grew by {growth} bytes over 2000 frames"
