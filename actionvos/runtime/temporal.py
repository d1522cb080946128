"""Causal versions of the clip-level rules of spec 3.9 (query selection and the positive gate).

Offline, one clip is seen whole: query scores are ``mean_t sigmoid(pred_logits)`` and the gate reads
``sigmoid(pred_positives)``, whose logit is ``Linear(mean_{t,q} hs)`` (spec 0 item 2). A live stream cannot see
the future, so both become running statistics since the prompts were set:

* ``mean``: the running mean over every frame since :meth:`set_prompts` (weight ``1/n``).
* ``ema``: the same until ``n`` reaches ``horizon`` frames, then an exponential moving average with weight
  ``1/horizon`` (bias-free start, time constant ``horizon`` frames).

What is averaged: per-frame query probabilities (as offline) and the per-step positive **logit**. The decoder,
encoder and fusion work per frame (spec 3.4–3.5; only the pixel decoder mixes frames), so ``hs`` of a frame does
not depend on other frames, and the linear positive head commutes with the mean: with ``window = 1`` and the
``mean`` rule, the running positive logit after frame ``n`` equals the offline logit of the clip ``0..n`` exactly,
and so do the query scores. Masks differ because the offline pixel decoder mixes all frames of the clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from actionvos.errors import ConfigError

__all__ = ["TEMPORAL_RULES", "RunningAverage", "check_temporal"]

#: Names accepted by ``--temporal``.
TEMPORAL_RULES = ("mean", "ema")


def check_temporal(rule: str, horizon: int) -> None:
    """Raise :class:`ConfigError` for an unknown rule or a horizon < 1."""
    if rule not in TEMPORAL_RULES:
        raise ConfigError(f"unknown temporal rule {rule!r}; use one of {', '.join(TEMPORAL_RULES)}")
    if horizon < 1:
        raise ConfigError(f"--horizon must be >= 1 frame, got {horizon}")


@dataclass
class RunningAverage:
    """A causal average of an array-valued signal (e.g. ``[P, Q]`` query probabilities or ``[P]`` logits).

    Attributes:
        rule: ``mean`` or ``ema``.
        horizon: EMA time constant in frames (ignored by ``mean``).
        count: updates since the last reset.
        value: the current average (None before the first update).
    """

    rule: str = "mean"
    horizon: int = 30
    count: int = 0
    value: np.ndarray | None = field(default=None, repr=False)

    def reset(self) -> None:
        """Forget the history (new prompts)."""
        self.count = 0
        self.value = None

    def update(self, x: np.ndarray) -> np.ndarray:
        """Add one observation (same shape every time) and return the new average (float64 internally)."""
        self.count += 1
        x = np.asarray(x, dtype=np.float64)
        if self.value is None or self.value.shape != x.shape:
            self.value = x.copy()
            self.count = 1
            return self.value
        weight = 1.0 / self.count
        if self.rule == "ema":
            weight = max(weight, 1.0 / self.horizon)
        self.value += weight * (x - self.value)
        return self.value
