"""Benchmark of featlt's CPU forward paths side by side: eager, channels_last, folded (compile).

For each config (``tf_efficientnet_lite0`` with its ImageNet weights at 160 px,
``mobilenetv3_small_100`` at 96 px with random weights and randomised BatchNorm statistics, so
folding is not trivial) and each thread count, on one batch of 64 real CIFAR-10 test images
(featlt's eval transform): the throughput of each path in img/s (median of ``--repeats`` timed
forwards after two warm-up forwards, all in the same process) and how far its features are from
eager (featlt's check metric ``max |a - b| / max |b|`` and the median per-row relative L2).
``--compile`` adds ``torch.compile`` of the folded model (40-90 s of compilation per config and
thread count on 2 cores), with its compile time.

    python benchmarks/bench_forward_paths.py               # -> results/forward_paths.json
    python benchmarks/bench_forward_paths.py --compile
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIGS = (
    {"name": "lite0-160", "model": "efficientnet-lite0", "weights": None, "resolution": 160},
    {"name": "mobilenetv3s-96", "model": "mobilenetv3_small_100", "weights": "random",
     "resolution": 96},
)
BATCH = 64


def data_path() -> Path:
    root = Path(os.environ.get("FEATLT_SHARED_DATA", REPO.parent / "shared" / "data"))
    return root / "cifar10" / "cifar10_jpeg_packed.npz"


def randomise_norms(model: Any) -> None:
    """Non-trivial running statistics and affine parameters in every BatchNorm (seeded)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d) and module.running_mean is not None:
            c = module.num_features
            module.running_mean.copy_(torch.rand(c, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(c, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(c, generator=generator) - 0.5)


def batch_of_images(backbone: Any, data: Path) -> Any:
    """(64, 3, H, W): the first 64 CIFAR-10 test images through featlt's eval transform."""
    import torch

    from featlt.data.sources import open_source

    source = open_source(f"jpeg-npz:{data}")
    return torch.stack([backbone.transform(source.load_image("test", i)) for i in range(BATCH)])


def images_per_second(forward: Any, x: Any, repeats: int) -> float:
    import torch

    with torch.inference_mode():
        forward(x)
        forward(x)
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            forward(x)
            times.append(time.perf_counter() - began)
    return BATCH / statistics.median(times)


def errors(out: Any, reference: Any) -> dict[str, float]:
    from featlt.extractors.fast_forward import relative_error

    rows = ((out - reference).norm(dim=1) / reference.norm(dim=1)).tolist()
    return {"max_abs_over_max_abs": relative_error(out, reference),
            "row_relative_l2_median": statistics.median(rows)}


def measure(config: dict[str, Any], threads: int, data: Path, repeats: int,
            compile_too: bool) -> dict[str, Any]:
    """Every path of one config at ``threads`` torch threads."""
    import copy

    import torch

    from featlt.extractors.backbones import create_backbone, resolve_spec
    from featlt.extractors.bn_fold import fold_batchnorm

    torch.set_num_threads(threads)
    backbone = create_backbone(resolve_spec(config["model"], config["weights"],
                                            config["resolution"], 0), device="cpu")
    model = backbone.feature_module()
    if config["weights"] == "random":
        randomise_norms(model)
    x = batch_of_images(backbone, data)
    x_last = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        reference = model(x)
    last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    folded, n_folded = fold_batchnorm(model, x[:1])
    folded = folded.to(memory_format=torch.channels_last)
    paths: dict[str, Any] = {"eager": (model, x), "channels_last": (last, x_last),
                             "folded": (folded, x_last)}
    result: dict[str, Any] = {"threads": threads, "batchnorms_folded": n_folded, "paths": {}}
    if compile_too:
        began = time.perf_counter()
        compiled = torch.compile(folded, dynamic=False)
        with torch.inference_mode():
            compiled(x_last)
        result["compile_seconds"] = round(time.perf_counter() - began, 1)
        paths["compile"] = (compiled, x_last)
    for name, (module, inputs) in paths.items():
        with torch.inference_mode():
            out = module(inputs)
        record = {"images_per_s": round(images_per_second(module, inputs, repeats), 1),
                  **errors(out, reference)}
        result["paths"][name] = record
        print(f"  {config['name']} threads={threads} {name}: {record}", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="cifar10_jpeg_packed.npz [default: $FEATLT_SHARED_DATA or "
                             "../shared/data]")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", default=None,
                        help="comma-separated thread counts [default: 1 and every core]")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "forward_paths.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    import timm
    import torch
    from common import finish_record, run_record

    from featlt.runtime import write_json_atomic

    data = args.data or data_path()
    if not data.is_file():
        sys.exit(f"bench_forward_paths: {data} not found; pass --data PATH to "
                 "cifar10_jpeg_packed.npz or set FEATLT_SHARED_DATA")
    cores = os.cpu_count() or 1
    threads = ([int(t) for t in args.threads.split(",")] if args.threads
               else sorted({1, cores}))
    record = run_record(sys.argv)
    runs = {config["name"]: {"config": config, "by_threads": [
        measure(config, t, data, args.repeats, args.compile) for t in threads]}
        for config in CONFIGS}
    write_json_atomic(args.out, {
        "batch_size": BATCH,
        "repeats": args.repeats,
        "runs": runs,
        "note": "img/s: median of the timed forwards of one batch of 64 real CIFAR-10 test "
                "images; errors against eager on the same batch",
        "machine": {"torch": torch.__version__, "timm": timm.__version__},
        "run": finish_record(record),
    })
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
