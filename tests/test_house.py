"""The house rules a reader relies on: every package is in docs/architecture.md's "who owns what", and
tests share helpers through tests/support, never through each other or through private names."""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

from tests.support.config import ROOT

PACKAGES = ("proxy", "memory", "worker", "memoire", "stack", "migrations")
OURS = (*PACKAGES, "tests")


def test_every_package_has_a_row_in_who_owns_what() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = doc[doc.index("## Who owns what") :].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `([\w/]+/)`", table, re.M))
    packages = {
        f"{init.parent.relative_to(ROOT).as_posix()}/"
        for p in PACKAGES
        for init in (ROOT / p).rglob("__init__.py")
    }
    assert packages - rows == set(), "packages missing from docs/architecture.md"
    assert rows - packages - {"tests/"} == set(), "rows for packages that are gone"


def _imports(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in OURS
        for alias in node.names
    ]


def test_tests_import_no_private_name_and_no_other_test_module() -> None:
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for module, name in _imports(path):
            last = module.rsplit(".", 1)[-1]
            if name.startswith("_") or last.startswith("_"):
                found.append(f"{path.relative_to(ROOT)}: {module}.{name} is private")
            if module.startswith("tests.") and not module.startswith("tests.support"):
                found.append(f"{path.relative_to(ROOT)}: {module} is not tests/support")
    assert found == []


def _runnable(module: str) -> bool:
    """A module file, or a package with a ``__main__``."""
    path = ROOT / module.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__main__.py").exists()


def test_every_module_a_test_or_bench_runs_with_python_m_exists() -> None:
    """A process started as ``[python, "-m", module, …]`` must find its module after a package moves."""
    missing = []
    for path in sorted([*(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.List):
                continue
            items = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            for flag, module in itertools.pairwise(items):
                ours = isinstance(module, str) and module.split(".")[0] in (*OURS, "bench")
                if flag == "-m" and ours and not _runnable(str(module)):
                    missing.append(f"{path.relative_to(ROOT)}: -m {module}")
    assert missing == []
