"""Backbones: names, weights sources (file, local-dir, hub, random), refusals, provenance."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from featlt.errors import FeatltError
from featlt.extractors.backbones import (
    BackboneSpec,
    check_model_name,
    create_backbone,
    load_state_file,
    resolve_spec,
    state_sha256,
)

TINY = "test_efficientnet.r160_in1k"


def _tiny_state(seed: int = 1, num_classes: int = 5) -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(seed)
    return timm.create_model(TINY, pretrained=False, num_classes=num_classes).state_dict()


def _save_safetensors(state: dict[str, torch.Tensor], path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(FeatltError, match=r"'tf_efficientnet_lite9' is not a timm.*did you mean "
                                          r".*tf_efficientnet_lite0"):
        check_model_name("tf_efficientnet_lite9")
    with pytest.raises(FeatltError, match="has no tag 'nosuch'; its tags are in1k"):
        check_model_name("tf_efficientnet_lite0.nosuch")
    assert check_model_name("test_vit.r160_in1k") == ("test_vit", "r160_in1k")


def test_spec_needs_explicit_weights_and_zoo_fixes_its_own() -> None:
    with pytest.raises(FeatltError, match="no weights given; pass --weights"):
        resolve_spec(TINY, None)
    with pytest.raises(FeatltError, match="zoo entry and fixes its own weights"):
        resolve_spec("test-vit-random", "random")
    spec = resolve_spec("test-vit-random", None, resolution=48, seed=3)
    assert (spec.model, spec.weights, spec.resolution, spec.seed) == (
        "test_vit.r160_in1k", "random", 48, 3)


def test_random_init_is_seeded_and_records_provenance() -> None:
    a = create_backbone(BackboneSpec(TINY, "random", resolution=40, seed=5))
    b = create_backbone(BackboneSpec(TINY, "random", resolution=40, seed=5))
    c = create_backbone(BackboneSpec(TINY, "random", resolution=40, seed=6))
    assert a.provenance["weights"]["tensors_sha256"] == b.provenance["weights"]["tensors_sha256"]
    assert a.provenance["weights"]["tensors_sha256"] != c.provenance["weights"]["tensors_sha256"]
    prov = a.provenance
    assert prov["model"] == TINY and prov["arch"] == "test_efficientnet"
    assert prov["data_config"]["input_size"] == [3, 40, 40]
    body = sum(p.numel() for name, p in a.model.named_parameters()
               if not name.startswith("classifier."))
    assert prov["feature"] == {"layer": "pre_logits", "pooling": "avg", "dim": 256,
                               "params": body}
    assert (prov["device"], prov["precision"]) == ("cpu", "float32")
    x = torch.rand(3, 3, 40, 40)
    feats, logits = a.forward(x, logits=True)
    assert feats.shape == (3, a.dim) == (3, 256) and logits.shape == (3, 1000)
    assert feats.dtype == torch.float32
    assert not any(p.requires_grad for p in a.model.parameters())


def test_vit_pooled_features_have_head_hidden_size() -> None:
    vit = create_backbone(BackboneSpec("test_vit", "random", resolution=32))
    feats, logits = vit.forward(torch.rand(2, 3, 32, 32))
    assert feats.shape == (2, vit.model.head_hidden_size) and logits is None
    assert vit.provenance["feature"]["pooling"] == "token"


def test_local_safetensors_and_pth_load_exactly(tmp_path: Path) -> None:
    state = _tiny_state()
    file = _save_safetensors(state, tmp_path / "w.safetensors")
    backbone = create_backbone(BackboneSpec(TINY, str(file)))
    assert backbone.num_classes == 5
    assert backbone.provenance["weights"]["tensors_sha256"] == state_sha256(state)
    assert backbone.provenance["weights"]["source"] == "file"
    assert backbone.weights_file is not None and backbone.weights_file["path"] == str(file)
    assert len(backbone.weights_file["sha256"]) == 64 and "path" not in backbone.provenance[
        "weights"]
    torch.save(state, tmp_path / "w.pth")
    pth = create_backbone(BackboneSpec(TINY, str(tmp_path / "w.pth")))
    assert pth.provenance["weights"]["tensors_sha256"] == state_sha256(state)


def test_headless_weights_give_features_without_logits(tmp_path: Path) -> None:
    state = {k: v for k, v in _tiny_state().items() if not k.startswith("classifier.")}
    file = _save_safetensors(state, tmp_path / "headless.safetensors")
    backbone = create_backbone(BackboneSpec(TINY, str(file)))
    assert backbone.num_classes == 0 and backbone.dim == 256


def test_missing_weights_file_names_file_and_backbone(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FeatltError, match=rf"weights file {missing}: not found for backbone "
                                          rf"{TINY}"):
        create_backbone(BackboneSpec(TINY, str(missing)))
    with pytest.raises(FeatltError, match="not a weights file"):
        create_backbone(BackboneSpec(TINY, str(tmp_path / "weights.txt")))


def test_mismatching_weights_name_first_tensor_and_both_shapes(tmp_path: Path) -> None:
    import timm

    state = _tiny_state()
    expected = tuple(state["conv_stem.weight"].shape)
    state["conv_stem.weight"] = torch.zeros(7, 3, 3, 3)
    file = _save_safetensors(state, tmp_path / "wrong.safetensors")
    message = (f"tensor 'conv_stem.weight' has shape (7, 3, 3, 3) in the file but {expected} in "
               "the model")
    with pytest.raises(FeatltError, match=re.escape(message)):
        create_backbone(BackboneSpec(TINY, str(file)))
    renamed = {f"module.{k}": v for k, v in _tiny_state().items()}
    file = _save_safetensors(renamed, tmp_path / "renamed.safetensors")
    with pytest.raises(FeatltError, match=r"tensor 'conv_stem.weight' is missing.*first tensor is "
                                          r"'module\..*featlt weights convert"):
        create_backbone(BackboneSpec(TINY, str(file)))
    extra = {**_tiny_state(), "extra.weight": torch.zeros(2)}
    file = _save_safetensors(extra, tmp_path / "extra.safetensors")
    with pytest.raises(FeatltError, match=r"1 tensor\(s\) the model lacks, first 'extra.weight'"):
        create_backbone(BackboneSpec(TINY, str(file)))
    other = timm.create_model("test_efficientnet_gn", pretrained=False).state_dict()
    file = _save_safetensors(other, tmp_path / "gn.safetensors")
    with pytest.raises(FeatltError, match=f"weights {file} do not fit backbone {TINY}"):
        create_backbone(BackboneSpec(TINY, str(file)))


class _Payload:
    """Unpickling this would create a marker file: the code must never run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_pth_with_non_tensors_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as handle:
        pickle.dump({"conv_stem.weight": _Payload(marker)}, handle, protocol=2)
    with pytest.raises(FeatltError, match=r"holds a \S+ object, refused without running") as err:
        load_state_file(evil, TINY)
    assert not marker.exists()
    assert "weights_only" not in str(err.value)  # never torch's advice to load unsafely
    mixed = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": _tiny_state(), "epoch": 3}, mixed)
    with pytest.raises(FeatltError, match="entry 'state_dict' holds OrderedDict, not a tensor"):
        create_backbone(BackboneSpec(TINY, str(mixed)))
    (tmp_path / "garbage.pth").write_bytes(b"\x00\x01garbage")
    with pytest.raises(FeatltError, match=r"garbage.pth"):
        load_state_file(tmp_path / "garbage.pth", TINY)


def test_local_dir_export(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    state = _tiny_state(num_classes=3)
    _save_safetensors(state, folder / "model.safetensors")
    config = {"architecture": "test_efficientnet", "num_classes": 3,
              "pretrained_cfg": {"input_size": [3, 64, 64], "mean": [0.5, 0.5, 0.5],
                                 "std": [0.25, 0.25, 0.25], "classifier": "classifier"}}
    (folder / "config.json").write_text(json.dumps(config))
    backbone = create_backbone(BackboneSpec("test_efficientnet", f"local-dir:{folder}"))
    assert backbone.provenance["weights"]["source"] == "local-dir"
    assert backbone.provenance["data_config"]["std"] == [0.25, 0.25, 0.25]
    assert backbone.num_classes == 3
    with pytest.raises(FeatltError, match="holds architecture 'test_efficientnet' but --model is "
                                          "'test_vit'"):
        create_backbone(BackboneSpec("test_vit", f"local-dir:{folder}"))
    (folder / "model.safetensors").unlink()
    with pytest.raises(FeatltError, match="no weights file"):
        create_backbone(BackboneSpec("test_efficientnet", f"local-dir:{folder}"))
    with pytest.raises(FeatltError, match=r"config.json not found"):
        create_backbone(BackboneSpec("test_efficientnet", f"local-dir:{tmp_path}"))


def test_hub_offline_says_allow_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FeatltError, match=r"not in the local hub cache.*--allow-download"):
        create_backbone(BackboneSpec(TINY, "hub"))


def test_transform_gives_model_input_size() -> None:
    from PIL import Image

    backbone = create_backbone(BackboneSpec(TINY, "random", resolution=24))
    image = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    assert tuple(backbone.transform(image).shape) == (3, 24, 24)
    with pytest.raises(FeatltError, match="--resolution 4: too small"):
        create_backbone(BackboneSpec(TINY, "random", resolution=4))


# timm's tiny test ViT with a fixed input size (160 px natively, 16 px patches, one register
# token as its prefix token, 96 wide); vit_small_patch14_dinov2 works the same way, slower.
FIXED_VIT = "test_vit3.r160_in1k"


@pytest.mark.parametrize("resolution", [32, 64])
def test_fixed_size_vit_is_built_at_the_requested_resolution(resolution: int) -> None:
    from PIL import Image

    with pytest.raises(AssertionError, match="doesn't match model"):  # timm's own refusal
        create_backbone(BackboneSpec(FIXED_VIT, "random")).forward(torch.rand(1, 3, 64, 64))
    vit = create_backbone(BackboneSpec(FIXED_VIT, "random", resolution=resolution))
    grid = resolution // 16
    assert tuple(vit.model.pos_embed.shape) == (1, 1 + grid * grid, 96)
    assert vit.provenance["data_config"]["input_size"] == [3, resolution, resolution]
    image = Image.fromarray(np.zeros((40, 60, 3), np.uint8))
    batch = torch.stack([vit.transform(image)] * 2)
    assert tuple(batch.shape) == (2, 3, resolution, resolution)
    feats, _ = vit.forward(batch)
    assert feats.shape == (2, 96)


def test_fixed_size_weights_resample_their_position_grid(tmp_path: Path) -> None:
    """Weights saved at 64 px (4x4 grid) load at 64 px as they are and at 32 px (2x2 grid)
    with the grid resized bicubic without antialiasing, the prefix token's entry kept."""
    import timm
    from torch.nn import functional

    torch.manual_seed(0)
    state = timm.create_model(FIXED_VIT, pretrained=False, img_size=64).state_dict()
    file = _save_safetensors(state, tmp_path / "vit64.safetensors")
    same = create_backbone(BackboneSpec(FIXED_VIT, str(file), resolution=64))
    assert torch.equal(same.model.pos_embed, state["pos_embed"])
    assert "pos_embed_resampled" not in same.provenance["weights"]
    small = create_backbone(BackboneSpec(FIXED_VIT, str(file), resolution=32))
    grid = state["pos_embed"][:, 1:].reshape(1, 4, 4, 96).permute(0, 3, 1, 2)
    expected = functional.interpolate(grid, size=(2, 2), mode="bicubic", align_corners=False)
    expected = expected.permute(0, 2, 3, 1).reshape(1, 4, 96)
    torch.testing.assert_close(small.model.pos_embed[:, 1:], expected)
    assert torch.equal(small.model.pos_embed[:, :1], state["pos_embed"][:, :1])
    assert small.provenance["weights"]["pos_embed_resampled"]["to_grid"] == [2, 2]
    feats, _ = small.forward(torch.rand(1, 3, 32, 32))
    assert feats.shape == (1, 96)


def test_convnets_keep_their_shape_at_any_resolution() -> None:
    a = create_backbone(BackboneSpec(TINY, "random", resolution=32))
    b = create_backbone(BackboneSpec(TINY, "random", resolution=64))
    assert a.provenance["weights"]["tensors_sha256"] == b.provenance["weights"]["tensors_sha256"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_uses_amp_and_channels_last() -> None:
    backbone = create_backbone(BackboneSpec(TINY, "random", resolution=32), device="cuda")
    assert backbone.amp_dtype == "float16"
    assert backbone.provenance["precision"] == "amp-float16"
    feats, _ = backbone.forward(torch.rand(4, 3, 32, 32))
    assert feats.dtype == torch.float32 and feats.shape == (4, 256)
    exact = create_backbone(BackboneSpec(TINY, "random", resolution=32), device="cuda", amp=False)
    assert exact.amp_dtype is None and exact.provenance["precision"] == "float32"
