"""The suite's own rules: every test says in one line the behaviour it shows."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _tests() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found = []
    for path in sorted(TESTS.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
                found.append((f"{path.relative_to(TESTS)}::{node.name}", node))
    return found


def test_every_test_has_a_docstring() -> None:
    """Each test function starts with a docstring saying the behaviour it checks."""
    tests = _tests()
    assert len(tests) > 100
    assert [] == [name for name, node in tests if not ast.get_docstring(node)]
