"""The official clip rule on an exported model: ``actionvos run VIDEO --backend onnxruntime --onnx DIR`` gives the
same label maps, gate decisions and selected queries as ``actionvos run VIDEO`` (PyTorch, the checkpoint the folder
was exported from), on real frames of both shared videos, with the bundled demo model (issue 9, item 3).

Each clip has 40 frames: a full 36-frame clip and a 4-frame last clip, so the window decoder's dynamic T is used at
two lengths.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import make_small_clip, shared_dir  # noqa: E402

VIDEOS = {"box": ("move box", "box,pen,right hand"), "cup": ("rotate bottle", "bottle,right hand")}


def _actionvos(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "actionvos", *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("parity") / "demo_onnx"
    from actionvos.demo import DEMO_CHECKPOINT

    r = subprocess.run([sys.executable, "-m", "actionvos", "export", str(DEMO_CHECKPOINT), "--output", str(out), "--height", "192",
                        "--width", "256", "--frames", "2", "--msda", "onnx", "--max-prompts", "4", "--max-tokens", "32"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def _labels(folder: Path) -> list[np.ndarray]:
    return [np.array(Image.open(p)) for p in sorted(folder.glob("*.png"))]


@pytest.mark.parametrize("video", sorted(VIDEOS))
def test_onnxruntime_clip_rule_equals_pytorch(export_dir, tmp_path, video):
    clip = make_small_clip(tmp_path / f"{video}.mp4", frames=40, short_side=192, start=0, step=1,
                           source=shared_dir() / "data" / "videos" / f"{video}.mp4")
    action, objects = VIDEOS[video]
    runs = {}
    for name, extra in (("pytorch", []), ("onnxruntime", ["--backend", "onnxruntime", "--onnx", str(export_dir)])):
        out = tmp_path / name
        r = _actionvos("run", str(clip), "--action", action, "--objects", objects, "--output", str(out),
                       "--no-progress", "--no-overlay", "--no-plot", *extra)
        assert r.returncode == 0, r.stderr[-2000:]
        runs[name] = (json.loads((out / "summary.json").read_text()), _labels(out / video))
    (s_pt, l_pt), (s_ort, l_ort) = runs["pytorch"], runs["onnxruntime"]
    assert s_ort["settings"]["backend"].startswith("onnxruntime") and s_pt["settings"]["backend"].startswith("pytorch")
    assert s_ort["settings"]["card"]["checkpoint_sha256"] == s_pt["settings"]["card"]["checkpoint_sha256"]
    assert len(l_pt) == len(l_ort) == 40
    v_pt, v_ort = s_pt["videos"][0], s_ort["videos"][0]
    assert v_pt["clips"] == v_ort["clips"] == 2
    for o_pt, o_ort in zip(v_pt["objects"], v_ort["objects"]):
        assert o_pt["passed_gate"] == o_ort["passed_gate"]
        assert o_pt["selected_query"] == o_ort["selected_query"]
        np.testing.assert_allclose(o_pt["positive_prob"], o_ort["positive_prob"], atol=1e-3)
    for a, b in zip(l_pt, l_ort):
        labels = set(np.unique(a)) | set(np.unique(b))
        for k in labels - {0}:
            inter, union = np.logical_and(a == k, b == k).sum(), np.logical_or(a == k, b == k).sum()
            assert inter / union >= 0.99
        assert (a == b).mean() >= 0.99
