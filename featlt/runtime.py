"""Process-wide settings every command shares: offline mode, threads, device, seed, output.

Nothing here imports torch, timm or faiss at module level, so ``featlt --help`` stays instant.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from featlt.errors import FeatltError

Device = Literal["auto", "cpu", "cuda"]

log = logging.getLogger("featlt")


@dataclass(frozen=True)
class Runtime:
    """The common options of every command (docs/architecture.md, "Contracts")."""

    device: Device = "auto"
    threads: int | None = None  # None: all cores for torch, 1 for faiss (see faiss_ops)
    seed: int = 0
    json_output: bool = False  # stdout carries one JSON document; logs go to stderr
    verbosity: int = 0
    allow_download: bool = False

    def apply(self) -> None:
        """Set the environment before any heavy import: offline hub, logging, thread counts."""
        set_offline(not self.allow_download)
        configure_logging(self.verbosity)
        if self.threads is not None:
            if self.threads < 1:
                raise FeatltError(f"--threads {self.threads}: must be at least 1; pass e.g. 2")
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                os.environ[var] = str(self.threads)


def set_offline(offline: bool = True) -> None:
    """Make the Hugging Face hub fail fast unless downloads are allowed.

    Must run before timm is imported; an already-set ``HF_HUB_OFFLINE`` is respected.
    """
    if offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    else:
        os.environ["HF_HUB_OFFLINE"] = "0"


def configure_logging(verbosity: int) -> None:
    """Log to stderr: warnings by default, info with -v, debug with -vv."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def resolve_torch_device(requested: Device) -> str:
    """Return ``"cuda"`` or ``"cpu"``; an explicit ``cuda`` without a GPU is an error."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise FeatltError(
            "--device cuda: no CUDA GPU is visible to torch; use --device auto or --device cpu"
        )
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


class Terminated(SystemExit):
    """SIGTERM arrived: the run stops like after Ctrl-C, cleanup (``finally``) included."""


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` (exit status 143) for the block.

    Python's default SIGTERM kills the process without running ``finally`` blocks, so
    :func:`atomic_outputs` could not discard its hidden temporary files (a killed
    ``fit-classifier`` left a final-name folder of them). Outside the main thread (where no
    handler can be set) nothing changes.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    owner = os.getpid()

    def stop(signum: int, _frame: Any) -> None:
        if os.getpid() != owner:  # a forked child (a decode worker): die as it would have
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        print("featlt: stopped by SIGTERM; unfinished outputs are discarded", file=sys.stderr)
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cache_dir() -> Path:
    """The featlt cache folder: ``$FEATLT_CACHE`` or ``~/.cache/featlt`` (created on demand)."""
    path = Path(os.environ.get("FEATLT_CACHE", Path.home() / ".cache" / "featlt")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, dataclasses and paths into plain JSON types."""
    import dataclasses

    import numpy as np

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


# Fixes by errno of a failed write; anything else gets the last, general one.
_WRITE_FIXES = {
    errno.ENOSPC: "free disk space or choose an output on another disk, then rerun",
    errno.EDQUOT: "free space in your disk quota or choose another output, then rerun",
    errno.EACCES: "choose a writable output path or fix its permissions, then rerun",
    errno.EPERM: "choose a writable output path or fix its permissions, then rerun",
    errno.EROFS: "the disk is read-only; choose an output on a writable disk, then rerun",
}


def os_error_errno(err: BaseException) -> int | None:
    """The errno of an OS error, also when HDF5 only quotes it in its message ("errno = 28")."""
    if isinstance(err, OSError) and err.errno:
        return int(err.errno)
    found = re.search(r"errno = (\d+)", str(err))
    return int(found.group(1)) if found else None


def fault_cause_and_fix(err: BaseException) -> tuple[str, str]:
    """(cause, fix) of a failed file operation, e.g. ("No space left on device", "free ...")."""
    code = os_error_errno(err)
    cause = os.strerror(code) if code else (getattr(err, "strerror", None) or str(err))
    return cause, _WRITE_FIXES.get(code or 0, "check the disk and the path, then rerun")


def write_error(path: str | Path, err: BaseException, what: str = "output") -> FeatltError:
    """A :class:`FeatltError` for a failed write of ``path``: the path, the cause and the fix."""
    cause, fix = fault_cause_and_fix(err)
    return FeatltError(f"{what} {path}: cannot be written ({cause}); {fix}")


# Fixes by errno of a failed read; anything else gets the last, general one.
_READ_FIXES = {
    errno.ENOENT: "check the path (it may have been moved or deleted), then rerun",
    errno.EACCES: "make it readable (e.g. chmod u+r) or pass a readable copy, then rerun",
    errno.EPERM: "make it readable (e.g. chmod u+r) or pass a readable copy, then rerun",
    errno.EIO: "the disk reported an I/O error; copy the file to a healthy disk, then rerun",
    errno.EISDIR: "pass a file, not a folder, then rerun",
}


def read_error(path: str | Path, err: BaseException, what: str = "input") -> FeatltError:
    """A :class:`FeatltError` for a failed read of ``path``: the path, the cause and the fix."""
    code = os_error_errno(err)
    cause = fault_cause_and_fix(err)[0]
    fix = _READ_FIXES.get(code or 0, "check the file and the path, then rerun")
    return FeatltError(f"{what} {path}: cannot be read ({cause}); {fix}")


def error_filename(err: BaseException) -> str | None:
    """The file an OS error names: its ``filename``, or the one HDF5 quotes ("name = '...'")."""
    filename = getattr(err, "filename", None)
    if filename is not None:
        return os.fsdecode(filename) if isinstance(filename, bytes) else str(filename)
    found = re.search(r"name = '([^']*)'", str(err))
    return found.group(1) if found else None


def os_error_text(err: OSError, outputs: Iterable[tuple[str, str | Path]] = ()) -> str:
    """A one-line message for an OS error no featlt code caught: the path, the cause, a fix.

    ``outputs``: (option, path) of the files and folders the run writes; an error naming one of
    them, a file inside one of their folders or one of their temporary names is worded as a
    failed write of that output, an error naming any other file as a failed read of it.
    """
    filename = error_filename(err)
    if filename is None:
        cause, fix = fault_cause_and_fix(err)
        return f"a file featlt used: {cause}; {fix}"
    for option, output in outputs:
        if _belongs_to(filename, Path(output)):
            return str(write_error(output, err, option))
    return str(read_error(filename, err, "file"))


def _belongs_to(filename: str, output: Path) -> bool:
    """True when ``filename`` is ``output``, its temporary or lock file, or lies inside it."""
    name = Path(os.path.abspath(filename))
    target = Path(os.path.abspath(output))
    beside = name.name.startswith((f".{target.name}.tmp-", f"{target.name}.partial",
                                   f"{target.name}.lock"))
    return name == target or target in name.parents or (name.parent == target.parent and beside)


def make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created, deepest first.

    If creating them fails, the ones already made are removed again before the error propagates.
    """
    created: list[Path] = []
    current = folder
    while not current.exists() and current != current.parent:
        created.append(current)
        current = current.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        remove_empty_folders(created)
        raise
    return created


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove folders a failed write created, deepest first, while they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def temporary_name(path: Path) -> Path:
    """The hidden temporary name beside ``path`` that a file is written under before its rename."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_output(path: str | Path, what: str = "output") -> Iterator[Path]:
    """Write a file under a temporary name beside ``path``; rename it onto ``path`` when complete.

    Yields the temporary path to write. On success it replaces ``path`` in one rename; on any
    failure (an exception, disk full, permission denied) the temporary file and every folder made
    for it are removed, ``path`` keeps its previous content, and an ``OSError`` becomes a
    :class:`FeatltError` naming ``path``, the cause and the fix. Inside :func:`atomic_outputs`
    the rename waits for the rest of that run's files.
    """
    batch = _BATCH.get()
    if batch is not None:
        yield batch.add(path)
        return
    with atomic_outputs(what) as own:
        yield own.add(path)


class OutputBatch:
    """Files of one run written under temporary names, renamed into place together at the end."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._pending: dict[Path, Path] = {}  # target -> temporary, in the order added
        self._created: list[Path] = []

    def add(self, target: str | Path) -> Path:
        """The temporary path to write ``target`` under (its folder is created)."""
        target = Path(target)
        if target not in self._pending:
            self._created += make_folders(target.parent)
            self._pending[target] = temporary_name(target)
        return self._pending[target]

    def target_of(self, filename: Any) -> str:
        """The target a temporary file stands for (for messages); without a name, the file
        being written last."""
        targets = {str(tmp): str(target) for target, tmp in self._pending.items()}
        if filename is None:
            return str(next(reversed(self._pending))) if self._pending else "a file"
        return targets.get(str(filename), str(filename))

    def commit(self) -> None:
        for target, tmp in self._pending.items():
            os.replace(tmp, target)
        self._pending.clear()

    def owns(self, filename: Any) -> bool:
        """True when an OS error naming ``filename`` came from writing this batch: one of its
        targets, their temporary names or the folders made for them (None: cannot tell, so
        yes)."""
        if filename is None:
            return True
        name = Path(os.path.abspath(os.fsdecode(filename)))
        mine = {Path(os.path.abspath(p)) for pair in self._pending.items() for p in pair}
        mine |= {Path(os.path.abspath(p)) for p in self._created}
        mine |= {p.parent for p in mine}
        return name in mine

    def discard(self) -> None:
        """Remove every temporary file and the folders made for them; never raises (a read-only
        disk must not turn the real error into one about a temporary name)."""
        for tmp in self._pending.values():
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
        remove_empty_folders(sorted(self._created, key=lambda p: len(p.parts), reverse=True))


_BATCH: ContextVar[OutputBatch | None] = ContextVar("featlt_output_batch", default=None)


@contextmanager
def atomic_outputs(what: str = "output") -> Iterator[OutputBatch]:
    """:func:`atomic_output` for every file a block writes: all are renamed into place once the
    block has written them all; on a failure no target changes, and temporary files and new
    empty folders are removed. A block inside another joins the outer one.
    """
    outer = _BATCH.get()
    if outer is not None:
        yield outer
        return
    batch = OutputBatch(what)
    token = _BATCH.set(batch)
    try:
        yield batch
        batch.commit()
    except OSError as err:
        batch.discard()
        filename = error_filename(err)
        if not batch.owns(filename):  # reading an input inside the block failed, not a write
            raise read_error(filename, err, "file") from err
        raise write_error(batch.target_of(err.filename), err, what) from err
    except BaseException:
        batch.discard()
        raise
    finally:
        _BATCH.reset(token)


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    """Write JSON to ``path`` via a temporary file and rename, so no half-written file remains."""
    text = json.dumps(to_jsonable(payload), indent=2, sort_keys=False) + "\n"
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when ``a`` and ``b`` name one file or folder: the same path once symlinks are
    resolved, or two hard links of one inode (``st_dev``/``st_ino``)."""
    a, b = Path(a).expanduser(), Path(b).expanduser()
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samestat(os.stat(a), os.stat(b))
    except (OSError, ValueError):  # either does not exist (yet): not the same file
        return False


def refuse_output_onto_inputs(
    output: str | Path, inputs: Iterable[str | Path], option: str = "--output",
    written: str | Path | None = None,
) -> None:
    """Refuse an output that is one of the run's inputs, before anything is written.

    The one check of every output against every input (:func:`same_file`: the same path, a
    symlink to it or a hard link of it).

    Args:
        output: the output as the user gave it.
        inputs: the files (and folders) the run reads.
        option: the option that names ``output``, for the message.
        written: for an output folder, the file inside it that the run would replace (checked
            instead of ``output`` itself).
    Raises:
        FeatltError: naming the option, the input and the fix.
    """
    target = output if written is None else written
    for item in inputs:
        if same_file(target, item):
            what = "is also an input" if written is None else (
                f"would replace {written}, which is also an input")
            raise FeatltError(
                f"{option} {output}: {what} of this run ({item}); writing it would destroy the "
                "input; choose another output path"
            )
