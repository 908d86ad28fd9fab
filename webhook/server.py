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

log = logging.getLogger("seguard.server")

# The API server keeps idle connections to webhooks open for up to 90 s (Go's
# http.Transport IdleConnTimeout). If we closed first, it could send a request down a connection
# we are closing and see a failed call; so we keep idle connections a little longer than it does.
KEEP_ALIVE_S = 120
# How long a graceful stop waits for requests in flight before closing connections.
GRACEFUL_S = 10


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to us: two servers share one process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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
    ) -> None:
        self.listeners = listeners
        self.ssl_context = ssl_context
        self.https = _Server(_config(webhook_app, listeners.webhook, ssl_context))
        self.http = _Server(_config(ops_app, listeners.ops, None))
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
            log.info("received %s", signal.Signals(sig).name)
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
