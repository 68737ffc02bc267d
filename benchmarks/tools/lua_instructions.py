"""Instructions per script call, counted by callgrind: a script's cost that
does not move with the machine's load.

Timings on a shared 2-core machine swing by 2x from run to run; the number
of instructions redis-server executes for a call does not. This starts a
private redis-server under `valgrind --tool=callgrind`, prepares each
operation of lua_whatif.OPS on a fresh tenant, zeroes the counters, runs the
calls (pipelined) and reads the total back from a dump. The count covers all
of redis-server's work for the call (reading the request, the script, the
reply), as EVALSHA of `return 1` shows.

  python benchmarks/tools/lua_instructions.py                 the working tree
  python benchmarks/tools/lua_instructions.py --ref HEAD~3    also lua/ and the
                                                        loader of a git ref
  python benchmarks/tools/lua_instructions.py --variants      lua_whatif's variants
  python benchmarks/tools/lua_instructions.py --evalsha       by EVALSHA throughout
  python benchmarks/tools/lua_instructions.py --fixed         a call's fixed cost:
                     also a lifecycle's scripts' begin_call alone, and with
                     run() of an empty body, as functions of the library

Calls are FCALLs of the function library, as the Engine makes them, where
the loader (of the working tree or the ref) composes one
(redroute.scripts.library); EVALSHA otherwise, and for lua_whatif's
variants, which are script sources.

Needs valgrind (callgrind_control) and redis-server on PATH; slow (~50x), so
K is small. Not part of run.py.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis as syncredis
import redis.asyncio as aioredis

from redroute.scripts import Script, library, load_scripts

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the suite's modules
import lua_whatif  # noqa: E402
from harness import ROOT, free_port, pipelined  # noqa: E402

_GC = ("luaC_step", "luaC_fullgc")


class Callgrind:
    """redis-server under callgrind, on a free port (never 6379)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="redroute-callgrind-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.dir}/cg.%p",
             "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                if syncredis.Redis(port=self.port, socket_connect_timeout=0.5).ping():
                    return
            except syncredis.ConnectionError:
                time.sleep(0.1)
        self.stop()
        sys.exit("redis-server did not start under valgrind")

    def control(self, flag: str) -> None:
        subprocess.run(["callgrind_control", flag, str(self.proc.pid)], check=True,
                       capture_output=True)

    def counted(self) -> int:
        """Instructions since the last zero: dumps, reads the newest dump."""
        return self.counted_gc()[0]

    def counted_gc(self) -> tuple[int, int]:
        """Instructions since the last zero, and those of them spent in Lua's
        garbage collector (the inclusive cost of every call of luaC_step or
        luaC_fullgc): dumps, reads the newest dump. The collector's share
        moves by a few thousand instructions per call from run to run (when
        a cycle ends), so a small change is compared without it."""
        self.control("-d")
        newest = max(glob.glob(f"{self.dir}/cg.{self.proc.pid}.*"), key=os.path.getmtime)
        total, gc, names, fn, cfn, call = None, 0, {}, "", "", False
        with open(newest) as f:
            for line in f:
                if line.startswith("summary:"):
                    total = int(line.split()[1])
                elif line.startswith(("fn=(", "cfn=(")):
                    ident, _, name = line.rstrip("\n").partition("(")[2].partition(")")
                    name = name.strip()
                    if name:
                        names[ident] = name
                    if line[0] == "f":
                        fn = names.get(ident, "")
                    else:
                        cfn = names.get(ident, "")
                elif line.startswith("calls="):
                    call = True
                    continue
                elif call and cfn in _GC and fn not in _GC:
                    gc += int(line.split()[1])
                call = False
        if total is None:
            raise RuntimeError(f"no summary in {newest}")
        return total, gc

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


Scripts = tuple[dict[str, Script], Any]  # the scripts, and their library or None


def scripts_at(ref: str) -> Scripts:
    """The scripts as a git ref had them: its lua/, through its own loader,
    with the function library that loader composes (None before there
    was one)."""
    tmp = Path(tempfile.mkdtemp(prefix="redroute-ref-"))
    try:
        archive = subprocess.run(["git", "-C", str(ROOT.parent), "archive", ref, "lua",
                                  "src/redroute/scripts.py"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
        spec = importlib.util.spec_from_file_location("redroute_scripts_at_ref",
                                                      tmp / "src/redroute/scripts.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        scripts = module.load_scripts(tmp / "lua")
        return scripts, module.library(scripts) if hasattr(module, "library") else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def count(cg: Callgrind, redis: aioredis.Redis, scripts: dict[str, Script], script: str,
                source: str, setup: lua_whatif.Setup, k: int, lib: Any = None) -> tuple[float, float]:
    """Instructions per call of script (source: as composed, or a variant
    of it), by FCALL of lib's function when a library is given, with and
    without Lua's garbage collector."""
    await redis.flushall()
    await redis.function_flush()
    for s in scripts.values():
        await redis.script_load(s.source)
    tenant = lua_whatif.Tenant(redis, scripts, "cg")
    calls = await setup(tenant, k)
    if lib is not None:
        await redis.function_load(lib.code)
        function = lib.functions[script]

        def add(p: Any, a: list[Any]) -> None:
            p.fcall(function, 1, tenant.prefix, lua_whatif.MAXLEN, lua_whatif.RETENTION, *a)
    else:
        variant = Script(script, source, hashlib.sha1(source.encode()).hexdigest())
        await redis.script_load(source)

        def add(p: Any, a: list[Any]) -> None:
            tenant.add(p, variant, *a)
    cg.control("-z")
    await pipelined(redis, calls, add, 32, 1)
    total, gc = cg.counted_gc()
    return total / len(calls), (total - gc) / len(calls)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", help="also count the scripts of this git ref")
    ap.add_argument("--variants", action="store_true", help="also lua_whatif's what-if variants")
    ap.add_argument("-k", type=int, default=200, help="calls per count (default 200)")
    ap.add_argument("--evalsha", action="store_true", help="call every script by EVALSHA")
    ap.add_argument("--fixed", action="store_true",
                    help="also the begin_call of push, accept and close alone, and with run() of an empty body")
    args = ap.parse_args()
    here = load_scripts()
    sets: dict[str, Scripts] = {"working tree": (here, library(here))}
    if args.ref:
        sets = {args.ref: scripts_at(args.ref), **sets}
    if args.evalsha:
        sets = {name: (scripts, None) for name, (scripts, _) in sets.items()}
    cg = Callgrind()
    redis = aioredis.from_url(f"redis://127.0.0.1:{cg.port}", decode_responses=True)
    try:
        here_set = sets["working tree"]
        noop = here_set[0]["noop"].source
        base, base_nogc = await count(cg, redis, here_set[0], 'noop', noop, _noop, args.k, here_set[1])
        print(f"thousands of instructions per call (K={args.k}), with GC / GC excluded; "
              + ", ".join(f"{name}: {'FCALL' if lib else 'EVALSHA'}" for name, (_, lib) in sets.items())
              + f"; no-op: {base / 1e3:.0f}k / {base_nogc / 1e3:.0f}k")
        if args.fixed:
            for script in FIXED:
                for part, body in (("begin_call", "return 1"), ("begin_call + run()", "return run(function() return 1 end)")):
                    cells = []
                    for name, (_, lib) in sets.items():
                        if lib is None:
                            continue
                        n, nogc = await count_fixed(cg, redis, lib, script, body, args.k)
                        cells.append(f"{name} {n / 1e3:.0f}k / {nogc / 1e3:.0f}k")
                    print(f"  {part + ' of ' + script:38s} " + " | ".join(cells), flush=True)
        for label, script, setup in lua_whatif.OPS:
            cells = []
            for name, (scripts, lib) in sets.items():
                variants = (lua_whatif.make_variants(scripts[script].source).items()
                            if args.variants and name == "working tree" else [])
                for vname, src in [("", scripts[script].source), *variants]:
                    if src is None:
                        continue
                    n, nogc = await count(cg, redis, scripts, script, src, setup, args.k,
                                          None if vname else lib)
                    cells.append(f"{name}{' ' + vname if vname else ''} {n / 1e3:.0f}k / {nogc / 1e3:.0f}k")
            print(f"  {label:38s} " + " | ".join(cells), flush=True)
    finally:
        await redis.aclose()
        cg.stop()


FIXED = ("push_task", "accept_task", "close_media")


async def count_fixed(cg: Callgrind, redis: aioredis.Redis, lib: Any, script: str, body: str,
                      k: int) -> tuple[float, float]:
    """Instructions per FCALL of a function added to lib's block of script:
    its begin_call, then body (as push_task's arguments come)."""
    register = f"redis.register_function('{lib.functions[script]}',"
    extra = f"redis.register_function('fixed_cost', function(KEYS, ARGV) begin_call(KEYS, ARGV) {body} end)"
    code = lib.code.replace(register, extra + "\n" + register, 1)
    await redis.flushall()
    await redis.function_flush()
    await redis.function_load(code)
    calls = [["sales", f"c-{i}", "1", "", "{}", "{}", "INBOUND", "", "", ""] for i in range(k)]

    def add(p: Any, a: list[Any]) -> None:
        p.fcall("fixed_cost", 1, "rr:{cg}:", lua_whatif.MAXLEN, lua_whatif.RETENTION, *a)
    cg.control("-z")
    await pipelined(redis, calls, add, 32, 1)
    total, gc = cg.counted_gc()
    return total / len(calls), (total - gc) / len(calls)


async def _noop(t: lua_whatif.Tenant, k: int) -> list[list[Any]]:
    return [["q", f"c-{i}"] for i in range(k)]


if __name__ == "__main__":
    asyncio.run(main())
