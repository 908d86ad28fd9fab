"""The optional istiod source: registryz entries become claims, merged with the others."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.factories import make_policy, make_request, make_service_entry
from webhook.core import review
from webhook.core.registry import RegistryBuilder, Snapshot
from webhook.sources import istiod
from webhook.sources.store import RegistryStore

# What istiod's /debug/registryz lists: a remote cluster's Service, a ServiceEntry with two hosts
# (one entry per host), and an entry with an unusable hostname.
REGISTRYZ: list[dict[str, Any]] = [
    {
        "hostname": "ledger.payments.svc.cluster.local",
        "creationTime": "2026-01-01T00:00:00Z",
        "clusterVIPs": {"Addresses": {"remote": ["10.96.40.3", "fd00:96::40:3"]}},
        "defaultAddress": "10.96.40.3",
        "Attributes": {
            "ServiceRegistry": "Kubernetes",
            "Name": "ledger",
            "Namespace": "payments",
            "ExportTo": None,
            "ObjectName": "ledger",
        },
    },
    {
        "hostname": "api.partner.example",
        "Attributes": {
            "ServiceRegistry": "External",
            "Name": "api.partner.example",
            "Namespace": "team-r",
            "ExportTo": {"*": {}},
            "ObjectName": "partner",
        },
    },
    {
        "hostname": "files.partner.example",
        "Attributes": {
            "ServiceRegistry": "External",
            "Name": "files.partner.example",
            "Namespace": "team-r",
            "ExportTo": {"*": {}},
            "ObjectName": "partner",
        },
    },
    {
        "hostname": "1.2.3.4",
        "Attributes": {"ServiceRegistry": "External", "Namespace": "x", "ObjectName": "ip"},
    },
]


class _Istiod(BaseHTTPRequestHandler):
    status = 200
    seen_auth: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        type(self).seen_auth.append(self.headers.get("Authorization", ""))
        if self.path != "/debug/registryz":
            self.send_error(404)
            return
        body = json.dumps(REGISTRYZ).encode() if self.status == 200 else b"forbidden"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def fake_istiod() -> Iterator[tuple[str, type[_Istiod]]]:
    handler = type("Handler", (_Istiod,), {"status": 200, "seen_auth": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_registryz_entries_become_claims() -> None:
    claims = {c.key: c for c in istiod.claims_from_registryz(REGISTRYZ)}
    assert set(claims) == {("Service", "payments", "ledger"), ("ServiceEntry", "team-r", "partner")}
    ledger = claims[("Service", "payments", "ledger")]
    assert ledger.hosts == ("ledger.payments.svc.cluster.local",)
    assert ledger.aliases == ("ledger.payments", "ledger.payments.svc")
    assert ledger.cluster_ips == ("10.96.40.3", "fd00:96::40:3")
    partner = claims[("ServiceEntry", "team-r", "partner")]
    assert partner.hosts == ("api.partner.example", "files.partner.example")
    assert partner.export_to == ("*",)
    assert partner.source == "istiod"


def test_hosts_only_istiod_knows_count_as_taken(
    fake_istiod: tuple[str, type[_Istiod]], tmp_path: Path
) -> None:
    url, handler = fake_istiod
    token = tmp_path / "token"
    token.write_text("sa-token\n")
    snapshots: list[Snapshot] = []
    store = RegistryStore(cluster_domain="cluster.local", on_snapshot=snapshots.append)
    poller = istiod.IstiodPoller(url, store)
    assert istiod.fetch(url, token_file=token)  # the service account token is sent
    assert handler.seen_auth[-1] == "Bearer sa-token"
    poller.poll_once()
    snapshot = store.snapshot()
    verdict = review.validate(
        make_request(make_service_entry("copy", "team-b", ["files.partner.example"])),
        policy=make_policy(),
        snapshot=snapshot,
    )
    assert verdict.codes == ("ConflictServiceEntry",)
    remote = review.validate(
        make_request(make_service_entry("x", "team-b", ["ledger.payments"])),
        policy=make_policy(),
        snapshot=snapshot,
    )
    assert remote.codes == ("ConflictKubernetesService",)
    # A remote Service's cluster IP, as istiod lists it, is a Service's: no entry may target it.
    aimed = make_service_entry(
        "aimed", "team-b", ["ledger.partner.example"], resolution="STATIC",
        endpoints=[{"address": "fd00:96::40:3"}],
    )  # fmt: skip
    verdict = review.validate(make_request(aimed), policy=make_policy(), snapshot=snapshot)
    assert verdict.codes == ("TargetDenied",)
    assert "payments/ledger" in verdict.message


def test_another_source_keeps_the_objects_it_holds() -> None:
    builder = RegistryBuilder.bulk(
        [("kubernetes", make_service_entry("partner", "team-r", ["api.partner.example"]))],
        cluster_domain="cluster.local",
    )
    merged = builder.replace_claims("istiod", istiod.claims_from_registryz(REGISTRYZ))
    partner = merged.claims[("ServiceEntry", "team-r", "partner")]
    assert partner.source == "kubernetes"
    assert partner.hosts == ("api.partner.example",)
    assert merged.claims[("Service", "payments", "ledger")].source == "istiod"
    # A later poll replaces only istiod's claims.
    again = merged.replace_claims("istiod", [])
    assert set(again.claims) == {("ServiceEntry", "team-r", "partner")}


def test_a_403_says_why_in_one_line(fake_istiod: tuple[str, type[_Istiod]]) -> None:
    url, handler = fake_istiod
    handler.status = 403
    with pytest.raises(
        istiod.IstiodError, match=r"from Istio 1\.28\.4 on, debug endpoints answer only"
    ):
        istiod.fetch(url)
    result = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "registry", "--istiod-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "1.28.4" in result.stderr


def test_registry_command_merges_istiod_entries(fake_istiod: tuple[str, type[_Istiod]]) -> None:
    url, _ = fake_istiod
    result = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "registry", "--istiod-url", url, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = json.loads(result.stdout)
    assert {(r["hostname"], r["source"]) for r in rows} == {
        ("ledger.payments.svc.cluster.local", "istiod"),
        ("api.partner.example", "istiod"),
        ("files.partner.example", "istiod"),
    }


@pytest.mark.parametrize(
    ("raw", "created"),
    [
        pytest.param("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", id="as-the-api-server-writes-it"),
        pytest.param("2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00Z", id="fractions-of-a-second-dropped"),
        pytest.param("2026-01-01T02:00:00+02:00", "2026-01-01T00:00:00Z", id="an-offset-made-utc"),
        pytest.param("0001-01-01T00:00:00Z", "", id="gos-zero-time-is-unknown"),
        pytest.param("yesterday", "", id="not-a-time"),
    ],
)  # fmt: skip
def test_istiods_creation_times_compare_as_the_api_servers_do(raw: str, created: str) -> None:
    entry = {**REGISTRYZ[1], "creationTime": raw}
    [claim] = istiod.claims_from_registryz([entry])
    assert claim.created == created
