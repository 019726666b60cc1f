"""Issue 16, the minor command-line cases: each a clear message with exit status 2 and no traceback
(or, for SIGTERM, no debris) instead of what was reported."""

from __future__ import annotations

import errno
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from conftest import mount_tmpfs

from featlt.cli import main

BIG = str(2**70)  # beyond 64 bits


def _run(*args: object) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert not isinstance(result.exception, (OverflowError, OSError)), repr(result.exception)
    return result


def _debris(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if ".tmp-" in p.name)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from featlt.data.synthetic import write_synthetic_store

    return write_synthetic_store(tmp_path_factory.mktemp("s") / "A.h5", n_classes=4, n_max=40,
                                 dim=8, n_test_per_class=30)


@pytest.fixture(scope="module")
def head(store: Path) -> Path:
    out = store.parent / "heads"
    assert _run("fit-classifier", store, "--head", "ncm_l2", "--bootstrap", "0", "-o",
                out).exit_code == 0
    return out / "ncm_l2"


# integers beyond 64 bits, bootstrap without end -------------------------------------------------
@pytest.mark.parametrize(("args", "message"), [
    (["extract", "--model", "pixels_8", "--data", "digits", "-o", "{tmp}/f.h5", "--batch-size",
      BIG], f"{BIG} is too large; pass at most 2147483647"),
    (["extract", "--model", "pixels_8", "--data", "digits", "-o", "{tmp}/f.h5", "--threads", BIG],
     f"{BIG} is too large; pass at most 4096"),
    (["extract", "--model", "pixels_8", "--data", "digits", "-o", "{tmp}/f.h5", "--workers", BIG],
     f"{BIG} is too large; pass at most 256"),
    (["info", "{store}", "--threads", BIG], f"{BIG} is too large; pass at most 4096"),
    (["fit-classifier", "{store}", "-o", "{tmp}/h", "--max-epochs", BIG], "is too large"),
    (["fit-classifier", "{store}", "-o", "{tmp}/h", "--bootstrap", "100000000000000000000000"],
     "100000000000000000000000 is too large; pass at most 100000"),
    (["rank", "{store}", "--bootstrap", "100000000000000000000000"],
     "is too large; pass at most 100000"),
    (["rank", "{store}", "--max-epochs", BIG], "is too large"),
    (["evaluate-separability", "{store}", "--knn-k", BIG], "is too large"),
])
def test_huge_numbers_are_refused_by_name(store: Path, tmp_path: Path, args: list[str],
                                          message: str) -> None:
    result = _run(*(a.format(store=store, tmp=tmp_path) for a in args))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert list(tmp_path.iterdir()) == []


def _commands(group: click.Group = main) -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from ((f"{name} {sub}", c) for sub, c in _commands(command))
        else:
            yield name, command


def test_every_integer_option_has_an_upper_bound() -> None:
    unbounded = [f"{name} {param.name}" for name, command in _commands()
                 for param in command.params
                 if isinstance(param.type, click.types.IntParamType)
                 and not getattr(param, "count", False)
                 and getattr(param.type, "max", None) is None
                 and getattr(param.type, "cap", None) is None]
    assert unbounded == []


# SIGTERM ----------------------------------------------------------------------------------------
def test_sigterm_during_fit_classifier_leaves_nothing(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "heads"
    run = subprocess.Popen(
        [sys.executable, "-m", "featlt", "fit-classifier", str(store), "--head", "ncm_l2",
         "--head", "ncm_cosine",
         "--bootstrap", "100000", "--threads", "1", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 240
    while not _debris(tmp_path):  # the first head is saved under its temporary names
        assert run.poll() is None, ("finished before a temporary file was seen",
                                    run.communicate())
        assert time.monotonic() < deadline, "no temporary file appeared"
        time.sleep(0.01)
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    assert not out.exists() and _debris(tmp_path) == []  # no folder of hidden temporaries


# a file output given as a folder ----------------------------------------------------------------
FILE_OUTPUTS = [
    (["rank", "{store}", "-o", "{out}"], "ranking.csv"),
    (["rank", "{store}", "--plot", "{out}"], "ranking.png"),
    (["evaluate-separability", "{store}", "-o", "{out}"], "report.json"),
    (["predict", "{head}", "{store}", "-o", "{out}"], "predictions.csv"),
    (["extract", "--model", "pixels_8", "--data", "digits", "-o", "{out}"], "features.h5"),
    (["weights", "convert", "{store}", "--model", "resnet18", "-o", "{out}"],
     "weights.safetensors"),
]


@pytest.mark.parametrize(("args", "example"), FILE_OUTPUTS, ids=lambda v: str(v)[:40])
def test_a_file_output_with_a_trailing_slash_is_refused(
    store: Path, head: Path, tmp_path: Path, args: list[str], example: str
) -> None:
    out = f"{tmp_path}/new/"
    result = _run(*(a.format(store=store, head=head, out=out) for a in args))
    assert result.exit_code == 2, result.output
    assert f"{out}: ends with '/', so it names a folder" in result.output
    assert f"such as {tmp_path}/new/{example}" in result.output
    assert list(tmp_path.iterdir()) == []  # no file named 'new'


@pytest.mark.parametrize(("args", "example"), FILE_OUTPUTS[:4], ids=lambda v: str(v)[:40])
def test_a_file_output_naming_an_existing_folder_is_refused(
    store: Path, head: Path, tmp_path: Path, args: list[str], example: str
) -> None:
    result = _run(*(a.format(store=store, head=head, out=tmp_path) for a in args))
    assert result.exit_code == 2, result.output
    assert f"{tmp_path}: is a folder, but this writes one file; pass a file path such as " \
           f"{tmp_path / example}" in result.output
    assert list(tmp_path.iterdir()) == []


# read-only disks: the output is named, not its temporary file -----------------------------------
def _read_only_temporaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write and removal of a temporary file fails as on a read-only disk."""
    real_open, real_unlink = pathlib.Path.open, pathlib.Path.unlink

    def denied(path: Path) -> OSError:
        return OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    def open_(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if ".tmp-" in self.name and mode[0] in "wax":
            raise denied(self)
        return real_open(self, mode, *args, **kwargs)

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if ".tmp-" in self.name:
            raise denied(self)
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(pathlib.Path, "open", open_)
    monkeypatch.setattr(pathlib.Path, "unlink", unlink)


@pytest.mark.parametrize(("args", "name"), [
    (["evaluate-separability", "{store}", "--pca-dim", "4", "-o", "{out}"], "report.json"),
    (["rank", "{store}", "-o", "{out}"], "ranking.csv"),
    (["predict", "{head}", "{store}", "-o", "{out}"], "predictions.csv"),
])
def test_a_read_only_error_names_the_output_not_its_temporary(
    store: Path, head: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
    name: str
) -> None:
    out = tmp_path / name
    _read_only_temporaries(monkeypatch)
    result = _run(*(a.format(store=store, head=head, out=out) for a in args))
    assert result.exit_code == 2, result.output
    assert f"{out}: cannot be written (Read-only file system)" in result.output, result.output
    assert ".tmp-" not in result.output


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs; skipped where this process cannot mount one."""
    yield from mount_tmpfs(tmp_path / "ro", "size=64k,ro")


@pytest.mark.parametrize("args", [
    ["evaluate-separability", "{store}", "--pca-dim", "4", "-o", "{ro}/r.json"],
    ["evaluate-separability", "{store}", "--pca-dim", "4", "--plots", "{ro}/plots"],
    ["rank", "{store}", "-o", "{ro}/r.csv"],
    ["rank", "{store}", "--plot", "{ro}/r.png"],
    ["fit-classifier", "{store}", "--head", "ncm_l2", "--bootstrap", "0", "-o", "{ro}/h"],
])
def test_a_read_only_disk_is_named_with_the_output(store: Path, read_only_disk: Path,
                                                   args: list[str]) -> None:
    result = _run(*(a.format(store=store, ro=read_only_disk) for a in args))
    assert result.exit_code == 2, result.output
    assert "cannot be written (Read-only file system)" in result.output
    assert f"{read_only_disk}/" in result.output and ".tmp-" not in result.output


# a read error is called a read error ------------------------------------------------------------
def _unreadable(path: Path) -> Any:
    def fail(*_: object, **__: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    return fail


def test_a_read_error_inside_a_run_that_writes_is_called_a_read_error(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import featlt.heads.workflow

    monkeypatch.setattr(featlt.heads.workflow, "load_head_data", _unreadable(store))
    result = _run("fit-classifier", store, "--head", "ncm_l2", "-o", tmp_path / "h")
    assert result.exit_code == 2
    assert f"file {store}: cannot be read (Permission denied); make it readable" in \
        result.output, result.output
    assert "cannot be written" not in result.output and not (tmp_path / "h").exists()


def test_a_read_error_no_writer_caught_is_called_a_read_error(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import featlt.rank.ranking

    monkeypatch.setattr(featlt.rank.ranking, "rank_files", _unreadable(store))
    result = _run("rank", store, "-o", tmp_path / "r.csv")
    assert result.exit_code == 2
    assert f"file {store}: cannot be read (Permission denied)" in result.output, result.output
    assert "writable" not in result.output


def test_a_write_error_no_writer_caught_names_the_output(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import featlt.rank.ranking

    out = tmp_path / "r.csv"
    monkeypatch.setattr(featlt.rank.ranking, "rank_files", _unreadable(out))
    result = _run("rank", store, "-o", out)
    assert result.exit_code == 2
    assert f"--output {out}: cannot be written (Permission denied)" in result.output, \
        result.output


def test_sigterm_handler_is_restored_after_a_command(store: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    assert _run("info", store).exit_code == 0
    assert signal.getsignal(signal.SIGTERM) is before

