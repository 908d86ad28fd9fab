"""The listeners' limits, over real TLS on loopback: what one client can hold of the server's
memory and connections, and that the API server still gets in."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.factories import make_review, make_service_entry
from tests.live import LiveServer, running
from webhook.connections import (
    MAX_CONNECTIONS,
    MAX_HEADER_BYTES,
    RESERVED_FDS,
    GuardedHttp,
    Limits,
    Phase,
    Pool,
    Refusal,
    RefusalLog,
    Slot,
    plan_fd_limit,
    return_memory,
)

# How long a test waits for the server to do what it must (never a bound on its speed).
PATIENCE_S = 30.0
REVIEW = orjson.dumps(make_review(make_service_entry("e", "team-a", ["api.example.com"])))


def rss_bytes() -> int:
    """This process's resident memory: the test server runs in it, on a thread."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def refused(live: LiveServer, reason: Refusal, listener: str = "webhook") -> float:
    value = live.runtime.metrics.registry.get_sample_value(
        "seguard_connections_refused_total", {"listener": listener, "reason": str(reason)}
    )
    return value or 0.0


def tls_socket(live: LiveServer) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", live.port), timeout=PATIENCE_S)
    return live.client_context().wrap_socket(raw, server_hostname="localhost")


def request_head(extra: str = "", *, length: int = len(REVIEW)) -> bytes:
    """The header section the API server writes (kube-apiserver's webhook client)."""
    return (
        "POST /validate?timeout=5s HTTP/1.1\r\n"
        "Host: seguard.seguard-system.svc:443\r\n"
        "User-Agent: kube-apiserver-admission\r\n"
        "Accept: application/json, */*\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {length}\r\n"
        "Accept-Encoding: gzip\r\n" + extra + "\r\n"
    ).encode()


def read_status(sock: socket.socket) -> int | None:
    """The status of the answer on ``sock``, or None when it was closed without one."""
    data = b""
    with contextlib.suppress(OSError):
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    if not data.startswith(b"HTTP/1.1 "):
        return None
    return int(data.split(b" ", 2)[1])


def answered(live: LiveServer) -> int | None:
    """One review on a fresh connection, as the API server would send it."""
    with tls_socket(live) as sock:
        sock.sendall(request_head() + REVIEW)
        return read_status(sock)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with running(tmp_path) as srv:
        yield srv


# --- the header section ----------------------------------------------------------------------


def test_the_largest_header_section_the_api_server_can_write_is_answered(
    live: LiveServer,
) -> None:
    # The trace context kube-apiserver propagates at its largest: traceparent, tracestate of
    # 512 characters and baggage of 8,192 bytes (the W3C limits).
    trace = (
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
        f"tracestate: vendor={'x' * 505}\r\n"
        f"baggage: {('member=' + 'v' * 8192)[:8192]}\r\n"
    )
    head = request_head(trace)
    assert 9_000 < len(head) < MAX_HEADER_BYTES
    with tls_socket(live) as sock:
        sock.sendall(head + REVIEW)
        assert read_status(sock) == 200


def test_an_endless_header_is_refused_and_its_memory_stays_bounded(live: LiveServer) -> None:
    assert answered(live) == 200  # warm: the first request loads what every request uses
    before = rss_bytes()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    chunk = b"a" * 65536
    sent = 0
    status: int | None = None
    try:
        with tls_socket(live) as sock:
            sock.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\nX-Endless: ")
            with contextlib.suppress(OSError):
                while sent < 256 * 1024 * 1024:  # what grew the server to 2.8 GB unbounded
                    sock.sendall(chunk)
                    sent += len(chunk)
            status = read_status(sock)
    finally:
        done.set()
        sampler.join()
    assert sent < 256 * 1024 * 1024, "the server read the whole endless header"
    assert status in (431, None)  # the 431, unless the reset came first
    # Far above what a request costs (well under 1 MB), far below the unbounded growth (the
    # bytes sent, then several times that as the header was copied).
    assert peak[0] - before < 64 * 1024 * 1024
    assert rss_bytes() - before < 32 * 1024 * 1024
    assert refused(live, Refusal.HEADER_TOO_LARGE) == 1
    assert answered(live) == 200


def test_a_header_over_the_limit_on_the_operations_port_is_refused(live: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", live.ops_port), timeout=PATIENCE_S) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEADER_BYTES)
        assert read_status(sock) == 431
    assert refused(live, Refusal.HEADER_TOO_LARGE, "operations") == 1


def test_slow_headers_are_cut_off_at_the_deadline(tmp_path: Path) -> None:
    with running(tmp_path, limits=Limits(header_s=0.5)) as live, tls_socket(live) as sock:
        started = time.monotonic()
        status = None
        # Slowloris: a byte at a time, never the end of the headers.
        with contextlib.suppress(OSError):
            for byte in b"POST /validate HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000:
                sock.sendall(bytes([byte]))
                time.sleep(0.02)
                assert time.monotonic() - started < PATIENCE_S, "never cut off"
        status = read_status(sock)
        assert status in (408, None)
        assert refused(live, Refusal.HEADER_TIMEOUT) == 1
        assert answered(live) == 200  # a request whose headers arrive at once is not affected


def test_headers_sent_in_pieces_in_time_are_answered(tmp_path: Path) -> None:
    with running(tmp_path, limits=Limits(header_s=5.0)) as live, tls_socket(live) as sock:
        head = request_head()
        for start in range(0, len(head), 20):
            sock.sendall(head[start : start + 20])
        sock.sendall(REVIEW)
        assert read_status(sock) == 200
        assert refused(live, Refusal.HEADER_TIMEOUT) == 0


# --- the handshake and the bound ---------------------------------------------------------------


def test_a_connection_that_never_starts_tls_is_closed_at_the_handshake_deadline(
    tmp_path: Path,
) -> None:
    with (
        running(tmp_path, limits=Limits(handshake_s=0.3)) as live,
        socket.create_connection(("127.0.0.1", live.port), timeout=PATIENCE_S) as raw,
    ):
        assert raw.recv(1) == b""  # closed by the server, not by this timeout
        deadline = time.monotonic() + PATIENCE_S
        while refused(live, Refusal.HANDSHAKE_FAILED) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert answered(live) == 200


def open_idle(live: LiveServer, count: int) -> list[ssl.SSLSocket]:
    """``count`` established TLS connections that send nothing, once the server holds them."""
    held = [tls_socket(live) for _ in range(count)]
    pool = live.web.pools["webhook"]
    deadline = time.monotonic() + PATIENCE_S
    while pool.count(Phase.IDLE) < count:
        assert time.monotonic() < deadline, "the server never held the connections"
        time.sleep(0.01)
    return held


def test_an_idle_flood_cannot_keep_the_api_server_out(tmp_path: Path) -> None:
    with running(tmp_path, limits=Limits(max_connections=20)) as live:
        held = open_idle(live, 20)
        try:
            assert answered(live) == 200  # the oldest idle connection made room
            assert refused(live, Refusal.EVICTED_IDLE) >= 1
            assert len(live.web.pools["webhook"]) <= 20
            assert read_status(held[0]) is None  # the one closed was the longest idle
        finally:
            for sock in held:
                sock.close()


def test_a_flood_that_never_starts_tls_cannot_keep_the_api_server_out(tmp_path: Path) -> None:
    with running(tmp_path, limits=Limits(max_connections=20)) as live:
        raws = [socket.create_connection(("127.0.0.1", live.port)) for _ in range(20)]
        try:
            pool = live.web.pools["webhook"]
            deadline = time.monotonic() + PATIENCE_S
            while pool.count(Phase.HANDSHAKE) < 20:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert answered(live) == 200
            assert refused(live, Refusal.EVICTED_HANDSHAKE) >= 1
        finally:
            for raw in raws:
                raw.close()


def test_connections_reset_by_the_client_are_let_go_of(live: LiveServer) -> None:
    """A reset connection's protocol, transport and TLS buffers (over 100 KB) must not wait
    for a timer: a client resetting connections in a loop would grow the memory."""
    held = open_idle(live, 50)
    for sock in held:  # a reset (RST), not a close
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    pool = live.web.pools["webhook"]
    deadline = time.monotonic() + PATIENCE_S
    while len(pool) or live.web.https.server_state.connections:
        assert time.monotonic() < deadline, "the server never saw the resets"
        time.sleep(0.01)
    deadline = time.monotonic() + PATIENCE_S
    while True:
        gc.collect()
        alive = [o for o in gc.get_objects() if isinstance(o, GuardedHttp)]
        if not alive:
            break
        assert time.monotonic() < deadline, f"{len(alive)} protocols still held"
        time.sleep(0.05)


def test_connections_are_counted_in_the_metrics(live: LiveServer) -> None:
    held = open_idle(live, 3)
    try:
        text = live.runtime.metrics.render().decode()
        assert 'seguard_connections_open{listener="webhook",phase="idle"} 3.0' in text
        assert 'seguard_connections_open{listener="operations",phase="idle"}' in text
    finally:
        for sock in held:
            sock.close()


# --- the pool, the descriptor limit and the log, each on its own -------------------------------


class Closed:
    def __init__(self) -> None:
        self.closed: list[str] = []

    def slot(self, name: str) -> Slot:
        return Slot(lambda: self.closed.append(name))


def pool_of(limit: int, refusals: list[Refusal]) -> Pool:
    return Pool(Limits(max_connections=limit), refusals.append)


@pytest.mark.parametrize(
    ("phases", "closed", "why"),
    [
        pytest.param(["busy", "headers", "handshake", "idle"], "idle", Refusal.EVICTED_IDLE, id="the-idle-one-goes-first"),
        pytest.param(["busy", "headers", "handshake"], "handshake", Refusal.EVICTED_HANDSHAKE, id="then-a-handshake"),
        pytest.param(["busy", "headers"], "headers", Refusal.EVICTED_HEADERS, id="then-one-still-sending-headers"),
    ],
)  # fmt: skip
def test_a_full_pool_makes_room_idle_first(phases: list[str], closed: str, why: Refusal) -> None:
    refusals: list[Refusal] = []
    pool = pool_of(len(phases), refusals)
    record = Closed()
    for phase in phases:
        slot = record.slot(phase)
        assert pool.admit(slot)
        pool.move(slot, Phase(phase))
    assert pool.admit(record.slot("new"))
    assert record.closed == [closed]
    assert refusals == [why]
    assert len(pool) == len(phases)


def test_the_longest_idle_connection_is_closed_first() -> None:
    refusals: list[Refusal] = []
    pool = pool_of(3, refusals)
    record = Closed()
    slots = {name: record.slot(name) for name in ("a", "b", "c")}
    for slot in slots.values():
        pool.admit(slot)
        pool.move(slot, Phase.IDLE)
    pool.move(slots["a"], Phase.BUSY)  # a request on a, then idle again: now the newest idle
    pool.move(slots["a"], Phase.IDLE)
    pool.admit(record.slot("d"))
    assert record.closed == ["b"]


def test_a_pool_of_busy_connections_refuses_the_new_one() -> None:
    refusals: list[Refusal] = []
    pool = pool_of(2, refusals)
    record = Closed()
    for name in ("a", "b"):
        slot = record.slot(name)
        pool.admit(slot)
        pool.move(slot, Phase.BUSY)
    assert not pool.admit(record.slot("c"))
    assert record.closed == [] and refusals == [Refusal.FULL]


def test_a_closed_connection_frees_its_place() -> None:
    pool = pool_of(1, [])
    record = Closed()
    first = record.slot("a")
    pool.admit(first)
    pool.drop(first)
    pool.drop(first)  # twice: the transport and the handshake may both report it
    assert len(pool) == 0
    assert pool.admit(record.slot("b")) and record.closed == []


@pytest.mark.parametrize(
    ("soft", "hard", "bound", "planned"),
    [
        pytest.param(1024, 1_048_576, 2048, (2048 + RESERVED_FDS, 2048), id="raised-to-what-the-bound-needs"),
        pytest.param(100_000, 1_048_576, 2048, (100_000, 2048), id="a-higher-soft-limit-is-kept"),
        pytest.param(1024, -1, 2048, (2048 + RESERVED_FDS, 2048), id="an-unlimited-hard-limit"),
        pytest.param(1024, 1024, 2048, (1024, 1024 - RESERVED_FDS), id="a-low-hard-limit-lowers-the-bound"),
        pytest.param(64, 64, 2048, (64, 1), id="never-below-one-connection"),
    ],
)  # fmt: skip
def test_the_descriptor_limit_fits_the_bound(
    soft: int, hard: int, bound: int, planned: tuple[int, int]
) -> None:
    assert plan_fd_limit(soft, hard, bound) == planned


def test_refusals_are_counted_each_and_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counted: list[tuple[str, str]] = []
    now = [1000.0]
    log = RefusalLog(
        "webhook", Limits(), lambda *key: counted.append(key), every=60, clock=lambda: now[0]
    )
    with caplog.at_level(logging.WARNING, logger="seguard.connections"):
        for _ in range(5):
            log(Refusal.HEADER_TOO_LARGE)
        now[0] += 61
        log(Refusal.HEADER_TOO_LARGE)
        log(Refusal.FULL)
    assert len(counted) == 7
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "1 connection(s) closed or refused (header_too_large); limits" in lines[0]
    assert "5 connection(s) closed or refused (header_too_large) in the last 61 s" in lines[1]
    assert "(full)" in lines[2] and "2048 connections" in lines[2]


def test_memory_is_handed_back_once_after_refusals_and_not_without_them() -> None:
    trims: list[int] = []
    log = RefusalLog("webhook", Limits(), lambda *_: None)

    async def main() -> None:
        task = asyncio.create_task(return_memory([log], every=0.01, trim=lambda: trims.append(0)))
        await asyncio.sleep(0.05)
        assert trims == []  # nothing refused: nothing to hand back
        log(Refusal.FULL)
        log(Refusal.FULL)
        deadline = time.monotonic() + PATIENCE_S
        while not trims:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert trims == [0]


def test_shutdown_ends_the_handshakes_and_admits_nothing_more() -> None:
    pool = pool_of(10, [])
    record = Closed()
    handshake, idle = record.slot("handshake"), record.slot("idle")
    pool.admit(handshake)
    pool.admit(idle)
    pool.move(idle, Phase.IDLE)
    pool.close_pending()
    # uvicorn closes the established ones, each once its request is answered.
    assert record.closed == ["handshake"]
    assert pool.count(Phase.IDLE) == 1
    assert not pool.admit(record.slot("late"))


def test_a_server_with_a_handshake_in_progress_stops_promptly(tmp_path: Path) -> None:
    with running(tmp_path) as live:
        raw = socket.create_connection(("127.0.0.1", live.port), timeout=PATIENCE_S)
        pool = live.web.pools["webhook"]
        deadline = time.monotonic() + PATIENCE_S
        while pool.count(Phase.HANDSHAKE) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    # running() has stopped the server and joined its thread: the handshake did not hold it.
    assert not live.thread.is_alive()
    assert raw.recv(1) == b""
    raw.close()


def test_a_graceful_stop_closes_idle_kept_alive_connections_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO), running(tmp_path) as live:
        kept = live.connection()  # a kept-alive client that then reads nothing
        kept.request("POST", "/validate", body=REVIEW, headers={"Content-Type": "application/json"})
        assert kept.getresponse().read()
    # running() stopped the server: uvicorn waited for no connection to its graceful timeout.
    assert not live.thread.is_alive()
    assert "graceful shutdown exceeded" not in caplog.text
    kept.close()


def test_pipelined_requests_are_both_answered_and_counted_busy_then_idle(
    live: LiveServer,
) -> None:
    with tls_socket(live) as sock:
        sock.sendall((request_head() + REVIEW) * 2)
        data = b""
        deadline = time.monotonic() + PATIENCE_S
        while data.count(b"HTTP/1.1 200 OK") < 2:
            assert time.monotonic() < deadline, data
            data += sock.recv(65536)
        pool = live.web.pools["webhook"]
        while pool.count(Phase.IDLE) != 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert pool.count(Phase.BUSY) == 0


def test_the_commands_default_bound_is_the_one_the_limits_name() -> None:
    from webhook.cli import build_parser

    assert build_parser().parse_args(["serve"]).max_connections is None  # then the constant
    shown = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"(default {MAX_CONNECTIONS})" in " ".join(shown.split())
