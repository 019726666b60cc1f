"""GPU benchmark of extraction precision and speed: ``tf_efficientnet_lite0`` at 160 px on CUDA.

(1) raw forward throughput (img/s) of the model on a batch already on the GPU, channels_last,
    for float32, float16 autocast and bfloat16 autocast (featlt's CUDA paths), each also with
    BatchNorm folded into the convolutions (featlt's ``folded`` path, extractors/bn_fold.py);
(2) how far each precision's features are from float32 on the same GPU and from float32 on the
    CPU, on a fixed batch of real CIFAR-10 test images (the first ``--check-images``): per-row
    relative L2 error ``||a - b|| / ||b||`` (median and max) and featlt's check metric
    ``max |a - b| / max |b|`` next to featlt's tolerance for that dtype;
(3) featlt's end-to-end extraction (decode + transform + forward + write) on ``--images``
    CIFAR-10 training images with its CUDA defaults (float16 autocast, ``cores - 1`` decode
    workers), twice (the first run is cold: file cache, cuDNN), and once with the CPU rule's
    ``cores / 4`` workers, as img/s and as a ratio to (1)'s float16.

float32 convolutions on CUDA run in TF32 unless cuDNN is told otherwise; the flags are recorded.
Needs only featlt's core dependencies (no faiss), a CUDA GPU, a timm-layout weights file for
``tf_efficientnet_lite0`` (e.g. from ``featlt weights convert`` or the featlt cache) and the
packed-JPEG CIFAR-10 npz:

    python3 benchmarks/bench_gpu_extract.py --weights FILE.safetensors \\
        --data cifar10_jpeg_packed.npz --out results/gpu_extract.json

Without a GPU it exits with status 2 and says so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODEL = "tf_efficientnet_lite0.in1k"
RESOLUTION = 160
PRECISIONS = ("float32", "float16", "bfloat16")


def load_batch(data: Path, transform: Any, n: int) -> Any:
    """(n, 3, 160, 160) float32: the first ``n`` CIFAR-10 test images, featlt's eval transform."""
    import torch

    from featlt.data.sources import open_source

    source = open_source(f"jpeg-npz:{data}")
    return torch.stack([transform(source.load_image("test", i)) for i in range(n)])


def features(model: Any, x: Any, device: str, precision: str, batch_size: int) -> Any:
    """(n, D) float32 CPU features of ``x`` with ``model`` (channels_last) at ``precision``."""
    import contextlib

    import torch

    parts = []
    for chunk in x.split(batch_size):
        chunk = chunk.to(device).contiguous(memory_format=torch.channels_last)
        autocast = (contextlib.nullcontext() if precision == "float32"
                    else torch.autocast(device_type=device, dtype=getattr(torch, precision)))
        with torch.inference_mode(), autocast:
            parts.append(model(chunk).float().cpu())
    return torch.cat(parts)


def errors(a: Any, b: Any) -> dict[str, float]:
    """Per-row relative L2 error of ``a`` against ``b`` (median, max) and max-abs / max-abs."""
    rows = ((a - b).norm(dim=1) / b.norm(dim=1)).tolist()
    return {
        "row_relative_l2_median": statistics.median(rows),
        "row_relative_l2_max": max(rows),
        "max_abs_over_max_abs": float((a - b).abs().max() / b.abs().max()),
        "finite": bool(a.isfinite().all()),
    }


def throughput(model: Any, x: Any, device: str, precision: str, iters: int) -> float:
    """img/s of the forward of batch ``x`` (already on ``device``), after a warm-up."""
    import contextlib

    import torch

    x = x.to(device).contiguous(memory_format=torch.channels_last)
    autocast = (contextlib.nullcontext() if precision == "float32"
                else torch.autocast(device_type=device, dtype=getattr(torch, precision)))
    with torch.inference_mode(), autocast:
        for _ in range(5):
            model(x)
        if device == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        for _ in range(iters):
            model(x)
        if device == "cuda":
            torch.cuda.synchronize()
    return x.shape[0] * iters / (time.perf_counter() - began)


def precision_table(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """(1) and (2) for every precision the device supports."""
    import torch

    from featlt.extractors.backbones import BackboneSpec, create_backbone
    from featlt.extractors.bn_fold import fold_batchnorm
    from featlt.extractors.fast_forward import AMP_TOLERANCE, TOLERANCE

    spec = BackboneSpec(MODEL, str(args.weights), resolution=RESOLUTION)
    cpu = create_backbone(spec, device="cpu", amp=False)
    x = load_batch(args.data, cpu.transform, args.check_images)
    cpu_module = cpu.feature_module()
    cpu_feats = features(cpu_module, x, "cpu", "float32", args.batch_size)
    gpu_module = create_backbone(spec, device=device, amp=False).feature_module()
    gpu_module = gpu_module.to(memory_format=torch.channels_last)
    folded_module, n_folded = fold_batchnorm(gpu_module, x[:1].to(device))
    supported = [p for p in PRECISIONS
                 if p != "bfloat16" or device != "cuda" or torch.cuda.is_bf16_supported()]
    table: dict[str, Any] = {}
    reference = features(gpu_module, x, device, "float32", args.batch_size)
    batch = x.repeat(-(-args.batch_size // len(x)), 1, 1, 1)[: args.batch_size]
    for precision in supported:
        feats = features(gpu_module, x, device, precision, args.batch_size)
        folded = features(folded_module, x, device, precision, args.batch_size)
        table[precision] = {
            "images_per_s": round(throughput(gpu_module, batch, device, precision, args.iters), 1),
            "vs_gpu_float32": errors(feats, reference),
            "vs_cpu_float32": errors(feats, cpu_feats),
            "featlt_tolerance": TOLERANCE if precision == "float32" else AMP_TOLERANCE[precision],
            "folded": {
                "batchnorms_folded": n_folded,
                "images_per_s": round(
                    throughput(folded_module, batch, device, precision, args.iters), 1),
                "vs_gpu_float32": errors(folded, reference),
            },
        }
        print(f"  {precision}: {table[precision]}", file=sys.stderr)
    return {
        "check_images": int(x.shape[0]),
        "throughput_batch_size": args.batch_size,
        "precisions": table,
        "note": "featlt_tolerance applies to max_abs_over_max_abs against float32 on the same "
                "device (featlt's check of its forward path on the run's first images)",
    }


def end_to_end(args: argparse.Namespace, device: str, workers: int | None) -> dict[str, Any]:
    """(3): featlt extract on ``args.images`` training images with its defaults on ``device``."""
    from featlt.extract.pipeline import ExtractConfig, extract_features
    from featlt.runtime import Runtime

    with tempfile.TemporaryDirectory(prefix="featlt-gpu-bench-") as folder:
        config = ExtractConfig(
            model=MODEL, weights=str(args.weights), data=f"jpeg-npz:{args.data}",
            output=Path(folder) / "f.h5", splits=("train",), resolution=RESOLUTION,
            batch_size=args.batch_size, limit=args.images, workers=workers,
        )
        began = time.perf_counter()
        result = extract_features(config, Runtime(device=device))
        total = time.perf_counter() - began
    split = result.splits[0]
    record = {
        "images": split.rows,
        "loop_images_per_s": split.images_per_second,
        "loop_s": split.seconds,
        "total_s": round(total, 2),
        "workers": result.provenance["run"]["workers"],
        "torch_threads": result.provenance["run"]["threads"],
        "precision": result.provenance["backbone"]["precision"],
        "forward": result.provenance["forward"],
        "forward_check": result.provenance["run"]["forward_check"],
    }
    print(f"  featlt workers={record['workers']}: {record['loop_images_per_s']} img/s",
          file=sys.stderr)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True,
                        help="timm-layout weights of tf_efficientnet_lite0 (.safetensors/.pth)")
    parser.add_argument("--data", type=Path, required=True,
                        help="cifar10_jpeg_packed.npz (../shared/data/cifar10/)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "gpu_extract.json")
    parser.add_argument("--images", type=int, default=20000, help="images for (3)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--check-images", type=int, default=512, help="images for (2)")
    parser.add_argument("--iters", type=int, default=50, help="timed batches per precision")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu_extract: no CUDA GPU is visible to torch (torch.cuda.is_available() is "
              "False); run this on a machine with an NVIDIA GPU", file=sys.stderr)
        sys.exit(2)
    for path, what in ((args.weights, "--weights"), (args.data, "--data")):
        if not path.is_file():
            print(f"bench_gpu_extract: {what} {path} not found", file=sys.stderr)
            sys.exit(2)
    import timm
    from common import finish_record, run_record

    from featlt.runtime import write_json_atomic

    record = run_record(sys.argv)
    print("(1)/(2) precisions", file=sys.stderr)
    table = precision_table(args, "cuda")
    print("(3) featlt end to end", file=sys.stderr)
    cores = os.cpu_count() or 1
    runs = [end_to_end(args, "cuda", None), end_to_end(args, "cuda", None),
            end_to_end(args, "cuda", max(1, min(4, cores // 4)))]
    for run, label in zip(runs, ("default, cold", "default, warm", "cpu rule workers"),
                          strict=True):
        run["run"] = label
    fp16 = table["precisions"]["float16"]["images_per_s"]
    for run in runs:
        run["ratio_to_raw_float16_forward"] = round(run["loop_images_per_s"] / fp16, 4)
    result = {
        "model": MODEL,
        "resolution": RESOLUTION,
        "weights": str(args.weights),
        "data": str(args.data),
        **table,
        "featlt_end_to_end": runs,
        "tf32": {"cudnn": bool(torch.backends.cudnn.allow_tf32),
                 "matmul": bool(torch.backends.cuda.matmul.allow_tf32)},
        "machine": {
            "gpu": torch.cuda.get_device_name(0),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "torch": torch.__version__,
            "timm": timm.__version__,
        },
        "run": finish_record(record),
    }
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
