"""What every benchmark result records about its run: code version, command, machine, load, date.

Each ``benchmarks/bench_*.py`` script calls :func:`run_record` when it starts and
:func:`finish_record` just before it writes its JSON, and stores the result under ``"run"``:

    record = run_record(sys.argv)
    ...  # the measurements
    document["run"] = finish_record(record)

The scripts run as ``python3 benchmarks/bench_x.py``, so this folder is on ``sys.path`` and they
import this module as ``common``. A field that cannot be known is null, never guessed.
"""

from __future__ import annotations

import os
import platform
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any

from featlt.run_record import cpu_model, git, utc_now

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    """Output of ``git args`` in the repository, or None without git or outside a checkout."""
    return git(*args, cwd=REPO)


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, or None where the OS has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def run_record(argv: list[str]) -> dict[str, Any]:
    """The record of a benchmark run, taken at its start.

    Args:
        argv: the script's ``sys.argv`` (script path first); the command line recorded is the
            interpreter as it was invoked followed by ``argv``, shell-quoted.
    Returns:
        ``git_commit`` (HEAD, or None), ``git_dirty`` (tracked files differ from HEAD),
        ``git_dirty_paths`` (which ones), ``command``, ``hostname``, ``cpu_count``, ``cpu``,
        ``python``, ``platform``, ``load_average_start`` ([1, 5, 15] min), ``date_utc`` (ISO),
        ``started_unix`` and ``malloc_environment`` (the ``MALLOC_*`` variables that tune
        glibc's allocator, when set).
    """
    interpreter = (getattr(sys, "orig_argv", None) or [sys.executable])[0]
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": (_git("rev-parse", "HEAD") or "").strip() or None,
        "git_dirty": None if status is None else bool(status.strip()),
        "git_dirty_paths": None if status is None else sorted(
            line[3:] for line in status.splitlines() if line.strip()),  # "XY path" lines
        "command": shlex.join([interpreter, *argv]),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_start": load_average(),
        "date_utc": utc_now(),
        "started_unix": round(time.time(), 3),
        "malloc_environment": {name: value for name, value in sorted(os.environ.items())
                               if name.startswith("MALLOC_")},
    }


def finish_record(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` with ``load_average_end``, ``date_end_utc`` and ``seconds`` added."""
    return {
        **record,
        "load_average_end": load_average(),
        "date_end_utc": utc_now(),
        "seconds": round(time.time() - record["started_unix"], 1),
    }
