"""Real-time streaming runtime: a typed per-stream session over interchangeable backends.

Modules (nothing heavy is imported here; each imports its own dependencies):

* :mod:`~actionvos.runtime.session` — :class:`StreamSession`, :class:`StreamConfig`, :class:`FrameResult`.
* :mod:`~actionvos.runtime.temporal` — causal query-selection and gate rules (running mean / EMA).
* :mod:`~actionvos.runtime.prompt_cache` — LRU of text features keyed by (model, tokenizer, prompt), ``.npz`` on disk.
* :mod:`~actionvos.runtime.tokenizer` — RoBERTa BPE ids with the ``tokenizers`` library (torch-free).
* :mod:`~actionvos.runtime.frame_ops` — numpy/OpenCV resize, mask upsampling and label merge.
* :mod:`~actionvos.runtime.backends` — PyTorch eager, ONNX Runtime (TensorRT → CUDA → CPU EPs), TensorRT.
* :mod:`~actionvos.runtime.capture`, :mod:`~actionvos.runtime.hud`, :mod:`~actionvos.runtime.camera` — the live app.
* :mod:`~actionvos.runtime.files` — ``run_stream`` for files (the offline writers, streaming rules).
* :mod:`~actionvos.runtime.cli` — ``register(app)`` adding ``actionvos camera``.
"""
