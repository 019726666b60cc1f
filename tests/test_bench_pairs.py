"""benchmarks/bench_pairs.py (issue 20's measurement) end to end in its smoke mode, and the
one-member combination it normalises singles with."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from featlt.combine.write import combine_stores
from featlt.data.synthetic import write_synthetic_store
from featlt.errors import FeatltError
from featlt.store.feature_store import FeatureStore

ROOT = Path(__file__).resolve().parents[1]


def _bench_pairs() -> ModuleType:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("bench_pairs_under_test",
                                                      ROOT / "benchmarks" / "bench_pairs.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def test_a_one_member_combination_is_the_store_l2_normalised(tmp_path: Path) -> None:
    store = write_synthetic_store(tmp_path / "a.h5", n_classes=3, n_max=30, imbalance_factor=5,
                                  dim=6, separation=2.0, n_test_per_class=5)
    with pytest.raises(FeatltError, match="two or more feature files"):
        combine_stores([store], tmp_path / "refused.h5")
    out = combine_stores([store], tmp_path / "l2.h5", min_members=1).output
    with FeatureStore(store) as raw, FeatureStore(out) as normalised:
        for split in raw.splits:
            rows = raw.read(split).astype(np.float32)
            expected = rows / np.linalg.norm(rows, axis=1, keepdims=True)
            got = normalised.read(split).astype(np.float32)
            np.testing.assert_allclose(got, expected, atol=1e-3)  # float16 rounding
        assert len(normalised.provenance["backbone"]["members"]) == 1


def test_smoke_mode_measures_pairs_and_normalised_singles(tmp_path: Path) -> None:
    bench = _bench_pairs()
    bench.main(["--smoke", "--work", str(tmp_path), "--bootstrap", "100",
                "--view-seeds", "0-1"])
    result = json.loads((tmp_path / "pairs.json").read_text())["smoke"]
    kinds = [s["kind"] for s in result["sets"]]
    # 4 singles, each also normalised, the 3 pairs full mode fitted and 3 drawn ones
    assert kinds.count("single") == 4 and kinds.count("single, L2-normalised") == 4
    assert kinds.count("pair, top") == 3 and kinds.count("pair, drawn") == 3
    measured = {s["label"]: s["balanced_accuracy"] for s in result["sets"]}
    assert result["best_overall"]["balanced_accuracy"] == max(measured.values())
    named = result["recommendation"]["named"]
    assert result["regret_points"] == pytest.approx(
        100 * (max(measured.values()) - measured[named]), abs=1e-3)
    # separations 1, 2, 3, 5: the constructed order holds after normalisation too
    assert measured["sep5 (L2)"] > measured["sep1 (L2)"]
    cheap = result["cheap_scores"]
    assert len(cheap["sets"]) == 4 + 6 and cheap["n_resolvable"] >= 1
    assert cheap["scores"]["featlt"]["resolvable_pair_accuracy"] is not None
    assert set(result["pairs_scored"]) >= {s["label"] for s in result["sets"]
                                           if s["kind"].startswith("pair")}
    assert result["goal"]["gain_at_least_1.5_points"] is None  # only on CIFAR-10-LT IF100


def test_normalised_only_fits_what_the_full_run_then_reuses(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    bench = _bench_pairs()
    stores = bench.smoke_stores(tmp_path / "zoo" / bench.SMOKE)
    monkeypatch.setattr(bench, "dataset_files", lambda name, args: stores)  # no rewrite
    common = ["--smoke", "--work", str(tmp_path), "--bootstrap", "50", "--view-seeds", "0-1"]
    bench.main([*common, "--normalised-only"])
    assert not (tmp_path / "pairs.json").exists()  # it writes no results
    normalised = sorted((tmp_path / "heads" / bench.SMOKE).glob("*-l2-*/summary.json"))
    assert len(normalised) == len(stores) * 2  # every normalised single, both view seeds
    fitted = {path: path.stat().st_mtime_ns for path in normalised}
    bench.main(common)
    result = json.loads((tmp_path / "pairs.json").read_text())[bench.SMOKE]
    assert sum(s["kind"] == "single, L2-normalised" for s in result["sets"]) == len(stores)
    # the full run measured the normalised singles from those fits, without fitting again
    assert {path: path.stat().st_mtime_ns for path in normalised} == fitted
    assert sorted((tmp_path / "heads" / bench.SMOKE).glob("*-l2-*/summary.json")) == normalised
