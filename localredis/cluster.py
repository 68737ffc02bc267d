"""A real local Redis Cluster for tests and benchmarks: N masters (no
replicas) started from the redis-server on PATH, each on a free loopback
port in its own temp dir, joined with `redis-cli --cluster create`.

Every node runs with keyspace notifications on (`Ex`, for the timer worker),
`cluster-require-full-coverage no` (with no replicas, a dead master would
otherwise stop the whole cluster, not only its own slots) and a short
`cluster-node-timeout`. With `persistent=True` (the default) a node keeps an
AOF in its dir (appendfsync everysec; set `always` on a node before killing
it to lose no acknowledged write), so a node killed and restarted on the
same port, dir and nodes.conf comes back with its data.

It never touches a Redis it did not start.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis as syncredis
from redis.crc import key_slot

from redroute.keys import tenant_prefix

NODE_TIMEOUT_MS = 1000


class ClusterUnavailable(RuntimeError):
    """redis-server or redis-cli is missing, or the cluster did not form."""


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports whose cluster bus ports (+10000) are
    free too."""
    ports: list[int] = []
    socks: list[socket.socket] = []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port + 10000 > 65535 or port in ports:
                s.close()
                continue
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    s.close()
                    continue
            socks.append(s)
            ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


def _ping(port: int, timeout: float = 0.5) -> bool:
    try:
        return bool(syncredis.Redis(port=port, socket_timeout=timeout).ping())
    except (syncredis.ConnectionError, syncredis.TimeoutError):
        return False


@dataclass
class ClusterNodeProcess:
    """One redis-server of the cluster, owned by this process."""

    port: int
    dir: Path
    args: list[str]
    proc: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, **kw) -> syncredis.Redis:
        return syncredis.Redis(port=self.port, decode_responses=True, **kw)

    def start(self, wait: bool = True) -> None:
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(self.args, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            deadline = time.monotonic() + 10
            while not _ping(self.port):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise ClusterUnavailable(
                        f"redis-server on port {self.port} did not start; see {self.dir}/redis.log")
                time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash."""
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class LocalCluster:
    nodes: list[ClusterNodeProcess]
    root: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        """The REDIS_URL of this cluster (one startup node is enough)."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    @property
    def flag_url(self) -> str:
        """The same cluster in the `?cluster=true` spelling, with every node."""
        return f"redis://127.0.0.1:{self.nodes[0].port}/0?cluster=true"

    def node(self, port: int) -> ClusterNodeProcess:
        return next(n for n in self.nodes if n.port == port)

    def live_client(self, **kw) -> syncredis.Redis:
        for n in self.nodes:
            if n.alive():
                return n.client(**kw)
        raise ClusterUnavailable("no node of the cluster is running")

    def slot_map(self) -> list[tuple[int, int, int]]:
        """(first slot, last slot, master port) ranges, from CLUSTER SLOTS."""
        out = []
        for start, end, master, *_ in self.live_client().execute_command("CLUSTER SLOTS"):
            out.append((int(start), int(end), int(master[1])))
        return sorted(out)

    def keyslot(self, key: str) -> int:
        """CLUSTER KEYSLOT, asked of the server (checked against redis-py's)."""
        slot = int(self.live_client().execute_command("CLUSTER KEYSLOT", key))
        assert slot == key_slot(key.encode())
        return slot

    def port_for_slot(self, slot: int) -> int:
        for start, end, port in self.slot_map():
            if start <= slot <= end:
                return port
        raise KeyError(slot)

    def port_for_key(self, key: str) -> int:
        return self.port_for_slot(self.keyslot(key))

    def port_for_tenant(self, tenant: str) -> int:
        return self.port_for_key(tenant_prefix(tenant))

    def tenants_per_node(self, per_node: int = 1, prefix: str = "t") -> dict[int, list[str]]:
        """Tenant names (prefix-0, prefix-1, …) chosen so that each master
        serves `per_node` of them: {port: [tenant, …]}."""
        want = {n.port: [] for n in self.nodes}
        ranges = self.slot_map()
        i = 0
        while any(len(v) < per_node for v in want.values()):
            name = f"{prefix}-{i}"
            slot = key_slot(tenant_prefix(name).encode())
            port = next(p for s, e, p in ranges if s <= slot <= e)
            if len(want[port]) < per_node:
                want[port].append(name)
            i += 1
        return want

    def state_ok(self) -> bool:
        """Every node up, cluster_state:ok everywhere, all slots assigned."""
        for n in self.nodes:
            try:
                info = n.client(socket_timeout=1).execute_command("CLUSTER INFO")
            except (syncredis.ConnectionError, syncredis.TimeoutError):
                return False
            fields = {str(k): str(v) for k, v in info.items()}
            if fields.get("cluster_state") != "ok" or fields.get("cluster_slots_ok") != "16384":
                return False
        return True

    def wait_ok(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.state_ok():
            if time.monotonic() > deadline:
                raise ClusterUnavailable("the cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def flushall(self) -> None:
        for n in self.nodes:
            n.client().flushall()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for n in self.nodes:
            n.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def tools_available() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def start_cluster(masters: int = 3, *extra: str, persistent: bool = True,
                  node_timeout_ms: int = NODE_TIMEOUT_MS) -> LocalCluster:
    """Starts `masters` redis-servers in cluster mode and joins them with
    `redis-cli --cluster create … --cluster-replicas 0 --cluster-yes`; extra
    arguments go on every server's command line."""
    exe, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if exe is None or cli is None:
        raise ClusterUnavailable("redis-server and redis-cli must be on PATH")
    root = Path(tempfile.mkdtemp(prefix="redroute-cluster-"))
    nodes: list[ClusterNodeProcess] = []
    cluster = LocalCluster(nodes, root)
    try:
        for port in _free_ports(masters):
            d = root / str(port)
            d.mkdir()
            persistence = (["--appendonly", "yes", "--appendfsync", "everysec"] if persistent
                           else ["--appendonly", "no"])
            args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(node_timeout_ms),
                    "--cluster-require-full-coverage", "no",
                    "--notify-keyspace-events", "Ex", "--save", "", *persistence,
                    "--protected-mode", "no", *extra]
            node = ClusterNodeProcess(port, d, args)
            nodes.append(node)
            node.start(wait=False)
        for n in nodes:
            deadline = time.monotonic() + 10
            while not _ping(n.port):
                if not n.alive() or time.monotonic() > deadline:
                    raise ClusterUnavailable(f"redis-server on port {n.port} did not start")
                time.sleep(0.02)
        if masters >= 3:
            create = subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, text=True, timeout=60,
            )
            if create.returncode != 0:
                raise ClusterUnavailable(
                    f"redis-cli --cluster create failed:\n{create.stdout}{create.stderr}")
        else:
            # redis-cli wants three masters at least: assign the slots by hand
            step = 16384 // masters
            for i, n in enumerate(nodes):
                last = 16383 if i == masters - 1 else (i + 1) * step - 1
                n.client().execute_command("CLUSTER", "ADDSLOTSRANGE", i * step, last)
                if i:
                    n.client().execute_command("CLUSTER", "MEET", "127.0.0.1", nodes[0].port)
        cluster.wait_ok()
    except BaseException:
        cluster.stop()
        raise
    return cluster


# Topology changes (for the tests that follow them)


def node_id(node: ClusterNodeProcess) -> str:
    return node.client().execute_command("CLUSTER MYID")


def add_master(cluster: LocalCluster, *extra: str) -> ClusterNodeProcess:
    """Starts one more node like the others and has it meet the cluster, as
    a master with no slots yet."""
    (port,) = _free_ports(1)
    d = cluster.root / str(port)
    d.mkdir()
    template = cluster.nodes[0].args
    args = list(template)
    args[args.index("--port") + 1] = str(port)
    args[args.index("--dir") + 1] = str(d)
    node = ClusterNodeProcess(port, d, [*args, *extra])
    node.start()
    cluster.nodes.append(node)
    node.client().execute_command("CLUSTER", "MEET", "127.0.0.1", str(cluster.nodes[0].port))
    deadline = time.monotonic() + 15
    while not all(_knows(a, b) for a in cluster.nodes for b in cluster.nodes):
        if time.monotonic() > deadline:
            raise ClusterUnavailable(f"node {port} did not join the cluster")
        time.sleep(0.05)
    cluster.wait_ok()  # a master that just started waits a moment before it serves
    return node


def _knows(observer: ClusterNodeProcess, node: ClusterNodeProcess) -> bool:
    """observer's CLUSTER NODES lists node, handshake done."""
    nid = node_id(node)
    raw = observer.client().execute_command("CLUSTER NODES")
    if isinstance(raw, dict):  # redis-py parses it: {"host:port": {"node_id", "flags", …}}
        entries = [(v["node_id"], v["flags"]) for v in raw.values()]
    else:
        entries = [(f[0], f[2]) for f in (line.split() for line in raw.splitlines()) if len(f) > 2]
    return any(i == nid and "handshake" not in f and "noaddr" not in f for i, f in entries)


def migrate_slot(cluster: LocalCluster, slot: int, src_port: int, dst_port: int) -> None:
    """Moves one slot and its keys between masters, the way
    `redis-cli --cluster reshard` does (IMPORTING/MIGRATING, MIGRATE, NODE)."""
    src, dst = cluster.node(src_port), cluster.node(dst_port)
    src_id, dst_id = node_id(src), node_id(dst)
    s, d = src.client(), dst.client()
    d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    while True:
        keys = s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
        if not keys:
            break
        s.execute_command("MIGRATE", "127.0.0.1", dst_port, "", 0, 5000, "KEYS", *keys)
    for n in (dst, src):
        n.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    for n in cluster.nodes:
        if n not in (src, dst) and n.alive():
            n.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    deadline = time.monotonic() + 15
    while cluster.port_for_slot(slot) != dst_port or not cluster.state_ok():
        if time.monotonic() > deadline:
            raise ClusterUnavailable(f"slot {slot} did not move to {dst_port}")
        time.sleep(0.05)


def remove_master(cluster: LocalCluster, node: ClusterNodeProcess) -> None:
    """Stops a master that serves no slot and has every other node forget it."""
    nid = node_id(node) if node.alive() else None
    node.stop()
    cluster.nodes.remove(node)
    if nid:
        for n in cluster.nodes:
            with contextlib.suppress(syncredis.ResponseError):
                n.client().execute_command("CLUSTER", "FORGET", nid)
    shutil.rmtree(node.dir, ignore_errors=True)
