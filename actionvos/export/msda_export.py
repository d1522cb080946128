"""How MSDA is written into the ONNX graph: one custom-op node per attention layer, or decomposed.

``--msda plugin``: :class:`MSDeformAttnFunction` is an ``autograd.Function`` whose forward runs the PyTorch
oracle (:func:`actionvos.model.msda.ms_deform_attn_core`) and whose ``symbolic`` emits one node
``trt.plugins::ActionVOS_MSDeformAttn`` (attribute ``plugin_version``, inputs in the contract order, output
``[N, Lq, M*D]`` with its type and shape declared) for the TorchScript-based ``torch.onnx.export``.

``--msda onnx``: the oracle itself is traced; ``F.grid_sample`` exports as ``GridSample`` (opset >= 16), so any
ONNX runtime runs the graph.

:func:`msda_mode` swaps ``MSDeformAttn.core`` on every attention layer of a model for the duration of an export.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from actionvos.export.trt_plugin import ONNX_DOMAIN, PLUGIN_NAME, PLUGIN_VERSION
from actionvos.model.deformable_transformer import MSDeformAttn
from actionvos.model.msda import ms_deform_attn_core

__all__ = ["MSDeformAttnFunction", "plugin_core", "onnx_core", "msda_mode"]


class MSDeformAttnFunction(torch.autograd.Function):
    """MSDA sampling as an op the ONNX exporter writes as one ``trt.plugins::ActionVOS_MSDeformAttn`` node.

    Inputs/outputs: see :func:`actionvos.model.msda.ms_deform_attn_core` (``spatial_shapes [L, 2]`` and
    ``level_start_index [L]`` as int64 tensors, which become graph constants).
    """

    @staticmethod
    def forward(ctx, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        return ms_deform_attn_core(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)

    @staticmethod
    def symbolic(g, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        out = g.op(f"{ONNX_DOMAIN}::{PLUGIN_NAME}", value, spatial_shapes, level_start_index, sampling_locations,
                   attention_weights, plugin_version_s=PLUGIN_VERSION)
        vt, lt = value.type(), sampling_locations.type()
        vs = vt.varyingSizes() if hasattr(vt, "varyingSizes") else None
        ls = lt.varyingSizes() if hasattr(lt, "varyingSizes") else None
        if vs is not None and len(vs) == 4:
            lq = ls[1] if ls is not None and len(ls) == 6 else None
            md = vs[2] * vs[3] if vs[2] is not None and vs[3] is not None else None
            out.setType(vt.with_sizes([vs[0], lq, md]))
        else:
            out.setType(vt)
        return out


def plugin_core(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    """``MSDeformAttn.core`` replacement that exports as the custom op (same contract and values as the oracle)."""
    shapes = torch.as_tensor(spatial_shapes, dtype=torch.int64, device=value.device).reshape(-1, 2)
    starts = torch.as_tensor(level_start_index, dtype=torch.int64, device=value.device).reshape(-1)
    return MSDeformAttnFunction.apply(value, shapes, starts, sampling_locations, attention_weights)


def onnx_core(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    """``MSDeformAttn.core`` for ``--msda onnx``: the grid_sample oracle (exports as standard ops)."""
    return ms_deform_attn_core(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)


_CORES = {"plugin": plugin_core, "onnx": onnx_core}


@contextlib.contextmanager
def msda_mode(model: torch.nn.Module, mode: str) -> Iterator[int]:
    """Within the block, every ``MSDeformAttn`` of ``model`` uses the ``mode`` core (``plugin`` or ``onnx``);
    the previous cores are restored on exit, also on error. Yields the number of swapped layers.

    Raises:
        ValueError: unknown mode.
    """
    if mode not in _CORES:
        raise ValueError(f"unknown MSDA mode {mode!r}; use one of {sorted(_CORES)}")
    layers = [m for m in model.modules() if isinstance(m, MSDeformAttn)]
    saved = [m.core for m in layers]
    try:
        for m in layers:
            m.core = _CORES[mode]
        yield len(layers)
    finally:
        for m, core in zip(layers, saved):
            m.core = core
