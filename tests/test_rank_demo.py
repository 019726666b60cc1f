"""The demo's rank step reuses the heads step's heads; its sentence is the demo's last line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from featlt.cli import main


def test_demo_ends_with_the_ranking_and_names_a_backbone_and_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from featlt.demo import extract_step, heads_step, rank_step

    monkeypatch.setattr(extract_step, "MODELS", ("test-efficientnet-random", "test-vit-random"))
    # n_max 20, imbalance 10: the rarest classes keep 2 training rows, enough for 2 folds
    monkeypatch.setattr(extract_step, "QUICK", extract_step.DemoData(
        "digits", 32, {"train": 200, "test": 40}, n_max=20, val_per_class=3))
    monkeypatch.setattr(rank_step, "QUICK_CV_FOLDS", 2)
    monkeypatch.setattr(heads_step, "QUICK_HEADS", ("ncm_cosine", "la_loss"))
    monkeypatch.setattr(heads_step, "QUICK_MAX_EPOCHS", 3)
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--quick", "--only", "extract", "--only", "heads",
                                       "--only", "rank", "-o", str(out), "--device", "cpu",
                                       "--threads", "1"])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Use test-") and " head: 2-fold cross-validated balanced " in last
    document = json.loads((out / "rank" / "ranking.json").read_text())
    assert [row["measured"]["reused"] for row in document["rows"]] == [True, True]
    assert [row["cv"]["n_folds"] for row in document["rows"]] == [2, 2]
    assert document["recommendation"]["head"] in ("ncm_cosine", "la_loss")
    assert (out / "rank" / "ranking.csv").is_file() and (out / "rank" / "ranking.png").is_file()
    assert "ranking by featlt" in result.output


def test_steps_run_in_the_listed_order_whichever_step_module_was_imported_first() -> None:
    code = ("import featlt.demo.rank_step, featlt.demo.heads_step\n"
            "from featlt.demo import registered_steps\n"
            "print(','.join(step.name for step in registered_steps()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "extract,separability,heads,rank,report"
