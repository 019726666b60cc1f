"""``featlt rank --pairs --full``: the chosen combinations written as combined stores, reused.

Full mode fits heads on files, so each combination it measures is written once by
:func:`featlt.combine.write.combine_stores` to ``HEADS_DIR/combined/<members>-<key>.h5``, where
the key hashes each member's feature identity and the sha256 of its file's bytes: a combination
whose members are unchanged is found under the same name and reused, never rewritten; a member
re-extracted gives a new key and a new file. The combined store is then ranked like any file
(its heads folder keyed by :func:`featlt.rank.measured.heads_key`, so an unchanged combination
reuses its fitted heads and cross-validation too).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from featlt.rank.model import RankedFile
from featlt.store.feature_store import FeatureStore

#: Where full mode keeps the combined stores, inside ``--heads-dir``.
COMBINED_DIR = "combined"


def combination_key(files: tuple[Path, ...]) -> str:
    """A short hash of the members (in order): their feature identities and file contents."""
    from featlt.file_hash import file_sha256
    from featlt.store.members import feature_identity

    record = []
    for path in files:
        with FeatureStore(path) as store:
            identity = feature_identity(store.provenance)
        record.append([identity, file_sha256(path)])
    return hashlib.sha256(json.dumps(record).encode()).hexdigest()[:12]


def combination_path(label: str, files: tuple[Path, ...], heads_dir: Path) -> Path:
    """Where full mode keeps the combination ``label`` of member ``files``:
    ``heads_dir/combined/<label>-<key>.h5`` (:func:`combination_key`)."""
    return heads_dir / COMBINED_DIR / f"{label}-{combination_key(files)}.h5"


def write_combination(row: RankedFile, heads_dir: Path, max_width: int, test_split: str,
                      log: Callable[[str], None] | None = None) -> RankedFile:
    """The combination ``row`` with its combined store written (or reused) and its entry
    pointing at it (``has_test`` read from the store).

    Args:
        row: a combination row of :func:`featlt.rank.pairs.rank_combinations`.
        heads_dir: full mode's ``--heads-dir``; the store goes to ``combined/`` inside it.
        max_width: ``--max-width``, passed to ``combine_stores``.
        test_split: the view's test split (full mode measures on it).
        log: called with one line: written (and how long it took) or reused.
    """
    from featlt.combine.write import combine_stores

    combination = row.combination
    assert combination is not None  # only combination rows are written
    path = combination_path(row.entry.label, combination.files, heads_dir)
    if path.is_file():
        message = f"{row.entry.label}: reusing the combined store {path}"
    else:
        result = combine_stores(list(combination.files), path, mode="overwrite",
                                max_width=max_width)
        message = f"{row.entry.label}: combined store written to {path} in {result.seconds:.1f} s"
    if log is not None:
        log(message)
    with FeatureStore(path) as store:
        provenance = store.provenance
        has_test = test_split in store.splits
    entry = replace(row.entry, path=path, provenance=provenance, has_test=has_test)
    return replace(row, entry=entry, combination=replace(combination, written=path))
