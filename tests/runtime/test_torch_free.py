"""The ONNX Runtime path never imports torch (an edge box has numpy, onnxruntime, tokenizers and OpenCV only).

A subprocess installs a meta-path finder that raises ImportError for ``torch`` (and ``transformers``, which would
pull it in), then builds a session through ``open_session(backend="auto", onnx=...)`` and runs one step.
"""

from __future__ import annotations

import subprocess
import sys

from rt_common import REPO

SCRIPT = r'''
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "torchvision"):
            raise ImportError(f"{name} is blocked in this test")
        return None
sys.meta_path.insert(0, Block())
import numpy as np
from actionvos.runtime.session_builder import open_session
s = open_session("auto", onnx=sys.argv[1], threads=2)  # the export folder carries its tokenizer and card
assert s.backend.info.name == "onnxruntime-cpu", s.backend.info.name
s.set_prompts("move box", "box,pen")
r = s.step(np.zeros((60, 80, 3), np.uint8))
assert r.labels.shape == (60, 80)
from actionvos.runtime import camera, capture, hud, cli, serve  # the app modules too
from actionvos.pipeline import run, sink  # the file pipeline too
assert not any(m.split(".")[0] == "torch" for m in sys.modules), "torch was imported"
print("OK", len(r.objects))
'''


def test_ort_backend_runs_without_torch(onnx_dir, tok_dir):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(onnx_dir), str(tok_dir)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK 2" in proc.stdout
