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
from contextlib import contextmanager
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


def os_error_text(err: OSError) -> str:
    """A one-line message for an OS error no featlt code caught: the path, the cause, a fix."""
    cause, fix = fault_cause_and_fix(err)
    where = err.filename if err.filename is not None else "a file featlt used"
    return f"{where}: {cause}; {fix}"


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created, deepest first."""
    created: list[Path] = []
    current = folder
    while not current.exists() and current != current.parent:
        created.append(current)
        current = current.parent
    folder.mkdir(parents=True, exist_ok=True)
    return created


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed write created, deepest first, where they are still empty."""
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
            self._created += _make_folder(target.parent)
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

    def discard(self) -> None:
        for tmp in self._pending.values():
            tmp.unlink(missing_ok=True)
        _remove_empty(sorted(self._created, key=lambda p: len(p.parts), reverse=True))


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


def refuse_output_onto_inputs(
    output: str | Path, inputs: Iterable[str | Path], option: str = "--output"
) -> None:
    """Refuse an output that is one of the run's inputs, before anything is written.

    Raises:
        FeatltError: naming the option, the input and the fix.
    """
    target = os.path.realpath(Path(output).expanduser())
    for item in inputs:
        if target == os.path.realpath(Path(item).expanduser()):
            raise FeatltError(
                f"{option} {output}: is also an input of this run ({item}); writing it would "
                "destroy the input; choose another output path"
            )
