"""The MSDA custom op at the op boundary: NumPy reference vs the PyTorch oracle, the exported single node
(checker, shape inference, attribute, input order), and its CPU execution in onnx's ReferenceEvaluator
(domain ``trt.plugins`` as is) and in ONNX Runtime via onnxruntime-extensions."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch

from actionvos.export.custom_ops import msda_numpy, ort_session, reference_evaluator, register_onnx_schema
from actionvos.export.msda_export import msda_mode, plugin_core
from actionvos.export.trt_plugin import ONNX_DOMAIN, PLUGIN_NAME
from actionvos.model.deformable_transformer import MSDeformAttn
from actionvos.model.msda import level_start_index_from_shapes, ms_deform_attn_core

SHAPES = [(6, 10), (3, 5), (2, 3), (1, 2)]


def _inputs(N=2, Lq=7, M=2, D=4, P=3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(SHAPES, dtype=torch.int64)
    S = int(shapes.prod(1).sum())
    value = torch.randn(N, S, M, D, generator=g, dtype=dtype)
    loc = torch.rand(N, Lq, M, len(SHAPES), P, 2, generator=g, dtype=dtype) * 1.4 - 0.2  # some outside [0, 1]
    w = torch.rand(N, Lq, M, len(SHAPES) * P, generator=g).softmax(-1).view(N, Lq, M, len(SHAPES), P).to(dtype)
    return value, shapes, level_start_index_from_shapes(shapes), loc, w


class _OneLayer(torch.nn.Module):
    def forward(self, value, loc, w):
        return plugin_core(value, SHAPES, level_start_index_from_shapes(torch.tensor(SHAPES)), loc, w)


@pytest.fixture(scope="module")
def single_node(tmp_path_factory):
    value, shapes, starts, loc, w = _inputs()
    path = tmp_path_factory.mktemp("msda") / "msda.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_OneLayer().eval(), (value, loc, w), str(path), dynamo=False, opset_version=18,
                          input_names=["value", "loc", "w"], output_names=["out"],
                          dynamic_axes={"value": {0: "N"}, "loc": {0: "N", 1: "Lq"}, "w": {0: "N", 1: "Lq"},
                                        "out": {0: "N", 1: "Lq"}},
                          custom_opsets={ONNX_DOMAIN: 1})
    return path


@pytest.mark.parametrize("seed", [0, 1])
def test_numpy_reference_matches_oracle(seed):
    value, shapes, starts, loc, w = _inputs(seed=seed)
    want = ms_deform_attn_core(value, shapes, starts, loc, w).numpy()
    got = msda_numpy(value.numpy(), shapes.numpy(), starts.numpy(), loc.numpy(), w.numpy())
    assert got.shape == want.shape == (2, 7, 8) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_plugin_core_equals_oracle_in_pytorch():
    value, shapes, starts, loc, w = _inputs()
    torch.testing.assert_close(plugin_core(value, SHAPES, starts, loc, w), ms_deform_attn_core(value, shapes, starts, loc, w),
                               rtol=0, atol=0)


def test_single_node_contract(single_node):
    register_onnx_schema()
    model = onnx.load(str(single_node))
    onnx.checker.check_model(model, full_check=True)
    nodes = [n for n in model.graph.node if n.domain == ONNX_DOMAIN]
    assert len(nodes) == 1 and nodes[0].op_type == PLUGIN_NAME
    node = nodes[0]
    assert node.input[0] == "value" and node.input[3] == "loc" and node.input[4] == "w" and node.output[0] == "out"
    assert [(a.name, a.s) for a in node.attribute] == [("plugin_version", b"1")]
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    out = inferred.graph.output[0].type.tensor_type
    assert out.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in out.shape.dim] == ["N", "Lq", 8]
    # a node with a wrong input count is rejected by the registered schema
    bad = onnx.helper.make_node(PLUGIN_NAME, ["value", "loc"], ["y"], domain=ONNX_DOMAIN, plugin_version="1")
    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version = onnx.IR_VERSION
    ctx.opset_imports = {"": 18, ONNX_DOMAIN: 1}
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_node(bad, ctx)


@pytest.mark.parametrize("runner", ["reference_evaluator", "onnxruntime_extensions"])
def test_single_node_runs_on_cpu(single_node, runner):
    value, shapes, starts, loc, w = _inputs(N=3, Lq=5, seed=4)  # other N and Lq than the trace
    feed = {"value": value.numpy(), "loc": loc.numpy(), "w": w.numpy()}
    if runner == "reference_evaluator":
        got = reference_evaluator(onnx.load(str(single_node))).run(None, feed)[0]
    else:
        got = ort_session(single_node).run(None, feed)[0]
    want = ms_deform_attn_core(value, shapes, starts, loc, w).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_msda_mode_swaps_and_restores():
    model = torch.nn.Sequential(MSDeformAttn(32, 4, 2, 2), MSDeformAttn(32, 4, 2, 2))
    with msda_mode(model, "plugin") as n:
        assert n == 2 and all(m.core is plugin_core for m in model)
    assert all(m.core is ms_deform_attn_core for m in model)
    with pytest.raises(ValueError, match="unknown MSDA mode"):
        with msda_mode(model, "cuda"):
            pass
