"""The metrics (metrics.py): what is counted, and with which labels."""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import (
    make_policy,
    make_request,
    make_review,
    make_service_entry,
    make_snapshot,
)
from tests.fakeapi import Cluster, FakeApiServer
from tests.live import issue_certs
from webhook.app import create_app
from webhook.audit import AuditLog
from webhook.runtime import Runtime


def test_findings_and_denials_are_counted_with_bounded_namespace_labels() -> None:
    """Decisions counted by code and outcome, denials by namespace: the first 100 namespaces
    get a label of their own, the rest share _other."""
    runtime = Runtime(audit=AuditLog([]))
    runtime.set_policy(make_policy())
    runtime.set_snapshot(make_snapshot(make_service_entry("stripe", "team-a", ["api.stripe.com"])))
    endpoint = create_app(runtime).fast_routes["/validate"]  # type: ignore[attr-defined]
    for i in range(105):
        request = make_request(make_service_entry("copy", f"ns-{i}", ["api.stripe.com"]))
        endpoint.decide(request)
    endpoint.decide(make_request(make_service_entry("ok", "ns-0", ["free.example.com"])))
    text = runtime.metrics.render().decode()
    assert (
        'seguard_admission_findings_total{code="ConflictServiceEntry",outcome="denied",'
        'webhook="validate"} 105.0'
    ) in text
    assert 'seguard_admission_denials_by_namespace_total{namespace="ns-0"} 1.0' in text
    assert 'seguard_admission_denials_by_namespace_total{namespace="ns-99"} 1.0' in text
    assert 'namespace="ns-100"' not in text
    assert 'seguard_admission_denials_by_namespace_total{namespace="_other"} 5.0' in text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"


def documented() -> dict[str, tuple[str, set[str]]]:
    """docs/metrics.md's table: series name -> (type, label names)."""
    rows: dict[str, tuple[str, set[str]]] = {}
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            # The label names are in backticks; their values, in parentheses, are not names.
            labels = set(re.findall(r"`([a-z_]+)`", re.sub(r"\([^)]*\)", "", cells[2])))
            rows[cells[0].strip("`")] = (cells[1], labels)
    return rows


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> str:
    """/metrics of a real `seguard serve` following a cluster, after a denial."""
    folder = tmp_path_factory.mktemp("scrape")
    api = FakeApiServer(Cluster())
    api.cluster.put(make_service_entry("held", "team-a", ["api.stripe.com"]))
    api.start()
    issue_certs(folder / "certs")
    port, ops = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "webhook.cli", "serve", "--kubeconfig",
            str(api.kubeconfig(folder / "kc")), "--cert-dir", str(folder / "certs"),
            "--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(ops),
            "--drain-seconds", "0", "--no-audit-stdout",
        ],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ops}/readyz", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "serve did not get ready"
                time.sleep(0.1)
        context = ssl.create_default_context(cafile=str(folder / "certs" / "ca.crt"))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        review = make_review(make_service_entry("copy", "team-b", ["api.stripe.com"]))
        conn.request("POST", "/validate", body=json.dumps(review), headers={"Content-Type": "application/json"})  # fmt: skip
        assert json.loads(conn.getresponse().read())["response"]["allowed"] is False
        conn.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{ops}/metrics", timeout=10) as answer:
            return str(answer.read().decode())
    finally:
        proc.terminate()
        proc.wait(30)
        api.stop()


def test_every_series_served_is_documented_and_every_documented_one_is_served(
    scrape: str,
) -> None:
    served: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(scrape):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {label for sample in family.samples for label in sample.labels} - {"le"}
        served[name] = (family.type, labels)
    table = documented()
    assert sorted(served) == sorted(table)
    for name, (kind, labels) in served.items():
        assert table[name][0] == kind, name
        assert labels <= table[name][1], f"{name}: labels {labels - table[name][1]} undocumented"


def test_no_created_series_and_the_process_is_described(scrape: str) -> None:
    assert "_created" not in scrape
    assert "\nprocess_resident_memory_bytes " in scrape
    assert (
        'seguard_admission_findings_total{code="ConflictServiceEntry",outcome="denied",webhook="validate"} 1.0'
        in scrape
    )
    assert 'seguard_registry_synced{kind="ServiceEntry"} 1.0' in scrape
