"""Heads on a combined store: every head fits, the saved head seals its members and recipe,
``predict --images`` runs every member (one forward per shared network), applies the recipe and
predicts what the combined store's features predict; ``--weights MEMBER=FILE``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_combine import extract, member_stores, run

from featlt.heads.registry import list_heads
from featlt.store.feature_store import FeatureStore
from featlt.store.members import RECIPE

QUICK = ("--max-epochs", "2", "--bootstrap", "10", "--device", "cpu")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Member stores, their combination and every head fitted on it (``heads``)."""
    folder = tmp_path_factory.mktemp("combine_predict")
    found = member_stores(folder)
    combined = folder / "combined.h5"
    made = run("combine", found["pixels"], found["net"], found["layer"], "-o", combined)
    assert made.exit_code == 0, made.output
    heads = run("fit-classifier", combined, "--head", "all", *QUICK, "-o", folder / "heads")
    assert heads.exit_code == 0, heads.output
    return {**found, "combined": combined, "heads": folder / "heads"}


def test_every_head_fits_on_a_combined_store(fitted: dict[str, Path]) -> None:
    summary = json.loads((fitted["heads"] / "summary.json").read_text())
    assert set(list_heads()) <= set(summary["heads"])


def test_the_head_seals_its_members_and_recipe(fitted: dict[str, Path], tmp_path: Path) -> None:
    from featlt.errors import FeatltError
    from featlt.heads.io import load_head

    _, document = load_head(fitted["heads"] / "linear")
    backbone = document["provenance"]["features"]["backbone"]
    assert backbone["recipe"] == RECIPE and len(backbone["members"]) == 3
    edited = tmp_path / "linear"
    shutil.copytree(fitted["heads"] / "linear", edited)
    config = edited / "head.json"
    config.write_text(config.read_text().replace('"blocks.1"', '"blocks.2"'))
    with pytest.raises(FeatltError, match="edited after saving"):
        load_head(edited)


def test_predicting_images_equals_predicting_the_combined_store(fitted: dict[str, Path]) -> None:
    from featlt.data.sources import open_source
    from featlt.heads.io import load_head
    from featlt.predict.members import build_forward

    _, document = load_head(fitted["heads"] / "linear")
    forward = build_forward(document["provenance"]["features"], (), "cpu", "head")
    assert forward.forwards == 2  # pixels; the network and its blocks.1 share one forward
    source = open_source(f"folder:{fitted['images']}")
    with FeatureStore(fitted["combined"]) as store:
        for split in ("train", "test"):
            stored = store.read(split)
            images = [source.load_image(split, int(i)) for i in store.source_index(split)]
            live = forward.features(images)
            assert live.shape == stored.shape
            # float16 rounding of unit-norm members (the stored rows ran the folded forward)
            assert np.abs(live - stored).max() < 2e-3
    result = run("predict", fitted["heads"] / "linear", "--images", fitted["images"],
                 "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["members"] == 3 and document["forwards_per_batch"] == 2
    counts = np.zeros(3, int)
    for split in ("train", "test"):
        stored = run("predict", fitted["heads"] / "linear", fitted["combined"], "--split", split,
                     "--json")
        assert stored.exit_code == 0, stored.output
        counts += json.loads(stored.stdout)["predicted_counts"]
    assert counts.tolist() == document["predicted_counts"]


def test_member_weights_from_a_file(fitted: dict[str, Path], tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    weights = tmp_path / "net.safetensors"
    model = timm.create_model("test_efficientnet", pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    member = extract(fitted["images"], tmp_path / "file.h5", "--model", "test_efficientnet",
                     "--weights", weights, "--resolution", "32")
    combined = tmp_path / "pair.h5"
    assert run("combine", fitted["pixels"], member, "-o", combined).exit_code == 0
    heads = run("fit-classifier", combined, "--head", "ncm_cosine", *QUICK, "-o", tmp_path / "h")
    assert heads.exit_code == 0, heads.output
    head = tmp_path / "h" / "ncm_cosine"
    moved = weights.rename(tmp_path / "elsewhere.safetensors")
    missing = run("predict", head, "--images", fitted["images"], "--device", "cpu")
    assert missing.exit_code == 2
    text = " ".join(missing.output.split())
    assert "member 2 (test_efficientnet" in text and "--weights 2=FILE" in text
    bad = run("predict", head, "--images", fitted["images"], "--weights", moved)
    assert bad.exit_code == 2 and "MEMBER=FILE" in bad.output
    found = run("predict", head, "--images", fitted["images"], "--device", "cpu",
                "--weights", f"2={moved}", "--json")
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["n"] == 24
