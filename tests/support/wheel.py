"""The wheel users install: how it is built and installed (the same two
commands in .ci/wheel_check.py and the Dockerfile), and what it must hold:
every module of every package under src/, the package data beside them
(the wallboard page), and every Lua script of lua/."""

from __future__ import annotations

import glob
import shlex
import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What the wheel ships from src/redroute: modules, and package data (the
# wallboard page, http/wallboard.html).
SHIPPED = (".py", ".html")

# Run from the repository root; {dist} is where the wheel goes. The Dockerfile
# has these lines with {dist} = /dist (tests/packaging/test_docker.py).
BUILD = "pip wheel --no-cache-dir --no-deps --wheel-dir {dist} ."
INSTALL = "pip install --no-cache-dir --constraint requirements.lock {dist}/redroute-*.whl"


def run_pip(command: str, python: str | Path, dist: Path, *extra: str, timeout: float = 600
            ) -> None:
    """One of the commands above, with `python -m pip` for `pip`, run from the
    repository root, its glob expanded as a shell would."""
    words = shlex.split(command.format(dist=dist))
    assert words[0] == "pip"
    args = []
    for w in words[1:]:
        matches = sorted(glob.glob(w)) if "*" in w else [w]
        assert matches, f"nothing matches {w}"
        args.extend(matches)
    subprocess.run([str(python), "-m", "pip", *args, *extra], cwd=ROOT, check=True,
                   timeout=timeout)


def expected_files(root: Path = ROOT) -> set[str]:
    """The wheel paths the source tree must ship: src/redroute/**.py (and
    .html) as redroute/**.py, lua/**.lua as redroute/lua/**.lua."""
    src = root / "src"
    out = {p.relative_to(src).as_posix() for p in (src / "redroute").rglob("*")
           if p.suffix in SHIPPED and "__pycache__" not in p.parts}
    out |= {"redroute/lua/" + p.relative_to(root / "lua").as_posix()
            for p in (root / "lua").rglob("*.lua")}
    return out


def packages(root: Path = ROOT) -> set[str]:
    """Every package under src/: a folder with an __init__.py."""
    src = root / "src"
    return {p.parent.relative_to(src).as_posix().replace("/", ".")
            for p in src.rglob("__init__.py") if "__pycache__" not in p.parts}


def contents_problems(names: set[str], root: Path = ROOT) -> list[str]:
    """What is wrong with a wheel holding these file names, in words."""
    code = {n for n in names if n.startswith("redroute/") and n.endswith((*SHIPPED, ".lua"))}
    problems = [f"missing from the wheel: {n}" for n in sorted(expected_files(root) - code)]
    problems += [f"in the wheel, not in the source tree: {n}"
                 for n in sorted(code - expected_files(root))]
    for pkg in sorted(packages(root)):
        if pkg.replace(".", "/") + "/__init__.py" not in names:
            problems.append(f"package {pkg} is not in the wheel")
    return problems


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def build(python: str | Path, dist: Path, *extra: str) -> Path:
    """The wheel, built by BUILD into dist."""
    run_pip(BUILD, python, dist, *extra)
    (wheel,) = dist.glob("redroute-*.whl")
    return wheel
