"""Real-time runtime: backends, the streaming session, the prompt cache and the live app.

Modules (nothing heavy is imported here; each imports its own dependencies):

* :mod:`~actionvos.runtime.session` — :class:`StreamSession` (the causal driver of :mod:`actionvos.pipeline.drivers`).
* :mod:`~actionvos.runtime.temporal` — causal query-selection and gate rules (running mean / EMA).
* :mod:`~actionvos.runtime.prompt_cache` — LRU of text features keyed by (model, tokenizer, prompt), ``.npz`` on disk.
* :mod:`~actionvos.runtime.backends` — PyTorch, ONNX Runtime (TensorRT → CUDA → CPU EPs), TensorRT.
* :mod:`~actionvos.runtime.capture`, :mod:`~actionvos.runtime.hud`, :mod:`~actionvos.runtime.camera`,
  :mod:`~actionvos.runtime.serve` — the live app (window, browser view).
* :mod:`~actionvos.runtime.cli` — ``register(app)`` adding ``actionvos camera``.

The pieces every path shares live below: :mod:`actionvos.card` (model card), :mod:`actionvos.tokenizer`,
:mod:`actionvos.artifacts` (open any artifact), :mod:`actionvos.pipeline` (drivers, frame ops, sink).
"""
