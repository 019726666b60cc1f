"""File hashes for provenance: correct, remembered for unchanged large files, re-read on change."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from featlt.file_hash import CACHE_FILE, MIN_CACHED_BYTES, file_sha256


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("FEATLT_CACHE", str(folder))
    return folder / CACHE_FILE


def _write(path: Path, fill: bytes, size: int = MIN_CACHED_BYTES) -> str:
    path.write_bytes(fill * size)
    return hashlib.sha256(fill * size).hexdigest()


def test_large_file_is_remembered_until_it_changes(tmp_path, cache):
    data = tmp_path / "data.bin"
    expected = _write(data, b"a")
    assert file_sha256(data) == expected
    assert json.loads(cache.read_text())[str(data.resolve())]["sha256"] == expected
    # Same size and modification time: the remembered hash is used, the bytes are not read.
    stamp = data.stat()
    _write(data, b"b")
    os.utime(data, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert file_sha256(data) == expected
    # A write that moves the modification time is hashed again.
    changed = _write(data, b"c")
    os.utime(data, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000))
    assert file_sha256(data) == changed


def test_small_files_are_not_cached(tmp_path, cache):
    small = tmp_path / "small.txt"
    small.write_bytes(b"featlt")
    assert file_sha256(small) == hashlib.sha256(b"featlt").hexdigest()
    assert not cache.exists()


def test_broken_or_unwritable_cache_only_costs_hashing(tmp_path, cache):
    data = tmp_path / "data.bin"
    expected = _write(data, b"x")
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    assert file_sha256(data) == expected
    cache.unlink()
    cache.mkdir()  # a folder where the cache file should be: cannot be written
    assert file_sha256(data) == expected
