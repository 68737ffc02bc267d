"""Every script's header lists the arguments its body reads, by the numbers
the body reads them with (lua/README.md, "Arguments")."""

from __future__ import annotations

import re

import pytest

from redroute.scripts import lua_folder

_HEADER = re.compile(r"\A(?:--- @include[^\n]*\n)*--\[\[(.*?)\]\]\n(.*)\Z", re.DOTALL)
_INCLUDE = re.compile(r'^--- @include "([^"]+)"', re.MULTILINE)


def _scripts() -> list[str]:
    return sorted(e.name for e in lua_folder().iterdir() if e.name.endswith(".lua"))


def _includes_base(text: str) -> bool:
    """Whether the script includes base, directly or through a fragment."""
    todo, seen = _INCLUDE.findall(text), set()
    while todo:
        name = todo.pop().rpartition("/")[2]
        if name == "base":
            return True
        if name not in seen:
            seen.add(name)
            todo += _INCLUDE.findall((lua_folder() / "includes" / f"{name}.lua").read_text())
    return False


@pytest.mark.parametrize("name", _scripts())
def test_header_lists_the_arguments_the_body_reads(name):
    text = (lua_folder() / name).read_text()
    m = _HEADER.match(text)
    assert m, f"lua/{name} starts with no --[[ header ]]"
    header, body = m.groups()
    family = "A" if _includes_base(text) else "ARGV"
    other = "ARGV" if family == "A" else "A"
    number = re.compile(rf"(?<![\w.]){family}\[(\d+)\]")
    listed = {int(n) for n in number.findall(header)}
    read = {int(n) for n in number.findall(body)}
    if family == "A":
        assert "ARGV" not in body, f"lua/{name} reads ARGV: a script of base reads A[i] (ARGV[i + 2])"
    assert not re.search(rf"(?<![\w.]){other}\[\d+\]", header), f"lua/{name}: header numbers {other}[…]"
    assert read <= listed, f"lua/{name}: body reads {family}{sorted(read - listed)}, not in its header"
    for n in listed - read:
        line = next(x for x in header.splitlines() if f"{family}[{n}]" in x)
        assert "unused" in line, f"lua/{name}: header lists {family}[{n}], body never reads it"
    assert listed == set(range(1, len(listed) + 1)), f"lua/{name}: {family}[…] not numbered 1..n"
