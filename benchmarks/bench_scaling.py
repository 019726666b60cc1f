"""Benchmark of scaling out (issue 19, items 1 and 2): ``torchrun`` extraction with 2 processes
against 1, the join's cost, and the device decode path measured against the CPU path.

(a) ``featlt extract`` of the first ``--images`` CIFAR-10 (JPEG) training images (a seeded
    ``--limit`` subset) with EfficientNet-Lite0 (ImageNet weights) at 160 px, float16 store, every
    default (threads and decode workers chosen by featlt, forward path ``auto``), once in one
    process and once under ``torchrun --standalone --nproc-per-node 2`` (gloo), each in a fresh
    process: images per second of the split loop (model loading and the join excluded; for two
    processes all rows over the slower rank's seconds) and the wall time of the whole command.
    Both processes share this machine's cores (each gets half of them), so on 2 cores the ratio
    says what sharding costs or gains here, not what 2 GPUs would do;
(b) the join: its seconds and the feature bytes stored in the joined file (0: virtual datasets
    only), and how the joined store reads against the one-process store (bit-equal or the largest
    difference, with each run's thread count), with block digests verified on those reads;
(c) the same pair pinned (``--threads 1 --workers 1 --forward-path folded`` on both sides) on
    ``--pinned-images`` images: the bit-equality the tests assert, at this size;
(d) the device decode path's code on CPU tensors (``--decode device`` on this CPU run, torchvision's
    ``decode_jpeg``) against the CPU path on ``--decode-images`` CIFAR-10 test JPEGs: pixel
    differences after resize and crop, feature differences (cosine, largest absolute difference
    over the features' range), and each path's images per second on CPU (informative only: the
    device path is for CUDA);
(e) ``"gpu": null`` with the reason when no CUDA GPU is visible.

    python benchmarks/bench_scaling.py                 # -> results/scaling.json
    python benchmarks/bench_scaling.py --images 1024 --decode-images 256
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import finish_record, load_average, run_record

REPO = Path(__file__).resolve().parents[1]
MODEL, RESOLUTION, BATCH = "efficientnet-lite0", 160, 64
PINNED = ["--threads", "1", "--workers", "1", "--forward-path", "folded"]


def data_path() -> Path:
    root = Path(os.environ.get("FEATLT_SHARED_DATA", REPO.parent / "shared" / "data"))
    return root / "cifar10" / "cifar10_jpeg_packed.npz"


def extract(output: Path, data: Path, split: str, images: int, nproc: int,
            extra: list[str]) -> dict[str, Any]:
    """One ``featlt extract`` in a fresh process (``torchrun`` when ``nproc`` > 1): its JSON
    result, wall seconds and the load average around it."""
    featlt = ["-m", "featlt", "extract", "-m", MODEL, "--data", f"jpeg-npz:{data}", "--splits",
              split, "--limit", f"{split}={images}", "--resolution", str(RESOLUTION),
              "--batch-size", str(BATCH), "-o", str(output), "--json", *extra]
    launcher = ([sys.executable] if nproc == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc-per-node={nproc}"])
    load = load_average()
    began = time.perf_counter()
    done = subprocess.run([*launcher, *featlt], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"extract failed ({' '.join(launcher + featlt)}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    split_result = result["splits"][0]
    return {"images": split_result["rows"], "img_per_s": split_result["images_per_second"],
            "loop_seconds": split_result["seconds"], "wall_seconds": round(wall, 2),
            "threads": result["provenance"]["run"]["threads"],
            "threads_reason": result["provenance"]["run"]["threads_choice"]["reason"],
            "workers": result["provenance"]["run"]["workers"],
            "forward_path": result["provenance"]["forward"]["name"],
            "decode_path": result["provenance"]["decode_path"]["path"],
            "join": result.get("join"), "load_average_before": load,
            "load_average_after": load_average()}


def compare(a: Path, b: Path, split: str) -> dict[str, Any]:
    """How two stores' features compare (digests verified while reading)."""
    from featlt.store.feature_store import FeatureStore

    with FeatureStore(a, verify=True) as sa, FeatureStore(b, verify=True) as sb:
        fa, fb = sa.read(split, dtype=np.float16), sb.read(split, dtype=np.float16)
        same_rows = bool(np.array_equal(sa.source_index(split), sb.source_index(split)))
    x, y = fa.astype(np.float32), fb.astype(np.float32)
    cosine = (x * y).sum(1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1),
                                         1e-12)
    return {"bit_equal": fa.tobytes() == fb.tobytes(), "same_rows_in_order": same_rows,
            "max_abs_difference": float(np.abs(x - y).max()),
            "feature_range": float(np.abs(x).max()),
            "rows_differing": int((fa != fb).any(axis=1).sum()),
            "min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
            "store_verification": "on: every block digest of both stores checked on read"}


def decode_pixels(data: Path, images: int) -> dict[str, Any]:
    """Pixels of the device path (on CPU tensors) against the CPU path, after resize and crop."""
    import torch

    from featlt.data.sources import open_source
    from featlt.extract.batch_normalize import split_transform
    from featlt.extract.device_decode import (
        DeviceDecoder,
        EncodedImages,
        collate_encoded,
        plan_device_transform,
    )
    from featlt.extractors.backbones import create_backbone, resolve_spec

    source = open_source(f"jpeg-npz:{data}")
    backbone = create_backbone(resolve_spec(MODEL, None, RESOLUTION, 0), device="cpu")
    per_image = split_transform(backbone.transform)[0]
    plan = plan_device_transform(backbone.transform)
    rows = np.arange(images)
    dataset = EncodedImages(source, "test", rows, per_image)
    items, _, _ = collate_encoded([dataset[j] for j in range(images)])
    device = DeviceDecoder(plan, "cpu", lambda i: per_image(source.load_image("test", i)))(items)
    cpu = torch.stack([per_image(source.load_image("test", int(i))) for i in rows])
    difference = (device.to(torch.int16) - cpu.to(torch.int16)).abs().float().flatten()
    return {"images": images, "transform": plan.describe() if plan else None,
            "mean_abs_levels": round(float(difference.mean()), 4),
            "p99_abs_levels": float(np.quantile(difference.numpy(), 0.99)),
            "max_abs_levels": float(difference.max()),
            "share_of_values_differing": round(float((difference > 0).float().mean()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1536)
    parser.add_argument("--pinned-images", type=int, default=256)
    parser.add_argument("--decode-images", type=int, default=512)
    parser.add_argument("--output", default=str(REPO / "results" / "scaling.json"))
    args = parser.parse_args()
    record = run_record(sys.argv)
    data = data_path()
    if not data.is_file():
        raise SystemExit(f"{data}: absent; set FEATLT_SHARED_DATA to the shared data folder")
    import torch

    with tempfile.TemporaryDirectory(prefix="featlt-scaling-") as tmp:
        folder = Path(tmp)
        one = extract(folder / "one.h5", data, "train", args.images, 1, [])
        two = extract(folder / "two.h5", data, "train", args.images, 2, [])
        pinned_one = extract(folder / "p1.h5", data, "train", args.pinned_images, 1, PINNED)
        pinned_two = extract(folder / "p2.h5", data, "train", args.pinned_images, 2, PINNED)
        cpu = extract(folder / "cpu.h5", data, "test", args.decode_images, 1,
                      ["--decode", "cpu"])
        device = extract(folder / "device.h5", data, "test", args.decode_images, 1,
                         ["--decode", "device"])
        document = {
            "what": "torchrun extraction (2 processes vs 1) and the join on this machine's "
                    "CPUs; the device decode path's code on CPU tensors against the CPU path",
            "model": MODEL, "resolution": RESOLUTION, "batch_size": BATCH,
            "data": "CIFAR-10 (JPEG), ../shared/data/cifar10/cifar10_jpeg_packed.npz, a seeded "
                    "--limit subset",
            "cores": os.cpu_count(),
            "cores_note": f"both processes share this machine's {os.cpu_count()} cores (each "
                          "gets half for its forward and decode workers); the ratio is what "
                          "sharding costs or gains on one CPU machine, not what one GPU per "
                          "process gives",
            "extract_img_per_s": {"1": one["img_per_s"], "2": two["img_per_s"]},
            "ratio_2_to_1": round(two["img_per_s"] / one["img_per_s"], 3),
            "runs": {"1": one, "2": two},
            "join": {"seconds": two["join"]["seconds"],
                     "feature_bytes_copied": two["join"]["feature_bytes_copied"],
                     "joined_file_bytes": two["join"]["file_bytes"],
                     "store_verification": "off: the join reads the shards' attributes and "
                                           "digest tables only, never their rows"},
            "joined_vs_one_process": compare(folder / "one.h5", folder / "two.h5", "train"),
            "pinned": {"flags": PINNED, "runs": {"1": pinned_one, "2": pinned_two},
                       "joined_vs_one_process": compare(folder / "p1.h5", folder / "p2.h5",
                                                        "train")},
            "decode": {
                "pixels": decode_pixels(data, args.decode_images),
                "features": compare(folder / "cpu.h5", folder / "device.h5", "test"),
                "img_per_s_on_cpu": {"cpu": cpu["img_per_s"], "device_code_on_cpu":
                                     device["img_per_s"]},
                "note": "the device path's code on CPU tensors (torchvision decode_jpeg, "
                        "libjpeg-turbo, whose pixels equal Pillow's; the resize in float32 "
                        "passes rounded as Pillow's); nvJPEG on CUDA is not measured here",
            },
            "gpu": None,
            "gpu_reason": ("no CUDA GPU is visible on this machine and none was lent to this "
                           "task: the end-to-end GPU extraction and nvJPEG decoding are not "
                           "measured" if not torch.cuda.is_available() else
                           "a CUDA GPU is visible but this script measures CPU scaling only"),
        }
    document["run"] = finish_record(record)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    from featlt.runtime import write_json_atomic

    write_json_atomic(Path(args.output), document)
    print(json.dumps({k: document[k] for k in ("extract_img_per_s", "ratio_2_to_1", "join")},
                     indent=1))


if __name__ == "__main__":
    main()
