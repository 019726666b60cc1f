"""Where a feature store's bytes come from: the walk that refuses data stored outside the file.

HDF5 lets a file name data it does not hold: external links (an object in another file),
soft links (another name in this file), external raw storage (``create_dataset(...,
external=...)``: a dataset's bytes read from any file, a certificate bundle included) and virtual
datasets (rows mapped from datasets of other files, missing ones read as zeros). featlt writes
none of these. :func:`walk` visits every object of a store and

- refuses external links and external raw storage, always (the bytes would come from outside
  the file, unchecked);
- refuses soft links that dangle, go through an external link or loop; a soft link that
  resolves inside the file is followed (the bytes are the file's own, and their digests name the
  split and array they are read under, so an alias of another split's array does not match);
- returns every virtual dataset with its row mappings (:func:`virtual_sources`), refusing
  mappings featlt cannot check: a source inside the same file, printf-style source names, a
  selection that is not whole contiguous rows, rows of the virtual dataset no source covers (they
  would read as zeros) or two sources mapped onto the same rows.

Whether each source file exists, is a complete featlt store with digests, holds the mapped rows
and matches the joined store's backbone is checked by :mod:`featlt.store.joined`, applied by
:class:`featlt.store.feature_store.FeatureStore`, which then reads virtual rows from the source
stores itself (their digests checked), never through HDF5's virtual-dataset layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from featlt.errors import StoreError

MAX_SOFT_LINK_DEPTH = 16
REFETCH = "re-extract it with `featlt extract ... --overwrite`"


@dataclass(frozen=True)
class SourceRows:
    """Rows ``[start, stop)`` of a virtual dataset come from rows ``[source_start, source_start
    + stop - start)`` of dataset ``dataset`` in ``file``.

    ``source_box`` is the source selection's bounds ((first corner), (last corner)), inclusive,
    or None when the mapping selects the whole source dataset; ``source_points`` the number of
    elements it selects (the trailing dimensions are checked once the source's shape is known).
    """

    start: int
    stop: int
    file_name: str  # as stored in the virtual dataset
    file: Path  # resolved: relative names are relative to the folder of the joined file
    dataset: str  # e.g. "/train/features"
    source_start: int
    source_box: tuple[tuple[int, ...], tuple[int, ...]] | None
    source_points: int

    def describe(self) -> str:
        """``rows a-b <- file:/split/array rows c-d`` for messages and ``featlt info``."""
        n = self.stop - self.start
        return (f"rows {self.start}-{self.stop - 1} <- {self.file}:{self.dataset} rows "
                f"{self.source_start}-{self.source_start + n - 1}")


@dataclass(frozen=True)
class Layout:
    """What :func:`walk` found: virtual datasets by name (e.g. ``train/features``), each with
    its sources in row order, and in-file soft links (name -> target path)."""

    virtual: dict[str, tuple[SourceRows, ...]]
    soft_links: dict[str, str]


def walk(file: h5py.File, path: Path) -> Layout:
    """Visit every object of ``file``; refuse what leaves the file or cannot be checked.

    Args:
        file: the store, open for reading.
        path: its path (messages; relative virtual-source names resolve against its folder).
    Raises:
        StoreError: naming the object, what it points to, and the fix.
    """
    virtual: dict[str, tuple[SourceRows, ...]] = {}
    soft_links: dict[str, str] = {}
    seen: set[h5py.h5o.ObjectID] = set()  # hard links may form cycles
    pending: list[tuple[str, h5py.Group]] = [("", file)]
    while pending:
        prefix, group = pending.pop()
        if group.id in seen:
            continue
        seen.add(group.id)
        for name in _names(group, path, prefix):
            full = f"{prefix}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise StoreError(
                    f"feature file {path}: '{full}' is an external link to "
                    f"{link.filename}:{link.path}; featlt reads only data stored in the feature "
                    f"file itself and refuses external links always; {REFETCH}"
                )
            if isinstance(link, h5py.SoftLink):
                soft_links[full.lstrip("/")] = _check_soft_link(file, path, full, prefix,
                                                                link.path)
                continue
            if not isinstance(link, h5py.HardLink):
                raise StoreError(
                    f"feature file {path}: '{full}' is a link of a kind featlt does not read "
                    f"({type(link).__name__}); {REFETCH}"
                )
            obj = _open(group, name, path, full)
            if isinstance(obj, h5py.Group):
                pending.append((full, obj))
            elif isinstance(obj, h5py.Dataset):
                _check_storage(obj, path, full)
                if obj.is_virtual:
                    virtual[full.lstrip("/")] = virtual_sources(obj, path, full)
    return Layout(virtual, soft_links)


def _names(group: h5py.Group, path: Path, where: str) -> list[str]:
    try:
        return list(group.keys())
    except (OSError, RuntimeError, KeyError) as err:
        raise StoreError(f"feature file {path}: group '{where or '/'}' cannot be listed "
                         f"({err}); the file is damaged; {REFETCH}") from err


def _open(group: h5py.Group, name: str, path: Path, full: str) -> object:
    try:
        return group[name]
    except (OSError, RuntimeError, KeyError, ValueError) as err:
        raise StoreError(f"feature file {path}: '{full}' cannot be opened ({err}); the file is "
                         f"damaged; {REFETCH}") from err


def _check_soft_link(file: h5py.File, path: Path, full: str, prefix: str, target: str) -> str:
    """Resolve a soft link component by component; return its absolute target in the file."""
    absolute = target if target.startswith("/") else f"{prefix}/{target}"
    depth = 0
    parts = [p for p in absolute.split("/") if p not in ("", ".")]
    node: h5py.Group = file
    resolved: list[str] = []
    while parts:
        part = parts.pop(0)
        link = node.get(part, getlink=True) if isinstance(node, h5py.Group) else None
        if link is None:
            raise StoreError(
                f"feature file {path}: '{full}' is a soft link to '{target}', which does not "
                f"exist in the file (a dangling link); the file was edited or damaged; {REFETCH}"
            )
        if isinstance(link, h5py.ExternalLink):
            raise StoreError(
                f"feature file {path}: '{full}' is a soft link to '{target}', which passes "
                f"through the external link '/{'/'.join([*resolved, part])}' to "
                f"{link.filename}:{link.path}; featlt refuses links that leave the file; "
                f"{REFETCH}"
            )
        if isinstance(link, h5py.SoftLink):
            depth += 1
            if depth > MAX_SOFT_LINK_DEPTH:
                raise StoreError(
                    f"feature file {path}: '{full}' is a soft link to '{target}' that loops "
                    f"(more than {MAX_SOFT_LINK_DEPTH} links deep); {REFETCH}"
                )
            inner = link.path if link.path.startswith("/") else \
                "/".join(["", *resolved, link.path])
            parts = [p for p in inner.split("/") if p not in ("", ".")] + parts
            node, resolved = file, []
            continue
        if not isinstance(link, h5py.HardLink):
            raise StoreError(f"feature file {path}: '{full}' is a soft link through a link of "
                             f"a kind featlt does not read; {REFETCH}")
        node = _open(node, part, path, full)  # type: ignore[assignment]
        resolved.append(part)
    return "/" + "/".join(resolved)


def _check_storage(dataset: h5py.Dataset, path: Path, full: str) -> None:
    """Refuse a dataset whose bytes live in external files."""
    plist = dataset.id.get_create_plist()
    count = plist.get_external_count()
    if count:
        name = plist.get_external(0)[0].decode(errors="replace")
        raise StoreError(
            f"feature file {path}: '{full}' keeps its bytes in {count} external file(s) "
            f"('{name}'{' and more' if count > 1 else ''}: external raw storage); featlt reads "
            f"only data stored in the feature file itself and refuses this always; {REFETCH}"
        )


def _box(space: h5py.h5s.SpaceID) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Inclusive bounds of a selection, or None for a selection of the whole space."""
    kind = space.get_select_type()
    if kind == h5py.h5s.SEL_ALL:
        return None
    if kind != h5py.h5s.SEL_HYPERSLABS:
        raise ValueError("not a hyperslab")
    low, high = space.get_select_bounds()
    return tuple(int(v) for v in low), tuple(int(v) for v in high)


def virtual_sources(dataset: h5py.Dataset, path: Path, full: str) -> tuple[SourceRows, ...]:
    """The row mappings of a virtual dataset, in row order, covering every row exactly once.

    Args:
        dataset: a virtual (N, ...) dataset of the store at ``path``.
    Raises:
        StoreError: a mapping featlt does not check (see the module docstring), rows no source
            covers, or overlapping sources.
    """
    shape = tuple(int(s) for s in dataset.shape)
    if not shape:
        raise StoreError(f"feature file {path}: '{full}' is a scalar virtual dataset; {REFETCH}")
    trailing = shape[1:]
    out: list[SourceRows] = []
    for mapping in dataset.virtual_sources():
        where = f"feature file {path}: virtual dataset '{full}' source {mapping.file_name}:" \
                f"{mapping.dset_name}"
        if mapping.file_name == ".":
            raise StoreError(f"{where}: maps rows of the same file; featlt joins only separate "
                             f"stores; {REFETCH}")
        if "%" in mapping.file_name or "%" in mapping.dset_name:
            raise StoreError(f"{where}: a printf-style source name; featlt joins only named "
                             "stores; join them again naming each source file")
        try:
            vbox, sbox = _box(mapping.vspace), _box(mapping.src_space)
            vpoints = int(mapping.vspace.get_select_npoints())
            spoints = int(mapping.src_space.get_select_npoints())
        except ValueError as err:
            raise StoreError(f"{where}: its selection is not a box of whole rows ({err}); "
                             "featlt joins whole rows; join the stores again") from err
        start, stop = (0, shape[0]) if vbox is None else (vbox[0][0], vbox[1][0] + 1)
        whole_rows = vbox is None or (
            all(v == 0 for v in vbox[0][1:])
            and tuple(v + 1 for v in vbox[1][1:]) == trailing
            and vpoints == (stop - start) * int(np.prod(trailing, dtype=np.int64))
        )
        if not whole_rows or (sbox is not None and spoints != vpoints):
            raise StoreError(f"{where}: does not map whole contiguous rows; featlt joins whole "
                             "rows; join the stores again")
        file = Path(mapping.file_name)
        out.append(SourceRows(
            start=start, stop=stop, file_name=mapping.file_name,
            file=file if file.is_absolute() else path.parent / file,
            dataset="/" + mapping.dset_name.lstrip("/"),
            source_start=0 if sbox is None else sbox[0][0], source_box=sbox,
            source_points=vpoints,
        ))
    out.sort(key=lambda m: m.start)
    row = 0
    for mapping in out:
        if mapping.start > row:
            raise StoreError(
                f"feature file {path}: virtual dataset '{full}' rows {row}-{mapping.start - 1} "
                "have no source (HDF5 would read them as zeros); join the stores again"
            )
        if mapping.start < row:
            raise StoreError(f"feature file {path}: virtual dataset '{full}' maps two sources "
                             f"onto rows from {mapping.start}; join the stores again")
        row = mapping.stop
    if row < shape[0]:
        raise StoreError(
            f"feature file {path}: virtual dataset '{full}' rows {row}-{shape[0] - 1} have no "
            "source (HDF5 would read them as zeros); join the stores again"
        )
    return tuple(out)
