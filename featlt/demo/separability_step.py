"""Demo step: the separability report of the feature files the extraction step wrote.

Reads ``context.artifacts["feature_files"]`` (feature store paths) and, when an earlier step left
one, ``context.artifacts["protocol"]`` (a :class:`featlt.data.protocol.Protocol`; default:
``Protocol()``). Writes ``separability/report.json`` and the plots under the demo folder and leaves
``context.artifacts["separability_report"]`` (the report path) for later steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featlt.demo import DemoContext, demo_step
from featlt.errors import FeatltError


@demo_step("separability", "head/tail separability of the extracted features (scores, plots)")
def separability_step(context: DemoContext) -> dict[str, Any]:
    from featlt.separability.evaluate import SeparabilityConfig
    from featlt.separability.report import format_document, run_separability

    files = [Path(p) for p in context.artifacts.get("feature_files", [])]
    if not files:
        raise FeatltError(
            "demo step 'separability': no feature files from the extraction step; run the "
            "'extract' step first"
        )
    runtime = context.runtime
    out = context.out_dir / "separability"
    document = run_separability(
        files, context.artifacts.get("protocol"), SeparabilityConfig(seed=runtime.seed),
        runtime.device, runtime.threads, out / "report.json", out / "plots",
    )
    context.artifacts["separability_report"] = Path(document["outputs"]["report"])
    return {
        "report": document["outputs"]["report"],
        "plots": document["outputs"]["plots"],
        "text": format_document(document),
        "scores": {row["label"]: {k: v for k, v in row.items() if k not in ("label", "file")}
                   for row in document["comparison"]},
    }
