"""Calibration inputs: video files, frame folders, ActionVOS dataset splits and expression files, with prompts.

Frames are read with the runtime's readers (:func:`actionvos.inference.video_io.read_image`, OpenCV for videos).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from actionvos.errors import InputError
from actionvos.inference.video_io import read_image

__all__ = ["InputSpec", "VideoInput", "open_input", "count_video_frames", "dataset_videos"]


@dataclass
class InputSpec:
    """One ``--input`` with the prompts it uses.

    Attributes:
        path: a video file, a frame folder, an ActionVOS dataset root (``ImageSets/{split}.json``) or an
            ``expression_file.json``.
        prompts: ``(name, text)`` pairs for videos/folders; None for datasets (their sequences carry prompts).
        action, objects: instead of ``prompts``: the narration and comma-separated objects, turned into prompts
            with the model's prompt template when the inputs are opened (:func:`open_input`).
        split: dataset split (``val``).
    """

    path: Path
    prompts: list[tuple[str, str]] | None = None
    split: str = "val"
    action: str | None = None
    objects: str | None = None


@dataclass
class VideoInput:
    """One video / frame folder / dataset sequence to sample clips from.

    Attributes:
        name: display name (``box``, ``minivisor/val/00000001_box_move_box``). group: report group (video name or
        ``{dataset}/{split}``). kind: ``video``, ``frames``, ``dataset``. path: the file or folder.
        num_frames: decodable frames. prompts: ``(name, text)`` pairs. frame_paths: image files (not for videos).
    """

    name: str
    group: str
    kind: str
    path: Path
    num_frames: int
    prompts: list[tuple[str, str]]
    frame_paths: list[Path] = field(default_factory=list)

    def read(self, wanted: set[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, RGB uint8 frame)`` for the wanted indices (video files decode through to the last one)."""
        if self.frame_paths:
            for i in sorted(wanted):
                yield i, read_image(self.frame_paths[i])
            return
        import cv2

        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise InputError(f"cannot open video {str(self.path)!r}: corrupt or unsupported")
        try:
            last = max(wanted)
            i = 0
            while i <= last:
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    break
                if i in wanted:
                    yield i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                i += 1
        finally:
            cap.release()


def count_video_frames(path: Path) -> int:
    """Decodable frames of a video (the container header can be off by one or two, e.g. box.mp4)."""
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"cannot open video {str(path)!r}: the file is corrupt, empty or not a supported video format")
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise InputError(f"video {str(path)!r} contains no decodable frames")
    return n


def dataset_videos(root: Path, split: str, template: str) -> list[VideoInput]:
    """Sequences of an ActionVOS-layout dataset split (``ImageSets/{split}.json`` + ``JPEGImages_Sparse/{split}``)."""
    from actionvos.prompts import build_prompts, prompts_from_expressions

    image_dir = root / "JPEGImages_Sparse" / split
    if not image_dir.is_dir():
        raise InputError(f"frame folder {str(image_dir)!r} does not exist; check the dataset root or --split")
    group = f"{root.name}/{split}"
    exp_file = root / "ImageSets" / f"{split}_meta_expressions_promptaction.json"
    videos = []
    if exp_file.is_file():
        try:
            entries = json.loads(exp_file.read_text(encoding="utf-8"))["videos"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"cannot read {str(exp_file)!r} ({type(err).__name__}); it must be {{\"videos\": {{...}}}}") from None
        for name, entry in entries.items():
            prompts = prompts_from_expressions(entry.get("expressions"), f"{exp_file.name}: {name}", template)
            frames = [image_dir / name / f"{f}.jpg" for f in entry.get("frames", [])]
            videos.append(VideoInput(f"{group}/{name}", group, "dataset", image_dir / name, len(frames),
                                 [(p.name, p.text) for p in prompts], frames))
    else:
        split_file = root / "ImageSets" / f"{split}.json"
        try:
            seqs = json.loads(split_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read {str(split_file)!r} ({type(err).__name__})") from None
        for s in seqs:
            try:
                name = f"{int(s['seq_id']):08d}_{s['video']}_{s['verb']}_{s['noun']}"
                objs = [o["name"] for _, o in sorted(s["object_classes"].items(), key=lambda kv: int(kv[0]))]
                prompts = build_prompts(s["narration"], objs, template)
                frames = [image_dir / name / f for f in s["sparse_frames"]]
            except (KeyError, TypeError, ValueError) as err:
                raise InputError(f"{split_file.name}: a sequence entry lacks {err}; expected the ActionVOS layout") from None
            videos.append(VideoInput(f"{group}/{name}", group, "dataset", image_dir / name, len(frames),
                                 [(p.name, p.text) for p in prompts], frames))
    missing = [p for v in videos for p in v.frame_paths if not p.is_file()]
    if missing:
        raise InputError(f"frame {str(missing[0])!r} listed in the {split} split does not exist")
    if not videos:
        raise InputError(f"dataset {str(root)!r} has no sequences in split {split!r}")
    return videos


def open_input(spec: InputSpec, template: str) -> list[VideoInput]:
    """The videos of one ``--input`` with their prompts (``template``: the model's ``{object}``/``{action}`` one).

    Raises:
        InputError: the path does not exist, cannot be read, or carries no prompts and none were given.
    """
    from actionvos.inference.video_io import FrameListSource, open_source

    path = Path(spec.path)
    if not path.exists():
        raise InputError(f"--input {str(path)!r} does not exist")
    if path.is_dir() and (path / "ImageSets" / f"{spec.split}.json").is_file():
        return dataset_videos(path, spec.split, template)
    src = open_source(path, split=spec.split)
    videos = []
    for v in src.videos:
        if v.prompts is not None:
            prompts = [(p.name, p.text) for p in v.prompts]
        elif spec.prompts:
            prompts = list(spec.prompts)
        elif spec.action is not None or spec.objects is not None:
            from actionvos.prompts import build_prompts

            prompts = [(p.name, p.text) for p in build_prompts(spec.action, spec.objects, template)]
        else:
            raise InputError(f"--input {str(path)!r} carries no prompts; pass --action and --objects (or --prompt)")
        if isinstance(v, FrameListSource):
            group = path.stem if src.kind == "frames" else f"{path.stem}/{spec.split}"
            videos.append(VideoInput(v.name if src.kind == "frames" else f"{path.stem}/{v.name}", group, src.kind, path,
                                 len(v.paths), prompts, list(v.paths)))
        else:
            n = count_video_frames(path)
            videos.append(VideoInput(v.name, v.name, "video", path, n, prompts))
    return videos
