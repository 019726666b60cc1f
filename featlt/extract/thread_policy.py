"""How many torch threads a CPU forward gets beside its decode workers, from three timings.

On CPU the decode workers and the forward pass share the cores. Two choices:

- every core for the forward (``cores`` threads): the fastest forward alone, but a decoding
  worker then preempts a forward thread for every image it decodes, and the other threads
  wait for it (spinning) at the next barrier;
- the cores the workers leave (``cores - workers`` threads): no contention, a slower forward.

Every core pays off when the time the extra threads save on each image's forward exceeds what
decoding then costs the forward. :func:`choose_threads` compares the two on timings of the
run's first images: ``decode``, seconds per image to load, transform and normalise them as a
worker does, and ``forward[t]``, seconds per image of one forward of them at ``t`` threads. It
gives the forward every core when::

    forward[cores - workers] - forward[cores] > CONTENTION * decode

:data:`CONTENTION` (1.25) says how long a decode stalls the forward: for its own duration,
while the worker holds a core the forward's other threads wait for at the next barrier, plus a
quarter for waking them. Measured on this project's 2-core machine, the saving was 3-7x the
decode time where every core won and 0.3-0.7x where it lost, so any factor between about 0.8
and 3 separates the two; 1.25 leaves room on both sides for timing noise.

Measured on this project's 2-core machine (1 decode worker, CIFAR-10 JPEGs; the timings of every
run are in results/extract_benchmark.json):

- ``tf_efficientnet_lite0`` at 160 px (three runs): decode 1.5-2.0 ms, forward 12-13 ms
  (2 threads) and 22-23 ms (1 thread) per image on 8 images, a saving of 8.9-10.4 ms: every
  core (its forward alone runs 61 img/s at 2 threads, 32 at 1: results/forward_paths.json);
- ``mobilenetv3_small_100`` at 96 px (three runs): decode 0.85-1.3 ms, forward 2.5-3.8 ms
  (2 threads) and 3.0-4.3 ms (1), a saving of 0.5 ms: 1 thread (end to end 472 img/s; forced to
  2 threads, 375 img/s).

A short forward of 8 images is not a full batch's; both thread counts are timed on the same
images, so their difference still says what the extra threads buy. With ``--views V`` a worker
transforms and the forward computes about (1 + V) times as much per image, so clean-image
timings compare the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CONTENTION = 1.25


@dataclass(frozen=True)
class ThreadChoice:
    """The forward's torch threads and why; its fields go into the store's run record."""

    threads: int
    reason: str
    decode_ms: float | None = None  # per image, None when nothing was measured
    forward_ms: dict[int, float] | None = None  # per image, by thread count


def choose_threads(
    cores: int, workers: int, decode_s: float, forward_s: dict[int, float]
) -> ThreadChoice:
    """Every core, or ``cores - workers`` threads, for the forward (see the module docstring).

    Args:
        cores: CPU cores (> workers).
        workers: decode workers (>= 1).
        decode_s: seconds to load, transform and normalise one image (the fastest of the
            first images: noise only adds time).
        forward_s: seconds per image of the forward at ``cores`` and at ``cores - workers``
            threads.
    """
    reserved = cores - workers
    saved = forward_s[reserved] - forward_s[cores]
    lost = CONTENTION * decode_s
    if saved > lost:
        threads, why = cores, "every core"
    else:
        threads, why = reserved, f"{reserved} thread(s), the decode worker(s) keep their cores"
    relation = ">" if saved > lost else "<="
    reason = (f"measured: {why} (every core saves {saved * 1e3:.2f} ms per image {relation} "
              f"{CONTENTION:g} x decode {decode_s * 1e3:.2f} ms)")
    return ThreadChoice(threads, reason, round(decode_s * 1e3, 3),
                        {t: round(v * 1e3, 3) for t, v in forward_s.items()})


def seconds_per_image(
    forward: Callable[[Any], Any], example: Any, threads: int, images: int
) -> float:
    """Wall seconds of one ``forward(example)`` call at ``threads`` torch threads, divided by
    ``images``, the images the call computes (a compiled path pads to the batch size)."""
    import torch

    torch.set_num_threads(threads)
    began = time.perf_counter()
    forward(example)
    return (time.perf_counter() - began) / images


def fixed_threads(requested: int | None, device: str, cores: int,
                  workers: int) -> ThreadChoice | None:
    """The forward's torch threads when nothing needs measuring, else None (measure on CPU
    when decode workers leave a core free: :func:`measured_threads`)."""
    if requested:
        return ThreadChoice(requested, "--threads")
    if device == "cuda":
        return ThreadChoice(max(1, cores - workers), "CUDA: the GPU runs the forward")
    if workers == 0 or workers >= cores:
        return ThreadChoice(cores, "every core: no decode worker has a core of its own")
    return None


def measured_threads(
    forward: Callable[[Any], Any], example: Any, images: int, decode_s: float, cores: int,
    workers: int,
) -> ThreadChoice:
    """Time one ``forward(example)`` (computing ``images`` images) at every core and at
    ``cores - workers`` threads, then :func:`choose_threads`."""
    forward_s = {t: seconds_per_image(forward, example, t, images)
                 for t in (cores, cores - workers)}
    return choose_threads(cores, workers, decode_s, forward_s)
