"""Pictures of a run: each object's positive probability per frame against the gate threshold.

:func:`plot_positive_probs` draws the ``{video}_positive_prob.png`` of ``actionvos run``: one line per object in its
overlay colour (:func:`actionvos.render.object_colour`), the threshold as a dashed line with the passing region
shaded, and, with the official clip rule, the per-clip value drawn as steps with the clip boundaries marked.
matplotlib's object API with the Agg canvas is used (no pyplot global state, no display needed, thread-safe);
the PNG is written atomically.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from actionvos.io_utils import atomic_write_bytes
from actionvos.render import format_threshold, object_colour

__all__ = ["plot_positive_probs"]


def plot_positive_probs(
    path: str | os.PathLike,
    series: Mapping[str, Sequence[float | None]],
    threshold: float,
    *,
    fps: float | None = None,
    clip_starts: Sequence[int] | None = None,
    title: str | None = None,
    size_px: tuple[int, int] = (1000, 420),
    dpi: int = 100,
) -> Path:
    """Plot each object's positive probability per frame with the gate threshold; write a PNG atomically.

    Args:
        path: the ``.png`` to write (its folder is created if missing).
        series: object name → positive probability in [0, 1] per frame (frame index = list index), in prompt order
            (object ``i`` gets overlay colour ``i + 1``). ``None`` / NaN leave a gap (no result for that frame).
        threshold: the gate threshold in [0, 1] the run used (model card or ``--pos-thres``).
        fps: frames per second of the video; when given, a second x axis on top shows time in seconds.
        clip_starts: frame indices where the clips of the official clip rule start (ascending, first 0). When
            given, each series is drawn as steps (one value per clip) and the boundaries as faint vertical lines;
            None (causal / streaming rule) draws a line through the per-frame values.
        title: the figure title (e.g. ``"box: positive probability (clip rule)"``); None = no title.
        size_px: ``(width, height)`` of the PNG in pixels.
        dpi: resolution (font sizes are in points, so a larger dpi with the same ``size_px`` gives larger text).

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: ``series`` is empty, a value is outside [0, 1], ``threshold`` is outside [0, 1], ``fps`` <= 0,
            or ``clip_starts`` is not ascending.
        OSError / InputError: the PNG cannot be written (see :func:`actionvos.io_utils.atomic_write_bytes`).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if not series:
        raise ValueError("series is empty: give at least one object's positive probabilities")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be > 0, got {fps}")
    arrays = {}
    for name, values in series.items():
        y = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        finite = y[np.isfinite(y)]
        if finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
            raise ValueError(f"positive probabilities of {name!r} must be in [0, 1], got {finite.min():.3f}..{finite.max():.3f}")
        arrays[name] = y
    n_frames = max(len(y) for y in arrays.values())
    if clip_starts is not None:
        starts = [int(s) for s in clip_starts]
        if any(b <= a for a, b in zip(starts, starts[1:])):
            raise ValueError(f"clip_starts must be ascending, got {starts}")

    w_px, h_px = size_px
    fig = Figure(figsize=(w_px / dpi, h_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    thr = float(threshold)
    ax.axhspan(thr, 1.02, color="#2e7d32", alpha=0.07, lw=0)
    ax.axhline(thr, color="#333333", ls="--", lw=1.2)
    if clip_starts is not None:
        for s in clip_starts[1:]:
            ax.axvline(s, color="#999999", lw=0.6, alpha=0.5)
    handles = []
    for i, (name, y) in enumerate(arrays.items()):
        colour = tuple(c / 255.0 for c in object_colour(i))
        x = np.arange(len(y))
        if clip_starts is not None and len(y):
            # steps: frame k's value holds over [k, k + 1), so each clip is one flat segment ending at its last frame
            ax.step(np.append(x, len(y)), np.append(y, y[-1]), where="post", color=colour, lw=2.0)
        else:
            ax.plot(x, y, color=colour, lw=1.8)
        finite = y[np.isfinite(y)]
        share = f"{(finite >= thr).mean() * 100:.0f}% of frames pass" if finite.size else "no result"
        handles.append(Line2D([], [], color=colour, lw=2.0, label=f"{name} ({share})"))
    handles.append(Line2D([], [], color="#333333", ls="--", lw=1.2, label=f"gate threshold {format_threshold(thr)}"))
    handles.append(Patch(color="#2e7d32", alpha=0.15, label="passes the gate"))
    if clip_starts is not None:
        handles.append(Line2D([], [], color="#999999", lw=0.6, label=f"clip boundary ({len(clip_starts)} clips)"))

    ax.set_xlim(0, max(n_frames, 1))
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("frame index")
    ax.set_ylabel("positive probability (0–1)")
    ax.grid(True, axis="y", alpha=0.3)
    if fps is not None:
        top = ax.secondary_xaxis("top", functions=(lambda f: f / fps, lambda s: s * fps))
        top.set_xlabel("time (s)")
    if title:
        ax.set_title(title, fontsize="medium", pad=8)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    fig.tight_layout()

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
