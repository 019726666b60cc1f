"""Shared fixtures: offline hub, the location of ../shared/data, synthetic stores."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
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


def mount_tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """Mount a tmpfs with ``options`` (e.g. ``size=64k,ro``) on a new ``folder`` for a fixture;
    skipped where this process cannot mount one (it needs root or CAP_SYS_ADMIN)."""
    folder.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def write_rank_stores(folder: Path, prefix: str, separations: tuple[float, ...]) -> list[Path]:
    """Feature files of one synthetic dataset for the rank tests: 5 classes, 60 ... 6 training
    rows (imbalance 10), 20 test and 8 validation rows per class, one file per separation."""
    from featlt.data.synthetic import write_synthetic_store

    return [write_synthetic_store(folder / f"{prefix}{s:g}.h5", n_classes=5, n_max=60,
                                  imbalance_factor=10, dim=12, separation=s,
                                  n_test_per_class=20, n_val_per_class=8)
            for s in separations]

