"""The folder layout is the architecture: the library's domain packages import only lower layers (no upward import,
no circle), the library imports no Dagster, and the Dagster glue's modules import each other without a circle."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

LAYERS: list[set[str]] = [
    {"labels", "sample_rate", "home", "cron", "disk", "folders", "processes", "heap"},
    {"loaded_models"},
    {"encoders", "store"},
    {"profiles"},
    {"settings"},
    {"ingest"},
    {"episodes", "evaluation"},
    {"features", "prosody"},
    {"asr", "models"},
    {"fusion"},
    {"judge"},
]
"""The domains of ``emojudge_models`` from the bottom up: a domain may import only domains of lower layers."""
RANK = {domain: rank for rank, layer in enumerate(LAYERS) for domain in layer}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _domain(path: Path) -> str:
    parts = path.relative_to(REPO / "emojudge_models").parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def test_every_library_domain_has_a_layer() -> None:
    domains = {_domain(p) for p in (REPO / "emojudge_models").rglob("*.py")} - {"__init__"}
    assert sorted(domains - set(RANK)) == []


def test_library_domains_import_only_lower_layers_and_no_dagster() -> None:
    upward, dagster = [], []
    for path in sorted((REPO / "emojudge_models").rglob("*.py")):
        here = _domain(path)
        for module in _imports(path):
            if module.split(".")[0] in ("dagster", "emojudge_pipeline"):
                dagster.append(f"{path.relative_to(REPO)} imports {module}")
            if not module.startswith("emojudge_models."):
                continue
            there = module.split(".")[1]
            if there != here and there in RANK and RANK[there] >= RANK.get(here, -1):
                upward.append(f"{path.relative_to(REPO)} ({here}) imports {module} ({there})")
    assert upward == []
    assert dagster == []


def test_pipeline_modules_import_each_other_without_a_circle() -> None:
    root = REPO / "emojudge_pipeline"
    names = {
        p: ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__") for p in root.rglob("*.py")
    }
    graph: dict[str, set[str]] = defaultdict(set)
    for path, name in names.items():
        graph[name] = {m for m in _imports(path) if m in names.values() and m != name}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == target or (nxt not in seen and (seen.add(nxt) or reaches(nxt, target, seen))):
                return True
        return False

    circles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if reaches(b, a, set()))
    assert circles == []
