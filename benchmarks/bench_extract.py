"""Benchmark of `featlt extract` (issue 3, item 5): the pipeline against the forward alone and
against a naive loop, on CIFAR-10 (JPEG) from ../shared/data.

(a) main config, ``efficientnet-lite0`` (timm ``tf_efficientnet_lite0.in1k`` with its ImageNet
    weights) at 160 px: featlt's end-to-end throughput (decode + transform + forward + write:
    the split loop of ``extract_features``) as a ratio to the raw throughput of the SAME forward
    path (same module, path, batch size and torch threads) on in-memory tensors of real images,
    measured right after in the same process;
(b) featlt against a naive loop on the same images: eager timm model (NCHW float32, torch's
    default threads, ``torch.no_grad``), per-image PIL decode + the same timm eval transform in
    the loop, one process, one h5py write + flush per batch (float16, like featlt). The speedup
    is the ratio of total wall times (model build, data open, loop, file closed), each side in a
    fresh process; loop-only throughputs are reported too;
(c) the same comparison on a light config where the input pipeline matters:
    ``mobilenetv3_small_100`` (random init; speed does not depend on the weights) at 96 px;
(d) peak resident memory of featlt at 2,000 and 20,000 images (light config, forward path fixed
    to folded so both sizes run the same path whatever ``auto``'s compile threshold), each in
    a fresh process: the main process's VmHWM and the largest DataLoader worker's ru_maxrss;
(e) thread settings of each side and the load average before and after every run. featlt's
    default measures on the run's first images whether the forward gets every core or leaves
    the decode worker its own (featlt/extract/thread_policy.py); a variant with every core for the
    forward (``--threads <cores>``) is measured beside it, so the JSON shows whether the
    measured choice was the faster one.

Every measurement runs in a fresh subprocess; (a)/(b) and (c) are repeated (default 3 times,
interleaved featlt / naive) and medians reported. The machine may be shared: the load average is
recorded, and numbers from a busy machine understate what a quiet one does.

    python benchmarks/bench_extract.py                       # -> results/extract_benchmark.json
    python benchmarks/bench_extract.py --data PATH.npz --images 1024 --light-images 4096
    FEATLT_SHARED_DATA=/path/to/data python benchmarks/bench_extract.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import finish_record, load_average, run_record

REPO = Path(__file__).resolve().parents[1]
SEED = 0
MAIN = {"model": "efficientnet-lite0", "weights": None, "timm": "tf_efficientnet_lite0.in1k",
        "resolution": 160, "batch_size": 64}
LIGHT = {"model": "mobilenetv3_small_100", "weights": "random", "timm": "mobilenetv3_small_100",
         "resolution": 96, "batch_size": 64}
GOALS = {"ratio_to_forward": 0.9, "speedup_vs_naive": 2.0, "speedup_vs_naive_light": 1.5}


def data_path(given: str | None) -> Path:
    """The CIFAR-10 packed-JPEG npz: --data, else $FEATLT_SHARED_DATA or <repo>/../shared/data."""
    if given:
        return Path(given)
    root = Path(os.environ.get("FEATLT_SHARED_DATA", REPO.parent / "shared" / "data"))
    return root / "cifar10" / "cifar10_jpeg_packed.npz"


# ---------------------------------------------------------------------------------------------
# Tasks, each run in a fresh process (``--task JSON``); each prints one JSON line.


def task_featlt(task: dict[str, Any]) -> dict[str, Any]:
    """featlt end to end, then the raw forward of the same path in the same process."""
    import h5py  # noqa: F401  (imported before the clock starts, as in task_naive)
    import timm  # noqa: F401
    import torch

    from featlt.data.sources import open_source
    from featlt.extract.pipeline import ExtractConfig, extract_features, subset_rows
    from featlt.extractors.backbones import create_backbone, resolve_spec
    from featlt.runtime import Runtime

    cfg, n = task["config"], task["n"]
    config = ExtractConfig(
        model=cfg["model"], weights=cfg["weights"], data=f"jpeg-npz:{task['data']}",
        output=Path(task["output"]), splits=("train",), resolution=cfg["resolution"],
        batch_size=cfg["batch_size"], limit=n, forward_path=task.get("forward_path", "auto"),
        workers=task.get("workers"),
    )
    began = time.perf_counter()
    result = extract_features(config, Runtime(device="cpu", seed=SEED,
                                              threads=task.get("threads")))
    total = time.perf_counter() - began
    split = result.splits[0]
    record = {
        "total_s": round(total, 3),
        "loop_s": split.seconds,
        "loop_images_per_s": split.images_per_second,
        "forward_path": result.provenance["forward"]["name"],
        "forward_reason": result.provenance["forward"]["reason"],
        "torch_threads": result.provenance["run"]["threads"],
        "workers": result.provenance["run"]["workers"],
        "threads_choice": result.provenance["run"]["threads_choice"],
    }
    if not task.get("raw_batches"):
        return record
    # The raw forward: same spec, path, batch size and threads, on in-memory real images.
    spec = resolve_spec(cfg["model"], cfg["weights"], cfg["resolution"], SEED)
    backbone = create_backbone(spec, device="cpu")
    source = open_source(f"jpeg-npz:{task['data']}")
    rows = subset_rows(len(source.labels("train")), n, SEED, "train")
    bs = cfg["batch_size"]
    batches = [
        torch.stack([backbone.transform(source.load_image("train", int(i)))
                     for i in rows[b * bs:(b + 1) * bs]])
        for b in range(task["raw_batches"])
    ]
    forward, path = backbone.prepare_forward(batches[0], config.forward_path, n_images=n,
                                             batch_size=bs)
    if path["name"] != record["forward_path"]:
        raise RuntimeError(f"raw forward picked {path['name']}, featlt {record['forward_path']}")
    forward(batches[0])  # warm-up, as featlt's check batch warmed its path
    began = time.perf_counter()
    for batch in batches:
        forward(batch)
    seconds = time.perf_counter() - began
    record["raw_images_per_s"] = round(bs * len(batches) / seconds, 2)
    record["raw_images"] = bs * len(batches)
    record["raw_torch_threads"] = torch.get_num_threads()
    return record


def task_naive(task: dict[str, Any]) -> dict[str, Any]:
    """The naive loop: eager model, per-image PIL transform, one process, h5py write per batch."""
    import io

    import h5py
    import numpy as np
    import timm
    import torch
    from PIL import Image
    from timm.data import create_transform, resolve_model_data_config

    from featlt.extract.pipeline import subset_rows

    cfg, n = task["config"], task["n"]
    began = time.perf_counter()
    torch.manual_seed(SEED)
    model = timm.create_model(cfg["timm"], pretrained=False)
    if task.get("weights_file"):
        from safetensors.torch import load_file

        model.load_state_dict(load_file(task["weights_file"]))
    model.eval()
    data_config = resolve_model_data_config(model)
    data_config["input_size"] = (3, cfg["resolution"], cfg["resolution"])
    transform = create_transform(**data_config)
    archive = np.load(task["data"])
    data, offsets = archive["train_bytes"], archive["train_offsets"]
    labels = archive["train_labels"]
    rows = subset_rows(labels.size, n, SEED, "train")
    bs = cfg["batch_size"]
    loop_began = time.perf_counter()
    with h5py.File(task["output"], "w") as out:
        dim = getattr(model, "head_hidden_size", None) or model.num_features
        features = out.create_dataset("features", (rows.size, dim), "float16")
        out.create_dataset("labels", data=labels[rows])
        with torch.no_grad():
            for start in range(0, rows.size, bs):
                images = []
                for i in rows[start:start + bs]:
                    jpeg = io.BytesIO(data[offsets[i]:offsets[i + 1]].tobytes())
                    images.append(transform(Image.open(jpeg).convert("RGB")))
                x = torch.stack(images)
                feats = model.forward_head(model.forward_features(x), pre_logits=True)
                features[start:start + len(images)] = feats.numpy()
                out.flush()
    end = time.perf_counter()
    return {
        "total_s": round(end - began, 3),
        "loop_s": round(end - loop_began, 3),
        "loop_images_per_s": round(rows.size / (end - loop_began), 2),
        "torch_threads": torch.get_num_threads(),
        "workers": 0,
    }


def task_rss(task: dict[str, Any]) -> dict[str, Any]:
    """featlt on ``n`` images; peak RSS of this process and of its largest worker."""
    import resource

    record = task_featlt({**task, "raw_batches": 0})
    status = Path("/proc/self/status").read_text()
    hwm_kb = next(int(line.split()[1]) for line in status.splitlines()
                  if line.startswith("VmHWM:"))
    record["main_peak_rss_mb"] = round(hwm_kb / 1024, 1)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    record["largest_worker_peak_rss_mb"] = round(children / 1024, 1)
    return record


TASKS = {"featlt": task_featlt, "naive": task_naive, "rss": task_rss}


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Run one task in a fresh process; return its record with the load average around it."""
    before = load_average()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, __file__, "--task", json.dumps(task)], capture_output=True, text=True,
        env=env, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"task {task['kind']} failed:\n{done.stderr[-3000:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    record["load_before"], record["load_after"] = before, load_average()
    print(f"  {task['kind']:<6} n={task['n']}: {json.dumps(record)}", file=sys.stderr)
    return record


# ---------------------------------------------------------------------------------------------
# The benchmark.


def compare(config: dict[str, Any], n: int, repeats: int, raw_batches: int, data: Path,
            tmp: Path, weights_file: str | None, forward_path: str,
            threads: int | None, variant_threads: int | None) -> dict[str, Any]:
    """featlt (+ raw forward), the naive loop and the thread variant, interleaved ``repeats``
    times."""
    sides = {"featlt": threads, "featlt_variant": variant_threads}
    if variant_threads is None:
        del sides["featlt_variant"]
    runs = []
    for r in range(repeats):
        common = {"config": config, "n": n, "data": str(data)}
        run: dict[str, Any] = {}
        for side, side_threads in sides.items():
            run[side] = run_task({**common, "kind": "featlt", "output": str(tmp / f"{side}{r}.h5"),
                                  "raw_batches": raw_batches, "forward_path": forward_path,
                                  "threads": side_threads})
        run["naive"] = run_task({**common, "kind": "naive", "output": str(tmp / f"n{r}.h5"),
                                 "weights_file": weights_file})
        for side in sides:
            ours, naive = run[side], run["naive"]
            run[side]["ratio_to_forward"] = round(
                ours["loop_images_per_s"] / ours["raw_images_per_s"], 3)
            run[side]["speedup_vs_naive"] = round(naive["total_s"] / ours["total_s"], 3)
            run[side]["loop_speedup_vs_naive"] = round(
                ours["loop_images_per_s"] / naive["loop_images_per_s"], 3)
        runs.append(run)

    def median(side: str, key: str) -> float:
        return round(statistics.median(run[side][key] for run in runs), 3)

    medians = {side: {key: median(side, key) for key in (
        "ratio_to_forward", "speedup_vs_naive", "loop_speedup_vs_naive", "loop_images_per_s",
        "raw_images_per_s", "total_s")} for side in sides}
    medians["naive"] = {key: median("naive", key) for key in ("loop_images_per_s", "total_s")}
    return {
        "config": {**config, "images": n, "repeats": repeats, "raw_forward_images": raw_batches
                   * config["batch_size"], "forward_path_requested": forward_path,
                   "featlt_threads_requested": threads, "variant_threads": variant_threads},
        "median": medians,
        "features_featlt_vs_naive": _agreement(tmp / "featlt0.h5", tmp / "n0.h5"),
        "runs": runs,
    }


def _agreement(ours: Path, naive: Path) -> dict[str, float]:
    """Both sides computed the same features: max |a - b| / max |b| over the split."""
    import h5py
    import numpy as np

    with h5py.File(ours, "r") as a, h5py.File(naive, "r") as b:
        x = a["train/features"][:].astype(np.float32)
        y = b["features"][:].astype(np.float32)
    return {"max_relative_error": float(np.abs(x - y).max() / np.abs(y).max())}


def libraries() -> dict[str, Any]:
    """Library versions and thread settings (the machine itself is in the run record)."""
    import h5py
    import timm
    import torch

    return {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "h5py": h5py.__version__,
        "torch_default_threads": torch.get_num_threads(),
        "env_threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--data", help="CIFAR-10 packed-JPEG npz [default: $FEATLT_SHARED_DATA "
                                       "or ../shared/data, cifar10/cifar10_jpeg_packed.npz]")
    parser.add_argument("--images", type=int, default=768, help="images for (a)/(b)")
    parser.add_argument("--light-images", type=int, default=3072, help="images for (c)")
    parser.add_argument("--raw-batches", type=int, default=4,
                        help="in-memory batches timed for the raw forward of (a)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rss-images", default="2000,20000", help="image counts for (d)")
    parser.add_argument("--forward-path", default="auto", help="featlt's --forward-path")
    parser.add_argument("--threads", type=int, default=None,
                        help="featlt's --threads [default: featlt's measured choice]")
    parser.add_argument("--variant-threads", type=int, default=os.cpu_count(),
                        help="featlt's --threads of the variant measured beside it (0: none) "
                             "[default: every core]")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "extract_benchmark.json")
    args = parser.parse_args()
    if args.task:
        task = json.loads(args.task)
        print(json.dumps(TASKS[task["kind"]](task)))
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    from featlt.extractors import get_zoo_entry
    from featlt.runtime import write_json_atomic

    data = data_path(args.data)
    if not data.is_file():
        sys.exit(f"bench_extract: {data} not found; pass --data PATH to "
                 "cifar10_jpeg_packed.npz or set FEATLT_SHARED_DATA")
    weights_file, _ = get_zoo_entry(MAIN["model"]).weights_file()  # converted before timing
    record = run_record(sys.argv)
    with tempfile.TemporaryDirectory(prefix="featlt-bench-extract-") as folder:
        tmp = Path(folder)
        (tmp / "main").mkdir()
        (tmp / "light").mkdir()
        print("(a)/(b) main config", file=sys.stderr)
        variant = args.variant_threads or None
        main_result = compare(MAIN, args.images, args.repeats, args.raw_batches, data,
                              tmp / "main", str(weights_file), args.forward_path, args.threads,
                              variant)
        print("(c) light config", file=sys.stderr)
        light_result = compare(LIGHT, args.light_images, args.repeats, args.raw_batches, data,
                               tmp / "light", None, args.forward_path, args.threads, variant)
        print("(d) peak RSS", file=sys.stderr)
        rss_runs = {}
        for n in (int(v) for v in args.rss_images.split(",")):
            rss_runs[str(n)] = run_task({"kind": "rss", "config": LIGHT, "n": n,
                                         "data": str(data), "output": str(tmp / f"rss{n}.h5"),
                                         "forward_path": "folded"})
    m, light = main_result["median"]["featlt"], light_result["median"]["featlt"]
    ours = main_result["runs"][0]["featlt"]
    result = {
        "ratio_to_forward": m["ratio_to_forward"],
        "forward_path": ours["forward_path"],
        "speedup_vs_naive": m["speedup_vs_naive"],
        "speedup_vs_naive_light": light["speedup_vs_naive"],
        "variant_all_cores": None if not variant else {
            "threads": variant,
            "ratio_to_forward": main_result["median"]["featlt_variant"]["ratio_to_forward"],
            "speedup_vs_naive": main_result["median"]["featlt_variant"]["speedup_vs_naive"],
            "speedup_vs_naive_light": light_result["median"]["featlt_variant"][
                "speedup_vs_naive"],
        },
        "peak_rss_mb": {n: r["main_peak_rss_mb"] for n, r in rss_runs.items()},
        "goals": {key: {"goal": goal, "measured": value, "met": value >= goal}
                  for key, goal, value in (
                      ("ratio_to_forward", GOALS["ratio_to_forward"], m["ratio_to_forward"]),
                      ("speedup_vs_naive", GOALS["speedup_vs_naive"], m["speedup_vs_naive"]),
                      ("speedup_vs_naive_light", GOALS["speedup_vs_naive_light"],
                       light["speedup_vs_naive"]))},
        "main": main_result,
        "light": light_result,
        "rss": {
            "config": {**LIGHT, "forward_path": "folded",
                       "note": "light config for both sizes (lite0 at 160 px would take ~6 min "
                               "for 20,000 images here); the path is fixed so both sizes run "
                               "the same one"},
            "runs": rss_runs,
            "largest_worker_peak_rss_mb": {n: r["largest_worker_peak_rss_mb"]
                                           for n, r in rss_runs.items()},
        },
        "threads": {
            "featlt": {"torch_threads": ours["torch_threads"], "decode_workers": ours["workers"],
                       "choice": ours["threads_choice"],
                       "rule": "workers = cores/4 (1..4); forward threads measured at the "
                               "start: every core or cores - workers "
                               "(featlt/extract/thread_policy.py)"},
            "featlt_variant": None if not variant else {
                "torch_threads": main_result["runs"][0]["featlt_variant"]["torch_threads"],
                "decode_workers": main_result["runs"][0]["featlt_variant"]["workers"]},
            "naive": {"torch_threads": main_result["runs"][0]["naive"]["torch_threads"],
                      "decode_workers": 0},
        },
        "data": str(data),
        "libraries": libraries(),
        "run": finish_record(record),
    }
    write_json_atomic(args.out, result)
    print(json.dumps({k: result[k] for k in ("ratio_to_forward", "forward_path",
                                             "speedup_vs_naive", "speedup_vs_naive_light",
                                             "variant_all_cores", "peak_rss_mb")}))


if __name__ == "__main__":
    main()
