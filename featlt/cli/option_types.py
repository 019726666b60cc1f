"""Option types that refuse bad numbers before a command starts, and the rule that every number
option of every command has one.

click's ``FloatRange`` lets ``nan`` through (no comparison with nan is true) and a plain ``float``
or ``int`` option takes ``inf`` or ``-3``. :class:`FiniteFloat` refuses nan and +-inf, with
optional bounds. :func:`harden_numeric_options` runs once over the command tree: a float option
without featlt's type gets :class:`FiniteFloat` (its bounds kept), an integer option without a
range gets ``IntRange(min=0)``: featlt's integers are counts, sizes and seeds, none negative. An
option that needs a stricter range declares it where it is defined.
"""

from __future__ import annotations

import math
from typing import Any

import click

POSITIVE = click.IntRange(min=1)  # counts and sizes that cannot be 0
# numpy, torch and faiss all take seeds in 0..2**31-1 (faiss's is a signed 32-bit int)
SEED_RANGE = click.IntRange(0, 2**31 - 1)


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
    if isinstance(param_type, (FiniteFloat, click.IntRange)):
        return param_type
    if isinstance(param_type, click.FloatRange):
        return FiniteFloat(min=param_type.min, max=param_type.max,
                           min_open=param_type.min_open, max_open=param_type.max_open)
    if isinstance(param_type, click.types.FloatParamType):
        return FiniteFloat()
    if isinstance(param_type, click.types.IntParamType):
        return click.IntRange(min=0)
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
