"""The index-view options mean the same in every command that reads a store."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from featlt.cli import main
from featlt.store.writer import StoreWriter

VIEW_ARGS = ["--profile", "first", "--imbalance-factor", "5", "--decay", "step",
             "--n-max", "60", "--val-per-class", "5"]


def balanced_store(path, n_classes=4, per_class=80, dim=8):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(n_classes), per_class)
    centres = 4 * rng.standard_normal((n_classes, dim))
    names = [f"c{c}" for c in range(n_classes)]
    with StoreWriter(path, {"backbone": {"model": "toy"}}) as writer:
        for split in ("train", "test"):
            X = centres[labels] + rng.standard_normal((labels.size, dim))
            writer.begin_split(split, labels, np.arange(labels.size), names, dim)
            writer.write_rows(split, 0, X)
        writer.mark_complete()
    return path


def test_fit_classifier_and_separability_record_the_same_view(tmp_path):
    store = balanced_store(tmp_path / "f.h5")
    runner = CliRunner()
    fit = runner.invoke(main, ["fit-classifier", str(store), "--head", "ncm_cosine", "--json",
                               "--bootstrap", "0", "-o", str(tmp_path / "heads"), *VIEW_ARGS])
    assert fit.exit_code == 0, fit.output
    sep = runner.invoke(main, ["evaluate-separability", str(store), "--json",
                               "--knn-queries", "100", *VIEW_ARGS])
    assert sep.exit_code == 0, sep.output
    fit_view = json.loads(fit.output)["provenance"]["view"]
    sep_doc = json.loads(sep.output)
    sep_view = json.dumps(sep_doc)
    # step decay, n_max 60, IF 5: two classes keep 60, two keep 12; 5 per class validated outside
    assert fit_view["train_class_counts"] == [60, 60, 12, 12]
    assert fit_view["val"] == {"split": "train", "n": 20, "regime": "outside"}
    assert fit_view["protocol"]["decay"] == "step"
    assert '"train_class_counts": [60, 60, 12, 12]' in sep_view.replace("\n", "")


def test_balanced_profile_needs_its_count(tmp_path):
    store = balanced_store(tmp_path / "f.h5")
    result = CliRunner().invoke(main, ["fit-classifier", str(store), "--head", "ncm_l2",
                                       "--profile", "balanced"])
    assert result.exit_code == 2
    assert "--balanced-per-class" in result.output
