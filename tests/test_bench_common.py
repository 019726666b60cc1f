"""benchmarks/common.py: the run record every results JSON carries."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_common():
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "benchmarks" / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_record_then_finish_record() -> None:
    common = load_common()
    record = common.run_record(["benchmarks/bench_x.py", "--out", "a b.json"])
    assert record["command"].endswith("benchmarks/bench_x.py --out 'a b.json'")
    assert record["git_commit"] is None or len(record["git_commit"]) == 40
    assert isinstance(record["git_dirty"], bool) or record["git_commit"] is None
    assert record["cpu_count"] >= 1 and record["hostname"]
    assert len(record["load_average_start"]) == 3
    assert record["date_utc"].endswith("+00:00")
    time.sleep(0.05)
    done = common.finish_record(record)
    assert "load_average_end" not in record  # the start record is not modified
    assert len(done["load_average_end"]) == 3 and done["seconds"] >= 0.0
    assert done["date_end_utc"] >= done["date_utc"]
    json.dumps(done)  # every field is JSON-serialisable
