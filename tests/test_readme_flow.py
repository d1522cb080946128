"""The README's end-to-end chain, run as written: export → run --stream --onnx (no --tokenizer) → calibrate collect /
fp16 / int8 / report → run on the minivisor val expression file → evaluate (issue 9, "Done when").

The commands are read from the README's "End to end" block. Only the paths are rebased (``../shared`` → the shared
folder, outputs → a temporary folder) and box.mp4 is replaced by a short clip of it; the options are the README's.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import make_small_clip, shared_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    m = re.search(r"## End to end.*?```bash\n(.*?)```", text, re.S)
    assert m, "README has no 'End to end' bash block"
    lines = []
    for line in m.group(1).splitlines():
        line = line.split("  #")[0].strip()
        if line:
            lines.append(line)
    return lines


@pytest.mark.slow
def test_readme_end_to_end_flow(tmp_path):
    commands = _readme_commands()
    assert [shlex.split(c)[1] for c in commands] == ["export", "run", "calibrate", "calibrate", "calibrate", "calibrate",
                                                     "run", "evaluate"]
    assert not any("--tokenizer" in c for c in commands)
    clip = make_small_clip(tmp_path / "box.mp4", frames=6, short_side=192)
    shared = shared_dir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for cmd in commands:
        args = shlex.split(cmd)
        args = [str(clip) if a == "../shared/data/videos/box.mp4" else a.replace("../shared", str(shared)) for a in args]
        assert args[0] == "actionvos"
        r = subprocess.run([sys.executable, "-m", "actionvos", *args[1:]], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=1500)
        assert r.returncode == 0, f"{cmd}\n{r.stderr[-3000:]}"
    stream = json.loads((tmp_path / "out" / "stream" / "summary.json").read_text())
    assert stream["settings"]["rule"] == "causal" and stream["settings"]["backend"].startswith("onnxruntime")
    val = json.loads((tmp_path / "out" / "val" / "summary.json").read_text())
    assert val["settings"]["rule"] == "clip" and val["settings"]["card"]["precision"] == "int8"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    flat = json.dumps(metrics)
    assert "gIoU" in flat or "giou" in flat.lower()
    assert (tmp_path / "report.md").is_file()
    for folder in ("export_ort", "export_fp16", "export_int8"):
        card = json.loads((tmp_path / folder / "card.json").read_text())
        assert (tmp_path / folder / "tokenizer" / "vocab.json").is_file() and card["tokenizer_sha256"]
