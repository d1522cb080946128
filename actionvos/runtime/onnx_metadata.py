"""Moved to :func:`actionvos.export.metadata.read_onnx_metadata`, the one ONNX metadata reader (standard library only).

This alias stays only until ``runtime/backends/factory.py`` and ``runtime/backends/tensorrt.py`` import it from there;
it defines nothing of its own.
"""

from actionvos.export.metadata import read_onnx_metadata

__all__ = ["read_onnx_metadata"]
