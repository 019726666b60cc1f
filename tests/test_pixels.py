"""The pixels pseudo-backbone: timm's feature-model protocol over raw pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from featlt.errors import FeatltError
from featlt.extractors.pixels import create_pixels_model, is_pixels_name, pixels_size


def test_names():
    assert pixels_size("pixels") == 16 and pixels_size("pixels_32") == 32
    assert is_pixels_name("pixels_8") and not is_pixels_name("pixels32")
    assert not is_pixels_name("resnet18")
    with pytest.raises(FeatltError, match="not a pixels pseudo-backbone"):
        pixels_size("pixel")
    with pytest.raises(FeatltError, match=r"must be in \[1, 512\]"):
        pixels_size("pixels_0")


def test_timm_data_config_and_eval_transform_give_unit_range_pixels():
    import timm.data

    model = create_pixels_model("pixels")
    assert model.num_features == model.head_hidden_size == 768
    config = timm.data.resolve_model_data_config(model)
    assert config["input_size"] == (3, 16, 16) and config["crop_pct"] == 1.0
    transform = timm.data.create_transform(**config)
    rgb = (200, 100, 0)
    image = Image.new("RGB", (48, 32), rgb)  # non-square: resized and centre-cropped
    x = transform(image).unsqueeze(0)
    features = model(x)
    assert features.shape == (1, 768) and features.dtype == torch.float32
    expected = torch.tensor(rgb, dtype=torch.float32).div(255).repeat_interleave(256)
    torch.testing.assert_close(features[0], expected, rtol=0, atol=1e-6)


def test_forward_protocol_and_antialiased_resize():
    model = create_pixels_model("pixels_4")
    x = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(model(x), x.flatten(1))  # at its own size: the pixels as they are
    assert torch.equal(model.forward_head(model.forward_features(x), pre_logits=True), model(x))
    # another input size is resized like PIL's antialiased bilinear resize (the eval transform's)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (37, 29, 3), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(pixels).resize((4, 4), Image.Resampling.BILINEAR))
    big = torch.from_numpy(pixels).permute(2, 0, 1).float().div(255).unsqueeze(0)
    small = model.forward_features(big)
    assert small.shape == (1, 3, 4, 4)
    ours = small[0].permute(1, 2, 0).mul(255).numpy()
    assert np.abs(ours - pil).max() <= 1.0  # PIL rounds to uint8
    with pytest.raises(FeatltError, match=r"expected a \(B, 3, H, W\) batch"):
        model(torch.rand(2, 1, 4, 4))
    assert list(model.parameters()) == [] and not model.training
