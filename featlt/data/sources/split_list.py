"""``split-list:ROOT[?train=LIST&val=LIST&test=LIST&names=FILE]``: image lists with labels.

The format ImageNet-LT and Places-LT ship (``ImageNet_LT_train.txt``, ``Places_LT_val.txt``,
...): one image per line, ``relative/path label``, the path relative to ``ROOT`` (the dataset
folder), the label an integer class id; blank lines are skipped; a path may contain spaces (the
label is the last field). Example line: ``train/n01440764/n01440764_10026.JPEG 0``.

Lists: given as query parameters (a path relative to ``ROOT`` or absolute), or, without a query,
found in ``ROOT`` as the one file each matching ``*train.txt``, ``*val.txt``, ``*test.txt``
(train required; without a test list, a test split is held out from train).

Class names: ``names=FILE`` (one name per line, line k names class k); otherwise, when every
class of the train list lives in one parent folder of its own (``train/n01440764/...``), that
folder's name; otherwise "0".."C-1".

Path rules (a list is data, not a licence to read the disk): an absolute path, a ``..``
component, or a path that resolves outside ``ROOT`` through a symlink is refused with the list
file and line (absolute and ``..`` when the list is read, symlinks when the image is opened).
The fingerprint hashes the list files, not the images (that would mean reading them all).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from featlt.data.sources import SPLIT_ORDER, decode_image, register_source
from featlt.data.sources.indexed import IndexedSource
from featlt.errors import FeatltError
from featlt.file_hash import file_sha256

LIST_KEYS = (*SPLIT_ORDER, "names")


def read_split_list(list_file: Path) -> tuple[list[str], np.ndarray]:
    """Parse a split-list file, refusing unsafe paths.

    Returns:
        paths: N relative POSIX paths, in file order; labels: (N,) int64.
    """
    try:
        text = list_file.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise FeatltError(f"split list {list_file}: not found; pass an existing list file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise FeatltError(f"split list {list_file}: unreadable as UTF-8 text ({err})") from err
    paths: list[str] = []
    labels: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.strip().rsplit(None, 1)
        where = f"split list {list_file}, line {number}"
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise FeatltError(
                f"{where}: '{line.strip()}' is not 'relative/path label' with an integer label"
            )
        label = int(fields[1])
        if label < 0:
            raise FeatltError(f"{where}: label {label} is negative; labels are class ids 0..C-1")
        check_relative_path(fields[0], where)
        paths.append(fields[0])
        labels.append(label)
    if not paths:
        raise FeatltError(f"split list {list_file}: holds no 'path label' lines")
    return paths, np.asarray(labels, dtype=np.int64)


def check_relative_path(path: str, where: str) -> None:
    """Refuse an absolute path or one with a ``..`` component (it could leave the root)."""
    pure = PurePosixPath(path.replace("\\", "/"))
    if pure.is_absolute() or path.startswith("\\") or (len(path) > 1 and path[1] == ":"):
        raise FeatltError(
            f"{where}: path '{path}' is absolute; list paths must be relative to the dataset "
            "root (strip the leading folder and pass it as ROOT)"
        )
    if ".." in pure.parts:
        raise FeatltError(
            f"{where}: path '{path}' contains '..'; list paths must stay inside the dataset root"
        )


def resolve_inside(root: Path, relative: str, what: str) -> Path:
    """``root / relative`` after resolving symlinks; refused when it ends up outside ``root``."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(root / relative)
    if os.path.commonpath([real_root, real]) != real_root:
        raise FeatltError(
            f"{what}: '{relative}' resolves to {real}, outside the dataset root {real_root} "
            "(a symlink points out); copy the image into the root or fix the link"
        )
    return Path(real)


def folder_class_names(paths: list[str], labels: np.ndarray, n_classes: int) -> list[str] | None:
    """Each class's parent-folder name when classes and parent folders correspond one to one."""
    names: dict[int, str] = {}
    for path, label in zip(paths, labels.tolist(), strict=True):
        parent = PurePosixPath(path).parent.name
        if not parent or names.setdefault(label, parent) != parent:
            return None
    if len(names) != n_classes or len(set(names.values())) != n_classes:
        return None
    return [names[c] for c in range(n_classes)]


def _read_names(names_file: Path) -> list[str]:
    try:
        lines = names_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise FeatltError(f"class-name file {names_file}: unreadable ({err})") from err
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        raise FeatltError(f"class-name file {names_file}: empty; put one class name per line")
    return names


def _discover_lists(root: Path, uri: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for split in SPLIT_ORDER:
        matches = sorted(p for p in root.glob(f"*{split}.txt") if p.is_file())
        if len(matches) > 1:
            raise FeatltError(
                f"dataset {uri}: several {split} lists in {root} "
                f"({', '.join(p.name for p in matches)}); name one with ?{split}=FILE"
            )
        if matches:
            found[split] = matches[0]
    return found


@register_source("split-list")
class SplitListSource(IndexedSource):
    """Split-list files over an image root; see the module docstring for the URI."""

    def __init__(self, spec: str):
        self.uri = f"split-list:{spec}"
        root_text, _, query = spec.partition("?")
        if not root_text:
            raise FeatltError(
                f"dataset {self.uri}: pass the image root, e.g. "
                "split-list:/data/imagenet?train=ImageNet_LT_train.txt&test=ImageNet_LT_test.txt"
            )
        self.root = Path(root_text).expanduser()
        if not self.root.is_dir():
            raise FeatltError(f"dataset {self.uri}: image root {self.root} is not a folder")
        options = parse_qs(query, keep_blank_values=True, strict_parsing=False) if query else {}
        unknown = sorted(set(options) - set(LIST_KEYS))
        repeated = sorted(k for k, v in options.items() if len(v) > 1)
        if unknown or repeated:
            raise FeatltError(
                f"dataset {self.uri}: unknown or repeated option(s) {', '.join(unknown + repeated)}"
                f"; use each of {', '.join(LIST_KEYS)} at most once"
            )
        given = {k: self._under_root(v[0]) for k, v in options.items()}
        lists = {k: v for k, v in given.items() if k in SPLIT_ORDER}
        if not lists:
            lists = _discover_lists(self.root, self.uri)
        if "train" not in lists:
            raise FeatltError(
                f"dataset {self.uri}: no train list; pass ?train=FILE or put one file matching "
                f"*train.txt into {self.root}"
            )
        self._lists = lists
        self._paths: dict[str, list[str]] = {}
        labels: dict[str, np.ndarray] = {}
        for split, list_file in lists.items():
            self._paths[split], labels[split] = read_split_list(list_file)
        n_classes = int(max(v.max() for v in labels.values())) + 1
        self._names_file = given.get("names")
        if self._names_file is not None:
            names = _read_names(self._names_file)
            self._names_rule = f"file {self._names_file.name}"
        else:
            names = folder_class_names(self._paths["train"], labels["train"], n_classes)
            self._names_rule = "parent folder" if names else "class ids"
            names = names or [str(c) for c in range(n_classes)]
        self._set_parts(labels, names)

    def _under_root(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path

    def _load_part_image(self, part: str, position: int) -> Any:
        relative = self._paths[part][position]
        what = f"dataset {self.uri}: {part} image {position}"
        file = resolve_inside(self.root, relative, f"{what} ({self._lists[part].name})")
        return decode_image(file, f"{what}, file {file}")

    def describe(self) -> dict[str, Any]:
        digest = hashlib.sha256()
        for split in sorted(self._lists):
            digest.update(f"{split}\t{file_sha256(self._lists[split])}\n".encode())
        if self._names_file is not None:
            digest.update(f"names\t{file_sha256(self._names_file)}\n".encode())
        return {
            "uri": self.uri,
            "scheme": self.scheme,
            "path": str(self.root.resolve()),
            "lists": {k: str(v.resolve()) for k, v in self._lists.items()},
            "class_names_from": self._names_rule,
            "fingerprint": {"method": "sha256 of the list files", "sha256": digest.hexdigest()},
            **self._describe_splits(),
        }
