"""The Python API, in SAM 2's video-predictor style: open any artifact, set prompts, step frames or run a video.

    from actionvos.api import open_predictor

    predictor = open_predictor()                      # the bundled demo; or a .pth, an export or engine folder
    predictor.set_prompts("move box", "box,pen,right hand")
    result = predictor.step(frame)                    # [H, W, 3] uint8 RGB -> FrameResult (causal rule)
    for r in predictor.propagate(frames):             # the official clip rule over a whole video
        print(r.index, [(o.name, round(o.positive_prob, 3), o.passed_gate) for o in r.objects])

Both methods return :class:`~actionvos.pipeline.drivers.FrameResult` (``labels [H, W]`` uint8, per-object masks,
positive probability, gate). The facts (thresholds, input rule, template) come from the artifact's model card
(``predictor.card``); keyword overrides are recorded in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from actionvos.card import ModelCard
from actionvos.errors import InputError
from actionvos.pipeline.drivers import CausalDriver, ClipDriver, FrameResult, StreamConfig
from actionvos.prompts import Prompt

__all__ = ["Predictor", "open_predictor"]


class Predictor:
    """One model and its prompts, with a causal per-frame :meth:`step` and the official-rule :meth:`propagate`.

    Build with :func:`open_predictor`. Not thread-safe (one stream at a time; call :meth:`reset` between videos).
    """

    def __init__(self, backend, tokenizer, config: StreamConfig | None = None):
        self._stream = CausalDriver(backend, config, tokenizer)
        self._clip: ClipDriver | None = None  # made on first propagate (a static-T engine has no clip rule)

    @property
    def card(self) -> ModelCard:
        """The model card in use (with any overrides)."""
        return self._stream.card

    @property
    def prompts(self) -> list[Prompt]:
        return self._stream.prompts

    def set_prompts(self, action: str | None = None, objects: str | Sequence[str] | None = None,
                    prompts: Sequence[str | Prompt] | None = None) -> list[Prompt]:
        """Set ``action`` + ``objects`` (rendered with the card's template, spec 4) or explicit ``prompts``.

        Raises:
            InputError: empty or duplicated objects, too long a prompt, both forms given.
        """
        return self._stream.set_prompts(action, objects, prompts)

    def step(self, frame: np.ndarray) -> FrameResult:
        """The causal rule on the next frame of a stream (``[H, W, 3]`` uint8 RGB) → its :class:`FrameResult`."""
        return self._stream.step(frame)

    def propagate(self, frames: Iterable[np.ndarray]) -> Iterator[FrameResult]:
        """The official clip rule (clips of ``card.input.max_clip_frames``, spec 3.9) over a whole video's frames;
        yields every frame's result in order (a clip at a time).

        Raises:
            ConfigError: the model decodes only a fixed window (a TensorRT segmenter engine); InputError: no prompts.
        """
        s = self._stream
        if self._clip is None:
            self._clip = ClipDriver(s.backend, s.config, s.tokenizer, s.cache)
        self._clip.reset()
        if not s.prompts:
            raise InputError("no prompts set; call set_prompts(action, objects) before propagate()")
        if [p.text for p in self._clip.prompts] != [p.text for p in s.prompts]:
            self._clip.set_prompts(prompts=s.prompts)  # text features come from the shared prompt cache
        return self._clip.run(frames)

    def reset(self) -> None:
        """Start a new stream: forget the frame window and the running statistics; the prompts stay."""
        self._stream.reset()
        if self._clip is not None:
            self._clip.reset()

    def close(self) -> None:
        """Release the backend."""
        self._stream.close()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_predictor(model: str | Path | None = None, *, tokenizer: str | Path | None = None, backend: str = "auto",
                   device: str | None = None, preset: str | None = None, window: int = 1, temporal: str = "mean",
                   pos_thres: float | None = None, return_probs: bool = False) -> Predictor:
    """Open any artifact (None = the bundled demo; a checkpoint; an export or engine folder) as a :class:`Predictor`.

    Args:
        model: see :func:`actionvos.artifacts.open_model`.
        tokenizer: only for an official checkpoint (ours carry theirs).
        backend, device, preset: see :func:`actionvos.artifacts.open_model`.
        window, temporal: the causal rule's settings (:class:`StreamConfig`).
        pos_thres: override of the card's gate threshold (recorded in ``predictor.card.overrides``).
        return_probs: also return per-object probability maps.
    Raises:
        ConfigError / InputError / CheckpointError: one line naming the problem and the fix.
    """
    from actionvos.artifacts import open_model

    config = StreamConfig(window=window, temporal=temporal, pos_thres=pos_thres, return_probs=return_probs).check()
    be, tok = open_model(model, backend=backend, tokenizer=tokenizer, preset=preset, device=device)
    try:
        return Predictor(be, tok, config)
    except BaseException:
        be.close()
        raise
