"""The README's screenshot: the top of the ``featlt report`` page of a demo run.

    python3 benchmarks/report_screenshot.py featlt-demo [--out docs/report.png]

Builds the page from RESULT... (``featlt report``'s inputs, e.g. the output folder of
``featlt demo``) into a temporary file, opens it in headless Chromium with the browser test's
helper (``benchmarks/report_browser.py``) and saves the visible top of the page as a PNG.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import REPO
from report_browser import browser, browser_problem, open_page, screenshot

from featlt.report.build import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "report.png")
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=760)
    args = parser.parse_args()
    problem = browser_problem()
    if problem is not None:
        raise SystemExit(f"no headless browser: {problem}")
    with tempfile.TemporaryDirectory() as tmp:
        page = write_report(args.results, Path(tmp) / "report.html").path
        with browser(args.width, args.height) as driver:
            view = open_page(driver, page, args.width, args.height)
            if view.console_errors or view.undecoded:
                raise SystemExit(f"the page did not render cleanly: {view}")
            screenshot(driver, args.out)
    print(args.out)


if __name__ == "__main__":
    main()
