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

from actionvos.runtime.prompt_cache import TextArrays

__all__ = ["BackendInfo", "StepOutputs", "Backend"]


@dataclass(frozen=True)
class BackendInfo:
    """What the session needs to know about a loaded model.

    Attributes:
        name: ``pytorch-cpu``, ``pytorch-cuda``, ``onnxruntime-cpu``, ``onnxruntime-cuda``, ``onnxruntime-tensorrt``
            or ``tensorrt``.
        model_id: identifies the weights + text precision (prompt-cache key; e.g. checkpoint SHA-256 prefix).
        num_queries: Q (5 for the released model).
        short_side: resize target of the shorter frame side in pixels (spec 3.1; 360 released).
        input_size: static ``(H, W)`` of the graph in pixels, or None when any size works (PyTorch).
        window: static clip length T of the graph, or None when any length works (PyTorch).
        pos_cls_thres, mask_threshold, background_prob: post-processing constants (spec 3.9: 0.75, 0.5, 0.1).
        prompt_template: the ``{object}``/``{action}`` template the model was trained with (spec 4).
        vocab_size, max_text_tokens: text-encoder limits used to check token ids.
        weights_note: set when the artifact says its weights are random (pipeline check only).
    """

    name: str
    model_id: str
    num_queries: int
    short_side: int
    input_size: tuple[int, int] | None
    window: int | None
    pos_cls_thres: float
    mask_threshold: float
    background_prob: float
    prompt_template: str
    vocab_size: int
    max_text_tokens: int
    weights_note: str | None = None


@dataclass
class StepOutputs:
    """Decoder outputs for the newest frame of a window, as numpy (logits, not probabilities).

    Attributes:
        query_logits: ``[P, Q]`` float32 class logits of the newest frame (``pred_logits[:, -1, :, 0]``).
        mask_logits: ``[P, Q, h, w]`` float32 mask logits of the newest frame at stride 4 (``h = H/4``).
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
        bound prompt set; returns the newest frame's outputs (spec 3.4–3.8)."""

    def close(self) -> None:
        """Release device memory, sessions and streams. Idempotent."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
