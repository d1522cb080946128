"""ActionVOS deployment toolchain: reference model, export, TensorRT plugin and streaming runtime.

``import actionvos`` imports nothing heavy (no torch, no onnxruntime); subpackages import
their own dependencies lazily.
"""

__version__ = "0.1.0"
