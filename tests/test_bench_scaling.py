"""benchmarks/bench_scaling.py: its ``linear_head`` step in smoke mode (a tiny store).

The step writes only its own key of the results file, so a run keeps the keys other benchmarks
wrote there; each path's child process reports time, resident memory and test accuracy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_linear_head_step_smoke(tmp_path: Path) -> None:
    """3,000 rows of 16 features, one head, one epoch, a budget below the features' chunking
    need: both paths run in their own process and the file keeps its other keys."""
    results = tmp_path / "scaling.json"
    others = {"separability": {"100000": {"seconds": 1.0}}, "run": {"git_commit": "abc"}}
    results.write_text(json.dumps(others))
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_scaling.py"), "--steps", "linear_head",
         "--rows", "3000", "--dim", "16", "--heads", "linear", "--epochs", "1",
         "--memory-budget", "56", "--output", str(results)],
        check=True, capture_output=True, text=True, cwd=tmp_path)
    document = json.loads(results.read_text())
    assert {key: document[key] for key in others} == others
    head = document["linear_head"]
    assert head["memory_budget_mb"] == 56 and head["epochs"] == 1
    assert head["run"]["command"].endswith(f"--output {results}")
    entry = head["3000"]
    for path in ("in_memory", "memory_budget"):
        run = entry[path]
        assert run["seconds"] > 0 and run["peak_rss_mb"] >= run["rss_after_imports_mb"] > 0
        assert 0 <= run["balanced_accuracy"]["linear"] <= 1
    assert entry["in_memory"]["plan"] is None
    assert entry["memory_budget"]["plan"]["chunk_rows"] < entry["n_train"]  # streamed by chunks
    assert set(entry["balanced_accuracy_gap_points"]) == {"linear"}
