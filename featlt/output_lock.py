"""One writer per output: an OS-level lock on each output's name, held for a whole run.

A second ``featlt extract -o X.h5 --overwrite`` started while a first is still writing ``X.h5``
used to delete the first run's ``X.h5.partial`` and write its own, so both runs said "wrote X.h5"
and the first result was silently gone. :func:`output_lock` makes the second run stop at once with
a message naming the run that holds the output.

The lock is ``fcntl.flock`` on a small file named after the output: ``X.h5.lock`` beside a file
output, ``DIR/.featlt.lock`` inside a folder output (so ``-o .`` needs no writable parent). The
kernel releases a flock when its process dies, so a killed run never blocks the next one; the file
it leaves behind holds no lock and is taken over. flock cannot say who holds it, so the holder
writes its PID into the file after acquiring it, and a refused run reads and names that PID.

A lock file is removed when its run ends; a run that finds its lock file replaced between opening
and locking it (a previous holder removing it) starts over, so two runs can never both believe
they hold one output. A process that already holds an output's lock may take it again (nested
callers such as ``featlt demo`` calling extraction); it is released when the outermost one ends.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal

from featlt.errors import FeatltError
from featlt.runtime import make_folders, remove_empty_folders, write_error

FOLDER_LOCK_NAME = ".featlt.lock"
_ATTEMPTS = 20  # a lock file removed and recreated under us this often in a row: give up

# lock file (absolute) -> its file descriptor, for the locks this process holds
_HELD: dict[str, int] = {}


class OutputLockedError(FeatltError):
    """Another process holds the lock of an output this run would write."""


def lock_path(output: str | Path, folder: bool = False) -> Path:
    """The lock file of ``output``: ``OUTPUT.lock`` beside a file, ``.featlt.lock`` in a folder."""
    path = Path(os.path.abspath(Path(output).expanduser()))
    if folder:
        return Path(os.path.realpath(path)) / FOLDER_LOCK_NAME
    # the folder's real path, so two spellings of one output (a symlinked folder) share a lock
    return Path(os.path.realpath(path.parent)) / f"{path.name}.lock"


def _close_inherited() -> None:
    """In a forked child (a DataLoader decode worker): close the copies of this process's lock
    descriptors without unlocking, so the lock ends with the run that took it even while
    orphaned workers are still exiting."""
    for fd in _HELD.values():
        with suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited)


def _alive(pid: str) -> bool:
    """Whether process ``pid`` exists (True when that cannot be told)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        return True
    return True


def _holder(fd: int) -> str:
    """The PID the holder wrote into the lock file, as text ("unknown" if not written yet)."""
    with suppress(OSError):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return text
    return "unknown"


def _acquire(lock: Path, output: Path, what: str) -> int:
    """Open and flock ``lock``; return its descriptor with this process's PID written in it."""
    for _ in range(_ATTEMPTS):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _holder(fd)
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            if holder != "unknown" and not _alive(holder):
                raise OutputLockedError(
                    f"{what} {output}: the featlt run that wrote it (PID {holder}) has ended, "
                    f"but a process it started still holds its lock {lock.name}; such processes "
                    "exit within seconds: retry shortly"
                ) from err
            kill = f"stop it (kill {holder})" if holder != "unknown" else "stop it"
            raise OutputLockedError(
                f"{what} {output}: another featlt run (PID {holder}) is writing it now "
                f"(lock {lock.name}); wait for that run to finish or {kill}, or choose another "
                "output path"
            ) from err
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)  # the previous holder removed the file between our open and our flock
    raise OutputLockedError(
        f"{what} {output}: its lock file {lock} keeps being replaced by other runs; wait for "
        "them to finish, then rerun"
    )


def _release(lock: Path, fd: int, created: list[Path]) -> None:
    """Remove the lock file (while still holding it), unlock, and remove the folders made for it
    where they are empty."""
    with suppress(OSError):
        if os.path.samestat(os.fstat(fd), os.stat(lock)):
            lock.unlink()
    with suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)  # also for forked children still sharing the descriptor
    os.close(fd)
    remove_empty_folders(created)


@contextmanager
def output_lock(
    output: str | Path, what: str = "output", folder: bool = False,
    unwritable: Literal["raise", "skip"] = "raise",
) -> Iterator[Path | None]:
    """Hold the lock of ``output`` for the block; refuse at once if another process holds it.

    Folders missing for the lock file are created and removed again (where empty) on release.

    Args:
        output: the file (or, with ``folder``, the folder) the run writes.
        what: how messages name it, e.g. ``"--output"``.
        unwritable: where the lock file cannot be created (a read-only folder, a path through a
            file): ``"raise"`` a :class:`FeatltError` naming ``output`` and the fix, or
            ``"skip"`` locking and yield None, for callers whose own checks then say why the
            output cannot be written.
    Yields:
        the lock file, or None when skipped.
    Raises:
        OutputLockedError: another process holds the lock; names its PID.
    """
    lock = lock_path(output, folder)
    key = str(lock)
    if key in _HELD:  # taken again inside this process: nested, not a second writer
        yield lock
        return
    fd: int | None = None
    created: list[Path] = []
    try:
        created = make_folders(lock.parent)
        fd = _acquire(lock, Path(output), what)
    except OSError as err:
        remove_empty_folders(created)
        if unwritable == "raise":
            raise write_error(output, err, what) from err
    except BaseException:
        remove_empty_folders(created)
        raise
    if fd is None:  # unwritable == "skip": the caller's own checks say why
        yield None
        return
    _HELD[key] = fd
    try:
        yield lock
    finally:
        del _HELD[key]
        _release(lock, fd, created)
