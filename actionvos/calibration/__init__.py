"""Reduced precision for deployment: calibration data, FP16 graphs with measured-sensitive ops kept in FP32,
INT8 explicit Q/DQ graphs, and the accuracy report that says what each precision costs.

TensorRT 10.12+ takes the precision from the ONNX graph (casts, Q/DQ) instead of builder flags, so the graphs this
package writes are the deployable artifacts; the report compares them with the FP32 export on real clips.

* :mod:`~actionvos.calibration.data` — ``calibrate collect``: clips + prompts as the runtime feeds them, one ``.npz``.
* :mod:`~actionvos.calibration.fp16` — ``calibrate fp16``: sensitivity measurement and conversion.
* :mod:`~actionvos.calibration.int8` — ``calibrate int8``: ``quantize_static`` (QDQ) and TensorRT engine builds.
* :mod:`~actionvos.calibration.report` — ``calibrate report``: errors, mask IoU, gate/query agreement.
* :mod:`~actionvos.calibration.cli` — the ``actionvos calibrate`` commands (:func:`~actionvos.calibration.cli.register`).
"""
