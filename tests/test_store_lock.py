"""A store another process holds open for writing is reported as locked, never as "not HDF5".

(`featlt info` on a complete store held open: tests/test_reliability.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from featlt.cli import main
from featlt.data.synthetic import write_synthetic_store
from featlt.errors import FeatltError
from featlt.store.feature_store import FeatureStore
from featlt.store.files import partial_path

pytestmark = pytest.mark.skipif(
    os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() == "FALSE",
    reason="HDF5 file locking is switched off in this environment",
)

# A second process that opens the file for writing, says so, and holds it until stdin closes.
HOLDER = (
    "import sys, h5py\n"
    "f = h5py.File(sys.argv[1], 'r+')\n"
    "print('open', flush=True)\n"
    "sys.stdin.read()\n"
    "f.close()\n"
)


@contextmanager
def held_open(path: Path) -> Iterator[None]:
    """``path`` is open for writing in a second process while the block runs."""
    env = {k: v for k, v in os.environ.items() if k != "HDF5_USE_FILE_LOCKING"}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        yield
    finally:
        holder.communicate(timeout=30)  # closes stdin: the holder closes the file and exits
    assert holder.returncode == 0


@pytest.fixture
def held_store(tmp_path: Path) -> Iterator[Path]:
    """A complete store, open for writing in another process for the duration of the test."""
    path = write_synthetic_store(tmp_path / "f.h5", n_classes=3, n_max=10, dim=4,
                                 n_test_per_class=2)
    with held_open(path):
        yield path


def test_opening_a_store_being_written_says_it_is_locked(held_store: Path) -> None:
    with pytest.raises(FeatltError, match="locked by another process") as caught:
        FeatureStore(held_store)
    assert "not an HDF5 file" not in str(caught.value)
    assert "retry" in str(caught.value)


def test_info_on_an_extraction_still_running_says_it_is_locked(tmp_path: Path) -> None:
    # a running extraction writes <out>.partial; `featlt info <out>` reads that file
    path = tmp_path / "f.h5"
    write_synthetic_store(tmp_path / "done.h5", n_classes=3, n_max=10, dim=4,
                          n_test_per_class=2).rename(partial_path(path))
    with held_open(partial_path(path)):
        result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{partial_path(path).name}: locked by another process" in result.output
