"""Self-describing graphs: the ``metadata_props`` every exported ``.onnx`` carries (habit 7 of STYLE.md), and THE
one reader of them.

Keys written (all strings; JSON where noted). The model's facts are in the card only
(:class:`actionvos.card.ModelCard`, schema in :mod:`actionvos.card`); the other keys describe the graph itself.

===========================  ===========================================================================================
``actionvos.format``         metadata layout version (:data:`FORMAT_VERSION`, ``"2"``: the card replaced the per-fact
                             keys ``config``/``input``/``thresholds``/``prompt_template``/``tokenizer``/
                             ``checkpoint_sha256``/``preset``/``msda``/``msda_op``/``precision``/``window`` of ``"1"``)
``actionvos.role``           the graph: ``text_encoder``, ``segmenter``, ``frame_encoder`` or ``window_decoder``
                             (:data:`actionvos.export.spec.GRAPH_ROLES`)
``actionvos.card``           JSON :meth:`ModelCard.to_dict` of the export (equal in every graph and to ``card.json``;
                             key :data:`actionvos.card.ONNX_CARD_KEY`)
``actionvos.spec``           JSON :meth:`ExportSpec.to_dict`: names, shapes with named dynamic axes, TensorRT profile
                             ranges, custom-op identity, parity tolerances
``actionvos.exporter``       JSON: actionvos / torch / onnx versions and the exporter path
``actionvos.calibration``    JSON, only in reduced-precision graphs: how they were made (``actionvos-export --fp16``:
                             the converter and its FP32 keep list; ``actionvos calibrate fp16 / int8``: their record)
===========================  ===========================================================================================

:func:`read_onnx_metadata` reads them with a minimal protobuf scan: it needs neither the ``onnx`` package nor an
inference session (a graph with TensorRT-plugin nodes cannot be opened on the CPU provider; an edge box may lack
``onnx``). This module imports only the standard library.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from actionvos.errors import InputError

__all__ = ["PREFIX", "FORMAT_VERSION", "KEYS", "JSON_KEYS", "CALIBRATION_KEY", "encode_metadata", "decode_metadata",
           "read_onnx_props", "read_onnx_metadata", "spec_from_metadata"]

PREFIX = "actionvos."
FORMAT_VERSION = "2"
#: Every key (without :data:`PREFIX`) a graph may carry; the table above documents each.
KEYS = ("format", "role", "card", "spec", "exporter", "calibration")
#: Keys whose values are JSON.
JSON_KEYS = ("card", "spec", "exporter", "calibration")
#: Full key of the reduced-precision record.
CALIBRATION_KEY = PREFIX + "calibration"


def encode_metadata(values: dict[str, Any]) -> dict[str, str]:
    """``{"role": "segmenter", "card": {...}}`` → ``{"actionvos.role": "segmenter", "actionvos.card": "{...}"}``.

    Raises:
        ValueError: a key outside :data:`KEYS` (document it in the table above first).
    """
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ValueError(f"undocumented metadata keys {unknown}; add them to actionvos.export.metadata first")
    return {PREFIX + k: (json.dumps(v) if k in JSON_KEYS else str(v)) for k, v in values.items()}


def decode_metadata(props: dict[str, str]) -> dict[str, Any]:
    """``{"actionvos.x": str}`` → ``{"x": value}`` with the JSON keys parsed; keys of other prefixes are dropped."""
    out: dict[str, Any] = {}
    for k, v in props.items():
        if not k.startswith(PREFIX):
            continue
        key = k[len(PREFIX):]
        out[key] = json.loads(v) if key in JSON_KEYS else v
    return out


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _metadata_props(buf: bytes) -> dict[str, str]:
    """``ModelProto.metadata_props`` (field 14, ``StringStringEntryProto {1: key, 2: value}``) of a serialised model.

    Raises:
        IndexError, ValueError, UnicodeDecodeError: not a protobuf ``ModelProto``.
    """
    props: dict[str, str] = {}
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ValueError("truncated field")
            if field == 14:
                entry, j, kv = buf[i:i + n], 0, {}
                while j < len(entry):
                    k2, j = _varint(entry, j)
                    m, j = _varint(entry, j)
                    kv[k2 >> 3] = entry[j:j + m].decode("utf-8")
                    j += m
                props[kv.get(1, "")] = kv.get(2, "")
            i += n
        elif wire == 5:
            i += 4
        elif wire == 1:
            i += 8
        else:
            raise ValueError(f"wire type {wire}")
    return props


def read_onnx_props(path: str | os.PathLike) -> dict[str, str]:
    """Every ``metadata_props`` entry of an ``.onnx`` file as stored (``{"actionvos.card": "{...}", ...}``, other
    prefixes included): the raw view of :func:`read_onnx_metadata`, for tools that copy metadata onto a derived graph.

    Raises:
        InputError: the file does not exist or is not a readable ONNX model.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist; pass the folder written by `actionvos export`")
    try:
        return _metadata_props(path.read_bytes())
    except (IndexError, ValueError, UnicodeDecodeError) as err:
        raise InputError(f"{path} is not a readable ONNX model ({err}); re-export it with `actionvos export`") from None


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The decoded ``actionvos.*`` metadata of an ``.onnx`` file (:func:`decode_metadata`): ``{"role": str,
    "card": dict, "spec": dict, ...}``. The one ONNX metadata reader of the project.

    Weights are read as bytes but never parsed; neither ``onnx`` nor ``onnxruntime`` is imported.

    Raises:
        InputError: the file does not exist, is not a readable ONNX model, or carries no ActionVOS metadata (not
            written by ``actionvos export``); the message says to re-export.
    """
    props = read_onnx_props(path)
    try:
        meta = decode_metadata(props)
    except ValueError as err:  # json.JSONDecodeError
        raise InputError(f"{path} is not a readable ONNX model ({err}); re-export it with `actionvos export`") from None
    if "role" not in meta:
        raise InputError(f"{path} carries no ActionVOS metadata; export it with `actionvos export`")
    return meta


def spec_from_metadata(meta: dict[str, Any]):
    """The :class:`~actionvos.export.spec.ExportSpec` stored in decoded metadata.

    Raises:
        InputError: the metadata has no (valid) spec; re-export.
    """
    from actionvos.export.spec import ExportSpec

    try:
        return ExportSpec.from_dict(meta["spec"])
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"the graph's metadata has no valid export spec ({type(err).__name__}: {err}); "
                         "re-export it with `actionvos export`") from None
