"""The bundled demo checkpoint carries its own gate threshold and the rule that chose it (issue 12), and the one
pipeline opened on the demo uses that threshold; the selection rule of benchmarks/eval_demo.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAPER_THRES = 0.75


def _eval_demo():
    spec = importlib.util.spec_from_file_location("eval_demo", REPO / "benchmarks" / "eval_demo.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["eval_demo"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def demo_card():
    from actionvos.card import ModelCard
    from actionvos.demo import DEMO_CHECKPOINT
    from actionvos.model.checkpoint import read_checkpoint

    _, meta = read_checkpoint(DEMO_CHECKPOINT)
    assert isinstance(meta.get("card"), dict), "the demo checkpoint carries no model card; run benchmarks/demo_card.py"
    return ModelCard.from_dict(meta["card"], where=str(DEMO_CHECKPOINT))


def test_card_carries_threshold_and_rule(demo_card):
    th = demo_card.thresholds
    assert 0.0 < th.pos_cls_thres < 1.0
    assert th.pos_cls_thres != PAPER_THRES, "the demo's gate is its own, not the paper's 0.75 (issue 12)"
    assert th.rule and "not yet chosen" not in th.rule
    assert "gIoU" in th.rule and "minivisor train" in th.rule, th.rule
    assert demo_card.weights_note and "not the paper's model" in demo_card.weights_note


def test_open_model_uses_card_threshold(demo_card):
    from actionvos.artifacts import open_model
    from actionvos.pipeline.drivers import CausalDriver, ClipDriver, StreamConfig

    backend, tokenizer = open_model(None, backend="pytorch", device="cpu")
    try:
        assert backend.info.card.thresholds.pos_cls_thres == demo_card.thresholds.pos_cls_thres
        assert backend.info.card.thresholds.rule == demo_card.thresholds.rule
        assert ClipDriver(backend, None, tokenizer).pos_thres == demo_card.thresholds.pos_cls_thres
        assert CausalDriver(backend, None, tokenizer).pos_thres == demo_card.thresholds.pos_cls_thres
        # an explicit override still wins (the 0.75 row of benchmarks/RESULTS.md)
        assert ClipDriver(backend, StreamConfig(pos_thres=PAPER_THRES), tokenizer).pos_thres == PAPER_THRES
    finally:
        backend.close()


def test_threshold_rule_middle_of_longest_plateau():
    ev = _eval_demo()
    grid = ev.parse_grid("0.30:0.90:0.01")
    assert len(grid) == 61 and grid[0] == 0.3 and grid[-1] == 0.9 and 0.75 in grid
    assert ev.parse_grid("0.75,0.5,0.5") == [0.5, 0.75]
    # gIoU flat at its maximum on 0.30..0.68, then falling: the middle of the run
    gious = [86.5 if t <= 0.68 else 86.5 - 100 * (t - 0.68) for t in grid]
    assert ev.choose_threshold(grid, gious) == (0.49, (0.3, 0.68))
    # a single best value wins whatever its plateau neighbours
    g2 = [50.0] * len(grid)
    g2[grid.index(0.62)] = 60.0
    assert ev.choose_threshold(grid, g2)[0] == 0.62
    # two maximising runs of equal length: the one whose middle is closer to 0.75
    g3 = [0.0] * len(grid)
    for t in (0.40, 0.41, 0.42, 0.70, 0.71, 0.72):
        g3[grid.index(t)] = 1.0
    assert ev.choose_threshold(grid, g3) == (0.71, (0.7, 0.72))
    # an even-length run: the lower middle value
    assert ev.choose_threshold([0.1, 0.2, 0.3, 0.4], [1.0, 1.0, 1.0, 1.0])[0] == 0.2
