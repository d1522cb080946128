"""The two inference rules as drivers over the one :class:`~actionvos.runtime.backends.base.Backend` interface.

Both drivers share the prompt handling (template from the card, tokenizer checks, prompt-embedding cache), the
frame resize (spec 3.1, :func:`~actionvos.pipeline.frames.resize_frame`) and the per-frame post-processing
(:func:`~actionvos.pipeline.frames.finish_frame`: upsample, sigmoid, gate, merge; spec 3.9 steps 2–4). They differ
only in *when* they decode and *which* statistics pick the query and the gate (the SAM 2 pattern: one step, two
schedules):

* :class:`ClipDriver` — the official rule (spec 3.1, 3.9): frames are grouped into clips of at most
  ``card.input.max_clip_frames`` (36); each clip is decoded in one call; the query of each object is the argmax of
  its frame-mean score, the gate uses the clip's positive probability. Results come out a clip at a time.
* :class:`CausalDriver` (exported as ``StreamSession``) — the streaming rule of :mod:`actionvos.runtime.temporal`:
  every frame is decoded with the last ``window`` frames, query scores and the positive logit are running (or EMA)
  averages over the frames seen since the prompts were set. Results come out a frame at a time.

Every threshold comes from the :class:`~actionvos.card.ModelCard` (``backend.info.card``, with any command-line
overrides applied through :meth:`ModelCard.override`); nothing here defaults one.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from actionvos.card import ModelCard
from actionvos.errors import ConfigError, InputError
from actionvos.pipeline.frames import check_frame, finish_frame, resize_frame, sigmoid
from actionvos.prompts import MAX_OBJECTS, Prompt, build_prompts
from actionvos.runtime.backends.base import Backend
from actionvos.runtime.prompt_cache import PromptCache, TextArrays
from actionvos.runtime.temporal import RunningAverage, check_temporal
from actionvos.tokenizer import Tokenizer

__all__ = ["StreamConfig", "ObjectResult", "FrameResult", "Driver", "CausalDriver", "ClipDriver", "STEP_STAGES",
           "RULES"]

log = logging.getLogger(__name__)

#: Stages timed per frame, in milliseconds (``FrameResult.timings_ms``); a clip's decode is shared by its frames.
STEP_STAGES = ("resize", "encode_frame", "decode", "postprocess", "total")
#: Names of the inference rules (``actionvos run --stream`` picks ``causal``).
RULES = ("clip", "causal")


@dataclass(frozen=True)
class StreamConfig:
    """Settings of a driver, validated once by :meth:`check`.

    Attributes:
        temporal: causal rule, ``mean`` (running mean since the prompts were set) or ``ema``
            (:mod:`~actionvos.runtime.temporal`).
        horizon: EMA time constant in frames (>= 1).
        window: frames per causal decode, T >= 1 (the pixel decoder mixes them).
        pos_thres, mask_threshold, background_prob, prompt_template: command-line overrides of the card's facts
            (None keeps the card's; an override is recorded in the card).
        return_probs: also return each object's probability map (a float32 ``[H, W]`` per object).
        input_size: force the model input ``(H, W)`` in pixels (PyTorch only; a graph has its own).
    """

    temporal: str = "mean"
    horizon: int = 30
    window: int = 1
    pos_thres: float | None = None
    mask_threshold: float | None = None
    background_prob: float | None = None
    return_probs: bool = False
    prompt_template: str | None = None
    input_size: tuple[int, int] | None = None

    def check(self) -> "StreamConfig":
        """Return self, or raise :class:`ConfigError` naming the bad option and its valid range."""
        check_temporal(self.temporal, self.horizon)
        if self.window < 1:
            raise ConfigError(f"--window must be >= 1 frame, got {self.window}")
        if self.input_size is not None and (len(self.input_size) != 2 or min(self.input_size) < 32):
            raise ConfigError(f"input size must be (H, W) with both >= 32 pixels, got {self.input_size}")
        return self

    def overrides(self) -> dict[str, Any]:
        """The card overrides these settings carry (``None`` = keep the card's)."""
        return {"pos_cls_thres": self.pos_thres, "mask_threshold": self.mask_threshold,
                "background_prob": self.background_prob, "prompt_template": self.prompt_template}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings (recorded in ``summary.json``)."""
        return {"temporal": self.temporal, "horizon": self.horizon, "window": self.window,
                "input_size": list(self.input_size) if self.input_size else None}


@dataclass
class ObjectResult:
    """One object's result for one frame.

    Attributes:
        name, prompt: the object name and the text the model read; ``label`` = index + 1 in :attr:`FrameResult.labels`.
        mask: ``[H, W]`` bool at the frame's resolution: probability >= mask threshold and the gate passed.
        prob: ``[H, W]`` float32 in [0, 1] before gating when ``return_probs`` is set, else None.
        positive_prob: positive probability in [0, 1] (clip rule: the clip's; causal: the running value).
        passed_gate: ``positive_prob >= card.thresholds.pos_cls_thres``.
        selected_query: the query 0..Q-1 used for the mask.
        query_scores: ``[Q]`` float32 query probabilities the selection used (frame-mean or causal).
    """

    name: str
    prompt: str
    label: int
    mask: np.ndarray
    prob: np.ndarray | None
    positive_prob: float
    passed_gate: bool
    selected_query: int
    query_scores: np.ndarray


@dataclass
class FrameResult:
    """A driver's output for one frame.

    Attributes:
        index: frame number since the driver began (0-based).
        size: ``(H, W)`` of the input frame in pixels.
        labels: ``[H, W]`` uint8 merged labels (0 background, ``i + 1`` object ``i``; spec 3.9 step 4).
        objects: per-object results in prompt order.
        timings_ms: milliseconds per stage of :data:`STEP_STAGES` (a clip's shared stages split evenly).
        clip: index of the clip the frame belonged to (clip rule), or None (causal rule).
        frame: the input frame when the driver keeps frames for the caller (clip rule), else None.
    """

    index: int
    size: tuple[int, int]
    labels: np.ndarray
    objects: list[ObjectResult]
    timings_ms: dict[str, float]
    clip: int | None = None
    frame: np.ndarray | None = None


class Driver:
    """Prompt handling and frame preparation shared by both rules; owns no temporal state itself.

    Args:
        backend: a loaded backend; its card (``backend.info.card``) gives every fact.
        config: :class:`StreamConfig` (None = defaults); its overrides are applied to the card and recorded.
        tokenizer: the model's :class:`~actionvos.tokenizer.Tokenizer` (checked against the card here).
        cache: :class:`PromptCache`; None creates an in-memory one for this model and tokenizer.
    Raises:
        ConfigError: invalid settings, a tokenizer that is not the model's, or a cache of another model.
    """

    def __init__(self, backend: Backend, config: StreamConfig | None, tokenizer: Tokenizer, cache: PromptCache | None = None):
        self.backend = backend
        self.config = (config or StreamConfig()).check()
        self.card: ModelCard = backend.info.card.override(**self.config.overrides())
        self.tokenizer = tokenizer.check_model(self.card)
        if self.config.input_size is not None and self.card.input.size is not None \
                and tuple(self.config.input_size) != tuple(self.card.input.size):
            s = self.card.input.size
            raise ConfigError(f"--input-size {self.config.input_size[0]}x{self.config.input_size[1]} but the "
                              f"{backend.info.name} graph was exported at {s[0]}x{s[1]}; drop --input-size or re-export")
        self.cache = cache if cache is not None else PromptCache(self.card.model_id, tokenizer.sha256)
        if (self.cache.model_id, self.cache.tokenizer_id) != (self.card.model_id, tokenizer.sha256):
            raise ConfigError(f"the prompt cache belongs to model {self.cache.model_id} / tokenizer {self.cache.tokenizer_id}, "
                              f"not {self.card.model_id} / {tokenizer.sha256}; use another --prompt-cache file")
        self.prompts_: list[Prompt] = []
        self.text: Any = None
        self.last_text_ms = 0.0
        self.frames_seen = 0

    # ------------------------------------------------------------------ facts
    @property
    def pos_thres(self) -> float:
        """The positive gate in use (the card's, or its override)."""
        return self.card.thresholds.pos_cls_thres

    @property
    def mask_threshold(self) -> float:
        return self.card.thresholds.mask_threshold

    @property
    def background(self) -> float:
        return self.card.thresholds.background_prob

    @property
    def template(self) -> str:
        return self.card.prompt_template

    @property
    def prompts(self) -> list[Prompt]:
        """The current prompt set."""
        return list(self.prompts_)

    # ------------------------------------------------------------------ prompts
    def set_prompts(self, action: str | None = None, objects: str | Sequence[str] | None = None,
                    prompts: Sequence[str | Prompt] | None = None) -> list[Prompt]:
        """Set the prompt set: ``action`` + ``objects`` rendered with the card's template (spec 4), or explicit ``prompts``.

        Only prompts missing from the cache go through the text encoder (one batched run).

        Args:
            action: narration, e.g. ``"move box"``.
            objects: ``"box,pen,right hand"`` or a list of names.
            prompts: prompt texts used verbatim (names = texts), or :class:`Prompt` objects; excludes action/objects.
        Returns:
            The prompts now in use.
        Raises:
            InputError: empty action/objects/prompt, duplicated objects, more than 255 objects, both forms given,
                or a prompt longer than the text encoder takes.
            ConfigError: the tokenizer produces ids outside the model's vocabulary.
        """
        if prompts is not None:
            if action is not None or objects is not None:
                raise InputError("pass either action + objects or explicit prompts, not both")
            plist = [p if isinstance(p, Prompt) else Prompt(name=str(p), text=str(p)) for p in prompts]
            if not plist or any(not p.text.strip() for p in plist):
                raise InputError("every prompt must be a non-empty string")
            if len(plist) > MAX_OBJECTS:
                raise InputError(f"{len(plist)} prompts given; at most {MAX_OBJECTS} fit in uint8 labels")
        else:
            plist = build_prompts(action, objects, self.template)
        t0 = time.perf_counter()
        feats = self.cache.get_many([p.text for p in plist], self._encode_texts)
        self.text = self.backend.bind_text(feats)
        self.cache.save()
        self.last_text_ms = (time.perf_counter() - t0) * 1e3
        self.prompts_ = plist
        self._on_prompts()
        log.debug("prompts set (%d, %.1f ms): %s", len(plist), self.last_text_ms, [p.text for p in plist])
        return plist

    def _encode_texts(self, texts: list[str]) -> TextArrays:
        ids, mask = self.tokenizer.encode_for(texts, self.card)
        return self.backend.encode_text(ids, mask)

    def _on_prompts(self) -> None:
        """Hook: a rule's statistics restart when the prompts change."""

    # ------------------------------------------------------------------ frames
    def input_size_for(self, height: int, width: int) -> tuple[int, int]:
        """Model input ``(H, W)`` for a frame of ``height × width``: ``--input-size``, the graph's, or spec 3.1's resize."""
        if self.config.input_size is not None:
            return tuple(self.config.input_size)
        return self.card.input.model_size(height, width)

    def _objects(self, probs: np.ndarray, gated: np.ndarray, pos_prob: np.ndarray, passed: np.ndarray,
                 selected: np.ndarray, scores: np.ndarray) -> list[ObjectResult]:
        return [ObjectResult(name=p.name, prompt=p.text, label=i + 1, mask=gated[i] >= self.mask_threshold,
                             prob=probs[i] if self.config.return_probs else None, positive_prob=float(pos_prob[i]),
                             passed_gate=bool(passed[i]), selected_query=int(selected[i]),
                             query_scores=scores[i].astype(np.float32))
                for i, p in enumerate(self.prompts_)]

    def _require_prompts(self) -> None:
        if not self.prompts_:
            raise InputError("no prompts set; call set_prompts(action, objects) before passing frames")

    def close(self) -> None:
        """Persist the prompt cache (if it has a path) and close the backend."""
        self.cache.save()
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CausalDriver(Driver):
    """The causal streaming rule: one result per :meth:`step`, from the frames seen so far (STYLE.md habit 1).

    Per step: resize (spec 3.1), ``backend.encode_frame`` (backbone once per frame) into a window of the last
    ``window`` frames (filled by repeating the oldest until T frames were seen), ``backend.decode`` over the window,
    running query scores and positive logit (:class:`~actionvos.runtime.temporal.RunningAverage`), then the newest
    frame's masks through :func:`~actionvos.pipeline.frames.finish_frame`.

    Raises (constructor): see :class:`Driver`; also ConfigError when ``window`` differs from a graph's static T.
    """

    rule = "causal"

    def __init__(self, backend: Backend, config: StreamConfig | None, tokenizer: Tokenizer, cache: PromptCache | None = None):
        super().__init__(backend, config, tokenizer, cache)
        T = self.card.window
        if T is None and self.config.window > self.card.input.max_clip_frames:
            raise ConfigError(f"--window {self.config.window} is longer than the model's clips "
                              f"({self.card.input.max_clip_frames} frames); pass --window {self.card.input.max_clip_frames} or less")
        if T is not None and T != self.config.window:
            raise ConfigError(f"--window {self.config.window} but the {backend.info.name} graph takes clips of {T} frames; "
                              f"pass --window {T} or export the graph with that many frames")
        self.query_scores = RunningAverage(self.config.temporal, self.config.horizon)
        self.positive = RunningAverage(self.config.temporal, self.config.horizon)
        self.window: deque = deque(maxlen=self.config.window)
        self.window_size: tuple[int, int] | None = None
        self.steps_since_prompts = 0

    def _on_prompts(self) -> None:
        self.query_scores.reset()
        self.positive.reset()
        self.steps_since_prompts = 0

    def reset(self) -> None:
        """Forget the frame window and the causal statistics (a new video, a camera reconnect); prompts stay."""
        self.window.clear()
        self.window_size = None
        self._on_prompts()

    def step(self, frame: np.ndarray) -> FrameResult:
        """Segment the current prompts in one frame.

        Args:
            frame: ``[H, W, 3]`` uint8 RGB at any resolution.
        Returns:
            :class:`FrameResult` with masks at ``H × W``.
        Raises:
            InputError: no prompts set, or not an ``[H, W, 3]`` uint8 frame.
        """
        self._require_prompts()
        check_frame(frame)
        H, W = frame.shape[:2]
        t0 = time.perf_counter()
        size = self.input_size_for(H, W)
        if self.window_size != size:
            if self.window:
                log.info("frame size changed: model input %s -> %s, frame window restarted", self.window_size, size)
            self.window.clear()
            self.window_size = size
        small = resize_frame(frame, size)
        t1 = time.perf_counter()
        self.window.append(self.backend.encode_frame(small))
        t2 = time.perf_counter()
        T = self.config.window
        frames = [self.window[0]] * (T - len(self.window)) + list(self.window)
        out = self.backend.decode(frames, self.text)
        t3 = time.perf_counter()
        scores = self.query_scores.update(sigmoid(out.query_logits[:, -1]))  # [P, Q]
        pos_prob = sigmoid(self.positive.update(out.positive_logit))  # [P]
        selected = scores.argmax(-1)
        passed = pos_prob >= self.pos_thres
        P = len(self.prompts_)
        probs, gated, labels = finish_frame(out.mask_logits[np.arange(P), -1, selected], (H, W), passed,
                                            self.mask_threshold, self.background)
        objects = self._objects(probs, gated, pos_prob, passed, selected, scores)
        t4 = time.perf_counter()
        result = FrameResult(index=self.frames_seen, size=(H, W), labels=labels, objects=objects,
                             timings_ms=dict(resize=(t1 - t0) * 1e3, encode_frame=(t2 - t1) * 1e3, decode=(t3 - t2) * 1e3,
                                             postprocess=(t4 - t3) * 1e3, total=(t4 - t0) * 1e3))
        self.frames_seen += 1
        self.steps_since_prompts += 1
        return result


class ClipDriver(Driver):
    """The official rule (spec 3.1, 3.9): clips of at most ``card.input.max_clip_frames`` frames, decoded whole.

    Feed frames with :meth:`push` (results come out when a clip is complete) and end with :meth:`flush` (the last,
    shorter clip), or iterate :meth:`run`. Per clip: each frame resized and encoded once, ``backend.decode`` over the
    clip; per object the query with the highest frame-mean ``sigmoid(pred_logits)`` is used on every frame, the
    positive probability is ``sigmoid(pred_positives)`` of the clip and gates all its frames. Frames are kept until
    their clip is decoded (they are returned in :attr:`FrameResult.frame`).

    Args:
        clip_frames: clip length; None = the card's ``max_clip_frames`` (36 for the released model).
    Raises (constructor): see :class:`Driver`; ConfigError when the backend's graph has another static T.
    """

    rule = "clip"

    def __init__(self, backend: Backend, config: StreamConfig | None, tokenizer: Tokenizer, cache: PromptCache | None = None,
                 clip_frames: int | None = None):
        super().__init__(backend, config, tokenizer, cache)
        self.clip_frames = int(clip_frames or self.card.input.max_clip_frames)
        if self.clip_frames < 1:
            raise ConfigError(f"clip length must be >= 1 frame, got {self.clip_frames}")
        if self.card.window is not None:
            raise ConfigError(f"the {backend.info.name} model decodes only windows of exactly {self.card.window} frames, and the "
                              "official clip rule needs any clip length up to the card's max_clip_frames; run it on the "
                              f"export folder (--onnx) or the checkpoint, or use --stream --window {self.card.window} here")
        self._frames: list[np.ndarray] = []
        self._handles: list[Any] = []
        self._size: tuple[int, int] | None = None
        self._times = {k: 0.0 for k in STEP_STAGES}
        self.clips_done = 0

    def _on_prompts(self) -> None:
        if self._frames:
            raise InputError("the prompts cannot change in the middle of a clip; call flush() first")

    def push(self, frame: np.ndarray) -> list[FrameResult]:
        """Add one ``[H, W, 3]`` uint8 RGB frame; returns the finished clip's results when it completes, else ``[]``.

        A frame of another size than the clip's first frame ends the clip before it.

        Raises:
            InputError: no prompts set, or not an ``[H, W, 3]`` uint8 frame.
        """
        self._require_prompts()
        check_frame(frame)
        out: list[FrameResult] = []
        H, W = frame.shape[:2]
        if self._size is not None and (H, W) != self._size:
            out = self.flush()
        t0 = time.perf_counter()
        small = resize_frame(frame, self.input_size_for(H, W))
        t1 = time.perf_counter()
        self._handles.append(self.backend.encode_frame(small))
        t2 = time.perf_counter()
        self._times["resize"] += (t1 - t0) * 1e3
        self._times["encode_frame"] += (t2 - t1) * 1e3
        self._frames.append(frame)
        self._size = (H, W)
        if len(self._frames) == self.clip_frames:
            out += self.flush()
        return out

    def flush(self) -> list[FrameResult]:
        """Decode the frames pushed since the last clip (if any) and return their results in order."""
        if not self._frames:
            return []
        frames, handles = self._frames, self._handles
        self._frames, self._handles = [], []
        H, W = self._size
        self._size = None
        t0 = time.perf_counter()
        out = self.backend.decode(handles, self.text)
        t1 = time.perf_counter()
        scores = sigmoid(out.query_logits).mean(1)  # [P, Q] frame-mean score (spec 3.9 step 1)
        selected = scores.argmax(-1)
        pos_prob = sigmoid(out.positive_logit)  # [P]
        passed = pos_prob >= self.pos_thres
        P = len(self.prompts_)
        results = []
        post = 0.0
        for t, frame in enumerate(frames):
            t2 = time.perf_counter()
            probs, gated, labels = finish_frame(out.mask_logits[np.arange(P), t, selected], (H, W), passed,
                                                self.mask_threshold, self.background)
            objects = self._objects(probs, gated, pos_prob, passed, selected, scores)
            post += time.perf_counter() - t2
            results.append(FrameResult(index=self.frames_seen + t, size=(H, W), labels=labels, objects=objects,
                                       timings_ms={}, clip=self.clips_done, frame=frame))
        n = len(frames)
        shared = dict(resize=self._times["resize"] / n, encode_frame=self._times["encode_frame"] / n,
                      decode=(t1 - t0) * 1e3 / n, postprocess=post * 1e3 / n)
        shared["total"] = sum(shared.values())
        for r in results:
            r.timings_ms = dict(shared)
        self._times = {k: 0.0 for k in STEP_STAGES}
        self.frames_seen += n
        self.clips_done += 1
        return results

    def run(self, frames: Iterable[np.ndarray]) -> Iterator[FrameResult]:
        """Every frame's result, in order, over an iterable of frames (the SAM 2 ``propagate_in_video`` shape)."""
        for frame in frames:
            yield from self.push(frame)
        yield from self.flush()

    def reset(self) -> None:
        """Drop frames of an unfinished clip (a new video); prompts stay."""
        self._frames, self._handles, self._size = [], [], None
        self._times = {k: 0.0 for k in STEP_STAGES}
