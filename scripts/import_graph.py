#!/usr/bin/env python3
"""Print which of our top-level packages import which (absolute and relative imports, from the
source with ast), and whether the graph has a cycle. Usage: scripts/import_graph.py [ROOT]"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

FOLDERS = {"carlinkd": "carlinkd", "carlink_protocol": "carlink_protocol",
           "carlink_cloud": "carlink_cloud", "carlink_sim": "sim", "carlink_demo": "carlink_demo"}
ALIASES = {"sim": "carlink_sim"}  # the simulator's import name before it got its own


def package_of(root: Path, path: Path) -> str:
    """The package a source file belongs to (sim/cloud counts as the backend)."""
    rel = path.relative_to(root).parts
    if rel[0] == "sim" and len(rel) > 1 and rel[1] == "cloud":
        return "carlink_cloud"
    if rel[0] == "carlinkd" and rel[-1].startswith("demo"):
        return "carlink_demo"
    return next(k for k, v in FOLDERS.items() if v == rel[0])


def edges(root: Path) -> dict[str, set[str]]:
    """package -> packages it imports."""
    graph: dict[str, set[str]] = {k: set() for k in FOLDERS}
    for folder in set(FOLDERS.values()):
        for path in (root / folder).rglob("*.py"):
            src = package_of(root, path)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = ALIASES.get(name.split(".")[0], name.split(".")[0])
                    if name.startswith("sim.cloud"):
                        top = "carlink_cloud"
                    if name.startswith("carlinkd.demo"):
                        top = "carlink_demo"
                    if top in FOLDERS and top != src:
                        graph[src].add(top)
    return graph


def has_cycle(graph: dict[str, set[str]]) -> bool:
    """Whether the package graph has a cycle (depth-first search)."""
    state: dict[str, int] = {}

    def visit(n: str) -> bool:
        state[n] = 1
        for m in graph[n]:
            if state.get(m) == 1 or (m not in state and visit(m)):
                return True
        state[n] = 2
        return False

    return any(n not in state and visit(n) for n in graph)


def main() -> int:
    """Print the graph of the tree given (default: this checkout)."""
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    graph = edges(root)
    for pkg in FOLDERS:
        print(f"{pkg:17} -> {', '.join(sorted(graph[pkg])) or '(none of ours)'}")
    print("cycle:", "yes" if has_cycle(graph) else "no")
    return 0


if __name__ == "__main__":
    sys.exit(main())
