"""Hyper-parameters of ActionVOS (ReferFormer + positive head) as frozen dataclasses with named presets.

Source: ACTIONVOS_SPEC.md section 1 (released configuration) and ../shared/reference/tiny/config.json
(the reduced ``reference_tiny`` configuration of the golden fixture).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "RobertaSettings",
    "ModelConfig",
    "PRESETS",
    "get_preset",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DEPLOYMENT_KEYS",
]

#: ImageNet normalisation applied after ``/255`` (spec 3.1).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Deployment facts that version 0.1 stored in the config; they are the model card's now (:mod:`actionvos.card`).
#: :meth:`ModelConfig.from_dict` drops them (the card reader takes them from the raw dict).
DEPLOYMENT_KEYS = ("short_side", "max_clip_frames", "pos_cls_thres", "mask_threshold", "background_prob", "prompt_template")


@dataclass(frozen=True)
class RobertaSettings:
    """RoBERTa text-encoder configuration (spec 2: roberta-base values, not ``RobertaConfig()`` defaults)."""

    vocab_size: int = 50265
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1

    def to_hf(self):
        """Return a ``transformers.RobertaConfig`` with these values and the eager attention implementation."""
        from transformers import RobertaConfig

        cfg = RobertaConfig(**dataclasses.asdict(self))
        cfg._attn_implementation = "eager"
        return cfg


@dataclass(frozen=True)
class ModelConfig:
    """Every architectural hyper-parameter of ActionVOS-ReferFormer.

    Defaults are the released RF-R101 ActionVOS model (spec section 1). Architecture only: how a deployed model is
    fed and post-processed (input rule, thresholds, template) is its model card's (:mod:`actionvos.card`). Instances
    are immutable;
    use :func:`dataclasses.replace` to derive variants, and :meth:`to_dict` / :meth:`from_dict` to
    store them beside checkpoints and exported artifacts.
    """

    name: str = "rf_r101_actionvos"
    backbone_layers: tuple[int, int, int, int] = (3, 4, 23, 3)  # ResNet-101 Bottleneck counts
    backbone_width: int = 64  # torchvision's stem width; res2..res5 have 4x, 8x, 16x, 32x channels
    hidden_dim: int = 256
    nheads: int = 8
    enc_layers: int = 4
    dec_layers: int = 4
    dim_feedforward: int = 2048  # deformable enc/dec FFN and FPN VisionLanguageBlock FFN
    dropout: float = 0.1
    enc_n_points: int = 4
    dec_n_points: int = 4
    num_feature_levels: int = 4
    num_queries: int = 5
    num_classes: int = 1  # --binary
    mask_dim: int = 256
    controller_layers: int = 3
    dynamic_mask_channels: int = 8
    rel_coord: bool = True
    mask_out_stride: int = 4
    mask_feat_stride: int = 4
    fpn_sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)  # strides 4, 8, 16, 32
    use_positive_cls: bool = True  # always True: ActionVOS (a plain ReferFormer checkpoint must be fine-tuned)
    text: RobertaSettings = field(default_factory=RobertaSettings)

    # ------------------------------------------------------------------ derived values
    @property
    def weight_nums(self) -> list[int]:
        """Dynamic mask head weight counts per layer, e.g. ``[2064, 64, 8]`` (spec 2)."""
        c = self.dynamic_mask_channels
        in_ch = self.mask_dim + (2 if self.rel_coord else 0)
        nums = []
        for i in range(self.controller_layers):
            if i == 0:
                nums.append(in_ch * c)
            elif i == self.controller_layers - 1:
                nums.append(c * 1)
            else:
                nums.append(c * c)
        return nums

    @property
    def bias_nums(self) -> list[int]:
        """Dynamic mask head bias counts per layer, e.g. ``[8, 8, 1]``."""
        c = self.dynamic_mask_channels
        return [c] * (self.controller_layers - 1) + [1]

    @property
    def num_gen_params(self) -> int:
        """Length of the controller output, 2153 for the released model."""
        return sum(self.weight_nums) + sum(self.bias_nums)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: on unknown keys (the dict came from another tool or a newer version).
        """
        d = {k: v for k, v in d.items() if k not in DEPLOYMENT_KEYS}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys {unknown}; the config was written by another tool or version")
        text = RobertaSettings(**d.pop("text", {}))
        for k in ("backbone_layers", "fpn_sr_ratios"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(text=text, **d)


PRESETS: dict[str, ModelConfig] = {
    "rf_r101_actionvos": ModelConfig(),
    "rf_r50_actionvos": ModelConfig(name="rf_r50_actionvos", backbone_layers=(3, 4, 6, 3)),
    # The reduced configuration of ../shared/reference/tiny (its README and config.json).
    "reference_tiny": ModelConfig(
        name="reference_tiny",
        backbone_layers=(1, 1, 1, 1),
        enc_layers=1,
        dec_layers=2,
        dim_feedforward=256,
        text=RobertaSettings(vocab_size=1000, num_hidden_layers=1, intermediate_size=768),
    ),
    # A small model for the CPU demo (issue 5): trained from scratch on ../shared/data/minivisor, not the paper's model.
    "demo_small": ModelConfig(
        name="demo_small",
        backbone_layers=(1, 1, 1, 1),
        backbone_width=16,
        hidden_dim=64,
        enc_layers=1,
        dec_layers=2,
        dim_feedforward=128,
        mask_dim=64,
        text=RobertaSettings(vocab_size=1000, hidden_size=128, num_hidden_layers=1, num_attention_heads=4,
                             intermediate_size=256),
    ),
}


def get_preset(name: str) -> ModelConfig:
    """Return the preset called ``name``.

    Raises:
        ValueError: when ``name`` is not a preset; the message lists the valid names.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
