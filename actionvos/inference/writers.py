"""Outputs of offline inference: palette label PNGs, an overlay MP4 and ``summary.json``.

Every file is written atomically and verified before it gets its final name (temporary sibling, size check, then
rename; :mod:`actionvos.io_utils`), so an interrupted run (Ctrl-C, SIGTERM, SIGHUP) or a full disk leaves whole
files only. :func:`prepare_output_dir` makes ``--force`` replace an earlier run's outputs as a whole.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from actionvos.errors import ActionVOSError, InputError
from actionvos.io_utils import (TEMP_PATTERN, atomic_path, atomic_write_bytes, atomic_write_json, clean_stale_temps,
                                describe_os_error, safe_child)
from actionvos.signals import deferred_termination, hold_termination, interrupt_signal_name
from actionvos.render import LegendRow, davis_palette, render_overlay
from actionvos.video_out import H264Writer, VideoInfo

__all__ = [
    "davis_palette",
    "write_label_png",
    "OverlayWriter",
    "ObjectStats",
    "VideoSummary",
    "Summary",
    "write_summary",
    "summary_on_exit",
    "prepare_output_dir",
    "RANDOM_WEIGHTS_NOTE",
]

log = logging.getLogger(__name__)

RANDOM_WEIGHTS_NOTE = (
    "random-weights checkpoint (pipeline check only): the masks are not meaningful; "
    "use the released ActionVOS weights for real segmentations"
)


_PALETTE = davis_palette()


def write_label_png(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write ``labels`` (``[H, W]`` uint8, 0 = background, ``i + 1`` = prompt ``i``) as a palette PNG, atomically.

    The PNG is encoded in memory and the file's size is checked against it before the rename, so a full disk
    never leaves a truncated PNG under ``path``. A stop signal (SIGTERM, SIGHUP, Ctrl-C) that arrives from here on is
    held until the next check point (the next frame's PNG, the next chunk of frames read), so the caller can finish
    this frame (overlay frame, statistics) first: :func:`actionvos.signals.hold_termination`.

    Raises:
        ValueError: when ``labels`` is not a 2-D uint8 array.
        OSError / InputError: the file cannot be written (see :func:`actionvos.io_utils.atomic_path`).
    """
    from PIL import Image

    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"labels must be [H, W] uint8, got {labels.shape} {labels.dtype}")
    hold_termination()  # the previous frame is complete; hold a stop signal until this frame is (actionvos.signals)
    h, w = labels.shape
    img = Image.frombytes("P", (w, h), np.ascontiguousarray(labels).tobytes())
    img.putpalette(_PALETTE.tobytes())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


class OverlayWriter:
    """H.264 MP4 of the frames with each object's mask blended in its palette colour and the legend
    (``box 0.716 ≥ 0.62 ✓``), drawn by :func:`actionvos.render.render_overlay` (the same renderer as the live HUD).

    The video is written by :class:`actionvos.video_out.H264Writer`: a temporary sibling, verified after closing
    (h264 / yuv420p / frame count) and only then renamed onto ``path``, so a crash or a full disk never leaves a
    broken file under the final name. Odd frame sizes are padded by one pixel (bottom / right). Use as a context
    manager, or call :meth:`close` (keep what was written) / :meth:`abort` (discard it).
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], names: list[str], *,
                 threshold: float, alpha: float = 0.5):
        """Open the writer.

        Args:
            path: final ``.mp4`` path.
            fps: frames per second (> 0): the rate of frames written without a timestamp.
            size: ``(H, W)`` of the frames, in pixels.
            names: object names; object ``i`` is drawn in palette colour ``i + 1``.
            threshold: the positive-gate threshold the run used (from the model card or ``--pos-thres``), shown
                in the legend; required, there is no default.
            alpha: mask opacity in [0, 1].

        Raises:
            VideoWriteError (an InputError-like ActionVOSError and OSError): the file cannot be created.
        """
        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        self.names = list(names)
        self.threshold = float(threshold)
        self.alpha = float(alpha)
        self._video = H264Writer(self.path, fps, self.size)

    @property
    def frames_written(self) -> int:
        return self._video.frames_written

    @property
    def info(self) -> VideoInfo | None:
        """What the file read back as after :meth:`close` (codec, frames, duration), else None."""
        return self._video.info

    def write(self, frame_rgb: np.ndarray, labels: np.ndarray, positive_prob: list[float], passed: list[bool],
              t: float | None = None) -> None:
        """Append one frame.

        Args:
            frame_rgb: ``[H, W, 3]`` uint8 RGB original frame.
            labels: ``[H, W]`` uint8 merged labels (0 background, ``i + 1`` object ``i``).
            positive_prob: per object, the positive probability in [0, 1] (the clip's with the clip rule).
            passed: per object, whether it passed the positive gate (spec 3.9 step 3).
            t: optional frame time in seconds (see :meth:`H264Writer.write`); None = ``index / fps``.
        Raises:
            ValueError: shapes / lengths do not match; VideoWriteError: the disk or encoder failed.
        """
        if len(positive_prob) != len(self.names) or len(passed) != len(self.names):
            raise ValueError(f"{len(self.names)} objects but {len(positive_prob)} probabilities / {len(passed)} gate decisions")
        rows = [LegendRow(n, float(p), bool(ok), i) for i, (n, p, ok) in enumerate(zip(self.names, positive_prob, passed))]
        self._video.write(render_overlay(frame_rgb, labels, rows, self.threshold, alpha=self.alpha), t)

    def close(self) -> VideoInfo | None:
        """Finish, verify and rename the file onto ``path`` (also after a partial run). Idempotent.

        With no frame written there is nothing to play, so no file is left (returns None).
        """
        return self._video.close()

    def abort(self) -> None:
        """Delete the temporary file; ``path`` is left untouched. Idempotent."""
        self._video.abort()

    def __enter__(self) -> "OverlayWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:
            self.abort()


@dataclass
class ObjectStats:
    """Per-object results of one video; the counts are computed from the written label PNGs' values.

    ``positive_prob`` / ``passed_gate`` are per clip with the clip rule (spec 3.9 step 3 gates whole clips) and per
    frame with the causal rule; ``positive_prob_per_frame`` always has one value per written frame (the value that
    gated that frame); ``passed_any`` is True when at least one clip (frame) passed.
    """

    name: str
    prompt: str
    label: int
    positive_prob: list[float] = field(default_factory=list)
    passed_gate: list[bool] = field(default_factory=list)
    frames_with_mask: int = 0
    mask_area_sum: int = 0
    positive_prob_per_frame: list[float] = field(default_factory=list)
    selected_query: list[int] = field(default_factory=list)

    def add_clip(self, positive_prob: float, passed: bool, selected_query: int | None = None) -> None:
        """Record one clip's gate decision: ``positive_prob`` in [0, 1], ``passed`` = prob >= threshold, and the
        query (0..Q-1) selected for the clip."""
        self.positive_prob.append(round(float(positive_prob), 6))
        self.passed_gate.append(bool(passed))
        if selected_query is not None:
            self.selected_query.append(int(selected_query))

    def add_frame(self, labels: np.ndarray, positive_prob: float | None = None) -> None:
        """Record one written frame: ``labels`` is ``[H, W]`` uint8 exactly as stored in its PNG; ``positive_prob``
        the probability that gated it."""
        if positive_prob is not None:
            self.positive_prob_per_frame.append(round(float(positive_prob), 6))
        area = int(np.count_nonzero(labels == self.label))
        self.frames_with_mask += int(area > 0)
        self.mask_area_sum += area

    def to_dict(self) -> dict[str, Any]:
        mean_area = self.mask_area_sum / self.frames_with_mask if self.frames_with_mask else 0.0
        return {
            "name": self.name,
            "prompt": self.prompt,
            "label": self.label,
            "positive_prob": self.positive_prob,
            "passed_gate": self.passed_gate,
            "passed_any": any(self.passed_gate),
            "frames_with_mask": self.frames_with_mask,
            "mean_mask_area_px": round(mean_area, 3),
            "selected_query": self.selected_query,
            "positive_prob_per_frame": self.positive_prob_per_frame,
        }


@dataclass
class VideoSummary:
    """One video's outputs: its frame folder, overlay, size and per-object stats.

    ``frames_expected`` / ``frames_decoded`` / ``truncated`` come from the source via :meth:`record_decode`:
    the frame count the container (or frame list) declares, the frames actually decoded, and whether decoding
    ended early at the end of the file (a truncated or damaged video, also warned about on stderr).
    """

    name: str
    size: tuple[int, int]
    frames_written: int = 0
    clips: int = 0
    overlay: str | None = None
    plot: str | None = None
    objects: list[ObjectStats] = field(default_factory=list)
    frames_expected: int | None = None
    frames_decoded: int | None = None
    truncated: bool = False

    def record_decode(self, source) -> None:
        """Copy the decode counts of ``source`` (a :class:`~actionvos.inference.video_io.VideoSource` after its
        ``clips()`` ran; objects without the attributes are ignored)."""
        self.frames_expected = getattr(source, "frames_expected", None)
        self.frames_decoded = getattr(source, "frames_decoded", None)
        self.truncated = bool(getattr(source, "truncated", False))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "height": self.size[0],
            "width": self.size[1],
            "frames_written": self.frames_written,
            "frames_expected": self.frames_expected,
            "frames_decoded": self.frames_decoded,
            "truncated": self.truncated,
            "clips": self.clips,
            "overlay": self.overlay,
            "plot": self.plot,
            "objects": [o.to_dict() for o in self.objects],
        }


@dataclass
class Summary:
    """Everything ``summary.json`` reports: settings, per-video/per-object stats, time per stage (seconds).

    ``interrupted`` is set by Ctrl-C, SIGTERM or SIGHUP, ``signal`` names which (``"SIGINT"``, ``"SIGTERM"``,
    ``"SIGHUP"``); ``error`` holds the one-line message of an error that ended the run (also disk errors).
    """

    input: str
    input_kind: str
    settings: dict[str, Any]
    weights_note: str | None = None
    videos: list[VideoSummary] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    signal: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["videos"] = [v.to_dict() for v in self.videos]
        d["timings_s"] = {k: round(v, 4) for k, v in self.timings_s.items()}
        d["frames_written"] = sum(v.frames_written for v in self.videos)
        return d


def write_summary(path: str | os.PathLike, summary: Summary) -> None:
    """Write ``summary`` as JSON to ``path`` atomically (size-checked before the rename; see :mod:`actionvos.io_utils`).

    A termination signal arriving during the write is held until the file is complete.
    """
    with deferred_termination():
        atomic_write_json(path, summary.to_dict())


@contextlib.contextmanager
def summary_on_exit(path: str | os.PathLike, summary: Summary, finish: Callable[[], None]) -> Iterator[Summary]:
    """Record how a run ended and always write its summary (offline and streaming runs share this).

    Ctrl-C, SIGTERM and SIGHUP (:mod:`actionvos.signals` turns the latter into a ``KeyboardInterrupt`` subclass)
    set ``interrupted`` and ``signal``; an error sets ``error`` (its one-line message; for ``OSError`` the path and
    the fix). Either is re-raised after ``finish()`` (close progress bars, store timings) and the atomic write of
    ``summary.json`` at ``path``. If that write fails too (e.g. the disk is full) while another exception is
    propagating, a warning is logged and the original exception wins; after a successful run the write error
    is raised.
    """
    failed = True
    try:
        yield summary
        failed = False
    except KeyboardInterrupt as err:
        summary.interrupted = True
        summary.signal = interrupt_signal_name(err)
        raise
    except ActionVOSError as err:
        summary.error = str(err)
        raise
    except OSError as err:
        summary.error = describe_os_error(err)
        raise
    except Exception as err:
        summary.error = f"{type(err).__name__}: {err}"
        raise
    finally:
        finish()
        try:
            write_summary(path, summary)
        except (OSError, ActionVOSError) as werr:
            if not failed:
                raise
            detail = describe_os_error(werr) if isinstance(werr, OSError) else str(werr)
            log.warning("summary.json could not be written either: %s", detail)


def _read_old_summary(output: Path) -> dict | None:
    """The earlier run's ``summary.json`` in ``output`` (``None`` if there is none).

    Raises:
        InputError: it exists but is not a readable summary (refuse rather than guess what belongs to that run).
    """
    path = output / "summary.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        data, reason = None, f"{type(err).__name__}: {err}"
    else:
        reason = "it has no 'videos' list"
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list) or not all(
            isinstance(v, dict) and isinstance(v.get("name"), str) for v in data["videos"]):
        raise InputError(f"output folder {str(output)!r} has a summary.json that is not an actionvos run summary "
                         f"({reason}); remove the folder or choose another --output")
    return data


#: Files a run writes next to a video's frame folder, ``{video}{suffix}`` (overlay MP4, probability plot).
RUN_FILE_SUFFIXES = ("_overlay.mp4", "_positive_prob.png")


def _run_outputs(output: Path, name: str, recorded: Iterable[str | None] = ()) -> list[Path]:
    """The files a run wrote for video ``name`` that exist: ``{name}/*.png``, ``{name}{suffix}`` for every
    :data:`RUN_FILE_SUFFIXES` and the file names the summary recorded for it (``recorded``: its ``overlay`` /
    ``plot`` entries, names in the video's parent folder).

    Raises:
        InputError: ``name`` or a recorded file name would lead outside ``output`` (:func:`~actionvos.io_utils.safe_child`).
    """
    fix = "remove that summary.json or choose another --output"
    folder = safe_child(output, name, what="video name", nested=True, fix=fix)
    found = [p for p in sorted(folder.glob("*.png")) if p.is_file()] if folder.is_dir() else []
    files = [safe_child(output, f"{name}{suffix}", what="video name", nested=True, fix=fix) for suffix in RUN_FILE_SUFFIXES]
    files += [safe_child(folder.parent, r, what="output file name", fix=fix) for r in recorded if r]
    found += [p for p in dict.fromkeys(files) if p.is_file()]
    return found


def _output_like(output: Path, max_depth: int = 3) -> set[Path]:
    """Entries of ``output`` that look like run outputs: ``*_overlay.mp4`` / ``*_positive_prob.png`` files and folders
    holding ``*.png`` files directly (``{video}/`` or ``{split}/{video}/``), down to ``max_depth`` levels."""
    found: set[Path] = set()

    def walk(d: Path, depth: int) -> None:
        for p in d.iterdir():
            if p.is_symlink():
                continue
            if p.is_file() and p.name.endswith(RUN_FILE_SUFFIXES):
                found.add(p)
            elif p.is_dir():
                if any(q.suffix.lower() == ".png" and not q.name.endswith(RUN_FILE_SUFFIXES) and q.is_file()
                       for q in p.iterdir()):  # label PNGs (a plot beside a split's video folders is not one)
                    found.add(p)
                if depth < max_depth:
                    walk(p, depth + 1)
    walk(output, 1)
    return found


def check_output_dir(output: str | os.PathLike, force: bool) -> bool:
    """Check, without writing anything, that ``output`` can receive a run; True when it already holds files.

    Leftover temporary files of a killed run (``.{name}.*.tmp*``) do not count as content.

    Raises:
        InputError: ``output`` is a file, lies under a file, is not writable, or holds outputs while ``force`` is False.
    """
    output = Path(output)
    if not output.exists():
        parent = output.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise InputError(f"cannot create output folder {str(output)!r}: {str(parent)!r} is a file")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise InputError(f"cannot create output folder {str(output)!r}: {str(parent)!r} is not writable")
        return False
    if not output.is_dir():
        raise InputError(f"output {str(output)!r} is a file, not a folder; pass --output with a folder")
    if not os.access(output, os.W_OK | os.X_OK):
        raise InputError(f"output folder {str(output)!r} is not writable; choose another --output")
    if not any(not fnmatch.fnmatchcase(p.name, TEMP_PATTERN) for p in output.iterdir()):
        return False
    if not force:
        raise InputError(f"output folder {str(output)!r} is not empty; pass --force to replace its earlier outputs")
    return True


def prepare_output_dir(output: str | os.PathLike, force: bool, video_names: Iterable[str] = (),
                       started: float | None = None) -> None:
    """Make ``output`` ready for a run that writes ``video_names``; with ``force`` replace an earlier run as a whole.

    Call it after every input check passed and before the first output is written. In order:

    1. ``output`` must be a writable folder or creatable (not a file, not under a file).
    2. Temporary files of an earlier killed run (``.{name}.*.tmp*``, older than ``started``, default now) are removed
       (:func:`actionvos.io_utils.clean_stale_temps`); they do not count as content.
    3. A folder with other content needs ``force``. With ``force`` the earlier run's outputs are removed as a whole:
       every video its ``summary.json`` lists (``{video}/*.png``, ``{video}_overlay.mp4``, ``{video}_positive_prob.png``
       and the files it names), the outputs of the videos
       about to be written, and ``summary.json`` itself; empty video folders are removed; unrelated files are kept.
       If run outputs remain that no summary accounts for (a run killed before writing its summary, a hand-made
       folder of PNGs), nothing is removed and the run is refused, so a folder never ends up with a
       ``summary.json`` that disagrees with its files.

    Args:
        output: the ``--output`` folder.
        force: the user passed ``--force``.
        video_names: ``VideoSource.name`` of every video of the new run (``"box"``, ``"val/00000001_box"``).
        started: the run's start time (``time.time()``); temporary files newer than that are left alone.

    Raises:
        InputError: ``output`` is a file, lies under a file, is not writable, is not empty without ``force``,
            holds an unreadable ``summary.json``, names in a summary that would lead outside ``output``, or run
            outputs no summary accounts for.
    """
    output = Path(output)
    started = time.time() if started is None else started
    names = list(video_names)
    has_outputs = check_output_dir(output, force)
    if output.is_dir():
        clean_stale_temps(output, older_than=started)  # a killed run's leftovers, whatever else is there
    if not has_outputs or not any(output.iterdir()):
        return
    old = _read_old_summary(output)
    recorded = {v["name"]: [v.get("overlay"), v.get("plot")] for v in old["videos"]} if old is not None else {}
    remove: list[Path] = []
    folders: list[Path] = []
    for name in dict.fromkeys(list(recorded) + names):
        remove += _run_outputs(output, name, [r for r in recorded.get(name, []) if isinstance(r, str)])
        folders.append(output / name)
    owned = set(remove) | {f for f in folders}
    stray = sorted(p for p in _output_like(output) if p not in owned)
    if stray:
        shown = ", ".join(repr(str(p.relative_to(output))) for p in stray[:3]) + (" ..." if len(stray) > 3 else "")
        why = "its summary.json does not list them" if old is not None else "it has no summary.json (a run killed before finishing?)"
        raise InputError(f"output folder {str(output)!r} holds run outputs that --force cannot attribute ({shown}; {why}); "
                         "remove them or choose an empty --output")
    summary = output / "summary.json"
    if summary.is_file():
        summary.unlink()  # first: from here on the folder has no summary that could disagree with it
    for p in remove:
        p.unlink(missing_ok=True)
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        while folder != output and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    if remove:
        log.info("--force: removed %d file(s) of the earlier run in %s", len(remove), output)
