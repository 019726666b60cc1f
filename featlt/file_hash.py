"""sha256 of files for provenance, remembered so that a large file is read once, not every run.

Every extraction records the sha256 of its dataset file and weights files. Reading them costs
time on every run (62 MB of CIFAR-10 JPEGs plus two 19 MB weights files: ~0.5 s on this 2-core
machine, a third of a short run's start-up). Files of at least :data:`MIN_CACHED_BYTES` are
therefore remembered in ``<featlt cache>/file-sha256.json`` under their resolved path, keyed by
(size, modification time in ns, inode): any write to a file changes its modification time, so
a changed file is hashed again (the same rule git's index and DVC use to skip unchanged files).
The cache is best effort: an unreadable or unwritable cache only means hashing again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

CACHE_FILE = "file-sha256.json"
MIN_CACHED_BYTES = 1 << 20
MAX_ENTRIES = 2048  # the oldest entries are dropped beyond this


def file_sha256(path: str | Path, block: int = 1 << 20, cached: bool = True) -> str:
    """Hex sha256 of a file's bytes (from the cache when the file is unchanged).

    ``cached=False`` always reads the bytes: for integrity checks, which must also catch a
    change that left size and modification time alone.
    """
    path = Path(path)
    stat = path.stat()
    if not cached or stat.st_size < MIN_CACHED_BYTES:
        return _hash_bytes(path, block)
    key = str(path.resolve())
    stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
    cache = _load()
    entry = cache.get(key)
    if isinstance(entry, dict) and entry.get("stamp") == stamp:
        return str(entry["sha256"])
    digest = _hash_bytes(path, block)
    cache.pop(key, None)
    cache[key] = {"stamp": stamp, "sha256": digest}
    _save(dict(list(cache.items())[-MAX_ENTRIES:]))
    return digest


def _hash_bytes(path: Path, block: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_path() -> Path:
    from featlt.runtime import cache_dir

    return cache_dir() / CACHE_FILE


def _load() -> dict[str, Any]:
    try:
        loaded = json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _save(cache: dict[str, Any]) -> None:
    from featlt.errors import FeatltError
    from featlt.runtime import write_json_atomic

    # a read-only or full cache only costs re-hashing (write_json_atomic reports OS errors as
    # FeatltError)
    with contextlib.suppress(OSError, FeatltError):
        write_json_atomic(_cache_path(), cache)
