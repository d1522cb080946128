"""The streaming session: one object per stream, owning all temporal state; the model behind it is stateless.

``StreamSession(backend, config, tokenizer)`` → :meth:`~StreamSession.set_prompts` (action + objects, or explicit
prompt strings) → :meth:`~StreamSession.step` once per frame → :class:`FrameResult`.

Per step (spec 3.1, 3.9 made causal; see :mod:`actionvos.runtime.temporal`):

1. resize the RGB frame to the model input size (shorter side ``short_side``), uint8;
2. ``backend.encode_frame`` (backbone once per frame) and append the handle to a window of the last ``T`` frames
   (``--window T``; the window is filled by repeating the oldest frame until ``T`` frames were seen);
3. ``backend.decode`` over the window with the bound prompt set → the newest frame's query logits, mask logits
   and the window's positive logit;
4. causal rules: running (or EMA) query probabilities pick the query per object; the running positive logit
   gives the gate (``sigmoid >= pos_thres``);
5. the selected query's mask logits are upsampled to the frame size, sigmoid, gated, merged into labels.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from actionvos.errors import ConfigError, InputError
from actionvos.inference.prompts import Prompt, build_prompts, check_template
from actionvos.runtime.backends.base import Backend
from actionvos.runtime.frame_ops import merge_labels_np, model_input_size, resize_frame, sigmoid, upsample_mask_logits
from actionvos.runtime.prompt_cache import PromptCache, TextArrays
from actionvos.runtime.temporal import RunningAverage, check_temporal
from actionvos.runtime.tokenizer import BpeTokenizer

__all__ = ["StreamConfig", "StreamState", "ObjectResult", "FrameResult", "StreamSession", "STEP_STAGES"]

log = logging.getLogger(__name__)

#: Stages timed per step, in milliseconds (``FrameResult.timings_ms``).
STEP_STAGES = ("resize", "encode_frame", "decode", "postprocess", "total")


@dataclass(frozen=True)
class StreamConfig:
    """Streaming settings, validated once by :meth:`check`.

    Attributes:
        temporal: ``mean`` (running mean since the prompts were set) or ``ema`` (see :mod:`~actionvos.runtime.temporal`).
        horizon: EMA time constant in frames (>= 1).
        window: frames per decode, T >= 1 (the pixel decoder mixes them; earlier frames' features are reused).
        pos_thres: positive-gate threshold in [0, 1]; None = the model's (0.75, spec 3.9 step 3).
        mask_threshold: probability threshold in (0, 1); None = the model's (0.5).
        background_prob: background plane constant; None = the model's (0.1).
        return_probs: also return each object's probability map (costs a float32 ``[H, W]`` per object).
        prompt_template: template for :meth:`StreamSession.set_prompts` with action + objects; None = the model's.
        input_size: force the model input ``(H, W)`` in pixels; None = shorter side ``short_side`` (or the graph's size).
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
        if self.pos_thres is not None and not 0.0 <= self.pos_thres <= 1.0:
            raise ConfigError(f"--pos-thres must be in [0, 1], got {self.pos_thres}")
        if self.mask_threshold is not None and not 0.0 < self.mask_threshold < 1.0:
            raise ConfigError(f"mask threshold must be in (0, 1), got {self.mask_threshold}")
        if self.input_size is not None and (len(self.input_size) != 2 or min(self.input_size) < 32):
            raise ConfigError(f"input size must be (H, W) with both >= 32 pixels, got {self.input_size}")
        if self.prompt_template is not None:
            check_template(self.prompt_template)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings (recorded in ``summary.json``)."""
        return {"temporal": self.temporal, "horizon": self.horizon, "window": self.window, "pos_thres": self.pos_thres,
                "mask_threshold": self.mask_threshold, "background_prob": self.background_prob,
                "input_size": list(self.input_size) if self.input_size else None}


@dataclass
class StreamState:
    """Everything that changes while a stream runs (one per session; reset by :meth:`StreamSession.reset`).

    Attributes:
        prompts: the current prompt set (object ``i`` gets label ``i + 1``).
        text: the backend-bound features of ``prompts``.
        query_scores: causal average of per-frame query probabilities ``[P, Q]``.
        positive: causal average of the positive logit ``[P]``.
        window: handles of the last ``T`` frames (oldest first), from ``backend.encode_frame``.
        input_size: model input ``(H, W)`` the window's frames were resized to.
        frames_seen: frames stepped since the session began.
        steps_since_prompts: frames stepped since the prompts were last set.
    """

    prompts: list[Prompt] = field(default_factory=list)
    text: Any = None
    query_scores: RunningAverage = field(default_factory=RunningAverage)
    positive: RunningAverage = field(default_factory=RunningAverage)
    window: deque = field(default_factory=deque)
    input_size: tuple[int, int] | None = None
    frames_seen: int = 0
    steps_since_prompts: int = 0


@dataclass
class ObjectResult:
    """One object's result for one frame.

    Attributes:
        name, prompt: the object name and the text the model read; ``label`` = index + 1 in :attr:`FrameResult.labels`.
        mask: ``[H, W]`` bool at the frame's resolution: probability >= mask threshold and the gate passed
            (independent per object; overlaps are resolved only in :attr:`FrameResult.labels`).
        prob: ``[H, W]`` float32 in [0, 1] before gating, when ``return_probs`` is set; else None.
        positive_prob: running positive probability in [0, 1] (sigmoid of the causal positive logit).
        passed_gate: ``positive_prob >= pos_thres``.
        selected_query: the query (0..Q-1) with the highest causal score.
        query_scores: ``[Q]`` float32 causal query probabilities.
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
    """The session's output for one frame.

    Attributes:
        index: frame number since the session began (0-based).
        size: ``(H, W)`` of the input frame in pixels.
        labels: ``[H, W]`` uint8 merged labels (0 background, ``i + 1`` object ``i``; spec 3.9 step 4).
        objects: per-object results in prompt order.
        timings_ms: milliseconds per stage of :data:`STEP_STAGES`.
    """

    index: int
    size: tuple[int, int]
    labels: np.ndarray
    objects: list[ObjectResult]
    timings_ms: dict[str, float]


class StreamSession:
    """A per-stream session over a stateless backend (STYLE.md habit 1; spec 3.9 made causal).

    Args:
        backend: a loaded :class:`~actionvos.runtime.backends.base.Backend`.
        config: :class:`StreamConfig` (None = defaults); validated here.
        tokenizer: :class:`~actionvos.runtime.tokenizer.BpeTokenizer` of the model.
        cache: :class:`~actionvos.runtime.prompt_cache.PromptCache`; None creates an in-memory one for this model.
    Raises:
        ConfigError: invalid config, or ``window`` differs from a graph's static clip length.
    """

    def __init__(self, backend: Backend, config: StreamConfig | None, tokenizer: BpeTokenizer, cache: PromptCache | None = None):
        self.backend = backend
        self.config = (config or StreamConfig()).check()
        self.tokenizer = tokenizer
        info = backend.info
        if info.window is not None and info.window != self.config.window:
            raise ConfigError(f"--window {self.config.window} but the {info.name} graph takes clips of {info.window} frames; "
                              f"pass --window {info.window} or export the graph with that many frames")
        if self.config.input_size is not None and info.input_size is not None and tuple(self.config.input_size) != tuple(info.input_size):
            raise ConfigError(f"--input-size {self.config.input_size[0]}x{self.config.input_size[1]} but the {info.name} graph was "
                              f"exported at {info.input_size[0]}x{info.input_size[1]}; drop --input-size or re-export")
        self.cache = cache if cache is not None else PromptCache(info.model_id, tokenizer.tokenizer_id)
        if (self.cache.model_id, self.cache.tokenizer_id) != (info.model_id, tokenizer.tokenizer_id):
            raise ConfigError("the prompt cache belongs to another model or tokenizer; create it with backend.info.model_id "
                              "and tokenizer.tokenizer_id")
        self.pos_thres = info.pos_cls_thres if self.config.pos_thres is None else self.config.pos_thres
        self.mask_threshold = info.mask_threshold if self.config.mask_threshold is None else self.config.mask_threshold
        self.background = info.background_prob if self.config.background_prob is None else self.config.background_prob
        self.template = self.config.prompt_template or info.prompt_template
        self.state = StreamState(query_scores=RunningAverage(self.config.temporal, self.config.horizon),
                                 positive=RunningAverage(self.config.temporal, self.config.horizon),
                                 window=deque(maxlen=self.config.window))
        self.last_text_ms = 0.0

    # ------------------------------------------------------------------ prompts
    def set_prompts(self, action: str | None = None, objects: str | Sequence[str] | None = None,
                    prompts: Sequence[str | Prompt] | None = None) -> list[Prompt]:
        """Set the prompt set: ``action`` + ``objects`` rendered with the template (spec 4), or explicit ``prompts``.

        Only prompts missing from the cache go through the text encoder (one batched run). The causal query and
        positive statistics restart; the frame window is kept (frame features do not depend on text).

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
            if len(plist) > 255:
                raise InputError(f"{len(plist)} prompts given; at most 255 fit in uint8 labels")
        else:
            plist = build_prompts(action, objects, self.template)
        t0 = time.perf_counter()
        feats = self.cache.get_many([p.text for p in plist], self._encode_texts)
        self.state.text = self.backend.bind_text(feats)
        self.cache.save()
        self.last_text_ms = (time.perf_counter() - t0) * 1e3
        self.state.prompts = plist
        self.state.query_scores.reset()
        self.state.positive.reset()
        self.state.steps_since_prompts = 0
        log.debug("prompts set (%d, %.1f ms): %s", len(plist), self.last_text_ms, [p.text for p in plist])
        return plist

    def _encode_texts(self, texts: list[str]) -> TextArrays:
        ids, mask = self.tokenizer(texts)
        info = self.backend.info
        top = int(ids.max())
        if top >= info.vocab_size:
            raise ConfigError(f"the tokenizer produces token id {top} but the model's text encoder has only {info.vocab_size} "
                              "tokens; pass the tokenizer that belongs to this model with --tokenizer")
        if ids.shape[1] > info.max_text_tokens:
            longest = max(texts, key=len)
            raise InputError(f"prompt {longest[:60]!r}... is {ids.shape[1]} tokens long; the text encoder takes at most {info.max_text_tokens}")
        return self.backend.encode_text(ids, mask)

    @property
    def prompts(self) -> list[Prompt]:
        """The current prompt set."""
        return list(self.state.prompts)

    def reset(self) -> None:
        """Forget the frame window and the causal statistics (e.g. after a camera reconnect); prompts stay."""
        self.state.window.clear()
        self.state.input_size = None
        self.state.query_scores.reset()
        self.state.positive.reset()
        self.state.steps_since_prompts = 0

    # ------------------------------------------------------------------ frames
    def input_size_for(self, height: int, width: int) -> tuple[int, int]:
        """Model input ``(H, W)`` for a frame of ``height × width``: the config's, the graph's, or spec 3.1's resize."""
        if self.config.input_size is not None:
            return tuple(self.config.input_size)
        if self.backend.info.input_size is not None:
            return tuple(self.backend.info.input_size)
        return model_input_size(height, width, self.backend.info.short_side)

    def step(self, frame: np.ndarray) -> FrameResult:
        """Segment the current prompts in one frame.

        Args:
            frame: ``[H, W, 3]`` uint8 RGB at any resolution (>= 32 px per side).
        Returns:
            :class:`FrameResult` with masks at ``H × W``.
        Raises:
            InputError: no prompts set, or not an ``[H, W, 3]`` uint8 frame.
        """
        st = self.state
        if not st.prompts:
            raise InputError("no prompts set; call set_prompts(action, objects) before step()")
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            desc = f"{frame.shape} {frame.dtype}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise InputError(f"frames must be [H, W, 3] uint8 RGB arrays, got {desc}")
        H, W = frame.shape[:2]
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        size = self.input_size_for(H, W)
        if st.input_size != size:
            if st.window:
                log.info("frame size changed: model input %s -> %s, frame window restarted", st.input_size, size)
            st.window.clear()
            st.input_size = size
        small = resize_frame(frame, size)
        t1 = time.perf_counter()
        st.window.append(self.backend.encode_frame(small))
        t2 = time.perf_counter()
        T = self.config.window
        frames = [st.window[0]] * (T - len(st.window)) + list(st.window)
        out = self.backend.decode(frames, st.text)
        t3 = time.perf_counter()
        objects, labels = self._postprocess(out, (H, W))
        t4 = time.perf_counter()
        times.update(resize=(t1 - t0) * 1e3, encode_frame=(t2 - t1) * 1e3, decode=(t3 - t2) * 1e3,
                     postprocess=(t4 - t3) * 1e3, total=(t4 - t0) * 1e3)
        result = FrameResult(index=st.frames_seen, size=(H, W), labels=labels, objects=objects, timings_ms=times)
        st.frames_seen += 1
        st.steps_since_prompts += 1
        return result

    def _postprocess(self, out, size: tuple[int, int]) -> tuple[list[ObjectResult], np.ndarray]:
        st = self.state
        scores = st.query_scores.update(sigmoid(out.query_logits))  # [P, Q]
        pos_logit = st.positive.update(out.positive_logit)  # [P]
        selected = scores.argmax(-1)
        pos_prob = sigmoid(pos_logit)
        P = len(st.prompts)
        sel_logits = out.mask_logits[np.arange(P), selected]  # [P, h, w]
        probs = sigmoid(upsample_mask_logits(sel_logits, size))  # [P, H, W]
        passed = pos_prob >= self.pos_thres
        gated = probs * passed[:, None, None].astype(np.float32)
        labels = merge_labels_np(gated, self.mask_threshold, self.background)
        objects = []
        for i, p in enumerate(st.prompts):
            objects.append(ObjectResult(
                name=p.name, prompt=p.text, label=i + 1, mask=gated[i] >= self.mask_threshold,
                prob=probs[i] if self.config.return_probs else None, positive_prob=float(pos_prob[i]),
                passed_gate=bool(passed[i]), selected_query=int(selected[i]), query_scores=scores[i].astype(np.float32)))
        return objects, labels

    def close(self) -> None:
        """Persist the prompt cache (if it has a path) and close the backend."""
        self.cache.save()
        self.backend.close()

    def __enter__(self) -> "StreamSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
