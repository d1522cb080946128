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
        card: its :class:`~actionvos.card.ModelCard` (from :func:`actionvos.artifacts.read_checkpoint_artifact`).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
    """

    def __init__(self, model, card, device: str = "cpu"):
        import torch

        self.torch = torch
        self.model = model.eval()
        self.cfg = card.config
        self.device = torch.device(device)
        kind = "cuda" if self.device.type == "cuda" else "cpu"
        self.info = BackendInfo(name=f"pytorch-{kind}", card=card)
        self._mean = torch.tensor(card.input.mean, device=self.device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(card.input.std, device=self.device).view(1, 3, 1, 1) * 255.0
        # CUDA: our MSDA kernel (fallback: the oracle, logged), optional FP16 / CUDA graphs (actionvos.model.cuda_fast)
        self.fast = None
        if self.device.type == "cuda":
            from actionvos.model.cuda_fast import CudaFastPath

            self.fast = CudaFastPath(self.model, self.device)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | None, device: str = "cpu", preset: str | None = None,
                        tokenizer: str | Path | None = None) -> "TorchBackend":
        """Load a checkpoint strictly (:func:`actionvos.artifacts.read_checkpoint_artifact`); None = the demo.

        Raises:
            CheckpointError / InputError / ConfigError: unreadable or mismatched checkpoint or tokenizer.
        """
        from actionvos.artifacts import read_checkpoint_artifact

        art = read_checkpoint_artifact(checkpoint, tokenizer=tokenizer, preset=preset, device=device)
        return cls(art.model, art.card, device=device)

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
        """``decode`` over the concatenated window; returns every frame's outputs as numpy (:class:`StepOutputs`)."""
        torch = self.torch
        with torch.inference_mode():
            out = self.model.decode(cat_frame_features(list(window)), text)
            return StepOutputs(
                query_logits=out["pred_logits"][..., 0].float().cpu().numpy(),
                mask_logits=out["pred_masks"].float().cpu().numpy(),
                positive_logit=out["pred_positives"][:, 0].float().cpu().numpy())

    def close(self) -> None:
        self.model = None
