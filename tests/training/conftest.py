"""Fixtures for the training tests."""

from pathlib import Path

import pytest

MINIVISOR = Path("/work/shared/data/minivisor")


@pytest.fixture(scope="session")
def minivisor() -> Path:
    if not (MINIVISOR / "ImageSets" / "train_meta_expressions_promptaction.json").is_file():
        pytest.skip(f"minivisor dataset not found at {MINIVISOR}")
    return MINIVISOR
