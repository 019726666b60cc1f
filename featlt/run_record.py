"""Where and with what a result was made: featlt's version and git commit, the machine, the date.

:func:`run_record` is written into results a person reads later (``featlt rank``'s document,
which ``featlt report`` shows in its provenance table); ``benchmarks/common.py`` builds its own
run record on it. A field that cannot be known is None, never guessed.
"""

from __future__ import annotations

import os
import platform
import shlex
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from featlt import __version__

SOURCE = Path(__file__).resolve().parent


def git(*args: str, cwd: Path = SOURCE) -> str | None:
    """Output of ``git args`` run in ``cwd``, or None without git or outside a checkout."""
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``), or what :mod:`platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return platform.processor() or None
    return next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")), None)


def utc_now() -> str:
    """The time now, ISO 8601 in UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_record(command: list[str] | None = None) -> dict[str, Any]:
    """featlt's version, the git commit of featlt's source tree when it is a checkout (None for
    an installed wheel), the command (shell-quoted; None when not given), the machine and the
    date."""
    return {
        "featlt": __version__,
        "git_commit": (git("rev-parse", "HEAD") or "").strip() or None,
        "command": None if command is None else shlex.join(command),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date_utc": utc_now(),
    }
