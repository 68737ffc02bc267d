"""Connections: a real Redis or Redis Cluster from a URL, or the embedded
backend (fakeredis running the same Lua through lupa) when no URL is given.

A cluster is named by its URL: `redis+cluster://host:port` (or
`rediss+cluster://` for TLS), or any `redis://` / `rediss://` URL with
`?cluster=true`. One reachable node is enough; more can be listed,
comma-separated (`redis+cluster://h1:7000,h2:7000`). Every key of a tenant
carries the hash tag `{tenant}`, so every script runs in one slot and the
cluster client routes it by KEYS[1].
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis._parsers import AsyncCommandsParser
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import HiredisRespSerializer
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    MaxConnectionsError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE

if HIREDIS_AVAILABLE:
    import hiredis

_EMBEDDED_SERVER: Any = None

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_TRUE = ("1", "true", "yes", "on")


def embedded_server() -> Any:
    """The process-wide embedded server, so every client of the process sees
    one keyspace."""
    global _EMBEDDED_SERVER
    if _EMBEDDED_SERVER is None:
        import fakeredis

        _EMBEDDED_SERVER = fakeredis.FakeServer()
    return _EMBEDDED_SERVER


@dataclass(frozen=True)
class ClusterUrl:
    url: str  # a plain redis:// or rediss:// URL of the first node
    startup_nodes: list[tuple[str, int]]  # every node listed, the first included


def parse_cluster_url(url: str) -> ClusterUrl | None:
    """The cluster a URL names, or None for a single Redis."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = parse_qsl(parts.query, keep_blank_values=True)
    flags = [v.strip().lower() for k, v in query if k.lower() == "cluster"]
    if scheme in CLUSTER_SCHEMES:
        if flags and flags[-1] not in _TRUE:
            raise ValueError(f"{scheme}:// is always a cluster; drop cluster={flags[-1]}")
        scheme = CLUSTER_SCHEMES[scheme]
    elif not flags or flags[-1] not in _TRUE:
        return None
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for h in hosts.split(","):
        hp = urlsplit(f"//{h.strip()}")
        if not hp.hostname:
            raise ValueError(f"no host in cluster URL {url!r}")
        nodes.append((hp.hostname, hp.port or 6379))
    host, port = nodes[0]
    netloc = (userinfo + "@" if userinfo else "") + (f"[{host}]" if ":" in host else host)
    rest = urlencode([(k, v) for k, v in query if k.lower() != "cluster"])
    return ClusterUrl(urlunsplit((scheme, f"{netloc}:{port}", parts.path, rest, "")), nodes)


class _CommandsParser(AsyncCommandsParser):
    """redis-py's key finder for cluster routing, with two changes:
    - the COMMAND table is read once: redis-py reads it again at every
      topology refresh, from the first primary it lists, which may be the
      node that just died (the refresh then fails, for every tenant);
    - the keys of XREAD / XREADGROUP are found locally, not by a COMMAND
      GETKEYS round trip to that same node.
    """

    async def initialize(self, node: ClusterNode | None = None) -> None:
        if node is not None:
            self.node = node
        if not self.commands:
            await super().initialize(node)

    async def get_keys(self, *args: Any) -> Any:
        if args and str(args[0]).upper() in ("XREAD", "XREADGROUP"):
            upper = [str(a).upper() for a in args]
            if "STREAMS" in upper:
                rest = args[upper.index("STREAMS") + 1:]
                return tuple(rest[: len(rest) // 2])
        return await super().get_keys(*args)


class NodeUnavailable(RedisConnectionError):
    """The cluster node serving a key is down (or was a moment ago)."""


@dataclass
class _Trip:
    until: float  # monotonic time before which requests fail at once
    backoff: float
    probing: bool = False


class ClusterClient(RedisCluster):
    """redis-py's RedisCluster, made to isolate shards from each other.

    - Circuit breaker per node: after a connection failure, commands for the
      slots of that node fail at once (NodeUnavailable, a ConnectionError)
      for a short, growing back-off, then one request probes it. Without
      this, every request for a dead shard's tenants would reinitialize the
      client's topology (under a lock every other request waits for) several
      times, slowing the healthy shards' tenants by orders of magnitude.
    - Errors that mean "this slot is not served now" (CLUSTERDOWN, slot not
      covered, no node reachable, redirect loop) come out as
      ConnectionError subclasses, so they map to RedisUnavailable (503) like
      a single Redis being down, not to internal errors.
    - SCRIPT LOAD goes to every primary that answers (redis-py sends it to all
      primaries and fails when any one is down).
    - Topology refreshes do not re-read the COMMAND table (see
      _CommandsParser), and an ASK redirect to a node not seen yet (a slot
      moving to a new master) is followed instead of failing.
    """

    breaker_base = 0.25  # seconds; doubles while the node stays down
    breaker_max = 2.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trips: dict[str, _Trip] = {}
        self.commands_parser = _CommandsParser()

    def get_node(self, host: str | None = None, port: int | None = None,
                 node_name: str | None = None) -> ClusterNode | None:
        node = super().get_node(host, port, node_name)
        if node is None and node_name and host is None and port is None:
            # An ASK redirect, during a resharding, to a node this client has
            # not seen yet: redis-py would fail on None; add it, as a MOVED does.
            h, _, p = node_name.rpartition(":")
            if h and p.isdigit():
                node = ClusterNode(h, int(p), "primary", **self.nodes_manager.connection_kwargs)
                self.nodes_manager.set_nodes(self.nodes_manager.nodes_cache, {node.name: node})
        return node

    # Circuit breaker

    def node_down(self, name: str) -> bool:
        t = self._trips.get(name)
        return t is not None and (t.probing or time.monotonic() < t.until)

    def _trip(self, name: str) -> None:
        old = self._trips.get(name)
        backoff = min(self.breaker_max, old.backoff * 2) if old else self.breaker_base
        self._trips[name] = _Trip(time.monotonic() + backoff, backoff)

    async def _node_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ClusterNode | None:
        """The primary a keyed command goes to, from the current slot map."""
        if "target_nodes" in kwargs or not args or not self.nodes_manager.slots_cache:
            return None
        command = str(args[0]).upper()
        if command in self.command_flags:
            return None  # a command for all nodes, one node or a given slot
        if command in ("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO") and (
            len(args) < 3 or int(args[2]) < 1
        ):
            return None
        try:
            slot = await self._determine_slot(*args)
            return self.nodes_manager.get_node_from_slot(slot)
        except Exception:  # unknown command, not covered …: redis-py decides
            return None

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        node = await self._node_of(args, kwargs)
        probe = False
        if node is not None and (t := self._trips.get(node.name)) is not None:
            left = t.until - time.monotonic()
            if t.probing or left > 0:
                raise NodeUnavailable(
                    f"cluster node {node.name} is unreachable (next try in {max(0.0, left):.2f} s)")
            t.probing = probe = True
        try:
            result = await super().execute_command(*args, **kwargs)
        except (NodeUnavailable, MaxConnectionsError):
            raise
        except (RedisConnectionError, RedisTimeoutError, ClusterDownError) as e:
            # The node that failed (redis-py names it), not the one the slot
            # map gave: a topology refresh may have failed on another.
            failed = getattr(e, "connection", None)
            timeout_only = isinstance(e, RedisTimeoutError) and "connect" not in str(e).lower()
            if isinstance(failed, ClusterNode) and not timeout_only:
                self._trip(failed.name)
            if isinstance(e, ClusterDownError):
                raise NodeUnavailable(f"cluster down for this slot: {e}") from e
            raise
        except SlotNotCoveredError as e:
            raise NodeUnavailable(str(e)) from e
        except ClusterError as e:  # "TTL exhausted": redirected in a loop
            raise NodeUnavailable(f"cluster is reconfiguring: {e}") from e
        except RedisClusterException as e:
            if "cannot be connected" in str(e) or "not covered" in str(e):
                raise NodeUnavailable(str(e)) from e
            raise
        except AttributeError as e:
            # A redis-py race: on CLUSTERDOWN it closes every node's
            # connections, and a connection being set up at that moment for
            # another command fails on its closed writer. Unavailable, retry.
            if "NoneType" not in str(e):
                raise
            raise NodeUnavailable(f"connection reset by a cluster topology refresh: {e}") from e
        except ResponseError:
            if node is not None and probe:
                self._trips.pop(node.name, None)  # it answered (an error reply)
            raise
        finally:
            if probe and node is not None and (t := self._trips.get(node.name)) is not None:
                t.probing = False
        if node is not None and node.name in self._trips:
            self._trips.pop(node.name, None)
        return result

    # Scripts

    async def script_load(self, script: Any) -> Any:
        """Loads a script on every primary that answers; returns its SHA.
        Raises only when none does."""
        return await self._on_every_primary("SCRIPT LOAD", script)

    async def function_load(self, code: str, replace: bool | None = False) -> Any:
        """Loads a function library on every primary that answers; returns
        its name. Raises only when none does."""
        return await self._on_every_primary("FUNCTION LOAD", *(["REPLACE"] if replace else []), code)

    async def _on_every_primary(self, *command: Any) -> Any:
        """command on every primary that answers: the first reply; raises
        only when none answers."""
        await self.initialize()
        nodes = [n for n in self.get_primaries() if not self.node_down(n.name)]
        results = await asyncio.gather(
            *(self.execute_command(*command, target_nodes=n) for n in nodes),
            return_exceptions=True,
        )
        for n, r in zip(nodes, results, strict=True):
            if isinstance(r, (RedisConnectionError, RedisTimeoutError)):
                self._trip(n.name)
        for r in results:
            if not isinstance(r, BaseException):
                return r
        errors = [r for r in results if isinstance(r, BaseException)]
        raise errors[0] if errors else NodeUnavailable("no cluster node answers")


def connect_cluster(url: str, **kwargs: Any) -> ClusterClient:
    """A ClusterClient for a cluster URL (see parse_cluster_url)."""
    parsed = parse_cluster_url(url)
    if parsed is None:
        raise ValueError(f"not a cluster URL: {url!r}")
    kwargs.setdefault("require_full_coverage", False)  # other shards serve on
    kwargs.setdefault("max_connections", 1024)  # per node; blocking XREADs hold one each
    # One retry (after a topology refresh) is enough to follow a failover or
    # a resharding; more only delays the 503 of a shard that is down.
    kwargs.setdefault("retry", Retry(ExponentialBackoff(cap=0.5, base=0.05), 1))
    if len(parsed.startup_nodes) > 1:
        kwargs.setdefault("startup_nodes",
                          [ClusterNode(h, p) for h, p in parsed.startup_nodes[1:]])
    return ClusterClient.from_url(parsed.url, decode_responses=True, **kwargs)


class WaitingConnectionPool(aioredis.ConnectionPool):
    """A connection pool that, when all max_connections are in use, waits
    up to `timeout` seconds for one to be released instead of failing with
    "Too many connections" (redis-py's default pool; behind the HTTP server
    that was a 503 for every request past 100 in flight). Unlike redis-py's
    BlockingConnectionPool it adds nothing while a connection is free: that
    one arms a timer and takes a condition on every call, 12% of a
    lifecycle's throughput through the Engine."""

    def __init__(self, *args: Any, timeout: float = 5.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout = timeout
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        deadline = None
        while True:
            if self.can_get_connection():
                try:
                    return await super().get_connection(*args, **kwargs)
                except MaxConnectionsError:
                    pass  # another task took the last one meanwhile
            loop = asyncio.get_running_loop()
            deadline = deadline if deadline is not None else loop.time() + self.timeout
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiting.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise RedisConnectionError("No connection available.") from None
            finally:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(waiter)

    async def release(self, connection: Any) -> None:
        await super().release(connection)
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break


class HiredisPacking:
    """Commands packed by hiredis (C) instead of redis-py's asyncio Connection,
    which packs them in Python; redis-py's own synchronous Connection does the
    same with this serializer when hiredis is installed. The bytes are the
    same; an EVALSHA of redroute's dozen arguments costs about a tenth."""

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        # The serializer first splits a command name with a space ("SCRIPT
        # LOAD") and copies every argument through a generator; a command
        # without either (a script call) is packed by hiredis directly. It
        # refuses what the serializer converts or reports (bytearray, bool,
        # None): those take the serializer.
        if type(args[0]) is str and " " not in args[0]:
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass
        return self._packer.pack(*args)


_HIREDIS_CLASSES: dict[type, type] = {}


def hiredis_packing(cls: type) -> type:
    """cls (a Connection, SSLConnection or UnixDomainSocketConnection class)
    packing with hiredis, when hiredis is installed."""
    if not HIREDIS_AVAILABLE:
        return cls
    if cls not in _HIREDIS_CLASSES:
        _HIREDIS_CLASSES[cls] = type(f"Hiredis{cls.__name__}", (HiredisPacking, cls), {})
    return _HIREDIS_CLASSES[cls]


_Batch = list[tuple[tuple[Any, ...], "asyncio.Future[Any]"]]


class AutoPipelineRedis(aioredis.Redis):
    """redis.asyncio.Redis whose script calls (EVALSHA, EVAL, FCALL and their
    _RO forms) are pipelined automatically, as ioredis and node-redis do: the
    calls made in one event-loop tick go out together in one write on one
    pooled connection, their replies are read in order, and each caller
    gets its own reply or error reply. Everything else takes redis-py's
    usual path. Per call that saves redis-py's per-command connection
    acquire and release, retry wrapper and timed write, and one write and
    one read system call on each side.

    The batch is written and read with the connection's own methods
    (pack_commands, send_packed_command, read_response), under its retry
    policy as redis-py's Pipeline is, but with one socket_timeout for the
    batch's replies rather than one per reply: Redis answers a pipelined
    batch after running it anyway, and redis-py's Pipeline (a timer, its
    observability hooks and a parse per reply) cost more than all the rest
    of the call path."""

    PIPELINED = frozenset({"EVALSHA", "EVAL", "FCALL", "EVALSHA_RO", "EVAL_RO", "FCALL_RO"})
    # Replies are handed out 16 at a time, a loop turn between: the first
    # callers' next calls then reach Redis while the rest are still being
    # woken, instead of Redis idling until every caller of a batch has run.
    dispatch_chunk = 16

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch: _Batch = []
        self._runs: set[asyncio.Task[None]] = set()

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if options or args[0] not in self.PIPELINED or self.single_connection_client:
            return await super().execute_command(*args, **options)
        loop = asyncio.get_running_loop()
        if not self._batch:
            loop.call_soon(self._flush)
        future = loop.create_future()
        self._batch.append((args, future))
        return await future

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._runs.add(task)  # held until done: the loop keeps weak references
        task.add_done_callback(self._runs.discard)

    async def _run(self, batch: _Batch) -> None:
        pool = self.connection_pool
        try:
            conn = await pool.get_connection()
            try:
                replies = await conn.retry.call_with_retry(
                    lambda: self._exchange(conn, batch), lambda _: conn.disconnect())
            finally:
                await pool.release(conn)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as e:  # the connection failed: every call of the batch did
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        try:
            for i, ((_, future), reply) in enumerate(zip(batch, replies, strict=True)):
                if i and not i % self.dispatch_chunk:
                    await asyncio.sleep(0)
                if future.done():  # its caller was cancelled
                    continue
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise

    @staticmethod
    async def _exchange(conn: Any, batch: _Batch) -> list[Any]:
        """Writes the batch, reads every reply (an error reply in its place);
        on a timeout the connection is dropped, its replies unread."""
        await conn.send_packed_command(conn.pack_commands([args for args, _ in batch]))
        replies: list[Any] = []
        try:
            async with asyncio.timeout(conn.socket_timeout):
                for _ in batch:
                    try:
                        replies.append(await conn.read_response(timeout=math.inf))
                    except ResponseError as e:
                        replies.append(e)
        except TimeoutError:
            await conn.disconnect(nowait=True)
            where = getattr(conn, "path", None) or f"{conn.host}:{conn.port}"
            raise RedisTimeoutError(f"Timeout reading from {where}") from None
        return replies


def connect(url: str | None = None, **kwargs: Any) -> Any:
    """An asyncio client for url, or for REDIS_URL, or for the embedded
    backend: redis.asyncio.Redis, a ClusterClient for a cluster URL, or
    fakeredis."""
    url = url if url is not None else os.environ.get("REDIS_URL") or None
    if url:
        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("socket_connect_timeout", 2)
        kwargs.setdefault("health_check_interval", 15)
        if parse_cluster_url(url) is not None:
            return connect_cluster(url, **kwargs)
        # A burst of concurrent calls waits for a free connection instead of
        # failing. Blocking stream reads (SSE feeds, the timer worker) hold a
        # connection each, hence the size.
        pool = WaitingConnectionPool.from_url(
            url, decode_responses=True, max_connections=kwargs.pop("max_connections", 1024),
            timeout=kwargs.pop("pool_timeout", 5), **kwargs)
        pool.connection_class = hiredis_packing(pool.connection_class)
        return AutoPipelineRedis.from_pool(pool)
    import fakeredis

    return fakeredis.FakeAsyncRedis(server=embedded_server(), decode_responses=True)


def connect_service(url: str | None = None) -> Any:
    """The client of a long-running process (`serve`, `worker`): connect(),
    plus, on a single Redis, one retry on a broken connection, so the pooled
    connections a Redis restart left stale reconnect instead of each failing
    one request. Timeouts are not retried: the script may have run, and
    running it twice would not be safe. A cluster client has its own retry
    policy (topology refreshes)."""
    url = url if url is not None else os.environ.get("REDIS_URL") or None
    if not url or parse_cluster_url(url) is not None:
        return connect(url)
    return connect(url, retry=Retry(NoBackoff(), 1, (RedisConnectionError,)))


def is_embedded(client: Any) -> bool:
    return type(client).__module__.startswith("fakeredis")


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


_CLUSTER_ONLY = ("max_connections", "connection_class", "response_callbacks", "himport_registry",
                 "oss_cluster_maint_notifications_handler", "maint_notifications_config")


def node_client(cluster: RedisCluster, host: str, port: int) -> aioredis.Redis:
    """A plain client of one cluster node with the cluster's connection
    settings (auth, TLS, timeouts), for what is per node: keyspace
    notifications."""
    kwargs = dict(cluster.get_connection_kwargs())
    connection_class = kwargs.get("connection_class") or aioredis.Connection
    for k in _CLUSTER_ONLY:
        kwargs.pop(k, None)
    pool = aioredis.ConnectionPool(connection_class=connection_class, host=host, port=port,
                                   **kwargs)
    return aioredis.Redis(connection_pool=pool)


async def close_quietly(client: Any) -> None:
    with contextlib.suppress(Exception):
        await client.aclose()
