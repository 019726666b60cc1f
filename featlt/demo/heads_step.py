"""Demo step: classifier heads on the feature files the extraction step wrote.

Reads ``context.artifacts["feature_files"]`` and, when an earlier step left one,
``context.artifacts["protocol"]`` (a :class:`featlt.data.protocol.Protocol`). For each file it
fits a few heads (``--quick``) or all of them, with selection on validation only, evaluates them
on test and saves them under ``heads/<file stem>/``. Leaves
``context.artifacts["head_summaries"]`` (file -> summary.json path) and
``context.artifacts["best_heads"]`` (file -> best head's folder, by validation balanced accuracy)
for later steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featlt.demo import DemoContext, demo_step
from featlt.errors import FeatltError

QUICK_HEADS = ("linear", "crt", "la_loss", "ncm_cosine", "posthoc_la", "dlsa", "cws", "cibl")
QUICK_MAX_EPOCHS = 20
QUICK_BOOTSTRAP = 200


@demo_step("heads", "classifier heads: fit, select on validation, evaluate on test, save")
def heads_step(context: DemoContext) -> dict[str, Any]:
    from featlt.heads.report import comparison_table
    from featlt.heads.workflow import SUMMARY_FILE, fit_classifiers

    files = [Path(p) for p in context.artifacts.get("feature_files", [])]
    if not files:
        raise FeatltError(
            "demo step 'heads': no feature files from the extraction step; run the 'extract' "
            "step first"
        )
    runtime = context.runtime
    summaries: dict[str, str] = {}
    best: dict[str, str] = {}
    table: dict[str, Any] = {}
    texts: list[str] = []
    for path in files:
        out = context.out_dir / "heads" / path.stem
        summary = fit_classifiers(
            path, list(QUICK_HEADS) if context.quick else ["all"], out,
            context.artifacts.get("protocol"), device=runtime.device, seed=runtime.seed,
            n_bootstrap=QUICK_BOOTSTRAP if context.quick else 1000,
            overrides={"max_epochs": QUICK_MAX_EPOCHS} if context.quick else None,
        )
        rows = summary["heads"]
        texts.append(comparison_table(summary))
        chosen = max(rows, key=lambda name: rows[name]["val_balanced_accuracy"])
        summaries[str(path)] = str(out / SUMMARY_FILE)
        best[str(path)] = rows[chosen]["dir"]
        table[path.stem] = {
            "best_on_validation": chosen,
            "test_balanced_accuracy": {k: round(v["balanced_accuracy"], 4)
                                       for k, v in rows.items()},
        }
    context.artifacts["head_summaries"] = summaries
    context.artifacts["best_heads"] = best
    return {"summaries": summaries, "heads": table, "text": "\n\n".join(texts)}
