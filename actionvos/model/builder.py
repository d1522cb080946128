"""Build an :class:`ActionVOS` model from a :class:`ModelConfig` (random initialisation; weights come from checkpoints)."""

from __future__ import annotations

from actionvos.model.actionvos import ActionVOS
from actionvos.model.config import ModelConfig, get_preset

__all__ = ["build_model"]


def build_model(cfg: ModelConfig | str) -> ActionVOS:
    """Return a randomly initialised model in eval mode.

    Args:
        cfg: a :class:`ModelConfig` or a preset name (``rf_r101_actionvos``, ``rf_r50_actionvos``, ``reference_tiny``).
    Raises:
        ValueError: unknown preset name.
    """
    if isinstance(cfg, str):
        cfg = get_preset(cfg)
    return ActionVOS(cfg).eval()
