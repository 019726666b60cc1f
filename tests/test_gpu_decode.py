"""Issue 19, item 2: JPEG decoding on the forward's device (:mod:`featlt.extract.device_decode`).

The device path's code runs here on CPU tensors (``--decode device`` on a CPU run: torchvision's
``decode_jpeg`` with libjpeg-turbo); the nvJPEG test needs a CUDA GPU and skips without one.
Measured on CPU (200 CIFAR-10 test JPEGs at 32, 160 and 224 px; benchmarks/bench_scaling.py
repeats it): the decoded pixels equal Pillow's exactly; after the resize (torch's antialiased
bicubic in two float32 passes, each rounded as Pillow rounds its fixed-point passes) and the crop,
pixels differ by at most 1 level, on average by 5e-4 levels (32 px), 6e-5 (160 px), 0 (224 px).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_distributed_extract import BAD, write_jpeg_npz

from featlt.data.decode import MAX_PIXELS_ENV, decode_image, jpeg_header, orientation_steps
from featlt.errors import FeatltError, ProvenanceMismatchError
from featlt.extract.batch_normalize import split_transform
from featlt.extract.device_decode import (
    DeviceDecoder,
    DeviceTransform,
    Encoded,
    EncodedImages,
    collate_encoded,
    plan_device_transform,
    upright,
)
from featlt.extract.pipeline import ExtractConfig, extract_features
from featlt.runtime import Runtime
from featlt.store.feature_store import FeatureStore

MODEL = "test-efficientnet-random"
EXIF_ORIENTATION = 0x0112
# stated tolerances of the device path's code on CPU against the CPU path (measured: module
# docstring)
PIXEL_MEAN_LEVELS, PIXEL_MAX_LEVELS = 0.01, 1
FEATURE_MIN_COSINE = 0.9999  # measured 0.999998 (largest difference 1.5e-5 of 0.021)
# nvJPEG's IDCT and chroma upsampling differ from libjpeg-turbo's: a bound expected, not yet
# measured (no GPU was lent to this task)
NVJPEG_MEAN_LEVELS, NVJPEG_MAX_LEVELS = 1.0, 32


def jpeg(pixels: np.ndarray, orientation: int = 1, mode: str = "RGB") -> bytes:
    """(H, W, 3) uint8 as JPEG bytes, with an EXIF orientation tag unless 1."""
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[EXIF_ORIENTATION] = orientation
    image.save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    return buffer.getvalue()


def scene(height: int = 40, width: int = 56, seed: int = 0) -> np.ndarray:
    """An asymmetric image: gradients, a bright corner block and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], axis=-1)
    pixels[: height // 4, : width // 5] = 250
    return np.clip(pixels + rng.integers(-10, 10, pixels.shape), 0, 255).astype(np.uint8)


def decode_on_device(data: bytes) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_jpeg

    return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                       mode=ImageReadMode.RGB)


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_as_rule_featlt_decode_2(orientation: int) -> None:
    data = jpeg(scene(), orientation)
    header = jpeg_header(data)
    assert header is not None and header.orientation == orientation
    cpu = np.asarray(decode_image(io.BytesIO(data), "test image"))
    device = upright(decode_on_device(data), orientation).permute(1, 2, 0).numpy()
    assert device.shape == cpu.shape  # 5..8 swap height and width
    assert np.array_equal(device, cpu)  # libjpeg-turbo both: the same pixels
    assert (orientation_steps(orientation) == ()) == (orientation == 1)


class _Images:
    """A minimal source over a list of encoded images (split ``train``)."""

    uri = "test-images"

    def __init__(self, blobs: list[bytes]):
        self.blobs = blobs

    def load_encoded(self, split: str, i: int) -> bytes:
        return self.blobs[i]

    def load_image(self, split: str, i: int) -> Image.Image:
        return decode_image(io.BytesIO(self.blobs[i]), f"{self.uri} item {i}")


def _transforms(resolution: int = 32) -> tuple[DeviceTransform, object]:
    from featlt.extractors.backbones import create_backbone, resolve_spec

    backbone = create_backbone(resolve_spec(MODEL, None, resolution, 0), device="cpu")
    plan = plan_device_transform(backbone.transform)
    assert plan is not None and plan.crop == (resolution, resolution)
    return plan, split_transform(backbone.transform)[0]


def test_device_pixels_within_the_stated_tolerance_of_the_cpu_path() -> None:
    plan, per_image = _transforms(32)
    blobs = [jpeg(scene(40 + 3 * k, 56 - 2 * k, seed=k), orientation=1 + k % 8)
             for k in range(16)]
    source = _Images(blobs)
    dataset = EncodedImages(source, "train", np.arange(len(blobs)), per_image)
    items, _, error = collate_encoded([dataset[j] for j in range(len(blobs))])
    assert error is None and all(isinstance(p, Encoded) for p, _ in items)
    decoder = DeviceDecoder(plan, "cpu", lambda i: per_image(source.load_image("train", i)))
    device = decoder(items).to(torch.int16)
    cpu = torch.stack([per_image(source.load_image("train", i)) for i in range(len(blobs))])
    difference = (device - cpu.to(torch.int16)).abs().float()
    assert device.shape == (16, 3, 32, 32) and decoder.fallbacks == 0
    assert difference.mean() <= PIXEL_MEAN_LEVELS and difference.max() <= PIXEL_MAX_LEVELS


def test_other_formats_cmyk_and_oversized_images_take_the_cpu_path(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, per_image = _transforms(32)
    png = io.BytesIO()
    Image.fromarray(scene()).save(png, "PNG")
    blobs = [png.getvalue(), jpeg(scene(), mode="CMYK"), jpeg(scene(), mode="L"), jpeg(scene())]
    source = _Images(blobs)
    dataset = EncodedImages(source, "train", np.arange(4), per_image)
    payloads = [dataset[j][0] for j in range(4)]
    assert [isinstance(p, Encoded) for p in payloads] == [False, False, True, True]
    for j in (0, 1):  # the CPU path's own pixels
        assert torch.equal(payloads[j], per_image(source.load_image("train", j)))
    monkeypatch.setenv(MAX_PIXELS_ENV, "100")
    payload, _, error = dataset[3]
    assert payload is None and "declares more pixels than featlt decodes" in error


def test_a_jpeg_the_device_decoder_refuses_is_decoded_on_the_cpu(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.io

    plan, per_image = _transforms(32)
    blobs = [jpeg(scene(seed=k)) for k in range(3)]
    source = _Images(blobs)
    real = torchvision.io.decode_jpeg

    def refuses_the_second(data: object, **kwargs: object) -> object:
        if isinstance(data, list) or torch.equal(data, torch.frombuffer(bytearray(blobs[1]),
                                                                        dtype=torch.uint8)):
            raise RuntimeError("nvjpeg: unsupported")
        return real(data, **kwargs)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", refuses_the_second)
    dataset = EncodedImages(source, "train", np.arange(3), per_image)
    items, _, _ = collate_encoded([dataset[j] for j in range(3)])
    decoder = DeviceDecoder(plan, "cpu", lambda i: per_image(source.load_image("train", i)))
    batch = decoder(items)
    assert decoder.fallbacks == 1
    assert torch.equal(batch[1], per_image(source.load_image("train", 1)))


def _config(data: Path, output: Path, **changes: object) -> ExtractConfig:
    base = ExtractConfig(model=MODEL, data=f"jpeg-npz:{data}", output=output, resolution=32,
                         batch_size=8, workers=1, forward_path="folded", dtype="float32")
    return dataclasses.replace(base, **changes)


def test_corrupt_jpegs_fail_and_are_skipped_as_on_cpu_and_features_agree(tmp_path: Path) -> None:
    data = write_jpeg_npz(tmp_path / "data.npz")
    runtime = Runtime(threads=1)
    messages = []
    for decode in ("cpu", "device"):
        with pytest.raises(FeatltError) as refused:
            extract_features(_config(data, tmp_path / f"bad-{decode}.h5", decode=decode), runtime)
        messages.append(str(refused.value))
    assert messages[0] == messages[1] and f"train image {BAD}: cannot be decoded" in messages[0]
    stores = {}
    for decode in ("cpu", "device"):
        out = tmp_path / f"{decode}.h5"
        extract_features(_config(data, out, decode=decode, skip_bad=True), runtime)
        with FeatureStore(out) as store:
            stores[decode] = {"features": store.read("train"), "index": store.source_index(
                "train"), "skipped": store.info("train").n_skipped,
                "path": store.provenance["decode_path"]["path"]}
    cpu, device = stores["cpu"], stores["device"]
    assert (cpu["path"], device["path"]) == ("cpu", "device")
    assert np.array_equal(cpu["index"], device["index"]) and cpu["skipped"] == 1 == \
        device["skipped"]
    a, b = cpu["features"], device["features"]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= FEATURE_MIN_COSINE
    with pytest.raises(ProvenanceMismatchError, match="differs at 'decode_path"):
        extract_features(_config(data, tmp_path / "cpu.h5", decode="device", skip_bad=True,
                                 mode="resume"), runtime)


def test_decode_device_refused_where_it_cannot_run(tmp_path: Path) -> None:
    data = write_jpeg_npz(tmp_path / "data.npz", bad=None)
    with pytest.raises(FeatltError, match="--decode device: not possible here \\(--views "
                                          "augments PIL images on the CPU\\)"):
        extract_features(_config(data, tmp_path / "v.h5", decode="device", views=1),
                         Runtime(threads=1))
    arrays = tmp_path / "arrays.npz"
    np.savez(arrays, x_train=np.zeros((8, 8, 8, 3), np.uint8), y_train=np.arange(8) % 2)
    with pytest.raises(FeatltError, match=f"dataset npz:{arrays} holds decoded pixels"):
        extract_features(dataclasses.replace(_config(data, tmp_path / "a.h5", decode="device"),
                                             data=f"npz:{arrays}"), Runtime(threads=1))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no CUDA GPU here: nvJPEG decoding is checked on a lent GPU only")
def test_nvjpeg_decoding_within_the_stated_tolerance() -> None:
    plan, per_image = _transforms(160)
    blobs = [jpeg(scene(120 + k, 160 - k, seed=k), orientation=1 + k % 8) for k in range(32)]
    source = _Images(blobs)
    dataset = EncodedImages(source, "train", np.arange(len(blobs)), per_image)
    items, _, _ = collate_encoded([dataset[j] for j in range(len(blobs))])
    decoder = DeviceDecoder(plan, "cuda", lambda i: per_image(source.load_image("train", i)))
    device = decoder(items).cpu().to(torch.int16)
    cpu = torch.stack([per_image(source.load_image("train", i)) for i in range(len(blobs))])
    difference = (device - cpu.to(torch.int16)).abs().float()
    assert decoder.fallbacks == 0
    assert difference.mean() <= NVJPEG_MEAN_LEVELS and difference.max() <= NVJPEG_MAX_LEVELS
