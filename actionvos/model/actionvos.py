"""ActionVOS: ReferFormer with the positive-action head, written as a stateless model with stage methods.

Source: ReferFormer ``models/referformer.py`` + ActionVOS ``RF_ActionVOS/models/referformer.py``
(ACTIONVOS_SPEC.md sections 0, 2, 3 and 12). State-dict keys equal the official checkpoint's.

Stages (all pure functions of their inputs; the caller owns caching):

* :meth:`ActionVOS.encode_text` — token ids of P prompts → :class:`TextFeatures` (cache per prompt).
* :meth:`ActionVOS.encode_frames` — a clip ``[T, 3, H, W]`` → :class:`FrameFeatures` (text-independent:
  ResNet, ``input_proj`` and position encodings).
* :meth:`ActionVOS.decode` — frame features + text features of P prompts → per-prompt outputs. The
  vision features are computed once and shared by all P prompts.
* :meth:`ActionVOS.forward` — the composition, returning the reference output dict.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from actionvos.model.backbone import Backbone
from actionvos.model.config import ModelConfig
from actionvos.model.deformable_transformer import MLP, DeformableTransformer, inverse_sigmoid
from actionvos.model.fusion import VisionLanguageFusionModule
from actionvos.model.pixel_decoder import CrossModalFPNDecoder
from actionvos.model.position_encoding import PositionEmbeddingSine1D, PositionEmbeddingSine2D
from actionvos.model.text import FeatureResizer, build_text_encoder

__all__ = ["ActionVOS", "TextFeatures", "FrameFeatures"]


@dataclass
class TextFeatures:
    """Text features of P prompts (cacheable; independent of frames).

    Attributes:
        word: ``[P, L, d]`` float, resized RoBERTa last hidden states (padding positions included).
        mask: ``[P, L]`` bool, True on padding (``attention_mask != 1``).
        sentence: ``[P, d]`` float, resized pooler output.
    """

    word: torch.Tensor
    mask: torch.Tensor
    sentence: torch.Tensor

    def select(self, idx) -> "TextFeatures":
        """Rows ``idx`` (int list or slice) of every field."""
        return TextFeatures(self.word[idx], self.mask[idx], self.sentence[idx])

    @staticmethod
    def cat(items: list["TextFeatures"]) -> "TextFeatures":
        """Concatenate along P, right-padding words to the longest L (padding is masked, so results are unchanged)."""
        L = max(t.word.shape[1] for t in items)
        words, masks = [], []
        for t in items:
            pad = L - t.word.shape[1]
            words.append(F.pad(t.word, (0, 0, 0, pad)))
            masks.append(F.pad(t.mask, (0, pad), value=True))
        return TextFeatures(torch.cat(words), torch.cat(masks), torch.cat([t.sentence for t in items]))


@dataclass
class FrameFeatures:
    """Text-independent features of B clips of T frames (B = 1 at inference; stacked as ``[(B T), ...]``).

    Attributes:
        backbone: ``[res2, res3, res4, res5]``, each ``[(B T), C_l, H/s, W/s]`` (C = 256/512/1024/2048, s = 4..32).
        backbone_pos: 2D sine encodings of the four backbone levels, each ``[(B T), 256, h, w]``.
        proj: ``input_proj`` outputs of the four transformer levels (strides 8, 16, 32, 64), ``[(B T), 256, h, w]``.
        proj_pos: 2D encodings of those levels.
        masks: padding masks ``[res2, res3, res4, res5, extra]`` (``[(B T), h, w]`` bool) or None (no padding).
        image_sizes: ``[B, 2]`` float (H, W) in input pixels, the unpadded size used by the mask head.
        num_frames: T.
    """

    backbone: list[torch.Tensor]
    backbone_pos: list[torch.Tensor]
    proj: list[torch.Tensor]
    proj_pos: list[torch.Tensor]
    masks: list[torch.Tensor] | None
    image_sizes: torch.Tensor
    num_frames: int

    @property
    def num_clips(self) -> int:
        return self.backbone[0].shape[0] // self.num_frames


def _repeat_clips(x: torch.Tensor, reps: int) -> torch.Tensor:
    """``[(1 T), ...]`` → ``[(reps T), ...]`` (prompt-major)."""
    return x if reps == 1 else x.repeat(reps, *([1] * (x.dim() - 1)))


class ActionVOS(nn.Module):
    """ReferFormer + ActionVOS positive head (spec 2). Build it with :func:`actionvos.model.builder.build_model`.

    Top-level keys: ``backbone``, ``input_proj``, ``text_encoder``, ``resizer``, ``fusion_module``,
    ``transformer``, ``class_embed``, ``bbox_embed`` (also at ``transformer.decoder.bbox_embed``),
    ``positive_cls_embed``, ``query_embed``, ``pixel_decoder``, ``controller``.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if not cfg.use_positive_cls:
            raise ValueError("ActionVOS needs the positive head (use_positive_cls=True); a plain ReferFormer is not built here")
        if cfg.num_feature_levels != 4:  # levels beyond 4 would need the fused level-3 map (not in encode_frames)
            raise ValueError(f"num_feature_levels must be 4 (the released configuration), got {cfg.num_feature_levels}")
        self.cfg = cfg
        d = cfg.hidden_dim
        backbone = Backbone(cfg.backbone_layers, cfg.backbone_width)
        self.backbone = nn.Sequential(backbone, PositionEmbeddingSine2D(d // 2))
        in_ch = backbone.num_channels
        projs = [nn.Sequential(nn.Conv2d(c, d, 1), nn.GroupNorm(32, d)) for c in in_ch[1:]]
        for _ in range(cfg.num_feature_levels - 3):
            projs.append(nn.Sequential(nn.Conv2d(in_ch[-1], d, 3, stride=2, padding=1), nn.GroupNorm(32, d)))
        self.input_proj = nn.ModuleList(projs)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)
        self.text_encoder = build_text_encoder(cfg.text)
        for p in self.text_encoder.parameters():  # --freeze_text_encoder
            p.requires_grad_(False)
        self.resizer = FeatureResizer(cfg.text.hidden_size, d, cfg.dropout)
        self.text_pos = PositionEmbeddingSine1D(d)
        self.fusion_module = VisionLanguageFusionModule(d, cfg.nheads)
        self.transformer = DeformableTransformer(
            d_model=d, nhead=cfg.nheads, num_encoder_layers=cfg.enc_layers, num_decoder_layers=cfg.dec_layers,
            dim_feedforward=cfg.dim_feedforward, dropout=cfg.dropout, num_feature_levels=cfg.num_feature_levels,
            dec_n_points=cfg.dec_n_points, enc_n_points=cfg.enc_n_points)
        n = cfg.dec_layers
        prior_bias = -math.log((1 - 0.01) / 0.01)
        class_embed = nn.Linear(d, cfg.num_classes)
        nn.init.constant_(class_embed.bias, prior_bias)
        bbox_embed = MLP(d, d, 4, 3)
        nn.init.constant_(bbox_embed.layers[-1].weight, 0)
        nn.init.constant_(bbox_embed.layers[-1].bias, 0)
        nn.init.constant_(bbox_embed.layers[-1].bias[2:], -2.0)
        self.class_embed = nn.ModuleList(copy.deepcopy(class_embed) for _ in range(n))
        self.bbox_embed = nn.ModuleList(copy.deepcopy(bbox_embed) for _ in range(n))
        self.transformer.decoder.bbox_embed = self.bbox_embed  # the same modules under both key paths
        positive = nn.Linear(d, 1)
        nn.init.constant_(positive.bias, prior_bias)
        self.positive_cls_embed = nn.ModuleList(copy.deepcopy(positive) for _ in range(n))
        self.query_embed = nn.Embedding(cfg.num_queries, d)
        self.pixel_decoder = CrossModalFPNDecoder(d, cfg.mask_dim, cfg.dim_feedforward, cfg.nheads, cfg.fpn_sr_ratios,
                                                  in_channels=(in_ch[0], d, d, d))
        self.controller = MLP(d, d, cfg.num_gen_params, cfg.controller_layers)
        for layer in self.controller.layers:
            nn.init.zeros_(layer.bias)
            nn.init.xavier_uniform_(layer.weight)

    # ------------------------------------------------------------------ text
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextFeatures:
        """RoBERTa + shared FeatureResizer (spec 3.3).

        Args:
            input_ids: ``[P, L]`` int64 RoBERTa ids (``<s>`` … ``</s>``, pad id 1).
            attention_mask: ``[P, L]`` int64, 1 for tokens, 0 for padding.
        Returns:
            :class:`TextFeatures` with ``word [P, L, 256]``, ``mask [P, L]`` (True = padding), ``sentence [P, 256]``.
        """
        enc = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask)
        return TextFeatures(
            word=self.resizer(enc.last_hidden_state),
            mask=attention_mask.ne(1),
            sentence=self.resizer(enc.pooler_output),
        )

    # ------------------------------------------------------------------ frames
    def encode_frames(self, frames: torch.Tensor, pad_mask: torch.Tensor | None = None,
                      image_sizes: torch.Tensor | None = None) -> FrameFeatures:
        """ResNet, ``input_proj`` and 2D position encodings of a clip (spec 3.2, 3.4 first half).

        Args:
            frames: ``[T, 3, H, W]`` (one clip) or ``[B, T, 3, H, W]`` float32, ImageNet-normalised RGB.
            pad_mask: optional ``[B*T, H, W]`` bool, True on batch padding (training); None means no padding.
            image_sizes: optional ``[B, 2]`` (H, W) unpadded sizes in pixels; default the frame size.
        Returns:
            :class:`FrameFeatures`.
        """
        if frames.dim() == 4:
            frames = frames[None]
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be [T,3,H,W] or [B,T,3,H,W], got {tuple(frames.shape)}")
        B, T, _, H, W = frames.shape
        x = frames.flatten(0, 1)
        feats = self.backbone[0](x)
        pos_enc = self.backbone[1]

        def level_mask(size):
            if pad_mask is None:
                return torch.zeros((x.shape[0], *size), dtype=torch.bool, device=x.device)
            return F.interpolate(pad_mask[None].float(), size=size).to(torch.bool)[0]

        masks = [level_mask(f.shape[-2:]) for f in feats]
        backbone_pos = [pos_enc(m).to(f.dtype) for f, m in zip(feats, masks)]
        proj = [self.input_proj[l](feats[l + 1]) for l in range(3)]
        proj_pos = backbone_pos[1:4]
        for l in range(3, self.cfg.num_feature_levels):  # exactly one extra level (stride 64) from raw res5
            src = self.input_proj[l](feats[-1])
            m = level_mask(src.shape[-2:])
            masks.append(m)
            proj.append(src)
            proj_pos = proj_pos + [pos_enc(m).to(src.dtype)]
        if image_sizes is None:
            image_sizes = torch.tensor([[H, W]] * B, dtype=torch.float32, device=x.device)
        return FrameFeatures(feats, backbone_pos, proj, proj_pos, masks if pad_mask is not None else None,
                             image_sizes.to(torch.float32), T)

    # ------------------------------------------------------------------ decode
    def decode(self, frames: FrameFeatures, text: TextFeatures) -> dict:
        """Fusion, deformable transformer, heads, pixel decoder and dynamic mask head for P prompts (spec 3.4–3.8).

        Args:
            frames: features of one clip (shared by all prompts) or of P clips (one per prompt).
            text: features of P prompts.
        Returns:
            dict with ``pred_logits [P, T, Q, 1]`` (logits), ``pred_boxes [P, T, Q, 4]`` (cxcywh in [0, 1]),
            ``pred_masks [P, T, Q, H/4, W/4]`` (logits), ``pred_positives [P, 1]`` (logit), ``reference_points
            [P, T, Q, 2]`` and ``aux_outputs`` (the same four keys for decoder layers 0..dec_layers-2).
        Raises:
            ValueError: when the clip count is neither 1 nor P.
        """
        P = text.word.shape[0]
        T = frames.num_frames
        B = frames.num_clips
        if B not in (1, P):
            raise ValueError(f"decode: {B} clips for {P} prompts; pass one clip, or one clip per prompt")
        reps = P // B
        cfg = self.cfg
        d = cfg.hidden_dim
        words = text.word.permute(1, 0, 2)  # [L, P, d]
        text_pos = self.text_pos(text.mask).permute(2, 0, 1)  # [L, P, d]

        srcs = []
        for src in frames.proj:  # early fusion per level
            n, c, h, w = src.shape
            tokens = src.reshape(B, T, c, h * w).permute(1, 3, 0, 2).reshape(T * h * w, B, c)
            tokens = tokens.expand(-1, P, -1) if B == 1 else tokens
            fused = self.fusion_module(tokens, words, text.mask, text_pos)
            srcs.append(fused.reshape(T, h * w, P, c).permute(2, 0, 3, 1).reshape(P * T, c, h, w))
        poses = [_repeat_clips(p, reps) for p in frames.proj_pos]
        masks = None if frames.masks is None else [_repeat_clips(m, reps) for m in frames.masks]
        tgt = text.sentence[:, None, None, :].expand(P, T, cfg.num_queries, d).reshape(P * T, cfg.num_queries, d)
        hs, memory, init_reference, inter_references = self.transformer(
            srcs, tgt, None if masks is None else masks[1:], poses, self.query_embed.weight)

        n_layers = hs.shape[0]
        logits, boxes, positives = [], [], []
        for lvl in range(n_layers):
            reference = inverse_sigmoid(init_reference if lvl == 0 else inter_references[lvl - 1])
            tmp = self.bbox_embed[lvl](hs[lvl])
            if reference.shape[-1] == 4:
                tmp = tmp + reference
            else:
                tmp = torch.cat([tmp[..., :2] + reference, tmp[..., 2:]], -1)
            logits.append(self.class_embed[lvl](hs[lvl]).reshape(P, T, cfg.num_queries, -1))
            boxes.append(tmp.sigmoid().reshape(P, T, cfg.num_queries, 4))
            positives.append(self.positive_cls_embed[lvl](hs[lvl].reshape(P, T, cfg.num_queries, d).mean(dim=(1, 2))))

        mask_features = self.pixel_decoder(
            _repeat_clips(frames.backbone[0], reps), _repeat_clips(frames.backbone_pos[0], reps), memory,
            [_repeat_clips(p, reps) for p in frames.backbone_pos[1:4]], words, text.mask, text_pos, T,
            None if masks is None else masks[:4])
        sizes = _repeat_clips(frames.image_sizes, reps)  # [P, 2] (H, W)
        masks_out = [self.dynamic_mask_head(mask_features, self.controller(hs[lvl]), inter_references[lvl, ..., :2],
                                            sizes, T) for lvl in range(n_layers)]

        out = {
            "pred_logits": logits[-1],
            "pred_boxes": boxes[-1],
            "pred_masks": masks_out[-1],
            "pred_positives": positives[-1],
            "aux_outputs": [
                {"pred_logits": a, "pred_boxes": b, "pred_masks": m, "pred_positives": p}
                for a, b, m, p in zip(logits[:-1], boxes[:-1], masks_out[:-1], positives[:-1])
            ],
        }
        if n_layers >= 2:
            out["reference_points"] = inter_references[-2, ..., :2].reshape(P, T, cfg.num_queries, 2)
        return out

    def dynamic_mask_head(self, mask_features: torch.Tensor, params: torch.Tensor, centres: torch.Tensor,
                          image_sizes: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Dynamic 1×1 conv head with relative coordinates (spec 3.8).

        Args:
            mask_features: ``[(P T), C, h, w]`` stride-4 features.
            params: ``[(P T), Q, num_gen_params]`` controller output, laid out ``[w0 | w1 | w2 | b0 | b1 | b2]``.
            centres: ``[(P T), Q, 2]`` normalised box centres (x, y) of the same decoder layer.
            image_sizes: ``[P, 2]`` (H, W) input size in pixels.
            num_frames: T.
        Returns:
            ``[P, T, Q, h, w]`` mask logits at stride 4.

        Equivalent to the reference's grouped convolutions (one group per (frame, query)); the first layer's
        weight is split into its feature part and its two relative-coordinate channels (dx, dy), in input pixels.
        """
        cfg = self.cfg
        PT, C, h, w = mask_features.shape
        P, T, Q = PT // num_frames, num_frames, params.shape[1]
        ch = cfg.dynamic_mask_channels
        n_layers = cfg.controller_layers
        splits = torch.split(params, cfg.weight_nums + cfg.bias_nums, dim=-1)
        weights, biases = splits[:n_layers], splits[n_layers:]
        feats = mask_features.reshape(P, T, C, h * w)
        stride = cfg.mask_feat_stride
        ys = torch.arange(h, dtype=feats.dtype, device=feats.device) * stride + stride // 2
        xs = torch.arange(w, dtype=feats.dtype, device=feats.device) * stride + stride // 2
        loc = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), 0).reshape(2, h * w)  # (x, y) × (h w)
        scale = image_sizes.flip(-1)  # (W, H)
        ref = centres.reshape(P, T, Q, 2) * scale[:, None, None, :]
        rel = ref[..., None] - loc  # [P, T, Q, 2, hw]
        w0 = weights[0].reshape(P, T, Q, ch, -1)
        x = torch.einsum("ptqoc,ptcn->ptqon", w0[..., :C], feats)
        if cfg.rel_coord:
            x = x + torch.einsum("ptqoj,ptqjn->ptqon", w0[..., C:], rel)
        x = x + biases[0].reshape(P, T, Q, ch, 1)
        for i in range(1, n_layers):
            x = F.relu(x)
            out_ch = 1 if i == n_layers - 1 else ch
            wi = weights[i].reshape(P, T, Q, out_ch, -1)
            x = torch.einsum("ptqoc,ptqcn->ptqon", wi, x) + biases[i].reshape(P, T, Q, out_ch, 1)
        return x.reshape(P, T, Q, h, w)

    # ------------------------------------------------------------------ full clip
    def forward(self, frames: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
        """One clip, P prompts: ``decode(encode_frames(frames), encode_text(input_ids, attention_mask))``.

        Args:
            frames: ``[T, 3, H, W]`` ImageNet-normalised float32.
            input_ids, attention_mask: ``[P, L]`` int64.
        Returns:
            The reference output dict with batch dimension P (see :meth:`decode`).
        """
        return self.decode(self.encode_frames(frames), self.encode_text(input_ids, attention_mask))
