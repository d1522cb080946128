"""Self-describing artifacts: the ``metadata_props`` every exported graph carries (habit 7 of STYLE.md).

Keys (all strings; JSON where noted):

===============================  =======================================================================
``actionvos.format``             metadata layout version (``"1"``)
``actionvos.role``               ``text_encoder`` or ``segmenter``
``actionvos.preset``             ModelConfig name (``rf_r101_actionvos``, ``reference_tiny``, ...)
``actionvos.config``             JSON ``ModelConfig.to_dict()``
``actionvos.input``              JSON: frames/height/width, layout ``TCHW``, dtype ``uint8``, ``RGB``, scale 1/255,
                                 ImageNet mean/std, and the resize rule the runtime must apply first (spec 3.1)
``actionvos.prompt_template``    e.g. ``{object} used in the action of {action}`` (spec 4)
``actionvos.thresholds``         JSON: ``pos_cls_thres``, ``mask_threshold``, ``background_prob`` (spec 3.9)
``actionvos.tokenizer``          tokenizer directory or hub id given at export (``""`` if none)
``actionvos.checkpoint_sha256``  first 16 hex digits of the checkpoint's SHA-256 (``""`` for a model object)
``actionvos.exporter``           JSON: actionvos/torch/onnx versions and the exporter path
``actionvos.msda``               ``plugin`` or ``onnx``
``actionvos.msda_op``            JSON: custom-op domain, op type, plugin_version
``actionvos.spec``               JSON :meth:`ExportSpec.to_dict` (names, shapes, profiles, tolerances)
===============================  =======================================================================

Imports json only at module level; :func:`read_metadata` imports onnx.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["PREFIX", "FORMAT_VERSION", "JSON_KEYS", "read_metadata", "spec_from_metadata", "decode_metadata"]

PREFIX = "actionvos."
FORMAT_VERSION = "1"
JSON_KEYS = ("config", "input", "thresholds", "exporter", "msda_op", "spec")


def decode_metadata(props: dict[str, str]) -> dict[str, Any]:
    """``{"actionvos.x": str}`` → ``{"x": value}`` with the JSON keys parsed; other keys are dropped."""
    out: dict[str, Any] = {}
    for k, v in props.items():
        if not k.startswith(PREFIX):
            continue
        key = k[len(PREFIX):]
        out[key] = json.loads(v) if key in JSON_KEYS else v
    return out


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Read the ``actionvos.*`` metadata of an exported ``.onnx`` without loading its weights.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file has no ActionVOS metadata (not exported by ``actionvos-export``).
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    meta = decode_metadata({p.key: p.value for p in model.metadata_props})
    if "role" not in meta:
        raise ValueError(f"{path} carries no ActionVOS metadata; export it with actionvos-export")
    return meta


def spec_from_metadata(meta: dict[str, Any]):
    """The :class:`~actionvos.export.spec.ExportSpec` stored in decoded metadata."""
    from actionvos.export.spec import ExportSpec

    return ExportSpec.from_dict(meta["spec"])
