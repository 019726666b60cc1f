"""``featlt demo``: featlt's main job end to end on an embedded default (offline)."""

from __future__ import annotations

from pathlib import Path

import click

from featlt.cli import emit, featlt_command, main
from featlt.cli.option_types import OutputFolder, Params
from featlt.runtime import Runtime


def demo_writes(params: Params) -> tuple[str, ...]:
    """What ``featlt demo`` writes inside its folder (glob patterns): one folder per step, the
    summary and the report page."""
    return ("demo_summary.json", "features/*", "separability/**/*", "heads/**/*", "rank/**/*",
            "report.html")


@main.command("demo")
@click.option("--quick", is_flag=True, help="A smaller run (about 2-3 minutes on 2 CPU cores).")
@click.option("-o", "--out-dir", type=OutputFolder(writes=demo_writes), default=Path("featlt-demo"),
              show_default=True, help="Folder for every output of the demo.")
@click.option("--only", "only", multiple=True,
              help="Run only this step (repeatable); later steps need the files of earlier ones.")
@featlt_command
def demo_command(runtime: Runtime, quick: bool, out_dir: Path, only: tuple[str, ...]) -> None:
    """Extract features of a real dataset, then run every registered demo step on them."""
    from featlt.demo import registered_steps, run_demo
    from featlt.errors import FeatltError

    names = [step.name for step in registered_steps()]
    unknown = [name for name in only if name not in names]
    if unknown:
        raise FeatltError(
            f"--only {', '.join(unknown)}: no such demo step; the steps are {', '.join(names)}"
        )
    echo = (lambda text: click.echo(text, err=True)) if runtime.json_output else click.echo
    summary = run_demo(out_dir, runtime, quick=quick, only=only, echo=echo)
    lines = [f"demo outputs in {out_dir.resolve()}"]
    lines += [f"  {name}: {step.get('seconds', 0):.1f} s" for name, step in
              summary["steps"].items()]
    lines.append(f"  summary: {out_dir.resolve() / 'demo_summary.json'}")
    recommendation = summary["steps"].get("rank", {}).get("recommendation")
    if recommendation:  # which backbone and head to use
        lines.append(recommendation["sentence"])
    report = summary["steps"].get("report", {}).get("report")
    if report:  # the demo's last line: the page that shows it all
        lines.append(report)
    emit(runtime, summary, "\n".join(lines))
