"""Issue 16, part 7: ``featlt rank`` refuses files whose view selects different images.

Files are compared by the source positions (``/<split>/index``) of the rows the view selects,
not by stored row numbers, so a full extraction ranks beside a view-only extraction of the same
images, and a ``--limit`` extraction (another subset) is refused, naming both counts and the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from featlt.cli import main

FAST = ("--device", "cpu", "--bootstrap", "20", "--threads", "1")


def _run(*args: object) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def _extract(data: Path, out: Path, model: str, *extra: object) -> Path:
    result = _run("extract", "--model", model, "--data", f"npz:{data}", "-o", out,
                  "--workers", "0", "--batch-size", "16", "--threads", "1", *extra)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 40 training images, 3 x 10 test images, 8x8 RGB, brightness by class."""
    rng = np.random.default_rng(0)
    y_train, y_test = np.repeat([0, 1, 2], 40), np.repeat([0, 1, 2], 10)

    def images(labels: np.ndarray) -> np.ndarray:
        shade = labels.reshape(-1, 1, 1, 1) * 70
        return (rng.integers(0, 40, (labels.size, 8, 8, 3)) + shade).astype(np.uint8)

    path = tmp_path_factory.mktemp("subsets") / "data.npz"
    np.savez(path, x_train=images(y_train), y_train=y_train, x_test=images(y_test),
             y_test=y_test)
    return path


@pytest.fixture(scope="module")
def full(dataset: Path) -> Path:
    return _extract(dataset, dataset.parent / "full8.h5", "pixels_8")


def test_a_limited_training_subset_is_refused_naming_both_counts_and_the_fix(
    dataset: Path, full: Path
) -> None:
    limited = _extract(dataset, dataset.parent / "limited4.h5", "pixels_4", "--limit", "train=40")
    result = _run("rank", full, limited, *FAST)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "different training images" in text
    assert "120" in text and "40" in text
    assert "full8.h5" in text and "limited4.h5" in text
    assert "--limit" in text  # the fix: extract the same images


def test_a_limited_test_split_is_refused_in_full_mode_only(dataset: Path, full: Path,
                                                           tmp_path: Path) -> None:
    limited = _extract(dataset, dataset.parent / "test4.h5", "pixels_4", "--limit", "test=12")
    cheap = _run("rank", full, limited, *FAST)  # cheap mode never reads the test split
    assert cheap.exit_code == 0, cheap.output
    result = _run("rank", full, limited, *FAST, "--full", "--head", "ncm_l2",
                  "--heads-dir", tmp_path / "heads")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "different test images" in text and "30" in text and "12" in text
    assert not (tmp_path / "heads").exists()  # refused before any head is fitted


def test_a_view_only_extraction_ranks_beside_a_full_extraction_of_the_same_images(
    dataset: Path, full: Path
) -> None:
    view = ("--profile", "cao2019", "--imbalance-factor", "4")
    only = _extract(dataset, dataset.parent / "view4.h5", "pixels_4", *view)
    result = _run("rank", full, only, *FAST, *view)
    assert result.exit_code == 0, result.output
    assert "different" not in result.output


def test_same_counts_but_other_images_are_refused(dataset: Path, tmp_path: Path) -> None:
    """Two --limit subsets of equal size drawn with different seeds hold different images."""
    a = _extract(dataset, tmp_path / "a8.h5", "pixels_8", "--limit", "train=60")
    b = _extract(dataset, tmp_path / "b4.h5", "pixels_4", "--limit", "train=60", "--seed", "7")
    result = _run("rank", a, b, *FAST)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "different training images" in text and "60" in text
