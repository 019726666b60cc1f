"""``featlt rank``'s outputs others read (``--json-output``) and its bad input: a score that is
undefined on a file (missing, never 0) or the same on every file (saturated)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import write_rank_stores

import featlt.rank.ranking as ranking
from featlt.cli import main
from featlt.rank.model import BASE_SCORES, DEFAULT_SCORE, KIND, SCORE_COLUMNS, VERSION
from featlt.rank.scoring import RANK_AVERAGES

FAST = ("--device", "cpu", "--bootstrap", "50")


def _run(*args: object) -> Result:
    return CliRunner().invoke(main, ["rank", *[str(a) for a in args]])


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_rank_stores(tmp_path_factory.mktemp("rank_outputs"), "b", (1.5, 3.0, 5.0))


def _patch_scores(monkeypatch: pytest.MonkeyPatch, changes: dict[str, dict[str, float]]) -> None:
    """Make ``score_file`` return ``changes[label][score]`` for the files named there."""
    real = ranking.score_file

    def patched(path: Any, *args: Any, **kwargs: Any) -> Any:
        scored = real(path, *args, **kwargs)
        scored.scores.update(changes.get(Path(path).stem, {}))
        return scored

    monkeypatch.setattr(ranking, "score_file", patched)


def _table_rows(output: str) -> dict[str, list[str]]:
    """label -> the table's cells of that row (rank, label, one per score)."""
    return {line.split()[1]: line.split() for line in output.splitlines()
            if line[:2].strip().isdigit()}


def test_json_output_holds_what_json_prints(stores, tmp_path):
    out = tmp_path / "ranking.json"
    result = _run(*stores, *FAST, "--json", "--json-output", out)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    written = json.loads(out.read_text())
    assert written == printed
    assert written["kind"] == KIND == "featlt.rank" and written["version"] == VERSION == 5
    assert written["columns"] == [c for c in SCORE_COLUMNS if c in written["rows"][0]["scores"]]
    assert set(BASE_SCORES) <= set(written["columns"]) and "knn_tail" not in written["columns"]
    run = written["run"]
    assert run["command"].startswith("featlt ") and run["featlt"] and run["cpu_count"] >= 1
    assert run["date_utc"] and "git_commit" in run
    assert written["outputs"]["json"] == str(out)
    assert set(BASE_SCORES) <= set(written["rows"][0]["scores"])
    assert written["recommendation"]["sentence"].startswith("Use b5")
    assert not list(tmp_path.glob("*.tmp*")) and sorted(p.name for p in tmp_path.iterdir()) == [
        "ranking.json"]


def test_json_output_in_full_mode_holds_the_measured_and_validation_fields(stores, tmp_path):
    out = tmp_path / "full.json"
    result = _run(*stores, *FAST, "--full", "--validate", "--head", "ncm_cosine",
                  "--heads-dir", tmp_path / "heads", "--json-output", out)
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert all(row["measured"]["head"] == "ncm_cosine" for row in written["rows"])
    assert set(BASE_SCORES) <= set(written["validation"]["scores"]) <= set(SCORE_COLUMNS)
    assert written["recommendation"]["basis"].endswith("(full mode)")
    assert result.output.strip().splitlines()[-1] == written["recommendation"]["sentence"]


def test_an_existing_json_output_is_replaced_only_on_success(stores, tmp_path):
    out = tmp_path / "ranking.json"
    out.write_text("earlier\n")
    failed = _run(*stores, *FAST, "--by", "measured", "--json-output", out)
    assert failed.exit_code != 0 and "--by measured: needs --full" in failed.output
    assert out.read_text() == "earlier\n"
    done = _run(*stores, *FAST, "--json-output", out)
    assert done.exit_code == 0, done.output
    assert json.loads(out.read_text())["kind"] == "featlt.rank"


def test_a_score_undefined_on_one_file_is_missing_not_zero(stores, monkeypatch):
    _patch_scores(monkeypatch, {"b3": {"logme": math.nan, "sfda": math.inf}})
    document = json.loads(_run(*stores, *FAST, "--json").stdout)
    by_label = {row["label"]: row for row in document["rows"]}
    assert by_label["b3"]["scores"]["logme"] is None and by_label["b3"]["scores"]["sfda"] is None
    assert by_label["b5"]["scores"]["logme"] is not None
    assert document["missing"]["logme"] == ["b3"] and document["missing"]["sfda"] == ["b3"]
    # featlt's default averages LogME's rank with NCM's: undefined on b3, which ranks last
    assert by_label["b3"]["scores"]["featlt"] is None
    assert [row["label"] for row in document["rows"]] == ["b5", "b1.5", "b3"]
    # a score that does not need LogME keeps b3 in its place
    by_v1 = json.loads(_run(*stores, *FAST, "--json", "--by", "featlt_v1").stdout)
    assert [row["label"] for row in by_v1["rows"]] == ["b5", "b3", "b1.5"]
    assert any(note.startswith("LogME: undefined on b3") and "never 0" in note
               for note in document["notes"])
    text = _run(*stores, *FAST).output
    cells = _table_rows(text)["b3"]
    logme = 2 + SCORE_COLUMNS.index("logme")
    assert cells[logme] == "-" and cells[2 + SCORE_COLUMNS.index("sfda")] == "-"
    assert _table_rows(text)["b5"][logme] != "-"
    # sorting by the score: the file without it ranks below every file that has it
    by_logme = json.loads(_run(*stores, *FAST, "--json", "--by", "logme").stdout)
    assert by_logme["rows"][-1]["label"] == "b3"


def test_a_file_without_the_sorting_score_ranks_last_and_is_not_recommended(stores, monkeypatch):
    # undefined on b5: the default score (or both scores of a rank average)
    parts = RANK_AVERAGES.get(DEFAULT_SCORE, (DEFAULT_SCORE,))
    _patch_scores(monkeypatch, {"b5": {name: math.nan for name in parts}})
    result = _run(*stores, *FAST, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [row["label"] for row in document["rows"]] == ["b3", "b1.5", "b5"]
    assert document["rows"][-1]["scores"]["featlt"] is None
    assert document["recommendation"]["label"] == "b3"
    assert "nan" not in document["recommendation"]["sentence"]


def test_a_score_equal_on_every_file_is_flagged_and_not_ranked_on_silently(stores, monkeypatch):
    _patch_scores(monkeypatch, {label: {"sfda": 1.0} for label in ("b1.5", "b3", "b5")})
    monkeypatch.setattr(ranking, "static_baselines", lambda provenance: SimpleNamespace(
        params=3.4e6, imagenet_top1=None, source="one architecture, as in the quick demo"))
    text = _run(*stores, *FAST).output
    header = next(line for line in text.splitlines() if line.lstrip().startswith("#"))
    assert "SFDA*" in header.split() and "LogME*" not in header.split()
    # "params(M)*" is wider than a cell: its column widens, and every row stays aligned
    assert "params(M)*" in header.split()
    assert {len(line) for line in text.splitlines() if line[:2].strip().isdigit()} == {
        len(header)}
    assert "note: SFDA*: the same on every file (1; saturated on this data): uninformative " \
           "here, it cannot separate these backbones, not used to rank" in text
    document = json.loads(_run(*stores, *FAST, "--json").stdout)
    assert document["saturated"] == ["params", "sfda"]
    assert [row["scores"]["sfda"] for row in document["rows"]] == [1.0, 1.0, 1.0]
    # asked to sort by it: it still does, and says plainly that it cannot separate the files
    by_sfda = json.loads(_run(*stores, *FAST, "--json", "--by", "sfda").stdout)
    assert [row["label"] for row in by_sfda["rows"]] == ["b1.5", "b3", "b5"]  # as given
    assert any("the table keeps the order the files were given in" in note
               for note in by_sfda["notes"])
    sentence = by_sfda["recommendation"]["sentence"]
    assert "sfda is the same on every file, so it cannot separate them" in sentence


def test_a_score_that_differs_is_not_flagged(stores):
    document = json.loads(_run(*stores, *FAST, "--json").stdout)
    assert "featlt" not in document["saturated"] and "knn" not in document["saturated"]


def test_featlt_is_the_default_score_in_every_row(stores):
    document = json.loads(_run(*stores, *FAST, "--json").stdout)
    assert DEFAULT_SCORE in SCORE_COLUMNS and DEFAULT_SCORE != "featlt"
    for row in document["rows"]:
        assert row["scores"]["featlt"] == row["scores"][DEFAULT_SCORE]
    assert document["columns"][0] == "featlt"
