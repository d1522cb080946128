"""Where calibration clips are taken from a video: evenly spread over time, ``T`` consecutive frames each."""

from __future__ import annotations

import numpy as np

__all__ = ["sample_clip_ends", "clip_window"]


def sample_clip_ends(num_frames: int, clip_frames: int, per_video: int) -> list[int]:
    """Indices of the last frame of each sampled clip: ``per_video`` clips evenly spaced over the video.

    The first clip ends at frame ``T - 1`` (or the last frame when the video is shorter than ``T``), the last at
    the final frame; duplicates are dropped, so short videos give fewer clips.
    """
    if num_frames < 1:
        return []
    first = min(clip_frames - 1, num_frames - 1)
    ends = np.round(np.linspace(first, num_frames - 1, max(1, per_video))).astype(np.int64)
    return sorted(set(int(e) for e in ends))


def clip_window(frames_by_index: dict[int, np.ndarray], end: int, T: int) -> tuple[list[np.ndarray], list[int]]:
    """The ``T`` frames ending at ``end`` (oldest first), repeating the oldest available frame when ``end < T - 1``."""
    idx = [max(0, i) for i in range(end - T + 1, end + 1)]
    return [frames_by_index[i] for i in idx], idx
