"""ActionVOS training dataset over the released layout (spec §5, §6 last block, §8).

Layout under ``root``::

    JPEGImages_Sparse/{split}/{video}/{frame}.jpg     RGB frames
    Annotations_Sparse/{split}/{video}/{frame}.png    palette PNG, pixel = object colour k (0 = bg)
    Weights_Sparse/{split}/{video}/{frame}.png        palette (or L) PNG, pixel = weight code 1..4
    ImageSets/{split}_meta_expressions_promptaction.json   spec §5.2 (exp, obj_id, positive, class_id, frames)

(``ImageSets/{split}.json`` and ``{split}_objects_category.json`` are not needed for training.)
In minivisor the weight PNGs are palette PNGs of the frame size whose indices are the codes.

One sample per (video, expression, start index in ``range(0, vid_len, num_frames)``). A sample is
``(imgs [T,3,H,W] float32 normalised, target)`` with ``target``:
    ``masks [T,H,W]`` float 0/1; ``weights [T,H,W]`` float λ ∈ {1,2,5}; ``boxes [T,4]`` float
    cxcywh normalised (``[0,0,0,0]`` when absent or negative); ``valid [T]`` int64 ones;
    ``positive [T]`` bool; ``labels [T]`` int64 class id; ``frames_idx [T]`` int64;
    ``caption`` str; ``orig_size``/``size`` int64 ``(H, W)`` before / after augmentation (pre-padding).
:func:`collate` pads a batch to a multiple of 32 (images 0, masks 0, λ 0, ``pad_mask`` True).
Inside augmentation, weights are cropped, flipped and nearest-resized; the reference's ``pad``
transform (not in the training pipeline) pads λ with 1, see :class:`~.transforms.Pad`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import InputError
from .box_ops import masks_to_boxes
from .transforms import ClipRNG, Compose, make_train_transforms

__all__ = ["ActionVOSDataset", "sample_frame_indices", "code_to_lambda", "collate"]


def sample_frame_indices(frame_id: int, vid_len: int, num_frames: int, rng) -> list[int]:
    """Reference frame sampling (spec §8): start, ±randint(1,3) neighbours (clamped), global fill.

    ``rng`` is a ``random.Random``. Returns ``num_frames`` sorted indices, possibly repeated
    (e.g. ``[0,0,0,1,1]`` for a 2-frame video).
    """
    idx = [frame_id]
    if num_frames == 1:
        return idx
    before, after = rng.randint(1, 3), rng.randint(1, 3)
    idx += [max(0, frame_id - before), min(vid_len - 1, frame_id + after)]
    if num_frames > 3:
        all_inds = list(range(vid_len))
        global_inds = all_inds[: min(idx)] + all_inds[max(idx):]
        n = num_frames - len(idx)
        if len(global_inds) > n:
            idx += [global_inds[s] for s in rng.sample(range(len(global_inds)), n)]
        elif vid_len >= n:
            idx += [all_inds[s] for s in rng.sample(range(vid_len), n)]
        else:
            idx += [all_inds[s] for s in rng.sample(range(vid_len), n - vid_len) + list(range(vid_len))]
    return sorted(idx)


def code_to_lambda(label: np.ndarray, codes: np.ndarray, obj_id: int, positive: bool) -> tuple[np.ndarray, np.ndarray]:
    """Weight-code → (target mask, λ) for object colour ``obj_id`` (spec §6, last block).

    ``m = (label == k)``; ``w = where(m == 0, 1, codes)``; ``m = where(w == 3, 0, m)``;
    ``w = where(w >= 3, 5, w)``; negatives get ``m = 0`` (weights kept).
    Returns float32 ``[H, W]`` arrays: mask ∈ {0,1}, λ ∈ {1,2,5}.
    """
    m = (label == obj_id).astype(np.float32)
    w = np.where(m == 0, 1, codes)
    m = np.where(w == 3, 0, m).astype(np.float32)
    w = np.where(w >= 3, 5, w).astype(np.float32)
    if not positive:
        m = np.zeros_like(m)
    return m, w


def build_target(sample: list[int], imgs: list[Image.Image], masks: list[torch.Tensor], weights: list[torch.Tensor],
                 meta: dict) -> dict:
    """The un-augmented target of one sample (spec 7 keys): masks ``[T, H, W]``, λ ``weights [T, H, W]``, xyxy pixel
    ``boxes [T, 4]`` from the masks (clamped to the image), ``labels``/``valid``/``positive`` per frame, the caption
    lowercased with whitespace collapsed, and ``orig_size``/``size`` ``(H, W)``."""
    masks_t = torch.stack(masks)
    w_img, h_img = imgs[0].size
    boxes = masks_to_boxes(masks_t)
    boxes[:, 0::2].clamp_(0, w_img)
    boxes[:, 1::2].clamp_(0, h_img)
    t = len(sample)
    return {
        "frames_idx": torch.tensor(sample), "labels": torch.full((t,), meta["class_id"], dtype=torch.long),
        "boxes": boxes, "masks": masks_t, "weights": torch.stack(weights),
        "valid": torch.ones(t, dtype=torch.long), "positive": torch.full((t,), meta["positive"]),
        "caption": " ".join(meta["exp"].lower().split()),
        "orig_size": torch.tensor([h_img, w_img]), "size": torch.tensor([h_img, w_img]),
    }


def _read_png(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path} is missing; the dataset layout needs it (see actionvos.training.dataset)")
    with Image.open(path) as im:
        if im.mode not in ("P", "L"):
            raise InputError(f"{path} is a {im.mode} image; label and weight PNGs must be palette (P) or grey (L)")
        return np.array(im)


class ActionVOSDataset(Dataset):
    """Training samples of spec §8. ``seed`` and :meth:`set_epoch` make every item deterministic
    (the RNG of item ``i`` is seeded from ``(seed, epoch, i)``, independent of worker layout).

    Raises:
        InputError: ``root`` or the expression file is missing or malformed.
    """

    def __init__(self, root: str | Path, split: str = "train",
                 expression_file: str | None = None, num_frames: int = 5,
                 transforms: Compose | None = None, use_weights: bool = True, seed: int = 42):
        self.root = Path(root)
        self.split = split
        self.num_frames = num_frames
        self.transforms = transforms if transforms is not None else make_train_transforms()
        self.use_weights = use_weights
        self.seed = seed
        self.epoch = 0
        exp_path = self.root / "ImageSets" / (expression_file or f"{split}_meta_expressions_promptaction.json")
        if not exp_path.is_file():
            raise InputError(f"expression file {exp_path} does not exist; run prepare-visor or pass --expression-file")
        try:
            videos = json.loads(exp_path.read_text())["videos"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise InputError(f"{exp_path} is not a spec 5.2 meta-expressions file ({e!r})") from None
        self.metas = []
        for vid, vd in videos.items():
            frames = sorted(vd["frames"])
            for exp_id, e in vd["expressions"].items():
                if "obj_id" not in e or "positive" not in e:
                    raise InputError(f"{exp_path}: expression {vid}/{exp_id} lacks obj_id/positive; training needs "
                                     "the spec 5.2 file written by prepare-visor, not a demo expression file")
                for start in range(0, len(frames), num_frames):
                    self.metas.append({
                        "video": vid, "exp": e["exp"], "obj_id": int(e["obj_id"]), "frames": frames,
                        "frame_id": start, "positive": bool(e["positive"]),
                        "class_id": int(e.get("class_id", 0)),
                    })

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.metas)

    def _path(self, kind: str, video: str, frame: str, ext: str) -> Path:
        return self.root / kind / self.split / video / f"{frame}.{ext}"

    def load_raw(self, idx: int, rng: ClipRNG) -> tuple[list[Image.Image], dict]:
        """Frames and target before augmentation; boxes xyxy pixels (max inclusive)."""
        meta = self.metas[idx]
        frames = meta["frames"]
        sample = sample_frame_indices(meta["frame_id"], len(frames), self.num_frames, rng.py)
        imgs, masks, weights = [], [], []
        for fi in sample:
            name = frames[fi]
            p = self._path("JPEGImages_Sparse", meta["video"], name, "jpg")
            if not p.is_file():
                raise InputError(f"frame {p} is missing; check the dataset root and split")
            with Image.open(p) as im:
                imgs.append(im.convert("RGB"))
            label = _read_png(self._path("Annotations_Sparse", meta["video"], name, "png"))
            codes = (_read_png(self._path("Weights_Sparse", meta["video"], name, "png")) if self.use_weights
                     else np.ones_like(label))
            if codes.shape != label.shape:
                raise InputError(f"weights of {meta['video']}/{name} are {codes.shape}, mask is {label.shape}")
            m, w = code_to_lambda(label, codes, meta["obj_id"], meta["positive"])
            if not self.use_weights:
                w = np.ones_like(w)
            masks.append(torch.from_numpy(m))
            weights.append(torch.from_numpy(w))
        return imgs, build_target(sample, imgs, masks, weights, meta)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, dict]:
        rng = ClipRNG.from_seed([self.seed, self.epoch, idx])
        imgs, target = self.load_raw(idx, rng)
        imgs, target = self.transforms(imgs, target, rng)
        return torch.stack(imgs), target


def collate(batch: list[tuple[torch.Tensor, dict]], divisor: int = 32) -> dict:
    """Pad a batch to a multiple of ``divisor`` (ReferFormer ``collate_fn``).

    Returns ``{"imgs": [B,T,3,Hp,Wp] float32, "pad_mask": [B,T,Hp,Wp] bool (True = padding),
    "targets": list of B dicts}`` where each target's ``masks`` and ``weights`` are padded to
    ``[T,Hp,Wp]`` with 0 (padded λ is 0, spec §7); ``size`` keeps the unpadded size.
    """
    vids = [b[0] for b in batch]
    t = max(v.shape[0] for v in vids)
    h = -(-max(v.shape[-2] for v in vids) // divisor) * divisor
    w = -(-max(v.shape[-1] for v in vids) // divisor) * divisor
    imgs = torch.zeros((len(vids), t, 3, h, w), dtype=vids[0].dtype)
    pad_mask = torch.ones((len(vids), t, h, w), dtype=torch.bool)
    targets = []
    for i, (v, tgt) in enumerate(batch):
        imgs[i, : v.shape[0], :, : v.shape[-2], : v.shape[-1]] = v
        pad_mask[i, : v.shape[0], : v.shape[-2], : v.shape[-1]] = False
        tgt = dict(tgt)
        for key in ("masks", "weights"):
            padded = torch.zeros((tgt[key].shape[0], h, w), dtype=torch.float32)
            padded[:, : tgt[key].shape[-2], : tgt[key].shape[-1]] = tgt[key]
            tgt[key] = padded
        targets.append(tgt)
    return {"imgs": imgs, "pad_mask": pad_mask, "targets": targets}
