"""Pick the fastest forward path of a frozen backbone, check it against eager, record it.

Paths (``--forward-path``):

- ``eager``: the model as built, NCHW float32 input.
- ``channels_last``: weights and input in NHWC memory order. On CPU oneDNN's convolutions run
  much faster this way (measured for ``tf_efficientnet_lite0`` at 160 px, batch 64, 2 threads:
  68 -> 119 img/s) with features within about 1e-6 relative error of eager.
- ``folded``: channels_last with every eval-mode BatchNorm folded into the convolution before
  it (:mod:`featlt.extractors.bn_fold`, on a copy of the model): one pass over each activation
  less. On this 2-core CPU, lite0 at 160 px, 2 threads: eager 23, channels_last 37, folded 61 img/s,
  features within 5e-6 of eager (benchmarks/bench_forward_paths.py). A model without BatchNorm
  runs as channels_last (0 folded).
- ``compile``: ``torch.compile`` of the folded channels_last model (on CPU inductor needs a C++
  compiler; about 40 s of cold compilation here at 1 thread; lite0 65 img/s at 2 threads, so it
  pays off only on long runs: :func:`compile_pays_off`). Batches smaller than the batch size are
  zero-padded to it, so the last batch does not trigger a second compilation; the padding rows
  are dropped.
- ``auto`` (default): on CPU ``compile`` when the run forwards at least
  :data:`COMPILE_MIN_IMAGES` images, else ``folded``. On CUDA: ``channels_last`` (compiled only
  when asked; folding gained nothing on an H100 — float16 36.8k vs 38.0k img/s — and moved
  float16 features slightly further from float32, results/gpu_extract.json).
- AMP: on CUDA a path may run under ``torch.autocast`` with ``amp_dtype`` float16 (featlt's
  default) or bfloat16 (float32's range, so it cannot overflow); outputs are returned as
  float32. Measured on an H100 for ``tf_efficientnet_lite0`` at 160 px on 512 CIFAR-10 images
  (benchmarks/bench_gpu_extract.py): float16 features differ from float32 by a per-row relative
  error of 6e-3 (median; max 1.6e-2; 1.0e-2 on this module's max-abs metric) at 38k img/s,
  bfloat16 ones by 7e-2 (max 0.25; 0.15 max-abs) at 36k img/s; float32 runs 25k img/s. AMP is
  not used on CPU.

:func:`prepare_forward` runs the chosen path once on an example batch (this is when
compilation happens) and compares it with the eager forward of the same batch: the largest
absolute difference over the largest absolute eager value must stay within
:data:`TOLERANCE` (:data:`AMP_TOLERANCE` of the dtype under AMP, :data:`TF32_TOLERANCE` for
float32 on CUDA with TF32 convolutions: :func:`check_tolerance`). For ``auto`` a path that
fails or differs steps down :data:`FALLBACK` (compile -> folded -> channels_last -> eager) with
the reason recorded; an explicitly requested path that fails, and any AMP path that fails
(float16 overflows to inf where activations pass 65504), raise a :class:`FeatltError` that
names the fix.

Resume must use the same path as the interrupted run (a different path changes the last bits
of the features): pass the total number of images of the run, not the remaining ones, or the
path recorded in the store's provenance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from featlt.errors import FeatltError

log = logging.getLogger("featlt")

FORWARD_PATHS = ("auto", "eager", "channels_last", "folded", "compile")
# Under auto, the path a failing or differing one steps down to.
FALLBACK = {"compile": "folded", "folded": "channels_last", "channels_last": "eager"}
COMPILE_MIN_IMAGES = 50_000  # see compile_pays_off
TOLERANCE = 1e-4  # float32 paths: max |fast - eager| / max |eager|; measured ~1e-6
AMP_DTYPES = ("float16", "bfloat16")
DEFAULT_AMP_DTYPE = "float16"  # 10 mantissa bits: 10x closer to float32 than bfloat16's 7
# Under AMP, by dtype, on this module's max-abs metric: about 2x the H100 measurement above
# (1.0e-2 for float16, 0.15 for bfloat16 over 512 images), so only a broken path trips them.
AMP_TOLERANCE = {"float16": 3e-2, "bfloat16": 3e-1}
# float32 on CUDA: cuDNN runs convolutions in TF32 (a 10-bit mantissa, like float16), and
# channels_last picks other algorithms than eager; measured 6e-4 on an H100 for a tiny model.
TF32_TOLERANCE = 1e-2


@dataclass(frozen=True)
class ForwardPath:
    """The forward path chosen for a run; ``asdict`` of it goes into provenance."""

    name: str  # "eager" | "channels_last" | "folded" | "compile"
    device: str  # "cpu" | "cuda"
    channels_last: bool
    folded: bool  # BatchNorm folded into the convolutions (featlt.extractors.bn_fold)
    compiled: bool
    amp_dtype: str | None  # "float16" / "bfloat16" under CUDA autocast, else None (float32)
    requested: str  # what was asked for ("auto" or a path name)
    reason: str  # why this path was chosen


def check_amp_dtype(amp_dtype: str) -> None:
    """Raise unless ``amp_dtype`` is one of :data:`AMP_DTYPES`."""
    if amp_dtype not in AMP_DTYPES:
        raise FeatltError(
            f"--amp-dtype {amp_dtype}: unknown; choose one of {', '.join(AMP_DTYPES)}"
        )


def compile_pays_off(n_images: int | None, device: str) -> bool:
    """The ``auto`` rule: compile on CPU when the run forwards >= COMPILE_MIN_IMAGES images.

    ``n_images`` counts every forward image of the run: rows of all splits times (1 + views).
    Compilation pays for itself once the time it saves exceeds it. Measured on this 2-core CPU
    for ``tf_efficientnet_lite0`` at 160 px, batch 64, 2 threads: folded 61.4 img/s, compiled
    folded 65.0 img/s; a cold compilation took 41 s at 1 thread (at 2 threads the same run found
    inductor's cache warm: 5.8 s), so 0.9 ms saved per image repays 41 s after ~45,000 images
    (rounded up; results/forward_paths.json). Without folding the gap was larger (the issue's
    measurement: 119 img/s channels_last vs 170 compiled). On CUDA the forward is
    fast enough that compilation is not assumed to pay off.
    """
    return device == "cpu" and n_images is not None and n_images >= COMPILE_MIN_IMAGES


def choose_forward_path(
    requested: str, device: str, n_images: int | None = None, amp_dtype: str | None = None
) -> ForwardPath:
    """Decide the path without touching a model (see the module docstring for the rules).

    ``amp_dtype``: None (float32) or one of :data:`AMP_DTYPES` (CUDA only).
    """
    if requested not in FORWARD_PATHS:
        raise FeatltError(
            f"--forward-path {requested}: unknown; choose one of {', '.join(FORWARD_PATHS)}"
        )
    if device not in ("cpu", "cuda"):
        raise FeatltError(f"device '{device}': forward paths exist for cpu and cuda only")
    if amp_dtype is not None:
        check_amp_dtype(amp_dtype)
    if amp_dtype is not None and device != "cuda":
        raise FeatltError("AMP: used on CUDA only; drop the AMP request or use --device cuda")
    if requested != "auto":
        name, reason = requested, "requested"
    elif compile_pays_off(n_images, device):
        name = "compile"
        reason = f"auto: {n_images} images >= {COMPILE_MIN_IMAGES} repay compilation"
    elif device == "cpu":
        name = "folded"
        reason = f"auto: {n_images} images < {COMPILE_MIN_IMAGES}, compilation would not pay off"
    else:
        name, reason = "channels_last", "auto: CUDA compiles only when asked"
    return _path(name, device, amp_dtype, requested, reason)


def _path(name: str, device: str, amp_dtype: str | None, requested: str,
          reason: str) -> ForwardPath:
    """The ForwardPath called ``name``: each path includes the layouts of the ones below it."""
    return ForwardPath(
        name=name, device=device, channels_last=name != "eager",
        folded=name in ("folded", "compile"), compiled=name == "compile",
        amp_dtype=amp_dtype, requested=requested, reason=reason,
    )


def _step_down(path: ForwardPath, reason: str) -> ForwardPath:
    """The next path of :data:`FALLBACK` under ``auto``, keeping device and AMP."""
    return _path(FALLBACK[path.name], path.device, path.amp_dtype, path.requested, reason)


class FastForward:
    """``fn(x) -> outputs``: the chosen path of a frozen model.

    ``model`` must already be folded for a ``folded`` path (:func:`prepare_forward` does it).
    ``x``: (B, C, H, W) float32 images (moved to the device here); outputs: what the model
    returns (a tensor or a tuple of tensors, batch first), as float32 on the device.
    """

    def __init__(self, model: Any, path: ForwardPath, batch_size: int):
        import torch

        self.path = path
        self.batch_size = batch_size
        fmt = torch.channels_last if path.channels_last else torch.contiguous_format
        self.memory_format = fmt  # of the weights and inputs; callers may pass inputs in it
        model = model.to(memory_format=fmt)  # in place: weights follow the path's layout
        self._module = torch.compile(model, dynamic=False) if path.compiled else model

    def __call__(self, x: Any) -> Any:
        import torch

        n = x.shape[0]
        if self.path.compiled and n < self.batch_size:
            pad = x.new_zeros((self.batch_size - n, *x.shape[1:]))
            x = torch.cat([x, pad])
        x = x.to(self.path.device, non_blocking=True, memory_format=self.memory_format)
        with torch.inference_mode():
            if self.path.amp_dtype is not None:
                dtype = getattr(torch, self.path.amp_dtype)
                with torch.autocast(device_type="cuda", dtype=dtype):
                    out = self._module(x)
            else:
                out = self._module(x)
        return _map_outputs(out, lambda t: t[:n].float())


def _map_outputs(out: Any, fn: Callable[[Any], Any]) -> Any:
    if isinstance(out, (tuple, list)):
        return type(out)(fn(t) for t in out)
    return fn(out)


def _flat(out: Any) -> list[Any]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def relative_error(fast: Any, reference: Any) -> float:
    """max |fast - reference| / max |reference| over all outputs (tensors or tuples of them).

    ``inf`` when shapes differ or ``fast`` holds NaN/inf (e.g. a float16 overflow).
    """
    import torch

    worst = 0.0
    for a, b in zip(_flat(fast), _flat(reference), strict=True):
        a, b = a.detach().float().cpu(), b.detach().float().cpu()
        if a.shape != b.shape or not bool(torch.isfinite(a).all()):
            return float("inf")
        scale = float(b.abs().max()) if b.numel() else 0.0
        diff = float((a - b).abs().max()) if b.numel() else 0.0
        worst = max(worst, diff / scale if scale > 0 else diff)
    return worst


def prepare_forward(
    model: Any,
    example: Any,
    device: str,
    requested: str = "auto",
    n_images: int | None = None,
    amp_dtype: str | None = None,
    batch_size: int | None = None,
) -> tuple[FastForward, dict[str, Any]]:
    """Build the forward of ``model`` for a run and check it against eager on ``example``.

    Args:
        model: frozen module in eval mode, already on ``device``; it may be converted to
            channels_last in place (a folded path folds a copy).
        example: (b, C, H, W) float32 batch of real inputs, b <= the run's batch size (a
            compiled path pads it to the batch size, so compilation happens here).
        device: "cpu" or "cuda".
        requested: one of :data:`FORWARD_PATHS`.
        n_images: forward images in the whole run (rows of all splits x (1 + views)).
        amp_dtype: None (float32) or "float16" / "bfloat16" autocast (CUDA only).
        batch_size: the run's batch size (default: ``len(example)``).
    Returns:
        (fn, record): the callable and its provenance record (``ForwardPath`` fields,
        ``folded_batchnorms``, and ``check``: the relative error against eager, the tolerance
        and the batch shape).
    """
    from featlt.extractors.bn_fold import fold_batchnorm

    path = choose_forward_path(requested, device, n_images, amp_dtype)
    batch_size = batch_size or int(example.shape[0])
    eager = _path("eager", device, None, requested, "reference")
    reference = FastForward(model, eager, batch_size)(example)
    tolerance = check_tolerance(path, device)
    folded: tuple[Any, int] | None = None  # (folded copy, BatchNorms folded), made once
    while True:
        try:
            if path.folded and folded is None:
                folded = fold_batchnorm(model, example.to(device))
            fn = FastForward(folded[0] if path.folded else model, path, batch_size)
            error = relative_error(fn(example), reference)
        except Exception as err:  # inductor/dynamo raise many types; auto steps down
            if path.requested != "auto" or path.name not in ("compile", "folded"):
                raise FeatltError(
                    f"forward path '{path.name}' failed on an example batch "
                    f"({type(err).__name__}: {err}); use --forward-path channels_last or eager"
                ) from err
            log.warning("forward path %s failed (%s); stepping down", path.name, err)
            what = "compilation" if path.compiled else "folding"
            path = _step_down(path, f"auto: {what} failed ({type(err).__name__})")
            continue
        if error <= tolerance:
            break
        if path.amp_dtype is not None:
            raise FeatltError(_amp_failure(path, error, tolerance))
        if path.requested != "auto" or path.name == "eager":
            raise FeatltError(
                f"forward path '{path.name}': features differ from eager by {error:.3g} "
                f"(relative), above the tolerance {tolerance:g}; use --forward-path eager"
            )
        log.warning("forward path %s differs from eager by %.3g; stepping down", path.name, error)
        path = _step_down(path, f"auto: {path.name} differed from eager by {error:.3g}")
    record = asdict(path)
    record["folded_batchnorms"] = folded[1] if path.folded and folded is not None else 0
    if device == "cuda":  # cuDNN runs float32 convolutions in TF32 unless told otherwise
        import torch

        record["tf32"] = {"cudnn": bool(torch.backends.cudnn.allow_tf32),
                          "matmul": bool(torch.backends.cuda.matmul.allow_tf32)}
    record["check"] = {
        "max_relative_error": error, "tolerance": tolerance,
        "example_shape": [int(v) for v in example.shape],
    }
    return fn, record


def check_tolerance(path: ForwardPath, device: str) -> float:
    """The largest ``max |fast - eager| / max |eager|`` accepted for ``path`` on ``device``."""
    if path.amp_dtype is not None:
        return AMP_TOLERANCE[path.amp_dtype]
    if device == "cuda":
        import torch

        if torch.backends.cudnn.allow_tf32:
            return TF32_TOLERANCE
    return TOLERANCE


def _amp_failure(path: ForwardPath, error: float, tolerance: float) -> str:
    """The message for an AMP path whose example batch fails the check against float32."""
    what = (f"{path.amp_dtype} autocast overflowed (NaN/inf outputs)" if error == float("inf")
            else f"features under {path.amp_dtype} autocast differ from float32 by {error:.3g} "
                 f"(relative), above the tolerance {tolerance:g}")
    other = "bfloat16" if path.amp_dtype == "float16" else "float16"
    return (f"forward path '{path.name}': on an example batch {what}; pass --amp-dtype {other} "
            "or --no-amp (float32)")
