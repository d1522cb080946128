"""Streaming over files: ``actionvos run --stream`` runs the same :class:`StreamSession` frame by frame and writes the
offline outputs (palette PNGs, overlay MP4, ``summary.json``) with :mod:`actionvos.inference.writers`.

Differences from the offline rule (spec 3.9) are the causal ones of :mod:`actionvos.runtime.temporal`: the query
and the gate are decided per frame from the frames seen so far, and the pixel decoder sees ``window`` frames.
In ``summary.json`` each object's ``positive_prob`` / ``passed_gate`` lists therefore hold one entry per frame
(the running value), ``clips`` counts frames, and ``settings.streaming`` records the rule.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from actionvos.errors import ConfigError, InputError
from actionvos.inference.prompts import Prompt
from actionvos.inference.video_io import InputSource, open_source
from actionvos.io_utils import safe_child
from actionvos.inference.writers import (ObjectStats, OverlayWriter, Summary, VideoSummary, summary_on_exit,
                                         write_label_png)
from actionvos.runtime.backends.base import Backend
from actionvos.runtime.session import STEP_STAGES, StreamConfig, StreamSession
from actionvos.runtime.tokenizer import BpeTokenizer

__all__ = ["run_stream"]

log = logging.getLogger(__name__)

#: Frames read per chunk from a video source (memory bound only; the session sees one frame at a time).
_READ_CHUNK = 16


def run_stream(
    source: InputSource | str | Path,
    prompts: list[Prompt] | None,
    backend: StreamSession | Backend,
    output_dir: str | Path,
    *,
    tokenizer: BpeTokenizer | None = None,
    config: StreamConfig | None = None,
    overlay: bool = True,
    progress: bool = True,
    weights_note: str | None = None,
    settings: dict[str, Any] | None = None,
    split: str = "val",
) -> Summary:
    """Segment every video of ``source`` with a streaming session; write ``{output_dir}/{video}/{frame}.png``,
    ``{output_dir}/{video}_overlay.mp4`` and ``{output_dir}/summary.json`` like the offline path.

    Args:
        source: an :class:`~actionvos.inference.video_io.InputSource` or a path for
            :func:`~actionvos.inference.video_io.open_source` (video, frame folder, expression file).
        prompts: the run's prompts (object ``i`` → label ``i + 1``); a video's own prompts (expression file) win.
        backend: a :class:`~actionvos.runtime.session.StreamSession` (its backend, window, temporal rule and prompt
            cache are used), or a :class:`~actionvos.runtime.backends.base.Backend` together with ``tokenizer``
            (and optionally ``config``) to build one. The session is reset at the start of every video.
        tokenizer: :class:`~actionvos.runtime.tokenizer.BpeTokenizer`, needed when ``backend`` is a Backend.
        config: :class:`~actionvos.runtime.session.StreamConfig` when ``backend`` is a Backend (default settings).
        output_dir: created if needed.
        overlay: also write the overlay MP4s.
        progress: show a progress bar on stderr.
        weights_note: stored in the summary (default: the backend's own note, e.g. random weights).
        settings: extra settings for the summary (checkpoint path, tokenizer, ...).
        split: split folder for expression-file input.
    Returns:
        The :class:`~actionvos.inference.writers.Summary` written to ``summary.json``; ``timings_s`` holds seconds
        per stage (``read_frames``, ``encode_text``, the session's step stages, ``write``).
    Raises:
        InputError: no prompts for a video, unreadable frames (``summary.json`` is still written with ``error``).
        KeyboardInterrupt: re-raised after the files written so far are finalised (``interrupted: true``).
    """
    from tqdm import tqdm

    if isinstance(backend, StreamSession):
        session = backend
    else:
        if tokenizer is None:
            raise ConfigError("run_stream with a Backend needs the tokenizer (tokenizer=BpeTokenizer.from_dir(...))")
        session = StreamSession(backend, config, tokenizer)
    if not isinstance(source, InputSource):
        source = open_source(source, split=split)
    output_dir = Path(output_dir)
    for video in source.videos:
        if not (video.prompts or prompts):
            raise InputError(f"no prompts for video {video.name!r}; pass --action and --objects")
    info = session.backend.info
    summary = Summary(
        input=str(source.path), input_kind=source.kind,
        settings={"mode": "stream", "backend": info.name, "pos_thres": session.pos_thres, "short_side": info.short_side,
                  "mask_threshold": session.mask_threshold, "background_prob": session.background,
                  "overlay": overlay, "streaming": session.config.to_dict(), **(settings or {})},
        weights_note=weights_note if weights_note is not None else info.weights_note)
    timings = {k: 0.0 for k in ("read_frames", "encode_text", *[s for s in STEP_STAGES if s != "total"], "write")}
    output_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=sum(v.num_frames for v in source.videos), unit="frame", desc="actionvos run --stream",
               disable=not progress, leave=False)
    def finish() -> None:
        bar.close()
        summary.timings_s = timings
        summary.settings["prompt_cache"] = vars(session.cache.stats).copy()

    with summary_on_exit(output_dir / "summary.json", summary, finish):
        for video in source.videos:
            vprompts = video.prompts or prompts
            session.reset()
            session.set_prompts(prompts=vprompts)
            timings["encode_text"] += session.last_text_ms / 1e3
            vsum = VideoSummary(name=video.name, size=tuple(video.size))
            vsum.objects = [ObjectStats(name=p.name, prompt=p.text, label=i + 1) for i, p in enumerate(vprompts)]
            summary.videos.append(vsum)
            frame_dir = safe_child(output_dir, video.name, what="video name", nested=True)
            frame_dir.mkdir(parents=True, exist_ok=True)
            names = [p.name for p in vprompts]
            writer_cm = (OverlayWriter(safe_child(output_dir, f"{video.name}_overlay.mp4", what="video name", nested=True), video.fps, video.size, names,
                                       threshold=session.pos_thres)
                         if overlay else contextlib.nullcontext())
            try:
                with writer_cm as writer:
                    clips = video.clips(_READ_CHUNK)
                    while True:
                        t0 = time.perf_counter()
                        clip = next(clips, None)
                        timings["read_frames"] += time.perf_counter() - t0
                        if clip is None:
                            break
                        for name, frame in zip(clip.names, clip.frames):
                            result = session.step(frame)
                            for k, v in result.timings_ms.items():
                                if k != "total":
                                    timings[k] += v / 1e3
                            t0 = time.perf_counter()
                            pos = [o.positive_prob for o in result.objects]
                            passed = [o.passed_gate for o in result.objects]
                            write_label_png(frame_dir / f"{name}.png", result.labels)
                            for obj in vsum.objects:
                                obj.add_clip(pos[obj.label - 1], passed[obj.label - 1])
                                obj.add_frame(result.labels)
                            if overlay:
                                writer.write(frame, result.labels, pos, passed)
                            vsum.frames_written += 1
                            vsum.clips += 1
                            timings["write"] += time.perf_counter() - t0
                            bar.update(1)
            finally:  # name the overlay only if it was finalised (an empty or interrupted one is dropped)
                vsum.record_decode(video)
                if overlay and (output_dir / f"{video.name}_overlay.mp4").is_file():
                    vsum.overlay = (output_dir / f"{video.name}_overlay.mp4").name
    return summary
