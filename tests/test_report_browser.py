"""``featlt report``'s page in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, through selenium) opens it from disk at 1280 px and 400 px.

Skips with the reason when no browser is installed, unless ``FEATLT_REQUIRE_BROWSER=1`` (CI),
where a missing browser fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_report import HOSTILE_LABEL, hostile_results, make_results

from featlt.cli import main
from featlt.report.sections import ranked_columns

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("dataset-ranking", "dataset-validation", "dataset-scores-vs-measured",
            "dataset-b5-separability", "dataset-b5-bins", "dataset-b5-densest",
            "dataset-b5-separability-split", "dataset-b5-heads", "dataset-b5-per-class",
            "dataset-b5-reliability", "dataset-b5-dlsa", "dataset-b5-cws-split",
            "dataset-provenance")


def _helper():
    """benchmarks/report_browser.py, the helper the screenshot script uses too."""
    spec = importlib.util.spec_from_file_location("report_browser",
                                                  ROOT / "benchmarks" / "report_browser.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def helper():
    module = _helper()
    problem = module.browser_problem()
    if problem is not None:
        if os.environ.get("FEATLT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"FEATLT_REQUIRE_BROWSER=1 but no browser can run: {problem}")
        pytest.skip(f"no headless browser: {problem}")
    return module


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_results(tmp_path_factory.getbasetemp() / "report_results")


def _page(inputs: list[Path], out: Path) -> Path:
    result = CliRunner().invoke(main, ["report", *map(str, inputs), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_the_page_reads_well_at_1280_and_400_pixels(helper, results, tmp_path):
    page = _page([results / "ranking.json", results / "heads"], tmp_path / "report.html")
    document = json.loads((results / "ranking.json").read_text())
    with helper.browser() as driver:
        for width in (1280, 400):
            view = helper.open_page(driver, page, width)
            helper.screenshot(driver, tmp_path / f"report-{width}.png")
            assert view.console_errors == [], width
            assert view.undecoded == [] and view.n_images > 20, width
            assert view.scroll_width <= view.client_width, (
                f"horizontal scroll at {width} px: {view.scroll_width} > {view.client_width}")
            assert set(SECTIONS) <= set(view.section_ids), width
            assert not view.pwned
            columns = ranked_columns(document)
            for row, shown in zip(document["rows"], view.table_values, strict=True):
                assert shown[1] == row["label"]
                for column, value in zip(columns, shown[3:3 + len(columns)], strict=True):
                    expected = row["scores"][column]
                    assert value == "-" if expected is None else float(value) == expected
                measured = shown[3 + len(columns) + 1]
                assert float(measured) == row["measured"]["balanced_accuracy"]
    assert (tmp_path / "report-400.png").stat().st_size > 0


def test_html_in_class_names_and_labels_never_runs(helper, results, tmp_path):
    folder = hostile_results(results, tmp_path)
    page = _page([folder], tmp_path / "hostile.html")
    with helper.browser() as driver:
        view = helper.open_page(driver, page, 1280)
        helper.screenshot(driver, tmp_path / "hostile.png")
        assert not view.pwned and view.console_errors == []
        labels = [row[1] for row in view.table_values]
        assert labels and all(label.endswith(HOSTILE_LABEL) for label in labels)
        assert driver.execute_script("return document.images.length") == 0
        # the only script is the page's own; the class name is text, not an element
        assert driver.execute_script("return document.scripts.length") == 1


def test_a_missing_driver_is_named(monkeypatch):
    module = _helper()
    monkeypatch.setattr(module, "DRIVER", "/nonexistent/chromedriver")
    problem = module.browser_problem()
    assert problem is not None and "/nonexistent/chromedriver" in problem
