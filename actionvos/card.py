"""The model card: the one frozen object that holds every fact a deployed ActionVOS model carries.

Every command and backend reads these facts from the card and from nowhere else; no other module defaults a
threshold, retypes the prompt template or guesses an input size (STYLE.md, "one card, one pipeline").
Options given on the command line override the card through :meth:`ModelCard.override`, and each override is
recorded in :attr:`ModelCard.overrides` (so ``summary.json`` says what was changed).

Schema (version :data:`CARD_SCHEMA_VERSION`), as written by :meth:`ModelCard.to_dict`:

=====================  ==============================================================================================
``schema``             int, card layout version; a newer one than this code knows is refused
``config``             :meth:`ModelConfig.to_dict` (architecture; ``config.name`` is the preset)
``checkpoint_sha256``  16 hex digits of the SHA-256 of the weights file the artifact came from
``tokenizer_sha256``   16 hex digits of the SHA-256 of the tokenizer files (:mod:`actionvos.tokenizer`), or null
                       when the artifact carries no tokenizer (an official checkpoint)
``prompt_template``    e.g. ``{object} used in the action of {action}`` (spec 4)
``input``              ``short_side`` (px, spec 3.1), ``max_clip_frames`` (36, spec 3.9), ``size`` ``[H, W]`` of a
                       static graph or null, ``mean`` / ``std`` (ImageNet, applied after ``/255``)
``thresholds``         ``pos_cls_thres`` (gate on sigmoid(positive logit), [0, 1]), ``mask_threshold`` ((0, 1)),
                       ``background_prob`` ([0, 1]) (spec 3.9), and ``rule``: how ``pos_cls_thres`` was chosen
``precision``          ``fp32`` | ``fp16`` | ``int8`` (:class:`Precision`)
``msda``               ``torch`` (PyTorch module) | ``plugin`` (TensorRT custom op) | ``onnx`` (GridSample)
``window``             static clip length T of a graph, or null when any length runs (PyTorch, dynamic-T graphs)
``weights_note``       set when the weights are not the paper's (random weights, the demo model), else null
``overrides``          ``{field: value}`` changed on the command line after reading the artifact
=====================  ==============================================================================================

Where the card lives in each artifact (written by :func:`write_card` / :meth:`ModelCard.onnx_props`):

* our checkpoints (training output, the demo): the top-level entry ``card`` (a dict) and ``tokenizer``
  (``{file name: text}``);
* an ONNX export folder, an engine folder, an FP16 / INT8 folder: ``card.json`` plus a ``tokenizer/`` folder,
  and every ``.onnx`` graph also carries the card as ``metadata_props["actionvos.card"]``;
* an official ReferFormer/ActionVOS checkpoint has none: :func:`card_for_checkpoint` builds one from the
  architecture (``--preset`` or inferred) with the released model's facts (:data:`OFFICIAL_FACTS`).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from actionvos.errors import ConfigError, InputError
from actionvos.model.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig

__all__ = [
    "CARD_SCHEMA_VERSION",
    "CARD_FILE",
    "ONNX_CARD_KEY",
    "MSDA_MODES",
    "resized_size",
    "Precision",
    "InputRule",
    "Thresholds",
    "ModelCard",
    "OFFICIAL_FACTS",
    "card_for_checkpoint",
    "read_card_file",
    "write_card",
    "card_from_onnx",
]

CARD_SCHEMA_VERSION = 1
#: File name of the card inside an artifact folder.
CARD_FILE = "card.json"
#: ``metadata_props`` key of the card inside every exported graph.
ONNX_CARD_KEY = "actionvos.card"
#: How MSDA runs: the PyTorch module, our TensorRT custom op, or decomposed into ONNX GridSample.
MSDA_MODES = ("torch", "plugin", "onnx")


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """Output ``(H, W)`` of torchvision ``Resize(short_side)``: the short side becomes ``short_side``, the long side
    ``int(short_side * long / short)`` (truncated), no max size; e.g. 480×854 → 360×640 (spec 3.1)."""
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


class Precision(str, enum.Enum):
    """Numeric precision of an artifact's weights and activations."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


@dataclass(frozen=True)
class InputRule:
    """How frames are brought to the model (spec 3.1, 3.9).

    Attributes:
        short_side: the shorter frame side is resized to this many pixels (PIL bilinear); the long side to
            ``int(short_side * long / short)``.
        max_clip_frames: the official rule decodes clips of at most this many frames (36).
        size: ``(H, W)`` in pixels of a graph with a static input size, else None.
        mean, std: per-channel RGB normalisation applied after ``/255``.
    """

    short_side: int
    max_clip_frames: int
    size: tuple[int, int] | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def check(self) -> "InputRule":
        """Return self, or raise :class:`ConfigError` naming the bad value."""
        if self.short_side < 32:
            raise ConfigError(f"input short side must be >= 32 pixels, got {self.short_side}")
        if self.max_clip_frames < 1:
            raise ConfigError(f"max clip frames must be >= 1, got {self.max_clip_frames}")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 32):
            raise ConfigError(f"input size must be (H, W) with both >= 32 pixels, got {self.size}")
        return self

    def model_size(self, height: int, width: int) -> tuple[int, int]:
        """``(H, W)`` the model sees for a frame of ``height × width`` pixels: the static size when the graph has
        one, else torchvision ``Resize(short_side)`` (spec 3.1; e.g. 480×854 → 360×640)."""
        if self.size is not None:
            return tuple(self.size)
        return resized_size(height, width, self.short_side)


@dataclass(frozen=True)
class Thresholds:
    """Post-processing constants (spec 3.9).

    Attributes:
        pos_cls_thres: an object passes the positive gate when ``sigmoid(positive logit) >= pos_cls_thres``; [0, 1].
        mask_threshold: mask probabilities below it count as 0 in the merge; (0, 1).
        background_prob: constant of the background plane in the merge; [0, 1].
        rule: how ``pos_cls_thres`` was chosen (e.g. the paper's value, or a rule on a training split).
    """

    pos_cls_thres: float
    mask_threshold: float
    background_prob: float
    rule: str = ""

    def check(self) -> "Thresholds":
        """Return self, or raise :class:`ConfigError` naming the option and its valid range."""
        if not 0.0 <= self.pos_cls_thres <= 1.0:
            raise ConfigError(f"--pos-thres must be in [0, 1], got {self.pos_cls_thres}")
        if not 0.0 < self.mask_threshold < 1.0:
            raise ConfigError(f"mask threshold must be in (0, 1), got {self.mask_threshold}")
        if not 0.0 <= self.background_prob <= 1.0:
            raise ConfigError(f"background probability must be in [0, 1], got {self.background_prob}")
        return self


#: The facts of the released ActionVOS model (spec 3.1, 3.9, 4); used only for a checkpoint that has no card.
OFFICIAL_FACTS = {
    "prompt_template": "{object} used in the action of {action}",
    "input": InputRule(short_side=360, max_clip_frames=36),
    "thresholds": Thresholds(pos_cls_thres=0.75, mask_threshold=0.5, background_prob=0.1,
                             rule="the paper's value (ActionVOS, spec 3.9)"),
}

_REQUIRED = ("schema", "config", "checkpoint_sha256", "tokenizer_sha256", "prompt_template", "input", "thresholds",
             "precision", "msda", "window", "weights_note")
_OVERRIDABLE = {
    "pos_cls_thres": "thresholds", "mask_threshold": "thresholds", "background_prob": "thresholds",
    "prompt_template": None, "short_side": "input",
}


@dataclass(frozen=True)
class ModelCard:
    """Every fact of a deployed model, read once from an artifact and written into every artifact we produce.

    Attributes:
        config: the architecture (:class:`~actionvos.model.config.ModelConfig`; ``config.name`` is the preset).
        checkpoint_sha256: 16 hex digits identifying the weights (shared by all graphs exported from them).
        tokenizer_sha256: 16 hex digits identifying the tokenizer files, or None (an official checkpoint).
        prompt_template: ``{object}`` / ``{action}`` template the model was trained with (spec 4).
        input: :class:`InputRule`.
        thresholds: :class:`Thresholds`.
        precision: :class:`Precision`.
        msda: one of :data:`MSDA_MODES`.
        window: static clip length T, or None when any length runs.
        weights_note: why these weights are not the paper's, or None.
        overrides: ``(field, value)`` pairs changed after reading (command-line options), in order.
        schema: :data:`CARD_SCHEMA_VERSION`.
    """

    config: ModelConfig
    checkpoint_sha256: str
    tokenizer_sha256: str | None
    prompt_template: str
    input: InputRule
    thresholds: Thresholds
    precision: Precision = Precision.FP32
    msda: str = "torch"
    window: int | None = None
    weights_note: str | None = None
    overrides: tuple[tuple[str, Any], ...] = ()
    schema: int = CARD_SCHEMA_VERSION

    def __post_init__(self) -> None:
        from actionvos.prompts import check_template

        if self.msda not in MSDA_MODES:
            raise ConfigError(f"card: msda must be one of {MSDA_MODES}, got {self.msda!r}")
        if self.window is not None and self.window < 1:
            raise ConfigError(f"card: window must be >= 1 frame, got {self.window}")
        if not isinstance(self.precision, Precision):
            object.__setattr__(self, "precision", Precision(self.precision))
        check_template(self.prompt_template)
        self.input.check()
        self.thresholds.check()

    # ------------------------------------------------------------------ derived facts
    @property
    def vocab_size(self) -> int:
        """Rows of the text encoder's word-embedding table (token ids must be below it)."""
        return self.config.text.vocab_size

    @property
    def max_text_tokens(self) -> int:
        """Longest tokenised prompt (with ``<s>``/``</s>``) the text encoder takes: RoBERTa's learned positions minus
        the two offset rows (512 for roberta-base)."""
        return self.config.text.max_position_embeddings - 2

    @property
    def num_queries(self) -> int:
        """Q, object queries per frame (5 released)."""
        return self.config.num_queries

    @property
    def model_id(self) -> str:
        """Prompt-cache key of the text features: weights hash and precision (``{sha}:{precision}``)."""
        return f"{self.checkpoint_sha256}:{self.precision.value}"

    # ------------------------------------------------------------------ overrides
    def override(self, **values: Any) -> "ModelCard":
        """A copy with command-line overrides applied and recorded; ``None`` values are ignored.

        Args:
            values: any of ``pos_cls_thres``, ``mask_threshold``, ``background_prob``, ``prompt_template``,
                ``short_side``.
        Raises:
            ConfigError: an unknown field, or a value out of its range.
        """
        card = self
        for name, value in values.items():
            if value is None:
                continue
            if name not in _OVERRIDABLE:
                raise ConfigError(f"card field {name!r} cannot be overridden; choose one of {sorted(_OVERRIDABLE)}")
            group = _OVERRIDABLE[name]
            if group is None:
                card = dataclasses.replace(card, **{name: value})
            else:
                sub = dataclasses.replace(getattr(card, group), **{name: type(getattr(getattr(card, group), name))(value)})
                if group == "input" and card.input.size is not None:
                    raise ConfigError(f"--short-side cannot change a graph exported at {card.input.size[0]}x{card.input.size[1]}")
                card = dataclasses.replace(card, **{group: sub})
            card = dataclasses.replace(card, overrides=card.overrides + ((name, value),))
        return card

    def with_artifact(self, **values: Any) -> "ModelCard":
        """A copy describing a derived artifact (export, FP16/INT8 conversion): ``precision``, ``msda``, ``window``,
        ``input``... Overrides are kept."""
        if "precision" in values:
            values["precision"] = Precision(values["precision"])
        return dataclasses.replace(self, **values)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """The JSON-able card (see the module docstring for the schema)."""
        inp = self.input
        return {
            "schema": self.schema,
            "config": self.config.to_dict(),
            "checkpoint_sha256": self.checkpoint_sha256,
            "tokenizer_sha256": self.tokenizer_sha256,
            "prompt_template": self.prompt_template,
            "input": {"short_side": inp.short_side, "max_clip_frames": inp.max_clip_frames,
                      "size": list(inp.size) if inp.size else None, "mean": list(inp.mean), "std": list(inp.std)},
            "thresholds": dataclasses.asdict(self.thresholds),
            "precision": self.precision.value,
            "msda": self.msda,
            "window": self.window,
            "weights_note": self.weights_note,
            "overrides": {k: v for k, v in self.overrides},
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "the artifact") -> "ModelCard":
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: a newer schema than this code knows, a missing required field, or an invalid value;
                the message names ``where`` and the fix.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"the model card of {where} is not a JSON object; re-export it")
        schema = d.get("schema")
        if not isinstance(schema, int):
            raise ConfigError(f"the model card of {where} has no schema version; re-export it with this version of actionvos")
        if schema > CARD_SCHEMA_VERSION:
            raise ConfigError(f"the model card of {where} has schema {schema}, newer than this actionvos knows "
                              f"({CARD_SCHEMA_VERSION}); upgrade actionvos")
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise ConfigError(f"the model card of {where} lacks {missing}; re-export it with this version of actionvos")
        try:
            inp, th = d["input"], d["thresholds"]
            return cls(
                config=ModelConfig.from_dict(d["config"]),
                checkpoint_sha256=str(d["checkpoint_sha256"]),
                tokenizer_sha256=d["tokenizer_sha256"],
                prompt_template=str(d["prompt_template"]),
                input=InputRule(short_side=int(inp["short_side"]), max_clip_frames=int(inp["max_clip_frames"]),
                                size=tuple(int(v) for v in inp["size"]) if inp.get("size") else None,
                                mean=tuple(float(v) for v in inp["mean"]), std=tuple(float(v) for v in inp["std"])),
                thresholds=Thresholds(pos_cls_thres=float(th["pos_cls_thres"]), mask_threshold=float(th["mask_threshold"]),
                                      background_prob=float(th["background_prob"]), rule=str(th.get("rule", ""))),
                precision=Precision(d["precision"]),
                msda=str(d["msda"]),
                window=None if d["window"] is None else int(d["window"]),
                weights_note=d["weights_note"],
                overrides=tuple((str(k), v) for k, v in (d.get("overrides") or {}).items()),
                schema=schema,
            )
        except ConfigError as err:
            raise ConfigError(f"the model card of {where} is invalid: {err}") from None
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"the model card of {where} is invalid ({type(err).__name__}: {err}); re-export it") from None

    def onnx_props(self) -> dict[str, str]:
        """The ``metadata_props`` entry that carries the card inside a graph."""
        return {ONNX_CARD_KEY: json.dumps(self.to_dict())}

    def summary(self) -> dict[str, Any]:
        """The facts a run records in ``summary.json`` (the whole card, flattened for reading)."""
        d = self.to_dict()
        d.pop("config")
        d["preset"] = self.config.name
        return d


def card_for_checkpoint(config: ModelConfig, checkpoint_sha256: str, *, tokenizer_sha256: str | None = None,
                        legacy: Mapping[str, Any] | None = None, weights_note: str | None = None) -> ModelCard:
    """The card of a checkpoint that carries none: the released model's facts (:data:`OFFICIAL_FACTS`), with the
    deployment facts a version-0.1 checkpoint stored in its config (``legacy``: ``short_side``, thresholds,
    template) taking precedence.

    Source: spec 3.1 (short side 360), 3.9 (36-frame clips, gate 0.75, mask 0.5, background 0.1), 4 (template).
    """
    legacy = dict(legacy or {})
    inp = OFFICIAL_FACTS["input"]
    th = OFFICIAL_FACTS["thresholds"]
    if legacy:
        inp = InputRule(short_side=int(legacy.get("short_side", inp.short_side)),
                        max_clip_frames=int(legacy.get("max_clip_frames", inp.max_clip_frames)))
        if "pos_cls_thres" in legacy:
            th = Thresholds(float(legacy["pos_cls_thres"]), float(legacy.get("mask_threshold", th.mask_threshold)),
                            float(legacy.get("background_prob", th.background_prob)),
                            rule="stored in the checkpoint's config (actionvos 0.1)")
    return ModelCard(config=config, checkpoint_sha256=checkpoint_sha256, tokenizer_sha256=tokenizer_sha256,
                     prompt_template=str(legacy.get("prompt_template", OFFICIAL_FACTS["prompt_template"])),
                     input=inp, thresholds=th, weights_note=weights_note)


def read_card_file(folder: str | Path) -> ModelCard:
    """The card of an artifact folder (``card.json``).

    Raises:
        InputError: the folder has no ``card.json`` (not written by this version of actionvos).
        ConfigError: see :meth:`ModelCard.from_dict`.
    """
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        raise InputError(f"{folder} has no {CARD_FILE}; it was not written by this version of actionvos "
                         "(re-export it with `actionvos export`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read {path} ({err}); re-export the folder") from None
    return ModelCard.from_dict(data, where=str(folder))


def write_card(folder: str | Path, card: ModelCard) -> Path:
    """Write ``card.json`` into an artifact folder atomically; returns its path."""
    from actionvos.io_utils import atomic_write_text

    path = Path(folder) / CARD_FILE
    atomic_write_text(path, card.to_json())
    return path


def card_from_onnx(meta: Mapping[str, Any], where: str) -> ModelCard:
    """The card stored in a graph's decoded ``actionvos.*`` metadata (key ``card``).

    Raises:
        ConfigError: the graph carries no card (exported by an older version) or an invalid one.
    """
    if "card" not in meta:
        raise ConfigError(f"{where} carries no model card; re-export it with this version of actionvos")
    return ModelCard.from_dict(meta["card"], where=where)
