"""Issue 16, minor cases of heads, predict and rank: each ends with a clear message or a clean
result, never a traceback.

- ``predict --images`` over a file whose name is not UTF-8 writes the CSV with the name escaped
  (``\\xff.png``);
- ``predict --device cuda`` without a GPU is an error (exit 2), as in every other command;
- ``rank -o`` that cannot be written calls the file a ranking CSV, not a "predictions file";
- the ranking table keeps a space between columns whatever the numbers (``-0.5795-3.493e-26``).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from featlt.cli import main
from featlt.data.synthetic import write_synthetic_store


def _run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def image_head(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An image folder (2 classes x 6 PNGs) and an ncm_l2 head on its pixels_8 features."""
    from PIL import Image

    root = tmp_path_factory.mktemp("minor")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["dark", "light"]):
        (root / "imgs" / name).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 50, (10, 10, 3)) + 150 * c
            Image.fromarray(pixels.astype(np.uint8)).save(root / "imgs" / name / f"{i}.png")
    feats = root / "feats.h5"
    extracted = _run("extract", "--model", "pixels_8", "--data", f"folder:{root / 'imgs'}",
                     "--batch-size", "4", "--threads", "1", "--workers", "0", "--device", "cpu",
                     "-o", feats)
    assert extracted.exit_code == 0, extracted.output
    fitted = _run("fit-classifier", feats, "--head", "ncm_l2", "--bootstrap", "0",
                  "--device", "cpu", "-o", root / "heads")
    assert fitted.exit_code == 0, fitted.output
    return root / "heads" / "ncm_l2", feats


def _non_utf8_file_name(image_head: tuple[Path, Path], tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> tuple[Result, Path]:
    from PIL import Image

    head, _ = image_head
    folder = tmp_path / "photos"
    folder.mkdir()
    pixels = np.full((10, 10, 3), 200, np.uint8)
    Image.fromarray(pixels).save(folder / "ok.png")
    name = os.fsdecode(b"\xff.png")  # a file name that is not UTF-8
    Image.fromarray(pixels).save(os.path.join(folder, name))
    out = tmp_path / "pred.csv"
    return _run("predict", head, "--images", folder, "--device", "cpu", "-o", out), out


def _check_non_utf8(result: Result, out: Path) -> None:
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8", newline="") as handle:
        files = [row["file"] for row in csv.DictReader(handle)]
    assert sorted(files) == ["\\xff.png", "ok.png"]


def _cuda_without_gpu(image_head: tuple[Path, Path], tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> tuple[Result, Path]:
    import torch

    head, feats = image_head
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "pred.csv"
    return _run("predict", head, feats, "--split", "train", "--device", "cuda", "-o", out), out


def _check_cuda(result: Result, out: Path) -> None:
    assert result.exit_code == 2, result.output
    assert "--device cuda: no CUDA GPU" in result.output and "--device cpu" in result.output
    assert not out.exists()


def _rank_csv_unwritable(image_head: tuple[Path, Path], tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> tuple[Result, Path]:
    store = write_synthetic_store(tmp_path / "s.h5", n_classes=3, n_max=30, dim=6,
                                  n_test_per_class=4)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the CSV's folder should be\n")
    out = blocker / "ranking.csv"
    return _run("rank", store, "--device", "cpu", "--bootstrap", "10", "-o", out), out


def _check_rank_csv(result: Result, out: Path) -> None:
    assert result.exit_code == 2, result.output
    assert "predictions file" not in result.output
    assert "not-a-folder" in result.output and "ranking.csv" in result.output


CASES: dict[str, tuple[Callable[..., tuple[Result, Path]], Callable[[Result, Path], None]]] = {
    "predict --images with a non-UTF-8 file name": (_non_utf8_file_name, _check_non_utf8),
    "predict --device cuda without a GPU": (_cuda_without_gpu, _check_cuda),
    "rank -o that cannot be written": (_rank_csv_unwritable, _check_rank_csv),
}


@pytest.mark.parametrize("case", list(CASES))
def test_minor_case(case: str, image_head: tuple[Path, Path], tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    run, check = CASES[case]
    result, out = run(image_head, tmp_path, monkeypatch)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    check(result, out)


def test_rank_csv_write_failure_names_a_ranking_csv(tmp_path: Path) -> None:
    from featlt.errors import FeatltError
    from featlt.rank.table import write_csv

    target = tmp_path / "ranking.csv"
    target.mkdir()  # a folder where the CSV should go: the final rename fails
    document: dict[str, Any] = {"rows": []}
    with pytest.raises(FeatltError, match=r"^ranking CSV .*ranking\.csv: cannot be written"):
        write_csv(target, document)


def _document(scores: dict[str, float | None], measured: dict[str, Any] | None) -> dict[str, Any]:
    row = {"label": "b", "scores": scores, "measured": measured}
    return {"config": {"by": "featlt"}, "rows": [row, {**row, "label": "a-longer-name"}],
            "notes": [], "recommendation": {"sentence": "Use b."}}


@pytest.mark.parametrize("scores", [
    {"featlt": 0.9, "logme": -0.5795, "gbc": -3.493e-26, "sfda": 1.0, "knn": 0.93,
     "ncm": 0.68, "params": 4.1e6, "imagenet_top1": None},
    {"featlt": -123456789.0, "logme": 1.5e300, "gbc": -1.586e-149, "sfda": -9.99e-10,
     "knn": 1.0, "ncm": 0.0, "params": 1.5e15, "imagenet_top1": 88.123456},
])
def test_ranking_table_columns_never_run_together(scores: dict[str, float | None]) -> None:
    from featlt.rank.table import ranking_text

    measured = {"head": "balanced_softmax", "balanced_accuracy": 0.75, "tail_third": -1.5e-20}
    lines = ranking_text(_document(scores, measured)).splitlines()
    header, rows = lines[1], lines[2:4]
    assert len(header.split()) == 2 + 8 + 3 + 1  # '#', backbone, 8 scores, best head (2 words)
    for line in rows:
        cells = line.split()
        assert len(cells) == 2 + 8 + 3, line  # each number its own whitespace-separated cell
        assert len(line) == len(rows[0])  # fixed width
    for name, value in scores.items():
        if value is not None and name != "params":
            written = rows[0].split()[2 + list(scores).index(name)]
            assert float(written) == pytest.approx(value, rel=0.05), (name, written)
