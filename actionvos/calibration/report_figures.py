"""Pictures of the accuracy report: where a candidate's masks differ from FP32 on its worst clips (matplotlib).

One PNG per candidate, one row per worst clip (lowest clip mask IoU), three panels on the clip's frame with the
lowest mask IoU, for the object (prompt) with the lowest IoU: the FP32 mask, the candidate's mask, and the
disagreement (red: FP32 only, blue: candidate only). Masks are the selected query's at the stride-4 mask
resolution, shown over the input frame (``H × W`` pixels) with nearest-neighbour upsampling.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from actionvos.io_utils import atomic_path

__all__ = ["WorstClip", "worst_clips_figure"]


@dataclass
class WorstClip:
    """One row of the picture.

    Attributes:
        name: clip name (``box@151``). prompt: the object's prompt name. frame: frame index within the clip.
        iou: that mask's IoU. clip_iou: the clip's mean IoU.
        rgb: ``[H, W, 3]`` uint8 input frame. ref, cand: ``[h, w]`` bool masks (FP32, candidate).
    """

    name: str
    prompt: str
    frame: int
    iou: float
    clip_iou: float
    rgb: np.ndarray
    ref: np.ndarray
    cand: np.ndarray


def _up(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a ``[h, w]`` mask to ``shape`` (H, W)."""
    h, w = mask.shape
    ys = np.minimum((np.arange(shape[0]) * h) // shape[0], h - 1)
    xs = np.minimum((np.arange(shape[1]) * w) // shape[1], w - 1)
    return mask[ys][:, xs]


def worst_clips_figure(rows: list[WorstClip], path: str | os.PathLike, candidate: str) -> Path:
    """Draw ``rows`` (FP32 mask, candidate mask, disagreement) into the PNG ``path`` (atomically); returns it.

    Raises:
        ValueError: ``rows`` is empty.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no clips to draw")
    path = Path(path)
    H, W = rows[0].rgb.shape[:2]
    fig_w = 3 * 3.2
    fig, axes = plt.subplots(len(rows), 3, figsize=(fig_w, len(rows) * 3.2 * H / W + 0.6), squeeze=False)
    for r, row in enumerate(rows):
        ref, cand = _up(row.ref, (H, W)), _up(row.cand, (H, W))
        base = row.rgb.astype(np.float32) / 255.0 * 0.6
        panels = []
        for m, color in ((ref, (0.1, 0.9, 0.1)), (cand, (0.1, 0.9, 0.1))):
            img = base.copy()
            img[m] = 0.5 * img[m] + 0.5 * np.asarray(color)
            panels.append(img)
        diff = base.copy()
        diff[ref & ~cand] = (0.95, 0.1, 0.1)
        diff[cand & ~ref] = (0.1, 0.3, 0.95)
        panels.append(diff)
        n_diff = int((row.ref ^ row.cand).sum())
        titles = (f"FP32 ({int(row.ref.sum())} px)", f"{candidate} ({int(row.cand.sum())} px)",
                  f"differ: {n_diff} px, IoU {row.iou:.3f}")
        for c in range(3):
            ax = axes[r, c]
            ax.imshow(np.clip(panels[c], 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(titles[c], fontsize=8)
        axes[r, 0].set_ylabel(f"{row.name} t={row.frame}\n{row.prompt}\nclip IoU {row.clip_iou:.3f}", fontsize=7)
    fig.suptitle(f"{candidate} vs FP32: worst clips (mask px at stride 4)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
