"""Two replicas behind one address, and two creates of one host at the same moment.

Each replica judges against its own view of the registry, which learns of a new ServiceEntry only
after the API server has stored it and the watch has delivered it. Two creates of the same host,
from two namespaces, that reach the two replicas within that window are both admitted: neither
replica can see the other's. This test shows the race, and that the periodic scan then finds the
duplicate and names the younger entry. (docs/hardening.md, "Two replicas and the race".)
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from pathlib import Path

from tests.factories import make_policy, make_review, make_service_entry, make_snapshot
from tests.live import issue_certs, running
from webhook.core.scan import scan


class RoundRobin:
    """A TCP proxy on one address that hands connections to the backends in turn (TLS passes
    through untouched, as through a Service's virtual IP)."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.turn = 0
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            backend = socket.create_connection(
                ("127.0.0.1", self.backends[self.turn % len(self.backends)])
            )
            self.turn += 1
            self.open += [client, backend]
            for a, b in ((client, backend), (backend, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            sink.close()

    def close(self) -> None:
        self.listener.close()
        for sock in self.open:
            sock.close()


def create(
    port: int, ca: Path, namespace: str, results: dict[str, bool], barrier: threading.Barrier
) -> None:
    review = make_review(
        make_service_entry("payments", namespace, ["api.payments.example.com"]),
        uid=f"uid-{namespace}",
    )
    conn = http.client.HTTPSConnection(
        "localhost", port, context=ssl.create_default_context(cafile=str(ca)), timeout=10
    )
    conn.connect()
    barrier.wait()  # both requests leave together
    conn.request(
        "POST", "/validate", body=json.dumps(review), headers={"Content-Type": "application/json"}
    )
    results[namespace] = json.loads(conn.getresponse().read())["response"]["allowed"]
    conn.close()


def test_two_replicas_admit_two_concurrent_creates_and_the_scan_finds_the_duplicate(
    tmp_path: Path,
) -> None:
    cert_dir = tmp_path / "certs"
    issue_certs(cert_dir)
    registry = make_snapshot()  # neither replica has seen either ServiceEntry yet
    with (
        running(tmp_path / "a", snapshot=registry, cert_dir=cert_dir) as first,
        running(tmp_path / "b", snapshot=registry, cert_dir=cert_dir) as second,
    ):
        proxy = RoundRobin([first.port, second.port])
        results: dict[str, bool] = {}
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(
                target=create, args=(proxy.port, cert_dir / "ca.crt", ns, results, barrier)
            )
            for ns in ("team-a", "team-b")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        proxy.close()
        served = [
            srv.runtime.metrics.admission.count("validate", "allowed") for srv in (first, second)
        ]
    assert results == {"team-a": True, "team-b": True}, "both creates got in: the race"
    assert served == [1, 1], "each replica judged one of the two"
    # Both are stored; the next scan (oldest owner wins) reports the younger one.
    stored = make_snapshot(
        make_service_entry(
            "payments",
            "team-a",
            ["api.payments.example.com"],
            metadata={"creationTimestamp": "2026-11-23T10:00:00Z"},
        ),
        make_service_entry(
            "payments",
            "team-b",
            ["api.payments.example.com"],
            metadata={"creationTimestamp": "2026-11-23T10:00:01Z"},
        ),
    )
    [violation] = scan(stored, make_policy())
    assert (violation.namespace, violation.finding.code.value) == ("team-b", "ConflictServiceEntry")
    assert violation.finding.owner is not None
    assert violation.finding.owner.namespace == "team-a"
