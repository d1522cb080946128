"""Reduced precision for deployment: calibration data, FP16 graphs with measured-sensitive ops kept in FP32,
INT8 explicit Q/DQ graphs, and the accuracy report that says what each precision costs.

TensorRT 10.12+ takes the precision from the ONNX graph (casts, Q/DQ) instead of builder flags, so the graphs this
package writes are the deployable artifacts; the report compares them with the FP32 export on real clips that the
calibration did not see.

Modules, by job (numpy + onnx + onnxruntime; torch only for ``collect --checkpoint``):

* calibration data — :mod:`~.clips` (in-memory clips, prompt sets, clip identity, hold-out split),
  :mod:`~.npz_store` (the ``.npz`` file; lazy one-clip-at-a-time reading), :mod:`~.sources` (videos, frame folders,
  datasets), :mod:`~.sampling` (which frames), :mod:`~.text_features` (FP32 text features),
  :mod:`~.collect` (``calibrate collect``).
* model facts — :mod:`~.model_facts`: the single place the package reads a model's facts (to become the model card).
* FP16 — :mod:`~.fp16_sensitivity` (which node groups must stay FP32) and :mod:`~.fp16` (``calibrate fp16``); the
  conversion and node groups themselves are in :mod:`actionvos.precision` (shared with the exporter).
* INT8 — :mod:`~.int8_readers` (calibration data readers), :mod:`~.int8_calibrators` (streamed ranges: memory flat
  in the number of clips) and :mod:`~.int8` (``calibrate int8``: ``quantize_static`` QDQ, TensorRT engines).
* report — :mod:`~.graph_runs` (running graph pairs), :mod:`~.metrics` (agreement per clip),
  :mod:`~.report_markdown`, :mod:`~.report_figures` (worst clips) and :mod:`~.report` (``calibrate report``).
* :mod:`~.common` — export directories, ORT sessions, atomic output folders; :mod:`~.cli` — the commands.
"""
