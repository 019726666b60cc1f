"""``featlt report``: the page from results featlt's own commands wrote on synthetic stores, and
its bad input (unknown kinds and versions, missing or corrupt files among many, mixed datasets,
HTML in names, non-ASCII paths, -o onto an input, atomic writing)."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from conftest import write_rank_stores

from featlt.cli import main
from featlt.rank.model import SCORE_COLUMNS

HOSTILE_CLASS = '<script>window.__featlt_pwned = true</script>'
HOSTILE_LABEL = '"><img src=x onerror="window.__featlt_pwned = true">'


def _run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def make_results(folder: Path) -> Path:
    """A folder of tiny real results (made once per session and reused): ``ranking.json`` from
    ``featlt rank --full --validate`` over 3 synthetic stores with the linear, ncm_cosine, cws and
    dlsa heads under ``heads/``, and ``separability.json`` of one store."""
    done = folder / "ranking.json"
    if done.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    stores = write_rank_stores(folder / "stores", "b", (1.5, 3.0, 5.0))
    common = ("--device", "cpu", "--threads", "1")
    separability = _run("evaluate-separability", stores[2], "-o", folder / "separability.json",
                        *common)
    assert separability.exit_code == 0, separability.output
    ranked = _run("rank", *stores, *common, "--bootstrap", "20", "--full", "--validate",
                  "--cv-folds", "0", "--head", "linear", "--head", "ncm_cosine", "--head", "cws",
                  "--head", "dlsa", "--max-epochs", "3", "--heads-dir", folder / "heads",
                  "--json-output", folder / "partial.json")
    assert ranked.exit_code == 0, ranked.output
    (folder / "partial.json").rename(done)
    return folder


@pytest.fixture(scope="session")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_results(tmp_path_factory.getbasetemp() / "report_results")


@pytest.fixture
def copied(results: Path, tmp_path: Path) -> Path:
    """A private copy of the results, safe to break."""
    return Path(shutil.copytree(results, tmp_path / "results", ignore=shutil.ignore_patterns(
        "stores")))


def cells(page: str, table_class: str) -> list[list[str]]:
    """The ``data-value`` (else the text) of every body cell of the first table of that class."""
    body = page.split(f'class="sortable {table_class}"', 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>", 1)[1])
    found = [re.findall(r"<td([^>]*)>(.*?)</td>", row) for row in rows]
    return [[html.unescape(value.group(1) if (value := re.search(r'data-value="([^"]*)"', attrs))
                           else text) for attrs, text in row] for row in found]


def headers(page: str, table_class: str) -> list[str]:
    head = page.split(f'class="sortable {table_class}"', 1)[1].split("</thead>", 1)[0]
    return [html.unescape(h) for h in re.findall(r"<th>(.*?)(?:<br>.*?)?</th>", head)]


def test_the_page_shows_every_section_with_the_rank_documents_values(results, tmp_path):
    out = tmp_path / "report.html"
    result = _run("report", results / "ranking.json", results / "heads", "-o", out)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(out.resolve())
    page = out.read_text(encoding="utf-8")
    document = json.loads((results / "ranking.json").read_text())
    for backbone in ("b5", "b3", "b1-5"):
        for part in ("separability", "bins", "densest", "separability-split", "heads",
                     "per-class", "reliability", "dlsa", "cws-split"):
            assert f'id="dataset-{backbone}-{part}"' in page, (backbone, part)
    for section in ("dataset-ranking", "dataset-validation", "dataset-scores-vs-measured",
                    "dataset-provenance"):
        assert f'id="{section}"' in page
    assert html.escape(document["recommendation"]["sentence"]) in page
    table = cells(page, "ranking")
    columns = [c for c in SCORE_COLUMNS if c in document["rows"][0]["scores"]]
    assert [h.rstrip("*") for h in headers(page, "ranking")[3:3 + len(columns)]] == [
        "featlt", "LogME", "GBC", "SFDA", "kNN bal. acc.", "NCM bal. acc.", "parameters",
        "ImageNet top-1", "featlt v1", "LogME+NCM rank"][:len(columns)]
    for row, shown in zip(document["rows"], table, strict=True):
        assert shown[1] == row["label"]
        for column, value in zip(columns, shown[3:], strict=False):
            expected = row["scores"][column]
            assert (value == "-") if expected is None else float(value) == expected
        assert float(shown[3 + len(columns) + 1]) == row["measured"]["balanced_accuracy"]
    # offline: nothing is fetched from anywhere
    assert not re.search(r'(src|href)="(?!#)', page) and "<link" not in page
    assert "@import" not in page and "url(" not in page


def test_reliability_bins_give_the_ece_the_head_recorded(results, tmp_path):
    out = tmp_path / "report.html"
    assert _run("report", results / "heads", "-o", out).exit_code == 0
    page = out.read_text(encoding="utf-8")
    pairs = re.findall(r"ECE (\d\.\d{4}) \(recorded: (\d\.\d{4})\)", page)
    assert len(pairs) >= 3 * 4  # every backbone: all classes and each non-empty group
    assert all(ours == recorded for ours, recorded in pairs)


@pytest.mark.parametrize("declared", [True, False], ids=["columns-listed", "version-3"])
def test_a_newer_score_column_is_shown_after_the_known_ones(copied, tmp_path, declared):
    path = copied / "ranking.json"
    document = json.loads(path.read_text())
    for row in document["rows"]:
        row["scores"] = {"zz_future": 0.5, **row["scores"]}
    if declared:  # version 4 on: the document lists its columns
        document["columns"].append("zz_future")
    else:  # version 3 had no list: the columns are told from the rows' scores
        del document["columns"]
        document["version"] = 3
    path.write_text(json.dumps(document))
    out = tmp_path / "report.html"
    assert _run("report", path, "-o", out).exit_code == 0
    names = [h.rstrip("*") for h in headers(out.read_text(encoding="utf-8"), "ranking")]
    assert names.index("zz_future") > names.index("featlt v1") > names.index("featlt")


@pytest.mark.parametrize("change, message", [
    ({"kind": "featlt.elsewhere"}, "kind 'featlt.elsewhere' is not a result featlt report shows"),
    ({"version": 99}, "rank document version 99, written by a newer featlt"),
    ({"version": 1}, "an older featlt; run `featlt rank --json-output` again"),
])
def test_unknown_kinds_and_versions_are_refused_clearly(copied, tmp_path, change, message):
    path = copied / "ranking.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    alone = _run("report", path, "-o", tmp_path / "alone.html")
    assert alone.exit_code == 2 and message in alone.output and "nothing to report" in alone.output
    assert not (tmp_path / "alone.html").exists()
    beside = _run("report", path, copied / "heads", "-o", tmp_path / "beside.html")
    assert beside.exit_code == 0 and f"warning: not shown: {path}" in beside.output
    assert html.escape(message) in (tmp_path / "beside.html").read_text(encoding="utf-8")


def test_a_folder_with_nothing_featlt_wrote_names_what_was_looked_for(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.json").write_text('{"a": 1}')
    result = _run("report", tmp_path / "other", "-o", tmp_path / "report.html")
    assert result.exit_code == 2
    assert "holding no result that featlt report reads" in result.output
    assert "featlt.rank" in result.output and "summary.json" in result.output


def test_missing_and_corrupt_files_among_many_are_named_and_the_rest_shown(copied, tmp_path):
    corrupt = copied / "separability.json"
    corrupt.write_text('{"kind": "featlt.separability.evaluate", "repo')
    summary = next((copied / "heads").glob("b5-*/summary.json"))
    heads = json.loads(summary.read_text())["heads"]
    best = max(heads, key=lambda name: heads[name]["val_balanced_accuracy"])
    predictions = summary.parent / best / "test_predictions.csv"  # its reliability diagrams
    predictions.write_text(predictions.read_text().replace("\n1,", "\n1,0", 1))
    missing = copied / "gone.json"
    out = tmp_path / "report.html"
    result = _run("report", copied, missing, "-o", out)
    assert result.exit_code == 0, result.output
    for path in (corrupt, missing, predictions):
        assert f"warning: not shown: {path}" in result.output
    box = out.read_text(encoding="utf-8").split('id="not-shown"', 1)[1].split("</div>", 1)[0]
    assert html.escape(str(predictions)) in box and "changed after it was written" in box
    assert "does not exist" in box and "not valid JSON" in box
    assert 'id="dataset-b5-per-class"' in out.read_text(encoding="utf-8")
    nothing = _run("report", corrupt, missing, "-o", tmp_path / "none.html")
    assert nothing.exit_code == 2 and not (tmp_path / "none.html").exists()


def _as_other_dataset(document: dict[str, Any]) -> dict[str, Any]:
    for report in document["separability"].values():
        report["input"]["features"]["dataset"]["name"] = "other-data"
    return document


def test_results_of_different_datasets_get_one_section_each(copied, tmp_path):
    other = copied / "other.json"
    other.write_text(json.dumps(_as_other_dataset(json.loads(
        (copied / "ranking.json").read_text()))))
    out = tmp_path / "report.html"
    assert _run("report", copied / "ranking.json", other, "-o", out).exit_code == 0
    page = out.read_text(encoding="utf-8")
    assert "These results come from 2 different datasets" in page
    assert 'id="dataset-1"' in page and 'id="dataset-2"' in page
    assert page.count('class="sortable ranking"') == 2
    assert "Dataset other-data" in page


def test_output_onto_an_input_is_refused(results, tmp_path):
    ranking = results / "ranking.json"
    before = ranking.read_bytes()
    onto = _run("report", ranking, "-o", ranking)
    assert onto.exit_code == 2 and "--output" in onto.output
    inside = _run("report", results, "-o", next(results.glob("heads/*/summary.json")))
    assert inside.exit_code == 2 and "inside RESULTS" in inside.output
    assert ranking.read_bytes() == before


def test_a_failed_run_keeps_the_earlier_page_and_leaves_no_temporary_file(results, tmp_path,
                                                                          monkeypatch):
    import featlt.report.build as build

    out = tmp_path / "report.html"
    out.write_text("earlier")

    def broken(_results: Any) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build, "build_page", broken)
    result = _run("report", results / "ranking.json", "-o", out)
    assert result.exit_code == 2 and out.read_text() == "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def hostile_results(results: Path, folder: Path) -> Path:
    """A copy of the results whose class names and backbone labels hold HTML, and whose path and
    first class name are not ASCII."""
    target = Path(shutil.copytree(results, folder / "résultats-数据", ignore=shutil.ignore_patterns(
        "stores")))
    names = [HOSTILE_CLASS, "chat é", "猫", HOSTILE_LABEL, "ok"]
    for summary in target.glob("heads/*/summary.json"):
        document = json.loads(summary.read_text())
        document["class_names"] = names
        summary.write_text(json.dumps(document))
    path = target / "ranking.json"
    document = json.loads(path.read_text())
    for row in document["rows"]:
        row["label"] = row["label"] + HOSTILE_LABEL
    path.write_text(json.dumps(document))
    return target


def test_html_in_names_is_escaped_and_non_ascii_is_kept(results, tmp_path):
    folder = hostile_results(results, tmp_path)
    out = tmp_path / "页.html"
    assert _run("report", folder, "-o", out).exit_code == 0
    page = out.read_text(encoding="utf-8")
    assert page.count("<script>") == 1  # the page's own table-sorting script only
    assert "<img" not in page and "onerror=\"" not in page
    assert html.escape(HOSTILE_CLASS) in page and html.escape(HOSTILE_LABEL) in page
    assert "chat é" in page and "猫" in page and "résultats-数据" in page


def test_the_demo_writes_the_page_and_ends_with_its_path(results, tmp_path):
    out = Path(shutil.copytree(results, tmp_path / "demo", ignore=shutil.ignore_patterns(
        "stores")))
    result = _run("demo", "--only", "report", "-o", out)
    assert result.exit_code == 0, result.output
    page = out / "report.html"
    assert result.output.strip().splitlines()[-1] == str(page.resolve())
    assert page.stat().st_size > 0 and 'id="dataset-ranking"' in page.read_text(encoding="utf-8")
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["steps"]["report"]["report"] == str(page.resolve())


def test_a_separability_report_alone_is_shown(results, tmp_path):
    out = tmp_path / "report.html"
    assert _run("report", results / "separability.json", "-o", out).exit_code == 0
    page = out.read_text(encoding="utf-8")
    assert 'id="dataset-b5-bins"' in page and 'id="dataset-ranking"' not in page
    assert np.isfinite(float(re.search(r'data-value="([^"]+)"', page).group(1)))


def test_arrays_stored_in_head_safetensors_are_read_and_checked(copied, tmp_path):
    from safetensors.numpy import load_file, save_file

    from featlt.file_hash import file_sha256

    folder = next((copied / "heads").glob("b5-*/linear"))
    document = json.loads((folder / "head.json").read_text())
    recorded = document["metrics"]["test"]["per_class_accuracy"]
    tensors = load_file(str(folder / "head.safetensors"))
    key = "document/metrics/test/per_class_accuracy"  # as featlt.heads.io stores > 32 numbers
    save_file({**tensors, key: np.asarray(recorded, dtype=np.float64)},
              str(folder / "head.safetensors"))
    document["metrics"]["test"]["per_class_accuracy"] = {"$tensor": key}
    document["tensors_sha256"] = file_sha256(folder / "head.safetensors", cached=False)
    (folder / "head.json").write_text(json.dumps(document))
    out = tmp_path / "report.html"
    assert _run("report", copied / "heads", "-o", out).exit_code == 0
    chart = out.read_text(encoding="utf-8").split('id="dataset-b5-per-class"', 1)[1].split(
        "</svg>", 1)[0]
    hovers = re.findall(r"linear accuracy ([0-9.e-]+)</title>", chart)
    assert sorted(map(float, hovers)) == sorted(v for v in recorded if v is not None)
    with (folder / "head.safetensors").open("ab") as handle:
        handle.write(b"changed")
    result = _run("report", copied / "heads", "-o", out)
    assert result.exit_code == 0
    assert f"warning: not shown: {folder / 'head.safetensors'}" in result.output


def test_a_second_run_writing_the_same_page_stops_at_once(results, tmp_path):
    import subprocess
    import sys
    import time

    from featlt.output_lock import lock_path

    out = tmp_path / "report.html"
    code = ("import sys, time\nfrom featlt.output_lock import output_lock\n"
            "with output_lock(sys.argv[1], '--output'):\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)])
    try:
        deadline = time.monotonic() + 60
        while not (lock_path(out).exists() and lock_path(out).read_text().strip() == str(
                holder.pid)):
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.01)
        result = _run("report", results / "ranking.json", "-o", out)
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2
    assert f"another featlt run (PID {holder.pid}) is writing it now" in result.output
    assert not out.exists()
