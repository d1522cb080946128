"""The interface every streaming backend implements (PyTorch eager, ONNX Runtime, TensorRT).

Everything crossing the boundary is numpy, so the session, cache and post-processing are shared and the
ONNX Runtime / TensorRT paths never import torch. The model stays stateless: a backend computes
text features, per-frame handles and decoder outputs; the :class:`~actionvos.runtime.session.StreamSession`
owns every piece of temporal state (source: STYLE.md habit 1, spec 3.2–3.8 for the stages).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from actionvos.card import ModelCard
from actionvos.runtime.prompt_cache import TextArrays

__all__ = ["BackendInfo", "StepOutputs", "Backend"]


@dataclass(frozen=True)
class BackendInfo:
    """What a loaded backend is: its name and the model card of the artifact it runs.

    Attributes:
        name: ``pytorch-cpu``, ``pytorch-cuda``, ``onnxruntime-cpu``, ``onnxruntime-cuda``, ``onnxruntime-tensorrt``
            or ``tensorrt``.
        card: the :class:`~actionvos.card.ModelCard` read from the artifact (the only source of thresholds, input
            rule, template, precision, window and hashes).
    """

    name: str
    card: ModelCard

    @property
    def model_id(self) -> str:
        """Prompt-cache key of the text features (``card.model_id``)."""
        return self.card.model_id

    @property
    def weights_note(self) -> str | None:
        """Why the weights are not the paper's (random, demo), or None."""
        return self.card.weights_note


@dataclass
class StepOutputs:
    """Decoder outputs of a window of T frames, as numpy (logits, not probabilities).

    Attributes:
        query_logits: ``[P, T, Q]`` float32 class logits per frame (``pred_logits[..., 0]``).
        mask_logits: ``[P, T, Q, h, w]`` float32 mask logits per frame at stride 4 (``h = ceil(H/4)``).
        positive_logit: ``[P]`` float32 clip-level positive logit of the window (``pred_positives[:, 0]``, spec 0).
    """

    query_logits: np.ndarray
    mask_logits: np.ndarray
    positive_logit: np.ndarray


class Backend(abc.ABC):
    """One loaded model behind the three stage calls the session makes. Use as a context manager.

    Not thread-safe: outputs may be views into buffers reused by the next call, so drive a backend from one thread
    (several sessions may share it when they step in turn)."""

    info: BackendInfo

    @abc.abstractmethod
    def encode_text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> TextArrays:
        """Text encoder (spec 3.3). ``input_ids``/``attention_mask`` ``[P, L]`` int64 → :class:`TextArrays`."""

    @abc.abstractmethod
    def bind_text(self, text: TextArrays) -> Any:
        """Move a prompt set's features where :meth:`decode` wants them (device tensors, bound buffers); once per
        :meth:`~actionvos.runtime.session.StreamSession.set_prompts`."""

    @abc.abstractmethod
    def encode_frame(self, frame: np.ndarray) -> Any:
        """Per-frame, text-independent work for one ``[H, W, 3]`` uint8 RGB frame already at the input size.

        Returns an opaque handle the session keeps in its window (PyTorch: the frame's ``FrameFeatures``, so the
        backbone runs once per frame; single-graph backends: the uint8 frame itself)."""

    @abc.abstractmethod
    def decode(self, window: Sequence[Any], text: Any) -> StepOutputs:
        """Fusion, transformer, pixel decoder and heads over a window of ``T`` frame handles (oldest first) and the
        bound prompt set; returns every frame's outputs (spec 3.4–3.8). The causal rule reads the newest frame, the
        clip rule all of them."""

    def close(self) -> None:
        """Release device memory, sessions and streams. Idempotent."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
