"""Text tables of fitted heads (what ``featlt fit-classifier`` and the demo print)."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _selected_text(selected: dict[str, Any]) -> str:
    short = {"weight_decay": "wd", "temperature": "T", "best_epoch": "ep"}
    parts = []
    for key, value in selected.items():
        if key == "base":
            continue
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{short.get(key, key)}={text}")
    return " ".join(parts)


def comparison_table(summary: dict[str, Any]) -> str:
    """One line per head: test metrics, fit time and the validation-chosen values."""
    view = summary["provenance"]["view"]
    lines = [
        f"{summary['config']['feature_file']}  profile {view['protocol']['profile']}"
        f"  train {view['train']['n']}  val {view['val']['n']} ({view['val']['regime']})"
        f"  test {view['test']['n'] if view['test'] else 0}",
        f"{'head':<17} {'bal.acc':>7} {'95% CI':>15} {'acc':>6} {'head':>6} {'mid':>6} "
        f"{'tail':>6} {'few':>6} {'ECE':>6} {'fit s':>7}  selected on validation",
    ]
    for name, row in summary["heads"].items():
        ci = row.get("balanced_accuracy_ci")
        ci_text = f"[{ci[0]:.3f},{ci[1]:.3f}]" if ci else "-"
        lines.append(
            f"{name:<17} {_fmt(row['balanced_accuracy']):>7} {ci_text:>15} "
            f"{_fmt(row['accuracy']):>6} {_fmt(row['head_third']):>6} {_fmt(row['mid_third']):>6} "
            f"{_fmt(row['tail_third']):>6} {_fmt(row['few']):>6} {_fmt(row['ece']):>6} "
            f"{row['fit_seconds']:>7.1f}  {_selected_text(row['selected'])}"
        )
    return "\n".join(lines)


def prediction_text(result: dict[str, Any]) -> str:
    metrics = result.get("metrics")
    lines = [f"head {result['head']} on {result['source']}: {result['n']} predictions"
             + (f" -> {result['output']}" if result.get("output") else "")]
    if metrics:
        lines.append(
            f"  balanced accuracy {_fmt(metrics['balanced_accuracy'])}  accuracy "
            f"{_fmt(metrics['accuracy'])}  head/mid/tail {_fmt(metrics['head_third'])}/"
            f"{_fmt(metrics['mid_third'])}/{_fmt(metrics['tail_third'])}  ECE "
            f"{_fmt(metrics['ece'])}"
        )
    lines.append(f"  predicted per class: {result['predicted_counts']}")
    return "\n".join(lines)
