"""Shared pytest fixtures: the location of ../shared (reference fixture, real videos, minivisor)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers import shared_dir

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not (path / "reference" / "tiny" / "checkpoint.pth").is_file():
        pytest.fail(f"reference material not found at {path}; set ACTIONVOS_SHARED to the shared/ folder")
    return path
