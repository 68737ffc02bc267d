"""How the repository's parts may depend on one another: neither tests/
nor benchmarks/ imports the other (what both need is localredis/), the
benchmark suite never imports its investigation tools, and the package
never imports the test, benchmark or local-Redis code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE_MODULES = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
TOOLS = {p.stem for p in (ROOT / "benchmarks" / "tools").glob("*.py")}


def imports(path: Path) -> set[str]:
    """The top-level names of every module path imports."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def files(*parts: str) -> list[Path]:
    return sorted((ROOT.joinpath(*parts)).rglob("*.py"))


@pytest.mark.parametrize("path", files("benchmarks"), ids=lambda p: str(p.relative_to(ROOT)))
def test_benchmarks_do_not_import_the_tests(path):
    assert "tests" not in imports(path)


@pytest.mark.parametrize("path", [p for p in files("benchmarks") if p.parent.name != "tools"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_benchmark_suite_does_not_import_its_tools(path):
    assert not imports(path) & TOOLS


def test_tests_do_not_import_the_benchmarks():
    for path in files("tests"):
        assert not imports(path) & (SUITE_MODULES | TOOLS | {"benchmarks"}), path


def test_the_package_imports_no_test_benchmark_or_local_redis_code():
    for path in files("src"):
        assert not imports(path) & {"tests", "benchmarks", "localredis"}, path
