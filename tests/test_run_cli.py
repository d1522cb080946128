"""End to end: ``python -m actionvos run`` on real frames of box.mp4 with the tiny random checkpoint and tokenizer.

The checkpoint embeds ``short_side=96`` (an inference setting only) so the whole run takes seconds on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import box_video_path, make_small_clip, make_tiny_checkpoint, shared_dir, train_tiny_tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
N_FRAMES = 8
CLIP_SIZE = (96, 128)  # (H, W) of the test clip: box.mp4 (640x480) resized to a 96-px short side
OBJECTS = ["box", "pen", "right hand"]

pytestmark = pytest.mark.skipif(not box_video_path().is_file(), reason=f"shared data not found at {shared_dir()}")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "actionvos", "run", *args]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("run_cli")
    return {
        "video": make_small_clip(d / "box_clip.mp4", frames=N_FRAMES, short_side=CLIP_SIZE[0]),
        "checkpoint": make_tiny_checkpoint(d / "tiny.pth", short_side=96),
        "tokenizer": train_tiny_tokenizer(d / "tok"),
        "dir": d,
    }


def _args(assets, out: Path, *extra: str) -> list[str]:
    return [
        str(assets["video"]), "--action", "move box", "--objects", ",".join(OBJECTS), "--checkpoint", str(assets["checkpoint"]),
        "--tokenizer", str(assets["tokenizer"]), "--output", str(out), "--no-progress", *extra,
    ]


@pytest.fixture(scope="module")
def run_result(assets):
    """One full run; ``--pos-thres 0`` lets every prompt through the gate so the random masks are non-trivial."""
    out = assets["dir"] / "out"
    t0 = time.perf_counter()
    res = subprocess.run(_cli(*_args(assets, out, "--pos-thres", "0")), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr
    print(f"\nend-to-end run: {elapsed:.1f} s")
    return out, res, elapsed


def _read_labels(folder: Path) -> tuple[list[Path], np.ndarray]:
    from PIL import Image

    pngs = sorted(folder.glob("*.png"))
    return pngs, np.stack([np.array(Image.open(p)) for p in pngs])


def test_label_pngs(run_result):
    from PIL import Image

    out, res, _ = run_result
    pngs, labels = _read_labels(out / "box_clip")
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(N_FRAMES)]
    assert labels.shape == (N_FRAMES, *CLIP_SIZE) and labels.dtype == np.uint8
    assert labels.max() <= len(OBJECTS)
    with Image.open(pngs[0]) as im:
        assert im.mode == "P"
        assert im.getpalette()[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]
    assert "wrote 8 label PNGs" in res.stdout
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files left


def test_overlay(run_result):
    import cv2

    out, _, _ = run_result
    cap = cv2.VideoCapture(str(out / "box_clip_overlay.mp4"))
    assert cap.isOpened()
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    assert len(frames) == N_FRAMES
    assert frames[0].shape == (*CLIP_SIZE, 3)


def test_summary_agrees_with_pngs(run_result):
    out, _, _ = run_result
    data = json.loads((out / "summary.json").read_text())
    _, labels = _read_labels(out / "box_clip")
    assert data["interrupted"] is False and data["error"] is None
    assert data["frames_written"] == N_FRAMES
    assert "random weights" in data["weights_note"]
    card = data["settings"]["card"]
    assert card["thresholds"]["pos_cls_thres"] == 0.0 and card["overrides"] == {"pos_cls_thres": 0.0}
    assert card["input"]["max_clip_frames"] == 36 and card["input"]["short_side"] == 96 and card["preset"] == "reference_tiny"
    assert data["settings"]["rule"] == "clip" and data["settings"]["backend"] == "pytorch-cpu"
    assert set(data["timings_s"]) >= {"read_frames", "resize", "encode_text", "encode_frame", "decode", "postprocess", "write"}
    (video,) = data["videos"]
    assert (video["name"], video["height"], video["width"], video["clips"]) == ("box_clip", *CLIP_SIZE, 1)
    objs = video["objects"]
    assert [o["name"] for o in objs] == OBJECTS
    assert objs[2]["prompt"] == "right hand used in the action of move box"
    for i, o in enumerate(objs):
        area = (labels == i + 1).reshape(N_FRAMES, -1).sum(1)
        assert o["label"] == i + 1
        assert o["passed_gate"] == [True]
        assert 0.0 <= o["positive_prob"][0] <= 1.0
        assert o["frames_with_mask"] == int((area > 0).sum())
        expected = float(area[area > 0].mean()) if (area > 0).any() else 0.0
        assert o["mean_mask_area_px"] == pytest.approx(expected, abs=1e-3)
    assert labels.any(), "with the gate open some pixels should be labelled"


def test_rerun_into_non_empty_output_needs_force(assets, run_result):
    out, _, _ = run_result
    res = subprocess.run(_cli(*_args(assets, out)), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "--force" in res.stderr and "Traceback" not in res.stderr


def test_ctrl_c_exits_130_and_keeps_finished_frames(assets):
    """SIGINT mid-run: exit 130, finished PNGs stay, the overlay is finalised, summary says interrupted."""
    import cv2

    ckpt = make_tiny_checkpoint(assets["dir"] / "tiny_2f.pth", short_side=64, max_clip_frames=2)
    video = make_small_clip(assets["dir"] / "long.mp4", frames=24, short_side=64, step=1)
    out = assets["dir"] / "out_interrupted"
    args = [str(video), "--action", "move box", "--objects", "box,pen", "--checkpoint", str(ckpt), "--tokenizer", str(assets["tokenizer"]), "--output", str(out), "--no-progress"]
    # A background shell may start us with SIGINT ignored, which Python then keeps; restore the default
    # so the child installs its KeyboardInterrupt handler as it would in a terminal.
    proc = subprocess.Popen(
        _cli(*args), cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (out / "long" / "00001.png").exists():  # the first 2-frame clip is done
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    data = json.loads((out / "summary.json").read_text())
    assert data["interrupted"] is True
    pngs = sorted((out / "long").glob("*.png"))
    assert 2 <= len(pngs) < 24 and len(pngs) == data["frames_written"]
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(len(pngs))]
    cap = cv2.VideoCapture(str(out / "long_overlay.mp4"))  # finalised, so it plays
    n = 0
    while cap.read()[0]:
        n += 1
    assert 2 <= len(pngs) <= n <= len(pngs) + 1  # each frame goes to the overlay just before its PNG
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]


def test_expression_file_dataset(assets, tmp_path):
    """ActionVOS layout (spec 5.3): per-video expressions, outputs in the official layout
    {output}/{split}/{video}/{frame}.png (spec 3.9), which `actionvos evaluate --pred {output}/{split}` reads."""
    import shutil

    src_root = shared_dir() / "data" / "minivisor"
    video = "00000001_box_move_box"
    frames = ["frame_0000000320", "frame_0000000324"]
    root = tmp_path / "ds"
    (root / "JPEGImages_Sparse" / "val" / video).mkdir(parents=True)
    for f in frames:
        shutil.copy(src_root / "JPEGImages_Sparse" / "val" / video / f"{f}.jpg", root / "JPEGImages_Sparse" / "val" / video)
    (root / "ImageSets").mkdir()
    exps = {"0": {"exp": "box used in the action of move box"}, "1": {"exp": "right hand used in the action of move box"}}
    (root / "ImageSets" / "expression_file.json").write_text(json.dumps({"videos": {video: {"expressions": exps, "frames": frames}}}))

    out = tmp_path / "out"
    res = subprocess.run(_cli(str(root), "--checkpoint", str(assets["checkpoint"]), "--tokenizer", str(assets["tokenizer"]),
                              "--output", str(out), "--no-progress", "--no-overlay", "--no-plot"),
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(p.name for p in (out / "val" / video).iterdir()) == [f"{f}.png" for f in frames]
    _, labels = _read_labels(out / "val" / video)
    assert labels.shape == (2, 480, 640)
    assert [o["name"] for o in summary["videos"][0]["objects"]] == ["box", "right hand"]
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "val"]


def test_demo_model_is_the_default(assets, tmp_path):
    """Without --checkpoint the bundled demo model (and its tokenizer) runs, and the summary says what it is."""
    from actionvos.demo import DEMO_NOTE

    out = tmp_path / "demo"
    res = subprocess.run(_cli(str(assets["video"]), "--action", "move box", "--objects", ",".join(OBJECTS),
                              "--output", str(out), "--no-progress"),
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["weights_note"] == DEMO_NOTE
    assert summary["settings"]["card"]["preset"] == "demo_small"
    assert summary["settings"]["card"]["thresholds"]["pos_cls_thres"] == 0.49  # the demo's own gate (its card)
    assert len(list((out / assets["video"].stem).glob("*.png"))) == N_FRAMES


def test_official_checkpoint_without_tokenizer_is_refused(assets, tmp_path):
    """A checkpoint without an embedded tokenizer (like the official one) needs --tokenizer; nothing is written."""
    res = subprocess.run(_cli(str(assets["video"]), "--action", "move box", "--objects", "box",
                              "--checkpoint", str(assets["checkpoint"]), "--output", str(tmp_path / "o")),
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "carries no tokenizer" in res.stderr and "--tokenizer" in res.stderr
    assert not (tmp_path / "o").exists()


def test_stream_writes_the_same_outputs(assets, run_result, tmp_path):
    """``run --stream`` (issue 4 item 7) writes the offline layout. The last frame's labels are close to the offline
    clip's but not identical: with the running-mean rule the query and gate see the same frames, but offline the
    pixel decoder mixes all frames of the clip, while a window of 1 sees one."""
    out = tmp_path / "stream"
    res = subprocess.run(_cli(*_args(assets, out, "--pos-thres", "0", "--stream", "--backend", "pytorch")),
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    offline_dir, _, _ = run_result
    video = assets["video"].stem
    stream_pngs, stream_labels = _read_labels(out / video)
    offline_pngs, offline_labels = _read_labels(offline_dir / video)
    assert [p.name for p in stream_pngs] == [p.name for p in offline_pngs]
    assert (stream_labels[-1] == offline_labels[-1]).mean() > 0.98
    assert (out / f"{video}_overlay.mp4").is_file()
    settings = json.loads((out / "summary.json").read_text())["settings"]
    assert settings["backend"] == "pytorch-cpu" and settings["rule"] == "causal"
