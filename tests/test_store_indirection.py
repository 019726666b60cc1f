"""Issue 16, part 3: a store whose bytes would come from outside the file is refused, a joined
(virtual-dataset) store is read only when every source is a complete featlt store holding the
mapped rows with matching digests, and the minor cases end in a message, not a traceback.

Soft links: a soft link that resolves inside the file is followed (HDF5's own second name for an
object; the bytes are the file's, and their digests name the split and array they are read
under, so an alias of another split's array does not verify); dangling soft links and soft
links through an external link are refused.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featlt.cli import main
from featlt.data.synthetic import write_synthetic_store
from featlt.errors import StoreError
from featlt.store.feature_store import FeatureStore
from featlt.store.writer import StoreWriter

PROV = {"backbone": {"arch": "toy", "weights_sha256": "abc"}, "run": {"host": "a"}}
NAMES = ["a", "b", "c"]
JOINED = ("features", "labels", "index")
CERTS = "-----BEGIN CERTIFICATE-----\nMIIB" + "A" * 4000 + "\n-----END CERTIFICATE-----\n"


def _cli(*args: object) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def write_store(path: Path, n: int, dim: int, seed: int = 0, provenance: dict | None = None,
                splits: tuple[str, ...] = ("train",)) -> dict[str, dict[str, np.ndarray]]:
    """A complete float32 store with small chunks; returns {split: {array: values}}."""
    rng = np.random.default_rng(seed)
    written = {}
    with StoreWriter(path, provenance or PROV, chunk_bytes=64) as writer:
        for split in splits:
            rows = n  # same rows in every split: an alias of another split's array fits
            arrays = {"features": rng.normal(size=(rows, dim)).astype(np.float32),
                      "labels": rng.integers(0, 3, rows), "index": np.arange(rows) + 1000 * seed}
            writer.begin_split(split, arrays["labels"], arrays["index"], NAMES, dim)
            for start in range(0, rows, 5):
                writer.write_rows(split, start, arrays["features"][start:start + 5])
            written[split] = arrays
        writer.mark_complete()
    return written


def join(out: Path, sources: list[tuple[Path, int]], dim: int, relative: bool = True,
         declared_extra: int = 0, skip: int = 0) -> None:
    """A joined store: root attributes from the first source, ``train`` arrays as virtual
    datasets over each source's ``train`` rows.

    Args:
        declared_extra: map this many more rows than the last source holds (whole-source
            selection with a larger declared shape).
        skip: leave out the first ``skip`` rows of the first source (a row slice of it), or
            with ``declared_extra`` shift the last source's rows by it (a slice past its end).
    """
    total = sum(n for _, n in sources) + declared_extra - (0 if declared_extra else skip)
    with h5py.File(out, "w") as joined, h5py.File(sources[0][0], "r") as first:
        for key, value in first.attrs.items():
            joined.attrs[key] = value
        group = joined.create_group("train")
        for key in ("class_names", "class_counts"):
            group.attrs[key] = first["train"].attrs[key]
        group.attrs["n_rows"] = group.attrs["n_written"] = total
        for array in JOINED:
            shape = (total, dim) if array == "features" else (total,)
            dtype = "float32" if array == "features" else "int64"
            layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            row = 0
            for index, (path, n) in enumerate(sources):
                last = index == len(sources) - 1
                rows = n + (declared_extra if last else 0)
                name = os.path.relpath(path, out.parent) if relative else str(path.resolve())
                if declared_extra and last and skip:  # declared larger than it is
                    selected = h5py.VirtualSource(name, f"train/{array}", shape=(
                        skip + rows, *shape[1:]))[skip:skip + rows]
                elif skip and index == 0 and not declared_extra:
                    selected = h5py.VirtualSource(name, f"train/{array}",
                                                  shape=(n, *shape[1:]))[skip:n]
                    rows = n - skip
                else:
                    selected = h5py.VirtualSource(name, f"train/{array}",
                                                  shape=(rows, *shape[1:]))
                layout[row:row + rows] = selected
                row += rows
            group.create_virtual_dataset(array, layout)


def read_everything(path: Path) -> dict[str, np.ndarray]:
    """Open ``path`` and read every array of ``train``, then verify every block."""
    with FeatureStore(path) as store:
        out = {"features": store.read("train"), "labels": store.labels("train"),
               "index": store.source_index("train")}
        store.verify_all()
    return out


# Serious cases ---------------------------------------------------------------------------
def test_a_joined_store_with_a_missing_source_is_refused_not_read_as_zeros(
    tmp_path: Path
) -> None:
    store_a = tmp_path / "parts" / "a.h5"
    store_b = tmp_path / "parts" / "b.h5"
    store_a.parent.mkdir()
    write_synthetic_store(store_a, n_classes=3, n_max=20, dim=4, n_test_per_class=5)
    write_synthetic_store(store_b, n_classes=3, n_max=20, dim=4, n_test_per_class=5, seed=1)
    with FeatureStore(store_a) as a, FeatureStore(store_b) as b:
        n_a, n_b = a.info("train").n_rows, b.info("train").n_rows
    joined = tmp_path / "joined.h5"
    join(joined, [(store_a, n_a), (store_b, n_b)], 4)
    with h5py.File(joined, "a") as handle:  # a test split copied in, so fit-classifier runs
        handle.copy(h5py.File(store_a, "r")["test"], "test")
    assert _cli("info", joined).exit_code == 0  # complete, both sources there
    store_b.unlink()
    for args in (["info", joined],
                 ["fit-classifier", joined, "--head", "ncm_l2", "--bootstrap", "0", "-o",
                  tmp_path / "heads"]):
        refused = _cli(*args)
        assert refused.exit_code == 2, refused.output
        assert "virtual dataset '/train/" in refused.output
        assert f"the source file {store_b} is not found" in refused.output
        assert "would read its rows as zeros" in refused.output


def test_external_raw_storage_reading_a_certificate_bundle_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "ca-certificates.crt"
    bundle.write_text(CERTS)
    path = write_synthetic_store(tmp_path / "f.h5", n_classes=3, n_max=12, dim=4,
                                 n_test_per_class=4)
    with h5py.File(path, "r+") as handle:
        n = handle["train/features"].shape[0]
        del handle["train/features"]
        handle["train"].create_dataset("features", shape=(n, 4), dtype="float32",
                                       external=[(str(bundle), 0, n * 4 * 4)])
    with pytest.raises(StoreError, match=r"'/train/features' keeps its bytes in 1 external "
                                         r"file\(s\) \('.*ca-certificates.crt'"):
        FeatureStore(path)
    refused = _cli("info", path)
    assert refused.exit_code == 2 and "external raw storage" in refused.output


def test_a_valid_join_reads_its_sources_and_info_names_each(tmp_path: Path) -> None:
    written_a = write_store(tmp_path / "a.h5", 11, 3, seed=1)["train"]
    written_b = write_store(tmp_path / "b.h5", 7, 3, seed=2)["train"]
    joined = tmp_path / "j.h5"
    join(joined, [(tmp_path / "a.h5", 11), (tmp_path / "b.h5", 7)], 3)
    read = read_everything(joined)
    for array in JOINED:
        assert np.array_equal(read[array], np.concatenate([written_a[array], written_b[array]]))
    described = _cli("info", "--verify", joined, "--json")
    assert described.exit_code == 0, described.output
    document = json.loads(described.stdout)
    sources = document["virtual_sources"]["train/features"]
    assert [(s["file_as_stored"], s["rows"], s["source_rows"]) for s in sources] == [
        ("a.h5", [0, 11], [0, 11]), ("b.h5", [11, 18], [0, 7])]
    assert "3 virtual arrays checked in their source stores" in document["verification"]["text"]
    text = _cli("info", joined).output
    assert f"train/features rows 11-17 <- {tmp_path / 'b.h5'}:/train/features rows 0-6" in text


# The property: every kind of indirection is refused or read correctly -----------------------
REFUSED = {
    "external_link": "is an external link to",
    "external_link_to_a_missing_file": "is an external link to",
    "dangling_soft_link": "a dangling link",
    "soft_link_through_external_link": "passes through the external link|is an external link",
    "soft_link_to_another_split": "do not match their digest",
    "external_storage": "external raw storage",
    "virtual_missing_source": "is not found",
    "virtual_short_source": "does not select whole rows of the source",
    "virtual_slice_past_the_end": "fewer than the rows mapped",
    "virtual_source_without_provenance": "not a featlt feature store",
    "virtual_source_schema_1": "schema 1",
    "virtual_source_digests_mismatch": "do not match their digest",
    "virtual_source_other_backbone": "provenance differs",
    "virtual_rows_without_source": "have no source",
    "virtual_join_of_joins": "does not join joined stores",
}
ACCEPTED = ("in_file_soft_link", "virtual_relative", "virtual_absolute", "virtual_row_slice")


def _build(kind: str, folder: Path, n_a: int, n_b: int, dim: int,
           array: str) -> tuple[Path, dict[str, np.ndarray] | None]:
    """A store with indirection ``kind`` on ``train/<array>``; the arrays expected when read."""
    store_a, store_b = folder / "a.h5", folder / "sub" / "b.h5"
    store_b.parent.mkdir()
    written_a = write_store(store_a, n_a, dim, seed=1, splits=("train", "test"))["train"]
    written_b = write_store(store_b, n_b, dim, seed=2)["train"]
    out = folder / "out.h5"
    if not kind.startswith("virtual"):
        shutil.copy(store_a, out)
        with h5py.File(out, "r+") as handle:
            group = handle["train"]
            if kind == "in_file_soft_link":
                handle.move(f"train/{array}", f"train/{array}_stored")
                group[array] = h5py.SoftLink(f"/train/{array}_stored")
                return out, written_a
            if kind == "soft_link_to_another_split":
                for name in (array, f"digests/{array}"):
                    del group[name]
                    group[name] = h5py.SoftLink(f"/test/{name}")
                return out, None
            data = group[array][:]
            del group[array]
            if kind == "external_link":
                group[array] = h5py.ExternalLink(str(store_b), f"/train/{array}")
            elif kind == "external_link_to_a_missing_file":
                group[array] = h5py.ExternalLink("nowhere.h5", f"/train/{array}")
            elif kind == "dangling_soft_link":
                group[array] = h5py.SoftLink(f"/train/{array}_gone")
            elif kind == "soft_link_through_external_link":
                handle["elsewhere"] = h5py.ExternalLink(str(store_b), "/")
                group[array] = h5py.SoftLink(f"/elsewhere/train/{array}")
            elif kind == "external_storage":
                bundle = folder / "ca-certificates.crt"
                bundle.write_text(CERTS * (1 + data.nbytes // len(CERTS)))
                group.create_dataset(array, shape=data.shape, dtype=data.dtype,
                                     external=[(str(bundle), 0, data.nbytes)])
            return out, None
    sources = [(store_a, n_a), (store_b, n_b)]
    expected = {a: np.concatenate([written_a[a], written_b[a]]) for a in JOINED}
    if kind == "virtual_short_source":
        join(out, sources, dim, declared_extra=2)
        return out, None
    if kind == "virtual_slice_past_the_end":
        join(out, sources, dim, declared_extra=1, skip=1)
        return out, None
    if kind == "virtual_row_slice" and n_a > 1:  # rows 1.. of a, all of b
        join(out, sources, dim, skip=1)
        return out, {a: np.concatenate([written_a[a][1:], written_b[a]]) for a in JOINED}
    if kind == "virtual_rows_without_source":
        join(out, sources, dim)
        with h5py.File(out, "r+") as handle:  # a layout whose last rows name no source
            n = n_a + n_b + 3
            layout = h5py.VirtualLayout(shape=(n, dim) if array == "features" else (n,),
                                        dtype=handle[f"train/{array}"].dtype)
            layout[:n_a] = h5py.VirtualSource("a.h5", f"train/{array}",
                                              shape=(n_a, *layout.shape[1:]))
            del handle[f"train/{array}"]
            handle["train"].create_virtual_dataset(array, layout)
        return out, None
    join(out, sources, dim, relative=kind != "virtual_absolute")
    if kind == "virtual_missing_source":
        store_b.unlink()
    elif kind == "virtual_source_without_provenance":
        with h5py.File(store_b, "r+") as handle:
            del handle.attrs["featlt_version"]
    elif kind == "virtual_source_schema_1":
        with h5py.File(store_b, "r+") as handle:
            handle.attrs["schema_version"] = 1
            del handle["train/digests"]
    elif kind == "virtual_source_digests_mismatch":
        with h5py.File(store_b, "r+") as handle:
            handle[f"train/{array}"][n_b - 1] = handle[f"train/{array}"][n_b - 1] + 1
    elif kind == "virtual_source_other_backbone":
        with h5py.File(store_b, "r+") as handle:
            handle.attrs["provenance"] = json.dumps({**PROV, "backbone": {"arch": "other"}})
    elif kind == "virtual_join_of_joins":
        inner = folder / "inner.h5"
        shutil.move(out, inner)
        join(out, [(inner, n_a + n_b)], dim)
        return out, None
    return out, (expected if kind in ACCEPTED else None)


@settings(max_examples=45, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(REFUSED) + list(ACCEPTED)), n_a=st.integers(1, 23),
       n_b=st.integers(1, 23), dim=st.integers(1, 5),
       array=st.sampled_from(["features", "labels", "index"]))
def test_every_indirection_kind_is_refused_or_read_correctly(
    kind: str, n_a: int, n_b: int, dim: int, array: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path, expected = _build(kind, Path(tmp), n_a, n_b, dim, array)
        if kind in ACCEPTED:
            assert expected is not None
            read = read_everything(path)
            for name, values in expected.items():
                assert np.array_equal(read[name], values), (kind, name)
        else:
            with pytest.raises(StoreError, match=REFUSED[kind]):
                read_everything(path)
            refused = _cli("info", "--verify", path)
            assert refused.exit_code == 2 and str(path) in refused.output, refused.output


def test_every_kind_is_exercised() -> None:
    for kind in sorted(REFUSED) + list(ACCEPTED):
        with tempfile.TemporaryDirectory() as tmp:
            path, expected = _build(kind, Path(tmp), 6, 5, 2, "features")
            if kind in ACCEPTED:
                assert expected is not None
                assert np.array_equal(read_everything(path)["features"], expected["features"])
            else:
                with pytest.raises(StoreError, match=REFUSED[kind]):
                    read_everything(path)


# Minor cases: a message and exit status 2, never a traceback ---------------------------------
def _linked(tmp_path: Path, link: Callable[[Path], object]) -> list[object]:
    store = write_synthetic_store(tmp_path / "f.h5", n_classes=3, n_max=12, dim=4,
                                  n_test_per_class=4)
    with h5py.File(store, "r+") as handle:
        del handle["train/features"]
        handle["train/features"] = link(tmp_path)
    return [store]


def _truncated(tmp_path: Path) -> list[object]:
    store = write_synthetic_store(tmp_path / "f.h5", n_classes=3, n_max=12, dim=4,
                                  n_test_per_class=4)
    store.write_bytes(store.read_bytes()[:3000])
    return [store]


def _failing_extract_into_a_new_folder(tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> list[object]:
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=rng.integers(0, 255, (8, 8, 8, 3)).astype(np.uint8),
             y_train=np.arange(8) % 2, x_test=rng.integers(0, 255, (4, 8, 8, 3)).astype(np.uint8),
             y_test=np.arange(4) % 2)

    def disk_full(self: h5py.File) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(h5py.File, "flush", disk_full)
    return ["extract", "--model", "pixels_8", "--data", f"npz:{data}", "--workers", "0",
            "--threads", "1", "-o", tmp_path / "new" / "deeper" / "f.h5"]


@pytest.mark.parametrize(("case", "command", "message", "never"), [
    ("external link to a missing file", "info",
     "is an external link to missing.h5:/x", "KeyError"),
    ("external link to a non-HDF5 file", "evaluate-separability",
     "is an external link to", "KeyError"),
    ("dangling soft link", "info", "a dangling link", "KeyError"),
    ("dangling soft link", "evaluate-separability", "a dangling link", "KeyError"),
    ("truncated store", "info", "truncated or damaged: 3000 bytes on disk", "locked"),
    ("truncated store", "evaluate-separability", "truncated or damaged", "locked"),
    ("failed extract into a new folder", None,
     "the unfinished file was removed and no f.h5 was written", "as it was"),
])
def test_minor_cases_end_in_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      case: str, command: str | None, message: str,
                                      never: str) -> None:
    (tmp_path / "notes.txt").write_text("not hdf5")
    builders: dict[str, Callable[[], list[object]]] = {
        "external link to a missing file": lambda: _linked(
            tmp_path, lambda _: h5py.ExternalLink("missing.h5", "/x")),
        "external link to a non-HDF5 file": lambda: _linked(
            tmp_path, lambda p: h5py.ExternalLink(str(p / "notes.txt"), "/x")),
        "dangling soft link": lambda: _linked(tmp_path, lambda _: h5py.SoftLink("/nowhere")),
        "truncated store": lambda: _truncated(tmp_path),
        "failed extract into a new folder": lambda: _failing_extract_into_a_new_folder(
            tmp_path, monkeypatch),
    }
    args = builders[case]()
    if command == "evaluate-separability":
        args = [command, *args, "--knn-queries", "20", "--pca-dim", "2", "--threads", "1"]
    elif command is not None:
        args = [command, *args]
    result = _cli(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output and never not in result.output, result.output
    if case == "failed extract into a new folder":
        assert not (tmp_path / "new").exists()


def test_a_failed_write_removes_the_folders_it_made_and_says_what_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(self: h5py.File) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    new = tmp_path / "new" / "deeper" / "f.h5"
    monkeypatch.setattr(h5py.File, "flush", disk_full)
    with pytest.raises(StoreError, match=rf"no f\.h5 was written and the folder {tmp_path}/new "
                                         "made for it was removed"):
        StoreWriter(new, PROV)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.undo()
    existing = tmp_path / "kept" / "f.h5"
    write_store(existing, 4, 2)
    before = existing.read_bytes()
    monkeypatch.setattr(h5py.File, "flush", disk_full)
    with pytest.raises(StoreError, match=r"removed and f\.h5 is as it was before"):
        StoreWriter(existing, PROV, mode="overwrite")
    assert existing.read_bytes() == before and existing.parent.exists()


def test_resume_never_writes_through_an_external_link(tmp_path: Path) -> None:
    target = tmp_path / "other.h5"
    write_store(target, 10, 2)
    before = target.read_bytes()
    path = tmp_path / "f.h5"
    with StoreWriter(path, PROV, chunk_bytes=64) as writer:  # interrupted after 5 rows
        writer.begin_split("train", np.zeros(10, int), np.arange(10), NAMES, 2)
        writer.write_rows("train", 0, np.ones((5, 2)))
    with h5py.File(tmp_path / "f.h5.partial", "r+") as handle:
        del handle["train/features"]
        handle["train/features"] = h5py.ExternalLink(str(target), "/train/features")
    with pytest.raises(StoreError, match="is an external link to"):
        StoreWriter(path, PROV, mode="resume")
    assert target.read_bytes() == before
