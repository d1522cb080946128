"""FP16 ONNX graphs with the FP16-sensitive node groups kept in FP32 (used by export and calibration).

TensorRT 10.12+ has no FP16 builder flag: the precision is written into the ONNX graph. The conversion is the
maintained converter ``onnxconverter_common.float16.convert_float_to_float16`` with ``keep_io_types=True`` (graph
inputs/outputs stay float32 / uint8 / bool, so runtimes feed FP16 graphs exactly like FP32 ones) and a
``node_block_list`` of the node groups kept in FP32 (:mod:`actionvos.precision.groups`).

Always FP32 (whatever the keep list says): the converter's default op block list (``Resize``, ``Range``,
``CumSum``, ...), ``Cast(to=float)`` nodes (this converter version keeps their ``to`` attribute while re-typing
their outputs, which makes an invalid graph), and the TensorRT MSDA plugin node (its contract is float32).

:data:`FP16_SENSITIVE_OPS` (alias :data:`DEFAULT_KEEP_FP32`) is the one definition of the groups kept in FP32 when
nothing was measured: ``actionvos-export --fp16``, ``actionvos calibrate fp16 --no-measure`` and the PyTorch CUDA
FP16 mode read it from here. ``actionvos calibrate fp16`` measures the keep list on real clips instead
(:mod:`actionvos.calibration.fp16_sensitivity`).

onnx + onnxconverter-common only (no torch, no onnxruntime).
"""

from __future__ import annotations

import warnings
from typing import Sequence

from actionvos.errors import ConfigError
from actionvos.precision.groups import GROUPS, PLUGIN_OP, node_groups

__all__ = ["FP16_SENSITIVE_OPS", "DEFAULT_KEEP_FP32", "GROUPS", "node_groups", "convert_fp16", "ensure_names",
           "converter_version"]

#: Node groups (names from :data:`~actionvos.precision.groups.GROUPS`) kept in FP32 when no measurement is run:
#: the usual suspects of deformable-attention models (MSDA sampling offsets / attention weights / sampling, attention
#: softmax, LayerNorm, the positive gate head, box refinement). Group ``group_norm`` and ``mask_head`` convert.
FP16_SENSITIVE_OPS = ("msda_sampling_offsets", "msda_attention_weights", "msda_sampling", "softmax_attention",
                      "layer_norm", "positive_head", "box_refinement")
#: Historical name of :data:`FP16_SENSITIVE_OPS` (same tuple).
DEFAULT_KEEP_FP32 = FP16_SENSITIVE_OPS


def _always_fp32(model) -> set[str]:
    """Nodes the converter must leave in FP32 whatever the measurement says (see the module docstring)."""
    keep = set()
    for n in model.graph.node:
        if n.op_type == "Cast" and any(a.name == "to" and a.i == 1 for a in n.attribute):
            keep.add(n.name)
        if n.op_type == PLUGIN_OP:
            keep.add(n.name)
    return keep


def ensure_names(model) -> None:
    """Give unnamed nodes unique names (the converter's node block list matches by name)."""
    seen = set()
    for i, n in enumerate(model.graph.node):
        if not n.name or n.name in seen:
            n.name = f"{n.op_type}_unnamed_{i}"
        seen.add(n.name)


def _unshare_initializers(model, block: set[str]) -> None:
    """Give FP32-kept nodes their own copy of float initializers they share with converted nodes (in place).

    The exporter deduplicates equal constants (e.g. zero biases), and the converter keeps an initializer FP32 as soon
    as one blocked node reads it, which would leave converted readers with an FP32 input.
    """
    from onnx import TensorProto

    inits = {i.name: i for i in model.graph.initializer if i.data_type == TensorProto.FLOAT}
    readers: dict[str, list] = {}
    for n in model.graph.node:
        for i in set(n.input):
            if i in inits:
                readers.setdefault(i, []).append(n)
    for name, nodes in readers.items():
        blocked = [n for n in nodes if n.name in block]
        if blocked and len(blocked) < len(nodes):
            copy = model.graph.initializer.add()
            copy.CopyFrom(inits[name])
            copy.name = f"{name}__fp32"
            for n in blocked:
                for k, i in enumerate(n.input):
                    if i == name:
                        n.input[k] = copy.name


def convert_fp16(model, keep_groups: Sequence[str], groups: dict[str, set[str]] | None = None,
                 shape_inferred: bool = False):
    """Convert one FP32 ModelProto to FP16, keeping ``keep_groups`` (and the always-FP32 ops) in FP32.

    Args:
        model: FP32 ``onnx.ModelProto`` (not modified; a copy is converted).
        keep_groups: names from :data:`GROUPS`.
        groups: :func:`node_groups` of ``model`` (computed when None).
        shape_inferred: ``model`` already went through ``onnx.shape_inference.infer_shapes`` (skips it).
    Returns:
        The FP16 ``ModelProto`` (inputs/outputs keep their FP32 / integer / bool types).
    Raises:
        ConfigError: an unknown group name.
    """
    import onnx
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    unknown = sorted(set(keep_groups) - set(GROUPS))
    if unknown:
        raise ConfigError(f"unknown FP32 group(s) {unknown}; choose from {list(GROUPS)}")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    ensure_names(m)
    if groups is None:
        groups = node_groups(m)
    block = set(_always_fp32(m))
    for g in keep_groups:
        block |= groups.get(g, set())
    _unshare_initializers(m, block)
    io_types = {v.name: v.type.tensor_type.elem_type for v in list(m.graph.input) + list(m.graph.output)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the float32 number X will be truncated to 1e-07" per constant
        out = convert_float_to_float16(m, keep_io_types=True, disable_shape_infer=shape_inferred,
                                       op_block_list=list(DEFAULT_OP_BLOCK_LIST), node_block_list=sorted(block))
    _restore_output_types(out, io_types)
    return out


def _restore_output_types(model, io_types: dict[str, int]) -> None:
    """Cast graph outputs back to their FP32 type (in place).

    With ``keep_io_types=True`` the converter still re-types a graph output to float16 when the node producing it
    is in the block list (its cast-after-node step rewrites the output's type before the I/O step runs).
    """
    from onnx import TensorProto, helper

    producers = {o: n for n in model.graph.node for o in n.output}
    for v in model.graph.output:
        want = io_types.get(v.name)
        if want == TensorProto.FLOAT and v.type.tensor_type.elem_type == TensorProto.FLOAT16:
            node = producers[v.name]
            inner = f"{v.name}__fp16"
            node.output[list(node.output).index(v.name)] = inner
            model.graph.node.append(helper.make_node("Cast", [inner], [v.name], name=f"{v.name}__to_fp32",
                                                     to=TensorProto.FLOAT))
            v.type.tensor_type.elem_type = TensorProto.FLOAT




def converter_version() -> str:
    """``onnxconverter-common <version> convert_float_to_float16`` (recorded in FP16 graphs)."""
    try:
        from importlib.metadata import version

        return f"onnxconverter-common {version('onnxconverter-common')} convert_float_to_float16"
    except Exception:  # pragma: no cover - metadata missing
        return "onnxconverter-common convert_float_to_float16"
