"""Two listeners in one event loop: HTTPS for the webhook, plain HTTP for operations (shell)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from webhook import connections, logs
from webhook.connections import Limits, Pool, RefusalLog

log = logging.getLogger("seguard.server")

# Idle connections are kept a little longer than the API server keeps them (see
# connections.IDLE_S).
KEEP_ALIVE_S = connections.IDLE_S
# The operations port serves the kubelet's probes and a few scrapers: 256 connections is far
# more than they open, and bounds what any other pod can hold there.
OPS_LIMITS = Limits(max_connections=256)
# How long a graceful stop waits for requests in flight before closing connections.
GRACEFUL_S = 10


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to us (two servers share one process), and whose
    connections go through a bounded ``Pool`` (see webhook.connections)."""

    def __init__(self, config: uvicorn.Config, pool: Pool) -> None:
        super().__init__(config)
        self.pool = pool
        self.acceptors: list[asyncio.Task[None]] = []

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        assert sockets is not None  # WebhookServer binds its own sockets
        config = self.config

        def make_http(slot: connections.Slot) -> connections.GuardedHttp:
            return connections.GuardedHttp(
                pool=self.pool,
                slot=slot,
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
            )

        # Connections are accepted by our own loop, not the event loop's server: see
        # connections.accept.
        self.servers = []
        self.acceptors = [
            asyncio.create_task(
                connections.accept(
                    sock, pool=self.pool, ssl_context=config.ssl, make_http=make_http
                )
            )
            for sock in sockets
        ]
        self.started = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for acceptor in self.acceptors:
            acceptor.cancel()
        for acceptor in self.acceptors:
            with contextlib.suppress(asyncio.CancelledError):
                await acceptor
        self.pool.close_pending()
        await super().shutdown(sockets)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound now so a busy port fails at startup with a clear message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _config(
    app: FastAPI, sock: socket.socket, ssl_context: ssl.SSLContext | None
) -> uvicorn.Config:
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools",
        lifespan="off",
        access_log=False,
        log_config=None,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_S,
        server_header=False,
        # The API server calls us directly: no proxy, and no client may set its own address.
        proxy_headers=False,
        date_header=False,
    )
    config.load()
    # Our own context, so the certificate can be reloaded in place (load_cert_chain on a live
    # context affects new handshakes only; established connections keep going).
    config.ssl = ssl_context
    return config


@dataclass
class Listeners:
    webhook: socket.socket
    ops: socket.socket

    @property
    def webhook_port(self) -> int:
        return int(self.webhook.getsockname()[1])

    @property
    def ops_port(self) -> int:
        return int(self.ops.getsockname()[1])


class WebhookServer:
    """Both listeners, started and stopped together."""

    def __init__(
        self,
        *,
        webhook_app: FastAPI,
        ops_app: FastAPI,
        listeners: Listeners,
        ssl_context: ssl.SSLContext,
        limits: Limits | None = None,
        on_refused: Callable[[str, str], None] | None = None,
    ) -> None:
        """``on_refused(listener, reason)`` counts each connection closed or refused by the
        limits (webhook.connections.Refusal)."""
        self.listeners = listeners
        self.ssl_context = ssl_context
        self.limits = limits or Limits()
        count = on_refused or (lambda _listener, _reason: None)
        self.refusals = [
            RefusalLog("webhook", self.limits, count),
            RefusalLog("operations", OPS_LIMITS, count),
        ]
        self.pools = {
            "webhook": Pool(self.limits, self.refusals[0]),
            "operations": Pool(OPS_LIMITS, self.refusals[1]),
        }
        self.https = _Server(
            _config(webhook_app, listeners.webhook, ssl_context), self.pools["webhook"]
        )
        self.http = _Server(_config(ops_app, listeners.ops, None), self.pools["operations"])
        self.stopping = asyncio.Event()

    @property
    def started(self) -> bool:
        return bool(self.https.started and self.http.started)

    def stop(self) -> None:
        self.https.should_exit = True
        self.http.should_exit = True
        self.stopping.set()

    async def serve(
        self,
        *,
        on_started: Callable[[], None] | None = None,
        on_signal: Callable[[int], Coroutine[Any, Any, None]] | None = None,
        background: list[Callable[[], Coroutine[Any, Any, None]]] | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        signal_tasks: set[asyncio.Task[None]] = set()

        def handle(sig: int) -> None:
            if self.stopping.is_set():
                return
            log.info(
                "received %s",
                signal.Signals(sig).name,
                extra=logs.fields("server.signal", signal=signal.Signals(sig).name),
            )
            if on_signal is None:
                self.stop()
            else:
                task = loop.create_task(on_signal(sig))
                signal_tasks.add(task)
                task.add_done_callback(signal_tasks.discard)

        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, handle, sig)
        tasks = [
            asyncio.create_task(self.https.serve(sockets=[self.listeners.webhook])),
            asyncio.create_task(self.http.serve(sockets=[self.listeners.ops])),
        ]
        extra = [asyncio.create_task(job()) for job in background or []]
        extra.append(asyncio.create_task(connections.return_memory(self.refusals)))
        if on_started is not None:
            while not self.started and not any(t.done() for t in tasks):
                await asyncio.sleep(0.01)
            if self.started:
                on_started()
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in extra:
                task.cancel()
            for task in extra:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main`` on uvloop when it is installed (faster TLS and sockets), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        asyncio.run(main())
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
