"""Option types that refuse bad numbers before a command starts, and the rule that every number
option of every command has one.

click's ``FloatRange`` lets ``nan`` through (no comparison with nan is true) and a plain ``float``
or ``int`` option takes ``inf`` or ``-3``. :class:`FiniteFloat` refuses nan and +-inf, with
optional bounds. :func:`harden_numeric_options` runs once over the command tree: a float option
without featlt's type gets :class:`FiniteFloat` (its bounds kept), an integer option without a
range gets ``IntRange(min=0)``: featlt's integers are counts, sizes and seeds, none negative; and
every integer option gets an upper bound (:data:`INT_MAX` unless it declares a smaller one), so a
number beyond 64 bits is a message, not an ``OverflowError``. An option that needs a stricter
range declares it where it is defined.

Every path option and argument is an :class:`InputPath` (the command reads it), an
:class:`OutputPath` (it writes that file) or an :class:`OutputFolder` (it writes files into that
folder). :mod:`featlt.cli.output_guard` checks every output against every input, and takes the
output locks, before a command's body starts; ``tests/test_output_guard.py`` fails on a path
parameter with no role.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

POSITIVE = click.IntRange(min=1)  # counts and sizes that cannot be 0
# numpy, torch and faiss all take seeds in 0..2**31-1 (faiss's is a signed 32-bit int)
SEED_RANGE = click.IntRange(0, 2**31 - 1)
# The largest integer any option takes unless it declares less: C ints, torch and faiss sizes.
INT_MAX = 2**31 - 1
# Resamples of one bootstrap: 100,000 already pins a 95% interval's ends to about 0.1 % of its
# width; more only costs time (1e23 ran for minutes before anything was said).
MAX_BOOTSTRAP = 100_000


class CappedInt(click.IntRange):
    """An integer of at least ``min`` and at most ``cap``; a value below ``min`` gets click's own
    range message (``x>=1``), a value above ``cap`` one that says the cap."""

    def __init__(self, min: int = 0, cap: int = INT_MAX, min_open: bool = False) -> None:
        super().__init__(min=min, min_open=min_open)
        self.cap = cap

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number > self.cap:
            self.fail(f"{number} is too large; pass at most {self.cap}", param, ctx)
        return number


BOOTSTRAP_RANGE = CappedInt(0, MAX_BOOTSTRAP)
THREADS_RANGE = CappedInt(1, 4096)  # CPU threads of torch, faiss and BLAS
WORKERS_RANGE = CappedInt(0, 256)  # DataLoader decode processes

# A command's parsed parameters, by name, as the role callables below receive them.
Params = dict[str, Any]


class FiniteFloat(click.FloatRange):
    """A finite float (no nan, no +-inf), optionally bounded like ``click.FloatRange``."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number; pass e.g. 10 or 0.5", param, ctx)
        return super().convert(number, param, ctx)


def finite_float(
    min: float | None = None, max: float | None = None, min_open: bool = False,
    max_open: bool = False,
) -> FiniteFloat:
    """:class:`FiniteFloat` with bounds (``min_open``: the bound itself is refused)."""
    return FiniteFloat(min=min, max=max, min_open=min_open, max_open=max_open)


def _hardened(param_type: click.ParamType) -> click.ParamType:
    """The validated version of a number type (others unchanged)."""
    if isinstance(param_type, click.IntRange):
        if param_type.max is None and not isinstance(param_type, CappedInt):
            return CappedInt(0 if param_type.min is None else int(param_type.min),
                             min_open=param_type.min_open)
        return param_type
    if isinstance(param_type, FiniteFloat):
        return param_type
    if isinstance(param_type, click.FloatRange):
        return FiniteFloat(min=param_type.min, max=param_type.max,
                           min_open=param_type.min_open, max_open=param_type.max_open)
    if isinstance(param_type, click.types.FloatParamType):
        return FiniteFloat()
    if isinstance(param_type, click.types.IntParamType):
        return CappedInt(0)
    return param_type


def harden_numeric_options(command: click.Command) -> None:
    """Give every number option of ``command`` and its subcommands a validating type."""
    for param in command.params:
        param.type = _hardened(param.type)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            harden_numeric_options(sub)


def is_numeric(param: click.Parameter) -> bool:
    """True for an option or argument that takes a number (not a flag or a counter like -v)."""
    if isinstance(param, click.Option) and (param.is_flag or param.count):
        return False
    return isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType))


class InputPath(click.Path):
    """A file or folder a command reads.

    Args:
        folder: the path is a folder (an image folder, a head folder).
        reads: for a folder, the names inside it that the command reads (called when the command
            runs); None: every file inside it.
    """

    role = "input"

    def __init__(self, folder: bool = False,
                 reads: Callable[[], Iterable[str]] | None = None) -> None:
        super().__init__(path_type=Path)
        self.folder = folder
        self.reads = reads


class _OutputType(click.Path):
    """What :class:`OutputPath` and :class:`OutputFolder` share."""

    role = "output"
    folder = False

    def __init__(self, lock: bool = True, active: Callable[[Params], bool] | None = None,
                 default: Callable[[Params], Path] | None = None) -> None:
        super().__init__(path_type=Path)
        self.lock = lock
        self.active = active
        self.default = default

    def resolve(self, value: Path | None, params: Params) -> Path | None:
        """The path this run writes: ``value``, else the computed default; None when the
        option is unused in this run (e.g. ``rank --heads-dir`` without ``--full``)."""
        if self.active is not None and not self.active(params):
            return None
        if value is None and self.default is not None:
            return self.default(params)
        return value


class OutputPath(_OutputType):
    """A file a command writes. A value ending in ``/`` is refused: it names a folder.

    Args:
        example: a file name to suggest when a folder is given, e.g. ``ranking.csv``.
        lock: take the output lock (:mod:`featlt.output_lock`) for the run; False where the
            library takes it itself (``extract``: per backbone of a sweep).
        active: whether this run writes it at all; default: whenever it has a value.
        default: the path written when the option is not given (None: nothing is written).
    """

    def __init__(self, example: str, lock: bool = True,
                 active: Callable[[Params], bool] | None = None,
                 default: Callable[[Params], Path] | None = None) -> None:
        super().__init__(lock, active, default)
        self.example = example

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = os.fsdecode(value) if isinstance(value, (str, bytes)) else None
        if text and text.endswith(("/", os.sep)) and text.strip("/" + os.sep):
            self.fail(f"{text}: ends with '/', so it names a folder, but this writes one file; "
                      f"pass a file path such as {text.rstrip('/' + os.sep)}/{self.example}",
                      param, ctx)
        return super().convert(value, param, ctx)


class OutputFolder(_OutputType):
    """A folder a command writes files into.

    Args:
        writes: the files the command writes inside the folder, as glob patterns relative to it
            (e.g. ``summary.json``, ``*/head.json``), from the parsed parameters; an input found
            at one of them is refused.
        lock, active, default: as for :class:`OutputPath`.
    """

    folder = True

    def __init__(self, writes: Callable[[Params], Iterable[str]], lock: bool = True,
                 active: Callable[[Params], bool] | None = None,
                 default: Callable[[Params], Path] | None = None) -> None:
        super().__init__(lock, active, default)
        self.writes = writes


def path_role(param: click.Parameter) -> str | None:
    """``"input"`` or ``"output"`` for a path parameter with a role, else None."""
    return getattr(param.type, "role", None) if isinstance(param.type, click.Path) else None


def memory_budget_option(read: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--memory-budget MB`` (fit-classifier, evaluate-separability, rank) as ``memory_budget``.

    Args:
        read: what the command reads chunk by chunk under it, and any limit, as the start of
            the help text.
    """
    return click.option(
        "--memory-budget", "memory_budget", type=finite_float(min=0, min_open=True),
        default=None, metavar="MB",
        help=f"{read}, so that resident memory above the level after imports stays under MB "
             "(a budget below the smallest that works is refused, naming it).")
