"""The index-view options shared by every command that reads a feature store.

``--profile --imbalance-factor --decay --n-max --balanced-per-class --val-source
--val-per-class --test-per-class`` build one :class:`featlt.data.protocol.Protocol`; the same names
mean the same thing in every command, ``featlt extract`` included (which then extracts only the rows
that view reads).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from featlt.cli.option_types import POSITIVE, finite_float


def view_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the index-view options; the callback receives ``protocol_options: dict``.

    The Protocol itself is built inside the command with :func:`build_protocol` (so the views
    module, and numpy, load only when the command runs).
    """

    @click.option("--profile", type=click.Choice(["none", "cao2019", "first", "balanced"]),
                  default="none", show_default=True,
                  help="Index view of the stored train split: a long-tail profile, a balanced "
                  "subset, or none (as stored).")
    @click.option("--imbalance-factor", type=finite_float(min=1.0), default=100.0,
                  show_default=True,
                  help="Imbalance factor of a long-tail --profile.")
    @click.option("--decay", type=click.Choice(["exp", "step"]), default="exp",
                  show_default=True, help="Shape of the long-tail profile.")
    @click.option("--n-max", type=POSITIVE, default=None,
                  help="Largest class's count in the profile (default: smallest stored class).")
    @click.option("--balanced-per-class", type=POSITIVE, default=None,
                  help="Rows per class with --profile balanced.")
    @click.option("--val-source", type=click.Choice(["auto", "split", "outside", "carve"]),
                  default="auto", show_default=True,
                  help="Validation rows: a stored 'val' split, outside the profile's subset, or "
                  "carved from train (auto: in that order of preference).")
    @click.option("--val-per-class", type=POSITIVE, default=20, show_default=True,
                  help="Validation rows per class drawn outside the subset.")
    @click.option("--test-per-class", type=POSITIVE, default=None,
                  help="A fixed balanced subset of the test split, N rows per class (the same "
                  "images for every --seed) [default: the whole test split].")
    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        profile: str,
        imbalance_factor: float,
        decay: str,
        n_max: int | None,
        balanced_per_class: int | None,
        val_source: str,
        val_per_class: int,
        test_per_class: int | None,
        **kwargs: Any,
    ) -> Any:
        options = {
            "profile": profile, "imbalance_factor": imbalance_factor, "decay": decay,
            "n_max": n_max, "balanced_per_class": balanced_per_class, "val_source": val_source,
            "val_per_class": val_per_class, "test_per_class": test_per_class,
        }
        return fn(*args, protocol_options=options, **kwargs)

    return wrapper


def build_protocol(options: dict[str, Any], seed: int) -> Any:
    """The :class:`featlt.data.protocol.Protocol` of the parsed options."""
    from featlt.data.protocol import Protocol

    return Protocol(**options, seed=seed)
