"""Read the ``actionvos.*`` metadata of an exported ``.onnx`` without the ``onnx`` package or an inference session
(a graph with TensorRT-plugin nodes cannot be opened on the CPU provider; an edge box may lack ``onnx``).
Keys: :mod:`actionvos.export.metadata`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from actionvos.errors import InputError

__all__ = ["read_onnx_metadata"]


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``actionvos.*`` metadata of an ``.onnx`` file, decoded (:func:`actionvos.export.metadata.decode_metadata`).

    Reads ``ModelProto.metadata_props`` (field 14) with a minimal protobuf scan, so neither the ``onnx`` package nor
    an inference session is needed — a graph with TensorRT-plugin nodes cannot be opened on the CPU provider.

    Raises:
        InputError: the file is not a readable ONNX model.
    """
    from actionvos.export.metadata import decode_metadata

    buf = Path(path).read_bytes()
    props: dict[str, str] = {}
    i = 0
    try:
        while i < len(buf):
            key, i = _varint(buf, i)
            field, wire = key >> 3, key & 7
            if wire == 0:
                _, i = _varint(buf, i)
            elif wire == 2:
                n, i = _varint(buf, i)
                if field == 14:  # StringStringEntryProto {1: key, 2: value}
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
    except (IndexError, ValueError, UnicodeDecodeError) as err:
        raise InputError(f"{path} is not a readable ONNX model ({err}); re-export it") from None
    return decode_metadata(props)
