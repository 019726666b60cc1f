"""Issue 10, item 6 as a property: every number option of every command refuses a random bad
value (nan, inf, out of range, not a number) with click's usage error, exit status 2, no traceback,
before the command runs."""

from __future__ import annotations

import math

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featlt.cli import main
from featlt.cli.option_types import FiniteFloat, is_numeric

NOT_NUMBERS = st.sampled_from(["", "abc", "1,5", "0x10", "1e", "--", "ten", "½"])
NOT_FINITE = st.sampled_from(["nan", "NaN", "inf", "-inf", "+inf", "1e999", "-1e999"])


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...],
                                                                          click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


NUMERIC = [(path, command, param) for path, command in _commands(main)
           for param in command.params if is_numeric(param)]


def _required(command: click.Command) -> list[str]:
    """Placeholder values for the required parameters, so only the bad value can fail."""
    args: list[str] = []
    for param in command.params:
        if isinstance(param, click.Argument) and param.required:
            args.append("placeholder")
        elif isinstance(param, click.Option) and param.required:
            args.append(f"{param.opts[0]}=placeholder")
    return args


def _bad_values(param: click.Parameter) -> st.SearchStrategy[str]:
    """Values the option's declared type must refuse."""
    kind = param.type
    choices = [NOT_NUMBERS, NOT_FINITE]
    low = getattr(kind, "min", None)
    high = getattr(kind, "max", None)
    if isinstance(kind, click.IntRange):
        choices.append(st.floats(allow_nan=False, allow_infinity=False).filter(
            lambda x: not float(x).is_integer()).map(repr))
        if low is not None:
            choices.append(st.integers(max_value=low - 1 + bool(kind.min_open)).map(str))
        if high is not None:
            choices.append(st.integers(min_value=high + 1 - bool(kind.max_open)).map(str))
    else:
        if low is not None:
            below = st.floats(max_value=low, allow_nan=False, allow_infinity=False,
                              exclude_max=not kind.min_open)
            choices.append(below.map(repr))
        if high is not None:
            above = st.floats(min_value=high, allow_nan=False, allow_infinity=False,
                              exclude_min=not kind.max_open)
            choices.append(above.map(repr))
    return st.one_of(*choices)


def test_every_number_option_has_a_validating_type() -> None:
    assert len(NUMERIC) >= 30  # extract, fit-classifier, predict, evaluate-separability, ...
    for path, _, param in NUMERIC:
        kind = param.type
        where = f"featlt {' '.join(path)} {param.name}"
        assert isinstance(kind, (click.IntRange, FiniteFloat)), f"{where}: {kind!r} unchecked"
        if isinstance(kind, click.IntRange):
            assert kind.min is not None, f"{where}: no lower bound"


@pytest.mark.parametrize(("path", "command", "param"), NUMERIC,
                         ids=[f"{' '.join(p)} {o.name}" for p, _, o in NUMERIC])
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bad_number_is_a_usage_error_before_any_work(
    path: tuple[str, ...], command: click.Command, param: click.Option, data: st.DataObject
) -> None:
    value = data.draw(_bad_values(param), label="value")
    result = CliRunner().invoke(main, [*path, f"{param.opts[0]}={value}", *_required(command)])
    assert result.exit_code == 2, (value, result.output)
    assert f"Invalid value for '{param.opts[0]}'" in result.output or \
        f"Invalid value for '{param.opts[-1]}'" in result.output, (value, result.output)
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_finite_float_accepts_finite_values_in_range() -> None:
    kind = FiniteFloat(min=0.0, max=1.0, min_open=True)
    assert kind.convert("0.25", None, None) == 0.25
    for bad in ("0", "nan", "inf", "1.5"):
        with pytest.raises(click.BadParameter):
            kind.convert(bad, None, None)
    assert math.isfinite(FiniteFloat().convert("-3.5e10", None, None))
