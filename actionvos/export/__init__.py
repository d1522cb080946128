"""Export: checkpoint → a self-contained folder (``text_encoder``, ``segmenter``, ``frame_encoder`` and
``window_decoder`` ``.onnx``, ``card.json``, ``tokenizer/``) → TensorRT engines (issues 3, 9).

Modules (nothing heavy is imported here):

* :mod:`~actionvos.export.spec` — one :class:`ExportSpec` per graph (names, dynamic axes, opset, dummy inputs,
  TensorRT profiles, parity tolerances); numpy only.
* :mod:`~actionvos.export.exporter` — :func:`export_model`, the capability table and option validation.
* :mod:`~actionvos.export.cli` — ``actionvos-export`` / ``actionvos export``.
* :mod:`~actionvos.export.graphs` — the ``nn.Module`` wrappers over the model's stage methods, one per graph.
* :mod:`~actionvos.export.msda_export` — MSDA as one custom-op node per layer, or decomposed (GridSample).
* :mod:`~actionvos.export.custom_ops` — the op's ONNX schema, NumPy reference and CPU execution paths.
* :mod:`~actionvos.export.metadata`, :mod:`~actionvos.export.compare` — graph metadata (the card, the spec) and
  its one reader; per-output comparison.
* :mod:`actionvos.trt_api` (outside this package) — all TensorRT API use (engine build, sidecar JSON, engine run).
* :mod:`~actionvos.export.trt_plugin`, :mod:`~actionvos.export.msda_cuda` — plugin library loader, CUDA kernels.
"""
