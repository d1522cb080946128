"""actionvos.plots.plot_positive_probs: the run's positive-probability picture."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402

from actionvos.plots import plot_positive_probs  # noqa: E402
from actionvos.render import object_colour  # noqa: E402


def _pixels_near(img: np.ndarray, colour, tol: int = 12) -> int:
    return int((np.abs(img[..., :3].astype(int) - np.array(colour)).max(-1) <= tol).sum())


def _clipwise(values, clip_len, n):
    out = []
    for k, v in enumerate(values):
        out += [v] * max(0, min(clip_len, n - k * clip_len))
    return out


def test_plot_png_size_and_one_line_per_object_in_overlay_colours(tmp_path):
    n, clip = 100, 36
    series = {"box": _clipwise([0.72, 0.68, 0.75], clip, n), "pen": _clipwise([0.30, 0.25, 0.31], clip, n),
              "right hand": _clipwise([0.90, 0.92, 0.88], clip, n)}
    path = plot_positive_probs(tmp_path / "v_positive_prob.png", series, 0.62, fps=30.0, clip_starts=[0, 36, 72],
                               title="v: positive probability (clip rule)")
    assert path == tmp_path / "v_positive_prob.png"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (1000, 420)
        img = np.asarray(im.convert("RGB"))
    for i in range(3):
        assert _pixels_near(img, object_colour(i)) > 200, f"no line in object {i}'s colour"
    assert _pixels_near(img, object_colour(3)) < 20  # no fourth object
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v_positive_prob.png"]  # atomic: no temporary left

    # two objects only: the third colour disappears; another size is honoured
    path = plot_positive_probs(tmp_path / "two.png", {"box": series["box"], "pen": series["pen"]}, 0.75,
                               size_px=(800, 300))
    with Image.open(path) as im:
        assert im.size == (800, 300)
        img = np.asarray(im.convert("RGB"))
    assert _pixels_near(img, object_colour(0)) > 100 and _pixels_near(img, object_colour(2)) < 20


def test_plot_threshold_line_sits_at_the_threshold(tmp_path):
    """The dashed threshold line is drawn at the given probability (its row moves with the threshold)."""
    rows = []
    for thr in (0.25, 0.75):
        path = plot_positive_probs(tmp_path / f"t{thr}.png", {"box": [0.5] * 50}, thr)
        img = np.asarray(Image.open(path).convert("RGB")).astype(int)
        inner = img[:, 150:600]  # inside the axes, left of the legend
        hi, lo = inner.max(-1), inner.min(-1)
        grey = (hi < 170) & (lo > 20) & (hi - lo < 25)  # the line is #333333 (anti-aliased); the spines are black
        dark = grey.sum(1)
        assert dark.max() > 150  # a dashed line across the axes
        rows.append(int(np.argmax(dark)))
    assert rows[0] > rows[1] + 100  # y grows downwards: 0.25 is lower in the picture than 0.75


def test_plot_gaps_and_bad_input(tmp_path):
    path = plot_positive_probs(tmp_path / "gaps.png", {"box": [None] * 5 + [0.8] * 20, "pen": [float("nan")] * 25}, 0.6)
    assert path.is_file()
    with pytest.raises(ValueError, match="empty"):
        plot_positive_probs(tmp_path / "x.png", {}, 0.6)
    with pytest.raises(ValueError, match=r"'box'.*\[0, 1\]"):
        plot_positive_probs(tmp_path / "x.png", {"box": [0.2, 1.7]}, 0.6)
    with pytest.raises(ValueError, match="threshold"):
        plot_positive_probs(tmp_path / "x.png", {"box": [0.2]}, 75)
    with pytest.raises(ValueError, match="ascending"):
        plot_positive_probs(tmp_path / "x.png", {"box": [0.2] * 10}, 0.6, clip_starts=[0, 5, 5])
    with pytest.raises(ValueError, match="fps"):
        plot_positive_probs(tmp_path / "x.png", {"box": [0.2] * 10}, 0.6, fps=0)
    assert not (tmp_path / "x.png").exists()
