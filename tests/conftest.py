"""Shared fixtures: a tiny random model on disk (session-wide), the same model loaded as the server loads it (one per
test module), and the location of the shared data folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny import save_tiny_model  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def tiny_served(tiny_model_dir):
    """The tiny model as `writetune serve` loads it, named `tiny`; each test module gets its own."""
    from writetune.serve import ServedModel  # the serve extra, needed only by the tests that take this fixture

    return ServedModel.load(str(tiny_model_dir), device="cpu", model_id="tiny")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"the shared data folder is not beside the repository ({SHARED})")
    return SHARED
