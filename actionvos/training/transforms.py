"""Clip-level training augmentations (spec §8; ActionVOS ``transforms_video_actionvos.py``).

Written with numpy / torch / PIL / cv2 only (no torchvision). A clip is a list of ``T`` PIL RGB
images of equal size; the target dict holds (see :mod:`actionvos.training.dataset`):
``boxes [T,4]`` float xyxy in pixels (max inclusive; ``[0,0,0,0]`` when absent), ``masks [T,H,W]``
float 0/1, ``weights [T,H,W]`` float λ, ``caption`` str, ``size`` int64 ``(H, W)``.

All randomness comes from a :class:`ClipRNG` passed explicitly, so a seed fixes the result.
Deliberate differences from the reference (bugs there, documented here):
* flipping keeps an all-zero (absent/negative) box all-zero; the reference turns it into
  ``[W,0,W,0]`` (cxcywh ``[1,0,0,0]``), contradicting spec §7 "GT is [0,0,0,0]";
* photometric distortion clips to [0, 255] before the uint8 cast; the reference's cast of
  out-of-range floats is undefined behaviour in numpy (wraps on x86).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .box_ops import box_xyxy_to_cxcywh

__all__ = [
    "ClipRNG", "Compose", "RandomHorizontalFlip", "PhotometricDistort", "RandomResize", "RandomSizeCrop",
    "RandomSelect", "ToTensorNormalize", "Pad", "make_train_transforms", "make_eval_transforms",
    "IMAGENET_MEAN", "IMAGENET_STD", "TRAIN_SCALES", "swap_left_right",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAIN_SCALES = (288, 320, 352, 392, 416, 448, 480, 512)


@dataclass
class ClipRNG:
    """Python ``random.Random`` (geometry, like the reference's ``random``) and numpy
    ``RandomState`` (photometric, like the reference's ``numpy.random``), both seeded."""

    py: random.Random
    np: np.random.RandomState

    @classmethod
    def from_seed(cls, seed: int | list[int]) -> "ClipRNG":
        ss = np.random.SeedSequence(seed)
        a, b = ss.generate_state(2)
        return cls(random.Random(int(a)), np.random.RandomState(int(b)))


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, clip, target, rng: ClipRNG):
        for t in self.transforms:
            clip, target = t(clip, target, rng)
        return clip, target


def swap_left_right(caption: str) -> str:
    """Swap the substrings 'left' and 'right' (reference: ``replace('left','@')...``)."""
    return caption.replace("left", "@").replace("right", "left").replace("@", "right")


class RandomHorizontalFlip:
    """With probability ``p``: flip images, masks, weights, boxes and swap left/right in the caption."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, clip, target, rng: ClipRNG):
        if rng.py.random() >= self.p:
            return clip, target
        target = dict(target)
        target["caption"] = swap_left_right(target["caption"])
        w = clip[0].size[0]
        clip = [im.transpose(Image.FLIP_LEFT_RIGHT) for im in clip]
        boxes = target["boxes"]
        flipped = boxes[:, [2, 1, 0, 3]] * torch.tensor([-1.0, 1, -1, 1]) + torch.tensor([float(w), 0, w, 0])
        absent = (boxes == 0).all(dim=1, keepdim=True)
        target["boxes"] = torch.where(absent, boxes, flipped)
        target["masks"] = target["masks"].flip(-1)
        target["weights"] = target["weights"].flip(-1)
        return clip, target


class PhotometricDistort:
    """SSD photometric distortion, drawn independently per frame (as the reference):
    brightness ±32 (p .5), then either [contrast, HSV(saturation, hue), ] or
    [HSV(saturation, hue), contrast] (each op p .5; saturation ×[0.5,1.5], hue ±18°, contrast
    ×[0.5,1.5]), then a random channel permutation (p .5). The reference converts its RGB array
    with ``COLOR_BGR2HSV``; this is kept so the hue/saturation statistics match."""

    _PERMS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))

    def _one(self, img: np.ndarray, r: np.random.RandomState) -> np.ndarray:
        def contrast(x):
            if r.randint(2):
                x = x * r.uniform(0.5, 1.5)
            return x

        def hsv_ops(x):
            x = cv2.cvtColor(x.astype(np.float32), cv2.COLOR_BGR2HSV)
            if r.randint(2):
                x[:, :, 1] *= r.uniform(0.5, 1.5)
            if r.randint(2):
                x[:, :, 0] += r.uniform(-18.0, 18.0)
                x[:, :, 0][x[:, :, 0] > 360.0] -= 360.0
                x[:, :, 0][x[:, :, 0] < 0.0] += 360.0
            return cv2.cvtColor(x, cv2.COLOR_HSV2BGR)

        if r.randint(2):
            img = img + r.uniform(-32, 32)
        if r.randint(2):
            img = hsv_ops(contrast(img))
        else:
            img = contrast(hsv_ops(img))
        if r.randint(2):
            img = img[:, :, list(self._PERMS[r.randint(len(self._PERMS))])]
        return img

    def __call__(self, clip, target, rng: ClipRNG):
        out = []
        for im in clip:
            arr = self._one(np.asarray(im).astype(np.float32), rng.np)
            out.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
        return out, target


def _size_with_aspect(w: int, h: int, size: int, max_size: int | None) -> tuple[int, int]:
    """ReferFormer ``get_size_with_aspect_ratio`` → ``(oh, ow)``."""
    if max_size is not None:
        mn, mx = float(min(w, h)), float(max(w, h))
        if mx / mn * size > max_size:
            size = int(round(max_size * mn / mx))
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    if w < h:
        return int(size * h / w), size
    return size, int(size * w / h)


def resize(clip, target, size: int, max_size: int | None = None):
    """Resize the shorter side to ``size`` (long side capped by ``max_size``): images bilinear (PIL),
    masks/weights nearest (torch), boxes scaled, ``size`` updated."""
    w, h = clip[0].size
    oh, ow = _size_with_aspect(w, h, size, max_size)
    clip = [im.resize((ow, oh), Image.BILINEAR) for im in clip]
    target = dict(target)
    target["boxes"] = target["boxes"] * torch.tensor([ow / w, oh / h, ow / w, oh / h])
    target["size"] = torch.tensor([oh, ow])
    target["masks"] = (F.interpolate(target["masks"][:, None].float(), (oh, ow), mode="nearest")[:, 0] > 0.5).float()
    target["weights"] = F.interpolate(target["weights"][:, None].float(), (oh, ow), mode="nearest")[:, 0]
    return clip, target


class RandomResize:
    def __init__(self, sizes, max_size: int | None = None):
        self.sizes = list(sizes)
        self.max_size = max_size

    def __call__(self, clip, target, rng: ClipRNG):
        return resize(clip, target, rng.py.choice(self.sizes), self.max_size)


def crop(clip, target, region: tuple[int, int, int, int]):
    """Crop ``(top, left, height, width)``; boxes shifted and clamped to the crop."""
    i, j, h, w = region
    clip = [im.crop((j, i, j + w, i + h)) for im in clip]
    target = dict(target)
    b = target["boxes"] - torch.tensor([j, i, j, i], dtype=torch.float32)
    b = torch.min(b.reshape(-1, 2, 2), torch.tensor([w, h], dtype=torch.float32)).clamp(min=0)
    target["boxes"] = b.reshape(-1, 4)
    target["size"] = torch.tensor([h, w])
    target["masks"] = target["masks"][:, i : i + h, j : j + w]
    target["weights"] = target["weights"][:, i : i + h, j : j + w]
    return clip, target


class RandomSizeCrop:
    """Random crop of width ∈ [min, min(W, max)] and height ∈ [min, min(H, max)]."""

    def __init__(self, min_size: int, max_size: int):
        self.min_size, self.max_size = min_size, max_size

    def __call__(self, clip, target, rng: ClipRNG):
        W, H = clip[0].size
        w = rng.py.randint(self.min_size, min(W, self.max_size))
        h = rng.py.randint(self.min_size, min(H, self.max_size))
        i = rng.py.randint(0, H - h)
        j = rng.py.randint(0, W - w)
        return crop(clip, target, (i, j, h, w))


class Pad:
    """Pad bottom/right by ``(pad_x, pad_y)``: images 0, masks 0, weights **1** (reference ``pad``)."""

    def __init__(self, pad_x: int, pad_y: int):
        self.pad_x, self.pad_y = pad_x, pad_y

    def __call__(self, clip, target, rng: ClipRNG | None = None):
        out = []
        for im in clip:
            canvas = Image.new(im.mode, (im.width + self.pad_x, im.height + self.pad_y))
            canvas.paste(im, (0, 0))
            out.append(canvas)
        target = dict(target)
        pads = (0, self.pad_x, 0, self.pad_y)
        target["masks"] = F.pad(target["masks"], pads, value=0.0)
        target["weights"] = F.pad(target["weights"], pads, value=1.0)
        target["size"] = torch.tensor([out[0].height, out[0].width])
        return out, target


class RandomSelect:
    """``t1`` with probability ``p``, else ``t2``."""

    def __init__(self, t1, t2, p: float = 0.5):
        self.t1, self.t2, self.p = t1, t2, p

    def __call__(self, clip, target, rng: ClipRNG):
        return self.t1(clip, target, rng) if rng.py.random() < self.p else self.t2(clip, target, rng)


class ToTensorNormalize:
    """PIL → ``[3,H,W]`` float (/255, ImageNet-normalised); boxes → cxcywh normalised by ``(W, H)``."""

    def __call__(self, clip, target, rng: ClipRNG | None = None):
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        imgs = [(torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1) - mean) / std
                for im in clip]
        target = dict(target)
        h, w = imgs[0].shape[-2:]
        target["boxes"] = box_xyxy_to_cxcywh(target["boxes"]) / torch.tensor([w, h, w, h], dtype=torch.float32)
        return imgs, target


def make_train_transforms(max_size: int = 512) -> Compose:
    """Spec §8 training pipeline: flip → photometric → RandomSelect(resize | resize-crop-resize) → tensor."""
    return Compose([
        RandomHorizontalFlip(0.5),
        PhotometricDistort(),
        RandomSelect(
            RandomResize(TRAIN_SCALES, max_size=max_size),
            Compose([RandomResize([400, 500, 600]), RandomSizeCrop(384, 600),
                     RandomResize(TRAIN_SCALES, max_size=max_size)]),
        ),
        ToTensorNormalize(),
    ])


def make_eval_transforms() -> Compose:
    """Reference ``val`` pipeline: ``RandomResize([360], max_size=640)`` → tensor."""
    return Compose([RandomResize([360], max_size=640), ToTensorNormalize()])
