"""Shared fixtures: offline hub, the location of ../shared/data, synthetic stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$FEATLT_SHARED_DATA`` or ``<repo>/../shared/data``."""
    return Path(os.environ.get("FEATLT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The shared real-data folder; tests using it skip cleanly when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent")
    return path


@pytest.fixture
def synthetic_store(tmp_path: Path) -> Path:
    """A small complete long-tailed store: train (IF 20, n_max 200, 10 classes), test 50/class."""
    from featlt.data.synthetic import write_synthetic_store

    return write_synthetic_store(tmp_path / "synthetic.h5")
