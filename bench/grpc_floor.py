"""The floor under any live check on this machine: a minimal grpcio unary echo.

One server process (grpcio's own sync server, one thread per call as the emulator's) whose
handler waits the injected latency and echoes 100 bytes, and one client channel issuing
``calls`` unary futures at once — what a warm ``direct`` check's wave is, without any of our
code on either side. What a check costs above this is ours (client) or the emulator's.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Any

_PAYLOAD = b"x" * 100


@dataclass(frozen=True)
class Floor:
    """The echo's wall time for one wave of ``calls`` and its CPU per call on both sides."""

    calls: int
    wall: float
    client_cpu: float
    server_cpu: float


def _same(data: bytes) -> bytes:
    return data


def _serve(latency_ms: int, conn: Any) -> None:
    import grpc

    stop = threading.Event()

    def echo(request: bytes, context: Any) -> bytes:
        stop.wait(latency_ms / 1000)
        return request

    handler = grpc.method_handlers_generic_handler(
        "zt.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo, _same, _same)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(512), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    conn.send(port)
    while conn.recv() == "cpu":
        conn.send(time.process_time())
    stop.set()
    server.stop(None)


class _Wave:
    """Counts a wave's answers down; ``done`` once every one landed."""

    def __init__(self, calls: int) -> None:
        self.left = calls
        self.done = threading.Event()
        self._lock = threading.Lock()

    def landed(self, _future: Any) -> None:
        with self._lock:
            self.left -= 1
            if not self.left:
                self.done.set()


def measure(calls: int, latency_ms: int, repeats: int = 5) -> Floor:
    """The median wave of ``repeats`` (after one to warm the connection and threads)."""
    import grpc

    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_serve, args=(latency_ms, child), daemon=True)
    process.start()
    try:
        port = parent.recv()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = channel.unary_unary("/zt.Echo/Echo", _same, _same)
        runs = []
        for _ in range(repeats + 1):
            parent.send("cpu")
            served = parent.recv()
            used, start = time.process_time(), time.perf_counter()
            wave = _Wave(calls)
            for _ in range(calls):
                stub.future(_PAYLOAD, timeout=30).add_done_callback(wave.landed)
            wave.done.wait(60)
            wall, client = time.perf_counter() - start, time.process_time() - used
            parent.send("cpu")
            runs.append((wall, client, parent.recv() - served))
        channel.close()
    finally:
        parent.send("stop")
        process.join(timeout=10)
    wall, client, server = sorted(runs[1:])[len(runs[1:]) // 2]
    return Floor(calls, wall, client / calls, server / calls)
