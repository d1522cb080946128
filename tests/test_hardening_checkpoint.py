"""Issue 11 item 10: a pickle with objects that are not plain weights is refused for safety, with a message that
says so (torch 2.13 writes "unsupported GLOBAL", older torch "Unsupported global"), and no code runs."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hardening_helpers import assert_one_error, cli  # noqa: E402
from helpers import box_video_path, shared_dir  # noqa: E402

from actionvos.errors import CheckpointError
from actionvos.model.checkpoint import blocked_global, read_checkpoint


class _Payload:
    """Unpickling this would run ``os.system`` (writing a marker file): the classic malicious checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


class NotAllowlisted:
    """A harmless class that is simply not on torch's allowlist."""

    def __init__(self):
        self.x = 1


def _assert_refused(err: CheckpointError, path: Path) -> None:
    msg = str(err)
    assert str(path) in msg and "not plain weights" in msg and "refused for safety" in msg and "\n" not in msg
    assert "corrupt" not in msg and "re-download" not in msg


def test_code_executing_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": _Payload(marker)}, path)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    _assert_refused(err.value, path)
    assert "posix.system" in str(err.value) or "os.system" in str(err.value) or "nt.system" in str(err.value)
    assert not marker.exists()


def test_non_allowlisted_class_is_refused(tmp_path):
    path = tmp_path / "object.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": NotAllowlisted()}, path)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    _assert_refused(err.value, path)
    assert "NotAllowlisted" in str(err.value)


@pytest.mark.parametrize("message, expected", [
    ("Weights only load failed. ... Trying to load unsupported GLOBAL posix.system whose module posix is blocked.", "GLOBAL posix.system"),
    ("WeightsUnpickler error: Unsupported global: GLOBAL fractions.Fraction was not an allowed global by default.", "GLOBAL fractions.Fraction"),
    ("weightsunpickler error: UNSUPPORTED GLOBAL: GLOBAL a.B was not an allowed global", "GLOBAL a.B"),
    ("Weights only load failed ... WeightsUnpickler error: Unsupported operand 149", None),
    ("invalid load key, '\\x9c'.", None),
])
def test_blocked_global_wordings(message, expected):
    assert blocked_global(message) == expected


@pytest.mark.parametrize("content", [b"hello", pickle.dumps([1, 2, 3])[:5]])
def test_unreadable_files_are_one_clear_error(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="cannot be read"):
        read_checkpoint(path)


@pytest.mark.skipif(not box_video_path().is_file(), reason=f"shared data not found at {shared_dir()}")
def test_cli_refuses_the_pickle(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": _Payload(marker)}, path)
    res = cli("run", box_video_path(), "--action", "move box", "--objects", "box", "--checkpoint", path,
              "--tokenizer", tmp_path, "--output", tmp_path / "out", "--no-progress")
    assert_one_error(res, "not plain weights", "refused for safety", code=2)
    assert not marker.exists() and not (tmp_path / "out").exists()
