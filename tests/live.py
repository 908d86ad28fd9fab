"""A real seguard server for tests: uvicorn over TLS on loopback, in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvloop

from tests.factories import empty_snapshot
from webhook import certs, reload, server, supervise, tls
from webhook.app import JUDGES, create_app, create_ops_app
from webhook.audit import COMMIT_DEADLINE_S, MAX_PENDING, AuditLog, FileSink, Sink
from webhook.connections import Limits
from webhook.core.admission import AdmissionRequest
from webhook.core.policy import Policy
from webhook.core.policyfile import default_policy
from webhook.core.registry import Snapshot
from webhook.core.review import Judge, Verdict
from webhook.metrics import Metrics
from webhook.runtime import Runtime


@dataclass
class LiveServer:
    runtime: Runtime
    web: server.WebhookServer
    cert_dir: Path
    audit_path: Path
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop
    errors: list[BaseException] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.web.listeners.webhook_port

    @property
    def ops_port(self) -> int:
        return self.web.listeners.ops_port

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert_dir / tls.CA_FILE))

    def connection(self) -> http.client.HTTPSConnection:
        """One keep-alive connection, as the API server holds them."""
        return http.client.HTTPSConnection(
            "localhost", self.port, context=self.client_context(), timeout=10
        )

    def call(
        self, path: str, body: bytes | dict[str, Any], *, content_type: str = "application/json"
    ) -> tuple[int, dict[str, Any]]:
        """One request on a connection of its own."""
        conn = self.connection()
        try:
            return post(conn, path, body, content_type=content_type)
        finally:
            conn.close()

    def audit_records(self) -> list[dict[str, Any]]:
        lines = self.audit_path.read_bytes().splitlines() if self.audit_path.exists() else []
        return [orjson.loads(line) for line in lines]


def issue_certs(cert_dir: Path) -> None:
    ca, leaf = certs.issue(dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    certs.write_pairs(cert_dir, ca, leaf)


@contextlib.contextmanager
def running(
    tmp_path: Path,
    *,
    policy: Policy | None = None,
    snapshot: Snapshot | None = None,
    max_body: int | None = None,
    body_deadline_s: float | None = None,
    reload_every: float | None = None,
    client_ca: Path | None = None,
    on_denied: Callable[[AdmissionRequest, Verdict], None] | None = None,
    cert_dir: Path | None = None,
    limits: Limits | None = None,
    extra_sinks: Sequence[Sink] = (),
    audit_deadline_s: float | None = None,
    audit_max_pending: int | None = None,
    threads: supervise.Health | None = None,
    judges: Mapping[str, Judge] = JUDGES,
) -> Iterator[LiveServer]:
    """A server on loopback; with ``reload_every``, its certificate is re-read that often."""
    if cert_dir is None:
        cert_dir = tmp_path / "certs"
        issue_certs(cert_dir)
    audit_path = tmp_path / "audit.log"
    metrics = Metrics()
    runtime = Runtime(
        audit=AuditLog(
            [FileSink(str(audit_path)), *extra_sinks],
            on_stall=metrics.audit_stall,
            deadline_s=audit_deadline_s if audit_deadline_s is not None else COMMIT_DEADLINE_S,
            max_pending=audit_max_pending if audit_max_pending is not None else MAX_PENDING,
        ),
        metrics=metrics,
        threads=threads if threads is not None else supervise.HEALTH,
    )
    runtime.audit.start()  # group commit, as `seguard serve` runs it
    if max_body is not None:
        runtime.max_body = max_body
    if body_deadline_s is not None:
        runtime.body_deadline_s = body_deadline_s
    chosen = policy or default_policy()
    runtime.set_policy(chosen)
    runtime.set_snapshot(snapshot or empty_snapshot(chosen.cluster_domain))
    listeners = server.Listeners(
        webhook=server.bind("127.0.0.1", 0), ops=server.bind("127.0.0.1", 0)
    )
    loop = uvloop.new_event_loop()
    holder: dict[str, server.WebhookServer] = {}
    started = threading.Event()
    errors: list[BaseException] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        context = tls.server_context(cert_dir, client_ca=client_ca)
        web = server.WebhookServer(
            webhook_app=create_app(runtime, on_denied=on_denied, judges=judges),
            ops_app=create_ops_app(runtime),
            listeners=listeners,
            ssl_context=context,
            limits=limits,
            on_refused=runtime.metrics.connection_refused,
        )
        runtime.metrics.connections(web.pools)
        holder["web"] = web
        background = []
        if reload_every is not None:
            reloader = reload.CertificateReloader(
                cert_dir, context, on_error=runtime.metrics.certificate_errors.inc
            )
            background.append(
                lambda: reload.poll({"policy-reloader": reloader.check}, every=reload_every)
            )
        try:
            loop.run_until_complete(web.serve(on_started=started.set, background=background))
        except BaseException as exc:  # reported by the test that owns the server
            errors.append(exc)
            started.set()
        finally:
            loop.close()

    thread = threading.Thread(target=main, name="seguard-test-server", daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("the test server did not start")
    if errors:
        raise RuntimeError(f"the test server failed: {errors[0]!r}")
    live = LiveServer(runtime, holder["web"], cert_dir, audit_path, thread, loop, errors)
    try:
        yield live
    finally:
        loop.call_soon_threadsafe(live.web.stop)
        thread.join(30)
        runtime.audit.close()


def post(
    conn: http.client.HTTPConnection,
    path: str,
    body: bytes | dict[str, Any],
    *,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    conn.request("POST", path, body=data, headers={"Content-Type": content_type})
    response = conn.getresponse()
    raw = response.read()
    return response.status, orjson.loads(raw) if raw else {}
