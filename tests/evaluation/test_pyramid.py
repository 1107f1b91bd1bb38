"""The evaluation modules import each other without a cycle (pyramid.py is the shared home)."""

from __future__ import annotations

import ast
from pathlib import Path

import ohem_tune.evaluation as evaluation

PACKAGE = "ohem_tune.evaluation"


def _imports(path: Path) -> set[str]:
    """Sibling modules of ohem_tune.evaluation imported by the file (TYPE_CHECKING ones too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            out.add(node.module.removeprefix(PACKAGE).lstrip(".").split(".")[0])
    return out - {""}


def test_no_import_cycle_between_evaluation_modules():
    root = Path(evaluation.__file__).parent
    graph = {p.stem: _imports(p) for p in root.glob("*.py") if p.stem != "__init__"}
    assert "pyramid" in graph["inference"] and "pyramid" in graph["iterative"]
    assert "inference" not in graph["iterative"]
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != "open", f"import cycle: {' -> '.join([*path, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [])
