"""Local Redis processes for the test suite and the benchmarks: a free
loopback port, and a real local Redis Cluster (localredis.cluster).

Neither tests/ nor benchmarks/ imports the other; both import this. It is
not part of the wheel (users run their own Redis): it lives beside tests/
and benchmarks/, which put the repository root on sys.path (pytest from
tests/__init__.py, the benchmarks from harness.py).
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
