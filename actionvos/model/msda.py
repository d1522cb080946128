"""Multi-scale deformable attention (MSDA) sampling core: the reference oracle.

This is the one place where the MSDA sampling maths is written in PyTorch. The TensorRT plugin
(``trt_plugins/msda``), its PyTorch extension and the decomposed ONNX export are all tested against it.

Contract (identical to ``ms_deform_attn_core_pytorch`` of Deformable-DETR / ReferFormer, spec 3.5):

* ``value``               ``[N, S, M, D]`` float, ``S = sum(H_l * W_l)``, levels flattened row-major and concatenated
* ``spatial_shapes``      ``[L, 2]`` integer, ``(H_l, W_l)`` per level
* ``level_start_index``   ``[L]`` integer, offset of level ``l`` in ``S`` (``cumsum`` of ``H*W`` starting at 0)
* ``sampling_locations``  ``[N, Lq, M, L, P, 2]`` float, ``(x, y)`` normalised to ``[0, 1]`` of the level's extent
  (``0`` is the left/top edge of the first pixel, ``1`` the right/bottom edge of the last); values outside are allowed
* ``attention_weights``   ``[N, Lq, M, L, P]`` float, already soft-maxed over ``(L, P)``
* returns                 ``[N, Lq, M * D]``

Sampling is bilinear with zero padding and ``align_corners=False``: a location ``x`` maps to pixel coordinate
``x * W_l - 0.5``; neighbours outside the level contribute 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ms_deform_attn_core", "level_start_index_from_shapes", "starts_from_shapes"]


def starts_from_shapes(spatial_shapes) -> list[int]:
    """Python ``(H, W)`` pairs → python start offsets ``[0, H0*W0, H0*W0+H1*W1, ...]`` (no tensor, no device)."""
    starts, acc = [], 0
    for h, w in spatial_shapes:
        starts.append(acc)
        acc += int(h) * int(w)
    return starts


def level_start_index_from_shapes(spatial_shapes: torch.Tensor) -> torch.Tensor:
    """``[L, 2]`` (H, W) → ``[L]`` int64 start offsets ``[0, H0*W0, H0*W0+H1*W1, ...]``."""
    areas = spatial_shapes.prod(1)
    return torch.cat((areas.new_zeros((1,)), areas.cumsum(0)[:-1]))


def ms_deform_attn_core(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor | list[tuple[int, int]],
    level_start_index: torch.Tensor | list[int],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention sampling, implemented with ``F.grid_sample``.

    Args:
        value: ``[N, S, M, D]`` float32/float16 values per head.
        spatial_shapes: ``[L, 2]`` integer tensor or list of ``(H, W)`` per level; ``sum(H*W)`` must equal ``S``.
        level_start_index: ``[L]`` integer tensor or list: where each level starts in ``S``. Pass lists (or CPU
            tensors) on the GPU: a device tensor is read back with ``.tolist()``, a device→host copy that waits
            for the GPU (:func:`starts_from_shapes` computes the list from python shapes).
        sampling_locations: ``[N, Lq, M, L, P, 2]`` normalised ``(x, y)`` in ``[0, 1]`` (outside allowed → zeros).
        attention_weights: ``[N, Lq, M, L, P]`` soft-maxed weights.

    Returns:
        ``[N, Lq, M*D]`` tensor of ``value``'s dtype.

    Raises:
        ValueError: when shapes disagree (level areas do not sum to ``S``, or ``M``/``L``/``P`` mismatch).

    """
    N, S, M, D = value.shape
    _, Lq, M2, L, P, two = sampling_locations.shape
    if isinstance(spatial_shapes, torch.Tensor):
        spatial_shapes = spatial_shapes.tolist()
    shapes = [(int(h), int(w)) for h, w in spatial_shapes]
    if M2 != M or two != 2 or attention_weights.shape != (N, Lq, M, L, P) or len(shapes) != L:
        raise ValueError(
            f"MSDA shape mismatch: value {tuple(value.shape)}, sampling_locations {tuple(sampling_locations.shape)}, "
            f"attention_weights {tuple(attention_weights.shape)}, {len(shapes)} levels"
        )
    if sum(h * w for h, w in shapes) != S:
        raise ValueError(f"MSDA: level areas {shapes} sum to {sum(h * w for h, w in shapes)} but value has S={S}")
    if isinstance(level_start_index, torch.Tensor):
        level_start_index = level_start_index.tolist()
    starts = [int(s) for s in level_start_index]
    if len(starts) != L or any(s < 0 or s + h * w > S for s, (h, w) in zip(starts, shapes)):
        raise ValueError(f"MSDA: level_start_index {starts} does not fit level shapes {shapes} in S={S}")
    grids = 2 * sampling_locations - 1
    sampled = []
    for lid, (h, w) in enumerate(shapes):
        # [N, H*W, M, D] -> [N*M, D, H, W]
        v = value[:, starts[lid]:starts[lid] + h * w].flatten(2).transpose(1, 2).reshape(N * M, D, h, w)
        # [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
        g = grids[:, :, :, lid].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    # [N, Lq, M, L, P] -> [N*M, 1, Lq, L*P]
    aw = attention_weights.transpose(1, 2).reshape(N * M, 1, Lq, L * P)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * aw).sum(-1).view(N, M * D, Lq)
    return out.transpose(1, 2).contiguous()
