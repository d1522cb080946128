"""The calibration file: one ``.npz`` written by ``actionvos calibrate collect`` and read by every other command.

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

Reading with ``lazy=True`` (what ``calibrate fp16 / int8 / report`` do) decodes only the small arrays; the clips stay
in the file and :class:`LazyClipArray` decompresses one clip at a time (memory independent of the number of clips).
Writing streams the clip array into the zip member row by row, so saving lazy data never holds all clips either.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from actionvos.calibration.clips import CalibrationData, PromptSet
from actionvos.errors import InputError
from actionvos.io_utils import atomic_path

__all__ = ["FORMAT", "LazyClipArray", "save_calibration", "load_calibration"]

FORMAT = "actionvos-calibration-v1"


class LazyClipArray:
    """Read-only ``[N, T, 3, H, W]`` uint8 view of the ``frames`` member of a calibration ``.npz``.

    Integer indexing (``a[i]``, ``a[i, -1]``) decompresses one clip (``T*3*H*W`` bytes) from the zip member;
    indexing with an index array gives another lazy view (no data read); anything else (slices, ``np.asarray``)
    reads every clip of the view into memory.

    Reads are sequential in the member: forward access skips ahead, access to an earlier clip re-opens the member
    (zip streams cannot seek back without decompressing again). Iterate in increasing order.

    Raises (on read):
        InputError: the member is damaged (CRC / zlib error) or truncated.
    """

    def __init__(self, path: Path, member: str = "frames.npy", index: np.ndarray | None = None,
                 _header: tuple | None = None):
        self.path = Path(path)
        self.member = member
        if _header is None:
            with zipfile.ZipFile(self.path) as zf, zf.open(member) as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(f)
                offset = f.tell()
            if fortran:
                raise ValueError("frames stored in Fortran order")
            _header = (tuple(int(s) for s in shape), np.dtype(dtype), offset)
        self._header = _header
        full_shape, self.dtype, self._offset = _header
        self._row_shape = full_shape[1:]
        self._row_bytes = int(np.prod(self._row_shape)) * self.dtype.itemsize
        self.index = np.arange(full_shape[0], dtype=np.int64) if index is None else np.asarray(index, np.int64)
        self._zf = None
        self._f = None
        self._pos = None  # next row of the open stream

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self._row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self._row_shape)

    def __len__(self) -> int:
        return len(self.index)

    def close(self) -> None:
        """Close the open zip stream (reopened on the next read)."""
        if self._f is not None:
            self._f.close()
            self._zf.close()
        self._zf = self._f = self._pos = None

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_zf=None, _f=None, _pos=None)
        return state

    def _read_row(self, row: int) -> np.ndarray:
        try:
            if self._f is None or self._pos is None or row < self._pos:
                self.close()
                self._zf = zipfile.ZipFile(self.path)
                self._f = self._zf.open(self.member)
                self._f.seek(self._offset)
                self._pos = 0
            skip = (row - self._pos) * self._row_bytes
            while skip > 0:  # forward: decompress and drop, at most 16 MiB at a time
                got = len(self._f.read(min(skip, 1 << 24)))
                if got == 0:
                    raise EOFError("unexpected end of the frames member")
                skip -= got
            buf = self._f.read(self._row_bytes)
            if len(buf) != self._row_bytes:
                raise EOFError("unexpected end of the frames member")
            self._pos = row + 1
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            self.close()
            raise InputError(f"calibration file {str(self.path)!r} is unusable (clip {row} cannot be read: "
                             f"{type(err).__name__}); re-create it with actionvos calibrate collect") from None
        return np.frombuffer(buf, dtype=self.dtype).reshape(self._row_shape).copy()

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if i < 0:
                i += len(self)
            if not 0 <= i < len(self):
                raise IndexError(f"clip {key} out of range for {len(self)} clips")
            return self._read_row(int(self.index[i]))
        if isinstance(key, tuple) and key and isinstance(key[0], (int, np.integer)):
            return self[key[0]][key[1:]]
        if isinstance(key, (list, np.ndarray)) and np.asarray(key).dtype.kind in "iu":
            return LazyClipArray(self.path, self.member, self.index[np.asarray(key, np.int64)], self._header)
        return np.asarray(self)[key]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, self.dtype)
        for k, row in enumerate(self):
            out[k] = row
        return out if dtype is None else out.astype(dtype)


def _write_member(zf: zipfile.ZipFile, name: str, arr) -> None:
    """One ``.npy`` member; ``arr`` may be a :class:`LazyClipArray` (written one clip at a time)."""
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        if isinstance(arr, LazyClipArray):
            np.lib.format.write_array_header_2_0(
                f, {"descr": np.lib.format.dtype_to_descr(arr.dtype), "fortran_order": False, "shape": arr.shape})
            for row in arr:
                f.write(np.ascontiguousarray(row).tobytes())
        else:
            np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)


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
    arrays: dict[str, Any] = {
        "meta": np.array(json.dumps(data.meta)),
        "frames": data.frames if isinstance(data.frames, LazyClipArray) else np.ascontiguousarray(data.frames, np.uint8),
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
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for name, arr in arrays.items():  # the layout of numpy.savez_compressed, clips streamed
                _write_member(zf, name, arr)
    return path


def _corrupt(path: Path, why: str) -> InputError:
    return InputError(f"calibration file {str(path)!r} is unusable ({why}); re-create it with actionvos calibrate collect")


def load_calibration(path: str | os.PathLike, lazy: bool = False) -> CalibrationData:
    """Read a calibration ``.npz`` written by :func:`save_calibration` and check its internal consistency.

    Args:
        path: the ``.npz``.
        lazy: keep the clips in the file (``frames`` is a :class:`LazyClipArray`; memory independent of the number
            of clips); else ``frames`` is an ``[N, T, 3, H, W]`` uint8 array in memory.

    Raises:
        InputError: missing file, not an npz / truncated / corrupt, another format, or arrays whose shapes
            disagree with each other or with the metadata (one line naming the problem and the fix).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"calibration file {str(path)!r} does not exist; create it with actionvos calibrate collect")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if not (lazy and k == "frames")}
            if lazy and "frames" in z.files:
                arrays["frames"] = LazyClipArray(path)
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
