"""Shared pieces of the calibration tools: exported-graph directories, ONNX Runtime CPU sessions, model identity,
atomic output directories and the metadata written into reduced-precision graphs.

An *export directory* is what :func:`actionvos.export.exporter.export_model` writes: ``text_encoder.onnx`` and
``segmenter.onnx`` with ``actionvos.*`` metadata (:mod:`actionvos.export.metadata`). The calibration tools read
the model facts (static clip size ``(T, H, W)``, thresholds, prompt template, model hash) from it through
:func:`actionvos.calibration.model_facts.read_model_facts` (the single place that will read the model card), and write
FP16 / INT8 directories of the same layout (same file names, graph I/O names and dtypes), so every runtime that
loads an FP32 export loads them unchanged.

numpy + onnx + onnxruntime only (no torch).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from actionvos.calibration.model_facts import ModelFacts, derived_props, graph_spec, read_model_facts
from actionvos.errors import ConfigError, InputError
from actionvos.io_utils import replace_dir

__all__ = [
    "TEXT_FILE",
    "SEGMENTER_FILE",
    "CALIBRATION_KEY",
    "GraphDir",
    "load_graph_dir",
    "make_session",
    "atomic_dir",
    "check_out_dir",
    "write_precision_metadata",
    "metadata_props",
    "require_ort_runnable",
    "sigmoid",
    "to_jsonable",
]

log = logging.getLogger(__name__)

TEXT_FILE = "text_encoder.onnx"
SEGMENTER_FILE = "segmenter.onnx"
#: metadata key with a JSON record of how a reduced-precision graph was made (source hash, kept-FP32 groups, ...).
CALIBRATION_KEY = "actionvos.calibration"  # = actionvos.export.metadata.CALIBRATION_KEY


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float32 (same formula as :func:`actionvos.pipeline.frames.sigmoid`)."""
    x = np.asarray(x, dtype=np.float32)
    return np.exp(-np.logaddexp(np.float32(0), -x)).astype(np.float32)


@dataclass
class GraphDir:
    """One export directory (FP32, FP16 or INT8).

    Attributes:
        path: the directory.
        text: path of ``text_encoder.onnx``. segmenter: path of ``segmenter.onnx``.
        meta: decoded ``actionvos.*`` metadata of the segmenter (:func:`actionvos.export.metadata.read_onnx_metadata`).
        facts: the model facts (:class:`~actionvos.calibration.model_facts.ModelFacts`: clip size, thresholds,
            prompt template, model hash, ...); the properties below read them.
        precision: ``fp32``, ``fp16`` or ``int8`` (the card's).
        calibration: the ``actionvos.calibration`` record of a reduced-precision directory (``{}`` for FP32): how it
            was made, including ``calibration_frames`` ``{source name: [frame numbers]}`` of the clips it was
            calibrated / measured on.
    """

    path: Path
    text: Path
    segmenter: Path
    meta: dict[str, Any]
    facts: ModelFacts
    precision: str
    calibration: dict[str, Any] = field(default_factory=dict)

    frames = property(lambda self: self.facts.frames, doc="static clip length T")
    height = property(lambda self: self.facts.height, doc="input height in pixels")
    width = property(lambda self: self.facts.width, doc="input width in pixels")
    msda = property(lambda self: self.facts.msda, doc="``onnx`` or ``plugin``")
    model_hash = property(lambda self: self.facts.model_hash, doc="identity of the FP32 source model")
    pos_thres = property(lambda self: self.facts.pos_thres, doc="positive-gate threshold (sigmoid)")
    mask_threshold = property(lambda self: self.facts.mask_threshold, doc="mask probability threshold")
    prompt_template = property(lambda self: self.facts.prompt_template, doc="``{object}``/``{action}`` template")
    hidden_dim = property(lambda self: self.facts.hidden_dim, doc="width d of the text features")

    @property
    def input_size(self) -> dict[str, int]:
        """``{"frames": T, "height": H, "width": W}``."""
        return {"frames": self.frames, "height": self.height, "width": self.width}

    def spec(self, role: str):
        """The :class:`~actionvos.export.spec.ExportSpec` of ``role`` (``text_encoder`` or ``segmenter``)."""
        return graph_spec(self.text if role == "text_encoder" else self.segmenter)


def load_graph_dir(path: str | os.PathLike, flag: str = "--onnx") -> GraphDir:
    """Open an export directory and read its metadata.

    Args:
        path: directory with ``text_encoder.onnx`` and ``segmenter.onnx``.
        flag: the CLI option the path came from (used in error messages).
    Returns:
        :class:`GraphDir`.
    Raises:
        InputError: not a directory, a graph is missing, or the graphs carry no ActionVOS metadata.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{flag} {str(path)!r} is not a directory; pass the folder written by actionvos export")
    text, seg = path / TEXT_FILE, path / SEGMENTER_FILE
    for f in (text, seg):
        if not f.is_file():
            raise InputError(f"{flag} {str(path)!r} has no {f.name}; pass the folder written by actionvos export")
    facts, meta = read_model_facts(text, seg, flag)
    return GraphDir(path=path, text=text, segmenter=seg, meta=meta, facts=facts, precision=facts.precision,
                    calibration=meta.get("calibration") or {})


def require_ort_runnable(g: GraphDir, what: str) -> None:
    """Raise :class:`ConfigError` when ``g`` holds the TensorRT MSDA plugin op (ONNX Runtime CPU cannot run it)."""
    if g.msda == "plugin":
        raise ConfigError(
            f"{what} needs graphs ONNX Runtime CPU can run, but {str(g.path)!r} was exported with --msda plugin "
            "(TensorRT custom op); re-export with --msda onnx for calibration and accuracy reports")


def make_session(path: str | os.PathLike | bytes, threads: int = 2, providers: list[str] | None = None):
    """An ONNX Runtime session (CPU by default) with ``threads`` intra-op threads and warnings silenced.

    Args:
        path: ``.onnx`` file or serialised model bytes.
        threads: intra-op threads (keep small on shared machines).
        providers: execution providers (default ``["CPUExecutionProvider"]``).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # FP16 graphs log one warning per node ORT cannot constant-fold in fp16
    return ort.InferenceSession(path if isinstance(path, bytes) else str(path), so,
                                providers=providers or ["CPUExecutionProvider"])


def check_out_dir(out: Path, force: bool, sources: list[Path] = ()) -> None:
    """Check that ``out`` may become an output directory.

    Raises:
        InputError: ``out`` is a file, a non-empty directory without ``force``, or one of the ``sources``.
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file; pass a directory path")
    if out.exists() and any(out.iterdir()) and not force:
        raise InputError(f"--out {str(out)!r} exists and is not empty; pass --force to replace it")
    for s in sources:
        if out.resolve() == Path(s).resolve():
            raise InputError(f"--out {str(out)!r} is the input directory; write the converted graphs elsewhere")


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling directory ``.{name}.tmp-{pid}-XXXX``; on success it replaces ``out`` (old content
    removed), on error it is deleted and ``out`` stays as it was.

    The directory gets normal permissions (``0o777 & ~umask``; ``mkdtemp`` creates it 0700, which other users, e.g.
    a server in a container, could not read). Temporary siblings left by a process that was killed (SIGKILL, out of
    memory: no cleanup ran) are removed first; their process id is in the name and no longer runs.
    """
    out = Path(out)
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(parent, out.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale_temps(parent: Path, name: str) -> None:
    """Delete ``.{name}.tmp-{pid}-*`` folders in ``parent`` whose process ``pid`` is gone."""
    prefix = f".{name}.tmp-"
    for p in parent.glob(glob_escape(prefix) + "*"):
        pid = p.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or not p.is_dir():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except (PermissionError, OSError):  # another user's live process, or not ours to judge
            continue


def write_precision_metadata(model, precision: str, record: dict[str, Any], source_props: dict[str, str]) -> None:
    """Give a converted ModelProto the source graph's ``actionvos.*`` metadata with the new precision in its card
    and the JSON ``actionvos.calibration`` record (in place; :func:`actionvos.calibration.model_facts.derived_props`)."""
    props = derived_props(source_props, precision, record)
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)


def metadata_props(path: str | os.PathLike) -> dict[str, str]:
    """All ``metadata_props`` of an ``.onnx`` file as stored (:func:`actionvos.export.metadata.read_onnx_props`)."""
    from actionvos.export.metadata import read_onnx_props

    return read_onnx_props(path)


def to_jsonable(x: Any) -> Any:
    """numpy scalars/arrays → Python numbers/lists (for JSON reports)."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x
