"""benchmarks/bench_fresh_memory.py on tiny arrays: it writes its document with the run record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_fresh_and_rewrite_fills_are_timed_and_written(tmp_path: Path) -> None:
    out = tmp_path / "fresh.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_fresh_memory.py"),
                           "--rows", "64", "--width", "32", "--arrays", "3", "-o", str(out)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    assert document["array"] == {"rows": 64, "width": 32, "mb": 0.0}
    for part in ("fresh", "rewrite"):
        assert len(document[part]["seconds_each"]) == 3
        assert all(s > 0 for s in document[part]["mb_per_second_each"])
    assert document["run"]["command"].endswith(f"-o {out}")
