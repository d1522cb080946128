"""Issue 11 item 2: names from a data file (expression_file.json, an earlier summary.json) never lead outside
their root, on the input side (frames read) or the output side (PNGs, overlays written)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hardening_helpers import assert_one_error, cli, make_assets, run_args  # noqa: E402
from helpers import box_video_path, shared_dir  # noqa: E402

from actionvos.errors import InputError
from actionvos.io_utils import safe_child

BAD_NAMES = ["..", "../x", "../../../../tmp/x/v", "/etc/passwd", "/tmp/x", "a/b", "a\\b", "", "."]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_safe_child_refuses(name, tmp_path):
    with pytest.raises(InputError) as err:
        safe_child(tmp_path, name, what="video name", fix="rename it")
    msg = str(err.value)
    assert repr(name) in msg and "rename it" in msg and "\n" not in msg


@pytest.mark.parametrize("name", ["../x", "val/../x", "/abs/x", "val//x", "val/./x"])
def test_safe_child_nested_refuses(name, tmp_path):
    with pytest.raises(InputError):
        safe_child(tmp_path, name, nested=True)


def test_safe_child_accepts_plain_names(tmp_path):
    assert safe_child(tmp_path, "P01_01") == tmp_path / "P01_01"
    assert safe_child(tmp_path, "frame_0001.x") == tmp_path / "frame_0001.x"
    assert safe_child(tmp_path, "val/00000001_box", nested=True) == tmp_path / "val" / "00000001_box"


# ------------------------------------------------------------------ input side: expression_file.json
FRAME = "frame_0000000320"
SRC = shared_dir() / "data" / "minivisor" / "JPEGImages_Sparse" / "val" / "00000001_box_move_box" / f"{FRAME}.jpg"


def _dataset(tmp_path: Path, video: str, frames: list[str]) -> Path:
    """An ActionVOS dataset root whose expression file names ``video`` with ``frames``; a real frame exists at the
    place a traversing name points to (``{tmp}/outside/v/{FRAME}.jpg``), so only the name check can refuse it."""
    root = tmp_path / "ds"
    (root / "JPEGImages_Sparse" / "val" / "ok").mkdir(parents=True)
    shutil.copy(SRC, root / "JPEGImages_Sparse" / "val" / "ok" / f"{FRAME}.jpg")
    (tmp_path / "outside" / "v").mkdir(parents=True)
    shutil.copy(SRC, tmp_path / "outside" / "v" / f"{FRAME}.jpg")
    (root / "ImageSets").mkdir()
    exps = {"0": {"exp": "box used in the action of move box"}}
    (root / "ImageSets" / "expression_file.json").write_text(json.dumps({"videos": {video: {"expressions": exps, "frames": frames}}}))
    return root


@pytest.mark.skipif(not SRC.is_file(), reason=f"minivisor not found under {shared_dir()}")
@pytest.mark.parametrize("video, frames, bad", [
    ("../../../outside/v", [FRAME], "../../../outside/v"),  # video name climbing out of JPEGImages_Sparse/val
    ("ok", [f"../../../../outside/v/{FRAME}"], f"../../../../outside/v/{FRAME}"),  # frame name climbing out
    ("{abs}", [FRAME], "{abs}"),  # absolute video name
    ("ok", ["{abs}/" + FRAME], "{abs}/" + FRAME),  # absolute frame name
    ("ok/../ok", [FRAME], "ok/../ok"),  # separators inside a name
])
def test_expression_file_names_stay_inside(tmp_path, video, frames, bad):
    from actionvos.inference.video_io import open_source

    absolute = str(tmp_path / "outside" / "v")
    video, bad = video.replace("{abs}", absolute), bad.replace("{abs}", absolute)
    frames = [f.replace("{abs}", absolute) for f in frames]
    root = _dataset(tmp_path, video, frames)
    with pytest.raises(InputError) as err:
        open_source(root)
    assert repr(bad) in str(err.value) and "refused" in str(err.value)


@pytest.mark.skipif(not SRC.is_file(), reason=f"minivisor not found under {shared_dir()}")
def test_split_option_stays_inside(tmp_path):
    from actionvos.inference.video_io import open_source

    root = _dataset(tmp_path, "ok", [FRAME])
    (tmp_path / "ds" / "JPEGImages_Sparse" / "x").mkdir()
    with pytest.raises(InputError, match="--split"):
        open_source(root, split="../JPEGImages_Sparse/val")


@pytest.mark.skipif(not SRC.is_file(), reason=f"minivisor not found under {shared_dir()}")
def test_run_refuses_traversal_and_writes_nothing_outside(tmp_path):
    """The issue's repro: a video named ``../../../../{tmp}/escape/v`` must not make ``run`` write outside --output."""
    assets = make_assets(tmp_path / "assets", frames=2)
    escape = tmp_path / "escape"
    video = "../../../.." + str(tmp_path / "escape" / "v")  # resolves (from JPEGImages_Sparse/val) to {tmp}/escape/v
    root = _dataset(tmp_path, video, [FRAME])
    (escape / "v").mkdir(parents=True)
    shutil.copy(SRC, escape / "v" / f"{FRAME}.jpg")
    before = sorted(p.relative_to(tmp_path) for p in escape.rglob("*"))
    out = tmp_path / "work" / "a" / "b" / "out"
    res = cli(*run_args(assets, root, out))
    assert_one_error(res, repr(video), "refused", code=2)
    assert sorted(p.relative_to(tmp_path) for p in escape.rglob("*")) == before
    assert not out.exists()


# ------------------------------------------------------------------ output side: a source whose name leaves --output
@pytest.mark.skipif(not box_video_path().is_file(), reason=f"shared data not found at {shared_dir()}")
@pytest.mark.parametrize("name", ["../escape", "{abs}", "val/../../escape"])
def test_offline_outputs_stay_inside(tmp_path, name):
    """The sink checks the output joins itself (the input side is not the only way a name gets there)."""
    from actionvos.artifacts import open_model
    from actionvos.inference.video_io import InputSource, VideoFileSource
    from actionvos.pipeline.drivers import ClipDriver
    from actionvos.pipeline.run import run_source

    assets = make_assets(tmp_path / "assets", frames=2)
    name = name.replace("{abs}", str(tmp_path / "escape"))
    video = VideoFileSource.open(assets["video"])
    video.name = name
    backend, tok = open_model(assets["checkpoint"], backend="pytorch", device="cpu")
    driver = ClipDriver(backend, None, tok)
    prompts = driver.set_prompts("move box", "box")
    out = tmp_path / "out"
    with pytest.raises(InputError, match="refused"):
        run_source(InputSource("video", assets["video"], [video]), prompts, driver, out, progress=False)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "escape_overlay.mp4").exists()
    assert not list(tmp_path.glob("*.png"))
