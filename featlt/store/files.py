"""What the store's writer and reader share about a file on disk.

The schema version, the ``.partial`` name of an unfinished store, the messages for a file
another process holds locked or one HDF5 finds truncated, and the fix for a damaged store.
"""

from __future__ import annotations

import re
from pathlib import Path

# 1: no digests; 2: block digests of every array (featlt.store.digests)
SCHEMA_VERSION = 2
REEXTRACT = "re-extract it with `featlt extract ... --overwrite`"
PARTIAL_SUFFIX = ".partial"


def partial_path(path: str | Path) -> Path:
    """Where a store lives until it is complete: ``<output>.partial`` beside the output."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


def locked_message(path: Path) -> str:
    """The message for an HDF5 file another process holds open for writing."""
    return (
        f"feature file {path}: locked by another process (an extraction writing it, or the "
        "decode workers of one that was just killed, which exit within seconds); wait until it "
        "ends and retry"
    )


def is_lock_error(err: OSError) -> bool:
    """Whether HDF5 refused to open a file because another process holds its lock.

    HDF5 says "unable to lock file" (errno 11); a truncated file's message mentions "sblock",
    which a bare search for "lock" mistook for a lock.
    """
    return isinstance(err, BlockingIOError) or "unable to lock file" in str(err).lower()


def damaged_message(path: Path, err: OSError, fix: str) -> str | None:
    """The message for a file HDF5 finds truncated, or None when ``err`` says something else."""
    text = str(err)
    if "truncated file" not in text:
        return None
    found = re.search(r"eof = (\d+).*stored_eof = (\d+)", text)
    sizes = (f": {int(found.group(1))} bytes on disk, {int(found.group(2))} written"
             if found else "")
    return f"feature file {path}: truncated or damaged{sizes}; {fix}"
