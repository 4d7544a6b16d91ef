"""The house rules between packages, checked on the source: who may import whom."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"carlinkd": ROOT / "carlinkd", "carlink_protocol": ROOT / "carlink_protocol",
           "carlink_cloud": ROOT / "carlink_cloud", "carlink_sim": ROOT / "sim",
           "carlink_demo": ROOT / "carlink_demo"}
OURS = set(FOLDERS)
# Which of our packages each package may import (itself always).
ALLOWED = {
    "carlink_protocol": set(),
    "carlinkd": {"carlink_protocol"},
    "carlink_cloud": {"carlink_protocol"},
    "carlink_sim": {"carlinkd", "carlink_protocol"},
    "carlink_demo": {"carlinkd", "carlink_protocol", "carlink_sim", "carlink_cloud"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of our packages that a module imports (absolute imports only)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & (OURS | {"sim"})


@pytest.mark.parametrize("package", sorted(FOLDERS))
def test_package_imports_only_what_its_role_allows(package: str) -> None:
    bad = {}
    for path in FOLDERS[package].rglob("*.py"):
        extra = imported_packages(path) - ALLOWED[package] - {package}
        if extra:
            bad[str(path.relative_to(ROOT))] = sorted(extra)
    assert not bad, f"{package} imports outside its role: {bad}"


def test_the_daemon_has_no_relative_import_out_of_its_package() -> None:
    for path in FOLDERS["carlinkd"].rglob("*.py"):
        depth = len(path.relative_to(FOLDERS["carlinkd"]).parts) - 1
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level <= depth + 1, f"{path}: relative import leaves carlinkd"


def test_no_top_level_sim_package_is_installed(tmp_path: Path) -> None:
    code = "import importlib.util as u; print(u.find_spec('sim') is None, " \
           "u.find_spec('carlink_sim') is not None)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["True", "True"]
