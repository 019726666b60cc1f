"""Issue-3 dataset formats: CIFAR pickles, MedMNIST npz, split lists, idx; --skip-bad helper."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import featlt.data.sources.medmnist
import featlt.data.sources.split_list  # noqa: F401  (the imports register their schemes)
from featlt.data.sources import open_source
from featlt.data.sources.cifar_pickle import restricted_load
from featlt.data.sources.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, read_idx
from featlt.data.unreadable import find_unreadable
from featlt.errors import FeatltError

RNG = np.random.default_rng(0)


def _dump(path: Path, obj: object, protocol: int = 2) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def _py2_style(path: Path) -> None:
    """Rewrite a protocol-2 pickle as Python 2 / numpy 1 wrote it: numpy.core module names."""
    path.write_bytes(path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


def _roundtrip(source):
    return pickle.loads(pickle.dumps(source))


# ---------------------------------------------------------------- CIFAR pickles


@pytest.fixture
def cifar10_root(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Fake cifar-10-batches-py: 5 train batches of 3 images, a test batch of 4."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = RNG.integers(0, 256, (19, 3072), dtype=np.uint8)
    labels = RNG.integers(0, 10, 19)
    for k in range(5):
        rows = slice(3 * k, 3 * k + 3)
        _dump(folder / f"data_batch_{k + 1}", {
            "batch_label": f"training batch {k + 1} of 5", "data": data[rows],
            "labels": [int(v) for v in labels[rows]],
            "filenames": [f"img_{i}.png" for i in range(3)],
        })
    _dump(folder / "test_batch", {"data": data[15:], "labels": [int(v) for v in labels[15:]]})
    _dump(folder / "batches.meta", {"label_names": [f"class{c}" for c in range(10)]})
    _py2_style(folder / "data_batch_2")
    return tmp_path, data, labels


def test_cifar10_reads_torchvision_layout(cifar10_root):
    root, data, labels = cifar10_root
    source = open_source(f"cifar10:{root}")
    assert source.split_names() == ("train", "test")
    present = np.unique(labels)  # classes without images are dropped, ids kept in order
    assert source.class_names == [f"class{c}" for c in present]
    np.testing.assert_array_equal(present[source.labels("train")], labels[:15])
    np.testing.assert_array_equal(present[source.labels("test")], labels[15:])
    image = np.asarray(_roundtrip(source).load_image("train", 4))  # batch 2 (py2 names), row 1
    assert image.shape == (32, 32, 3)
    # CIFAR rows are 1024 red, 1024 green, 1024 blue values, each row-major 32 x 32
    r, c = 5, 7
    expected = [data[4, ch * 1024 + r * 32 + c] for ch in range(3)]
    assert image[r, c].tolist() == expected
    np.testing.assert_array_equal(np.asarray(source.load_image("test", 0))[0, 0],
                                  data[15, [0, 1024, 2048]])
    described = source.describe()
    json.dumps(described)
    assert set(described["sha256"]) == {*(f"data_batch_{k}" for k in range(1, 6)),
                                        "test_batch", "batches.meta"}
    # the folder itself works as ROOT too
    assert open_source(f"cifar10:{root / 'cifar-10-batches-py'}").labels("test").size == 4


@pytest.mark.parametrize("scheme, n_classes", [("cifar100", 100), ("cifar100-coarse", 20)])
def test_cifar100_fine_and_coarse(tmp_path, scheme, n_classes):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    fine, coarse = RNG.integers(0, 100, 6), RNG.integers(0, 20, 6)
    data = RNG.integers(0, 256, (6, 3072), dtype=np.uint8)
    for name, rows in (("train", slice(0, 4)), ("test", slice(4, 6))):
        _dump(folder / name, {
            "data": data[rows], "fine_labels": fine[rows].tolist(),
            "coarse_labels": coarse[rows].tolist(),
        }, protocol=5)
    _dump(folder / "meta", {
        "fine_label_names": [f"f{c}" for c in range(100)],
        "coarse_label_names": [f"c{c}" for c in range(20)],
    })
    source = open_source(f"{scheme}:{tmp_path}")
    expected = fine if scheme == "cifar100" else coarse
    present = np.unique(expected)  # of the n_classes named, those with images
    prefix = "f" if scheme == "cifar100" else "c"
    assert source.class_names == [f"{prefix}{c}" for c in present] and present[-1] < n_classes
    np.testing.assert_array_equal(present[source.labels("train")], expected[:4])
    np.testing.assert_array_equal(present[source.labels("test")], expected[4:])


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_cifar_pickle_is_refused_without_running(cifar10_root, tmp_path):
    root, _, _ = cifar10_root
    marker = tmp_path / "pwned"
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    _dump(batch, {"data": _Exploit(marker), "labels": [0]})
    with pytest.raises(FeatltError, match=r"data_batch_3: refused .*system"):
        open_source(f"cifar10:{root}")
    assert not marker.exists()
    for protocol in (0, 2, 5):
        _dump(batch, [eval, _Exploit(marker)], protocol=protocol)
        with pytest.raises(FeatltError, match="refused"):
            restricted_load(batch)
    assert not marker.exists()
    pickle.loads(batch.read_bytes())  # the plain unpickler does run it: the exploit is real
    assert marker.exists()


def test_cifar_pickle_bad_contents(cifar10_root):
    root, _, _ = cifar10_root
    folder = root / "cifar-10-batches-py"
    codecs_rot13 = (
        b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R."
    )
    (folder / "test_batch").write_bytes(codecs_rot13)
    with pytest.raises(FeatltError, match=r"refused.*rot13"):
        restricted_load(folder / "test_batch")
    (folder / "test_batch").write_bytes(pickle.dumps({"data": 1}, protocol=2)[:-3])
    with pytest.raises(FeatltError, match="test_batch: not a readable pickle"):
        open_source(f"cifar10:{root}")
    _dump(folder / "test_batch", {"data": np.zeros((2, 10), np.uint8), "labels": [0, 1]})
    with pytest.raises(FeatltError, match=r"'data' must be a \(N, 3072\) uint8"):
        open_source(f"cifar10:{root}")
    with pytest.raises(FeatltError, match="pass the folder where the CIFAR archive"):
        open_source(f"cifar10:{root / 'nowhere'}")


# ---------------------------------------------------------------- MedMNIST


def _medmnist(path: Path, rgb: bool = False, n_classes: int = 4) -> dict[str, np.ndarray]:
    shape = (28, 28, 3) if rgb else (28, 28)
    arrays = {}
    for split, n in (("train", 12), ("val", 3), ("test", 5)):
        arrays[f"{split}_images"] = RNG.integers(0, 256, (n, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = RNG.integers(0, n_classes, (n, 1)).astype(np.uint8)
    arrays["train_labels"][0, 0] = n_classes - 1
    np.savez_compressed(path, **arrays)
    return arrays


def test_medmnist_octmnist_like(tmp_path):
    arrays = _medmnist(tmp_path / "octmnist.npz")
    source = open_source(f"medmnist:{tmp_path / 'octmnist.npz'}")
    assert source.split_names() == ("train", "val", "test")
    assert source.class_names == ["0", "1", "2", "3"]
    for split in source.split_names():
        labels = source.labels(split)
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(labels, arrays[f"{split}_labels"][:, 0])
    image = np.asarray(_roundtrip(source).load_image("val", 2))
    assert image.shape == (28, 28, 3)
    for channel in range(3):  # grayscale replicated, values unchanged
        np.testing.assert_array_equal(image[:, :, channel], arrays["val_images"][2])
    assert len(source.describe()["sha256"]) == 64


def test_medmnist_rgb_and_refusals(tmp_path):
    arrays = _medmnist(tmp_path / "pathmnist.npz", rgb=True, n_classes=9)
    source = open_source(f"medmnist:{tmp_path / 'pathmnist.npz'}")
    image = np.asarray(source.load_image("test", 4))
    np.testing.assert_array_equal(image, arrays["test_images"][4])

    np.savez(tmp_path / "chest.npz", train_images=np.zeros((2, 28, 28), np.uint8),
             train_labels=np.zeros((2, 14), np.uint8))
    with pytest.raises(FeatltError, match="multi-label"):
        open_source(f"medmnist:{tmp_path / 'chest.npz'}")
    np.savez(tmp_path / "organ3d.npz", train_images=np.zeros((2, 28, 28, 28), np.uint8),
             train_labels=np.zeros((2, 1), np.uint8))
    with pytest.raises(FeatltError, match="3-D volume"):
        open_source(f"medmnist:{tmp_path / 'organ3d.npz'}")
    np.savez(tmp_path / "short.npz", train_images=np.zeros((3, 28, 28), np.uint8),
             train_labels=np.zeros((2, 1), np.uint8))
    with pytest.raises(FeatltError, match="3 images but 2 labels"):
        open_source(f"medmnist:{tmp_path / 'short.npz'}")
    np.savez(tmp_path / "other.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(FeatltError, match="not a MedMNIST file"):
        open_source(f"medmnist:{tmp_path / 'other.npz'}")
    with pytest.raises(FeatltError, match="not found"):
        open_source(f"medmnist:{tmp_path / 'missing.npz'}")


# ---------------------------------------------------------------- split lists


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 5, 3), value, np.uint8)).save(path)


@pytest.fixture
def list_root(tmp_path: Path) -> Path:
    """ImageNet-LT-like root: train/<wnid>/*.png, val/*.png and the three lists."""
    root = tmp_path / "imagenet"
    train_lines, val_lines = [], []
    for label, wnid in enumerate(["n01", "n02", "n03"]):
        for k in range(label + 1):
            _png(root / "train" / wnid / f"{wnid}_{k}.png", 10 * label + k)
            train_lines.append(f"train/{wnid}/{wnid}_{k}.png {label}")
        _png(root / "val" / f"val {label}.png", 100 + label)  # a space in the name
        val_lines.append(f"val/val {label}.png {label}")
    (root / "LT_train.txt").write_text("\n".join(train_lines) + "\n\n")
    (root / "LT_val.txt").write_text("\n".join(val_lines))
    (root / "LT_test.txt").write_text("\n".join(val_lines[::-1]))
    return root


def test_split_list_discovers_lists_and_names(list_root):
    source = open_source(f"split-list:{list_root}")
    assert source.split_names() == ("train", "val", "test")
    assert source.class_names == ["n01", "n02", "n03"]
    np.testing.assert_array_equal(source.labels("train"), [0, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(source.labels("test"), [2, 1, 0])
    assert np.asarray(_roundtrip(source).load_image("train", 2))[0, 0, 0] == 11
    assert np.asarray(source.load_image("val", 1))[0, 0, 0] == 101
    described = source.describe()
    assert described["class_names_from"] == "parent folder"
    assert len(described["fingerprint"]["sha256"]) == 64


def test_split_list_explicit_lists_and_names_file(list_root, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("tench\ngoldfish\nshark\n")
    source = open_source(
        f"split-list:{list_root}?train=LT_train.txt&test={list_root / 'LT_val.txt'}&names={names}"
    )
    assert source.split_names() == ("train", "test")
    assert source.class_names == ["tench", "goldfish", "shark"]
    with pytest.raises(FeatltError, match=r"unknown or repeated option.*bogus"):
        open_source(f"split-list:{list_root}?train=LT_train.txt&bogus=1")


@pytest.mark.parametrize("line, problem", [
    ("/etc/passwd 0", "is absolute"),
    ("train/../../secret.png 0", "contains '..'"),
    ("train/n01/n01_0.png zero", "integer label"),
    ("train/n01/n01_0.png -1", "negative"),
])
def test_split_list_refuses_bad_lines(list_root, line, problem):
    lines = (list_root / "LT_train.txt").read_text().splitlines()
    lines.insert(2, line)
    (list_root / "LT_train.txt").write_text("\n".join(lines))
    with pytest.raises(FeatltError, match=rf"LT_train.txt, line 3: .*{problem}"):
        open_source(f"split-list:{list_root}")


def test_split_list_symlink_out_of_root_and_bad_images(list_root, tmp_path):
    outside = tmp_path / "outside.png"
    _png(outside, 7)
    (list_root / "train" / "n01" / "n01_0.png").unlink()
    os.symlink(outside, list_root / "train" / "n01" / "n01_0.png")
    (list_root / "train" / "n03" / "n03_1.png").write_bytes(b"not a png")
    (list_root / "train" / "n02" / "n02_0.png").unlink()
    source = open_source(f"split-list:{list_root}")
    with pytest.raises(FeatltError, match="outside the dataset root"):
        source.load_image("train", 0)
    with pytest.raises(FeatltError, match=r"n02_0.png: not found"):
        source.load_image("train", 1)
    with pytest.raises(FeatltError, match=r"n03_1.png: cannot be decoded"):
        source.load_image("train", 4)
    np.testing.assert_array_equal(find_unreadable(source, "train"), [0, 1, 4])
    np.testing.assert_array_equal(find_unreadable(source, "train", workers=2), [0, 1, 4])
    assert find_unreadable(source, "val").size == 0


# ---------------------------------------------------------------- idx


def _idx_bytes(array: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write_idx_folder(folder: Path, gz: bool) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    arrays = {}
    for prefix, n in (("train", 7), ("t10k", 4)):
        images = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = RNG.integers(0, 10, n).astype(np.uint8)
        labels[0] = 9
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte" + (".gz" if gz else "")
            data = _idx_bytes(array, 0x08)
            (folder / name).write_bytes(gzip.compress(data) if gz else data)
            arrays[f"{prefix}-{kind}"] = array
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder(tmp_path, gz):
    arrays = _write_idx_folder(tmp_path / "mnist", gz)
    source = open_source(f"idx:{tmp_path / 'mnist'}")
    assert source.split_names() == ("train", "test")
    present = np.unique(np.concatenate([arrays["train-labels-idx1"],
                                        arrays["t10k-labels-idx1"]]))  # classes with images
    assert source.class_names == [str(c) for c in present]
    np.testing.assert_array_equal(present[source.labels("test")], arrays["t10k-labels-idx1"])
    image = np.asarray(_roundtrip(source).load_image("train", 3))
    np.testing.assert_array_equal(image[:, :, 1], arrays["train-images-idx3"][3])
    named = open_source(f"fashion-mnist:{tmp_path / 'mnist'}")
    assert named.class_names == [FASHION_MNIST_CLASSES[c] for c in present]


def test_idx_value_types_and_damage(tmp_path):
    values = RNG.normal(size=(3, 4)).astype(np.float32)
    (tmp_path / "f.idx").write_bytes(_idx_bytes(values, 0x0D))
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx"), values)
    wide = RNG.integers(-5000, 5000, 6).astype(np.int16)
    (tmp_path / "s.idx").write_bytes(_idx_bytes(wide, 0x0B))
    np.testing.assert_array_equal(read_idx(tmp_path / "s.idx"), wide)
    (tmp_path / "cut.idx").write_bytes(_idx_bytes(wide, 0x0B)[:-1])
    with pytest.raises(FeatltError, match="truncated or damaged"):
        read_idx(tmp_path / "cut.idx")
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(FeatltError, match="bad magic number"):
        read_idx(tmp_path / "bad.idx")
    arrays_dir = tmp_path / "broken"
    _write_idx_folder(arrays_dir, gz=True)
    (arrays_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FeatltError, match="no t10k-labels-idx1-ubyte"):
        open_source(f"idx:{arrays_dir}")


def test_fashion_mnist_real_files():
    if not Path(FASHION_MNIST_DIR).is_dir():
        pytest.skip(f"{FASHION_MNIST_DIR} absent (apt-get install dataset-fashion-mnist)")
    source = open_source("fashion-mnist")
    # published: 60,000 train and 10,000 test images, balanced over 10 classes
    assert np.bincount(source.labels("train")).tolist() == [6000] * 10
    assert np.bincount(source.labels("test")).tolist() == [1000] * 10
    image = source.load_image("test", 9999)
    assert image.size == (28, 28) and image.mode == "RGB"
