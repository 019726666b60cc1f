"""Demo step: rank the backbones the extraction step wrote, and say which backbone and head to use.

Reads ``context.artifacts["feature_files"]``, ``["protocol"]`` and, from the heads step,
``["head_summaries"]``: the ranking runs in full mode and reuses those heads (same features, view
and settings), so nothing is fitted twice. Writes ``rank/ranking.csv``, ``rank/ranking.json`` and
``rank/ranking.png`` under the demo folder; the step's text ends with the recommendation, which
is also the demo's last line (``context.artifacts["recommendation"]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featlt.demo import DemoContext, demo_step
from featlt.errors import FeatltError

#: --quick's pick is cross-validated over 2 folds: its rarest classes have 3 training rows
#: (n_max 30, imbalance factor 10) and each fold costs about as much as fitting the heads once
#: (3 folds took the demo to about 2 min 50 s on 2 busy cores, 2 folds to 2 min 10 s); the full
#: demo uses rank's default, 5.
QUICK_CV_FOLDS = 2


@demo_step("rank", "rank the backbones: scores, measured heads, the backbone and head to use")
def rank_step(context: DemoContext) -> dict[str, Any]:
    from featlt.demo.heads_step import QUICK_BOOTSTRAP, QUICK_HEADS, QUICK_MAX_EPOCHS
    from featlt.heads.workflow import expand_head_names
    from featlt.rank.measured import HeadSettings
    from featlt.rank.plots import write_ranking_plot
    from featlt.rank.ranking import RankConfig, rank_files
    from featlt.rank.table import ranking_text, write_csv
    from featlt.runtime import write_json_atomic

    files = [Path(p) for p in context.artifacts.get("feature_files", [])]
    if not files:
        raise FeatltError(
            "demo step 'rank': no feature files from the extraction step; run the 'extract' "
            "step first"
        )
    runtime = context.runtime
    quick = context.quick
    settings = HeadSettings(
        heads=tuple(expand_head_names(list(QUICK_HEADS) if quick else ["all"])),
        seed=runtime.seed, n_bootstrap=QUICK_BOOTSTRAP if quick else 1000,
        max_epochs=QUICK_MAX_EPOCHS if quick else None)
    out = context.out_dir / "rank"
    config = RankConfig(
        full=True, heads=settings, heads_dir=out / "heads", n_bootstrap=settings.n_bootstrap,
        seed=runtime.seed, cv_folds=QUICK_CV_FOLDS if quick else RankConfig.cv_folds,
        reuse_summaries=tuple(
            Path(p) for p in context.artifacts.get("head_summaries", {}).values()))
    document = rank_files(files, context.artifacts.get("protocol"), config,
                          device=runtime.device, threads=runtime.threads)
    outputs = {"csv": str(write_csv(out / "ranking.csv", document)),
               "plot": str(write_ranking_plot(document, out / "ranking.png"))}
    document["outputs"] = outputs
    write_json_atomic(out / "ranking.json", document)
    sentence = document["recommendation"]["sentence"]
    context.artifacts["recommendation"] = sentence
    return {**outputs, "recommendation": document["recommendation"],
            "text": ranking_text(document)}
