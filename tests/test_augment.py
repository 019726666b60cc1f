"""Augmented views: keyed randomness (seed, index, view), policies, provenance."""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from featlt.errors import FeatltError
from featlt.extract.augment import (
    DEFAULT_POLICY,
    POLICIES,
    crop_box,
    describe_policy,
    make_view_transform,
    view_generator,
)

CONFIG = {"input_size": (3, 40, 40), "interpolation": "bicubic",
          "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "crop_pct": 0.9}


def _image(seed: int = 0, shape: tuple[int, int] = (24, 32)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8))


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.numpy().tobytes()).hexdigest()


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_same_key_same_view_different_key_different_view(policy):
    transform = make_view_transform(policy, CONFIG)
    image = _image()
    a = transform(image, 7, 11, 0)
    assert a.shape == (3, 40, 40) and a.dtype == torch.float32
    assert torch.equal(a, transform(image, 7, 11, 0))
    assert torch.equal(a, pickle.loads(pickle.dumps(transform))(image, 7, 11, 0))
    if policy != "flip":  # flip has only two outcomes; its test is below
        keys = [(7, 11, 1), (8, 11, 0), (7, 12, 0)]
        others = [transform(image, *key) for key in keys]
        assert all(not torch.equal(a, other) for other in others)


def test_views_identical_in_another_process():
    transform = make_view_transform(DEFAULT_POLICY, CONFIG)
    here = transform.views(_image(), seed=3, index=123456, n_views=4)
    assert here.shape == (4, 3, 40, 40)
    assert len({_digest(v) for v in here}) == 4
    script = textwrap.dedent(f"""
        import hashlib, numpy as np, torch
        from PIL import Image
        from featlt.extract.augment import make_view_transform
        torch.manual_seed(999)  # a different global state must not matter
        rng = np.random.default_rng(0)
        image = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        views = make_view_transform("{DEFAULT_POLICY}", {CONFIG!r}).views(image, 3, 123456, 4)
        print(hashlib.sha256(views.numpy().tobytes()).hexdigest())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.strip() == _digest(here)


def test_global_random_state_untouched():
    transform = make_view_transform("strong", CONFIG)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    transform(_image(), 0, 0, 0)
    assert torch.equal(torch.rand(3), expected)


def test_flip_policy_is_the_resized_image_or_its_mirror():
    """``flip`` keeps the whole (square) image: each view equals the plain resize or its mirror."""
    import torchvision.transforms.functional as tvf

    image = _image(shape=(16, 16))
    plain = tvf.resize(image, [40, 40], interpolation=tvf.InterpolationMode.BICUBIC)
    base = tvf.normalize(tvf.to_tensor(plain), CONFIG["mean"], CONFIG["std"])
    transform = make_view_transform("flip", CONFIG)
    seen = set()
    for view in range(12):
        out = transform(image, 0, 0, view)
        if torch.equal(out, base):
            seen.add("plain")
        else:
            assert torch.equal(out, base.flip(-1))
            seen.add("mirror")
    assert seen == {"plain", "mirror"}


def test_constant_image_normalised_exactly():
    """A grey image stays grey under crops, flips and jitter of a grey value: (v/255-m)/s."""
    image = Image.new("RGB", (20, 20), (128, 128, 128))
    out = make_view_transform("flip", CONFIG)(image, 1, 2, 3)
    assert torch.allclose(out, torch.full_like(out, (128 / 255 - 0.5) / 0.25), atol=1e-6)


def test_crop_box_respects_scale_and_falls_back():
    areas = []
    for index in range(200):
        top, left, h, w = crop_box(30, 50, (0.2, 0.6), (3 / 4, 4 / 3), view_generator(0, index, 0))
        assert top >= 0 and top + h <= 30 and left >= 0 and left + w <= 50
        areas.append(h * w / (30 * 50))
    assert min(areas) > 0.17 and max(areas) < 0.64  # rounding widens [0.2, 0.6] slightly
    # an aspect range the image cannot reach: the largest centred crop of the clamped aspect
    assert crop_box(10, 100, (1.0, 1.0), (1.0, 1.0), view_generator(0, 0, 0)) == (0, 45, 10, 10)


def test_bad_inputs():
    with pytest.raises(FeatltError, match="unknown; choose one of mild, flip, strong"):
        make_view_transform("heavy", CONFIG)
    with pytest.raises(FeatltError, match="needs input_size"):
        make_view_transform("mild", {"input_size": (3, 40, 40)})
    with pytest.raises(FeatltError, match="not a fixed mode"):
        make_view_transform("mild", {**CONFIG, "interpolation": "random"})
    with pytest.raises(FeatltError, match="non-negative"):
        view_generator(-1, 0, 0)


def test_describe_is_provenance():
    record = make_view_transform("mild", CONFIG).describe()
    json.dumps(record)
    assert record["name"] == "mild" and record["size"] == [40, 40]
    assert record["crop_scale"] == (0.6, 1.0) and record["jitter_p"] == 0.8
    assert "SeedSequence([seed, index, view])" in describe_policy("mild")["randomness"]
