"""Frame sources for offline inference: a video file, a folder of frames, or an ActionVOS ``expression_file.json``.

Every source is a list of :class:`VideoSource` objects. Each one is probed when it is opened (so bad input
fails before any output is written) and then yields its frames lazily as :class:`Clip` chunks of at most
``max_clip_frames`` consecutive frames (spec 3.1: ``range(0, video_len, 36)``), RGB uint8.
"""

from __future__ import annotations

import abc
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from actionvos.errors import InputError
from actionvos.prompts import Prompt, prompts_from_expressions
from actionvos.io_utils import safe_child
from actionvos.signals import check_termination

__all__ = [
    "Clip",
    "VideoSource",
    "VideoFileSource",
    "FrameListSource",
    "InputSource",
    "open_source",
    "IMAGE_SUFFIXES",
    "FRAME_FOLDER_FPS",
    "truncation_tolerance",
]

log = logging.getLogger(__name__)

#: File suffixes (lower case) taken as frames in a folder.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: Playback rate of the overlay video for image-folder inputs, which carry no rate of their own.
FRAME_FOLDER_FPS = 10.0
#: Where an ActionVOS dataset root keeps its expression file (spec 5.3).
EXPRESSION_FILE = Path("ImageSets") / "expression_file.json"


@dataclass
class Clip:
    """Consecutive frames of one video.

    Attributes:
        start: index of the first frame within the video.
        names: frame names without extension, ``len(names) == T``; outputs are ``{name}.png``.
        frames: ``[T, H, W, 3]`` uint8 RGB, at the original resolution.
    """

    start: int
    names: list[str]
    frames: np.ndarray


@dataclass
class VideoSource(abc.ABC):
    """One video to segment. Subclasses implement :meth:`clips`.

    Attributes:
        name: output folder name (``{output}/{name}/{frame}.png``).
        size: ``(H, W)`` of every frame, in pixels.
        fps: playback rate for the overlay video.
        num_frames: frame count for progress display (a video header's count may be off by a frame or two).
        prompts: per-video prompts from an expression file, or ``None`` to use the run's prompts.
        frames_expected: frames the container header (or the frame list) declares; ``None`` when unknown.
        frames_decoded: frames yielded by the last :meth:`clips` iteration so far.
        decode_complete: the last :meth:`clips` iteration reached the end of the video.
    """

    name: str
    size: tuple[int, int]
    fps: float
    num_frames: int
    prompts: list[Prompt] | None = None
    frames_expected: int | None = field(default=None, kw_only=True)
    frames_decoded: int = field(default=0, init=False)
    decode_complete: bool = field(default=False, init=False)

    @abc.abstractmethod
    def clips(self, max_frames: int) -> Iterator[Clip]:
        """Yield the video as consecutive clips of at most ``max_frames`` frames, loading them lazily."""

    @property
    def truncated(self) -> bool:
        """True when decoding reached the end of the file clearly before ``frames_expected`` frames
        (more than :func:`truncation_tolerance` short): a cut-off or damaged file."""
        return (self.decode_complete and self.frames_expected is not None
                and self.frames_decoded < self.frames_expected - truncation_tolerance(self.frames_expected))


def truncation_tolerance(expected: int) -> int:
    """Frames a complete video may fall short of its header's count (headers are often off by one or two):
    ``max(2, 0.5 % of expected)``."""
    return max(2, int(0.005 * expected))


def _quiet_ffmpeg() -> None:
    """Silence FFmpeg's own log lines (decode problems become :class:`InputError` instead); respects a user setting."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


@dataclass
class VideoFileSource(VideoSource):
    """A video file decoded with ``cv2.VideoCapture``; frames are named ``00000``, ``00001``, ... (decode order)."""

    path: Path = field(default=Path())

    @classmethod
    def open(cls, path: str | os.PathLike) -> "VideoFileSource":
        """Probe ``path`` by decoding its first frame.

        Raises:
            InputError: the file is missing, cannot be opened (corrupt, unsupported, empty container)
                or has no decodable frame.
        """
        import cv2

        path = Path(path)
        if not path.is_file():
            raise InputError(f"input video {str(path)!r} does not exist")
        _quiet_ffmpeg()
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise InputError(f"cannot open video {str(path)!r}: the file is corrupt, empty or not a supported video format")
            ok, frame = cap.read()
            if not ok or frame is None:
                raise InputError(f"video {str(path)!r} contains no decodable frames")
            fps = cap.get(cv2.CAP_PROP_FPS)
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            cap.release()
        fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else FRAME_FOLDER_FPS
        h, w = frame.shape[:2]
        return cls(name=path.stem, size=(h, w), fps=fps, num_frames=max(count, 1), path=path,
                   frames_expected=count if count > 0 else None)

    def clips(self, max_frames: int) -> Iterator[Clip]:
        """Decode frames in order (BGR to RGB) and yield clips of at most ``max_frames``.

        Counts the decoded frames in :attr:`frames_decoded`; when the file ends clearly before the frame count of
        its header (:attr:`truncated`: a cut-off download or copy, a damaged file), a warning naming both counts is
        logged on stderr and the run goes on with the frames there are.

        Raises:
            InputError: when the video can no longer be opened, or a frame changes size.
        """
        import cv2

        _quiet_ffmpeg()
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise InputError(f"cannot open video {str(self.path)!r}")
        self.frames_decoded, self.decode_complete = 0, False
        try:
            index = 0
            while True:
                check_termination()  # between chunks: a held stop signal is raised here (actionvos.signals)
                frames = []
                while len(frames) < max_frames:
                    ok, bgr = cap.read()
                    if not ok or bgr is None:
                        break
                    if bgr.shape[:2] != self.size:
                        raise InputError(f"video {str(self.path)!r}: frame {index + len(frames)} is {bgr.shape[1]}x{bgr.shape[0]}, not {self.size[1]}x{self.size[0]}")
                    frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                self.frames_decoded += len(frames)
                if len(frames) < max_frames:  # end of the file
                    self._end_of_file()
                if not frames:
                    return
                names = [f"{i:05d}" for i in range(index, index + len(frames))]
                yield Clip(start=index, names=names, frames=np.stack(frames))
                index += len(frames)
                if len(frames) < max_frames:
                    return
        finally:
            cap.release()

    def _end_of_file(self) -> None:
        self.decode_complete = True
        if self.truncated:
            log.warning("video %r ends after %d of the %d frames its header declares (a truncated or damaged file); "
                        "the outputs cover the %d decoded frames only (summary.json: truncated: true)",
                        str(self.path), self.frames_decoded, self.frames_expected, self.frames_decoded)


def read_image(path: Path) -> np.ndarray:
    """Read an image as ``[H, W, 3]`` uint8 RGB with PIL (as the reference: ``Image.open(p).convert('RGB')``, spec 3.1)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise InputError(f"frame {str(path)!r} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise InputError(f"cannot read frame {str(path)!r}: {err}") from None


@dataclass
class FrameListSource(VideoSource):
    """A video given as a list of image files (a frame folder, or one video of an expression file)."""

    paths: list[Path] = field(default_factory=list)

    @classmethod
    def from_paths(cls, name: str, paths: list[Path], fps: float = FRAME_FOLDER_FPS, prompts: list[Prompt] | None = None) -> "FrameListSource":
        """Probe the first frame for the size; missing files are reported before any work.

        Raises:
            InputError: no frames, a missing frame file, or an unreadable first frame.
        """
        if not paths:
            raise InputError(f"video {name!r} has no frames")
        missing = [p for p in paths if not p.is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise InputError(f"frame {str(missing[0])!r} does not exist{more}")
        first = read_image(paths[0])
        return cls(name=name, size=first.shape[:2], fps=fps, num_frames=len(paths), prompts=prompts, paths=list(paths),
                   frames_expected=len(paths))

    def clips(self, max_frames: int) -> Iterator[Clip]:
        """Read the frames in list order and yield clips of at most ``max_frames``.

        Raises:
            InputError: an unreadable frame, or a frame whose size differs from the first one.
        """
        self.frames_decoded, self.decode_complete = 0, False
        for start in range(0, len(self.paths), max_frames):
            check_termination()  # between chunks: a held stop signal is raised here (actionvos.signals)
            chunk = self.paths[start : start + max_frames]
            frames = []
            for p in chunk:
                img = read_image(p)
                if img.shape[:2] != self.size:
                    raise InputError(f"frame {str(p)!r} is {img.shape[1]}x{img.shape[0]}, but the video's frames are {self.size[1]}x{self.size[0]}")
                frames.append(img)
            self.frames_decoded += len(frames)
            self.decode_complete = start + max_frames >= len(self.paths)
            yield Clip(start=start, names=[p.stem for p in chunk], frames=np.stack(frames))


def _natural_key(name: str) -> list:
    """Sort key that orders ``2.jpg`` before ``10.jpg``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


@dataclass
class InputSource:
    """What ``actionvos run INPUT`` reads: ``kind`` is ``"video"``, ``"frames"`` or ``"expression_file"``."""

    kind: str
    path: Path
    videos: list[VideoSource]


def _open_folder(path: Path) -> InputSource:
    files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    if not files:
        raise InputError(f"folder {str(path)!r} contains no frames ({', '.join(IMAGE_SUFFIXES)})")
    files.sort(key=lambda p: _natural_key(p.name))
    stems = [p.stem for p in files]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise InputError(f"folder {str(path)!r} has two frames named {dup!r} (different extensions); keep one")
    name = path.resolve().name or "frames"  # `actionvos run .` names the video after the current folder
    return InputSource("frames", path, [FrameListSource.from_paths(name, files)])


def _open_expression_file(json_path: Path, root: Path, split: str) -> InputSource:
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read expression file {str(json_path)!r}: {err}") from None
    except json.JSONDecodeError as err:
        raise InputError(f"expression file {str(json_path)!r} is not valid JSON: {err}") from None
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, dict) or not videos:
        raise InputError(f"expression file {str(json_path)!r} has no 'videos' (spec 5.3 layout: {{\"videos\": {{name: {{\"expressions\", \"frames\"}}}}}})")
    image_dir = safe_child(root / "JPEGImages_Sparse", split, what="--split",
                           fix="pass a plain split name such as val or train")
    if not image_dir.is_dir():
        raise InputError(f"frame folder {str(image_dir)!r} does not exist; check the dataset root or --split")
    sources: list[VideoSource] = []
    fix = f"video and frame names in {str(json_path)!r} must be plain names (no '..', '/' or absolute paths); fix that entry"
    for name, entry in videos.items():
        where = f"{json_path.name}: video {name!r}"
        video_dir = safe_child(image_dir, name, what=f"{json_path.name}: video name", fix=fix)
        if not isinstance(entry, dict):
            raise InputError(f"{where} is not an object")
        frames = entry.get("frames")
        if not isinstance(frames, list) or not frames or not all(isinstance(f, str) and f for f in frames):
            raise InputError(f"{where}: 'frames' must be a non-empty list of frame names")
        prompts = prompts_from_expressions(entry.get("expressions"), where)
        paths = [safe_child(video_dir, f, what=f"{where}: frame name", fix=fix).with_name(f"{f}.jpg") for f in frames]
        # named "{split}/{video}" so outputs land in the official layout {output}/{split}/{video}/{frame}.png (spec 3.9)
        sources.append(FrameListSource.from_paths(f"{split}/{name}", paths, prompts=prompts))
    return InputSource("expression_file", json_path, sources)


def open_source(path: str | os.PathLike, split: str = "val") -> InputSource:
    """Open ``path`` as a video file, a frame folder, or an ActionVOS dataset (spec 5.3), probing every video.

    * a ``.json`` file, or a folder holding ``ImageSets/expression_file.json``: an expression file whose
      frames are ``{root}/JPEGImages_Sparse/{split}/{video}/{frame}.jpg`` (``root`` is the folder above
      ``ImageSets``); each video carries its own prompts.
    * another folder: its ``.jpg``/``.jpeg``/``.png`` files in natural name order, one video named after the folder.
    * another file: a video decoded with OpenCV, named after the file stem.

    Raises:
        InputError: with one line naming the problem (missing path, corrupt or empty video, empty folder,
            malformed expression file, missing frame).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input {str(path)!r} does not exist")
    if path.is_dir():
        if (path / EXPRESSION_FILE).is_file():
            return _open_expression_file(path / EXPRESSION_FILE, path, split)
        return _open_folder(path)
    if path.suffix.lower() == ".json":
        root = path.parent.parent if path.parent.name == "ImageSets" else path.parent
        return _open_expression_file(path, root, split)
    return InputSource("video", path, [VideoFileSource.open(path)])
