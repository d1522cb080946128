"""Deformable transformer of ReferFormer (Deformable-DETR with iterative box refinement, spec 3.5).

Per-frame encoder (N = prompts × frames, no temporal mixing), decoder whose content queries are the
sentence feature, post-norm layers, MSDA through :func:`actionvos.model.msda.ms_deform_attn_core`
(or a swapped-in implementation: the exporter replaces it with the custom op).
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from actionvos.model.msda import ms_deform_attn_core, starts_from_shapes

__all__ = ["MSDeformAttn", "DeformableTransformer", "inverse_sigmoid", "MLP", "shape_constant"]

# Small per-(shapes, dtype, device) constants (level offsets, normalisers): built once, so a CUDA forward does not
# upload them (a blocking host->device copy, illegal inside CUDA-graph capture) on every call.
_CONSTANTS: dict[tuple, torch.Tensor] = {}
_MAX_CONSTANTS = 256


def shape_constant(kind: str, spatial_shapes, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Cached constant tensor derived from python level shapes ``[(H_l, W_l), ...]`` on ``device``.

    Args:
        kind: ``"starts"`` → ``[L]`` level start offsets (``dtype`` integer); ``"normalizer"`` → ``[L, 2]``
            ``(W_l, H_l)`` (``dtype`` float); ``"shapes"`` → ``[L, 2]`` ``(H_l, W_l)``.
        spatial_shapes: python ints ``(H_l, W_l)`` per level.
        dtype, device: of the result.

    Returns:
        A tensor that must not be modified (it is shared). Built outside inference mode, so it can also be used
        by autograd later; while tracing it is a graph constant, as the per-call tensor it replaces was.

    Raises:
        ValueError: unknown ``kind``.
    """
    shapes = tuple((int(h), int(w)) for h, w in spatial_shapes)
    key = (kind, shapes, dtype, torch.device(device))
    t = _CONSTANTS.get(key)
    if t is None:
        if kind == "starts":
            data = starts_from_shapes(shapes)
        elif kind == "normalizer":
            data = [[w, h] for h, w in shapes]
        elif kind == "shapes":
            data = [list(s) for s in shapes]
        else:
            raise ValueError(f"unknown shape constant kind {kind!r}: use starts, normalizer or shapes")
        with torch.inference_mode(False), torch.no_grad():
            t = torch.tensor(data, dtype=dtype, device=device)
        if torch.jit.is_tracing():  # a traced value must not outlive its trace
            return t
        if len(_CONSTANTS) >= _MAX_CONSTANTS:
            _CONSTANTS.clear()
        _CONSTANTS[key] = t
    return t


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``log(x / (1 - x))`` with both clamped to ``eps`` (Deformable-DETR ``util/misc.py``).

    Half-precision inputs are computed (and returned) in float32: ``eps = 1e-5`` is below FP16's resolution near 1,
    and the FP16 mode keeps box refinement in FP32 (:mod:`actionvos.model.cuda_fast`). Float32 is unchanged.
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    x = x.clamp(min=0, max=1)
    x1 = x.clamp(min=eps)
    x2 = (1 - x).clamp(min=eps)
    return torch.log(x1 / x2)


class MLP(nn.Module):
    """DETR's MLP: ``num_layers`` Linear layers with ReLU between them (keys ``layers.{i}``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        h = [hidden_dim] * (num_layers - 1)
        self.num_layers = num_layers
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim] + h, h + [output_dim]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < self.num_layers - 1 else layer(x)
        return x


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module (projections around the MSDA sampling core).

    ``sampling_offsets: Linear(d, M*L*P*2)``, ``attention_weights: Linear(d, M*L*P)`` (softmax over L*P),
    ``value_proj``, ``output_proj``. The sampling core is ``self.core`` (default the grid_sample oracle);
    export swaps it for the custom op or a decomposed version with the same contract, and the PyTorch CUDA
    backend for the plugin's CUDA kernel (:func:`actionvos.model.cuda_fast.use_msda_kernel`).
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.core: Callable = ms_deform_attn_core
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
        level_start_index: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args:
            query: ``[N, Lq, d]``.
            reference_points: ``[N, Lq, L, 2]`` normalised (x, y) or ``[N, Lq, L, 4]`` normalised cxcywh boxes.
            input_flatten: ``[N, S, d]`` flattened multi-level features.
            spatial_shapes: ``L`` pairs ``(H_l, W_l)`` (python ints).
            level_start_index: ``[L]`` int64, the cumulative level areas (``[0, H0*W0, ...]``, as
                :class:`DeformableTransformer` builds it). With the default oracle core and a tensor off the CPU,
                the oracle gets the same offsets computed from ``spatial_shapes`` in python instead (reading the
                tensor would be a device→host copy, a GPU sync, per layer).
            padding_mask: optional ``[N, S]`` bool, True on padding.
        Returns: ``[N, Lq, d]``.
        """
        N, Lq, _ = query.shape
        S = input_flatten.shape[1]
        M, L, P = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(input_flatten)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(N, S, M, self.d_model // M)
        offsets = self.sampling_offsets(query).view(N, Lq, M, L, P, 2)
        weights = F.softmax(self.attention_weights(query).view(N, Lq, M, L * P), -1).view(N, Lq, M, L, P)
        if reference_points.shape[-1] == 2:
            normalizer = shape_constant("normalizer", spatial_shapes, query.dtype, query.device)
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        else:
            locations = (
                reference_points[:, :, None, :, None, :2]
                + offsets / P * reference_points[:, :, None, :, None, 2:] * 0.5
            )
        starts = level_start_index
        if self.core is ms_deform_attn_core and isinstance(starts, torch.Tensor) and starts.device.type != "cpu":
            starts = starts_from_shapes(spatial_shapes)
        return self.output_proj(self.core(value, spatial_shapes, starts, locations, weights))


class DeformableTransformerEncoderLayer(nn.Module):
    """Post-norm encoder layer: MSDA self-attention (+pos), add&norm1, FFN (ReLU), add&norm2."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index, padding_mask=None):
        src = self.norm1(src + self.dropout1(
            self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index, padding_mask)
        ))
        src2 = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(src2))


class DeformableTransformerDecoderLayer(nn.Module):
    """Post-norm decoder layer: self-attention (MHA) → norm2, MSDA cross-attention → norm1, FFN → norm3."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt, query_pos, reference_points, src, spatial_shapes, level_start_index, padding_mask=None):
        q = k = tgt + query_pos
        tgt2 = self.self_attn(q.transpose(0, 1), k.transpose(0, 1), tgt.transpose(0, 1))[0].transpose(0, 1)
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2 = self.cross_attn(tgt + query_pos, reference_points, src, spatial_shapes, level_start_index, padding_mask)
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        tgt2 = self.linear2(self.dropout3(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(tgt2))


class DeformableTransformerEncoder(nn.Module):
    def __init__(self, layer: nn.Module, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    @staticmethod
    def get_reference_points(spatial_shapes, valid_ratios: torch.Tensor) -> torch.Tensor:
        """Pixel-centre reference points ``[N, S, L, 2]``, normalised by the valid ratios."""
        refs = []
        device = valid_ratios.device
        for lvl, (h, w) in enumerate(spatial_shapes):
            ref_y, ref_x = torch.meshgrid(
                torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
                torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
                indexing="ij",
            )
            ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * h)
            ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * w)
            refs.append(torch.stack((ref_x, ref_y), -1))
        ref = torch.cat(refs, 1)
        return ref[:, :, None] * valid_ratios[:, None]

    def forward(self, src, spatial_shapes, level_start_index, valid_ratios, pos, padding_mask=None):
        reference_points = self.get_reference_points(spatial_shapes, valid_ratios)
        out = src
        for layer in self.layers:
            out = layer(out, pos, reference_points, spatial_shapes, level_start_index, padding_mask)
        return out


class DeformableTransformerDecoder(nn.Module):
    """Decoder returning every layer's output and refined reference boxes.

    ``bbox_embed`` is assigned by the parent model (the same ModuleList as ``model.bbox_embed``).
    """

    def __init__(self, layer: nn.Module, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.bbox_embed: nn.ModuleList | None = None

    def forward(self, tgt, reference_points, src, spatial_shapes, level_start_index, valid_ratios, query_pos,
                padding_mask=None):
        output = tgt
        hs, refs = [], []
        for lid, layer in enumerate(self.layers):
            if reference_points.shape[-1] == 4:
                ref_in = reference_points[:, :, None] * torch.cat([valid_ratios, valid_ratios], -1)[:, None]
            else:
                ref_in = reference_points[:, :, None] * valid_ratios[:, None]
            output = layer(output, query_pos, ref_in, src, spatial_shapes, level_start_index, padding_mask)
            tmp = self.bbox_embed[lid](output)
            if reference_points.shape[-1] == 4:
                new_ref = (tmp + inverse_sigmoid(reference_points)).sigmoid()
            else:
                new_ref = torch.cat([tmp[..., :2] + inverse_sigmoid(reference_points), tmp[..., 2:]], -1).sigmoid()
            reference_points = new_ref.detach()
            hs.append(output)
            refs.append(reference_points)
        return torch.stack(hs), torch.stack(refs)


class DeformableTransformer(nn.Module):
    """Encoder + decoder (``two_stage=False``, box refinement on); keys ``level_embed``, ``encoder.layers``,
    ``decoder.layers``, ``decoder.bbox_embed``, ``reference_points``."""

    def __init__(self, d_model=256, nhead=8, num_encoder_layers=4, num_decoder_layers=4, dim_feedforward=2048,
                 dropout=0.1, num_feature_levels=4, dec_n_points=4, enc_n_points=4):
        super().__init__()
        self.d_model = d_model
        self.num_feature_levels = num_feature_levels
        enc_layer = DeformableTransformerEncoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead,
                                                      enc_n_points)
        self.encoder = DeformableTransformerEncoder(enc_layer, num_encoder_layers)
        dec_layer = DeformableTransformerDecoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead,
                                                      dec_n_points)
        self.decoder = DeformableTransformerDecoder(dec_layer, num_decoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.reference_points = nn.Linear(d_model, 2)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
        nn.init.constant_(self.reference_points.bias, 0.0)
        nn.init.normal_(self.level_embed)

    @staticmethod
    def get_valid_ratio(mask: torch.Tensor) -> torch.Tensor:
        """``mask [N, H, W]`` → ``[N, 2]`` (w, h) fraction of valid (unpadded) extent."""
        _, H, W = mask.shape
        valid_h = torch.sum(~mask[:, :, 0], 1)
        valid_w = torch.sum(~mask[:, 0, :], 1)
        return torch.stack([valid_w.float() / W, valid_h.float() / H], -1)

    def forward(self, srcs, tgt, masks, pos_embeds, query_embed):
        """Args:
            srcs: per level ``[N, d, H_l, W_l]`` (after early fusion), N = prompts × frames.
            tgt: ``[N, Q, d]`` content queries (the sentence feature).
            masks: per level ``[N, H_l, W_l]`` bool padding masks, or ``None`` (no padding).
            pos_embeds: per level ``[N, d, H_l, W_l]`` 2D position encodings (without level embedding).
            query_embed: ``[Q, d]`` positional queries.
        Returns:
            hs ``[dec_layers, N, Q, d]``, memory (levels 0..L-2 as ``[N, d, H_l, W_l]``),
            init_reference ``[N, Q, 2]``, inter_references ``[dec_layers, N, Q, 4]``.
        """
        spatial_shapes = [(int(s.shape[2]), int(s.shape[3])) for s in srcs]
        src_flatten = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos_flatten = torch.cat(
            [p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1) for lvl, p in enumerate(pos_embeds)], 1
        )
        N = src_flatten.shape[0]
        level_start_index = shape_constant("starts", spatial_shapes, torch.long, src_flatten.device)
        if masks is None:
            mask_flatten = None
            valid_ratios = src_flatten.new_ones(N, len(srcs), 2)
        else:
            mask_flatten = torch.cat([m.flatten(1) for m in masks], 1)
            valid_ratios = torch.stack([self.get_valid_ratio(m) for m in masks], 1)
        memory = self.encoder(src_flatten, spatial_shapes, level_start_index, valid_ratios, pos_flatten, mask_flatten)
        query_embed = query_embed.unsqueeze(0).expand(N, -1, -1)
        init_reference = self.reference_points(query_embed).sigmoid()
        hs, inter_references = self.decoder(tgt, init_reference, memory, spatial_shapes, level_start_index,
                                            valid_ratios, query_embed, mask_flatten)
        memory_features = []
        start = 0
        c = memory.shape[-1]
        for h, w in spatial_shapes[:-1]:
            memory_features.append(memory[:, start:start + h * w].reshape(N, h, w, c).permute(0, 3, 1, 2).contiguous())
            start += h * w
        return hs, memory_features, init_reference, inter_references
