"""``featlt report RESULT... -o report.html``: one self-contained HTML page of featlt's results."""

from __future__ import annotations

from pathlib import Path

import click

from featlt.cli import emit, featlt_command, main
from featlt.cli.option_types import InputPath, OutputPath
from featlt.runtime import Runtime


@main.command("report")
@click.argument("results", nargs=-1, required=True, type=InputPath(folder=True))
@click.option("-o", "--output", type=OutputPath("report.html"), default=Path("report.html"),
              show_default=True, help="The HTML page to write (atomically).")
@featlt_command
def report_command(runtime: Runtime, results: tuple[Path, ...], output: Path) -> None:
    """Write one offline HTML page of RESULTS: `featlt rank --json-output` files,
    fit-classifier folders, evaluate-separability reports, or folders holding them (searched
    recursively, e.g. a `featlt demo` folder).

    A missing or unreadable result among others is named in the page's "not shown" box and in a
    warning (exit 0); with nothing usable left the command fails (exit 2).
    """
    from featlt.report.build import write_report

    summary = write_report(list(results), output)
    for item in summary.not_shown:
        click.echo(f"warning: not shown: {item.path}: {item.reason}", err=True)
    document = {"output": str(summary.path.resolve()), "bytes": summary.bytes,
                "datasets": summary.datasets, "backbones": summary.backbones,
                "not_shown": [{"path": str(i.path), "reason": i.reason}
                              for i in summary.not_shown]}
    emit(runtime, document,
         f"report of {summary.backbones} backbone(s) on {len(summary.datasets)} dataset(s): "
         f"{summary.bytes / 1e6:.2f} MB\n{document['output']}")
