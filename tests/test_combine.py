"""``featlt combine`` and the combination in memory: the recipe, the matching of images, the
records that understand members, every reading command, bad input.

Members are one small generated image folder extracted by ``pixels`` and by a random-init
``test_efficientnet`` (its pooled pre-logits and its ``blocks.1``): offline, a few seconds.
The helpers are shared with tests/test_combine_predict.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from featlt.cli import main
from featlt.combine.arrays import combine_members, read_member
from featlt.data.protocol import Protocol, load_arrays
from featlt.errors import FeatltError
from featlt.store.feature_store import FeatureStore
from featlt.store.members import RECIPE, feature_identity, is_combined, l2_rows

FAST = ("--threads", "1", "--workers", "0", "--device", "cpu", "--batch-size", "4")


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def image_folder(folder: Path, seed: int = 0, per_class: int = 8) -> Path:
    """Three classes of generated 20x20 PNGs in class subfolders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(["dark", "mid", "light"]):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 50, (20, 20, 3)) + 90 * c
            Image.fromarray(pixels.astype(np.uint8)).save(folder / name / f"{i}.png")
    return folder


def extract(images: Path, out: Path, *options: object) -> Path:
    """``featlt extract`` of ``images`` into ``out`` (asserting success)."""
    result = run("extract", "--data", f"folder:{images}", *FAST, *options, "-o", out)
    assert result.exit_code == 0, result.output
    return out


def member_stores(folder: Path) -> dict[str, Path]:
    """{"images", "pixels", "net", "layer"}: the folder and three member stores of it."""
    images = image_folder(folder / "imgs")
    net = ("--model", "test_efficientnet", "--weights", "random", "--resolution", "32")
    return {
        "images": images,
        "pixels": extract(images, folder / "pixels.h5", "--model", "pixels_8"),
        "net": extract(images, folder / "net.h5", *net),
        "layer": extract(images, folder / "layer.h5", *net, "--layer", "blocks.1"),
    }


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The member stores and their combination ``combined`` (pixels + net + layer)."""
    folder = tmp_path_factory.mktemp("combine")
    found = member_stores(folder)
    result = run("combine", found["pixels"], found["net"], found["layer"], "-o",
                 folder / "combined.h5")
    assert result.exit_code == 0, result.output
    return {**found, "combined": folder / "combined.h5"}


def _read(path: Path, split: str) -> tuple[np.ndarray, np.ndarray, Any]:
    """(features (N, D) as stored, source positions (N,), provenance) of one split."""
    with FeatureStore(path) as store:
        return (store.read(split, dtype=store.info(split).dtype), store.source_index(split),
                store.provenance)


def test_combined_rows_follow_the_recipe_exactly(stores: dict[str, Path]) -> None:
    for split in ("train", "test"):
        combined, positions, provenance = _read(stores["combined"], split)
        parts = []
        for name in ("pixels", "net", "layer"):
            feats, index, _ = _read(stores[name], split)
            order = np.argsort(index)
            parts.append(feats[order][np.searchsorted(index[order], positions)])
        assert combined.dtype == np.float16 and combined.shape == (positions.size, 192 + 256 + 24)
        expected = np.concatenate([l2_rows(p.astype(np.float32)) for p in parts], axis=1)
        assert np.array_equal(combined, expected.astype(np.float16))
        # each member's block has unit norm (up to float16 rounding)
        for lo, hi in ((0, 192), (192, 448), (448, 472)):
            norms = np.linalg.norm(combined[:, lo:hi].astype(np.float64), axis=1)
            assert np.allclose(norms, 1.0, atol=2e-3)
    backbone = provenance["backbone"]
    assert backbone["recipe"] == RECIPE and len(backbone["members"]) == 3
    assert [m["backbone"]["feature"]["layer"] for m in backbone["members"]] == [
        "pre_logits", "pre_logits", "blocks.1"]
    assert all(len(m["digest"]) == 64 for m in backbone["members"])
    assert provenance["store"]["dtype"] == "float16"
    verified = run("info", stores["combined"], "--verify")
    assert verified.exit_code == 0 and "every block digest matches" in verified.output


def test_the_in_memory_combination_equals_the_store(stores: dict[str, Path]) -> None:
    members = [read_member(stores[name]) for name in ("pixels", "net", "layer")]
    memory = combine_members(members)
    with FeatureStore(stores["combined"]) as store:
        written = load_arrays(store)
        positions = store.source_index("test")[written.view.test_rows]
    order = np.argsort(positions)
    assert memory.X_test.shape == (positions.size, 472)
    assert np.array_equal(memory.X_test, written.X_test[order])
    assert np.array_equal(memory.y_test, written.y_test[order])
    assert is_combined(memory.provenance["features"])
    assert feature_identity(memory.provenance["features"]) == feature_identity(
        _read(stores["combined"], "test")[2])
    # a subset of the members read once combines without reading them again
    assert combine_members(members[:2]).X_train.shape[1] == 192 + 256


def test_backbone_records_understand_members(stores: dict[str, Path]) -> None:
    from featlt.extractors.static_baselines import static_baselines
    from featlt.rank.inputs import open_inputs

    provenance = _read(stores["combined"], "test")[2]
    net = _read(stores["net"], "test")[2]["backbone"]["feature"]["params"]
    baselines = static_baselines(provenance)
    assert baselines.params == net  # pixels has none; the network and its layer count once
    assert baselines.imagenet_top1 is None
    (entry,), _ = open_inputs([stores["combined"]], "test", need_test=False)
    assert entry.describe() == ("pixels_8 + test_efficientnet.r160_in1k, 32 px + "
                                "test_efficientnet.r160_in1k, 32 px, layer blocks.1")
    assert entry.pretrained is False
    moved = json.loads(json.dumps(provenance))  # the same features computed elsewhere
    for member in moved["backbone"]["members"]:
        member["backbone"]["device"], member["backbone"]["precision"] = "cuda", "amp-float16"
    assert feature_identity(moved) == feature_identity(provenance)
    moved["backbone"]["members"][1]["backbone"]["resolution"] = 64
    assert feature_identity(moved) != feature_identity(provenance)


def test_reading_commands_accept_a_combined_store(stores: dict[str, Path],
                                                  tmp_path: Path) -> None:
    ranked = run("rank", stores["net"], stores["combined"], "--cv-folds", "0", "--bootstrap",
                 "20", "--json")
    assert ranked.exit_code == 0, ranked.output
    rows = {r["label"]: r for r in json.loads(ranked.stdout)["rows"]}
    assert rows["combined"]["backbone"].startswith("pixels_8 + ")
    separability = run("evaluate-separability", stores["combined"], "-o", tmp_path / "s.json")
    assert separability.exit_code == 0, separability.output


def test_a_full_extraction_combines_with_a_view_only_one(stores: dict[str, Path],
                                                         tmp_path: Path) -> None:
    view = ("--profile", "first", "--imbalance-factor", "2", "--val-per-class", "1")
    only = extract(stores["images"], tmp_path / "view.h5", "--model", "pixels_8", *view)
    out = tmp_path / "both.h5"
    result = run("combine", stores["net"], only, "-o", out)
    assert result.exit_code == 0, result.output
    with FeatureStore(only) as a, FeatureStore(out) as b:
        assert np.array_equal(np.sort(a.source_index("train")), b.source_index("train"))
        assert np.array_equal(a.source_labels("train"), b.source_labels("train"))
    fitted = run("fit-classifier", out, "--head", "ncm_l2", *view, "--bootstrap", "10",
                 "--device", "cpu", "-o", tmp_path / "h")
    assert fitted.exit_code == 0, fitted.output


def test_bad_inputs_are_refused(stores: dict[str, Path], tmp_path: Path) -> None:
    def refused(*args: object) -> str:
        result = run("combine", *args)
        assert result.exit_code == 2, result.output
        return " ".join(result.output.split())

    out = tmp_path / "out.h5"
    other = extract(image_folder(tmp_path / "other", seed=1, per_class=7), tmp_path / "o.h5",
                    "--model", "pixels_8")
    assert "hold different datasets" in refused(stores["pixels"], other, "-o", out)
    copy = tmp_path / "copy.h5"
    shutil.copyfile(stores["net"], copy)
    assert "the same features" in refused(stores["net"], copy, "-o", out)
    message = refused(stores["pixels"], stores["net"], "--max-width", "400", "-o", out)
    assert "448 wide" in message and "--max-width 400" in message
    assert "already a combined feature set" in refused(stores["combined"], other, "-o", out)
    assert "two or more" in refused(stores["net"], "-o", out)
    limited = [extract(stores["images"], tmp_path / f"l{seed}.h5", "--model", model,
                       "--limit", "train=9", "--seed", seed)
               for seed, model in ((1, "pixels_8"), (2, "pixels_4"))]
    message = refused(*limited, "-o", out)
    assert "first differing position" in message and "source position" in message
    assert not out.exists()
    run("combine", stores["pixels"], stores["net"], "-o", out)
    assert "already exists" in refused(stores["pixels"], stores["net"], "-o", out)
    again = run("combine", stores["pixels"], stores["net"], "-o", out, "--overwrite")
    assert again.exit_code == 0, again.output
    assert "also an input" in refused(stores["pixels"], stores["net"], "-o", stores["net"])


def test_views_differing_in_memory_name_the_first_position(stores: dict[str, Path]) -> None:
    members = [read_member(stores["pixels"]), read_member(stores["net"], Protocol(seed=3))]
    with pytest.raises(FeatltError, match="first differing source position"):
        combine_members(members)


def test_views_are_combined_only_when_made_alike(stores: dict[str, Path],
                                                 tmp_path: Path) -> None:
    net = ("--model", "test_efficientnet", "--weights", "random", "--resolution", "32")
    a = extract(stores["images"], tmp_path / "a.h5", "--model", "pixels_8", "--views", "2")
    b = extract(stores["images"], tmp_path / "b.h5", *net, "--views", "2", "--store-logits")
    c = extract(stores["images"], tmp_path / "c.h5", *net, "--layer", "blocks.1", "--views", "2",
                "--store-logits")
    for members, views, logits in (((a, b), 2, 0), ((b, c), 2, 1000 + 1000),
                                   ((a, stores["net"]), 0, 0)):
        out = tmp_path / "out.h5"
        result = run("combine", *members, "-o", out, "--overwrite")
        assert result.exit_code == 0, result.output
        with FeatureStore(out) as store:
            info = store.info("train")
            assert (info.n_views, info.n_logits) == (views, logits)
            if views:
                combined = store.read("train", array="views", dtype=np.float16)
                with FeatureStore(members[0]) as first:
                    view = first.read("train", array="views", dtype=np.float16)[:, 1]
                width = view.shape[1]
                expected = l2_rows(view.astype(np.float32)).astype(np.float16)
                assert np.array_equal(combined[:, 1, :width], expected)
    assert "holds no views and no logits" in result.output


def test_an_interrupted_combination_resumes_to_the_same_rows(
        stores: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from featlt.combine.write import combine_stores
    from featlt.store.writer import StoreWriter

    members = [stores["pixels"], stores["net"], stores["layer"]]
    out = tmp_path / "resumed.h5"
    original = StoreWriter.write_rows
    calls = []

    def failing(self: StoreWriter, *args: Any, **kwargs: Any) -> None:
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        original(self, *args, **kwargs)

    monkeypatch.setattr(StoreWriter, "write_rows", failing)
    with pytest.raises(KeyboardInterrupt):
        combine_stores(members, out, budget_mb=0.0001)  # a few rows per batch
    monkeypatch.setattr(StoreWriter, "write_rows", original)
    assert not out.exists() and out.with_name(out.name + ".partial").exists()
    assert "interrupted run" in " ".join(run("combine", *members, "-o", out).output.split())
    resumed = run("combine", *members, "-o", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    for split in ("train", "test"):
        assert np.array_equal(_read(out, split)[0], _read(stores["combined"], split)[0])


def test_info_lists_the_members_in_one_line(stores: dict[str, Path]) -> None:
    described = run("info", stores["combined"])
    assert described.exit_code == 0, described.output
    assert ("  combined store of 3 members: pixels_8, layer pre_logits, width 192 + "
            "test_efficientnet.r160_in1k, 32 px, layer pre_logits, width 256 + "
            "test_efficientnet.r160_in1k, 32 px, layer blocks.1, width 24\n") in described.output
    members = json.loads(run("info", stores["combined"], "--json").stdout)["members"]
    assert [(m["backbone"], m["resolution"], m["layer"], m["width"]) for m in members] == [
        ("pixels_8", None, "pre_logits", 192),
        ("test_efficientnet.r160_in1k", 32, "pre_logits", 256),
        ("test_efficientnet.r160_in1k", 32, "blocks.1", 24)]
    single = json.loads(run("info", stores["net"], "--json").stdout)
    assert single["members"] is None
