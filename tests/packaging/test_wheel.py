"""The wheel ships every package, its package data and every Lua script of
the source tree, found by the build backend, none listed by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.wheel import ROOT, build, contents_problems, expected_files, wheel_names


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built with the backend the test extra installs, so no download; CI's
    # wheel check builds it the users' way (an isolated build).
    return build(sys.executable, tmp_path_factory.mktemp("dist"), "--no-build-isolation")


def test_the_wheel_holds_every_package_module_and_lua_script(wheel: Path) -> None:
    names = wheel_names(wheel)
    assert contents_problems(names) == []
    for must in ("redroute/http/app.py", "redroute/cli/serve.py", "redroute/events/stream.py",
                 "redroute/checks/invariants.py", "redroute/lua/push_task.lua",
                 "redroute/lua/includes/base.lua", "redroute/http/wallboard.html"):
        assert must in names
    assert not any(n.startswith(("tests/", "benchmarks/", "lua/")) for n in names)


def test_the_wheel_declares_the_command_and_the_version(wheel: Path) -> None:
    import zipfile

    import redroute

    with zipfile.ZipFile(wheel) as z:
        info = next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
        assert "redroute = redroute.cli:main" in z.read(info).decode()
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    assert f"Version: {redroute.__version__}" in text
    assert "Requires-Python: >=3.11" in text


def test_the_contents_check_names_what_a_wheel_lacks_or_adds() -> None:
    names = expected_files() | {"redroute-0.1.0.dist-info/METADATA"}
    assert contents_problems(names) == []
    assert contents_problems(names - {"redroute/http/__init__.py"}) == [
        "missing from the wheel: redroute/http/__init__.py",
        "package redroute.http is not in the wheel",
    ]
    assert contents_problems(names - {"redroute/lua/includes/task.lua"}) == [
        "missing from the wheel: redroute/lua/includes/task.lua"]
    assert contents_problems(names | {"redroute/stale.py"}) == [
        "in the wheel, not in the source tree: redroute/stale.py"]
    assert contents_problems(names - {"redroute/http/wallboard.html"}) == [
        "missing from the wheel: redroute/http/wallboard.html"]


def test_an_editable_install_finds_lua_beside_src() -> None:
    from redroute.scripts import load_scripts, lua_folder

    assert Path(str(lua_folder())).resolve() == ROOT / "lua"
    assert set(load_scripts()) == {p.stem for p in (ROOT / "lua").glob("*.lua")}
