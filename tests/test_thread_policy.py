"""The forward's thread count: the trial on the first batches, and what a run records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import featlt.extract
from featlt.extract import ExtractConfig, extract_features
from featlt.runtime import Runtime
from featlt.store import FeatureStore
from featlt.thread_policy import CLEAR_MARGIN, MAX_ROUNDS, WARMUP_BATCHES, ThreadTrial


def _run(trial: ThreadTrial, seconds_per_image: dict[int, float], batches: int) -> list[int]:
    """Feed ``batches`` batches of 10 images at fixed per-image times; the threads used."""
    used = []
    for _ in range(batches):
        threads = trial.next_threads()
        used.append(threads)
        trial.record(threads, seconds_per_image[threads] * 10, 10)
    return used


def test_clear_winner_is_kept_after_one_round():
    trial = ThreadTrial((2, 1))
    used = _run(trial, {2: 0.017, 1: 0.030}, 8)  # lite0-like: 2 threads much faster
    assert used == [2] * WARMUP_BATCHES + [2, 1] + [2] * (8 - WARMUP_BATCHES - 2)
    choice = trial.choice()
    assert choice.threads == 2 and choice.reason.startswith("trial: fastest")
    assert choice.trial_ms_per_image == {2: [17.0], 1: [30.0]}


def test_close_race_runs_every_round_and_picks_the_faster():
    trial = ThreadTrial((2, 1))
    times = {2: 0.0019, 1: 0.0017}  # within CLEAR_MARGIN: the slower thread count loses anyway
    assert times[2] / times[1] < CLEAR_MARGIN
    used = _run(trial, times, WARMUP_BATCHES + 2 * MAX_ROUNDS + 3)
    assert used[WARMUP_BATCHES:WARMUP_BATCHES + 2 * MAX_ROUNDS] == [2, 1] * MAX_ROUNDS
    assert used[-3:] == [1, 1, 1] and trial.choice().threads == 1
    assert len(trial.choice().trial_ms_per_image[1]) == MAX_ROUNDS


def test_warm_up_batch_is_not_timed_and_short_runs_keep_the_best_so_far():
    trial = ThreadTrial((2, 1))
    trial.record(trial.next_threads(), 100.0, 10)  # a slow first batch (worker start)
    assert trial.choice().reason == "trial: the run ended before any timed batch"
    assert trial.choice().threads == 2
    trial.record(trial.next_threads(), 0.5, 10)  # 2 threads
    choice = trial.choice()
    assert choice.threads == 2 and "ended during the trial" in choice.reason
    assert choice.trial_ms_per_image == {2: [50.0], 1: []}


def test_single_candidate_is_no_trial():
    trial = ThreadTrial((3,), "--threads")
    assert _run(trial, {3: 0.01}, 3) == [3, 3, 3]
    assert trial.choice() == trial.choice().__class__(3, "--threads", None)


@pytest.fixture
def arrays(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(2), 8)
    path = tmp_path / "data.npz"
    np.savez(path, x_train=rng.integers(0, 255, (16, 16, 16, 3), dtype=np.uint8),
             y_train=labels)
    return path


def _extract(arrays: Path, output: Path, threads: int | None, workers: int,
             batch_size: int = 8) -> dict:
    config = ExtractConfig(model="test-efficientnet-random", data=f"npz:{arrays}", output=output,
                           resolution=32, batch_size=batch_size, workers=workers)
    extract_features(config, Runtime(threads=threads))
    with FeatureStore(output) as store:
        return store.provenance["run"]


def test_run_tries_threads_beside_a_worker(arrays, tmp_path, monkeypatch):
    monkeypatch.setattr(featlt.extract.os, "cpu_count", lambda: 2)
    run = _extract(arrays, tmp_path / "a.h5", threads=None, workers=1, batch_size=2)
    assert run["threads_candidates"] == [2, 1] and run["threads"] in (1, 2)
    assert run["threads_choice"]["reason"].startswith("trial: fastest")
    trial = run["threads_choice"]["trial_ms_per_image"]
    assert set(trial) == {"2", "1"} and all(trial["1"]) and len(trial["2"]) == len(trial["1"])


@pytest.mark.parametrize(("threads", "workers", "expected", "reason"), [
    (1, 1, 1, "--threads"),
    (None, 0, 2, "every core: no decode worker has a core of its own"),
])
def test_fixed_threads_are_recorded(arrays, tmp_path, monkeypatch, threads, workers, expected,
                                    reason):
    monkeypatch.setattr(featlt.extract.os, "cpu_count", lambda: 2)
    run = _extract(arrays, tmp_path / "a.h5", threads=threads, workers=workers)
    assert run["threads"] == expected
    assert run["threads_choice"] == {"reason": reason, "trial_ms_per_image": None}
