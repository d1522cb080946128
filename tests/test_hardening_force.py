"""Issue 11 item 6: ``--force`` replaces an earlier run's outputs as a whole (or refuses), never leaving a folder
whose summary.json disagrees with its files."""

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
from actionvos.inference.writers import prepare_output_dir


def _old_run(out: Path, name: str = "old", frames: int = 3, summary: bool = True, extra: dict | None = None) -> None:
    """What an earlier run of video ``name`` left: PNGs, overlay, plot and (optionally) its summary."""
    (out / name).mkdir(parents=True)
    for i in range(frames):
        (out / name / f"{i:05d}.png").write_bytes(b"png")
    (out / f"{name}_overlay.mp4").write_bytes(b"mp4")
    (out / f"{name}_positive_prob.png").write_bytes(b"png")
    if summary:
        base = Path(name).name  # summaries record these file names without the split folder
        video = {"name": name, "overlay": f"{base}_overlay.mp4", "plot": f"{base}_positive_prob.png", **(extra or {})}
        (out / "summary.json").write_text(json.dumps({"videos": [video]}))


def test_force_removes_every_file_of_the_earlier_run(tmp_path):
    out = tmp_path / "out"
    _old_run(out)
    (out / "notes.txt").write_text("mine")
    prepare_output_dir(out, force=True, video_names=["new"])
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # unrelated files are kept


def test_without_force_a_non_empty_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    _old_run(out)
    with pytest.raises(InputError, match="--force"):
        prepare_output_dir(out, force=False, video_names=["new"])
    assert (out / "summary.json").exists()


def test_outputs_without_a_summary_are_refused_untouched(tmp_path):
    """A run killed before writing its summary: --force cannot tell what belongs to it, so it refuses."""
    out = tmp_path / "out"
    _old_run(out, summary=False)
    before = sorted(out.rglob("*"))
    with pytest.raises(InputError, match="no summary.json"):
        prepare_output_dir(out, force=True, video_names=["new"])
    assert sorted(out.rglob("*")) == before


def test_outputs_of_the_same_video_without_summary_are_replaced(tmp_path):
    out = tmp_path / "out"
    _old_run(out, name="clip", summary=False)
    prepare_output_dir(out, force=True, video_names=["clip"])
    assert not any(out.iterdir())


def test_expression_file_layout(tmp_path):
    out = tmp_path / "out"
    _old_run(out, name="val/00000001_box")
    prepare_output_dir(out, force=True, video_names=["val/00000002_cup"])
    assert not any(out.iterdir())


@pytest.mark.parametrize("bad", ["../../escape", "/tmp/escape"])
def test_a_summary_cannot_make_force_delete_outside(tmp_path, bad):
    out = tmp_path / "out"
    _old_run(out)
    victim = tmp_path / "escape"
    victim.mkdir()
    (victim / "00000.png").write_bytes(b"keep")
    (out / "summary.json").write_text(json.dumps({"videos": [{"name": bad.replace("/tmp/escape", str(victim))}]}))
    with pytest.raises(InputError, match="refused"):
        prepare_output_dir(out, force=True, video_names=["new"])
    assert (victim / "00000.png").read_bytes() == b"keep" and (out / "old" / "00000.png").exists()


def test_unreadable_summary_is_refused(tmp_path):
    out = tmp_path / "out"
    _old_run(out)
    (out / "summary.json").write_text("{not json")
    with pytest.raises(InputError, match="summary.json"):
        prepare_output_dir(out, force=True, video_names=["new"])
    assert (out / "old" / "00000.png").exists()


def test_stale_temporaries_do_not_count_as_content(tmp_path):
    import os
    import time

    out = tmp_path / "out"
    out.mkdir()
    tmp = out / ".summary.json.abcd1234.tmp.json"
    tmp.write_text("{")
    os.utime(tmp, (time.time() - 60, time.time() - 60))
    prepare_output_dir(out, force=False, video_names=["new"])
    assert not any(out.iterdir())


@pytest.mark.skipif(not box_video_path().is_file(), reason=f"shared data not found at {shared_dir()}")
def test_force_into_the_folder_of_another_video(tmp_path):
    """The issue's repro, end to end: run video a, then video b with --force into the same folder."""
    assets = make_assets(tmp_path / "assets", frames=3)
    a = shutil.copy(assets["video"], tmp_path / "a.mp4")
    b = shutil.copy(assets["video"], tmp_path / "b.mp4")
    out = tmp_path / "out"
    assert cli(*run_args(assets, a, out)).returncode == 0
    assert (out / "a").is_dir() and (out / "a_overlay.mp4").is_file()
    res = cli(*run_args(assets, b, out, "--force"))
    assert res.returncode == 0, res.stderr
    data = json.loads((out / "summary.json").read_text())
    assert [v["name"] for v in data["videos"]] == ["b"]
    listed = {"summary.json", "b"} | {v[k] for v in data["videos"] for k in ("overlay", "plot") if v.get(k)}
    assert {p.name for p in out.iterdir()} == listed
    assert len(list((out / "b").glob("*.png"))) == data["frames_written"] == 3
