"""Bad input to ``python -m actionvos run``: one ``error:`` line on stderr, no traceback, non-zero exit, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import box_video_path, make_small_clip, shared_dir, train_tiny_tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not box_video_path().is_file(), reason=f"shared data not found at {shared_dir()}")


class _NotWeights:
    """An arbitrary Python object: ``torch.load(weights_only=True)`` must refuse it."""

    def __init__(self):
        self.payload = {"a": 1}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run ``python -m actionvos run ARGS`` from the repository root, capturing text output."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "actionvos", "run", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def assert_one_error(res: subprocess.CompletedProcess, *fragments: str) -> str:
    """Non-zero exit, exactly one ``error:`` line containing every fragment, and no traceback."""
    assert res.returncode != 0, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    for frag in fragments:
        assert frag in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A 3-frame clip and a tiny tokenizer (the checkpoint cases need both to get as far as loading weights)."""
    d = tmp_path_factory.mktemp("bad_input")
    return {"video": make_small_clip(d / "clip.mp4", frames=3, short_side=64), "tokenizer": train_tiny_tokenizer(d / "tok")}


def _args(video, out, checkpoint="unused.pth", tokenizer="unused_tok", action="move box", objects="box,pen"):
    return [str(video), "--action", action, "--objects", objects, "--checkpoint", str(checkpoint), "--tokenizer", str(tokenizer), "--output", str(out), "--no-progress"]


# ------------------------------------------------------------------ input video
def test_missing_video(tmp_path):
    res = run_cli(*_args(tmp_path / "nope.mp4", tmp_path / "out"))
    assert_one_error(res, "nope.mp4", "does not exist")
    assert not (tmp_path / "out").exists()


def test_corrupt_video(tmp_path):
    bad = tmp_path / "random.mp4"
    bad.write_bytes(os.urandom(20000))
    res = run_cli(*_args(bad, tmp_path / "out"))
    assert_one_error(res, "random.mp4", "cannot open video")
    assert not (tmp_path / "out").exists()
    assert "moov atom" not in res.stderr  # FFmpeg's own log is silenced


@pytest.mark.parametrize("ext, fourcc", [("avi", "MJPG"), ("mp4", "mp4v")])
def test_zero_frame_video(tmp_path, ext, fourcc):
    import cv2

    empty = tmp_path / f"empty.{ext}"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*fourcc), 10, (64, 48)).release()
    assert empty.is_file()
    res = run_cli(*_args(empty, tmp_path / "out"))
    # An empty AVI opens and has no frames; an empty MP4 has no index, so OpenCV cannot even open it.
    assert_one_error(res, f"empty.{ext}", "no decodable frames" if ext == "avi" else "cannot open video")
    assert not (tmp_path / "out").exists()


def test_empty_frame_folder(tmp_path):
    (tmp_path / "frames").mkdir()
    res = run_cli(*_args(tmp_path / "frames", tmp_path / "out"))
    assert_one_error(res, "contains no frames")


# ------------------------------------------------------------------ prompts and options
@pytest.mark.parametrize(
    "action, objects, fragment",
    [("move box", "", "no object names"), ("move box", " , ", "no object names"), ("", "box", "action is empty"), ("move box", "box,pen,box", "listed twice")],
)
def test_bad_prompts(tmp_path, assets, action, objects, fragment):
    res = run_cli(*_args(assets["video"], tmp_path / "out", action=action, objects=objects))
    assert_one_error(res, fragment)
    assert not (tmp_path / "out").exists()


def test_bad_template(tmp_path, assets):
    res = run_cli(*_args(assets["video"], tmp_path / "out"), "--prompt-template", "{object} only")
    assert_one_error(res, "{action}")


def test_output_under_a_file(tmp_path, assets):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    res = run_cli(*_args(assets["video"], blocker / "out"))
    assert_one_error(res, "file.txt", "is a file")
    assert blocker.read_text() == "x"


def test_non_empty_output_needs_force(tmp_path, assets):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    res = run_cli(*_args(assets["video"], out))
    assert_one_error(res, "not empty", "--force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_cuda_without_cuda(tmp_path, assets):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    res = run_cli(*_args(assets["video"], tmp_path / "out"), "--device", "cuda")
    assert_one_error(res, "CUDA is not available")


# ------------------------------------------------------------------ checkpoints
def _checkpoint_case(tmp_path, assets, checkpoint) -> str:
    out = tmp_path / "out"
    res = run_cli(*_args(assets["video"], out, checkpoint=checkpoint, tokenizer=assets["tokenizer"]))
    line = assert_one_error(res)
    assert not out.exists()
    return line


def test_missing_checkpoint(tmp_path, assets):
    line = _checkpoint_case(tmp_path, assets, tmp_path / "missing.pth")
    assert "missing.pth" in line


def test_random_bytes_checkpoint(tmp_path, assets):
    ckpt = tmp_path / "random.pth"
    ckpt.write_bytes(os.urandom(4096))
    line = _checkpoint_case(tmp_path, assets, ckpt)
    assert "random.pth" in line


def test_other_architecture_checkpoint(tmp_path, assets):
    import torch

    ckpt = tmp_path / "other.pth"
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 2))
    torch.save({"model": other.state_dict()}, ckpt)
    line = _checkpoint_case(tmp_path, assets, ckpt)
    assert "missing" in line and "0.weight" in line  # names what is missing and what the file holds


def test_pickle_that_is_not_weights(tmp_path, assets):
    import torch

    ckpt = tmp_path / "object.pth"
    torch.save(_NotWeights(), ckpt)
    line = _checkpoint_case(tmp_path, assets, ckpt)
    assert "object.pth" in line
    # issue 11 item 10: named as what it is (torch 2.13 says "unsupported GLOBAL"), not as a corrupt download
    assert "not plain weights" in line and "refused for safety" in line and "_NotWeights" in line
    assert "re-download" not in line
