"""Open a ``featlt report`` page in headless Chromium and measure what a reader would see.

Shared by the browser test (``tests/test_report_browser.py``) and the screenshot script
(``benchmarks/report_screenshot.py``). It drives Debian's ``chromium`` with its
``chromium-driver`` through selenium, naming the driver's path (``Service(DRIVER)``) so that
Selenium Manager never tries the network.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DRIVER = "/usr/bin/chromedriver"
BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def browser_problem() -> str | None:
    """Why no headless browser can run here (None: it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not Path(DRIVER).exists():
        return f"{DRIVER} is absent (apt-get install -y chromium chromium-driver)"
    if not any(Path(p).exists() for p in BROWSERS) and not shutil.which("chromium"):
        return "chromium is absent (apt-get install -y chromium chromium-driver)"
    return None


@contextmanager
def browser(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A headless Chromium window of ``width`` x ``height`` CSS pixels (a selenium driver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", f"--window-size={width},{height}",
                     "--force-device-scale-factor=1"):
        options.add_argument(argument)
    binary = next((p for p in BROWSERS if Path(p).exists()), None)
    if binary is not None:
        options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass(frozen=True)
class PageView:
    """What one page showed in one window width."""

    console_errors: list[str]  # SEVERE browser log entries
    undecoded: list[str]  # <img> with natural width 0, or <svg> drawn 0 px wide
    n_images: int  # <img> and <svg> elements
    scroll_width: int  # the document's scroll width (CSS px)
    client_width: int  # the window's inner width (CSS px)
    section_ids: list[str]  # the id of every <section>, in page order
    table_values: list[list[str | None]]  # the first table.ranking: data-value (else text)
    pwned: bool  # a script planted in a result file ran (window.__featlt_pwned was set)


def open_page(driver: Any, page: Path, width: int, height: int = 900) -> PageView:
    """Load ``page`` from disk in a ``width`` px wide window and measure it."""
    driver.set_window_size(width, height)
    driver.get(page.resolve().as_uri())
    inner = driver.execute_script("return window.innerWidth")
    if inner != width:  # window chrome: make the viewport itself ``width`` wide
        driver.set_window_size(2 * width - inner, height)
        driver.get(page.resolve().as_uri())
    measured = driver.execute_script("""
        var bad = [];
        document.querySelectorAll('img').forEach(function(img) {
          if (!img.complete || img.naturalWidth === 0) { bad.push('img ' + img.src); }
        });
        document.querySelectorAll('svg').forEach(function(svg) {
          if (svg.getBoundingClientRect().width <= 0) {
            bad.push('svg ' + (svg.getAttribute('aria-label') || ''));
          }
        });
        var table = document.querySelector('table.ranking');
        var values = table ? Array.prototype.map.call(table.tBodies[0].rows, function(row) {
          return Array.prototype.map.call(row.cells, function(cell) {
            return cell.hasAttribute('data-value') ? cell.getAttribute('data-value')
                                                   : cell.textContent;
          });
        }) : [];
        return {bad: bad, n: document.querySelectorAll('img, svg').length,
                scroll: document.documentElement.scrollWidth,
                client: document.documentElement.clientWidth,
                ids: Array.prototype.map.call(document.querySelectorAll('section'),
                                              function(s) { return s.id; }),
                values: values, pwned: window.__featlt_pwned === true};
    """)
    errors = [entry["message"] for entry in driver.get_log("browser")
              if entry.get("level") == "SEVERE"]
    return PageView(errors, measured["bad"], measured["n"], measured["scroll"],
                    measured["client"], measured["ids"], measured["values"], measured["pwned"])


def screenshot(driver: Any, path: Path) -> Path:
    """Save the visible part of the page as a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path
