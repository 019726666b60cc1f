"""The package layering of docs/architecture.md, enforced on every import (inside functions too).

Each layer lists the featlt packages its modules may import; a module of a lower layer that
imports a higher one fails here with the file, the line and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BASE = {"featlt", "featlt.errors", "featlt.runtime", "featlt.file_hash", "featlt.progress",
        "featlt.output_lock"}
STORE = BASE | {"featlt.store"}
DATA = STORE | {"featlt.data"}
COMBINE = DATA | {"featlt.combine"}
EVALUATION = DATA | {"featlt.evaluation"}
CLUSTER = EVALUATION | {"featlt.cluster"}
EXTRACTORS = BASE | {"featlt.extractors"}
EXTRACT = CLUSTER | EXTRACTORS | {"featlt.extract"}
SEPARABILITY = CLUSTER | {"featlt.separability"}
HEADS = CLUSTER | {"featlt.heads"}
PREDICT = EXTRACT | HEADS | {"featlt.predict"}
RANK = PREDICT | SEPARABILITY | COMBINE | {"featlt.rank"}
REPORT = RANK | {"featlt.report"}
DEMO = REPORT | {"featlt.demo"}
CLI = DEMO | {"featlt.cli"}

#: layer (the package a module belongs to) -> the featlt packages it may import
ALLOWED: dict[str, set[str]] = {
    "featlt": BASE, "featlt.errors": BASE, "featlt.runtime": BASE, "featlt.file_hash": BASE,
    "featlt.progress": BASE, "featlt.output_lock": BASE,
    "featlt.store": STORE, "featlt.data": DATA, "featlt.combine": COMBINE,
    "featlt.evaluation": EVALUATION,
    "featlt.cluster": CLUSTER, "featlt.extractors": EXTRACTORS, "featlt.extract": EXTRACT,
    "featlt.separability": SEPARABILITY, "featlt.heads": HEADS, "featlt.predict": PREDICT,
    "featlt.rank": RANK, "featlt.report": REPORT, "featlt.demo": DEMO, "featlt.cli": CLI,
    "featlt.__main__": CLI,
}


def module_name(path: Path) -> str:
    """The dotted name a source file is installed as (extractors/ is featlt.extractors)."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "extractors":
        parts = ["featlt", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str:
    """The longest key of :data:`ALLOWED` that ``module`` is (or lies inside)."""
    matches = [k for k in ALLOWED if module == k or module.startswith(k + ".")]
    if not matches:
        raise KeyError(f"{module}: belongs to no layer; add its package to ALLOWED and the docs")
    return max(matches, key=len)


def featlt_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of featlt in the file, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "featlt"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "featlt":  # from featlt import x: x may be a subpackage
                found += [(node.lineno, f"featlt.{a.name}") for a in node.names
                          if a.name != "__version__"]
            elif node.module.split(".")[0] == "featlt":
                found.append((node.lineno, node.module))
    return found


SOURCES = sorted([*(ROOT / "featlt").rglob("*.py"), *(ROOT / "extractors").rglob("*.py")])


def test_every_module_has_a_layer() -> None:
    for path in SOURCES:
        layer_of(module_name(path))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_a_higher_layer(path: Path) -> None:
    allowed = ALLOWED[layer_of(module_name(path))]
    bad = [f"{path.relative_to(ROOT)}:{line} imports {mod}"
           for line, mod in featlt_imports(path) if layer_of(mod) not in allowed]
    assert not bad, "lower layer imports a higher one:\n" + "\n".join(bad)


def test_the_check_catches_an_import_inside_a_function(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from featlt.heads.registry import make_head\n")
    imports = featlt_imports(source)
    assert imports == [(2, "featlt.heads.registry")]
    assert layer_of(imports[0][1]) not in ALLOWED["featlt.store"]
