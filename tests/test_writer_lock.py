"""Issue 16, part 2: two writers of one output. A second run that would write an output while a
first still writes it stops at once, naming the first run's PID (featlt.output_lock); a run killed
with SIGKILL never blocks the next one. Real processes throughout: the first run is a subprocess,
stopped with SIGSTOP once it holds its lock so the second always meets it mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from featlt.cli import main
from featlt.output_lock import lock_path, output_lock
from featlt.store.feature_store import FeatureStore

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
PIXELS = ["--model", "pixels_8", "--workers", "0", "--threads", "1", "--batch-size", "4"]


def _run(*args: object) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """400 small images, 4 classes: long enough that the first run is stopped mid-way."""
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.integers(0, 255, (400, 8, 8, 3), dtype=np.uint8),
             y_train=np.arange(400) % 4, x_test=rng.integers(0, 255, (40, 8, 8, 3),
                                                             dtype=np.uint8),
             y_test=np.arange(40) % 4)
    return path


def _wait_for_holder(lock: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    """Return once ``process`` holds ``lock`` (its PID written there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lock.exists() and lock.read_text().strip() == str(process.pid):
            return
        if process.poll() is not None:
            raise AssertionError(f"the first run ended before holding its lock: "
                                 f"{process.communicate()}")
        time.sleep(0.005)
    raise AssertionError(f"{lock} never named PID {process.pid}")


def _start_extract(data: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "featlt", "extract", *PIXELS, "--data", f"npz:{data}", "-o",
         str(out), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _stopped_first_run(data: Path, out: Path) -> subprocess.Popen[str]:
    first = _start_extract(data, out)
    _wait_for_holder(lock_path(out), first)
    os.kill(first.pid, signal.SIGSTOP)
    return first


def test_a_second_extract_is_refused_while_the_first_writes(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "X.h5"
    first = _stopped_first_run(data, out)
    try:
        for extra in (["--overwrite"], [], ["--resume"], ["--skip-existing"]):
            second = _run("extract", *PIXELS, "--data", f"npz:{data}", "-o", out, *extra)
            assert second.exit_code == 2, second.output
            assert f"another featlt run (PID {first.pid}) is writing it now" in second.output
            assert "--overwrite" not in second.output and "--resume" not in second.output
    finally:
        os.kill(first.pid, signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-2000:]
    assert f"wrote {out}" in stdout
    with FeatureStore(out) as store:
        assert store.complete and store.info("train").n_written == 400
    assert not lock_path(out).exists()


def test_a_killed_holder_never_blocks_the_next_run(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "X.h5"
    first = _stopped_first_run(data, out)
    first.kill()  # SIGKILL: no cleanup runs; the kernel drops the lock
    first.wait(timeout=60)
    assert lock_path(out).read_text().strip() == str(first.pid)  # its file stays, unlocked
    after = _run("extract", *PIXELS, "--data", f"npz:{data}", "-o", out, "--overwrite")
    assert after.exit_code == 0, after.output
    with FeatureStore(out) as store:
        assert store.complete and store.info("train").n_written == 400
    assert not lock_path(out).exists()


HOLD = """
import os, sys, time
from contextlib import ExitStack
from featlt.output_lock import output_lock
with ExitStack() as stack:
    for arg in sys.argv[1:]:
        kind, path = arg.split("=", 1)
        stack.enter_context(output_lock(path, folder=kind == "folder"))
    if os.environ.get("FORK_AND_DIE"):
        ready, started = os.pipe()
        if os.fork() == 0:  # a child (like a decode worker) outlives its killed parent
            os.write(started, b"1")  # featlt's after-fork hook has run by now
            time.sleep(60)
            os._exit(0)
        os.read(ready, 1)
        print("held", flush=True)
        os.kill(os.getpid(), 9)
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(*outputs: str, **env: str) -> subprocess.Popen[str]:
    """A process holding the locks of ``outputs`` (``file=PATH`` or ``folder=PATH``)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, *outputs], stdout=subprocess.PIPE,
                              text=True, env={**ENV, **env})
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_sweep_locks_each_output(data: Path, tmp_path: Path) -> None:
    held = tmp_path / "f" / "pixels_8.h5"
    holder = _holder(f"file={held}")
    try:
        result = _run("extract", "--model", "pixels_8", "--model", "pixels_4", "--workers", "0",
                      "--data", f"npz:{data}", "-o", tmp_path / "f" / "{model}.h5")
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2
    assert f"--model pixels_8 ({held}): output {held}: another featlt run (PID {holder.pid})" \
        in result.output
    assert not held.exists() and (tmp_path / "f" / "pixels_4.h5").is_file()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from featlt.data.synthetic import write_synthetic_store

    return write_synthetic_store(tmp_path_factory.mktemp("s") / "A.h5", n_classes=3, n_max=20,
                                 dim=4, n_test_per_class=5)


@pytest.mark.parametrize(("args", "option"), [
    (["fit-classifier", "{store}", "--head", "ncm_l2", "-o", "{out}"], "--output"),
    (["evaluate-separability", "{store}", "--plots", "{out}"], "--plots"),
    (["rank", "{store}", "--full", "--head", "ncm_l2", "--heads-dir", "{out}"], "--heads-dir"),
    (["demo", "--quick", "-o", "{out}"], "--out-dir"),
])
def test_output_folders_take_the_same_lock(store: Path, tmp_path: Path, args: list[str],
                                           option: str) -> None:
    out = tmp_path / "out"
    holder = _holder(f"folder={out}")
    try:
        result = _run(*(a.format(store=store, out=out) for a in args))
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2, result.output
    assert f"{option} {out}: another featlt run (PID {holder.pid}) is writing it now" in \
        result.output
    assert sorted(p.name for p in out.iterdir()) == [".featlt.lock"]  # the holder's, nothing new


def test_file_outputs_take_the_lock_too(store: Path, tmp_path: Path) -> None:
    csv = tmp_path / "ranking.csv"
    holder = _holder(f"file={csv}")
    try:
        result = _run("rank", store, "-o", csv)
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2 and f"PID {holder.pid}" in result.output
    assert not csv.exists()
    assert _run("rank", store, "-o", csv).exit_code == 0  # the holder is gone: it runs
    assert csv.is_file() and not lock_path(csv).exists()


def test_a_forked_child_of_a_killed_holder_does_not_keep_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "X.h5"
    holder = _holder(f"file={out}", FORK_AND_DIE="1")
    holder.wait(timeout=60)
    assert holder.returncode == -9
    with output_lock(out) as lock:  # at once, although the holder's child still sleeps
        assert lock is not None and lock.read_text().strip() == str(os.getpid())


def test_the_lock_is_released_and_reentrant_in_one_process(tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "X.h5"
    with output_lock(out) as lock, output_lock(out) as again:
        assert lock == again and lock is not None and lock.exists()
    assert not (tmp_path / "new").exists()  # the folders made for the lock are gone again
