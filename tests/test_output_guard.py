"""Issue 16, part 1: no output of any command lands on one of its inputs.

Every path parameter of every command has a role (input, output file, output folder), and one check
(:mod:`featlt.cli.output_guard`, :func:`featlt.runtime.refuse_output_onto_inputs`) runs before any
command body. The walk below fails when a command grows a path parameter without a role, or an
output option without a case here; each case runs for real with the output given as the input's
path, a symlink to it and a hard link of it, and asserts exit 2, the message and the input
unchanged byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner, Result

from featlt.cli import main
from featlt.cli.option_types import path_role
from featlt.runtime import same_file

LINKS = ("path", "symlink", "hardlink")


def _run(*args: object) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def commands(group: click.Group = main, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    """Every command of the tree, by its full name (``weights convert``)."""
    for name, command in sorted(group.commands.items()):
        full = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from commands(command, f"{full} ")
        else:
            yield full, command


def output_options(command: click.Command) -> list[str]:
    """The long names of a command's output parameters."""
    return [max(p.opts, key=len) for p in command.params if path_role(p) == "output"]


@dataclass
class Inputs:
    """Fresh copies of every input kind, in the test's folder."""

    folder: Path
    store: Path  # a complete feature store
    head: Path  # a fitted head folder (head.json + head.safetensors)
    data: Path  # an npz dataset
    weights: Path  # a file standing for a .pth checkpoint (never read: refused before)


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    from featlt.data.synthetic import write_synthetic_store

    folder = tmp_path_factory.mktemp("originals")
    store = write_synthetic_store(folder / "A.h5", n_classes=3, n_max=20, dim=4,
                                  n_test_per_class=5)
    fitted = _run("fit-classifier", store, "--head", "ncm_l2", "--bootstrap", "0", "-o",
                  folder / "heads")
    assert fitted.exit_code == 0, fitted.output
    rng = np.random.default_rng(0)
    np.savez(folder / "data.npz", x_train=rng.integers(0, 255, (12, 8, 8, 3), dtype=np.uint8),
             y_train=np.arange(12) % 3, x_test=rng.integers(0, 255, (6, 8, 8, 3), dtype=np.uint8),
             y_test=np.arange(6) % 3)
    (folder / "w.pth").write_bytes(b"not really a checkpoint")
    return Inputs(folder, store, folder / "heads" / "ncm_l2", folder / "data.npz",
                  folder / "w.pth")


@pytest.fixture
def inputs(originals: Inputs, tmp_path: Path) -> Inputs:
    folder = tmp_path / "in"
    shutil.copytree(originals.folder, folder)
    return Inputs(folder, folder / "A.h5", folder / "heads" / "ncm_l2", folder / "data.npz",
                  folder / "w.pth")


def _aim(target: Path, link: str, where: Path) -> Path:
    """The output path to give: ``target`` itself, a symlink to it or a hard link of it."""
    if link == "path":
        return target
    aimed = where / f"{link}-{target.name}"
    if link == "symlink":
        aimed.symlink_to(target)
    else:
        os.link(target, aimed)
    return aimed


@dataclass(frozen=True)
class Case:
    """One output option of one command aimed at one of its inputs."""

    command: str
    option: str
    target: Callable[[Inputs], Path]  # the input the output lands on
    args: Callable[[Inputs, Path], list[object]]  # the command line, given the output path
    message: str = "is also an input of this run"


PIXELS = ["--model", "pixels_8", "--workers", "0", "--threads", "1"]
CASES = [
    Case("extract", "--output", lambda i: i.data,
         lambda i, out: ["extract", *PIXELS, "--data", f"npz:{i.data}", "-o", out, "--overwrite"]),
    Case("combine", "--output", lambda i: i.store,
         lambda i, out: ["combine", i.store, i.store, "-o", out, "--overwrite"]),
    Case("evaluate-separability", "--output", lambda i: i.store,
         lambda i, out: ["evaluate-separability", i.store, "-o", out]),
    Case("evaluate-separability", "--plots", lambda i: i.store,
         lambda i, out: ["evaluate-separability", i.store, "--plots", out]),
    Case("fit-classifier", "--output", lambda i: i.store,
         lambda i, out: ["fit-classifier", i.store, "-o", out]),
    Case("predict", "--output", lambda i: i.store,
         lambda i, out: ["predict", i.head, i.store, "-o", out]),
    Case("predict", "--output", lambda i: i.head / "head.json",
         lambda i, out: ["predict", i.head, i.store, "-o", out]),
    Case("rank", "--output", lambda i: i.store, lambda i, out: ["rank", i.store, "-o", out]),
    Case("rank", "--output", lambda i: i.store,
         lambda i, out: ["rank", i.store, "--full", "-o", out]),
    Case("rank", "--plot", lambda i: i.store, lambda i, out: ["rank", i.store, "--plot", out]),
    Case("rank", "--json-output", lambda i: i.store,
         lambda i, out: ["rank", i.store, "--json-output", out]),
    Case("rank", "--heads-dir", lambda i: i.store,
         lambda i, out: ["rank", i.store, "--full", "--heads-dir", out]),
    Case("report", "--output", lambda i: i.store, lambda i, out: ["report", i.store, "-o", out]),
    Case("weights convert", "--output", lambda i: i.weights,
         lambda i, out: ["weights", "convert", i.weights, "--model", "resnet18", "-o", out]),
    # the demo reads no file of the user's: its folder given as an existing file is refused
    Case("demo", "--out-dir", lambda i: i.store, lambda i, out: ["demo", "--quick", "-o", out],
         "is a file, but this writes a folder"),
]


def test_every_path_parameter_has_a_role() -> None:
    unmarked = [f"{name} {param.name}" for name, command in commands()
                for param in command.params
                if isinstance(param.type, click.Path) and path_role(param) not in
                ("input", "output")]
    assert unmarked == [], (
        "path parameters neither InputPath, OutputPath nor OutputFolder "
        f"(featlt.cli.option_types): {unmarked}")


def test_every_output_option_of_every_command_has_a_case() -> None:
    declared = {(name, option) for name, command in commands()
                for option in output_options(command)}
    covered = {(case.command, case.option) for case in CASES}
    assert declared == covered, (
        f"output options without a case here: {sorted(declared - covered)}; "
        f"cases of options that are gone: {sorted(covered - declared)}")


@pytest.mark.parametrize("link", LINKS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.command}{c.option}")
def test_an_output_onto_an_input_is_refused_before_anything_is_written(
    case: Case, link: str, inputs: Inputs, tmp_path: Path
) -> None:
    target = case.target(inputs)
    before = _digest(target)
    output = _aim(target, link, tmp_path)
    listing = _listing(tmp_path)
    result = _run(*case.args(inputs, output))
    assert result.exit_code == 2, result.output
    assert case.message in result.output, result.output
    assert _digest(target) == before
    assert _listing(tmp_path) == listing  # no lock, temporary or new folder left behind


@dataclass(frozen=True)
class FolderCase:
    """An output folder holding an input at a name the command writes there."""

    option: str
    written: Callable[[str], str]  # the name inside the folder, from the input's stem
    args: Callable[[list[Path], Path], list[object]]  # the command line, given inputs, folder


FOLDER_CASES = [
    FolderCase("fit-classifier -o", lambda stem: "summary.json",
               lambda files, out: ["fit-classifier", files[-1], "-o", out]),
    FolderCase("rank --heads-dir", lambda stem: f"{stem}-0123abcd/summary.json",
               lambda files, out: ["rank", *files, "--full", "--heads-dir", out]),
    FolderCase("rank --heads-dir", lambda stem: f"{stem}-0123abcd/ncm_l2/head.json",
               lambda files, out: ["rank", *files, "--full", "--heads-dir", out]),
    FolderCase("evaluate-separability --plots", lambda stem: f"{stem}_per_class.png",
               lambda files, out: ["evaluate-separability", *files, "--plots", out]),
]


@pytest.mark.parametrize("link", LINKS)
@pytest.mark.parametrize("case", FOLDER_CASES, ids=lambda c: c.option.replace(" ", ""))
def test_an_output_folder_holding_an_input_where_it_writes_is_refused(
    case: FolderCase, link: str, inputs: Inputs, tmp_path: Path
) -> None:
    folder = tmp_path / "out"
    inside = folder / case.written(inputs.store.stem)
    inside.parent.mkdir(parents=True)
    if link == "path":  # the input itself lies there (a second feature file)
        shutil.copy(inputs.store, inside)
        files, target = [inputs.store, inside], inside
    else:
        (inside.symlink_to if link == "symlink" else inside.hardlink_to)(inputs.store)
        files, target = [inputs.store], inputs.store
    before, listing = _digest(target), _listing(tmp_path)
    result = _run(*case.args(files, folder))
    assert result.exit_code == 2, result.output
    assert f"would replace {inside}, which is also an input of this run" in result.output
    assert _digest(target) == before and _listing(tmp_path) == listing


def test_an_input_elsewhere_in_an_output_folder_is_no_collision(inputs: Inputs) -> None:
    """fit-classifier -o the folder its feature file lies in writes beside it: allowed."""
    result = _run("fit-classifier", inputs.store, "--head", "ncm_l2", "--bootstrap", "0", "-o",
                  inputs.folder)
    assert result.exit_code == 0, result.output
    assert (inputs.folder / "ncm_l2" / "head.json").is_file()
    assert not list(inputs.folder.glob("*.lock")) and not (inputs.folder / ".featlt.lock").exists()


def test_two_outputs_of_one_run_that_are_one_file_are_refused(inputs: Inputs,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    result = _run("rank", inputs.store, "-o", out, "--plot", _aim_new(out, tmp_path))
    assert result.exit_code == 2 and "the same file" in result.output, result.output
    assert not out.exists()


def _aim_new(path: Path, where: Path) -> Path:
    """A symlink to a file that does not exist yet (the same output under another name)."""
    link = where / "link-to-r.csv"
    link.symlink_to(path)
    return link


def test_same_file_compares_paths_symlinks_and_hard_links(tmp_path: Path) -> None:
    first = tmp_path / "a"
    first.write_text("x")
    (tmp_path / "s").symlink_to(first)
    os.link(first, tmp_path / "h")
    (tmp_path / "c").write_text("x")
    assert same_file(first, tmp_path / "s") and same_file(first, tmp_path / "h")
    assert same_file(tmp_path / "x" / ".." / "a", first)
    assert not same_file(first, tmp_path / "c") and not same_file(first, tmp_path / "new")
