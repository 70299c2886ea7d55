from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
SAMPLES = Path(str(resources.files("musyq").joinpath("data", "samples")))


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    """A private copy of the bundled sample products, free to be damaged by a test."""
    target = tmp_path / "samples"
    shutil.copytree(SAMPLES, target)
    return target
