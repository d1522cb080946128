"""Calibration data: real clips and prompts, pre-processed exactly as the runtime feeds the graphs, stored once.

``actionvos calibrate collect`` reads videos, frame folders or an ActionVOS dataset split and writes one ``.npz``
that the FP16 sensitivity measurement, the INT8 calibrators and the accuracy report all reuse.

What is stored (the runtime's feed, :mod:`actionvos.runtime.session`):

* clips: each frame resized straight to the graph's input size ``H × W`` with
  :func:`actionvos.runtime.frame_ops.resize_frame` (PIL bilinear, as the runtime), kept as uint8 RGB, laid out
  ``[T, 3, H, W]`` like the segmenter input ``frames``. A clip is ``T`` consecutive frames (``T`` = the graph's
  static clip length); when a video is shorter than ``T`` the oldest frame is repeated, as the streaming window does.
* prompts: per prompt set the token ids from the model's tokenizer
  (:class:`~actionvos.runtime.tokenizer.BpeTokenizer`) and the text features of the FP32 text graph
  (``text_encoder.onnx`` in ONNX Runtime CPU, or the PyTorch model with ``--checkpoint``).
* sampling (default): ``per_video`` clips per video whose last frames are evenly spaced from the first to the last
  frame of the video (``np.linspace`` rounded), so calibration sees the whole video, not its first second.

File format (``numpy.savez_compressed``, loaded with ``allow_pickle=False``):

======================  ==========================================================================
``meta``                0-d unicode array: JSON (``format``, ``input`` {frames, height, width},
                        ``model_hash``, ``hidden_dim``, ``sources``, ``sampling``, ``prompt_sets``,
                        ``text_features``, ``created``, ``tool``)
``frames``              ``[N, T, 3, H, W]`` uint8 RGB
``prompt_set``          ``[N]`` int32: index of the clip's prompt set
``source``              ``[N]`` int32: index into ``meta["sources"]``
``frame_index``         ``[N, T]`` int64: frame numbers of the clip within its source (decode order)
``set{k}_input_ids``    ``[P_k, L_k]`` int64 (and ``_attention_mask`` int64)
``set{k}_text_word``    ``[P_k, L_k, d]`` float32, ``set{k}_text_mask`` bool, ``set{k}_text_sentence`` ``[P_k, d]``
======================  ==========================================================================
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from actionvos.calibration.common import GraphDir, load_graph_dir
from actionvos.errors import ConfigError, InputError
from actionvos.inference.video_io import read_image
from actionvos.io_utils import atomic_path

__all__ = [
    "FORMAT",
    "PromptSet",
    "CalibrationData",
    "InputSpec",
    "save_calibration",
    "load_calibration",
    "check_compatible",
    "collect_calibration",
    "merge_calibration",
    "sample_clip_ends",
]

log = logging.getLogger(__name__)

FORMAT = "actionvos-calibration-v1"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class PromptSet:
    """The prompts of one video (or dataset sequence) with their tokens and FP32 text features.

    Attributes:
        names: object names (label order). texts: the prompt strings the model reads.
        input_ids, attention_mask: ``[P, L]`` int64 (RoBERTa ids, pad = 1; 1 = token).
        text_word: ``[P, L, d]`` float32. text_mask: ``[P, L]`` bool (True = padding). text_sentence: ``[P, d]`` float32.
    """

    names: list[str]
    texts: list[str]
    input_ids: np.ndarray
    attention_mask: np.ndarray
    text_word: np.ndarray
    text_mask: np.ndarray
    text_sentence: np.ndarray

    def text_feed(self) -> dict[str, np.ndarray]:
        """Feed of ``text_encoder.onnx``."""
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}

    def features(self) -> dict[str, np.ndarray]:
        """The stored FP32 text features as segmenter inputs."""
        return {"text_word": self.text_word, "text_mask": self.text_mask, "text_sentence": self.text_sentence}


@dataclass
class CalibrationData:
    """Calibration clips and prompt sets (see the module docstring for the layout).

    Attributes:
        frames: ``[N, T, 3, H, W]`` uint8 RGB at the graph's input size.
        prompt_set: ``[N]`` int32. source: ``[N]`` int32. frame_index: ``[N, T]`` int64.
        sets: the :class:`PromptSet` list. meta: JSON-able metadata. path: file it was loaded from (if any).
    """

    frames: np.ndarray
    prompt_set: np.ndarray
    source: np.ndarray
    frame_index: np.ndarray
    sets: list[PromptSet]
    meta: dict[str, Any]
    path: Path | None = None

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def input_size(self) -> dict[str, int]:
        """``{"frames": T, "height": H, "width": W}``."""
        inp = self.meta["input"]
        return {"frames": int(inp["frames"]), "height": int(inp["height"]), "width": int(inp["width"])}

    @property
    def model_hash(self) -> str:
        return str(self.meta["model_hash"])

    @property
    def source_names(self) -> list[str]:
        """Display name of every source (``box``, ``minivisor/val/00000001_box_move_box``, ...)."""
        return [s["name"] for s in self.meta["sources"]]

    @property
    def source_groups(self) -> list[str]:
        """Per source the group it is reported under: the video name, or ``{dataset}/{split}`` for dataset sequences."""
        return [s.get("group", s["name"]) for s in self.meta["sources"]]

    def segmenter_feed(self, i: int, text: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Feed of ``segmenter.onnx`` for clip ``i``: its frames plus ``text`` (default: the stored FP32 features)."""
        feats = text if text is not None else self.sets[int(self.prompt_set[i])].features()
        return {"frames": np.ascontiguousarray(self.frames[i]), **feats}

    def subset(self, idx: Sequence[int]) -> "CalibrationData":
        """The clips ``idx`` (prompt sets and metadata shared)."""
        idx = np.asarray(idx, dtype=np.int64)
        return CalibrationData(self.frames[idx], self.prompt_set[idx], self.source[idx], self.frame_index[idx],
                               self.sets, self.meta, self.path)

    def spread(self, n: int | None) -> "CalibrationData":
        """At most ``n`` clips, evenly spread over the file (all when ``n`` is None or >= N)."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ConfigError(f"the number of clips must be >= 1, got {n}")
        return self.subset(np.unique(np.round(np.linspace(0, len(self) - 1, n)).astype(np.int64)))


# ---------------------------------------------------------------------- save / load
def save_calibration(path: str | os.PathLike, data: CalibrationData) -> Path:
    """Write ``data`` to ``path`` (``.npz``, compressed) atomically; returns the path.

    Raises:
        InputError: ``path`` does not end in ``.npz`` or is a directory.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise InputError(f"--out {str(path)!r} must end in .npz")
    if path.is_dir():
        raise InputError(f"--out {str(path)!r} is a directory; pass a file path ending in .npz")
    arrays: dict[str, np.ndarray] = {
        "meta": np.array(json.dumps(data.meta)),
        "frames": np.ascontiguousarray(data.frames, dtype=np.uint8),
        "prompt_set": data.prompt_set.astype(np.int32),
        "source": data.source.astype(np.int32),
        "frame_index": data.frame_index.astype(np.int64),
    }
    for k, s in enumerate(data.sets):
        arrays[f"set{k}_input_ids"] = s.input_ids.astype(np.int64)
        arrays[f"set{k}_attention_mask"] = s.attention_mask.astype(np.int64)
        arrays[f"set{k}_text_word"] = s.text_word.astype(np.float32)
        arrays[f"set{k}_text_mask"] = s.text_mask.astype(bool)
        arrays[f"set{k}_text_sentence"] = s.text_sentence.astype(np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return path


def _corrupt(path: Path, why: str) -> InputError:
    return InputError(f"calibration file {str(path)!r} is unusable ({why}); re-create it with actionvos calibrate collect")


def load_calibration(path: str | os.PathLike) -> CalibrationData:
    """Read a calibration ``.npz`` written by :func:`save_calibration` and check its internal consistency.

    Raises:
        InputError: missing file, not an npz / truncated / corrupt, another format, or arrays whose shapes
            disagree with each other or with the metadata (one line naming the problem and the fix).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"calibration file {str(path)!r} does not exist; create it with actionvos calibrate collect")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise _corrupt(path, f"not a readable npz: {type(err).__name__}: {str(err).splitlines()[0][:100] if str(err) else ''}") from None
    except Exception as err:  # zlib.error and other decoder errors of a damaged member
        raise _corrupt(path, f"damaged: {type(err).__name__}") from None
    if "meta" not in arrays:
        raise _corrupt(path, "no 'meta' entry; it was not written by actionvos calibrate collect")
    try:
        meta = json.loads(str(arrays["meta"]))
    except (json.JSONDecodeError, TypeError):
        raise _corrupt(path, "its metadata is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise _corrupt(path, f"format {fmt!r}, expected {FORMAT!r}")
    for k in ("frames", "prompt_set", "source", "frame_index"):
        if k not in arrays:
            raise _corrupt(path, f"the {k!r} array is missing")
    frames = arrays["frames"]
    inp = meta.get("input", {})
    try:
        T, H, W = int(inp["frames"]), int(inp["height"]), int(inp["width"])
    except (KeyError, TypeError, ValueError):
        raise _corrupt(path, "its metadata has no input size") from None
    if frames.dtype != np.uint8 or frames.ndim != 5 or tuple(frames.shape[1:]) != (T, 3, H, W):
        raise _corrupt(path, f"frames are {frames.shape} {frames.dtype}, metadata says [N, {T}, 3, {H}, {W}] uint8")
    N = frames.shape[0]
    if N == 0:
        raise _corrupt(path, "it holds no clips")
    if arrays["prompt_set"].shape != (N,) or arrays["source"].shape != (N,) or arrays["frame_index"].shape != (N, T):
        raise _corrupt(path, "the per-clip index arrays do not match the number of clips")
    n_sets = len(meta.get("prompt_sets", []))
    sets = []
    for k in range(n_sets):
        try:
            s = PromptSet(
                names=list(meta["prompt_sets"][k]["names"]), texts=list(meta["prompt_sets"][k]["texts"]),
                input_ids=arrays[f"set{k}_input_ids"], attention_mask=arrays[f"set{k}_attention_mask"],
                text_word=arrays[f"set{k}_text_word"], text_mask=arrays[f"set{k}_text_mask"],
                text_sentence=arrays[f"set{k}_text_sentence"])
        except KeyError as err:
            raise _corrupt(path, f"prompt set {k} is incomplete (missing {err})") from None
        P, L = s.input_ids.shape
        if (s.text_word.shape[:2] != (P, L) or s.text_mask.shape != (P, L) or s.text_sentence.shape[0] != P
                or len(s.texts) != P or s.text_word.dtype != np.float32 or s.text_mask.dtype != bool):
            raise _corrupt(path, f"prompt set {k} has inconsistent shapes or dtypes")
        sets.append(s)
    if not sets or arrays["prompt_set"].min() < 0 or arrays["prompt_set"].max() >= len(sets):
        raise _corrupt(path, "clips refer to prompt sets that are not stored")
    if arrays["source"].min() < 0 or arrays["source"].max() >= len(meta.get("sources", [])):
        raise _corrupt(path, "clips refer to sources that are not listed")
    return CalibrationData(frames, arrays["prompt_set"].astype(np.int32), arrays["source"].astype(np.int32),
                           arrays["frame_index"].astype(np.int64), sets, meta, path)


def check_compatible(data: CalibrationData, graphs: GraphDir, what: str = "--data") -> None:
    """Check that ``data`` was collected for the model and input size of ``graphs``.

    Raises:
        InputError: different clip length / input size, different model hash, or different text-feature width.
    """
    name = str(data.path) if data.path else "calibration data"
    d, g = data.input_size, graphs.input_size
    if (d["frames"], d["height"], d["width"]) != (g["frames"], g["height"], g["width"]):
        raise InputError(
            f"{what} {name!r} holds {d['frames']}x{d['height']}x{d['width']} (TxHxW) clips but the graphs in "
            f"{str(graphs.path)!r} take {g['frames']}x{g['height']}x{g['width']}; re-run actionvos calibrate collect "
            f"with --onnx {graphs.path}")
    if data.model_hash != graphs.model_hash:
        raise InputError(
            f"{what} {name!r} was collected for model {data.model_hash} but {str(graphs.path)!r} holds model "
            f"{graphs.model_hash}; re-run actionvos calibrate collect with --onnx {graphs.path}")
    dim = data.sets[0].text_word.shape[-1]
    if dim != graphs.hidden_dim:
        raise InputError(f"{what} {name!r} has {dim}-wide text features but the graphs take {graphs.hidden_dim}; "
                         f"re-run actionvos calibrate collect with --onnx {graphs.path}")


def merge_calibration(a: CalibrationData, b: CalibrationData) -> CalibrationData:
    """Append ``b``'s clips, prompt sets and sources to ``a`` (for ``collect --append``).

    Raises:
        InputError: different input size or model hash.
    """
    if a.input_size != b.input_size or a.model_hash != b.model_hash:
        raise InputError(
            f"cannot append: the existing file holds {a.input_size} clips of model {a.model_hash}, the new clips are "
            f"{b.input_size} of model {b.model_hash}; write a new file instead of --append")
    meta = dict(a.meta)
    meta["sources"] = list(a.meta["sources"]) + list(b.meta["sources"])
    meta["prompt_sets"] = list(a.meta["prompt_sets"]) + list(b.meta["prompt_sets"])
    meta["sampling"] = dict(a.meta.get("sampling", {}), appended=a.meta.get("sampling", {}).get("appended", 0) + 1)
    return CalibrationData(
        np.concatenate([a.frames, b.frames]), np.concatenate([a.prompt_set, b.prompt_set + len(a.sets)]),
        np.concatenate([a.source, b.source + len(a.meta["sources"])]), np.concatenate([a.frame_index, b.frame_index]),
        a.sets + b.sets, meta)


# ---------------------------------------------------------------------- sampling
def sample_clip_ends(num_frames: int, clip_frames: int, per_video: int) -> list[int]:
    """Indices of the last frame of each sampled clip: ``per_video`` clips evenly spaced over the video.

    The first clip ends at frame ``T - 1`` (or the last frame when the video is shorter than ``T``), the last at
    the final frame; duplicates are dropped, so short videos give fewer clips.
    """
    if num_frames < 1:
        return []
    first = min(clip_frames - 1, num_frames - 1)
    ends = np.round(np.linspace(first, num_frames - 1, max(1, per_video))).astype(np.int64)
    return sorted(set(int(e) for e in ends))


def _window(frames_by_index: dict[int, np.ndarray], end: int, T: int) -> tuple[list[np.ndarray], list[int]]:
    """The ``T`` frames ending at ``end`` (oldest first), repeating the oldest available frame when ``end < T - 1``."""
    idx = [max(0, i) for i in range(end - T + 1, end + 1)]
    return [frames_by_index[i] for i in idx], idx


# ---------------------------------------------------------------------- inputs
@dataclass
class InputSpec:
    """One ``--input`` with the prompts it uses.

    Attributes:
        path: a video file, a frame folder, an ActionVOS dataset root (``ImageSets/{split}.json``) or an
            ``expression_file.json``.
        prompts: ``(name, text)`` pairs for videos/folders; None for datasets (their sequences carry prompts).
        split: dataset split (``val``).
    """

    path: Path
    prompts: list[tuple[str, str]] | None = None
    split: str = "val"


@dataclass
class _Video:
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


def _count_video_frames(path: Path) -> int:
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


def _dataset_videos(root: Path, split: str, template: str) -> list[_Video]:
    """Sequences of an ActionVOS-layout dataset split (``ImageSets/{split}.json`` + ``JPEGImages_Sparse/{split}``)."""
    from actionvos.inference.prompts import build_prompts, prompts_from_expressions

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
            videos.append(_Video(f"{group}/{name}", group, "dataset", image_dir / name, len(frames),
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
            videos.append(_Video(f"{group}/{name}", group, "dataset", image_dir / name, len(frames),
                                 [(p.name, p.text) for p in prompts], frames))
    missing = [p for v in videos for p in v.frame_paths if not p.is_file()]
    if missing:
        raise InputError(f"frame {str(missing[0])!r} listed in the {split} split does not exist")
    if not videos:
        raise InputError(f"dataset {str(root)!r} has no sequences in split {split!r}")
    return videos


def _open_input(spec: InputSpec, template: str) -> list[_Video]:
    from actionvos.inference.video_io import FrameListSource, open_source

    path = Path(spec.path)
    if not path.exists():
        raise InputError(f"--input {str(path)!r} does not exist")
    if path.is_dir() and (path / "ImageSets" / f"{spec.split}.json").is_file():
        return _dataset_videos(path, spec.split, template)
    src = open_source(path, split=spec.split)
    videos = []
    for v in src.videos:
        if v.prompts is not None:
            prompts = [(p.name, p.text) for p in v.prompts]
        elif spec.prompts:
            prompts = list(spec.prompts)
        else:
            raise InputError(f"--input {str(path)!r} carries no prompts; pass --action and --objects (or --prompt)")
        if isinstance(v, FrameListSource):
            group = path.stem if src.kind == "frames" else f"{path.stem}/{spec.split}"
            videos.append(_Video(v.name if src.kind == "frames" else f"{path.stem}/{v.name}", group, src.kind, path,
                                 len(v.paths), prompts, list(v.paths)))
        else:
            n = _count_video_frames(path)
            videos.append(_Video(v.name, v.name, "video", path, n, prompts))
    return videos


# ---------------------------------------------------------------------- text features
class _TextEncoder:
    """FP32 text features from ``text_encoder.onnx`` (ONNX Runtime CPU) or the PyTorch model."""

    def __init__(self, graphs: GraphDir | None, model=None, threads: int = 2):
        self.model = model
        self.session = None
        if graphs is not None:
            from actionvos.calibration.common import make_session

            self.session = make_session(graphs.text, threads)
            self.source = f"{graphs.text.name} (onnxruntime-cpu, fp32)"
        else:
            self.source = "PyTorch model.encode_text (cpu, fp32)"

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.session is not None:
            word, tmask, sent = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
            return word.astype(np.float32), tmask.astype(bool), sent.astype(np.float32)
        import torch

        with torch.no_grad():
            t = self.model.encode_text(torch.from_numpy(ids), torch.from_numpy(mask))
        return t.word.numpy().astype(np.float32), t.mask.numpy().astype(bool), t.sentence.numpy().astype(np.float32)


def _versions() -> dict[str, str]:
    import onnxruntime

    import actionvos

    return {"actionvos": actionvos.__version__, "numpy": np.__version__, "onnxruntime": onnxruntime.__version__}


def collect_calibration(
    inputs: Sequence[InputSpec],
    *,
    tokenizer: str | os.PathLike,
    onnx_dir: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    height: int | None = None,
    width: int | None = None,
    frames: int = 1,
    per_video: int = 8,
    progress: bool = True,
    threads: int = 2,
) -> CalibrationData:
    """Collect calibration clips and prompt features.

    Args:
        inputs: the sources and their prompts (:class:`InputSpec`).
        tokenizer: folder with the model's ``vocab.json`` + ``merges.txt`` (or ``tokenizer.json``).
        onnx_dir: FP32 export directory: gives the input size ``T × H × W``, the prompt template, the model hash
            and the text features (``text_encoder.onnx`` in ONNX Runtime CPU). Exclusive with ``checkpoint``.
        checkpoint: ``.pth`` instead of ``onnx_dir``: text features from PyTorch, model hash = checkpoint SHA-256
            prefix (equal to the ``checkpoint_sha256`` of graphs exported from it); needs ``height``/``width``.
        height, width, frames: input size for ``checkpoint`` (pixels; clip length T).
        per_video: clips per video (or dataset sequence), evenly spread over time (>= 1).
        progress: show a progress bar on stderr.
        threads: ONNX Runtime intra-op threads.
    Returns:
        :class:`CalibrationData` (not yet written; see :func:`save_calibration`).
    Raises:
        ConfigError: neither or both of ``onnx_dir``/``checkpoint``; missing size with ``checkpoint``; ``per_video < 1``;
            token ids beyond the model's vocabulary.
        InputError: unreadable inputs, inputs without prompts, bad tokenizer folder, prompts longer than the graph takes.
    """
    from actionvos.runtime.frame_ops import resize_frame
    from actionvos.runtime.tokenizer import BpeTokenizer

    if (onnx_dir is None) == (checkpoint is None):
        raise ConfigError("pass exactly one of --onnx (the FP32 export directory) and --checkpoint")
    if per_video < 1:
        raise ConfigError(f"--per-video must be >= 1, got {per_video}")
    if not inputs:
        raise InputError("no --input given; pass videos, frame folders or a dataset root")
    graphs = None
    model = None
    if onnx_dir is not None:
        graphs = load_graph_dir(onnx_dir)
        from actionvos.calibration.common import require_ort_runnable

        require_ort_runnable(graphs, "calibrate collect")
        T, H, W = graphs.frames, graphs.height, graphs.width
        model_hash, template, hidden = graphs.model_hash, graphs.prompt_template, graphs.hidden_dim
        spec = graphs.spec("text_encoder")
        max_tokens, vocab = spec.dims["L"].max, int(graphs.meta.get("config", {}).get("text", {}).get("vocab_size", 50265))
    else:
        if height is None or width is None:
            raise ConfigError("--checkpoint needs --height and --width (the export input size in pixels)")
        from actionvos.model.checkpoint import file_sha256, load_model

        model, cfg, _ = load_model(checkpoint)
        model.eval()
        T, H, W = int(frames), int(height), int(width)
        model_hash, template, hidden = file_sha256(checkpoint), cfg.prompt_template, cfg.hidden_dim
        max_tokens, vocab = 512, cfg.text.vocab_size
    tok = BpeTokenizer.from_dir(tokenizer)
    encoder = _TextEncoder(graphs, model, threads)

    videos: list[_Video] = []
    for spec_in in inputs:
        videos.extend(_open_input(spec_in, template))
    plan = [(v, sample_clip_ends(v.num_frames, T, per_video)) for v in videos]
    total = sum(len(e) for _, e in plan)

    # prompt sets, deduplicated by their texts
    set_index: dict[tuple[str, ...], int] = {}
    sets: list[PromptSet] = []
    for v, _ in plan:
        key = tuple(t for _, t in v.prompts)
        if key in set_index:
            continue
        ids, mask = tok([t for _, t in v.prompts])
        if int(ids.max()) >= vocab:
            raise ConfigError(f"the tokenizer produces token id {int(ids.max())} but the model's vocabulary has {vocab} "
                              "tokens; pass the tokenizer that belongs to this model with --tokenizer")
        if ids.shape[1] > max_tokens:
            raise InputError(f"a prompt of {v.name!r} is {ids.shape[1]} tokens long; the text graph takes at most {max_tokens}")
        word, tmask, sent = encoder(ids, mask)
        set_index[key] = len(sets)
        sets.append(PromptSet([n for n, _ in v.prompts], list(key), ids, mask, word, tmask, sent))

    clips, set_ids, src_ids, frame_ids = [], [], [], []
    sources = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="collect", unit="clip", leave=False)
    try:
        for s, (v, ends) in enumerate(plan):
            wanted = {max(0, i) for e in ends for i in range(e - T + 1, e + 1)}
            got: dict[int, np.ndarray] = {}
            for i, rgb in v.read(wanted):
                got[i] = resize_frame(rgb, (H, W))
            actual_ends = []
            for e in ends:
                if e not in got:  # the video ended earlier than counted: use its last complete window
                    e = max(got) if got else -1
                    if e < 0 or e in actual_ends:
                        continue
                window, idx = _window(got, e, T)
                clips.append(np.stack(window).transpose(0, 3, 1, 2))
                set_ids.append(set_index[tuple(t for _, t in v.prompts)])
                src_ids.append(s)
                frame_ids.append(idx)
                actual_ends.append(e)
                if bar is not None:
                    bar.update(1)
            sources.append({"name": v.name, "group": v.group, "kind": v.kind, "path": str(v.path),
                            "num_frames": v.num_frames, "clip_ends": actual_ends,
                            "prompt_set": set_index[tuple(t for _, t in v.prompts)]})
    finally:
        if bar is not None:
            bar.close()
    if not clips:
        raise InputError("no clip could be read from the inputs")
    meta = {
        "format": FORMAT,
        "input": {"frames": T, "height": H, "width": W, "layout": "[N, T, 3, H, W] uint8 RGB",
                  "resize": "actionvos.runtime.frame_ops.resize_frame (PIL bilinear) straight to HxW, as the runtime"},
        "model_hash": model_hash,
        "hidden_dim": hidden,
        "sources": sources,
        "sampling": {"rule": "per video: clips whose last frames are evenly spaced over the video (np.linspace, rounded)",
                     "per_video": per_video, "clip_frames": T},
        "prompt_sets": [{"names": s.names, "texts": s.texts} for s in sets],
        "text_features": encoder.source,
        "tokenizer": str(tokenizer),
        "tokenizer_id": tok.tokenizer_id,
        "onnx": str(onnx_dir) if onnx_dir is not None else "",
        "checkpoint": str(checkpoint) if checkpoint is not None else "",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tool": _versions(),
    }
    data = CalibrationData(np.stack(clips).astype(np.uint8), np.asarray(set_ids, np.int32), np.asarray(src_ids, np.int32),
                           np.asarray(frame_ids, np.int64), sets, meta)
    log.info("collected %d clips of %dx%dx%d from %d source(s), %d prompt set(s)", len(data), T, H, W, len(sources), len(sets))
    return data
