"""Split graphs for T-frame windows on ONNX Runtime: the backbone once per frame, the decoder over the window.

``segmenter.onnx`` runs the backbone on all T frames every call, so a sliding window of T frames would recompute
T-1 frames' backbones per step. The split (spec 3.2: backbone, ``input_proj`` and position encodings are per
frame; only fusion onwards needs the window and the text):

* ``frame_encoder.onnx``: ``frames [1, 3, H, W]`` uint8 → ``res2 [1, 256, H/4, W/4]`` and the four ``input_proj``
  levels ``proj0..proj3 [1, 256, h_l, w_l]`` (strides 8, 16, 32, 64); normalisation inside.
* ``window_decoder.onnx``: ``res2, proj0..proj3`` stacked over ``T`` frames + ``text_word [P, L, 256]``,
  ``text_mask [P, L]``, ``text_sentence [P, 256]`` → the segmenter's four outputs. The 2D position encodings are
  constants at a static size and live inside the graph.

Written next to an ``actionvos export`` folder (its metadata is copied, with these roles) by
:func:`export_window_graphs` or ``python -m actionvos.runtime.window_export DIR CHECKPOINT --window T``; the ONNX Runtime
backend uses them when ``--window T`` matches the decoder's T. Export needs torch; running does not.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from actionvos.errors import ConfigError, InputError
from actionvos.io_utils import atomic_path

__all__ = ["FRAME_ENCODER", "WINDOW_DECODER", "FEATURE_NAMES", "export_window_graphs"]

log = logging.getLogger(__name__)

FRAME_ENCODER = "frame_encoder.onnx"
WINDOW_DECODER = "window_decoder.onnx"
#: Per-frame feature tensors passed from the frame encoder to the window decoder, in order.
FEATURE_NAMES = ("res2", "proj0", "proj1", "proj2", "proj3")


def _graphs(model, height: int, width: int, window: int):
    import torch
    from torch import nn

    from actionvos.model.actionvos import FrameFeatures, TextFeatures
    from actionvos.model.config import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        probe = model.encode_frames(torch.zeros(1, 3, height, width))

    class FrameEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.register_buffer("mean", mean, persistent=False)
            self.register_buffer("std", std, persistent=False)

        def forward(self, frames):
            f = self.model.encode_frames((frames.float().div(255.0) - self.mean) / self.std)
            return (f.backbone[0], *f.proj)

    class WindowDecoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            for i, p in enumerate(probe.backbone_pos):
                self.register_buffer(f"bpos{i}", p.repeat(window, 1, 1, 1), persistent=False)
            for i, p in enumerate(probe.proj_pos):
                self.register_buffer(f"ppos{i}", p.repeat(window, 1, 1, 1), persistent=False)
            self.register_buffer("sizes", probe.image_sizes.clone(), persistent=False)

        def forward(self, res2, proj0, proj1, proj2, proj3, text_word, text_mask, text_sentence):
            n_b, n_p = len(probe.backbone_pos), len(probe.proj_pos)
            feats = FrameFeatures(
                backbone=[res2], backbone_pos=[getattr(self, f"bpos{i}") for i in range(n_b)],
                proj=[proj0, proj1, proj2, proj3], proj_pos=[getattr(self, f"ppos{i}") for i in range(n_p)],
                masks=None, image_sizes=self.sizes, num_frames=window)
            out = self.model.decode(feats, TextFeatures(text_word, text_mask, text_sentence))
            return out["pred_logits"], out["pred_boxes"], out["pred_masks"], out["pred_positives"]

    return FrameEncoder().eval(), WindowDecoder().eval(), probe


def _read_meta(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def export_window_graphs(onnx_dir: str | Path, checkpoint: str | Path, window: int, msda: str = "onnx",
                         opset: int = 18) -> tuple[Path, Path]:
    """Write ``frame_encoder.onnx`` and ``window_decoder.onnx`` (clip length ``window``) into an export folder.

    Args:
        onnx_dir: an ``actionvos export`` folder (its ``segmenter.onnx`` fixes the input size and metadata).
        checkpoint: the checkpoint that folder was exported from (its SHA-256 must match the metadata).
        window: T >= 2 (``--window``).
        msda: ``onnx`` (GridSample, any runtime) or ``plugin`` (TensorRT EP).
    Returns:
        The two paths.
    Raises:
        InputError: ``onnx_dir`` has no ``segmenter.onnx``. ConfigError: T < 2, or a checkpoint of another model.
    """
    import json

    import torch

    from actionvos.export.msda_export import msda_mode
    from actionvos.model.checkpoint import file_sha256, load_model

    onnx_dir = Path(onnx_dir)
    seg = onnx_dir / "segmenter.onnx"
    if not seg.is_file():
        raise InputError(f"{seg} does not exist; run `actionvos export` first")
    if window < 2:
        raise ConfigError(f"window graphs need --window >= 2 (T = 1 uses segmenter.onnx), got {window}")
    meta = _read_meta(seg)
    sha = meta.get("actionvos.checkpoint_sha256", "")
    if sha and sha != file_sha256(checkpoint):
        raise ConfigError(f"{checkpoint} is not the checkpoint {onnx_dir} was exported from (sha256 {sha})")
    inp = json.loads(meta["actionvos.input"])
    H, W = int(inp["height"]), int(inp["width"])
    model, cfg, _ = load_model(checkpoint)
    enc, dec, probe = _graphs(model, H, W, window)
    dummy_frames = torch.zeros(1, 3, H, W, dtype=torch.uint8)
    feats = [probe.backbone[0], *probe.proj]
    P, L = 2, 7
    text = (torch.zeros(P, L, cfg.hidden_dim), torch.zeros(P, L, dtype=torch.bool), torch.zeros(P, cfg.hidden_dim))
    text_axes = {"text_word": {0: "P", 1: "L"}, "text_mask": {0: "P", 1: "L"}, "text_sentence": {0: "P"}}
    out_axes = {n: {0: "P"} for n in ("pred_logits", "pred_boxes", "pred_masks", "pred_positives")}
    paths = (onnx_dir / FRAME_ENCODER, onnx_dir / WINDOW_DECODER)
    jobs = [(enc, (dummy_frames,), ["frames"], list(FEATURE_NAMES), {}, paths[0], "frame_encoder"),
            (dec, (*[f.repeat(window, 1, 1, 1) for f in feats], *text), [*FEATURE_NAMES, *text_axes],
             list(out_axes), {**text_axes, **out_axes}, paths[1], "window_decoder")]
    for module, args, ins, outs, axes, path, role in jobs:
        with atomic_path(path) as tmp, torch.no_grad(), msda_mode(model, msda), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(tmp), dynamo=False, input_names=ins, output_names=outs,
                              dynamic_axes=axes or None, opset_version=opset, do_constant_folding=True,
                              custom_opsets={"trt.plugins": 1} if msda == "plugin" else None)
            import onnx

            m = onnx.load(str(tmp))
            for k, v in meta.items():
                if k not in ("actionvos.spec",):
                    m.metadata_props.add(key=k, value=v)
            for p in m.metadata_props:
                if p.key == "actionvos.role":
                    p.value = role
                if p.key == "actionvos.msda":
                    p.value = msda
            m.metadata_props.add(key="actionvos.window", value=str(window))
            onnx.save(m, str(tmp))
        log.info("wrote %s (T=%d, %dx%d, MSDA %s)", path, window, H, W, msda)
    return paths


def main(argv: list[str] | None = None) -> None:
    """``python -m actionvos.runtime.window_export EXPORT_DIR CHECKPOINT --window T [--msda onnx|plugin]``."""
    import argparse

    ap = argparse.ArgumentParser(description="Write frame_encoder.onnx + window_decoder.onnx into an export folder.")
    ap.add_argument("export_dir")
    ap.add_argument("checkpoint")
    ap.add_argument("--window", type=int, required=True)
    ap.add_argument("--msda", default="onnx", choices=("onnx", "plugin"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for p in export_window_graphs(args.export_dir, args.checkpoint, args.window, msda=args.msda):
        print(p)


if __name__ == "__main__":
    main()
