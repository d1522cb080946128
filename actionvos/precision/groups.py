"""Node groups of the exported ActionVOS graphs: the units the precision tools keep in FP32 or exclude from INT8.

Used by the exporter's ``--fp16`` (:mod:`actionvos.export.exporter`), ``actionvos calibrate fp16`` (keep list) and
``actionvos calibrate int8`` (exclusion list); defined here, below both ``export`` and ``calibration``, so neither
imports the other. onnx protobufs only (no torch, no onnxruntime).

Groups (found by module scope and graph pattern in the traced graphs, :func:`node_groups`):

=========================  ==================================================================================
``msda_sampling_offsets``  MSDA ``sampling_offsets`` Linear (offsets in feature pixels, divided by the level
                           size: small relative errors move sampling points)
``msda_attention_weights`` MSDA ``attention_weights`` Linear + its softmax over levels × points
``msda_sampling``          the rest of each MSDA layer: sampling locations, grid, GridSample, weighted sum (with
                           ``--msda plugin`` the custom-op node)
``softmax_attention``      softmax of every other attention (text encoder, fusion, pixel decoder, decoder
                           self-attention)
``layer_norm``             every ``LayerNormalization`` (transformer, pixel decoder, RoBERTa, feature resizer)
``group_norm``             ``InstanceNormalization`` nodes of the GroupNorm layers (input projections, FPN)
``positive_head``          the ActionVOS positive head (query mean + Linear): the clip-level gate logit
``box_refinement``         ``inverse_sigmoid`` (clamp, divide, log), ``bbox_embed`` MLPs, reference add + sigmoid
``mask_head``              dynamic mask head: controller MLP and the per-query 1×1 convs (Einsum)
=========================  ==================================================================================
"""

from __future__ import annotations

from typing import Any

__all__ = ["GROUPS", "PLUGIN_OP", "node_groups"]

#: Every node group name, in report order.
GROUPS = ("msda_sampling_offsets", "msda_attention_weights", "msda_sampling", "softmax_attention", "layer_norm",
          "group_norm", "positive_head", "box_refinement", "mask_head")
#: op type of the TensorRT MSDA custom op in ``--msda plugin`` graphs (its contract is float32).
PLUGIN_OP = "ActionVOS_MSDeformAttn"


def _producers(model) -> dict[str, Any]:
    return {o: n for n in model.graph.node for o in n.output}


def _consumers(model) -> dict[str, list]:
    out: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def node_groups(model) -> dict[str, set[str]]:
    """Node names of every group in :data:`GROUPS` for one graph (``text_encoder`` or ``segmenter``, FP32).

    Groups are found from the TorchScript exporter's scoped node names (``/transformer/encoder/layers.0/self_attn/
    sampling_offsets/MatMul``) and, where names are not scoped, from graph patterns (``Log`` of ``inverse_sigmoid``
    and its producers; ``Einsum`` chains of the mask head). Empty groups are included.
    """
    nodes = list(model.graph.node)
    groups: dict[str, set[str]] = {g: set() for g in GROUPS}
    scopes = sorted({n.name.split("sampling_offsets/")[0] for n in nodes if "/sampling_offsets/" in n.name})
    prod, cons = _producers(model), _consumers(model)

    def in_msda(name: str) -> str | None:
        return next((s for s in scopes if name.startswith(s)), None)

    for n in nodes:
        s = in_msda(n.name)
        if n.op_type == PLUGIN_OP:
            groups["msda_sampling"].add(n.name)
        elif s is not None:
            rest = n.name[len(s):]
            if rest.startswith("sampling_offsets/"):
                groups["msda_sampling_offsets"].add(n.name)
            elif rest.startswith("attention_weights/") or n.op_type == "Softmax":
                groups["msda_attention_weights"].add(n.name)
            elif not rest.startswith(("value_proj/", "output_proj/")):
                groups["msda_sampling"].add(n.name)
        elif n.op_type == "Softmax":
            groups["softmax_attention"].add(n.name)
        if n.op_type == "LayerNormalization":
            groups["layer_norm"].add(n.name)
        elif n.op_type == "InstanceNormalization":
            groups["group_norm"].add(n.name)
        if "positive_cls_embed" in n.name:
            groups["positive_head"].add(n.name)
            for i in n.input:  # the query mean feeding the head (ReduceMean, possibly through a Reshape)
                p = prod.get(i)
                for _ in range(3):
                    if p is None or p.op_type not in ("ReduceMean", "Reshape", "Flatten"):
                        break
                    groups["positive_head"].add(p.name)
                    p = prod.get(p.input[0])
        if "bbox_embed" in n.name:
            groups["box_refinement"].add(n.name)
        if "/controller/" in n.name:
            groups["mask_head"].add(n.name)
    for n in nodes:
        if n.op_type == "Log" and in_msda(n.name) is None:  # inverse_sigmoid: log(clamp(x) / clamp(1 - x))
            groups["box_refinement"].add(n.name)
            stack = [n]
            while stack:
                cur = stack.pop()
                for i in cur.input:
                    p = prod.get(i)
                    if p is not None and p.op_type in ("Div", "Clip", "Sub") and p.name not in groups["box_refinement"]:
                        groups["box_refinement"].add(p.name)
                        stack.append(p)
            for c in cons.get(n.output[0], []):  # tmp + inverse_sigmoid(reference), then .sigmoid()
                if c.op_type in ("Add", "Concat"):
                    groups["box_refinement"].add(c.name)
                    for c2 in cons.get(c.output[0], []):
                        if c2.op_type in ("Sigmoid", "Concat"):
                            groups["box_refinement"].add(c2.name)
        if n.op_type == "Einsum":  # dynamic mask head convs: Einsum -> Add -> Relu -> Einsum ...
            stack = [n]
            while stack:
                cur = stack.pop()
                groups["mask_head"].add(cur.name)
                for c in cons.get(cur.output[0], []):
                    if c.op_type in ("Add", "Relu", "Einsum") and c.name not in groups["mask_head"]:
                        stack.append(c)
    return groups
