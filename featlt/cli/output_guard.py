"""The one check of every command's outputs against its inputs, and the output locks.

Every path parameter of every command has a role (:mod:`featlt.cli.option_types`):
:class:`~featlt.cli.option_types.InputPath`, :class:`~featlt.cli.option_types.OutputPath` or
:class:`~featlt.cli.option_types.OutputFolder`. Before a command's body starts,
:func:`guard_outputs` refuses

- an output file that is an input (the same path, a symlink to it or a hard link of it), or a file
  inside an input folder the command reads;
- an output folder that is an input, or that holds an input at a name the command writes there
  (``rank --full --heads-dir`` equal to a feature file, or a feature file inside it where rank
  puts a head);
- an output file that names a folder, an output folder that names a file, and two outputs that
  are one file;

and :func:`output_locks` holds every output's lock (:mod:`featlt.output_lock`) for the run, so a
second run writing the same output stops at once. Inputs that are not path parameters (``extract
--data npz:FILE``) are checked where they are parsed, with the same function
(:func:`featlt.runtime.refuse_output_onto_inputs`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import click

from featlt.cli.option_types import InputPath, Params, _OutputType, path_role
from featlt.errors import FeatltError
from featlt.runtime import refuse_output_onto_inputs, same_file


@dataclass(frozen=True)
class RunPath:
    """One path a run reads or writes, with the option (or argument) that names it."""

    option: str  # e.g. "--output", "FEATURE_FILES"
    path: Path
    kind: click.Path  # the parameter's role type

    @property
    def folder(self) -> bool:
        """Whether the path is a folder (an output folder, an input folder)."""
        return bool(getattr(self.kind, "folder", False))


def option_name(param: click.Parameter) -> str:
    """How messages name a parameter: its long option (``--heads-dir``) or ``ARGUMENT``."""
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return param.human_readable_name


def run_paths(command: click.Command, params: Params) -> tuple[list[RunPath], list[RunPath]]:
    """(inputs, outputs) of one run of ``command``; output defaults computed from ``params``
    are written back into ``params`` (so the command body sees the path that was checked)."""
    inputs: list[RunPath] = []
    outputs: list[RunPath] = []
    for param in command.params:
        role = path_role(param)
        if role is None or param.name is None:
            continue
        value = params.get(param.name)
        if role == "output":
            assert isinstance(param.type, _OutputType)
            resolved = param.type.resolve(value, params)
            if value is None and resolved is not None:
                params[param.name] = resolved
            value = resolved
        values = value if isinstance(value, (tuple, list)) else [value]
        found = [RunPath(option_name(param), Path(v), param.type) for v in values if v is not None]
        (inputs if role == "input" else outputs).extend(found)
    return inputs, outputs


def _read_paths(inputs: list[RunPath]) -> list[Path]:
    """Every file (or folder) the inputs name; a folder with known ``reads``: those files."""
    paths: list[Path] = []
    for item in inputs:
        paths.append(item.path)
        if isinstance(item.kind, InputPath) and item.folder and item.kind.reads is not None:
            paths += [item.path / name for name in item.kind.reads()]
    return paths


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies inside ``folder`` once symlinks are resolved."""
    return Path(os.path.realpath(folder)) in Path(os.path.realpath(path)).parents


def guard_outputs(command: click.Command, params: Params) -> list[RunPath]:
    """Refuse every output of this run that would overwrite an input; return the outputs.

    Raises:
        FeatltError: naming the output's option, the input and the fix.
    """
    inputs, outputs = run_paths(command, params)
    read = _read_paths(inputs)
    whole_folders = [i for i in inputs if i.folder and getattr(i.kind, "reads", None) is None]
    for out in outputs:
        refuse_output_onto_inputs(out.path, read, out.option)
        if out.folder:
            _check_folder(out, read, params)
            continue
        for folder in whole_folders:
            if out.path.exists() and _inside(out.path, folder.path):
                raise FeatltError(
                    f"{out.option} {out.path}: is a file inside {folder.option} {folder.path}, "
                    "which this run reads; writing it would change the input; choose an output "
                    "path outside that folder"
                )
        if out.path.is_dir():
            example = getattr(out.kind, "example", "output")
            raise FeatltError(
                f"{out.option} {out.path}: is a folder, but this writes one file; pass a file "
                f"path such as {out.path / example}"
            )
    for index, first in enumerate(outputs):
        for second in outputs[index + 1:]:
            if same_file(first.path, second.path):
                raise FeatltError(
                    f"{first.option} {first.path} and {second.option} {second.path}: the same "
                    "file, so one would overwrite the other; choose two different paths"
                )
    return outputs


def _check_folder(out: RunPath, read: list[Path], params: Params) -> None:
    """An output folder: not a file, and no input at a name the command writes inside it."""
    if out.path.exists() and not out.path.is_dir():
        raise FeatltError(
            f"{out.option} {out.path}: is a file, but this writes a folder of files; pass a "
            "folder path (a new one is created)"
        )
    if not out.path.is_dir():
        return
    writes = getattr(out.kind, "writes", None)
    for pattern in writes(params) if writes is not None else ():
        for written in sorted(out.path.glob(pattern)):
            refuse_output_onto_inputs(out.path, read, out.option, written=written)


@contextmanager
def output_locks(outputs: list[RunPath]) -> Iterator[None]:
    """Hold the lock of every output that takes one for the block (:mod:`featlt.output_lock`)."""
    from featlt.output_lock import output_lock

    with ExitStack() as stack:
        for out in outputs:
            if getattr(out.kind, "lock", False):
                stack.enter_context(output_lock(out.path, out.option, folder=out.folder))
        yield
