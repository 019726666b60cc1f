"""Issue 17's candidate scores in ``featlt rank``: ridge / ridge_tail and cv_la (opt-in, on the
view's training rows) and logme_ncm (the rank average of LogME and NCM among the files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_rank_stores

from featlt.cli import main
from featlt.data.protocol import Protocol, resolve_view
from featlt.data.synthetic import write_synthetic_store
from featlt.errors import FeatltError
from featlt.rank import ranking
from featlt.rank.cv_head_score import cv_head_score
from featlt.rank.model import BASE_SCORES, OPTIONAL_SCORES, SCORE_COLUMNS, RankedFile, RankInput
from featlt.rank.plots import _scatter
from featlt.rank.quality import missing_scores
from featlt.rank.scoring import add_relative_scores, check_optional, rank_average, score_file
from featlt.rank.table import csv_columns, ranking_text, score_columns
from featlt.separability.evaluate import SeparabilityConfig
from featlt.separability.scores.ridge_probe import ridge_probe
from featlt.store.feature_store import FeatureStore

FAST = ("--device", "cpu", "--bootstrap", "50")
OPTIONAL_COLUMNS = tuple(c for columns in OPTIONAL_SCORES.values() for c in columns)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three files of one dataset (5 classes, the rarest with 6 training rows >= cv_la's 5)."""
    return write_rank_stores(tmp_path_factory.mktemp("rank_candidates"), "c", (1.5, 3.0, 5.0))


def _train_rows(path: Path, protocol: Protocol) -> tuple[np.ndarray, np.ndarray]:
    with FeatureStore(path) as store:
        view = resolve_view(store, protocol)
        return (store.read(view.train_split, view.train_rows),
                store.labels(view.train_split)[view.train_rows])


def test_the_candidates_table_order_and_opt_in_columns() -> None:
    assert SCORE_COLUMNS[:len(BASE_SCORES)] == BASE_SCORES
    assert set(SCORE_COLUMNS) == {*BASE_SCORES, "featlt_v1", "logme_ncm", *OPTIONAL_COLUMNS}
    assert OPTIONAL_SCORES == {"ridge": ("ridge", "ridge_tail"), "cv_la": ("cv_la",)}
    assert check_optional(["cv_la", "ridge", "cv_la"]) == ("cv_la", "ridge")
    with pytest.raises(FeatltError, match=r"--with lda: unknown optional score; use one of "
                                          r"ridge, cv_la"):
        check_optional(["lda"])


def test_optional_scores_equal_the_direct_calls_on_the_views_training_rows(stores) -> None:
    protocol = Protocol(seed=0)
    scored = score_file(stores[1], protocol, SeparabilityConfig(seed=0), "cpu", 1,
                        optional=("ridge", "cv_la"), seed=3)
    X, y = _train_rows(stores[1], protocol)
    assert y.size == sum(scored.report["data"]["train_counts"])  # the rows the report scored
    ridge = ridge_probe(X, y, 5)
    cv = cv_head_score(X, y, 5, n_folds=5, seed=3, device="cpu")
    assert scored.scores["ridge"] == pytest.approx(ridge.balanced_accuracy, rel=1e-12)
    assert scored.scores["ridge_tail"] == pytest.approx(ridge.tail_recall, rel=1e-12)
    assert scored.scores["cv_la"] == cv.balanced_accuracy
    details = scored.report["candidate_scores"]
    assert details["ridge"]["rows"] == details["cv_la"]["rows"] == y.size
    assert details["cv_la"]["fold_balanced_accuracies"] == cv.fold_balanced_accuracies.tolist()
    assert details["ridge"]["best_lambda"] == pytest.approx(ridge.best_lambda, rel=1e-12)


def test_scores_not_asked_for_are_absent_not_missing(stores) -> None:
    scored = score_file(stores[0], Protocol(seed=0), SeparabilityConfig(seed=0), "cpu", 1)
    assert not set(OPTIONAL_COLUMNS) & set(scored.scores)
    assert "candidate_scores" not in scored.report
    rows = [_row(f"f{i}", {**scored.scores}) for i in range(2)]
    assert not set(OPTIONAL_COLUMNS) & set(missing_scores(rows))
    rows[0].scores["ridge"], rows[1].scores["ridge"] = None, 0.5
    assert missing_scores(rows)["ridge"] == ["f0"]  # computed but undefined: missing


def test_cv_la_is_refused_naming_the_short_class_and_the_fix(tmp_path) -> None:
    path = write_synthetic_store(tmp_path / "short.h5", n_classes=4, n_max=40,
                                 imbalance_factor=20, dim=8, n_test_per_class=5,
                                 n_val_per_class=3)
    with pytest.raises(FeatltError, match=r"--with cv_la: class 3 \(class_3\) has 2 training "
                                          r"rows but 5 folds.*drop --with cv_la"):
        score_file(path, Protocol(seed=0), SeparabilityConfig(seed=0), "cpu", 1,
                   optional=("cv_la",))


def _row(label: str, scores: dict[str, Any]) -> RankedFile:
    entry = RankInput(path=Path(f"{label}.h5"), label=label, provenance={}, identity=label,
                      backbone={})
    return RankedFile(entry=entry, scores=scores, static_source="", report={})


def test_logme_ncm_is_the_mean_of_the_two_ranks_among_the_files_by_hand() -> None:
    # LogME: a 0.2 < b 0.9 = c 0.9 -> ranks 1, 2.5, 2.5; NCM: c 0.3 < a 0.5 < b 0.7 -> 2, 3, 1
    rows = [_row("a", {"logme": 0.2, "ncm": 0.5}), _row("b", {"logme": 0.9, "ncm": 0.7}),
            _row("c", {"logme": 0.9, "ncm": 0.3})]
    add_relative_scores(rows)
    assert [r.scores["logme_ncm"] for r in rows] == [1.5, 2.75, 1.75]
    # a file missing either score gets None, and the others are ranked among themselves
    rows[1].scores["ncm"] = None
    add_relative_scores(rows)
    assert [r.scores["logme_ncm"] for r in rows] == [1.5, None, 1.5]  # a: 1, 2; c: 2, 1
    assert rank_average([[None, None], [1.0, 2.0]]) == [None, None]
    assert rank_average([[0.1, 0.3, 0.2]]) == [1.0, 3.0, 2.0]


def _with_optional(monkeypatch: pytest.MonkeyPatch, optional: tuple[str, ...]) -> None:
    """Make ``rank_files`` compute ``optional`` on every file (the --with option's effect)."""
    real = ranking.score_file

    def patched(path: Any, *args: Any, **kwargs: Any) -> Any:
        return real(path, *args, **{**kwargs, "optional": optional})

    monkeypatch.setattr(ranking, "score_file", patched)


def test_an_optional_score_flows_into_the_json_table_csv_and_validation(stores, monkeypatch,
                                                                        tmp_path) -> None:
    _with_optional(monkeypatch, ("ridge",))
    out = tmp_path / "ranking.json"
    result = CliRunner().invoke(main, ["rank", *map(str, stores), *FAST, "--full", "--validate",
                                       "--head", "ncm_cosine", "--heads-dir",
                                       str(tmp_path / "heads"), "--json-output", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    protocol = Protocol(seed=0)
    for row in document["rows"]:
        X, y = _train_rows(Path(row["file"]), protocol)
        direct = ridge_probe(X, y, 5)
        assert row["scores"]["ridge"] == pytest.approx(direct.balanced_accuracy, rel=1e-12)
        assert row["scores"]["ridge_tail"] == pytest.approx(direct.tail_recall, rel=1e-12)
        assert "cv_la" not in row["scores"]
    assert {"ridge", "ridge_tail"} <= set(document["validation"]["scores"])
    assert "cv_la" not in document["validation"]["scores"]
    assert "ridge" not in document["missing"] and "cv_la" not in document["missing"]
    header = next(line for line in result.output.splitlines() if line.startswith(" # "))
    assert "ridge-tail" in header and "cv-LA" not in header
    assert "ridge" in csv_columns(document) and "cv_la" not in csv_columns(document)
    assert any(line.startswith("ridge-tail") for line in result.output.splitlines())


def test_the_table_and_plot_show_only_the_scores_computed() -> None:
    base = {name: 0.5 + 0.1 * i for i, name in enumerate(BASE_SCORES)}
    rows = [{"label": f"b{i}", "file": f"b{i}.h5", "backbone": "x", "pretrained": True,
             "scores": {**base, "featlt": 0.1 * i, "cv_la": 0.2 * i},
             "measured": {"head": "ncm_cosine", "balanced_accuracy": 0.5 + 0.1 * i,
                          "balanced_accuracy_ci": None, "tail_third": None}}
            for i in range(2)]
    document = {"rows": rows, "config": {"by": "featlt"}, "notes": [], "saturated": [],
                "recommendation": {"sentence": "Use b1."}}
    assert score_columns(rows) == [*BASE_SCORES, "cv_la"]
    header = ranking_text(document).splitlines()[1]
    names = header.split()
    assert names[names.index("IN-top1") + 1] == "cv-LA" and "ridge" not in header
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = _scatter(plt, document)
    try:
        titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
        assert len(titles) == len(BASE_SCORES) + 1 and titles[-1] == "cv-LA"
    finally:
        plt.close(fig)


def test_with_adds_the_opt_in_columns_and_by_an_absent_one_is_refused(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from featlt.cli import main
    from featlt.data.synthetic import write_synthetic_store

    files = [write_synthetic_store(tmp_path / f"{name}.h5", n_classes=3, n_max=30, dim=6,
                                   seed=seed) for seed, name in enumerate(("a", "b"))]
    args = ["rank", *map(str, files), "--device", "cpu", "--threads", "1", "--json"]
    refused = CliRunner().invoke(main, [*args, "--by", "ridge"])
    assert refused.exit_code == 2 and "--by ridge: not computed" in refused.output
    assert "--with ridge" in refused.output
    ranked = CliRunner().invoke(main, [*args, "--with", "ridge", "--by", "ridge"])
    assert ranked.exit_code == 0, ranked.output
    document = json.loads(ranked.stdout)
    rows = document["rows"]
    assert all("ridge" in row["scores"] and "ridge_tail" in row["scores"] for row in rows)
    assert all("cv_la" not in row["scores"] for row in rows)
    assert all(row["scores"].get("logme_ncm") is not None for row in rows)
    values = [row["scores"]["ridge"] for row in rows]
    assert values == sorted(values, reverse=True)


def test_featlt_v1_is_the_formula_of_featlt_rank_formula(stores) -> None:
    from featlt.rank.formula import featlt_score

    scored = score_file(stores[0], Protocol(seed=0), SeparabilityConfig(seed=0), "cpu", 1)
    assert scored.scores["featlt_v1"] == featlt_score(scored.report)
