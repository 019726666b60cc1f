"""``featlt rank --pairs``: combinations scored in memory, combined and fitted by --full, named by
the recommendation only when reliably better; JSON version 5; bad input.

Members are small synthetic stores of one dataset (4 classes, 60 ... 8 training rows) whose
features carry complementary information: ``odd`` separates the classes by ``c % 2``, ``half`` by
``c // 2`` (each alone about half right, together all), ``noise`` nothing. The cost columns use
``pixels`` and random-init stores from tests/test_combine.py. Every run is offline, a few seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from featlt.cli import main
from featlt.combine.write import combine_stores
from featlt.data.protocol import Protocol
from featlt.errors import FeatltError
from featlt.rank.model import DEFAULT_SCORE, VERSION, PairSettings, RankConfig
from featlt.rank.ranking import rank_files
from featlt.rank.scoring import score_file
from featlt.separability.evaluate import SeparabilityConfig
from featlt.store.writer import StoreWriter

COUNTS = (60, 30, 15, 8)
#: per member: each class's code along the first dimension (the class centre is 3 x code)
CODES = {"odd": (0, 1, 0, 1), "half": (0, 0, 1, 1), "noise": (0, 0, 0, 0)}
FAST = ("--device", "cpu", "--bootstrap", "200")
FULL = ("--full", "--head", "ncm_cosine", "--head", "ncm_l2", "--cv-folds", "3")
#: what every combination gets (docs/methods.md, "Ranking combinations")
PAIR_SCORES = ("featlt_v1", "logme", "knn", "ncm", "ridge", "ridge_tail")


def write_member(path: Path, codes: tuple[int, ...], seed: int, dim: int = 6,
                 first_position: int = 0) -> Path:
    """A synthetic store: class c centred at 3 * codes[c] on dimension 0, unit noise; train
    :data:`COUNTS`, test 20 and validation 8 rows per class; source positions from
    ``first_position`` (every member of one dataset: 0)."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((len(codes), dim))
    centres[:, 0] = 3.0 * np.asarray(codes)
    names = [f"class_{c}" for c in range(len(codes))]
    provenance = {"backbone": {"arch": f"synthetic-{path.stem}", "dim": dim}}
    with StoreWriter(path, provenance, mode="overwrite") as writer:
        for split, per_class in (("train", COUNTS), ("test", (20,) * 4), ("val", (8,) * 4)):
            y = np.repeat(np.arange(len(codes)), per_class)
            X = centres[y] + rng.standard_normal((y.size, dim))
            writer.begin_split(split, y, first_position + np.arange(y.size), names, dim)
            writer.write_rows(split, 0, X.astype(np.float32))
        writer.mark_complete()
    return path


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pairs")
    return {name: write_member(folder / f"{name}.h5", codes, seed)
            for seed, (name, codes) in enumerate(CODES.items())}


def _run(*args: object) -> Result:
    return CliRunner().invoke(main, ["rank", *[str(a) for a in args]])


def _document(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _row(document: dict[str, Any], label: str) -> dict[str, Any]:
    return next(row for row in document["rows"] if row["label"] == label)


def test_pair_scores_equal_those_of_the_written_combined_store(members, tmp_path):
    document = rank_files([members["odd"], members["half"], members["noise"]],
                          config=RankConfig(pairs=PairSettings()), device="cpu")
    combined = combine_stores([members["odd"], members["half"]], tmp_path / "oh.h5").output
    written = score_file(combined, Protocol(), SeparabilityConfig(), "cpu", None,
                         optional=("ridge", "cv_la") if DEFAULT_SCORE == "cv_la" else ("ridge",))
    pair = _row(document, "odd+half")
    for name in (*PAIR_SCORES, *(("cv_la",) if DEFAULT_SCORE == "cv_la" else ())):
        assert pair["scores"][name] == pytest.approx(written.scores[name], rel=1e-9, abs=1e-12)
    # featlt's column holds the default score on every row, combinations included
    assert all(row["scores"]["featlt"] == row["scores"][DEFAULT_SCORE]
               for row in document["rows"])
    assert pair["scores"]["featlt"] is not None
    # the complementary pair leads by every probe; the rank average is over all six rows
    assert document["rows"][0]["label"] == "odd+half"
    assert pair["scores"]["logme_ncm"] == max(r["scores"]["logme_ncm"] for r in document["rows"])


def test_version_5_rows_mark_combinations_and_their_missing_scores(members):
    document = _document(_run(members["odd"], members["half"], members["noise"], "--pairs",
                              *FAST, "--json"))
    assert document["version"] == VERSION == 5
    singles = [r for r in document["rows"] if r["combination"] is None]
    pairs = [r for r in document["rows"] if r["combination"] is not None]
    assert len(singles) == 3 and sorted(r["label"] for r in pairs) == [
        "half+noise", "odd+half", "odd+noise"]
    pair = _row(document, "odd+half")
    assert pair["combination"] == {"members": ["odd", "half"],
                                   "files": [str(members["odd"]), str(members["half"])],
                                   "width": 12, "cpu_time_relative": None,
                                   "combined_file": None}
    assert pair["file"] is None and pair["backbone"] == "odd + half"
    for name in ("gbc", "sfda", "imagenet_top1"):  # not computed on combinations: null, not 0
        assert name in pair["scores"] and pair["scores"][name] is None
    assert all(pair["scores"][name] is not None for name in PAIR_SCORES)
    assert all("ridge" in r["scores"] for r in singles)  # --pairs adds the probe to singles
    assert set(document["separability"]) == {"odd", "half", "noise"}
    assert document["pairs"]["max_k"] == 2 and set(document["pairs"]["scored"]) == {
        "odd+half", "odd+noise", "half+noise"}
    assert any("CPU time per image not measured" in note for note in document["notes"])
    text = _run(members["odd"], members["half"], members["noise"], "--pairs", *FAST).stdout
    header = next(line for line in text.splitlines() if line.lstrip().startswith("#"))
    assert header.split()[-3:] == ["width", "cpu", "x"] and "odd+half" in text


def test_greedy_growth_adds_triples_from_the_best_pairs(members):
    document = _document(_run(members["odd"], members["half"], members["noise"], "--pairs",
                              "--pairs-max-k", "3", "--pairs-top", "1", *FAST, "--json"))
    triples = [r for r in document["rows"]
               if r["combination"] and len(r["combination"]["members"]) == 3]
    assert [r["combination"]["width"] for r in triples] == [18]


def test_width_limit_skips_wide_combinations_and_refuses_a_wide_given_one(members, tmp_path):
    document = _document(_run(members["odd"], members["half"], "--pairs", "--max-width", "10",
                              *FAST, "--json"))
    assert all(r["combination"] is None for r in document["rows"])
    assert any("wider than --max-width 10 skipped: odd+half (12)" in n for n in document["notes"])
    combined = combine_stores([members["odd"], members["half"]], tmp_path / "oh.h5").output
    result = _run(combined, members["noise"], members["odd"], "--pairs", "--max-width", "10",
                  *FAST)
    assert result.exit_code != 0
    assert "12 wide" in result.output and "--max-width 10" in result.output


def test_recommendation_names_a_reliably_better_pair(members, tmp_path):
    result = _run(members["odd"], members["half"], "--pairs", *FAST, *FULL, "--heads-dir",
                  tmp_path / "heads", "--json")
    recommendation = _document(result)["recommendation"]
    assert recommendation["label"] == "odd+half"
    record = recommendation["combination"]
    gain = record["gains"][0]
    assert record["chosen"] == "odd+half" and gain["reliable"] and gain["gain_ci"][0] > 0
    assert recommendation["sentence"].startswith("Use odd together with half (odd+half), ")
    assert f"{100 * gain['gain']:+.1f} points" in recommendation["sentence"]
    assert recommendation["single"]["label"] in ("odd", "half")


def test_recommendation_keeps_the_single_when_the_pair_is_not_reliably_better(members,
                                                                               tmp_path):
    document = _document(_run(members["odd"], members["noise"], "--pairs", *FAST, *FULL,
                              "--heads-dir", tmp_path / "heads", "--json"))
    recommendation = document["recommendation"]
    assert recommendation["label"] == "odd"
    gain = recommendation["combination"]["gains"][0]
    assert recommendation["combination"]["chosen"] is None and not gain["reliable"]
    assert gain["gain_ci"][0] <= 0
    assert "No combination is reliably better" in recommendation["sentence"]


def test_gain_is_paired_over_the_cross_validation_records(members, tmp_path):
    """The gain is the difference of the two records' cross-validated balanced accuracies."""
    document = _document(_run(members["odd"], members["half"], "--pairs", *FAST, *FULL,
                              "--heads-dir", tmp_path / "heads", "--json"))
    pair, gain = _row(document, "odd+half"), document["recommendation"]["combination"]
    best = _row(document, gain["best_single"])
    expected = (pair["cv"]["heads"][pair["cv"]["best_head"]]["balanced_accuracy"]
                - best["cv"]["heads"][best["cv"]["best_head"]]["balanced_accuracy"])
    assert gain["gains"][0]["gain"] == pytest.approx(expected)


def test_full_mode_combines_under_the_heads_dir_and_reuses(members, tmp_path):
    heads = tmp_path / "heads"
    args = (members["odd"], members["half"], members["noise"], "--pairs", "--pairs-top", "2",
            *FAST, *FULL, "--heads-dir", heads, "--json")
    first = _run(*args)
    document = _document(first)
    written = sorted((heads / "combined").glob("*.h5"))
    assert len(written) == 2 and written[0].name.startswith(("odd+half-", "odd+noise-",
                                                              "half+noise-"))
    fitted = [r for r in document["rows"] if r["combination"] and r["measured"]]
    assert sorted(r["combination"]["combined_file"] for r in fitted) == [str(p) for p in written]
    assert all(r["file"] == r["combination"]["combined_file"] and r["cv"] for r in fitted)
    unfitted = [r for r in document["rows"] if r["combination"] and not r["measured"]]
    assert len(unfitted) == 1 and unfitted[0]["file"] is None
    times = {p: p.stat().st_mtime_ns for p in written}
    again = _run(*args)
    assert again.exit_code == 0, again.output
    assert again.stderr.count("reusing the combined store") == 2
    assert {p: p.stat().st_mtime_ns for p in written} == times
    rerun = json.loads(again.stdout)
    assert all(r["measured"]["reused"] for r in rerun["rows"] if r["measured"])


def test_cost_counts_a_shared_network_once_and_params_per_network(tmp_path):
    from test_combine import member_stores

    found = member_stores(tmp_path)
    document = _document(_run(found["pixels"], found["net"], found["layer"], "--pairs",
                              "--device", "cpu", "--bootstrap", "20", "--json"))
    seconds = {r["label"]: r["cpu_seconds_per_image"] for r in document["rows"]
               if r["combination"] is None}
    assert all(s is not None and s > 0 for s in seconds.values())
    pair = _row(document, "net+layer")  # one network, two layers: one forward
    assert pair["cpu_seconds_per_image"] == pytest.approx(max(seconds["net"], seconds["layer"]))
    assert pair["combination"]["cpu_time_relative"] == pytest.approx(
        max(seconds["net"], seconds["layer"]) / min(seconds["net"], seconds["layer"]))
    net = _row(document, "net")["scores"]["params"]
    assert pair["scores"]["params"] == net  # the shared trunk counted once
    mixed = _row(document, "pixels+net")
    assert mixed["cpu_seconds_per_image"] == pytest.approx(seconds["pixels"] + seconds["net"])


def test_bad_input_is_refused_with_the_fix(members, tmp_path):
    one = _run(members["odd"], "--pairs", *FAST)
    assert one.exit_code != 0 and "needs at least 2 feature files to combine" in one.output
    copy = tmp_path / "copy.h5"
    shutil.copy(members["odd"], copy)
    same = _run(members["odd"], copy, "--pairs", *FAST)
    assert same.exit_code != 0 and "the same features" in same.output and "drop one" in \
        same.output
    shifted = write_member(tmp_path / "shifted.h5", CODES["half"], 7, first_position=1000)
    moved = _run(members["odd"], shifted, "--pairs", *FAST)
    assert moved.exit_code != 0 and "first differing source position 0" in moved.output
    alone = _run(members["odd"], members["half"], "--pairs-top", "2", *FAST)
    assert alone.exit_code != 0 and "add --pairs" in alone.output
    with pytest.raises(FeatltError, match="--pairs-max-k 1"):
        RankConfig(pairs=PairSettings(max_k=1)).check()


def test_the_report_renders_combination_rows(members, tmp_path):
    ranking = tmp_path / "ranking.json"
    assert _run(members["odd"], members["half"], "--pairs", *FAST, "--json-output",
                ranking).exit_code == 0
    out = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", str(ranking), "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "odd+half" in page and "CPU time per image (x cheapest member)" in page
