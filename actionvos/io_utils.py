"""Safe file output: atomic writes, verified files, paths that stay inside their root, one-line OS errors.

* :func:`atomic_path` writes to a temporary sibling, checks it (non-empty, or a caller's ``verify``) and only then
  renames it onto the target with ``os.replace``; a crash, Ctrl-C, SIGTERM or a full disk mid-write leaves either the
  old file or nothing, never a half-written one under the final name. Temporary names are ``.{name}.XXXXXXXX.tmp*``;
  :func:`clean_stale_temps` removes the ones a killed process (SIGKILL) left behind.
* :func:`safe_child` joins a name taken from a data file (an expression file's video or frame name, a summary's
  video name) onto a root and refuses names that would leave it (``..``, absolute paths, separators).
* :func:`describe_os_error` turns an ``OSError`` (ENOSPC, EACCES, EISDIR, ...) into one line naming the path and
  the fix; the CLI's error policy (:func:`actionvos.cli.run_app`) prints it.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Callable, Iterator

from actionvos.errors import InputError

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "replace_dir",
    "safe_child",
    "clean_stale_temps",
    "describe_os_error",
    "TEMP_PATTERN",
]

log = logging.getLogger(__name__)

#: Glob of the temporary files :func:`atomic_path` creates (``.{name}.XXXXXXXX.tmp{suffix}``).
TEMP_PATTERN = ".*.tmp*"


def _with_path(err: OSError, path: Path) -> OSError:
    """``err`` re-made to name ``path`` (the final name) instead of a temporary one, keeping its errno/subclass."""
    if err.errno is None:
        return err
    new = OSError(err.errno, err.strerror or os.strerror(err.errno), str(path))  # OSError(errno, ...) picks the subclass
    new.__cause__ = err
    return new


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None,
                verify: Callable[[Path], None] | None = None, allow_empty: bool = False) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; on success verify it and rename it onto ``path``.

    The temporary name (``.{name}.XXXXXXXX.tmp{suffix}``) keeps ``path``'s suffix (or ``suffix``) so that writers
    that choose a format by extension (OpenCV, PIL, ``torch.save``) still work. Before the rename the file is checked:
    it must exist and be non-empty unless ``allow_empty`` (writers such as OpenCV fail silently on a full disk), and ``verify(tmp)`` (when
    given) must return without raising (e.g. re-read a PNG, compare a size). On any exception the temporary file is
    removed and ``path`` is left untouched.

    Raises:
        InputError: ``path`` is an existing folder, or the written file is missing or empty (nothing usable was
            written: a full disk or a writer that failed silently).
        OSError: the operating system refused the write (ENOSPC, EACCES, EROFS, ...); its ``filename`` is ``path``
            (not the temporary name), so :func:`describe_os_error` names the file the user asked for.
        Whatever ``verify`` raises.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write {str(path)!r}: it is a folder; pass a file path (or remove the folder)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + (suffix or path.suffix), dir=path.parent)
    except FileExistsError as err:  # a part of the parent path is a file
        raise _with_path(OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)), path.parent) from err
    except OSError as err:
        raise _with_path(err, path) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
        except OSError as err:  # e.g. ENOSPC from the writer: name the final file, not the temporary one
            if err.filename in (None, str(tmp_path), tmp_path):
                raise _with_path(err, path) from None
            raise
        try:
            size = tmp_path.stat().st_size
        except FileNotFoundError:
            raise InputError(f"writing {str(path)!r} failed: the file was not created; "
                             f"check free space and permissions in {str(path.parent)!r}") from None
        if size == 0 and not allow_empty:
            raise InputError(f"writing {str(path)!r} failed: nothing was written (0 bytes); "
                             f"check free space in {str(path.parent)!r}")
        if verify is not None:
            verify(tmp_path)
        umask = os.umask(0)
        os.umask(umask)
        try:
            os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
            os.replace(tmp_path, path)
        except OSError as err:
            if path.is_dir():
                raise InputError(f"cannot write {str(path)!r}: it is a folder; pass a file path (or remove the folder)") from None
            raise _with_path(err, path) from None
    finally:
        with contextlib.suppress(OSError):
            if tmp_path.exists():
                tmp_path.unlink()


def _check_size(expected: int) -> Callable[[Path], None]:
    """A ``verify`` for :func:`atomic_path`: the file holds exactly ``expected`` bytes."""

    def verify(tmp: Path) -> None:
        size = tmp.stat().st_size
        if size != expected:
            raise OSError(errno.EIO, f"short write ({size} of {expected} bytes)", str(tmp))

    return verify


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; the file's size is checked against ``len(data)`` before the rename.

    Empty ``data`` writes an empty file.

    Raises:
        InputError / OSError: see :func:`atomic_path`.
    """
    path = Path(path)
    with atomic_path(path, verify=_check_size(len(data)), allow_empty=not data) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def replace_dir(tmp: str | os.PathLike, out: str | os.PathLike) -> None:
    """Move a finished temporary directory ``tmp`` onto ``out`` (a sibling), replacing an existing ``out``.

    The old ``out`` is renamed aside first and restored if the final rename fails, so ``out`` is always either
    the old complete directory or the new complete one.
    """
    tmp, out = Path(tmp), Path(out)
    backup = None
    if out.exists():
        backup = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, backup)
    try:
        os.replace(tmp, out)
    except BaseException:
        if backup is not None:
            os.replace(backup, out)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def safe_child(root: str | os.PathLike, name: str, *, what: str = "name", nested: bool = False,
               fix: str = "rename it in the file it comes from") -> Path:
    """``root / name`` for a ``name`` read from a data file, refusing names that would lead outside ``root``.

    The check is lexical (no file system access, symlinks inside ``root`` are the user's business): ``name``
    must be a non-empty relative name made of ordinary components: no ``..`` or ``.`` component, not absolute
    (``/x``, ``C:\\x``, ``\\\\server\\x``), no NUL byte, no backslash, and, unless ``nested``, no ``/`` at all
    (one file or folder name). With ``nested=True`` forward slashes separate components (``val/video``, the
    layout the expression-file videos are written in).

    Args:
        root: the folder ``name`` must stay inside (an input dataset folder or the ``--output`` folder).
        name: the untrusted name (e.g. ``expression_file.json``'s video or frame name).
        what: how the message calls the name, e.g. ``"video name"``.
        nested: allow ``/``-separated sub-folders inside ``root``.
        fix: the second half of the error message: how to repair the data file.

    Returns:
        ``Path(root) / name``.

    Raises:
        InputError: one line naming the bad ``name``, why it is refused and ``fix``.
    """
    root = Path(root)
    problem = None
    if not isinstance(name, str) or not name:
        problem = "is empty"
    elif "\x00" in name:
        problem = "contains a NUL byte"
    elif PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        problem = "is an absolute path"
    elif ".." in name.replace("\\", "/").split("/"):
        problem = "contains '..'"
    elif "\\" in name:
        problem = "contains a backslash (a path separator on Windows)"
    elif not nested and "/" in name:
        problem = "contains a path separator '/'"
    else:
        parts = name.split("/")
        if any(p in ("", ".", "..") for p in parts):
            problem = "contains a '.' or empty path component"
    if problem is not None:
        raise InputError(f"{what} {name!r} {problem}, so it could lead outside {str(root)!r} and is refused; {fix}")
    return root / name


def clean_stale_temps(folder: str | os.PathLike, older_than: float | None = None, max_depth: int = 4) -> list[Path]:
    """Remove temporary files of :func:`atomic_path` that an earlier, killed process left in ``folder``.

    A SIGKILL (or power loss) skips every cleanup, leaving ``.{name}.XXXXXXXX.tmp*`` files; the next run into the
    folder calls this at its start. Only files matching :data:`TEMP_PATTERN` whose modification time is before
    ``older_than`` (seconds since the epoch; default: now) are removed, in ``folder`` and its sub-folders down to
    ``max_depth`` levels (symlinked folders are not followed). Returns the removed paths.
    """
    folder = Path(folder)
    cutoff = time.time() if older_than is None else float(older_than)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed

    def walk(d: Path, depth: int) -> None:
        try:
            entries = list(os.scandir(d))
        except OSError:
            return
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    if depth < max_depth:
                        walk(Path(e.path), depth + 1)
                elif fnmatch.fnmatchcase(e.name, TEMP_PATTERN) and e.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(e.path)
                    removed.append(Path(e.path))
            except FileNotFoundError:
                continue
    walk(folder, 0)
    if removed:
        log.info("removed %d temporary file(s) left by an earlier interrupted run in %s", len(removed), folder)
    return removed


_OS_ERROR_FIX = {
    errno.ENOSPC: "free space on that disk or write somewhere else",
    errno.EDQUOT: "your disk quota is full: free space or write somewhere else",
    errno.EACCES: "check its permissions or choose a location you can write to",
    errno.EPERM: "check its permissions or choose a location you can write to",
    errno.EROFS: "the file system is read-only; choose another location",
    errno.EISDIR: "it is a folder; pass a file path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; fix the path",
    errno.ENOENT: "check that the path exists",
    errno.EEXIST: "remove it or choose another path",
    errno.ENOTEMPTY: "the folder is not empty; remove it or choose another path",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
    errno.EIO: "the device reported an I/O error; check the disk and try again",
    errno.EFBIG: "the file is too large for this file system; write somewhere else",
    errno.EADDRINUSE: "that address is in use; choose another port",
    errno.ECONNREFUSED: "a network connection failed; check the network or use local files",
    errno.ETIMEDOUT: "a network connection timed out; check the network or use local files",
    errno.ENETUNREACH: "the network is unreachable; check the network or use local files",
    errno.EHOSTUNREACH: "the host is unreachable; check the network or use local files",
}


def describe_os_error(err: OSError) -> str:
    """One line for an ``OSError``: what failed, on which path, and the fix, e.g.

    ``no space left on device: '/data/out/box/00012.png' (ENOSPC); free space on that disk or write somewhere else``.
    """
    code = err.errno
    name = errno.errorcode.get(code, "") if code is not None else ""
    what = (err.strerror or str(err) or type(err).__name__).rstrip(".")
    what = what[:1].lower() + what[1:]
    where = f": {str(err.filename)!r}" if err.filename is not None else ""
    if getattr(err, "filename2", None) is not None:
        where += f" -> {str(err.filename2)!r}"
    fix = _OS_ERROR_FIX.get(code, "check the path, free space and permissions")
    return f"{what}{where}{f' ({name})' if name else ''}; {fix}"
