"""Demo step: write ``report.html``, one offline HTML page of every result the demo wrote.

Runs last: it reads the demo folder (the rank JSON, the heads' folders, the separability report)
with :func:`featlt.report.build.write_report`; the page's path is the demo's last line.
"""

from __future__ import annotations

from typing import Any

from featlt.demo import DemoContext, demo_step

REPORT_FILE = "report.html"


@demo_step("report", "write report.html: the ranking, heads, separability and calibration")
def report_step(context: DemoContext) -> dict[str, Any]:
    from featlt.report.build import write_report

    summary = write_report([context.out_dir], context.out_dir / REPORT_FILE)
    path = summary.path.resolve()
    context.artifacts["report"] = str(path)
    lines = [f"   report of {summary.backbones} backbones: {summary.bytes / 1e6:.2f} MB"]
    lines += [f"   not shown: {item.path}: {item.reason}" for item in summary.not_shown]
    return {"report": str(path), "bytes": summary.bytes, "text": "\n".join(lines)}
