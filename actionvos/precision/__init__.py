"""Graph precision helpers shared by :mod:`actionvos.export` and :mod:`actionvos.calibration` (below both).

* :mod:`~actionvos.precision.groups` — node groups of the exported graphs (:data:`GROUPS`, :func:`node_groups`).
* :mod:`~actionvos.precision.fp16` — FP16 conversion with sensitive groups in FP32 (:func:`convert_fp16`) and the one
  list of FP16-sensitive groups (:data:`~actionvos.precision.fp16.FP16_SENSITIVE_OPS`).
"""
