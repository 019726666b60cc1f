"""uint8 transport + batched normalisation equals timm's per-image eval transform, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from featlt.errors import FeatltError
from featlt.extract.augment import make_view_transform
from featlt.extract.batch_normalize import BatchNormalize, split_transform

CONFIGS = [
    {"input_size": (3, 40, 40), "interpolation": "bicubic", "mean": (0.485, 0.456, 0.406),
     "std": (0.229, 0.224, 0.225), "crop_pct": 0.875},
    {"input_size": (3, 24, 24), "interpolation": "bilinear", "mean": (0.5, 0.5, 0.5),
     "std": (0.5, 0.5, 0.5), "crop_pct": 1.0},
]


def _images(n: int = 6) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    shapes = [(32, 32), (17, 45), (60, 28)]
    return [Image.fromarray(rng.integers(0, 256, (*shapes[i % 3], 3), dtype=np.uint8))
            for i in range(n)]


@pytest.mark.parametrize("config", CONFIGS)
def test_batched_normalisation_is_bit_identical(config):
    from timm.data import create_transform

    transform = create_transform(**config)
    per_image, normalize = split_transform(transform)
    images = _images()
    pixels = torch.stack([per_image(image) for image in images])
    assert pixels.dtype == torch.uint8 and pixels.shape == (6, 3, *config["input_size"][1:])
    assert torch.equal(normalize(pixels), torch.stack([transform(image) for image in images]))


def test_uint8_views_normalise_to_the_float_views():
    transform = make_view_transform("strong", CONFIGS[0])
    normalize = BatchNormalize(transform.mean, transform.std)
    for index, image in enumerate(_images(3)):
        pixels = transform.views(image, 3, index, 4, as_uint8=True)
        assert pixels.dtype == torch.uint8 and pixels.shape == (4, 3, 40, 40)
        assert torch.equal(normalize(pixels), transform.views(image, 3, index, 4))


def test_transform_without_to_tensor_and_normalize_is_refused():
    from torchvision import transforms

    with pytest.raises(FeatltError, match="does not end in ToTensor \\+ Normalize"):
        split_transform(transforms.Compose([transforms.Resize(8), transforms.ToTensor()]))
    with pytest.raises(FeatltError, match="create_transform"):
        split_transform(lambda image: image)


@pytest.mark.parametrize("size", [(24, 24), (23, 20), (5, 44), (70, 10)])
def test_center_crop_to_tensor_equals_the_two_torchvision_steps(size):
    from torchvision import transforms

    from featlt.extract.batch_normalize import CenterCropToTensor

    fused = CenterCropToTensor(size)
    two_steps = transforms.Compose([transforms.CenterCrop(size), transforms.PILToTensor()])
    images = [*_images(3), _images(1)[0].convert("L")]  # sizes odd/even; a grayscale image
    for image in images:
        expected = two_steps(image)
        out = fused(image)
        assert out.dtype == torch.uint8 and torch.equal(out, expected)


def test_split_transform_fuses_a_final_center_crop():
    from timm.data import create_transform

    per_image, _ = split_transform(create_transform(**CONFIGS[0]))
    assert "CenterCropToTensor(size=(40, 40))" in repr(per_image)
