"""``rank --memory-budget``: cheap-mode scores from chunk-streamed training rows.

Two backbones' stores of the same images: every score under a budget whose chunks hold a few
hundred rows matches the in-memory ranking within issue 19 item 4's tolerances (SFDA, LogME,
NCM to rounding; kNN within 0.5 points), the order is the same, and what needs features in memory
(``--full``, ``--pairs``, ``--with``) or a budget below the smallest plan is refused naming why.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from featlt.cli import main
from featlt.data.synthetic import write_synthetic_store
from featlt.errors import FeatltError
from featlt.rank.model import RankConfig
from featlt.rank.ranking import rank_files
from featlt.separability.evaluate import SeparabilityConfig


@pytest.fixture(scope="module")
def two_backbones(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The same 8 classes (IF 10, 1,500 ... 150 rows) as 64- and 96-dimensional features."""
    folder = tmp_path_factory.mktemp("rank-budget")
    return [write_synthetic_store(folder / f"d{dim}.h5", n_classes=8, n_max=1500,
                                  imbalance_factor=10, dim=dim, separation=sep,
                                  n_test_per_class=20, n_val_per_class=20)
            for dim, sep in ((64, 2.0), (96, 3.0))]


def test_budget_scores_match_in_memory(two_backbones: list[Path]) -> None:
    """At the smallest budget that works (chunks of 256 rows), the same scores and order."""
    separability = SeparabilityConfig(knn_queries=300)
    memory = rank_files(two_backbones, separability_config=separability, device="cpu")
    with pytest.raises(FeatltError) as refused:
        rank_files(two_backbones, separability_config=separability, device="cpu",
                   memory_budget_mb=1.0)
    budget = float(re.search(r"pass --memory-budget (\d+)", str(refused.value)).group(1)) + 10
    streamed = rank_files(two_backbones, separability_config=separability, device="cpu",
                          memory_budget_mb=budget)
    assert [r["label"] for r in streamed["rows"]] == [r["label"] for r in memory["rows"]]
    for got, want in zip(streamed["rows"], memory["rows"], strict=True):
        g, w = got["scores"], want["scores"]
        for name in ("sfda", "logme", "ncm", "logme_balanced"):
            assert g[name] == pytest.approx(w[name], rel=1e-6), name
        assert abs(g["knn"] - w["knn"]) <= 0.005
        plan = streamed["separability"][got["label"]]["input"]["memory_budget"]
        assert plan["mb"] == budget and plan["chunk_rows"] < 4000


def test_budget_refusals(two_backbones: list[Path]) -> None:
    with pytest.raises(FeatltError, match=r"--memory-budget 50: --full needs the features in "
                                          r"memory.*fit-classifier FILE --memory-budget MB"):
        rank_files(two_backbones, config=RankConfig(full=True), device="cpu",
                   memory_budget_mb=50)
    result = CliRunner().invoke(main, ["rank", *map(str, two_backbones), "--memory-budget", "1"])
    assert result.exit_code == 2
    assert re.search(r"--memory-budget 1: below the smallest budget that works on feature file "
                     r".*d64\.h5 .*pass --memory-budget \d+ or more", result.output)
