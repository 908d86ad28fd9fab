"""The listeners' own safety (shell): a bound on open connections, with idle ones closed first;
deadlines for the TLS handshake and for a request's header section; a size limit on that
section. Any pod can reach the webhook port unless a NetworkPolicy says otherwise, so one
client must not be able to exhaust the process's memory or file descriptors.

Every connection is accepted as plain TCP by a ``_Gate``, which counts it from the start (a
connection that never finishes its TLS handshake holds a descriptor too), upgrades it to TLS
with its own deadline, and hands it to uvicorn's httptools protocol, extended here to watch the
header section.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from webhook import heap, logs

log = logging.getLogger("seguard.connections")

# The API server sends a header section of about 250 bytes (POST /validate?timeout=5s, Host,
# User-Agent kube-apiserver-admission, Accept, Content-Type, Content-Length, Accept-Encoding).
# The largest it can write adds the trace context it propagates: traceparent (55 bytes),
# tracestate (at most 512) and baggage (at most 8,192, the W3C limit), about 9.1 KiB in all
# (tests/test_connections.py builds it). 16 KiB holds that with room to spare, as Node.js's
# default does, and keeps a connection's refused header under 16 KiB + one read.
MAX_HEADER_BYTES = 16 * 1024
# The webhooks we install time out after 5 s (deploy/base/webhooks.yaml; the API server allows at
# most 30): headers still arriving after 10 s belong to a call the API server gave up on.
HEADER_S = 10.0
# A handshake with the API server takes one or two round trips inside the cluster
# (milliseconds); 5 s is far above that and half the header deadline, so a connection that
# never starts TLS holds its descriptor for 5 s, not the event loop's default 60.
HANDSHAKE_S = 5.0
# The API server keeps an idle connection to a webhook for up to 90 s (Go's
# http.Transport IdleConnTimeout); we keep one a little longer, so it never sends a request down
# a connection we are closing. A new connection that sends nothing is idle from the start.
IDLE_S = 120
# One connection per call in flight: each API server calls webhooks from at most its
# --max-mutating-requests-inflight (200 by default) requests at once, over HTTP/1.1, and keeps a
# few idle. 2,048 holds ten API servers at that limit; at about 45 KB per idle TLS connection
# (bench/run.py prints it) the bound is about 92 MB, and 2,048 headers refused at once 32 MiB
# more (deploy/base/deployment.yaml's memory limit holds both beside a 100k-entry registry).
MAX_CONNECTIONS = 2048
# Descriptors beyond the connections: the listeners, the audit file, the API server's watches,
# the policy and certificate files, the event loop's own.
RESERVED_FDS = 256
# How long a refused connection may take to read its answer before it is cut off.
LINGER_S = 1.0
# After connections are refused or cut off, glibc keeps their freed TLS buffers in its heap: a
# flood of handshakes left RSS about 10 MB higher each time, and growing, until malloc_trim
# handed it back (then it stayed flat). Trimmed at most this often, and only after a refusal:
# a trim takes under 1 ms on the heap of a 100k-entry registry.
TRIM_EVERY_S = 5.0
# How often each kind of refusal is logged (each one is counted in the metrics): soon enough
# to see an attack begin, seldom enough that the attack cannot flood the logs.
LOG_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int = MAX_CONNECTIONS
    header_bytes: int = MAX_HEADER_BYTES
    header_s: float = HEADER_S
    handshake_s: float = HANDSHAKE_S


class Phase(enum.Enum):
    HANDSHAKE = "handshake"  # accepted, TLS not yet established
    IDLE = "idle"  # established, between requests (or before the first)
    HEADERS = "headers"  # a request's header section is arriving
    BUSY = "busy"  # a request is being read or answered


class Refusal(enum.StrEnum):
    HEADER_TOO_LARGE = "header_too_large"
    HEADER_TIMEOUT = "header_timeout"
    HANDSHAKE_FAILED = "handshake_failed"
    EVICTED_IDLE = "evicted_idle"
    EVICTED_HANDSHAKE = "evicted_handshake"
    EVICTED_HEADERS = "evicted_headers"
    FULL = "full"
    ACCEPT_FAILED = "accept_failed"  # the process is out of descriptors (or the system)


def plan_fd_limit(soft: int, hard: int, max_connections: int) -> tuple[int, int]:
    """The descriptor soft limit to set and the connection bound it allows: enough for the
    bound and the reserve when the hard limit lets us, else the bound the hard limit holds."""
    needed = max_connections + RESERVED_FDS
    if hard < 0 or hard >= needed:  # RLIM_INFINITY is -1
        return max(soft, needed), max_connections
    return hard, max(1, hard - RESERVED_FDS)


def fit_fd_limit(limits: Limits) -> Limits:
    """Raise this process's descriptor limit for ``limits``, or lower the bound to fit it (with
    a warning): a process out of descriptors resets every new connection, the API server's
    among them."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new_soft, bound = plan_fd_limit(soft, hard, limits.max_connections)
    if new_soft != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
    if bound != limits.max_connections:
        log.warning(
            "the file-descriptor limit (hard %d) holds only %d connections, not %d: raise the "
            "container's nofile limit, or lower --max-connections",
            hard,
            bound,
            limits.max_connections,
            extra=logs.fields("connections.fd_limit", hard=hard, bound=bound),
        )
        return dataclasses.replace(limits, max_connections=bound)
    return limits


class Slot:
    """One accepted connection, as the pool sees it."""

    __slots__ = ("abort", "phase")

    def __init__(self, abort: Callable[[], object]) -> None:
        self.abort = abort
        self.phase: Phase | None = Phase.HANDSHAKE


class Pool:
    """Every open connection of one listener by phase, each phase oldest first, and the bound.

    At the bound a new connection makes room: the longest-idle connection is closed first, then
    the oldest still in its handshake, then the oldest still sending its headers; one busy with
    a request is never closed. With none of those, the new one is refused."""

    def __init__(self, limits: Limits, on_refused: Callable[[Refusal], None]) -> None:
        self.limits = limits
        self.on_refused = on_refused
        self.by_phase: dict[Phase, dict[Slot, None]] = {phase: {} for phase in Phase}
        self.closing = False

    def __len__(self) -> int:
        return sum(len(slots) for slots in self.by_phase.values())

    def count(self, phase: Phase) -> int:
        return len(self.by_phase[phase])

    def admit(self, slot: Slot) -> bool:
        """Take ``slot`` in, making room if the pool is full; False when it is refused."""
        if self.closing:
            return False
        if len(self) >= self.limits.max_connections and not self._make_room():
            self.on_refused(Refusal.FULL)
            return False
        self.by_phase[Phase.HANDSHAKE][slot] = None
        return True

    def _make_room(self) -> bool:
        for phase, why in (
            (Phase.IDLE, Refusal.EVICTED_IDLE),
            (Phase.HANDSHAKE, Refusal.EVICTED_HANDSHAKE),
            (Phase.HEADERS, Refusal.EVICTED_HEADERS),
        ):
            slots = self.by_phase[phase]
            if slots:
                victim = next(iter(slots))
                self.drop(victim)
                victim.abort()
                self.on_refused(why)
                return True
        return False

    def move(self, slot: Slot, phase: Phase) -> None:
        if slot.phase is None or slot.phase is phase:
            return
        del self.by_phase[slot.phase][slot]
        self.by_phase[phase][slot] = None
        slot.phase = phase

    def drop(self, slot: Slot) -> None:
        if slot.phase is not None:
            del self.by_phase[slot.phase][slot]
            slot.phase = None

    def close_pending(self) -> None:
        """On shutdown: accept nothing more, and end the handshakes still going on (uvicorn
        closes the established connections, each when its request is answered)."""
        self.closing = True
        for slot in list(self.by_phase[Phase.HANDSHAKE]):
            self.drop(slot)
            slot.abort()


class RefusalLog:
    """Counts each refusal (``count``) and logs each kind at most once per ``every`` seconds,
    with how many there were since."""

    def __init__(
        self,
        listener: str,
        limits: Limits,
        count: Callable[[str, str], None],
        *,
        every: float = LOG_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.listener = listener
        self.limits = limits
        self.count = count
        self.every = every
        self.clock = clock
        self.last: dict[Refusal, float] = {}
        self.unlogged: dict[Refusal, int] = {}
        self.total = 0

    def __call__(self, why: Refusal) -> None:
        self.total += 1
        self.count(self.listener, str(why))
        now = self.clock()
        self.unlogged[why] = self.unlogged.get(why, 0) + 1
        last = self.last.get(why)
        if last is not None and now - last < self.every:
            return
        self.last[why] = now
        count = self.unlogged.pop(why)
        since = f" in the last {now - last:.0f} s" if last is not None else ""
        log.warning(
            "%s listener: %d connection(s) closed or refused (%s)%s; limits: %d connections, "
            "%d header bytes, %g s for headers, %g s for a TLS handshake",
            self.listener,
            count,
            why,
            since,
            self.limits.max_connections,
            self.limits.header_bytes,
            self.limits.header_s,
            self.limits.handshake_s,
            extra=logs.fields("connections.refused", listener=self.listener, count=count),
        )


# The phases a request moves through, bound once: read on every request, and Python 3.11 reads
# an enum member from its class ten times slower than a global.
_IDLE, _HEADERS, _BUSY = Phase.IDLE, Phase.HEADERS, Phase.BUSY


def _answer(status: bytes, text: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: "
        + str(len(text)).encode()
        + b"\r\nconnection: close\r\n\r\n"
        + text
    )


_431 = _answer(b"431 Request Header Fields Too Large", b"the request's header section is too large")
_408 = _answer(b"408 Request Timeout", b"the request's headers did not arrive in time")


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the header section bounded in size and in time, an
    idle deadline from the start, and its phase kept in the pool."""

    def __init__(self, *, pool: Pool, slot: Slot, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pool = pool
        self.slot = slot
        self.header_bytes = 0
        self.header_timer: asyncio.TimerHandle | None = None
        self.refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.slot.abort = transport.abort
        self.pool.move(self.slot, _IDLE)
        # uvicorn arms the keep-alive deadline only after a response: a connection that never
        # sends a request would be kept for ever.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        super().data_received(data)
        if self.slot.phase is _HEADERS and not self.refused:
            self.header_bytes += len(data)
            if self.header_bytes > self.pool.limits.header_bytes:
                self._refuse(_431, Refusal.HEADER_TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.header_bytes = 0
        self.pool.move(self.slot, _HEADERS)
        self.header_timer = self.loop.call_later(self.pool.limits.header_s, self._too_slow)

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self.pool.move(self.slot, _BUSY)
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Idle, unless a pipelined request was waiting and has just been started.
        cycle = self.cycle
        self.pool.move(self.slot, _BUSY if cycle and not cycle.response_complete else _IDLE)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        # uvicorn cancels the keep-alive timer only when the connection ended cleanly; a timer
        # left behind holds the protocol, its transport and TLS buffers (over 100 KB) until it
        # fires, and a client that resets connections could grow the memory without bound.
        self._unset_keepalive_if_required()
        self.pool.drop(self.slot)
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """On a graceful stop: a connection with a request in progress is closed once it is
        answered (uvicorn's way); an idle one at once, and without the TLS goodbye, which a
        kept-alive client that reads nothing would make the stop wait for."""
        if self.slot.phase is _BUSY:
            super().shutdown()
        else:
            self.transport.abort()

    def _too_slow(self) -> None:
        self.header_timer = None
        if self.slot.phase is _HEADERS and not self.refused:
            self._refuse(_408, Refusal.HEADER_TIMEOUT)

    def _cancel_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _refuse(self, answer: bytes, why: Refusal) -> None:
        """Answer, close, and let go of what the parser holds."""
        self.refused = True
        self._cancel_header_timer()
        # Still counted (and the first to go when room is needed) until it is closed.
        self.pool.on_refused(why)
        self.transport.write(answer)
        # Read nothing more (a TLS close would go on reading, and dropping, what the client
        # still sends) and cut the connection off once the answer had time to leave.
        self.transport.pause_reading()
        self.loop.call_later(LINGER_S, self.transport.abort)
        self.parser = None  # type: ignore[assignment]
        self.headers = []
        self.url = b""


async def accept(
    listener: socket.socket,
    *,
    pool: Pool,
    ssl_context: ssl.SSLContext | None,
    make_http: Callable[[Slot], GuardedHttp],
) -> None:
    """Accept connections on ``listener`` until cancelled: count each in ``pool`` from the
    start (making room, or refusing it, at the bound), then make TLS with its own deadline and
    hand it to a ``GuardedHttp``. Accepting here, rather than in the event loop's server, is
    what lets a connection be counted, and closed, before its handshake is done."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()
    try:
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:  # out of descriptors or buffers: wait, then go on
                log.debug(
                    "cannot accept a connection: %s",
                    exc,
                    extra=logs.fields("connections.accept_failed"),
                )
                pool.on_refused(Refusal.ACCEPT_FAILED)
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            slot = Slot(conn.close)
            if not pool.admit(slot):
                conn.close()
                continue
            task = loop.create_task(_establish(conn, slot, pool, ssl_context, make_http))
            slot.abort = task.cancel  # until the handshake is done; then the transport's abort
            pending.add(task)
            task.add_done_callback(pending.discard)
    finally:
        for task in list(pending):
            task.cancel()


# After a failed accept (EMFILE, ENOBUFS), as the event loop's own server waits.
ACCEPT_RETRY_S = 0.1


async def _establish(
    conn: socket.socket,
    slot: Slot,
    pool: Pool,
    ssl_context: ssl.SSLContext | None,
    make_http: Callable[[Slot], GuardedHttp],
) -> None:
    loop = asyncio.get_running_loop()
    try:
        if ssl_context is None:
            await loop.connect_accepted_socket(lambda: make_http(slot), conn)
        else:
            await loop.connect_accepted_socket(
                lambda: make_http(slot),
                conn,
                ssl=ssl_context,
                ssl_handshake_timeout=pool.limits.handshake_s,
            )
    except asyncio.CancelledError:  # made room for another, or shutting down
        conn.close()
        raise
    except (OSError, ValueError, RuntimeError) as exc:  # ssl.SSLError and timeouts are OSErrors
        conn.close()
        if slot.phase is Phase.HANDSHAKE:
            pool.drop(slot)
            pool.on_refused(Refusal.HANDSHAKE_FAILED)
        log.debug(
            "a connection failed its TLS handshake: %r",
            exc,
            extra=logs.fields("connections.handshake_failed"),
        )


async def return_memory(
    logs: list[RefusalLog],
    *,
    every: float = TRIM_EVERY_S,
    trim: Callable[[], None] = heap.trim,
) -> None:
    """Until cancelled: hand freed memory back to the system after connections were refused
    (see TRIM_EVERY_S)."""
    seen = sum(log.total for log in logs)
    while True:
        await asyncio.sleep(every)
        total = sum(log.total for log in logs)
        if total != seen:
            seen = total
            trim()
