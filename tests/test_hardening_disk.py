"""Issue 11 item 3: a full disk or a refused write never leaves a broken file under its final name, and every
``OSError`` becomes one line naming the path and the fix (exit 1, traceback only with --debug); summary.json
records the error when it can still be written."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hardening_helpers import REPO, assert_one_error, cli, make_assets, run_args, temp_files  # noqa: E402
from helpers import box_video_path, shared_dir  # noqa: E402

from actionvos.errors import InputError
from actionvos.io_utils import atomic_path, atomic_write_bytes, atomic_write_json, describe_os_error

needs_video = pytest.mark.skipif(not box_video_path().is_file(), reason=f"shared data not found at {shared_dir()}")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_assets(tmp_path_factory.mktemp("disk"), frames=6)


# ------------------------------------------------------------------ atomic_path verifies before renaming
def test_empty_write_never_gets_the_final_name(tmp_path):
    """A writer that silently writes nothing (OpenCV on a full disk) must not replace the target."""
    target = tmp_path / "x.mp4"
    target.write_bytes(b"old")
    with pytest.raises(InputError, match="nothing was written"):
        with atomic_path(target):
            pass
    assert target.read_bytes() == b"old" and not list(tmp_path.glob(".*"))


def test_verify_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.png"
    target.write_bytes(b"old")

    def verify(tmp: Path) -> None:
        raise OSError(errno.EIO, "not a PNG", str(tmp))

    with pytest.raises(OSError) as err:
        with atomic_path(target, verify=verify) as tmp:
            tmp.write_bytes(b"garbage")
    assert target.read_bytes() == b"old" and not list(tmp_path.glob(".*"))
    assert err.value.filename == str(tmp_path / ".a.png.") or "a.png" in str(err.value.filename)


def test_enospc_names_the_final_path_not_the_temporary(tmp_path):
    target = tmp_path / "sub" / "00003.png"
    with pytest.raises(OSError) as err:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"part")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert not target.exists() and not list(target.parent.glob(".*"))
    line = describe_os_error(err.value)
    assert line == f"no space left on device: {str(target)!r} (ENOSPC); free space on that disk or write somewhere else"


def test_short_write_is_caught(tmp_path, monkeypatch):
    """A write that silently stores fewer bytes than asked fails the size check; the target keeps its old content."""
    import builtins

    target = tmp_path / "summary.json"
    target.write_text("{}")
    real_open = builtins.open

    class Short:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            return self.f.write(data[: len(data) // 2])

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(file, mode="r", *a, **k):
        f = real_open(file, mode, *a, **k)
        return Short(f) if "w" in mode and ".tmp" in str(file) else f

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(OSError, match="short write"):
        atomic_write_json(target, {"a": list(range(100))})
    monkeypatch.undo()
    assert target.read_text() == "{}" and not list(tmp_path.glob(".*"))


def test_writing_onto_a_folder_is_one_clear_error(tmp_path):
    (tmp_path / "metrics.json").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        atomic_write_bytes(tmp_path / "metrics.json", b"{}")


# ------------------------------------------------------------------ the CLI's error policy, with an injected ENOSPC
@needs_video
def test_injected_enospc_mid_run(assets, tmp_path, monkeypatch, capsys):
    """The 3rd label PNG hits a full disk: one line naming that PNG and the fix, exit 1, no traceback, no partial
    PNG or temporary file, the frames before it kept, summary.json records the error."""
    from actionvos import cli as actionvos_cli
    from actionvos.inference import writers

    real = writers.atomic_write_bytes
    calls = {"n": 0}

    def full_disk(path, data):
        calls["n"] += 1
        if calls["n"] < 3:
            return real(path, data)
        with atomic_path(path) as tmp:  # what a real full disk does: part of the file, then ENOSPC
            with open(tmp, "wb") as f:
                f.write(data[:10])
                raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers, "atomic_write_bytes", full_disk)
    out = tmp_path / "out"
    actionvos_cli._register()
    with pytest.raises(SystemExit) as exit_:
        actionvos_cli.run_app(actionvos_cli.app, run_args(assets, assets["video"], out), prog_name="actionvos")
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    png = out / "clip" / "00002.png"
    assert lines == [f"error: no space left on device: {str(png)!r} (ENOSPC); free space on that disk or write somewhere else"], err
    assert "Traceback" not in err
    assert sorted(p.name for p in (out / "clip").iterdir()) == ["00000.png", "00001.png"]
    assert not temp_files(out)
    summary = json.loads((out / "summary.json").read_text())
    assert "ENOSPC" in summary["error"] and str(png) in summary["error"]
    assert summary["frames_written"] == 2


@needs_video
def test_injected_eacces_with_debug_shows_the_traceback(assets, tmp_path, monkeypatch, capsys):
    from actionvos import cli as actionvos_cli
    from actionvos.inference import writers

    def denied(path, data):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(writers, "atomic_write_bytes", denied)
    from actionvos import cli_options

    monkeypatch.setitem(cli_options.STATE, "debug", False)
    actionvos_cli._register()
    with pytest.raises(PermissionError):  # --debug parsed by typer (the group's option callback)
        actionvos_cli.run_app(actionvos_cli.app, ["--debug", *run_args(assets, assets["video"], tmp_path / "out")])


# ------------------------------------------------------------------ real file-system refusals, in a subprocess
@needs_video
def test_video_subfolder_that_is_a_file(assets, tmp_path):
    """The video's output subfolder cannot be created (a file is in the way): one line, no traceback."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip").write_text("not a folder")
    res = cli(*run_args(assets, assets["video"], out, "--force"))
    line = assert_one_error(res, str(out / "clip"), code=1)
    assert "(EEXIST)" in line or "(ENOTDIR)" in line
    assert (out / "clip").read_text() == "not a folder"


def test_evaluate_json_on_a_folder(tmp_path):
    minivisor = shared_dir() / "data" / "minivisor"
    if not minivisor.is_dir():
        pytest.skip("minivisor not found")
    (tmp_path / "m.json").mkdir()
    res = cli("evaluate", "--pred", minivisor / "Annotations_Sparse" / "val", "--gt", minivisor / "Annotations_Sparse" / "val",
              "--split-json", minivisor / "ImageSets" / "val.json", "--json", tmp_path / "m.json")
    assert_one_error(res, "--json", "is a folder", code=2)


@needs_video
def test_prompt_cache_pointing_at_a_folder(assets, tmp_path):
    (tmp_path / "cache").mkdir()
    res = cli("camera", "--source", assets["video"], "--action", "move box", "--objects", "box", "--no-display",
              "--max-frames", "2", "--checkpoint", assets["checkpoint"], "--tokenizer", assets["tokenizer"],
              "--prompt-cache", tmp_path / "cache", timeout=300)
    assert_one_error(res, str(tmp_path / "cache"), "folder")
    assert not list((tmp_path / "cache").iterdir()) and not temp_files(tmp_path)


# ------------------------------------------------------------------ a real full disk: a tiny tmpfs
@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 12 KiB tmpfs (needs root and mount(8)); skipped with the reason when it cannot be mounted."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@needs_video
def test_full_tmpfs(tiny_tmpfs, assets):
    """A real ENOSPC: one line, exit 1; every file under a final name is whole (PNGs decode, no temporaries)."""
    from PIL import Image

    out = tiny_tmpfs / "out"
    res = cli(*run_args(assets, assets["video"], out))
    assert_one_error(res, "no space left on device", str(out), "(ENOSPC)", code=1)
    assert not temp_files(out)
    for png in out.rglob("*.png"):
        with Image.open(png) as im:
            im.load()
            assert np.asarray(im).ndim == 2 and np.asarray(im).shape[0] == 64
    overlay = out / "clip_overlay.mp4"
    if overlay.exists():  # only if it was finalised and verified
        import cv2

        assert cv2.VideoCapture(str(overlay)).read()[0]
    if (out / "summary.json").exists():
        assert "ENOSPC" in json.loads((out / "summary.json").read_text())["error"]
