"""featlt.rank's modules have one owner each: the data model is a leaf, recommend and
validate_rows import neither each other nor ranking (ranking, which runs them, imports them one
way), the featlt.rank import graph has no cycle, and no import hides inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import featlt.rank

RANK = Path(featlt.rank.__file__).parent
#: modules that import neither one another nor ranking (each imports the data model instead)
STEPS = {"recommend", "validate_rows"}


def rank_imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported featlt.rank module, line, inside a function) for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(child) for child in ast.walk(node) if child is not node)
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = ([node.module] if node.module != "featlt.rank" else
                     [f"featlt.rank.{alias.name}" for alias in node.names])
        elif isinstance(node, ast.ImportFrom) and node.level > 0:  # relative: within featlt.rank
            names = [f"featlt.rank.{node.module or ''}".rstrip(".")]
        for name in names:
            if name.startswith("featlt.rank."):
                found.append((name.split(".")[2], node.lineno, id(node) in in_function))
    return found


def modules() -> dict[str, Path]:
    return {path.stem: path for path in sorted(RANK.glob("*.py")) if path.stem != "__init__"}


def test_the_parser_sees_top_level_function_level_and_relative_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import featlt.rank.model\nfrom featlt.rank import recommend\n"
                      "from .paired import x\nimport numpy\n"
                      "def f():\n    from featlt.rank.ranking import rank_files\n")
    assert rank_imports(sample) == [("model", 1, False), ("recommend", 2, False),
                                    ("paired", 3, False), ("ranking", 6, True)]


def test_the_data_model_is_a_leaf() -> None:
    assert "model" in modules()
    assert rank_imports(modules()["model"]) == [], \
        "featlt/rank/model.py must import no other featlt.rank module"


def test_recommend_and_validate_rows_import_neither_each_other_nor_ranking() -> None:
    found = {name: rank_imports(path) for name, path in modules().items() if name in STEPS}
    assert set(found) == STEPS
    crossing = [f"{name} imports {other} (line {line})" for name, imports in found.items()
                for other, line, _ in imports if other in (STEPS | {"ranking"}) - {name}]
    assert not crossing, crossing


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module -> modules it imports), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for other in sorted(graph.get(node, ())):
            if state.get(other) == 1:
                return [*path[path.index(other):], other]
            if other not in state and (found := visit(other)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finds_a_loop_and_passes_a_tree() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_rank_import_graph_has_no_cycle() -> None:
    graph = {name: {other for other, _, _ in rank_imports(path)}
             for name, path in modules().items()}
    assert cycle(graph) is None, f"import cycle in featlt.rank: {' -> '.join(cycle(graph))}"


def test_no_rank_module_imports_another_inside_a_function() -> None:
    """Function-level imports of featlt.rank modules would hide an import cycle."""
    hidden = [f"{name}.py:{line} imports featlt.rank.{other} inside a function"
              for name, path in modules().items()
              for other, line, inside in rank_imports(path) if inside]
    assert not hidden, hidden
