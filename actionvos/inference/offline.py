"""Offline inference with the official rule (spec 3.1 and 3.9): whole clips of up to 36 frames, all prompts batched.

Per clip the backbone runs once (``encode_frames``), the prompts' text features come from a per-run cache
(``encode_text`` once per distinct prompt set), ``decode`` handles every prompt in one batch, and the
post-processing picks one query per prompt for the clip, applies the positive gate and merges the prompts
into one label map per frame at the original frame size.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from actionvos.errors import ConfigError, InputError
from actionvos.inference.prompts import Prompt
from actionvos.inference.video_io import InputSource, VideoSource
from actionvos.io_utils import safe_child
from actionvos.inference.writers import (ObjectStats, OverlayWriter, Summary, VideoSummary, summary_on_exit,
                                         write_label_png)

__all__ = ["StageTimer", "TextCache", "tokenize_prompts", "run_offline", "STAGES"]

log = logging.getLogger(__name__)
_POSTPROCESS_FRAMES = 4  # frames whose masks are upsampled to full resolution at once

#: Stages timed in ``summary.json`` (seconds, summed over the run).
STAGES = ("read_frames", "preprocess", "encode_text", "encode_frames", "decode", "postprocess", "write")


@dataclass
class StageTimer:
    """Wall-clock seconds per stage; on CUDA the device is synchronised before each reading."""

    cuda: bool = False
    totals: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.totals[stage] = self.totals.get(stage, 0.0) + time.perf_counter() - t0

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()


@dataclass
class TextCache:
    """Text features per prompt set (tuple of prompt texts), computed once per run and reused for every clip."""

    tokens: dict[tuple[str, ...], tuple[Any, Any]] = field(default_factory=dict)
    features: dict[tuple[str, ...], Any] = field(default_factory=dict)


def tokenize_prompts(tokenizer, prompts: list[Prompt], cfg) -> tuple[Any, Any]:
    """Tokenise ``prompts`` (padded to the longest, spec 3.3) and check them against the checkpoint's text encoder.

    Returns:
        ``(input_ids, attention_mask)``, both ``[P, L]`` int64 tensors on the CPU.

    Raises:
        ConfigError: a token id is outside the checkpoint's vocabulary (the tokenizer does not belong to it).
        InputError: a prompt is longer than the text encoder's position table.
    """
    from actionvos.model.text import tokenize

    ids, mask = tokenize(tokenizer, [p.text for p in prompts])
    vocab = cfg.text.vocab_size
    top = int(ids.max()) if ids.numel() else 0
    if top >= vocab:
        raise ConfigError(
            f"the tokenizer produces token id {top} but the checkpoint's text encoder has only {vocab} tokens; "
            "pass the tokenizer that belongs to this checkpoint with --tokenizer"
        )
    limit = cfg.text.max_position_embeddings - 2  # RoBERTa positions start after the padding index
    if ids.shape[1] > limit:
        longest = max(prompts, key=lambda p: len(p.text))
        raise InputError(f"prompt {longest.text[:60]!r}... is {ids.shape[1]} tokens long; the text encoder takes at most {limit}")
    return ids, mask


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _timed_clips(video: VideoSource, max_frames: int, timer: StageTimer):
    """Iterate ``video.clips`` with the time spent reading/decoding frames charged to ``read_frames``."""
    it = video.clips(max_frames)
    while True:
        with timer("read_frames"):
            clip = next(it, None)
        if clip is None:
            return
        yield clip


def _run_video(video, prompts, text_feats, model, cfg, output_dir: Path, device, pos_thres, overlay, timer, bar, vsum) -> None:
    """Segment one video clip by clip, writing PNGs (and overlay frames) as each clip finishes."""
    frame_dir = safe_child(output_dir, video.name, what="video name", nested=True)
    frame_dir.mkdir(parents=True, exist_ok=True)
    vsum.objects = [ObjectStats(name=p.name, prompt=p.text, label=i + 1) for i, p in enumerate(prompts)]
    overlay_path = safe_child(output_dir, f"{video.name}_overlay.mp4", what="video name", nested=True)
    writer_cm = OverlayWriter(overlay_path, video.fps, video.size, [p.name for p in prompts], threshold=pos_thres) if overlay else contextlib.nullcontext()
    try:
        with writer_cm as writer:
            _segment_clips(video, text_feats, model, cfg, frame_dir, device, pos_thres, writer, timer, bar, vsum)
    finally:
        vsum.overlay = overlay_path.name if overlay and overlay_path.is_file() else None
        vsum.record_decode(video)


def _segment_clips(video, text_feats, model, cfg, frame_dir: Path, device, pos_thres, writer, timer, bar, vsum) -> None:
    """The per-clip loop: backbone once, all prompts decoded in one batch, spec 3.9 post-processing, writes."""
    import torch

    from actionvos.model.postprocess import clip_predictions, merge_labels, preprocess_frames

    for clip in _timed_clips(video, cfg.max_clip_frames, timer):
        with timer("preprocess"):
            frames = preprocess_frames(clip.frames, short_side=cfg.short_side).to(device)
        with torch.no_grad():
            with timer("encode_frames"):
                frame_feats = model.encode_frames(frames)
            with timer("decode"):
                outputs = model.decode(frame_feats, text_feats)
        with timer("postprocess"):  # full-resolution masks a few frames at a time (memory stays bounded)
            chunks = []
            for t0 in range(0, len(clip.names), _POSTPROCESS_FRAMES):
                pred = clip_predictions(outputs, out_size=video.size, pos_thres=pos_thres,
                                        frames=slice(t0, t0 + _POSTPROCESS_FRAMES))
                chunks.append(_to_numpy(merge_labels(pred.mask_prob_gated, threshold=cfg.mask_threshold,
                                                     background=cfg.background_prob)))
            labels = np.concatenate(chunks).astype(np.uint8, copy=False)
            pos = [float(v) for v in _to_numpy(pred.positive_prob).reshape(-1)]
            passed = [bool(v) for v in _to_numpy(pred.passed_gate).reshape(-1)]
        for obj in vsum.objects:
            obj.add_clip(pos[obj.label - 1], passed[obj.label - 1])
        with timer("write"):
            for t, name in enumerate(clip.names):
                if writer is not None:
                    writer.write(clip.frames[t], labels[t], pos, passed)
                write_label_png(frame_dir / f"{name}.png", labels[t])
                vsum.frames_written += 1
                for obj in vsum.objects:
                    obj.add_frame(labels[t])
                bar.update(1)
        vsum.clips += 1


def run_offline(
    source: InputSource,
    prompts: list[Prompt] | None,
    model,
    tokenizer,
    cfg,
    output_dir: str | Path,
    device: str = "cpu",
    pos_thres: float | None = None,
    progress: bool = True,
    overlay: bool = True,
    weights_note: str | None = None,
    settings: dict[str, Any] | None = None,
) -> Summary:
    """Segment every video of ``source`` and write ``{output_dir}/{video}/{frame}.png``, overlays and ``summary.json``.

    Args:
        source: from :func:`actionvos.inference.video_io.open_source`.
        prompts: the run's prompts (object ``i`` gets label ``i + 1``); a video's own prompts (expression
            file) take precedence. ``None`` is allowed only when every video has its own.
        model: an ActionVOS model with ``encode_text`` / ``encode_frames`` / ``decode``, already on ``device``.
        tokenizer: from :func:`actionvos.model.text.load_tokenizer`.
        cfg: the model's :class:`~actionvos.model.config.ModelConfig` (short side 360, clips of 36 frames,
            mask threshold 0.5, background 0.1; spec 3.1 and 3.9).
        output_dir: created if needed; existing files with the same names are replaced.
        device: torch device string of ``model``.
        pos_thres: positive-gate threshold in [0, 1]; ``None`` uses ``cfg.pos_cls_thres`` (0.75).
        progress: show a progress bar on stderr.
        overlay: also write ``{output_dir}/{video}_overlay.mp4``.
        weights_note: stored in the summary (e.g. that the checkpoint has random weights).
        settings: extra settings to record in the summary (checkpoint path, tokenizer, ...).

    Returns:
        The :class:`~actionvos.inference.writers.Summary` also written to ``{output_dir}/summary.json``.

    Raises:
        InputError / ConfigError: missing prompts, prompts that do not fit the checkpoint's text encoder,
            a frame that cannot be read mid-run. ``summary.json`` is still written (with ``error``).
        KeyboardInterrupt: re-raised after the PNGs written so far are kept, the overlay is finalised and
            ``summary.json`` is written with ``interrupted: true``.
    """
    import torch
    from tqdm import tqdm

    output_dir = Path(output_dir)
    pos_thres = cfg.pos_cls_thres if pos_thres is None else float(pos_thres)
    if not 0.0 <= pos_thres <= 1.0:
        raise ConfigError(f"--pos-thres must be in [0, 1], got {pos_thres}")
    # Tokenise every prompt set before writing anything, so prompt problems fail early.
    cache = TextCache()
    plan = []
    for video in source.videos:
        vprompts = video.prompts or prompts
        if not vprompts:
            raise InputError(f"no prompts for video {video.name!r}; pass --action and --objects")
        key = tuple(p.text for p in vprompts)
        if key not in cache.tokens:
            cache.tokens[key] = tokenize_prompts(tokenizer, vprompts, cfg)
        plan.append((video, vprompts, key))

    summary = Summary(
        input=str(source.path),
        input_kind=source.kind,
        settings={
            "device": str(device),
            "pos_thres": pos_thres,
            "short_side": cfg.short_side,
            "max_clip_frames": cfg.max_clip_frames,
            "mask_threshold": cfg.mask_threshold,
            "background_prob": cfg.background_prob,
            "model": cfg.name,
            "overlay": overlay,
            **(settings or {}),
        },
        weights_note=weights_note,
    )
    timer = StageTimer(cuda=str(device).startswith("cuda"))
    output_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    total = sum(v.num_frames for v in source.videos)
    bar = tqdm(total=total, unit="frame", desc="actionvos run", disable=not progress, leave=False)

    def finish() -> None:
        bar.close()
        summary.timings_s = dict(timer.totals)

    with summary_on_exit(output_dir / "summary.json", summary, finish):
        for video, vprompts, key in plan:
            if key not in cache.features:
                ids, mask = cache.tokens[key]
                with timer("encode_text"), torch.no_grad():
                    cache.features[key] = model.encode_text(ids.to(device), mask.to(device))
            vsum = VideoSummary(name=video.name, size=tuple(video.size))
            summary.videos.append(vsum)
            log.debug("video %s: %d frames, %dx%d, %d prompts", video.name, video.num_frames, video.size[1], video.size[0], len(vprompts))
            _run_video(video, vprompts, cache.features[key], model, cfg, output_dir, device, pos_thres, overlay, timer, bar, vsum)
    return summary
