"""Host-side parts of the PyTorch CUDA fast path (actionvos.model.cuda_fast), on CPU.

What needs no GPU: the FP16 keep list is the export's single list; the group → module mapping; FP32 regions really
run FP32 under autocast (checked with CPU autocast to bfloat16, the same mechanism as CUDA autocast to float16);
wrappers come off cleanly; options parsing; the kernel core falls back to the oracle where the kernel does not
apply; the CUDA-graph argument flattening round-trips the model's dataclasses. The CUDA behaviour itself is in
tests/gpu/test_cuda_fast_path.py.
"""

from __future__ import annotations

import logging

import pytest
import torch

from actionvos.errors import ConfigError
from actionvos.model import cuda_fast
from actionvos.model.builder import build_model
from actionvos.model.deformable_transformer import MSDeformAttn
from actionvos.model.msda import ms_deform_attn_core


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("reference_tiny").eval()


def test_keep_list_is_the_fp16_export_list():
    from actionvos.precision import fp16

    assert cuda_fast.sensitive_groups() == tuple(fp16.FP16_SENSITIVE_OPS)
    assert "FP16_SENSITIVE_OPS" not in vars(cuda_fast), "import the list where used, do not copy it"


def test_group_mapping(tiny):
    regions, cores = cuda_fast.fp32_regions(tiny, cuda_fast.sensitive_groups())
    names = {n for n, _ in regions}
    layers = [n for n, m in tiny.named_modules() if isinstance(m, MSDeformAttn)]
    assert layers and len(cores) == len(layers)
    for n in layers:
        assert f"{n}.sampling_offsets" in names and f"{n}.attention_weights" in names
    n_dec = tiny.cfg.dec_layers
    bbox = [m for n, m in regions if ".".join(n.split(".")[-2:-1]) == "bbox_embed"]
    assert len(bbox) == n_dec  # model.bbox_embed is transformer.decoder.bbox_embed: each MLP wrapped once
    assert {id(m) for m in bbox} == {id(m) for m in tiny.bbox_embed}
    assert sum(n.startswith("positive_cls_embed.") for n in names) == n_dec
    assert "controller" not in names  # mask_head is not in the default list
    regions, cores = cuda_fast.fp32_regions(tiny, ["mask_head"])
    assert [n for n, _ in regions] == ["controller"] and not cores
    with pytest.raises(ConfigError, match="unknown FP32 group.*choose from"):
        cuda_fast.fp32_regions(tiny, ["layer_norm", "nonsense"])


def _tiny_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(1, 3, 64, 96, generator=g)
    ids = torch.randint(3, 100, (2, 6), generator=g)
    return frames, ids, torch.ones_like(ids)


def test_fp32_regions_run_fp32_under_autocast(tiny):
    """Under bf16 autocast, kept modules produce float32 while the rest (value_proj) is reduced precision."""
    frames, ids, am = _tiny_inputs()
    layer = next(m for m in tiny.modules() if isinstance(m, MSDeformAttn))
    seen: dict[str, torch.dtype] = {}

    def record(key):
        def hook(module, args, out):
            seen.setdefault(key, out.dtype)  # returns None: the output is not replaced

        return hook

    hooks = [layer.sampling_offsets.register_forward_hook(record("offsets")),
             layer.value_proj.register_forward_hook(record("value")),
             tiny.bbox_embed[0].register_forward_hook(record("bbox")),
             tiny.positive_cls_embed[0].register_forward_hook(record("positive"))]
    core_dtypes = []
    base_core = layer.core
    layer.core = lambda v, s, i, l, w: (core_dtypes.append((v.dtype, l.dtype, w.dtype)), base_core(v, s, i, l, w))[1]
    try:
        kept = cuda_fast.enable_fp16(tiny)
        with torch.no_grad():
            text = tiny.encode_text(ids, am)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = tiny.decode(tiny.encode_frames(frames), text)
    finally:
        cuda_fast.disable_fp16(tiny)
        layer.core = base_core
        for h in hooks:
            h.remove()
    assert any(k.endswith(".core") for k in kept)
    assert seen == {"offsets": torch.float32, "value": torch.bfloat16, "bbox": torch.float32,
                    "positive": torch.float32}
    assert core_dtypes and all(d == (torch.float32,) * 3 for d in core_dtypes), core_dtypes
    assert torch.isfinite(out["pred_logits"].float()).all()


def test_disable_restores_the_plain_model(tiny):
    frames, ids, am = _tiny_inputs(1)
    keys = list(tiny.state_dict())
    with torch.no_grad():
        text = tiny.encode_text(ids, am)
        ref = tiny.decode(tiny.encode_frames(frames), text)["pred_masks"]
        cuda_fast.enable_fp16(tiny, ["msda_sampling", "box_refinement", "mask_head"])
        cuda_fast.disable_fp16(tiny)
        again = tiny.decode(tiny.encode_frames(frames), text)["pred_masks"]
    assert list(tiny.state_dict()) == keys
    assert torch.equal(ref, again)
    assert all("forward" not in m.__dict__ for m in tiny.modules())
    assert all(m.core is ms_deform_attn_core for m in tiny.modules() if isinstance(m, MSDeformAttn))


def test_inverse_sigmoid_computes_half_in_fp32():
    from actionvos.model.deformable_transformer import inverse_sigmoid

    x = torch.tensor([1e-6, 0.3, 0.999999], dtype=torch.float16)
    got = inverse_sigmoid(x)
    assert got.dtype == torch.float32
    assert torch.equal(got, inverse_sigmoid(x.float()))
    y = torch.rand(7)
    assert inverse_sigmoid(y).dtype == torch.float32


def test_options_from_env():
    o = cuda_fast.FastPathOptions.from_env({})
    assert (o.msda_kernel, o.fp16, o.cuda_graphs) == (True, False, False)
    o = cuda_fast.FastPathOptions.from_env({cuda_fast.MSDA_ENV: "oracle", cuda_fast.FP16_ENV: "1",
                                            cuda_fast.GRAPHS_ENV: "yes"})
    assert (o.msda_kernel, o.fp16, o.cuda_graphs) == (False, True, True)
    with pytest.raises(ConfigError, match="ACTIONVOS_TORCH_MSDA='fast'.*kernel or oracle"):
        cuda_fast.FastPathOptions.from_env({cuda_fast.MSDA_ENV: "fast"})
    with pytest.raises(ConfigError, match="ACTIONVOS_TORCH_FP16='maybe'.*1 or 0"):
        cuda_fast.FastPathOptions.from_env({cuda_fast.FP16_ENV: "maybe"})


def test_fast_path_refuses_a_cpu_device(tiny):
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        cuda_fast.CudaFastPath(tiny, "cpu")


@pytest.mark.skipif(torch.version.cuda is not None, reason="PyTorch has CUDA: the extension may build here")
def test_kernel_request_falls_back_to_the_oracle_with_one_warning(tiny, caplog):
    caplog.set_level(logging.WARNING, logger="actionvos.model.cuda_fast")
    assert cuda_fast.use_msda_kernel(tiny, True) is False
    assert all(m.core is ms_deform_attn_core for m in tiny.modules() if isinstance(m, MSDeformAttn))
    msgs = [r.getMessage() for r in caplog.records if r.name == "actionvos.model.cuda_fast"]
    assert len(msgs) == 1 and "using the grid_sample oracle" in msgs[0] and "CPU only" in msgs[0]


def test_kernel_core_is_the_oracle_where_the_kernel_does_not_apply():
    from actionvos.export.msda_cuda import msda_kernel_core

    shapes = [(5, 7), (3, 4)]
    S = sum(h * w for h, w in shapes)
    g = torch.Generator().manual_seed(3)
    value = torch.randn(2, S, 2, 4, generator=g)
    loc = torch.rand(2, 6, 2, 2, 3, 2, generator=g)
    aw = torch.rand(2, 6, 2, 2, 3, generator=g)
    starts = torch.tensor([0, 35])
    assert torch.equal(msda_kernel_core(value, shapes, starts, loc, aw),
                       ms_deform_attn_core(value, shapes, starts, loc, aw))
    value.requires_grad_(True)  # training: the kernel has no backward
    out = msda_kernel_core(value, shapes, starts, loc, aw)
    out.sum().backward()
    assert value.grad is not None


def test_graph_arguments_flatten_round_trip(tiny):
    frames, ids, am = _tiny_inputs(2)
    with torch.no_grad():
        ff = tiny.encode_frames(frames)
        text = tiny.encode_text(ids, am)
    leaves: list[torch.Tensor] = []
    spec = cuda_fast._flatten((ff, text), leaves)
    assert len(leaves) == 4 * 4 + 1 + 3  # backbone, backbone_pos, proj, proj_pos; image_sizes; word, mask, sentence
    ff2, text2 = cuda_fast._unflatten(spec, [t.clone() for t in leaves])
    assert type(ff2) is type(ff) and ff2.num_frames == ff.num_frames and ff2.masks is None
    assert all(torch.equal(a, b) for a, b in zip(ff2.proj, ff.proj)) and torch.equal(text2.word, text.word)
    # The signature separates shapes and non-tensor fields (window length), and is stable for equal inputs.
    sig = cuda_fast._signature(spec, leaves)
    leaves2: list[torch.Tensor] = []
    assert cuda_fast._signature(cuda_fast._flatten((ff2, text2), leaves2), leaves2) == sig
    out_leaves: list[torch.Tensor] = []
    out_spec = cuda_fast._flatten({"a": [leaves[0], {"b": leaves[1]}], "n": 3}, out_leaves)
    back = cuda_fast._unflatten(out_spec, out_leaves)
    assert back["n"] == 3 and back["a"][1]["b"] is leaves[1]


def test_wrappers_install_replace_and_remove(tiny):
    """The plumbing without a GPU: CPU tensors take the eager branch, so outputs equal the plain model's."""
    frames, ids, am = _tiny_inputs(4)
    with torch.no_grad():
        text = tiny.encode_text(ids, am)
        ref = tiny.decode(tiny.encode_frames(frames), text)["pred_logits"]
        first = cuda_fast.CudaFastPath(tiny, "cuda", cuda_fast.FastPathOptions(msda_kernel=False, fp16=True))
        assert "forward" in tiny.bbox_embed[0].__dict__  # FP32 wrapper installed
        second = cuda_fast.CudaFastPath(tiny, "cuda", cuda_fast.FastPathOptions(msda_kernel=False))
        assert "forward" not in tiny.bbox_embed[0].__dict__, "the new fp32 path must drop the FP16 wrappers"
        assert tiny.encode_frames.__self__ is second and tiny.decode.__self__ is second
        assert second._encode.__self__ is tiny, "the original method, not the first fast path's wrapper"
        got = tiny.decode(tiny.encode_frames(frames), text)["pred_logits"]
        assert second.describe() == "msda=oracle, fp32, cuda_graphs=off" and first.options.fp16
        second.remove()
    assert torch.equal(got, ref)
    assert "encode_frames" not in tiny.__dict__ and "decode" not in tiny.__dict__


def test_msda_layer_never_reads_a_device_level_index():
    """A level_start_index off the CPU (here on the meta device, whose values cannot be read) is not read back:
    the oracle gets the offsets from the python shapes — on CUDA that read would be a sync per layer."""
    from actionvos.export.msda_cuda import msda_kernel_core

    torch.manual_seed(0)
    layer = MSDeformAttn(d_model=32, n_levels=2, n_heads=2, n_points=2).eval()
    shapes = [(4, 5), (2, 3)]
    S = 26
    x = torch.randn(2, S, 32)
    ref_pts = torch.rand(2, S, 2, 2)
    cpu_starts = torch.tensor([0, 20])
    meta_starts = torch.empty(2, dtype=torch.long, device="meta")
    with torch.no_grad():
        want = layer(x, ref_pts, x, shapes, cpu_starts)
        assert torch.equal(layer(x, ref_pts, x, shapes, meta_starts), want)
        for core in (msda_kernel_core, cuda_fast._fp32_core(ms_deform_attn_core)):
            layer.core = core
            assert torch.equal(layer(x, ref_pts, x, shapes, meta_starts), want), core
    layer.core = ms_deform_attn_core


def test_shape_constants_are_built_once():
    from actionvos.model.deformable_transformer import shape_constant

    shapes = [(45, 80), (23, 40), (12, 20), (6, 10)]
    with torch.inference_mode():
        a = shape_constant("starts", shapes, torch.long, torch.device("cpu"))
        n = shape_constant("normalizer", shapes, torch.float32, "cpu")
    assert a is shape_constant("starts", shapes, torch.long, "cpu")
    assert a.tolist() == [0, 3600, 4520, 4760] and not a.is_inference()
    assert n.tolist()[0] == [80.0, 45.0] and not n.is_inference()
    assert shape_constant("normalizer", shapes, torch.float16, "cpu").dtype == torch.float16
    with pytest.raises(ValueError, match="unknown shape constant kind"):
        shape_constant("areas", shapes, torch.long, "cpu")
