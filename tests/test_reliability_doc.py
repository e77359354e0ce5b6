"""docs/reliability.md lists every fault case that `make reliability` runs."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _reliability_cases() -> set[str]:
    cases = set()
    for path in sorted((REPO / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        module_marked = any(
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
            and "reliability" in ast.unparse(node.value)
            for node in tree.body
        )
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                marked = any("reliability" in ast.unparse(d) for d in node.decorator_list)
                if module_marked or marked:
                    cases.add(f"{path.name}::{node.name}")
    return cases


def test_every_fault_case_is_in_the_table() -> None:
    table = (REPO / "docs" / "reliability.md").read_text()
    cases = _reliability_cases()
    assert len(cases) >= 50
    assert sorted(case for case in cases if f"`{case}`" not in table) == []
