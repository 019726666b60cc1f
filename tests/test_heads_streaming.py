"""``fit-classifier --memory-budget``: heads trained on chunk-streamed features.

Streamed heads are compared with the in-memory path on synthetic stores (balanced accuracy,
mean of 3 seeds), peak resident memory is measured in a subprocess against the budget, and
budgets no path can keep are refused naming the smallest that works.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from featlt.cli import main
from featlt.data.protocol import Protocol, load_arrays, resolve_view
from featlt.data.synthetic import write_synthetic_store
from featlt.errors import FeatltError
from featlt.heads.budget import CHUNK_ELEMENT_BYTES, fixed_mb, view_sizes
from featlt.heads.preprocess import fit_preprocessor
from featlt.heads.registry import HEADS
from featlt.heads.streaming import StreamedFeatures
from featlt.heads.workflow import fit_classifiers
from featlt.store.feature_store import FeatureStore

STREAMING = [name for name, spec in HEADS.items() if spec.streams]
#: One head per streamed path, within the suite's time: a trainable head (the loop every
#: linear-family head shares), crt's class-balanced sampling, NCM's streamed class sums and a
#: post-hoc wrapper. Every streaming head's gap was measured once (docs/heads.md, "Out of core").
ACCURACY_HEADS = ["linear", "crt", "ncm_cosine", "posthoc_la"]
SEEDS = (0, 1, 2)
CHUNKS_PER_EPOCH = 3.5  # the accuracy test's budget leaves room for chunks of n_train / this

# Runs fit_classifiers in a fresh process and reports resident memory (VmRSS right after the
# imports a run needs, VmHWM at the end) in MB.
MEASURE = """
import importlib, json, sys
for name in ("torch", "h5py", "scipy.optimize", "scipy.special", "scipy.sparse",
             "sklearn.base", "sklearn.utils.validation", "sklearn.utils.multiclass",
             "safetensors.numpy", "featlt.heads.workflow", "featlt.heads.selection",
             "featlt.heads.budget", "featlt.heads.io", "featlt.evaluation.metrics",
             "featlt.data.protocol", "featlt.data.validation", "featlt.progress"):
    importlib.import_module(name)

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key))

after_imports = status("VmRSS:")
from featlt.data.protocol import Protocol
from featlt.heads.workflow import fit_classifiers
store, heads, budget, out = sys.argv[1:5]
summary = fit_classifiers(store, heads.split(","), out, Protocol(seed=0), device="cpu",
                          n_bootstrap=200, overrides={"max_epochs": 2},
                          memory_budget_mb=float(budget))
print(json.dumps({"after_imports_mb": after_imports, "peak_mb": status("VmHWM:"),
                  "plan": summary["config"]["memory_budget"]}))
"""


def accuracy_store(folder: Path, seed: int) -> Path:
    """10 classes, 1000 ... 100 training rows (IF 10) stored class by class, 50 validation and
    1000 test rows per class, 16 features."""
    return write_synthetic_store(folder / f"acc{seed}.h5", n_classes=10, n_max=1000,
                                 imbalance_factor=10, dim=16, separation=3.5,
                                 n_test_per_class=1000, n_val_per_class=50, seed=seed)


def chunked_budget(store: Path, protocol: Protocol) -> float:
    """A budget whose chunks hold ``n_train / CHUNKS_PER_EPOCH`` rows for every streaming head."""
    with FeatureStore(store) as opened:
        sizes = view_sizes(opened, resolve_view(opened, protocol))
    rows = sizes.n_train / CHUNKS_PER_EPOCH
    return fixed_mb(STREAMING, sizes) + rows * sizes.dim * CHUNK_ELEMENT_BYTES / 2**20


@pytest.mark.slow
def test_streamed_heads_match_in_memory(tmp_path: Path) -> None:
    """One head per streamed path within 0.5 points of balanced accuracy of the in-memory path
    (mean of 3 seeds; chunks of about 1,170 of 4,084 training rows, stored class by class)."""
    assert set(ACCURACY_HEADS) <= set(STREAMING)
    bacc: dict[str, dict[bool, list[float]]] = {name: {False: [], True: []}
                                                for name in ACCURACY_HEADS}
    for seed in SEEDS:
        store = accuracy_store(tmp_path, seed)
        for streamed in (False, True):
            summary = fit_classifiers(
                store, ACCURACY_HEADS, tmp_path / f"heads{seed}{streamed}", Protocol(seed=seed),
                device="cpu", seed=seed, n_bootstrap=0,
                memory_budget_mb=chunked_budget(store, Protocol(seed=seed)) if streamed else None)
            if streamed:
                plan = summary["config"]["memory_budget"]
                n_train = summary["provenance"]["view"]["train"]["n"]
                assert plan["chunk_rows"] is not None and plan["chunk_rows"] * 3 < n_train
            else:
                assert "memory_budget" not in summary["config"]
            for name, row in summary["heads"].items():
                bacc[name][streamed].append(row["balanced_accuracy"])
    gaps = {name: 100 * (np.mean(runs[True]) - np.mean(runs[False]))
            for name, runs in bacc.items()}
    assert all(abs(gap) <= 0.5 for gap in gaps.values()), ", ".join(
        f"{name} {gap:+.2f}" for name, gap in gaps.items())


@pytest.mark.slow
def test_peak_memory_under_budget(tmp_path: Path) -> None:
    """A 77 MB store under a 48 MB budget: peak resident memory above the level after imports
    stays under it (measured in a subprocess)."""
    store = write_synthetic_store(tmp_path / "big.h5", n_classes=10, n_max=20000,
                                  imbalance_factor=20, dim=256, separation=3.0,
                                  n_test_per_class=500, n_val_per_class=50)
    budget = 48.0
    assert store.stat().st_size > 1.5 * budget * 2**20
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(store), "linear,ncm_cosine", str(budget),
         str(tmp_path / "heads")], capture_output=True, text=True, check=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    used = measured["peak_mb"] - measured["after_imports_mb"]
    assert measured["plan"]["chunk_rows"] is not None
    assert used < budget, measured


def test_standardisation_from_streamed_pass(synthetic_store: Path) -> None:
    """The one-pass chunk statistics equal the in-memory ones (standardize and pca_whiten)."""
    with FeatureStore(synthetic_store) as store:
        arrays = load_arrays(store, Protocol())
        X = arrays.X_train.astype(np.float64)
        streamed = StreamedFeatures(store, "train", arrays.view.train_rows, 97, X.shape[1])
        weights = np.linspace(0.5, 2.0, X.shape[0])
        for kind in ("standardize", "pca_whiten"):
            expected = fit_preprocessor(kind, X, weights)
            got = fit_preprocessor(kind, streamed, weights)
            for key, value in expected.items():
                np.testing.assert_allclose(got[key], value, rtol=1e-9, atol=1e-12)


def _named_minimum(message: str) -> float:
    return float(re.search(r"pass --memory-budget (\d+)", message).group(1))


def test_budget_below_minimum_is_refused_naming_it(synthetic_store: Path,
                                                   tmp_path: Path) -> None:
    with pytest.raises(FeatltError, match="below the smallest budget") as refused:
        fit_classifiers(synthetic_store, ["linear", "ncm_l2"], tmp_path / "a", device="cpu",
                        n_bootstrap=0, memory_budget_mb=1.0)
    minimum = _named_minimum(str(refused.value))
    summary = fit_classifiers(synthetic_store, ["linear", "ncm_l2"], tmp_path / "b",
                              device="cpu", n_bootstrap=0, overrides={"max_epochs": 2},
                              memory_budget_mb=minimum)
    assert summary["config"]["memory_budget"]["chunk_rows"] >= 1


@pytest.mark.parametrize("head", ["cws", "dlsa", "cibl"])
def test_head_that_cannot_stream_names_its_budget(synthetic_store: Path, tmp_path: Path,
                                                  head: str) -> None:
    """Refused below its in-memory need (naming it); at that budget it runs in memory."""
    with pytest.raises(FeatltError, match=f"{head} cannot stream") as refused:
        fit_classifiers(synthetic_store, [head, "linear"], tmp_path / "a", device="cpu",
                        n_bootstrap=0, memory_budget_mb=1.0)
    from featlt.heads.workflow import budget_head_data

    with FeatureStore(synthetic_store) as store:
        arrays, _, plan = budget_head_data(store, Protocol(), [head, "linear"],
                                           _named_minimum(str(refused.value)))
    assert plan.chunk_rows is None and isinstance(arrays.X_train, np.ndarray)


def test_cli_memory_budget(synthetic_store: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    refused = runner.invoke(main, ["fit-classifier", str(synthetic_store), "--head", "linear",
                                   "--memory-budget", "2", "-o", str(tmp_path / "a")])
    assert refused.exit_code == 2 and "pass --memory-budget" in refused.output
    for bad in ("0", "-5", "nan"):
        result = runner.invoke(main, ["fit-classifier", str(synthetic_store),
                                      "--memory-budget", bad, "-o", str(tmp_path / "b")])
        assert result.exit_code == 2
    minimum = _named_minimum(refused.output)
    done = runner.invoke(main, ["fit-classifier", str(synthetic_store), "--head", "ncm_cosine",
                                "--memory-budget", str(minimum), "--bootstrap", "0",
                                "--json", "-o", str(tmp_path / "c")])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["config"]["memory_budget"]["mb"] == minimum


class _ArrayRows:
    """A stand-in for :class:`StreamedFeatures` over an in-memory (n, D) array: what
    :func:`epoch_batches` reads (``chunk_rows``, ``len``, ``read``)."""

    def __init__(self, X: np.ndarray, chunk_rows: int) -> None:
        self.X, self.chunk_rows = X, chunk_rows

    def __len__(self) -> int:
        return self.X.shape[0]

    def read(self, positions: np.ndarray, raw_rows: int) -> np.ndarray:
        return self.X[positions].astype(np.float64)


def test_class_balanced_draws_of_a_rare_class_are_spread_over_the_epoch() -> None:
    """A rare class stored in one block is drawn about draws / C times: those draws go to many
    chunks, so every quarter of the epoch holds a fair share of them (in one chunk, crt lost
    6 points at 100k rows under a budget)."""
    import torch

    from featlt.heads.streaming import epoch_batches

    counts = [30000, 6000, 3000, 600, 60]  # stored class by class; blocks of 64 rows
    targets = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    rows = _ArrayRows(targets[:, None].astype(np.float32), chunk_rows=128 * 64)
    drawn = torch.cat([batch[1] for batch in epoch_batches(
        rows, targets, np.ones(targets.size), "class_balanced", np.random.default_rng(0),
        draws=targets.size, batch=256, device=torch.device("cpu"))]).numpy()
    assert drawn.size == targets.size
    per_class = np.bincount(drawn, minlength=len(counts))
    assert np.all(np.abs(per_class / drawn.size - 1 / len(counts)) < 0.02)  # balanced
    quarters = [np.count_nonzero(part == 4) for part in np.array_split(drawn, 4)]
    assert min(quarters) > 0.5 * per_class[4] / 4, quarters
