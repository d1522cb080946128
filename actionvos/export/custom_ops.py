"""The MSDA custom op outside TensorRT: ONNX schema (checker + shape inference), a NumPy reference, and CPU
execution through ``onnx.reference.ReferenceEvaluator`` or ONNX Runtime (``onnxruntime-extensions``).

Op contract (``trt_plugins/msda/README.md``; the oracle is :func:`actionvos.model.msda.ms_deform_attn_core`):
node ``trt.plugins::ActionVOS_MSDeformAttn`` with string attribute ``plugin_version = "1"`` and inputs, in order,

* ``value``               ``[N, S, M, D]`` float32/float16
* ``spatial_shapes``      ``[L, 2]`` int64, ``(H_l, W_l)``
* ``level_start_index``   ``[L]`` int64
* ``sampling_locations``  ``[N, Lq, M, L, P, 2]`` float, normalised ``(x, y)``
* ``attention_weights``   ``[N, Lq, M, L, P]`` float, soft-maxed over ``(L, P)``

and one output ``[N, Lq, M * D]`` (rank 3) of ``value``'s dtype. Sampling is bilinear, zero padding,
``align_corners=False`` (location ``x`` → pixel ``x * W - 0.5``).

Only numpy and onnx are imported at module import time (no torch); onnxruntime and onnxruntime-extensions are
imported by the functions that need them.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from actionvos.export.spec import CUSTOM_OPSET_VERSION
from actionvos.export.trt_plugin import ONNX_DOMAIN, PLUGIN_NAME, PLUGIN_VERSION

__all__ = [
    "ORTX_DOMAIN",
    "msda_numpy",
    "register_onnx_schema",
    "reference_evaluator",
    "with_domain",
    "ort_session",
]

log = logging.getLogger(__name__)

#: onnxruntime-extensions registers Python custom ops in this domain only (it has no domain argument), so the
#: CPU execution path renames ``trt.plugins`` to it in an in-memory copy of the graph.
ORTX_DOMAIN = "ai.onnx.contrib"

_lock = threading.Lock()
_schema_registered = False
_ortx_registered = False


def msda_numpy(value: np.ndarray, spatial_shapes: np.ndarray, level_start_index: np.ndarray,
               sampling_locations: np.ndarray, attention_weights: np.ndarray) -> np.ndarray:
    """Multi-scale deformable attention sampling in NumPy (same contract as the PyTorch oracle).

    Args:
        value: ``[N, S, M, D]`` float.
        spatial_shapes: ``[L, 2]`` integer ``(H, W)`` per level.
        level_start_index: ``[L]`` integer offsets into ``S``.
        sampling_locations: ``[N, Lq, M, L, P, 2]`` normalised ``(x, y)``; outside ``[0, 1]`` samples zeros.
        attention_weights: ``[N, Lq, M, L, P]``.
    Returns:
        ``[N, Lq, M * D]`` of ``value``'s dtype (accumulated in float32 or wider).
    Raises:
        ValueError: inconsistent shapes.
    """
    value = np.asarray(value)
    N, S, M, D = value.shape
    loc = np.asarray(sampling_locations)
    aw = np.asarray(attention_weights)
    _, Lq, M2, L, P, two = loc.shape
    shapes = np.asarray(spatial_shapes).astype(np.int64).reshape(-1, 2)
    starts = np.asarray(level_start_index).astype(np.int64).reshape(-1)
    if M2 != M or two != 2 or aw.shape != (N, Lq, M, L, P) or len(shapes) != L or len(starts) != L:
        raise ValueError(f"MSDA shape mismatch: value {value.shape}, locations {loc.shape}, weights {aw.shape}, "
                         f"{len(shapes)} levels")
    acc = np.promote_types(value.dtype, np.float32)
    out = np.zeros((N, Lq, M, D), dtype=acc)
    n_idx = np.arange(N)[:, None, None, None]
    m_idx = np.arange(M)[None, None, :, None]
    for lvl in range(L):
        H, W = int(shapes[lvl, 0]), int(shapes[lvl, 1])
        v = value[:, starts[lvl]:starts[lvl] + H * W].astype(acc)  # [N, HW, M, D]
        x = loc[:, :, :, lvl, :, 0].astype(acc) * W - 0.5  # [N, Lq, M, P]
        y = loc[:, :, :, lvl, :, 1].astype(acc) * H - 0.5
        x0, y0 = np.floor(x), np.floor(y)
        fx, fy = x - x0, y - y0
        a = aw[:, :, :, lvl, :].astype(acc)
        for dy in (0, 1):
            for dx in (0, 1):
                xi, yi = x0.astype(np.int64) + dx, y0.astype(np.int64) + dy
                w = (fx if dx else 1 - fx) * (fy if dy else 1 - fy)
                valid = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
                idx = np.clip(yi, 0, H - 1) * W + np.clip(xi, 0, W - 1)
                gathered = v[n_idx, idx, m_idx]  # [N, Lq, M, P, D]
                out += np.einsum("nqmp,nqmpd->nqmd", w * valid * a, gathered)
    return out.reshape(N, Lq, M * D).astype(value.dtype)


# ---------------------------------------------------------------------- ONNX schema
def _infer_shape(ctx) -> None:
    """Output ``[N, Lq, M*D]`` of value's element type (dims copied symbolically where known)."""
    import onnx

    value_t = ctx.get_input_type(0)
    loc_t = ctx.get_input_type(3) if ctx.get_num_inputs() > 3 else None
    out = onnx.TypeProto()
    out.tensor_type.elem_type = value_t.tensor_type.elem_type
    vdims = list(value_t.tensor_type.shape.dim) if value_t.tensor_type.HasField("shape") else None
    ldims = list(loc_t.tensor_type.shape.dim) if loc_t is not None and loc_t.tensor_type.HasField("shape") else None
    if vdims is not None and len(vdims) == 4:
        shape = out.tensor_type.shape
        shape.dim.add().CopyFrom(vdims[0])
        lq = shape.dim.add()
        if ldims is not None and len(ldims) == 6:
            lq.CopyFrom(ldims[1])
        md = shape.dim.add()
        if vdims[2].HasField("dim_value") and vdims[3].HasField("dim_value"):
            md.dim_value = vdims[2].dim_value * vdims[3].dim_value
    ctx.set_output_type(0, out)


def register_onnx_schema() -> None:
    """Register ``trt.plugins::ActionVOS_MSDeformAttn`` (domain opset :data:`~actionvos.export.spec.CUSTOM_OPSET_VERSION`) with onnx, so that ``onnx.checker`` validates
    the node (input count, attribute) and ``onnx.shape_inference`` infers its output type and shape.

    Idempotent and process-wide. Needs onnx >= 1.16 (``onnx.defs.register_schema``).
    """
    global _schema_registered
    with _lock:
        if _schema_registered:
            return
        import onnx.defs as defs

        try:
            defs.get_schema(PLUGIN_NAME, CUSTOM_OPSET_VERSION, ONNX_DOMAIN)
            _schema_registered = True
            return
        except defs.SchemaError:
            pass
        FP = defs.OpSchema.FormalParameter
        schema = defs.OpSchema(
            PLUGIN_NAME, ONNX_DOMAIN, CUSTOM_OPSET_VERSION,
            "Multi-scale deformable attention sampling (ActionVOS TensorRT plugin); output [N, Lq, M*D].",
            inputs=[FP("value", "T"), FP("spatial_shapes", "tensor(int64)"), FP("level_start_index", "tensor(int64)"),
                    FP("sampling_locations", "T"), FP("attention_weights", "T")],
            outputs=[FP("output", "T")],
            type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "value and output element type")],
            attributes=[defs.OpSchema.Attribute("plugin_version", defs.OpSchema.AttrType.STRING,
                                                f"plugin creator version, {PLUGIN_VERSION!r}")],
        )
        schema.set_type_and_shape_inference_function(_infer_shape)
        defs.register_schema(schema)
        _schema_registered = True


# ---------------------------------------------------------------------- CPU execution
def reference_evaluator(model, **kwargs):
    """An ``onnx.reference.ReferenceEvaluator`` for ``model`` (path or ModelProto) that runs the MSDA custom op
    with :func:`msda_numpy`. Slow (pure NumPy); meant for single-op and tiny-graph checks."""
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    def _run(self, value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
             plugin_version=None):
        return (msda_numpy(value, spatial_shapes, level_start_index, sampling_locations, attention_weights),)

    op = type(PLUGIN_NAME, (OpRun,), {"op_domain": ONNX_DOMAIN, "_run": _run})
    return ReferenceEvaluator(str(model) if isinstance(model, Path) else model, new_ops=[op], **kwargs)


def with_domain(model, src: str = ONNX_DOMAIN, dst: str = ORTX_DOMAIN):
    """Copy of ``model`` (ModelProto) whose ``src``-domain nodes and opset import are moved to domain ``dst``."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    for node in out.graph.node:
        if node.domain == src:
            node.domain = dst
    versions = {o.domain: o.version for o in out.opset_import}
    if src in versions:
        kept = [o for o in out.opset_import if o.domain not in (src, dst)]
        del out.opset_import[:]
        out.opset_import.extend(kept)
        out.opset_import.append(onnx.helper.make_opsetid(dst, 1))
    return out


def _register_ortx_op() -> None:
    global _ortx_registered
    with _lock:
        if _ortx_registered:
            return
        from onnxruntime_extensions import PyCustomOpDef, onnx_op

        f, i64 = PyCustomOpDef.dt_float, PyCustomOpDef.dt_int64

        @onnx_op(op_type=PLUGIN_NAME, inputs=[f, i64, i64, f, f], outputs=[f],
                 attrs={"plugin_version": PyCustomOpDef.dt_string})
        def _msda(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, **_attrs):
            return msda_numpy(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)

        _ortx_registered = True


def ort_session(model, *, threads: int | None = None, providers: list[str] | None = None,
                spinning: bool = True):
    """ONNX Runtime session for an exported graph (path or ModelProto), on CPU by default.

    A graph with MSDA custom-op nodes (``--msda plugin``) runs them through an onnxruntime-extensions Python op
    (:func:`msda_numpy`) after renaming their domain to ``ai.onnx.contrib`` in memory (the file is unchanged).
    Graphs exported with ``--msda onnx`` run as they are.

    Args:
        model: ``.onnx`` path or ``onnx.ModelProto``.
        threads: intra-op threads (None = ONNX Runtime's default).
        providers: execution providers (default ``["CPUExecutionProvider"]``).
        spinning: let idle intra-op threads spin (ONNX Runtime's default); turn off when other CPU work (PyTorch
            in a benchmark) runs between calls, or the spinning threads steal its cores.
    Raises:
        ImportError: onnxruntime (or, for plugin graphs, onnxruntime-extensions) is not installed.
    """
    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = providers or ["CPUExecutionProvider"]
    proto = model if isinstance(model, onnx.ModelProto) else None
    if proto is None:
        proto = onnx.load(str(model), load_external_data=False)
        has_custom = any(n.domain == ONNX_DOMAIN for n in proto.graph.node)
        if not has_custom:
            return ort.InferenceSession(str(model), opts, providers=providers)
        proto = onnx.load(str(model))
    if any(n.domain == ONNX_DOMAIN for n in proto.graph.node):
        from onnxruntime_extensions import get_library_path

        _register_ortx_op()
        opts.register_custom_ops_library(get_library_path())
        proto = with_domain(proto)
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=providers)
