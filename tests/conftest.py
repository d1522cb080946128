"""Shared pytest fixtures: the location of ../shared (reference fixture, real videos, minivisor)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``$ACTIONVOS_SHARED`` or the ``shared/`` folder beside the repository (as in CI)."""
    return Path(os.environ.get("ACTIONVOS_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not (path / "reference" / "tiny" / "checkpoint.pth").is_file():
        pytest.fail(f"reference material not found at {path}; set ACTIONVOS_SHARED to the shared/ folder")
    return path
