"""Teacher pseudo-labels on the unlabelled frames between VISOR's sparse ones (PRVOS-style refinement).

VISOR annotates only sparse frames. ``actionvos train --teacher CKPT --dense-frames DIR`` first lets a trained
model (the teacher) label every *dense* frame of each training sequence that has no annotation, then trains on
those labels as extra samples next to the sparse ground truth.

Dense frame layout (``--dense-frames DIR``)::

    {DIR}/{split}/{sequence}/{frame}.jpg      RGB frames, same size as the sparse ones, any names that sort in
                                              time order (e.g. frame_0000000005.jpg); sparse frames may be
                                              present too and are skipped (they have ground truth)

For minivisor, :func:`extract_dense_frames` builds it from the source videos: a sequence covers the decoded
video frames ``start..end`` of its ``ImageSets/{split}.json`` entry, and frame names are the decoded index
(``frame_{index:010d}``), so the dense frames are every decoded frame in that range.

Uncertainty-aware refinement (PRVOS): for a *positive* expression the teacher's mask probability ``p`` of the
selected query (official query selection, no positive gate: the expression's flag is known) becomes

* ``p > hi`` (0.9): label 1, weight 1 (confident object);
* ``p < lo`` (0.1): label 0, weight 1 (confident background);
* otherwise: label 0, weight 0 (uncertain; ignored by the weighted focal mask loss).

A *negative* expression's target is all background with weight 1, as for sparse frames (spec §6). The labels
are stored as greyscale PNG codes ``{out}/{split}/{sequence}/{obj_id}/{frame}.png``: 0 background, 1 object,
255 uncertain. Note: the dice term is unweighted in the reference criterion (spec §7), so uncertain pixels
count as background there; only the focal mask term ignores them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError, InputError
from ..inference.video_io import read_image
from ..io_utils import atomic_path, atomic_write_json
from .dataset import ActionVOSDataset, build_target, sample_frame_indices
from .transforms import ClipRNG, Compose

__all__ = ["CODE_BACKGROUND", "CODE_OBJECT", "CODE_UNCERTAIN", "PseudoLabelConfig", "refine_probabilities",
           "codes_to_target", "extract_dense_frames", "label_dense_frames", "PseudoLabelDataset"]

log = logging.getLogger(__name__)

CODE_BACKGROUND = 0
CODE_OBJECT = 1
CODE_UNCERTAIN = 255


@dataclass(frozen=True)
class PseudoLabelConfig:
    """Thresholds of the refinement: ``hi`` and ``lo`` are probabilities with ``0 <= lo < hi <= 1``."""

    hi: float = 0.9
    lo: float = 0.1

    def __post_init__(self):
        if not 0.0 <= self.lo < self.hi <= 1.0:
            raise ConfigError(f"pseudo-label thresholds need 0 <= lo < hi <= 1, got lo={self.lo} hi={self.hi}")


def refine_probabilities(prob: np.ndarray | torch.Tensor, hi: float = 0.9, lo: float = 0.1) -> np.ndarray:
    """Map mask probabilities ``[..., H, W]`` in [0, 1] to uint8 codes: ``> hi`` → 1, ``< lo`` → 0, else 255."""
    p = prob.detach().cpu().numpy() if isinstance(prob, torch.Tensor) else np.asarray(prob)
    codes = np.full(p.shape, CODE_UNCERTAIN, dtype=np.uint8)
    codes[p > hi] = CODE_OBJECT
    codes[p < lo] = CODE_BACKGROUND
    return codes


def codes_to_target(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``[H, W]`` uint8 → ``(mask, weight)`` float32 ``[H, W]``: mask = (code == 1), weight = (code != 255).

    Raises:
        InputError: a code other than 0, 1 or 255.
    """
    bad = ~np.isin(codes, (CODE_BACKGROUND, CODE_OBJECT, CODE_UNCERTAIN))
    if bad.any():
        raise InputError(f"pseudo-label PNG holds codes {sorted(np.unique(codes[bad]).tolist())[:5]}; expected 0, 1, 255")
    return (codes == CODE_OBJECT).astype(np.float32), (codes != CODE_UNCERTAIN).astype(np.float32)


def extract_dense_frames(data_root: str | Path, videos_dir: str | Path, split: str, out: str | Path,
                         step: int = 1) -> int:
    """Write the dense frames of every sequence of ``{data_root}/ImageSets/{split}.json`` from its source video.

    Sequence ``s`` covers decoded frames ``s['start'] .. s['end']`` of ``{videos_dir}/{s['video']}.mp4``
    (minivisor's naming: frame names are the decoded index). Every ``step``-th frame is written as
    ``{out}/{split}/{folder}/frame_{index:010d}.jpg`` (JPEG quality 90). Returns the number of frames written.

    Raises:
        InputError: the split file or a video is missing, or a video is shorter than a sequence's ``end``.
    """
    import cv2

    from .metrics import load_split, sequence_folder_name

    seqs = load_split(Path(data_root) / "ImageSets" / f"{split}.json")
    want: dict[str, dict[int, list[str]]] = {}
    for s in seqs:
        for idx in range(int(s["start"]), int(s["end"]) + 1, step):
            want.setdefault(s["video"], {}).setdefault(idx, []).append(sequence_folder_name(s))
    written = 0
    for video, frames in want.items():
        path = Path(videos_dir) / f"{video}.mp4"
        if not path.is_file():
            raise InputError(f"source video {path} is missing; --videos must hold {{video}}.mp4 for each sequence")
        cap = cv2.VideoCapture(str(path))
        idx, last = 0, max(frames)
        try:
            while idx <= last:
                ok, bgr = cap.read()
                if not ok:
                    raise InputError(f"{path} ends at frame {idx}, but its sequences need frames up to {last}")
                for folder in frames.get(idx, []):
                    dst = Path(out) / split / folder / f"frame_{idx:010d}.jpg"
                    with atomic_path(dst) as tmp:
                        cv2.imwrite(str(tmp), bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
                    written += 1
                idx += 1
        finally:
            cap.release()
    return written


def _load_meta(data_root: Path, split: str) -> dict:
    path = data_root / "ImageSets" / f"{split}_meta_expressions_promptaction.json"
    if not path.is_file():
        raise InputError(f"expression file {path} does not exist; run prepare-visor first")
    return json.loads(path.read_text())["videos"]


def _dense_names(dense_root: Path, split: str, video: str, sparse: set[str]) -> list[str]:
    folder = dense_root / split / video
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.jpg") if p.stem not in sparse)


@torch.no_grad()
def label_dense_frames(teacher, tokenizer, card, data_root: str | Path, dense_root: str | Path, split: str,
                       out: str | Path, thresholds: PseudoLabelConfig = PseudoLabelConfig(),
                       device: str = "cpu", short_side: int | None = None, progress: bool = False) -> dict:
    """Label the dense frames of every training sequence with ``teacher`` and write the refined code PNGs.

    Args:
        teacher: an ActionVOS model (eval mode is set here) on ``device``.
        tokenizer: the teacher's :class:`~actionvos.tokenizer.Tokenizer`. card: the teacher's
            :class:`~actionvos.card.ModelCard` (``input.max_clip_frames`` frames per clip, ``input.short_side`` unless
            ``short_side`` is given).
        data_root: dataset root with ``ImageSets/{split}_meta_expressions_promptaction.json`` (spec §5.2).
        dense_root: ``{dense_root}/{split}/{sequence}/{frame}.jpg`` (see the module docstring).
        out: output root of the code PNGs.
    Returns:
        ``{"sequences", "frames", "pixels_object", "pixels_background", "pixels_uncertain"}`` counts; also written
        to ``{out}/{split}/stats.json``.
    Raises:
        InputError: no dense frame found for any sequence, or unreadable frames.
    """
    from tqdm import tqdm

    from actionvos.model.postprocess import clip_predictions, preprocess_frames

    data_root, dense_root, out = Path(data_root), Path(dense_root), Path(out)
    videos = _load_meta(data_root, split)
    teacher.eval()
    stats = {"sequences": 0, "frames": 0, "pixels_object": 0, "pixels_background": 0, "pixels_uncertain": 0}
    side = short_side or card.input.short_side
    clip_len = card.input.max_clip_frames
    for video, vd in tqdm(videos.items(), desc="pseudo-labels", disable=not progress, leave=False):
        names = _dense_names(dense_root, split, video, set(vd["frames"]))
        if not names:
            continue
        exps = list(vd["expressions"].values())
        ids, mask = tokenizer.encode_for([" ".join(e["exp"].lower().split()) for e in exps], card)
        text = teacher.encode_text(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
        stats["sequences"] += 1
        for c0 in range(0, len(names), clip_len):
            chunk = names[c0:c0 + clip_len]
            frames = np.stack([read_image(dense_root / split / video / f"{n}.jpg") for n in chunk])
            x = preprocess_frames(frames, short_side=side).to(device)
            outputs = teacher.decode(teacher.encode_frames(x), text)
            prob = clip_predictions(outputs, out_size=frames.shape[1:3], pos_thres=0.0).mask_prob.float().cpu()
            for p, e in enumerate(exps):
                if e.get("positive", 1):
                    codes = refine_probabilities(prob[p], thresholds.hi, thresholds.lo)
                else:
                    codes = np.zeros(prob.shape[1:], dtype=np.uint8)
                for t, n in enumerate(chunk):
                    img = Image.fromarray(codes[t], mode="L")
                    with atomic_path(out / split / video / str(e["obj_id"]) / f"{n}.png") as tmp:
                        img.save(tmp, format="PNG")
                stats["pixels_object"] += int((codes == CODE_OBJECT).sum())
                stats["pixels_background"] += int((codes == CODE_BACKGROUND).sum())
                stats["pixels_uncertain"] += int((codes == CODE_UNCERTAIN).sum())
            stats["frames"] += len(chunk)
    if stats["sequences"] == 0:
        raise InputError(f"no dense frames found under {dense_root / split}; expected {{sequence}}/{{frame}}.jpg "
                         "per training sequence (see actionvos.training.pseudo_labels)")
    atomic_write_json(out / split / "stats.json", stats)
    return stats


class PseudoLabelDataset(ActionVOSDataset):
    """Training samples on teacher-labelled dense frames (same sample rule and augmentation as the sparse data).

    One sample per (sequence, expression, start in ``range(0, n_dense, num_frames)``) over the dense frames that
    have a code PNG. Targets are those of :class:`ActionVOSDataset` with ``masks`` = confident object pixels and
    ``weights`` = 1 on confident pixels, 0 on uncertain ones. ``target["pseudo"] = True``.

    Raises:
        InputError: no pseudo-label found under ``pseudo_root``.
    """

    def __init__(self, root: str | Path, dense_root: str | Path, pseudo_root: str | Path, split: str = "train",
                 num_frames: int = 5, transforms: Compose | None = None, seed: int = 42):
        super().__init__(root, split, num_frames=num_frames, transforms=transforms, seed=seed)
        self.dense_root, self.pseudo_root = Path(dense_root), Path(pseudo_root)
        metas = []
        for vid, vd in _load_meta(self.root, split).items():
            for e in vd["expressions"].values():
                folder = self.pseudo_root / split / vid / str(e["obj_id"])
                frames = sorted(p.stem for p in folder.glob("*.png")) if folder.is_dir() else []
                for start in range(0, len(frames), num_frames):
                    metas.append({"video": vid, "exp": e["exp"], "obj_id": int(e["obj_id"]), "frames": frames,
                                  "frame_id": start, "positive": bool(e["positive"]),
                                  "class_id": int(e.get("class_id", 0))})
        if not metas:
            raise InputError(f"no pseudo-labels under {self.pseudo_root / split}; run the teacher first")
        self.metas = metas

    def load_raw(self, idx: int, rng: ClipRNG) -> tuple[list[Image.Image], dict]:
        meta = self.metas[idx]
        frames = meta["frames"]
        sample = sample_frame_indices(meta["frame_id"], len(frames), self.num_frames, rng.py)
        imgs, masks, weights = [], [], []
        for fi in sample:
            name = frames[fi]
            imgs.append(Image.fromarray(read_image(self.dense_root / self.split / meta["video"] / f"{name}.jpg")))
            path = self.pseudo_root / self.split / meta["video"] / str(meta["obj_id"]) / f"{name}.png"
            with Image.open(path) as im:
                m, w = codes_to_target(np.array(im))
            if m.shape != (imgs[-1].height, imgs[-1].width):
                raise InputError(f"pseudo-label {path} is {m.shape[::-1]} but its frame is {imgs[-1].size}")
            masks.append(torch.from_numpy(m if meta["positive"] else np.zeros_like(m)))
            weights.append(torch.from_numpy(w))
        return imgs, {**build_target(sample, imgs, masks, weights, meta), "pseudo": True}
