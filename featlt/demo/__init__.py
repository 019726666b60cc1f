"""``featlt demo``: featlt's main job end to end on an embedded default, as a registry of steps.

Each capability adds one step module (listed in ``STEP_MODULES``, in run order) that decorates a
function with :func:`demo_step`. A step receives the shared :class:`DemoContext`, may read the
artifacts earlier steps left in ``context.artifacts`` and returns a summary dict that the runner
writes into ``demo_summary.json``; its optional ``"text"`` (a table for people) is printed
instead.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featlt.runtime import Runtime, write_json_atomic

StepFn = Callable[["DemoContext"], dict[str, Any]]


@dataclass
class DemoContext:
    """What every demo step shares."""

    out_dir: Path
    quick: bool
    runtime: Runtime
    artifacts: dict[str, Any] = field(default_factory=dict)  # e.g. "feature_files": [Path, ...]


@dataclass(frozen=True)
class DemoStep:
    name: str
    description: str
    run: StepFn


_REGISTRY: list[DemoStep] = []

STEP_MODULES = ("extract_step", "separability_step", "heads_step", "rank_step",
                "report_step")


def demo_step(name: str, description: str) -> Callable[[StepFn], StepFn]:
    """Register ``fn`` as a demo step; steps run in the order of ``STEP_MODULES``."""

    def register(fn: StepFn) -> StepFn:
        _REGISTRY.append(DemoStep(name=name, description=description, run=fn))
        return fn

    return register


def registered_steps() -> list[DemoStep]:
    """Import every step module once and return the steps in run order (the order of
    ``STEP_MODULES``, whichever module another caller imported first)."""
    for module in STEP_MODULES:
        importlib.import_module(f"featlt.demo.{module}")
    order = {f"featlt.demo.{module}": rank for rank, module in enumerate(STEP_MODULES)}
    return sorted(_REGISTRY, key=lambda step: order.get(step.run.__module__, len(order)))


def run_demo(
    out_dir: Path,
    runtime: Runtime,
    quick: bool = False,
    only: tuple[str, ...] = (),
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the registered steps (or only the named ones) and return the summary.

    The summary (per step: its outputs and wall time) is also written to
    ``out_dir/demo_summary.json``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    context = DemoContext(out_dir=out_dir, quick=quick, runtime=runtime)
    summary: dict[str, Any] = {"quick": quick, "out_dir": str(out_dir), "steps": {}}
    for step in registered_steps():
        if only and step.name not in only:
            continue
        echo(f"== demo step '{step.name}': {step.description}")
        start = time.perf_counter()
        result = step.run(context)
        result["seconds"] = round(time.perf_counter() - start, 2)
        text = result.pop("text", None)  # the step's human-readable table, not part of the JSON
        if text:
            echo(text)
        summary["steps"][step.name] = result
        echo(f"   done in {result['seconds']:.1f} s")
    write_json_atomic(out_dir / "demo_summary.json", summary)
    return summary
