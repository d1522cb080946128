"""Two gloo processes under ``torchrun`` train in lockstep: both ranks end with identical parameters (spec §8 DDP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from synthetic_data import make_dataset, train_tiny_tokenizer

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import os, sys, torch
    from actionvos.training.trainer import TrainConfig, train
    data, out, tok = sys.argv[1:4]
    res = train(TrainConfig(data=data, output=out, preset="demo_small", tokenizer=tok, num_frames=2, max_size=64,
                            epochs=1, max_steps=2, threads=1, progress=False, device="cpu"))
    rank = int(os.environ["RANK"])
    torch.save({"state": res.model.state_dict(), "steps": res.steps}, os.path.join(out, f"rank{rank}.pt"))
""")


def test_two_gloo_ranks_end_identical(tmp_path):
    data = make_dataset(tmp_path / "data")
    tok = train_tiny_tokenizer(tmp_path / "tok")
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
         str(data), str(out), str(tok)],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    assert r0["steps"] == r1["steps"] == 2
    assert r0["state"].keys() == r1["state"].keys()
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k
    # training moved the weights away from the common seed-42 initialisation
    torch.manual_seed(42)
    from actionvos.model.builder import build_model

    init = build_model("demo_small").state_dict()
    assert not torch.equal(init["controller.layers.0.weight"], r0["state"]["controller.layers.0.weight"])
    assert torch.equal(init["text_encoder.embeddings.word_embeddings.weight"],
                       r0["state"]["text_encoder.embeddings.word_embeddings.weight"])  # frozen
    steps = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"step"' in x]
    assert len([s for s in steps if s["kind"] == "step"]) == 2  # rank 0 writes the log once
