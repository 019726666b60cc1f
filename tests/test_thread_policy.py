"""The forward's thread count: the rule on measured times, and what a run records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import featlt.extract.pipeline
from featlt.extract.pipeline import ExtractConfig, extract_features
from featlt.extract.thread_policy import (
    CONTENTION,
    choose_threads,
    fixed_threads,
    seconds_per_image,
)
from featlt.runtime import Runtime
from featlt.store.feature_store import FeatureStore


def test_heavy_forward_gets_every_core():
    """lite0 at 160 px on 2 cores: decode 1.6 ms, forward 12.7 ms (2 threads), 22.4 ms (1)."""
    choice = choose_threads(2, 1, 1.6e-3, {2: 12.7e-3, 1: 22.4e-3})
    assert choice.threads == 2 and choice.reason.startswith("measured: every core")
    assert "saves 9.70 ms per image > 1.25 x decode 1.60 ms" in choice.reason
    assert choice.decode_ms == 1.6 and choice.forward_ms == {2: 12.7, 1: 22.4}


def test_light_forward_leaves_the_worker_its_core():
    """mobilenetv3_small at 96 px: decode 1.5 ms, forward 2.7 ms (2 threads), 3.4 ms (1)."""
    choice = choose_threads(2, 1, 1.5e-3, {2: 2.7e-3, 1: 3.4e-3})
    assert choice.threads == 1 and "the decode worker(s) keep their cores" in choice.reason
    assert "saves 0.70 ms per image <= 1.25 x decode 1.50 ms" in choice.reason


def test_rule_is_the_saving_against_contended_decoding():
    """8 cores, 2 workers: every core iff forward[6] - forward[8] > CONTENTION * decode."""
    decode = 1e-3
    just_below = CONTENTION * decode * 0.99
    just_above = CONTENTION * decode * 1.01
    assert choose_threads(8, 2, decode, {8: 5e-3, 6: 5e-3 + just_below}).threads == 6
    assert choose_threads(8, 2, decode, {8: 5e-3, 6: 5e-3 + just_above}).threads == 8


def test_fixed_threads_when_nothing_needs_measuring():
    assert fixed_threads(3, "cpu", 8, 2).threads == 3  # --threads wins
    assert fixed_threads(None, "cuda", 16, 15).threads == 1
    assert fixed_threads(None, "cpu", 2, 0).threads == 2  # decoding in the main process
    assert fixed_threads(None, "cpu", 1, 1).threads == 1  # the worker has no core of its own
    assert fixed_threads(None, "cpu", 2, 1) is None  # measured


def test_seconds_per_image_sets_threads_and_divides_by_the_images_computed():
    import torch

    calls = []
    before = torch.get_num_threads()
    try:
        seconds = seconds_per_image(lambda x: calls.append(torch.get_num_threads()), "batch",
                                    threads=1, images=64)
    finally:
        torch.set_num_threads(before)
    assert calls == [1] and 0 <= seconds < 1e-3


@pytest.fixture
def arrays(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(2), 8)
    path = tmp_path / "data.npz"
    np.savez(path, x_train=rng.integers(0, 255, (16, 16, 16, 3), dtype=np.uint8),
             y_train=labels)
    return path


def _extract(arrays: Path, output: Path, threads: int | None, workers: int) -> dict:
    config = ExtractConfig(model="test-efficientnet-random", data=f"npz:{arrays}", output=output,
                           resolution=32, batch_size=8, workers=workers)
    extract_features(config, Runtime(threads=threads))
    with FeatureStore(output) as store:
        return store.provenance["run"]


def test_run_measures_threads_beside_a_worker(arrays, tmp_path, monkeypatch):
    monkeypatch.setattr(featlt.extract.pipeline.os, "cpu_count", lambda: 2)
    run = _extract(arrays, tmp_path / "a.h5", threads=None, workers=1)
    assert run["threads"] in (1, 2) and run["threads_choice"]["reason"].startswith("measured")
    assert run["threads_choice"]["decode_ms"] > 0
    assert set(run["threads_choice"]["forward_ms"]) == {"1", "2"}


@pytest.mark.parametrize(("threads", "workers", "expected", "reason"), [
    (1, 1, 1, "--threads"),
    (None, 0, 2, "every core: no decode worker has a core of its own"),
])
def test_fixed_threads_are_recorded(arrays, tmp_path, monkeypatch, threads, workers, expected,
                                    reason):
    monkeypatch.setattr(featlt.extract.pipeline.os, "cpu_count", lambda: 2)
    run = _extract(arrays, tmp_path / "a.h5", threads=threads, workers=workers)
    assert run["threads"] == expected
    assert run["threads_choice"] == {"reason": reason, "decode_ms": None, "forward_ms": None}
