"""Backends behind :class:`~actionvos.runtime.backends.base.Backend` (PyTorch, ONNX Runtime, TensorRT), imported lazily by
:func:`actionvos.artifacts.open_model`; ``factory`` holds the ``--backend auto`` decision."""
