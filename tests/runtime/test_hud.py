"""HUD pieces of the camera app: the prompt editor's keys, the overlay colours, bounded latency statistics."""

from __future__ import annotations

import numpy as np

from actionvos.inference.writers import davis_palette
from actionvos.runtime.hud import HudInfo, LatencyStats, PromptEditor, RateMeter, render_frame


def test_prompt_editor_keys():
    ed = PromptEditor("move box", "box,pen")
    assert ed.key(ord("x")) is None and not ed.editing
    ed.key(ord("o"))
    assert ed.editing and "objects: box,pen" in ed.status()
    for ch in ",cup":
        ed.key(ord(ch))
    ed.key(8)  # backspace
    ed.key(ord("p"))
    assert ed.key(13) == "apply" and ed.objects == "box,pen,cup" and not ed.editing
    ed.key(ord("a"))
    for _ in range(len("move box")):
        ed.key(127)
    for ch in "open fridge":
        ed.key(ord(ch))
    assert ed.key(27) is None and ed.action == "move box"  # Esc cancels
    assert ed.key(ord("q")) == "quit"


def test_render_frame_colours_masks_and_keeps_background():
    frame = np.full((60, 80, 3), 200, np.uint8)
    labels = np.zeros((60, 80), np.uint8)
    labels[40:, 40:] = 2

    class Obj:
        def __init__(self, name, p, ok):
            self.name, self.positive_prob, self.passed_gate = name, p, ok

    bgr = render_frame(frame, labels, [Obj("box", 0.2, False), Obj("pen", 0.9, True)], HudInfo(fps=10, dropped=3), alpha=0.5)
    assert bgr.shape == (60, 80, 3) and bgr.dtype == np.uint8
    r, g, b = davis_palette()[2].astype(int)
    expect_bgr = np.array([(200 + b) / 2, (200 + g) / 2, (200 + r) / 2])
    np.testing.assert_allclose(bgr[55, 75], expect_bgr, atol=1.5)
    np.testing.assert_array_equal(bgr[55, 5], [200, 200, 200])


def test_latency_stats_are_bounded():
    lat = LatencyStats(capacity=100)
    for i in range(10_000):
        lat.add(0.001 * (i % 100))
    assert lat.count == 10_000 and lat._buf.shape == (100,)
    assert 40 <= lat.percentile_ms(50) <= 60 and lat.percentile_ms(99) <= 99.1
    rate = RateMeter(window=5)
    for t in range(10):
        rate.tick(t * 0.1)
    assert abs(rate.rate - 10.0) < 1e-6
