"""``actionvos calibrate collect``: real clips + prompts, pre-processed exactly as the runtime feeds the graphs.

What is stored (the runtime's feed, :mod:`actionvos.runtime.session`; file layout in
:mod:`~actionvos.calibration.npz_store`):

* clips: each frame resized straight to the graph's input size ``H × W`` with
  :func:`actionvos.pipeline.frames.resize_frame` (PIL bilinear, as the runtime), kept as uint8 RGB, laid out
  ``[T, 3, H, W]`` like the segmenter input ``frames``. A clip is ``T`` consecutive frames (``T`` = the graph's
  static clip length); when a video is shorter than ``T`` the oldest frame is repeated, as the streaming window does.
* prompts: per prompt set the token ids from the model's tokenizer
  (:class:`~actionvos.tokenizer.Tokenizer`) and the text features of the FP32 text graph
  (``text_encoder.onnx`` in ONNX Runtime CPU, or the PyTorch model with ``--checkpoint``).
* sampling (default): ``per_video`` clips per video whose last frames are evenly spaced from the first to the last
  frame of the video (:func:`~actionvos.calibration.sampling.sample_clip_ends`), so calibration sees the whole
  video, not its first second.

The model facts (input size, prompt template, model hash, vocabulary, token limit) come from
:func:`actionvos.calibration.model_facts.read_model_facts` / :func:`~actionvos.calibration.model_facts.checkpoint_facts`.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from typing import Sequence

import numpy as np

from actionvos.calibration.clips import CalibrationData, PromptSet
from actionvos.calibration.common import load_graph_dir, require_ort_runnable
from actionvos.calibration.model_facts import checkpoint_facts
from actionvos.calibration.npz_store import FORMAT
from actionvos.calibration.sampling import clip_window, sample_clip_ends
from actionvos.calibration.sources import InputSpec, VideoInput, open_input
from actionvos.calibration.text_features import TextFeatureEncoder
from actionvos.errors import ConfigError, InputError

__all__ = ["collect_calibration"]

log = logging.getLogger(__name__)


def _versions() -> dict[str, str]:
    import onnxruntime

    import actionvos

    return {"actionvos": actionvos.__version__, "numpy": np.__version__, "onnxruntime": onnxruntime.__version__}


def collect_calibration(
    inputs: Sequence[InputSpec],
    *,
    tokenizer: str | os.PathLike,
    onnx_dir: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    height: int | None = None,
    width: int | None = None,
    frames: int = 1,
    per_video: int = 8,
    progress: bool = True,
    threads: int = 2,
) -> CalibrationData:
    """Collect calibration clips and prompt features.

    Args:
        inputs: the sources and their prompts (:class:`InputSpec`).
        tokenizer: folder with the model's ``vocab.json`` + ``merges.txt`` (or ``tokenizer.json``).
        onnx_dir: FP32 export directory: gives the input size ``T × H × W``, the prompt template, the model hash
            and the text features (``text_encoder.onnx`` in ONNX Runtime CPU). Exclusive with ``checkpoint``.
        checkpoint: ``.pth`` instead of ``onnx_dir``: text features from PyTorch, model hash = checkpoint SHA-256
            prefix (equal to the ``checkpoint_sha256`` of graphs exported from it); needs ``height``/``width``.
        height, width, frames: input size for ``checkpoint`` (pixels; clip length T).
        per_video: clips per video (or dataset sequence), evenly spread over time (>= 1).
        progress: show a progress bar on stderr.
        threads: ONNX Runtime intra-op threads.
    Returns:
        :class:`CalibrationData` (not yet written; see :func:`save_calibration`).
    Raises:
        ConfigError: neither or both of ``onnx_dir``/``checkpoint``; missing size with ``checkpoint``; ``per_video < 1``;
            token ids beyond the model's vocabulary.
        InputError: unreadable inputs, inputs without prompts, bad tokenizer folder, prompts longer than the graph takes.
    """
    from actionvos.pipeline.frames import resize_frame
    from actionvos.tokenizer import Tokenizer

    if (onnx_dir is None) == (checkpoint is None):
        raise ConfigError("pass exactly one of --onnx (the FP32 export directory) and --checkpoint")
    if per_video < 1:
        raise ConfigError(f"--per-video must be >= 1, got {per_video}")
    if not inputs:
        raise InputError("no --input given; pass videos, frame folders or a dataset root")
    graphs = None
    model = None
    if onnx_dir is not None:
        graphs = load_graph_dir(onnx_dir)
        require_ort_runnable(graphs, "calibrate collect")
        facts = graphs.facts
    else:
        if height is None or width is None:
            raise ConfigError("--checkpoint needs --height and --width (the export input size in pixels)")
        from actionvos.artifacts import read_checkpoint_artifact

        art = read_checkpoint_artifact(checkpoint, tokenizer=tokenizer)
        model = art.model.eval()
        facts = checkpoint_facts(art.card, frames, height, width)
    T, H, W = facts.frames, facts.height, facts.width
    model_hash, template, hidden = facts.model_hash, facts.prompt_template, facts.hidden_dim
    max_tokens, vocab = facts.max_tokens, facts.vocab_size
    if checkpoint is not None:
        tok = art.tokenizer
    else:  # the export folder carries its tokenizer; --tokenizer must then be the same files
        from actionvos.artifacts import read_folder_artifact

        tok = read_folder_artifact(onnx_dir, tokenizer)[1]
    encoder = TextFeatureEncoder(graphs, model, threads)

    videos: list[VideoInput] = []
    for spec_in in inputs:
        videos.extend(open_input(spec_in, template))
    plan = [(v, sample_clip_ends(v.num_frames, T, per_video)) for v in videos]
    total = sum(len(e) for _, e in plan)

    # prompt sets, deduplicated by their texts
    set_index: dict[tuple[str, ...], int] = {}
    sets: list[PromptSet] = []
    for v, _ in plan:
        key = tuple(t for _, t in v.prompts)
        if key in set_index:
            continue
        ids, mask = tok([t for _, t in v.prompts])
        if int(ids.max()) >= vocab:
            raise ConfigError(f"the tokenizer produces token id {int(ids.max())} but the model's vocabulary has {vocab} "
                              "tokens; pass the tokenizer that belongs to this model with --tokenizer")
        if ids.shape[1] > max_tokens:
            raise InputError(f"a prompt of {v.name!r} is {ids.shape[1]} tokens long; the text graph takes at most {max_tokens}")
        word, tmask, sent = encoder(ids, mask)
        set_index[key] = len(sets)
        sets.append(PromptSet([n for n, _ in v.prompts], list(key), ids, mask, word, tmask, sent))

    clips, set_ids, src_ids, frame_ids = [], [], [], []
    sources = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="collect", unit="clip", leave=False)
    try:
        for s, (v, ends) in enumerate(plan):
            wanted = {max(0, i) for e in ends for i in range(e - T + 1, e + 1)}
            got: dict[int, np.ndarray] = {}
            for i, rgb in v.read(wanted):
                got[i] = resize_frame(rgb, (H, W))
            actual_ends = []
            for e in ends:
                if e not in got:  # the video ended earlier than counted: use its last complete window
                    e = max(got) if got else -1
                    if e < 0 or e in actual_ends:
                        continue
                window, idx = clip_window(got, e, T)
                clips.append(np.stack(window).transpose(0, 3, 1, 2))
                set_ids.append(set_index[tuple(t for _, t in v.prompts)])
                src_ids.append(s)
                frame_ids.append(idx)
                actual_ends.append(e)
                if bar is not None:
                    bar.update(1)
            sources.append({"name": v.name, "group": v.group, "kind": v.kind, "path": str(v.path),
                            "num_frames": v.num_frames, "clip_ends": actual_ends,
                            "prompt_set": set_index[tuple(t for _, t in v.prompts)]})
    finally:
        if bar is not None:
            bar.close()
    if not clips:
        raise InputError("no clip could be read from the inputs")
    meta = {
        "format": FORMAT,
        "input": {"frames": T, "height": H, "width": W, "layout": "[N, T, 3, H, W] uint8 RGB",
                  "resize": "actionvos.pipeline.frames.resize_frame (PIL bilinear) straight to HxW, as the runtime"},
        "model_hash": model_hash,
        "hidden_dim": hidden,
        "sources": sources,
        "sampling": {"rule": "per video: clips whose last frames are evenly spaced over the video (np.linspace, rounded)",
                     "per_video": per_video, "clip_frames": T},
        "prompt_sets": [{"names": s.names, "texts": s.texts} for s in sets],
        "text_features": encoder.source,
        "tokenizer": str(tokenizer),
        "tokenizer_id": tok.sha256,
        "onnx": str(onnx_dir) if onnx_dir is not None else "",
        "checkpoint": str(checkpoint) if checkpoint is not None else "",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tool": _versions(),
    }
    data = CalibrationData(np.stack(clips).astype(np.uint8), np.asarray(set_ids, np.int32), np.asarray(src_ids, np.int32),
                           np.asarray(frame_ids, np.int64), sets, meta)
    log.info("collected %d clips of %dx%dx%d from %d source(s), %d prompt set(s)", len(data), T, H, W, len(sources), len(sets))
    return data
