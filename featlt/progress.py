"""Progress of a long loop, for a person at a terminal and for a log file alike.

On a terminal (the stream is a tty) :class:`Progress` draws a tqdm bar. Off a terminal (a log
file, ``nohup``, CI) a bar would be one unreadable line of carriage returns, so it writes plain
lines instead: one when another 10 % of the work is done or 30 s have passed since the last line,
whichever comes first, and a last one at the end. A run shorter than 30 s writes nothing, so quick
commands keep a clean output. A line reads::

    extract train: 12000/50000 img (24%), 41.3 img/s, elapsed 4m50s, ETA 15m20s

The rate counts only the work done in this run (a resumed run's earlier rows are excluded).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

LINE_INTERVAL_S = 30.0  # off a terminal: a line at least this often (and never in the first 30 s)
LINE_STEP = 0.1  # off a terminal: a line each time another 10 % is done


def format_duration(seconds: float) -> str:
    """``"45s"``, ``"15m20s"``, ``"2h05m"``."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class Progress:
    """``with Progress(total, "extract train", "img") as progress: ... progress.update(n)``.

    Args:
        total: units of work in all; initial: units already done before this run (resuming).
        desc: what is being done (starts every line); unit: name of one unit of work.
        stream: where to write; None: ``sys.stderr`` at construction time.
        terminal: force the bar (True) or the lines (False); None: ``stream.isatty()``.
        clock: seconds, monotonic (tests inject one); None: ``time.monotonic``.
        interval_s, step: off a terminal, a line every ``interval_s`` seconds or each ``step``
            of ``total``, whichever comes first, once ``interval_s`` seconds have passed;
            None: :data:`LINE_INTERVAL_S` and :data:`LINE_STEP`.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "it",
        initial: int = 0,
        stream: TextIO | None = None,
        terminal: bool | None = None,
        clock: Callable[[], float] | None = None,
        interval_s: float | None = None,
        step: float | None = None,
    ):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.initial = self.done = int(initial)
        self.stream = sys.stderr if stream is None else stream
        self.clock = time.monotonic if clock is None else clock
        self.interval_s = float(LINE_INTERVAL_S if interval_s is None else interval_s)
        self.step = float(LINE_STEP if step is None else step)
        self.start = self.last_line = self.clock()
        self.lines_written = 0
        self.last_line_done: int | None = None
        self._next_step = self._step_after(self.done)
        if terminal is None:
            terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar: Any = None
        if terminal:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=self.initial, desc=desc, unit=unit,
                             file=self.stream)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close(finished=kind is None)

    def update(self, n: int = 1) -> None:
        """``n`` more units are done."""
        self.done += int(n)
        if self._bar is not None:
            self._bar.update(int(n))
            return
        now = self.clock()
        stepped = self.done >= self._next_step
        if stepped:
            self._next_step = self._step_after(self.done)
        if now - self.start >= self.interval_s and (stepped
                                                     or now - self.last_line >= self.interval_s):
            self._write_line(now)

    def close(self, finished: bool = True) -> None:
        """End the bar; off a terminal, write the last line if any line was written."""
        if self._bar is not None:
            self._bar.close()
        elif finished and self.lines_written and self.last_line_done != self.done:
            self._write_line(self.clock())

    def line(self, now: float) -> str:
        """The status line at time ``now``: done / total, share, rate, elapsed and ETA."""
        elapsed = now - self.start
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        left = self.total - self.done
        eta = format_duration(left / rate) if rate > 0 and left > 0 else (
            "0s" if left <= 0 else "unknown")
        rate_text = f"{rate:.1f}" if rate >= 1 else f"{rate:.3g}"
        return (f"{self.desc}: {self.done}/{self.total} {self.unit}{share}, "
                f"{rate_text} {self.unit}/s, elapsed {format_duration(elapsed)}, ETA {eta}")

    def _write_line(self, now: float) -> None:
        print(self.line(now), file=self.stream, flush=True)
        self.last_line, self.last_line_done = now, self.done
        self.lines_written += 1

    def _step_after(self, done: int) -> float:
        """The next count of done units that completes another ``step`` of the total."""
        if self.total <= 0:
            return math.inf
        return (math.floor(done / (self.step * self.total) + 1e-9) + 1) * self.step * self.total
