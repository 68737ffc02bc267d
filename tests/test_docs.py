"""Nothing in the repository cites a file that is not in it.

The project's documentation lives in docs/; code, tests and README cite it
there ("docs/design.md, invariant 3"). These tests fail when a file cites a
document kept outside the repository, a path that does not exist (a module
or test that moved), a test function that is gone, a relative link or an
anchor that leads nowhere, or an invariant that docs/design.md does not
define."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("src", "lua", "tests", "benchmarks", "docs")
TEXT_SUFFIXES = {".py", ".lua", ".md", ".toml", ".yml", ".yaml", ".txt", ".cfg"}
SKIP_PARTS = {"__pycache__", ".venv", ".git", ".hypothesis", "node_modules", "build", "dist"}
HERE = Path(__file__).resolve()
# Where tools write their output (gitignored): naming a file there is no citation.
OUTPUT_DIRS = ("benchmarks/results/",)

# Documents that live outside the repository (the product page and the
# shared contract and design notes), spelled so this file does not match.
OUTSIDE = [
    re.compile(r"\b" + "API" + r"\.md\b"),
    re.compile(r"\b" + "DESIGN" + r"\.md\b"),
    re.compile(r"(?<![\w.-])" + "spec" + r"/[\w.-]+"),
    re.compile(r"\bthe " + "spec" + r"\b", re.IGNORECASE),
]
# A path inside the repository, as code, tests and docs cite it.
REPO_PATH = re.compile(r"(?<![\w./-])((?:src|lua|tests|benchmarks|docs)/[\w./-]*\w\.(?:py|lua|md|png|json))"
                       r"(?:::(\w+))?")
# A file named in an inline code span of a Markdown page: `engine.py`,
# `checks/invariants.py`, `push_task.lua`.
CODE_SPAN = re.compile(r"`([^`\s]+)`")
FILE_NAME = re.compile(r"^[\w][\w./-]*\.(?:py|lua|md|toml|yml)$")
MD_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
INVARIANT_CITED = re.compile(r"\binvariants? (\d+)\b", re.IGNORECASE)
INVARIANT_HEADING = re.compile(r"^### Invariant (\d+): ", re.MULTILINE)


def repo_files() -> Iterator[Path]:
    """Every text file of the repository's own, this one excepted (it spells
    what it looks for)."""
    yield ROOT / "README.md"
    for top in SOURCES:
        for p in sorted((ROOT / top).rglob("*")):
            rel = p.relative_to(ROOT)
            if (p.is_file() and p.suffix in TEXT_SUFFIXES and p != HERE
                    and not SKIP_PARTS & set(rel.parts)):
                yield p


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def lines() -> Iterator[tuple[Path, str, str]]:
    """(file, "file:line", text) of every line of the repository's files."""
    for path in repo_files():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            yield path, f"{rel(path)}:{n}", line


def markdown_lines() -> Iterator[tuple[Path, str, str]]:
    """The same for the Markdown pages, outside their fenced code blocks."""
    for page in repo_files():
        if page.suffix == ".md":
            for n, line in enumerate(without_fences(page.read_text()).splitlines(), 1):
                yield page, f"{rel(page)}:{n}", line


def without_fences(text: str) -> str:
    """Markdown with its fenced code blocks blanked (line numbers kept)."""
    return re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), text,
                  flags=re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", without_fences(page.read_text()),
                                                  re.MULTILINE)}


def defines_test(path: Path, name: str) -> bool:
    return re.search(rf"^(?:async )?def {name}\(", path.read_text(), re.MULTILINE) is not None


ALL_FILES = [rel(p) for p in ROOT.rglob("*")
             if p.is_file() and not SKIP_PARTS & set(p.relative_to(ROOT).parts)]


def test_nothing_cites_a_document_kept_outside_the_repository():
    found = [f"{where}: {m.group(0)!r}" for _, where, line in lines() for pat in OUTSIDE
             for m in pat.finditer(line)]
    assert not found, "cite docs/ instead:\n" + "\n".join(found)


def test_every_repository_path_cited_exists():
    missing = []
    for _, where, line in lines():
        for m in REPO_PATH.finditer(line):
            target = ROOT / m.group(1)
            if m.group(1).startswith(OUTPUT_DIRS):
                continue
            if not target.exists():
                missing.append(f"{where}: {m.group(1)}")
            elif m.group(2) and not defines_test(target, m.group(2)):
                missing.append(f"{where}: {m.group(1)}::{m.group(2)} (no such test)")
    assert not missing, "\n".join(missing)


def test_every_file_a_page_names_in_code_exists():
    missing = []
    for _, where, line in markdown_lines():
        for m in CODE_SPAN.finditer(line):
            name = m.group(1).split("::")[0]
            if FILE_NAME.match(name) and not any(f == name or f.endswith("/" + name)
                                                 for f in ALL_FILES):
                missing.append(f"{where}: {name}")
    assert not missing, "\n".join(missing)


def test_every_relative_link_and_anchor_leads_somewhere():
    broken = []
    for page, where, line in markdown_lines():
        for m in MD_LINK.finditer(line):
            link = m.group(1)
            if re.match(r"^[a-z][a-z+.-]*:", link):
                continue  # http:, https:, mailto:
            target, _, anchor = link.partition("#")
            dest = (page.parent / target).resolve() if target else page
            if not dest.exists():
                broken.append(f"{where}: {link} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{where}: {link} (no such heading)")
    assert not broken, "\n".join(broken)


def test_every_invariant_cited_is_defined_in_docs_design():
    defined = {int(n) for n in INVARIANT_HEADING.findall((ROOT / "docs" / "design.md").read_text())}
    assert defined == set(range(1, len(defined) + 1)), f"invariants numbered {sorted(defined)}"
    cited = [(where, int(m.group(1))) for _, where, line in lines()
             for m in INVARIANT_CITED.finditer(line)]
    assert cited, "nothing cites an invariant by number: the pattern is wrong"
    undefined = [f"{where}: invariant {k}" for where, k in cited if k not in defined]
    assert not undefined, "\n".join(undefined)


def test_the_checker_checks_the_invariants_docs_design_numbers():
    checker = (ROOT / "src" / "redroute" / "checks" / "invariants.py").read_text()
    defined = {int(n) for n in INVARIANT_HEADING.findall((ROOT / "docs" / "design.md").read_text())}
    for k in defined:
        assert re.search(rf"^\s*(?:# )?{k}\. |[Ii]nvariant {k}\b", checker, re.MULTILINE), (
            f"docs/design.md defines invariant {k}; src/redroute/checks/invariants.py does not "
            "number it")


@pytest.mark.parametrize("pattern, text, found", [
    (REPO_PATH, "see tests/engine/test_push.py::test_x here", "tests/engine/test_push.py"),
    (REPO_PATH, "(docs/design.md, invariant 3)", "docs/design.md"),
    (REPO_PATH, "redroute/lua/push_task.lua", None),
    (INVARIANT_CITED, "DESIGN invariant 3: replaying", "3"),
    (OUTSIDE[0], "the endpoints of " + "API" + ".md", "API.md"),
    (OUTSIDE[2], "see " + "spec" + "/000_x.txt", "spec/000_x.txt"),
])
def test_the_patterns_find_what_they_are_for(pattern: re.Pattern[str], text: str,
                                             found: str | None):
    m = pattern.search(text)
    assert (m.group(1) if m and m.groups() else m.group(0) if m else None) == found


def test_slugs_are_githubs():
    assert slug("Invariant 3: events") == "invariant-3-events"
    assert slug("GET /v1/events (Server-Sent Events)") == "get-v1events-server-sent-events"
    assert slug("`redroute check`") == "redroute-check"
