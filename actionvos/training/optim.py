"""Optimizer and learning-rate schedule of ActionVOS training (spec §8; ReferFormer ``main.py``).

Parameter groups, in the reference order (so an official ``optimizer`` state dict lines up):

0. everything else that requires grad, at ``lr`` (1e-4);
1. names containing ``backbone.0``, at ``lr_backbone`` (5e-5);
2. names containing ``text_encoder``, at ``lr_text_encoder`` (1e-5; empty while the encoder is frozen);
3. names containing ``reference_points`` or ``sampling_offsets``, at ``lr × lr_linear_proj_mult`` (1.0).

AdamW with ``weight_decay`` (5e-4) on every group; ``MultiStepLR(milestones=lr_drop, gamma=0.1)`` stepped once per
epoch. Aliased parameters (``bbox_embed`` is also ``transformer.decoder.bbox_embed``) appear once.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

__all__ = ["BACKBONE_NAMES", "TEXT_ENCODER_NAMES", "LINEAR_PROJ_NAMES", "param_groups", "build_optimizer",
           "build_scheduler"]

BACKBONE_NAMES = ("backbone.0",)
TEXT_ENCODER_NAMES = ("text_encoder",)
LINEAR_PROJ_NAMES = ("reference_points", "sampling_offsets")


def _match(name: str, keywords: Iterable[str]) -> bool:
    return any(k in name for k in keywords)


def param_groups(model: nn.Module, lr: float, lr_backbone: float, lr_text_encoder: float = 1e-5,
                 lr_linear_proj_mult: float = 1.0) -> list[dict]:
    """The four AdamW parameter groups of spec §8 (see the module docstring).

    Args:
        model: the (unwrapped) :class:`~actionvos.model.actionvos.ActionVOS`; frozen parameters
            (``requires_grad=False``: text encoder, ResNet stem) are left out.
    Returns:
        list of 4 dicts ``{"params": [...], "lr": float, "name": str}`` (a group may be empty).
    """
    groups = {"default": [], "backbone": [], "text_encoder": [], "linear_proj": []}
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if _match(n, BACKBONE_NAMES):
            groups["backbone"].append(p)
        elif _match(n, TEXT_ENCODER_NAMES):
            groups["text_encoder"].append(p)
        elif _match(n, LINEAR_PROJ_NAMES):
            groups["linear_proj"].append(p)
        else:
            groups["default"].append(p)
    lrs = {"default": lr, "backbone": lr_backbone, "text_encoder": lr_text_encoder,
           "linear_proj": lr * lr_linear_proj_mult}
    return [{"params": ps, "lr": lrs[k], "name": k} for k, ps in groups.items()]


def build_optimizer(model: nn.Module, lr: float = 1e-4, lr_backbone: float = 5e-5, weight_decay: float = 5e-4,
                    lr_text_encoder: float = 1e-5, lr_linear_proj_mult: float = 1.0) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` (spec §8).

    Raises:
        ValueError: the model has no trainable parameter.
    """
    groups = param_groups(model, lr, lr_backbone, lr_text_encoder, lr_linear_proj_mult)
    if not any(g["params"] for g in groups):
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, lr_drop: Sequence[int] = (3, 5),
                    gamma: float = 0.1) -> torch.optim.lr_scheduler.MultiStepLR:
    """``MultiStepLR(milestones=lr_drop, gamma=0.1)``; call ``step()`` after every epoch (epochs count from 0)."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(lr_drop), gamma=gamma)
