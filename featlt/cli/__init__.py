"""The ``featlt`` command line: a click group whose commands parse, call one library function
and print. Heavy imports happen inside the commands, so ``featlt --help`` is instant.

Every command carries the common options (``--device --threads --seed --json -v
--allow-download --no-verify``) through :func:`featlt_command`. Command modules register
themselves on :data:`main` and are listed in ``_COMMAND_MODULES``.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from featlt import __version__
from featlt.cli.option_types import SEED_RANGE, THREADS_RANGE, harden_numeric_options
from featlt.errors import FeatltError
from featlt.runtime import Runtime, os_error_text, sigterm_as_exit, to_jsonable


class FeatltUsageError(click.ClickException):
    """A :class:`FeatltError` shown to the user: message only, exit status 2."""

    exit_code = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="featlt")
def main() -> None:
    """featlt: which pretrained backbone, with which cheap head, serves your rare classes best."""


def featlt_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the common options to a click command callback and turn featlt errors into messages.

    The callback receives a :class:`Runtime` as its first argument, already applied (offline hub,
    logging, thread variables). Before it starts, every output is checked against every input
    and locked for the run (:mod:`featlt.cli.output_guard`); SIGTERM ends the run like Ctrl-C,
    so unfinished outputs are discarded and locks released (:func:`featlt.runtime.sigterm_as_exit`).
    """

    @click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default="auto",
        show_default=True,
        help="Where torch and faiss run; 'cuda' without a GPU is an error.",
    )
    @click.option("--threads", type=THREADS_RANGE, default=None,
                  help="CPU threads (torch, faiss, BLAS).")
    @click.option(
        "--seed", type=SEED_RANGE, default=0, show_default=True, help="Seed of every random step."
    )
    @click.option(
        "--json",
        "json_output",
        is_flag=True,
        help="Print one JSON document on stdout; logs on stderr.",
    )
    @click.option("-v", "--verbose", "verbosity", count=True, help="More logging (-vv: debug).")
    @click.option(
        "--allow-download",
        is_flag=True,
        help="Allow timm to download weights from the hub (featlt is offline by default).",
    )
    @click.option(
        "--no-verify",
        is_flag=True,
        help="Read feature stores without checking their block digests.",
    )
    @functools.wraps(fn)
    def wrapper(
        device: str,
        threads: int | None,
        seed: int,
        json_output: bool,
        verbosity: int,
        allow_download: bool,
        **kwargs: Any,
    ) -> Any:
        from featlt.store.verification import default_set_to

        verify = not kwargs.pop("no_verify", False)
        runtime = Runtime(
            device=device,  # type: ignore[arg-type]
            threads=threads,
            seed=seed,
            json_output=json_output,
            verbosity=verbosity,
            allow_download=allow_download,
        )
        outputs: list[tuple[str, Path]] = []
        try:
            runtime.apply()
            with default_set_to(verify), sigterm_as_exit(), _guarded(kwargs) as outputs:
                return fn(runtime, **kwargs)
        except FeatltError as err:
            raise FeatltUsageError(str(err)) from err
        except OSError as err:  # a disk or permission fault that no writer caught by name
            raise FeatltUsageError(os_error_text(err, outputs)) from err

    return wrapper


@contextmanager
def _guarded(kwargs: dict[str, Any]) -> Iterator[list[tuple[str, Path]]]:
    """Before the command body: refuse outputs onto inputs (:func:`guard_outputs`; computed
    output defaults go into ``kwargs``), then hold every output's lock until the body ends.
    Yields (option, path) of every output (to word OS errors as reads or writes)."""
    from featlt.cli.output_guard import guard_outputs, output_locks

    ctx = click.get_current_context(silent=True)
    if ctx is None:  # the callback called directly, not through click
        yield []
        return
    params = {**ctx.params, **kwargs}
    outputs = guard_outputs(ctx.command, params)
    kwargs.update({name: params[name] for name in kwargs})
    with output_locks(outputs):
        yield [(out.option, out.path) for out in outputs]


def emit(runtime: Runtime, document: Any, text: str) -> None:
    """Print ``document`` as JSON with ``--json``, otherwise the human-readable ``text``."""
    if runtime.json_output:
        click.echo(json.dumps(to_jsonable(document), indent=2))
    else:
        click.echo(text)


_COMMAND_MODULES = ("info", "separability", "extract", "weights", "combine", "heads", "rank",
                    "report", "demo")

for _name in _COMMAND_MODULES:
    importlib.import_module(f"featlt.cli.{_name}")
# Every number option refuses nan/inf and (integers) negative values before a command starts.
harden_numeric_options(main)
