"""``evaluate-separability --memory-budget``: the report from chunk-streamed features.

A store larger than the budget: the streamed report's scores are within the tolerances of issue
19 item 4 of the in-memory report (kNN balanced accuracy 0.5 points, LogME 1e-3 relative, NMI
0.01, k-means objective 1%), peak resident memory above the level after imports stays under
the budget (measured in a subprocess), and a budget below the smallest plan is refused naming
it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from featlt.cli import main
from featlt.data.synthetic import write_synthetic_store
from featlt.errors import FeatltError
from featlt.separability.evaluate import SeparabilityConfig, evaluate_store

QUERIES = 300  # kNN queries: a small fixed part, so that the store is larger than the budget

# One report in a fresh process: resident memory right after the imports a report needs
# (VmRSS) and at its peak (VmHWM), in MB, with the scores.
MEASURE = """
import importlib, json, sys
for name in ("torch", "faiss", "h5py", "scipy.linalg", "scipy.sparse", "sklearn.metrics",
             "featlt.separability.evaluate", "featlt.data.protocol"):
    importlib.import_module(name)

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key))

after_imports = status("VmRSS:")
from featlt.separability.evaluate import SeparabilityConfig, evaluate_store
report = evaluate_store(sys.argv[1], None, SeparabilityConfig(knn_queries=int(sys.argv[3])),
                        "cpu", 1, float(sys.argv[2]))
print(json.dumps({"after_imports_mb": after_imports, "peak_mb": status("VmHWM:"),
                  "plan": report.input["memory_budget"], "scores": report.scores,
                  "inertia": report.clustering["inertia"],
                  "split_objective": report.split_plan["objective_per_row"]}))
"""


def minimum_budget(store: Path) -> float:
    """The smallest budget the refusal of a 1 MB budget names."""
    with pytest.raises(FeatltError) as refused:
        evaluate_store(store, None, SeparabilityConfig(knn_queries=QUERIES), "cpu", 1, 1.0)
    message = str(refused.value)
    assert "below the smallest budget that works" in message and str(store) in message
    return float(re.search(r"pass --memory-budget (\d+) or more", message).group(1))


@pytest.mark.slow
def test_streamed_report_within_tolerances_and_budget(tmp_path: Path) -> None:
    """A 122 MB store (60k x 512) at the smallest budget that works: the streamed scores match
    the in-memory report within item 4's tolerances and peak memory stays under the budget."""
    store = write_synthetic_store(tmp_path / "big.h5", n_classes=10, n_max=15000,
                                  imbalance_factor=10, dim=512, separation=3.0,
                                  n_test_per_class=10, n_val_per_class=20)
    budget = minimum_budget(store)
    assert store.stat().st_size > 1.3 * budget * 2**20
    done = subprocess.run([sys.executable, "-c", MEASURE, str(store), str(budget), str(QUERIES)],
                          capture_output=True, text=True, check=True)
    streamed = json.loads(done.stdout.strip().splitlines()[-1])
    assert streamed["peak_mb"] - streamed["after_imports_mb"] < budget, streamed
    assert streamed["plan"]["chunk_rows"] < 60000
    memory = evaluate_store(store, None, SeparabilityConfig(knn_queries=QUERIES), "cpu", 1)
    got, want = streamed["scores"], memory.scores
    for name in ("knn_balanced_accuracy", "knn_balanced_accuracy_val"):
        assert abs(got[name] - want[name]) <= 0.005, name
    for name in ("logme", "logme_balanced"):
        assert abs(got[name] - want[name]) <= 1e-3 * abs(want[name]), name
    assert abs(got["nmi"] - want["nmi"]) <= 0.01
    assert abs(streamed["inertia"] / memory.clustering["inertia"] - 1) <= 0.01
    assert abs(streamed["split_objective"] / memory.split_plan["objective_per_row"] - 1) <= 0.01
    assert got["ncm_balanced_accuracy"] == pytest.approx(want["ncm_balanced_accuracy"], abs=1e-9)


def test_budget_below_minimum_refused_by_the_cli(tmp_path: Path) -> None:
    """The command exits 2 with the smallest budget that works; the report is not written."""
    store = write_synthetic_store(tmp_path / "s.h5", n_classes=5, n_max=400, dim=32,
                                  n_val_per_class=10)
    out = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["evaluate-separability", str(store), "--memory-budget",
                                       "1", "-o", str(out)])
    assert result.exit_code == 2
    assert re.search(r"--memory-budget 1: below the smallest budget that works on feature file "
                     r".*s\.h5 .*pass --memory-budget \d+ or more", result.output)
    assert not out.exists()
    minimum = re.search(r"pass --memory-budget (\d+) or more", result.output).group(1)
    result = CliRunner().invoke(main, ["evaluate-separability", str(store), "--memory-budget",
                                       minimum, "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())["reports"][0]
    assert report["input"]["memory_budget"]["mb"] == float(minimum)
    assert report["knn"]["search"]["method"] == "bf16"
