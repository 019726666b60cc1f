"""Extraction options of issue 3: views, layer, forward path, logits, AMP refusals, pixels."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from featlt.errors import FeatltError, StoreError
from featlt.extract.pipeline import ExtractConfig, _Loop, extract_features
from featlt.extractors.backbones import BackboneSpec, create_backbone, resolve_spec
from featlt.extractors.fast_forward import AMP_TOLERANCE, TOLERANCE
from featlt.runtime import Runtime
from featlt.store.feature_store import FeatureStore

MODEL = "test-efficientnet-random"
RUNTIME = Runtime(threads=1)


@pytest.fixture(scope="module")
def arrays(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """npz: 3 classes; train 12, test 6; 20x20 RGB uint8 noise around a class colour."""
    rng = np.random.default_rng(1)
    y_train, y_test = np.repeat(np.arange(3), 4), np.repeat(np.arange(3), 2)

    def images(labels: np.ndarray) -> np.ndarray:
        base = labels[:, None, None, None] * 70
        return (base + rng.integers(0, 60, (labels.size, 20, 20, 3))).astype(np.uint8)

    path = tmp_path_factory.mktemp("data") / "data.npz"
    np.savez(path, x_train=images(y_train), y_train=y_train, x_test=images(y_test),
             y_test=y_test)
    return path


def _extract(arrays: Path, out: Path, **changes: object) -> FeatureStore:
    config = ExtractConfig(model=MODEL, data=f"npz:{arrays}", output=out, resolution=32,
                           batch_size=4, workers=0, dtype="float32")
    extract_features(dataclasses.replace(config, **changes), RUNTIME)
    return FeatureStore(out)


def test_views_are_keyed_augmentations_beside_the_clean_features(arrays, tmp_path):
    with _extract(arrays, tmp_path / "v.h5", views=3, splits=("test",)) as store:
        clean, views = store.read("test"), store.read("test", array="views")
        provenance = store.provenance
    with _extract(arrays, tmp_path / "p.h5", splits=("test",)) as plain:
        assert plain.read("test").tobytes() == clean.tobytes()  # views leave features alone
        assert plain.provenance["views"] == {"n_views": 0}
    assert views.shape == (6, 3, 256) and np.isfinite(views).all()
    assert not np.allclose(views[:, 0], clean) and not np.allclose(views[:, 0], views[:, 1])
    assert provenance["views"]["n_views"] == 3 and provenance["views"]["seed"] == 0
    assert provenance["views"]["augment"]["name"] == "mild"
    assert provenance["views"]["augment"]["size"] == [32, 32]
    # the same keys give the same views; another policy and another seed give other ones
    with _extract(arrays, tmp_path / "again.h5", views=3, splits=("test",), workers=1) as again:
        assert again.read("test", array="views").tobytes() == views.tobytes()
    with _extract(arrays, tmp_path / "flip.h5", views=3, splits=("test",),
                  augment="flip") as flip:
        assert not np.allclose(flip.read("test", array="views"), views)
        assert flip.provenance["views"]["augment"]["name"] == "flip"
    with pytest.raises(FeatltError, match="unknown; choose one of mild, flip, strong"):
        _extract(arrays, tmp_path / "x.h5", views=1, augment="heavy")
    with pytest.raises(FeatltError, match="--views -1: must be 0"):
        _extract(arrays, tmp_path / "x.h5", views=-1)


def test_default_forward_path_matches_eager_within_tolerance(arrays, tmp_path):
    with _extract(arrays, tmp_path / "auto.h5", store_logits=True) as auto:
        fast = {s: auto.read(s) for s in ("train", "test")}
        fast_logits = auto.read("test", array="logits")
        record = auto.provenance["forward"]
        check = auto.provenance["run"]["forward_check"]
    with _extract(arrays, tmp_path / "eager.h5", store_logits=True,
                  forward_path="eager") as eager:
        for split, values in fast.items():
            reference = eager.read(split)
            error = np.abs(values - reference).max() / np.abs(reference).max()
            assert error <= TOLERANCE
        reference_logits = eager.read("test", array="logits")
        assert eager.provenance["forward"]["name"] == "eager"
    assert record["name"] == "folded" and record["requested"] == "auto"
    assert record["folded_batchnorms"] > 0  # test_efficientnet: every BatchNorm follows a conv
    assert record["amp_dtype"] is None and not record["compiled"]
    assert check["max_relative_error"] <= check["tolerance"] == TOLERANCE
    assert check["example_shape"] == [4, 3, 32, 32]  # min(batch size, CHECK_ROWS) images
    scale = np.abs(reference_logits).max()
    assert np.abs(fast_logits - reference_logits).max() / scale <= TOLERANCE
    with pytest.raises(FeatltError, match="--forward-path fastest: unknown"):
        _extract(arrays, tmp_path / "x.h5", forward_path="fastest")


def test_stored_logits_are_the_classifier_of_the_stored_features(arrays, tmp_path):
    with _extract(arrays, tmp_path / "l.h5", store_logits=True, views=1,
                  splits=("test",)) as store:
        feats, logits = store.read("test"), store.read("test", array="logits")
    backbone = create_backbone(resolve_spec(MODEL, None, 32))
    weight = backbone.model.classifier.weight.numpy()
    bias = backbone.model.classifier.bias.numpy()
    np.testing.assert_allclose(logits, feats @ weight.T + bias, rtol=0, atol=1e-4)


def test_layer_is_the_pooled_intermediate_map(arrays, tmp_path):
    with _extract(arrays, tmp_path / "layer.h5", layer="blocks.2", splits=("test",),
                  store_logits=True) as store:
        feats = store.read("test")
        logits = store.read("test", array="logits")
        provenance = store.provenance
    assert feats.shape == (6, 32) and logits.shape == (6, 1000)
    assert provenance["backbone"]["feature"]["layer"] == "blocks.2"
    assert provenance["backbone"]["feature"]["index"] == 2
    assert "pooled layer blocks.2" in provenance["store"]["features"]
    # the same numbers by hand: transform the images, run timm's forward_intermediates, average
    from featlt.data.sources import open_source

    backbone = create_backbone(resolve_spec(MODEL, None, 32))
    source = open_source(f"npz:{arrays}")
    x = torch.stack([backbone.transform(source.load_image("test", i)) for i in range(6)])
    with torch.inference_mode():
        maps = backbone.model.forward_intermediates(x, indices=[2], intermediates_only=True)
        full = backbone.model(x)
    np.testing.assert_allclose(feats, maps[0].mean((2, 3)).numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(logits, full.numpy(), rtol=0, atol=1e-3)
    with pytest.raises(FeatltError, match=r"--layer blocks\.9: .* no such layer; its layers are "
                                          r"blocks\.0, blocks\.1, .*blocks\.4"):
        _extract(arrays, tmp_path / "x.h5", layer="blocks.9")


def test_pixels_backbone_takes_no_weights_and_no_layer():
    with pytest.raises(FeatltError, match="pixels pseudo-backbone has no weights; drop --weights"):
        resolve_spec("pixels", "random")
    spec = resolve_spec("pixels_8", None, layer="blocks.0")
    assert spec == BackboneSpec("pixels_8", "none", layer="blocks.0")
    with pytest.raises(FeatltError, match="has no forward_intermediates"):
        create_backbone(spec)
    backbone = create_backbone(dataclasses.replace(spec, layer=None))
    assert backbone.dim == 192 and backbone.num_classes == 0
    assert backbone.provenance["weights"]["source"] == "none"
    assert backbone.provenance["model"] == "pixels_8"


def _fake_loop(tmp_path: Path, amp_dtype: str | None, dtype: str) -> _Loop:
    config = ExtractConfig(model=MODEL, data="digits", output=tmp_path / "f.h5", dtype=dtype)
    from timm.data import create_transform

    backbone = SimpleNamespace(amp_dtype=amp_dtype, transform=create_transform((3, 8, 8)),
                               device="cpu")
    return _Loop(config, backbone, forward=None, view_transform=None, seed=0, workers=0)


def test_overflow_under_float16_autocast_names_the_fix(tmp_path):
    overflowed = {"features": np.array([[1.0, np.inf]], np.float32), "views": None,
                  "logits": None}
    with pytest.raises(StoreError, match=r"features hold NaN/inf under float16 autocast .* "
                                         r"--amp-dtype bfloat16 or --no-amp, and --overwrite"):
        _fake_loop(tmp_path, "float16", "float32")._check(overflowed, "train", 64)
    loud = {"features": np.ones((1, 2), np.float32), "views": np.full((1, 2, 2), 7e4, np.float32),
            "logits": None}
    with pytest.raises(StoreError, match=r"views reach 7e\+04, beyond float16's range"):
        _fake_loop(tmp_path, None, "float16")._check(loud, "train", 0)
    _fake_loop(tmp_path, None, "float32")._check(loud, "train", 0)  # float32 stores it


def test_bfloat16_and_unknown_amp_dtypes(arrays, tmp_path):
    with pytest.raises(FeatltError, match="--amp-dtype half: unknown; choose one of float16, "
                                          "bfloat16"):
        _extract(arrays, tmp_path / "x.h5", amp_dtype="half")
    # on CPU AMP is never used: the choice is accepted and float32 recorded
    with _extract(arrays, tmp_path / "bf.h5", amp_dtype="bfloat16", splits=("test",)) as store:
        assert store.provenance["backbone"]["precision"] == "float32"
        assert store.provenance["forward"]["amp_dtype"] is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(("amp_dtype", "amp"), [("float16", True), ("bfloat16", True),
                                                ("float16", False)])
def test_cuda_extraction_records_precision_and_matches_cpu(arrays, tmp_path, amp_dtype, amp):
    if amp and amp_dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    with _extract(arrays, tmp_path / "cpu.h5", splits=("test",)) as cpu:
        reference = cpu.read("test")
    out = tmp_path / "gpu.h5"
    config = ExtractConfig(model=MODEL, data=f"npz:{arrays}", output=out, resolution=32,
                           batch_size=4, workers=0, dtype="float32", splits=("test",),
                           amp=amp, amp_dtype=amp_dtype)
    extract_features(config, Runtime(device="cuda", threads=1))
    with FeatureStore(out) as store:
        feats = store.read("test")
        record = store.provenance["forward"]
        assert store.provenance["backbone"]["precision"] == (
            f"amp-{amp_dtype}" if amp else "float32")
    assert record["amp_dtype"] == (amp_dtype if amp else None) and "tf32" in record
    tolerance = AMP_TOLERANCE[amp_dtype if amp else "float16"]  # float32 convolutions use TF32
    assert np.abs(feats - reference).max() / np.abs(reference).max() <= tolerance


def test_workers_normalise_bit_identically_to_the_per_image_transform():
    """CPU runs normalise in the decode workers' collate: same bits as timm's transform."""
    from PIL import Image
    from timm.data import create_transform

    from featlt.extract.batch_normalize import split_transform
    from featlt.extract.decode_loader import Collate

    transform = create_transform((3, 24, 24), mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.25))
    per_image, normalize = split_transform(transform)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (30, 28, 3), dtype=np.uint8))
              for _ in range(3)]
    items = [(per_image(image), None, None) for image in images]
    expected = torch.stack([transform(image) for image in images])
    batch, views, error = Collate(normalize, None, channels_last=True)(items)
    assert error is None and views is None and batch.dtype == torch.float32
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch, expected)
    raw, _, _ = Collate()(items)  # CUDA: uint8, normalised on the GPU
    assert raw.dtype == torch.uint8 and torch.equal(normalize(raw), expected)
    failed = Collate(normalize)([items[0], (None, None, "image 1: cannot be decoded")])
    assert failed == (None, None, "image 1: cannot be decoded")
