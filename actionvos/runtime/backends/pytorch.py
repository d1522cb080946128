"""PyTorch eager backend: the reference model's stage methods behind the streaming interface.

The backbone runs once per frame (``encode_frames`` on a single frame); a window of T frames concatenates the
kept :class:`~actionvos.model.actionvos.FrameFeatures` along frames before ``decode`` (valid because the backbone,
``input_proj`` and position encodings are per frame, spec 3.2). Inputs are uint8 at the model size; the
ImageNet normalisation runs here (spec 3.1).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from actionvos.runtime.backends.base import Backend, BackendInfo, StepOutputs
from actionvos.runtime.prompt_cache import TextArrays

__all__ = ["TorchBackend", "cat_frame_features"]

log = logging.getLogger(__name__)


def cat_frame_features(items: Sequence[Any]):
    """Concatenate single-clip ``FrameFeatures`` (B = 1) along frames: T_1 + T_2 + ... frames of one clip.

    Raises ValueError when the items have padding masks or different sizes (they must come from one stream size).
    """
    import torch

    from actionvos.model.actionvos import FrameFeatures

    if len(items) == 1:
        return items[0]
    if any(f.masks is not None or f.num_clips != 1 for f in items):
        raise ValueError("only unpadded single-clip frame features can be concatenated")
    return FrameFeatures(
        backbone=[torch.cat([f.backbone[l] for f in items]) for l in range(len(items[0].backbone))],
        backbone_pos=[torch.cat([f.backbone_pos[l] for f in items]) for l in range(len(items[0].backbone_pos))],
        proj=[torch.cat([f.proj[l] for f in items]) for l in range(len(items[0].proj))],
        proj_pos=[torch.cat([f.proj_pos[l] for f in items]) for l in range(len(items[0].proj_pos))],
        masks=None,
        image_sizes=items[0].image_sizes,
        num_frames=sum(f.num_frames for f in items),
    )


class TorchBackend(Backend):
    """ActionVOS in PyTorch eager mode (CPU or CUDA), fp32.

    Args:
        model: a loaded :class:`~actionvos.model.actionvos.ActionVOS` in eval mode.
        cfg: its :class:`~actionvos.model.config.ModelConfig`.
        model_id: prompt-cache identity of the weights (checkpoint SHA-256 prefix).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        weights_note: set when the checkpoint marks its weights as random.
    """

    def __init__(self, model, cfg, model_id: str, device: str = "cpu", weights_note: str | None = None):
        import torch

        self.torch = torch
        self.model = model.eval()
        self.cfg = cfg
        self.device = torch.device(device)
        kind = "cuda" if self.device.type == "cuda" else "cpu"
        self.info = BackendInfo(
            name=f"pytorch-{kind}", model_id=f"{model_id}:fp32", num_queries=cfg.num_queries, short_side=cfg.short_side,
            input_size=None, window=None, pos_cls_thres=cfg.pos_cls_thres, mask_threshold=cfg.mask_threshold,
            background_prob=cfg.background_prob, prompt_template=cfg.prompt_template, vocab_size=cfg.text.vocab_size,
            max_text_tokens=cfg.text.max_position_embeddings - 2, weights_note=weights_note)
        from actionvos.model.config import IMAGENET_MEAN, IMAGENET_STD

        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1) * 255.0

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, device: str = "cpu", preset: str | None = None) -> "TorchBackend":
        """Load a checkpoint strictly (:func:`actionvos.model.checkpoint.load_model`).

        Raises:
            CheckpointError: unreadable or mismatched checkpoint.
        """
        from actionvos.model.checkpoint import file_sha256, load_model

        model, cfg, meta = load_model(checkpoint, preset=preset, device=device)
        note = None
        if meta.get("random_weights"):
            from actionvos.inference.writers import RANDOM_WEIGHTS_NOTE

            note = str(meta.get("weights_note") or RANDOM_WEIGHTS_NOTE)
        return cls(model, cfg, file_sha256(checkpoint), device=device, weights_note=note)

    def encode_text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> TextArrays:
        """RoBERTa + resizer (spec 3.3) on ``[P, L]`` int64 ids → numpy :class:`TextArrays`."""
        torch = self.torch
        with torch.inference_mode():
            t = self.model.encode_text(torch.from_numpy(input_ids).to(self.device), torch.from_numpy(attention_mask).to(self.device))
        return TextArrays(t.word.float().cpu().numpy(), t.mask.cpu().numpy(), t.sentence.float().cpu().numpy())

    def bind_text(self, text: TextArrays):
        """Numpy features → ``TextFeatures`` on the device (once per prompt set)."""
        from actionvos.model.actionvos import TextFeatures

        torch = self.torch
        return TextFeatures(torch.from_numpy(text.word).to(self.device), torch.from_numpy(text.mask).to(self.device),
                            torch.from_numpy(text.sentence).to(self.device))

    def encode_frame(self, frame: np.ndarray):
        """``[H, W, 3]`` uint8 RGB → ``FrameFeatures`` of one frame (normalised here: ``(x - 255·mean) / (255·std)``)."""
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(np.require(frame, np.uint8, ["C", "W"])).to(self.device).permute(2, 0, 1)[None].float()
            return self.model.encode_frames((x - self._mean) / self._std)

    def decode(self, window: Sequence[Any], text) -> StepOutputs:
        """``decode`` over the concatenated window; returns the newest frame's outputs as numpy."""
        torch = self.torch
        with torch.inference_mode():
            out = self.model.decode(cat_frame_features(list(window)), text)
            return StepOutputs(
                query_logits=out["pred_logits"][:, -1, :, 0].float().cpu().numpy(),
                mask_logits=out["pred_masks"][:, -1].float().cpu().numpy(),
                positive_logit=out["pred_positives"][:, 0].float().cpu().numpy())

    def close(self) -> None:
        self.model = None
