"""CPU time per image of each ranked backbone, and of a combination (``featlt rank --pairs``).

[featlt design] A fixed, small timing run: each file's backbone is rebuilt from its provenance
with featlt's backbone loader (:func:`featlt.predict.members.build_forward`, the one ``featlt
predict`` runs; offline: zoo weights from the local zoo, random init, ``pixels``), then
:data:`TIMING_BATCH` random images at its input size go through one untimed forward and
:data:`TIMING_REPEATS` timed ones on the CPU; the time per image is the median over the repeats
divided by the batch. A file whose backbone cannot be built here (no backbone record, weights
absent offline) gets no time, and the reason is kept.

A combination runs each distinct network once (members with the same model, weights and input,
e.g. a backbone and its own inner layer, share one forward, as ``featlt predict`` does), so its
time is the sum over its distinct networks of their slowest member's time.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from featlt.errors import FeatltError

#: Random images per timed forward; timed forwards per backbone (one untimed before them).
TIMING_BATCH = 8
TIMING_REPEATS = 3


@dataclass(frozen=True)
class ForwardTime:
    """One file's backbone on the CPU."""

    seconds: float | None  # CPU seconds per image (None: not timed)
    network: str | None  # model, weights and input: members with the same one share a forward
    problem: str | None  # why it was not timed (None: timed)


def time_forward(provenance: dict[str, Any], label: str, threads: int | None) -> ForwardTime:
    """Time the backbone of a single store's ``provenance`` on random input (module docstring).

    Args:
        label: the file in words, for the reason it was not timed.
        threads: CPU threads of the forward (None: torch's current setting).
    """
    import torch

    from featlt.predict.members import build_forward

    backbone = provenance.get("backbone") or {}
    if not (backbone.get("model") or backbone.get("zoo")):
        return ForwardTime(None, None, f"{label}: its provenance records no backbone to build "
                                       "(synthetic or imported features)")
    try:
        group = build_forward(provenance, [], "cpu", f"feature file {label}").groups[0]
    except (FeatltError, ImportError, OSError, RuntimeError, ValueError, KeyError) as err:
        return ForwardTime(None, None, f"{label}: its backbone cannot be built here offline "
                                       f"({err})")
    model = group.backbone
    network = json.dumps([model.provenance["model"],
                          model.provenance["weights"].get("tensors_sha256"),
                          model.provenance["data_config"]], sort_keys=True, default=str)
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        images = torch.rand(TIMING_BATCH, *model.data_config["input_size"],
                            generator=torch.Generator().manual_seed(0))
        model.forward(images)  # untimed: first-call allocations
        timings = []
        for _ in range(TIMING_REPEATS):
            start = time.perf_counter()
            model.forward(images)
            timings.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return ForwardTime(statistics.median(timings) / TIMING_BATCH, network, None)


def combination_seconds(times: Sequence[ForwardTime]) -> float | None:
    """CPU seconds per image of a combination of members timed as ``times`` (None when any
    member is untimed): the sum over distinct networks of their slowest member's time."""
    if any(t.seconds is None for t in times):
        return None
    slowest: dict[str, float] = {}
    for t in times:
        slowest[t.network or ""] = max(slowest.get(t.network or "", 0.0), t.seconds or 0.0)
    return sum(slowest.values())


def relative_cost(times: Sequence[ForwardTime]) -> float | None:
    """A combination's CPU time per image over its cheapest member's (None when untimed)."""
    total = combination_seconds(times)
    cheapest = min((t.seconds for t in times if t.seconds is not None), default=None)
    return None if total is None or not cheapest else total / cheapest
