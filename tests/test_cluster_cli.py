"""The command line against a cluster: `registry`, `check` and `serve` with --kubeconfig, here
against the fake API server (the e2e suite does the same against a real one)."""

from __future__ import annotations

import http.client
import json
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.factories import make_namespace, make_review, make_service, make_service_entry
from tests.fakeapi import Cluster, FakeApiServer

PATIENCE_S = 30.0


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    cluster = Cluster()
    cluster.put(make_namespace("bookinfo"))
    cluster.put(make_service("reviews", "bookinfo"))
    cluster.put(make_service_entry("stripe", "team-a", ["api.stripe.com"]))
    server = FakeApiServer(cluster)
    server.start()
    yield server
    server.stop()


def seguard(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook.cli", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_registry_prints_the_clusters_hostnames(fake: FakeApiServer, tmp_path: Path) -> None:
    result = seguard("registry", "--kubeconfig", str(fake.kubeconfig(tmp_path / "kc")))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["api.stripe.com", "reviews.bookinfo.svc.cluster.local"]


def test_registry_says_clearly_when_istio_is_not_installed(
    fake: FakeApiServer, tmp_path: Path
) -> None:
    fake.cluster.missing.add("ServiceEntry")
    result = seguard("registry", "--kubeconfig", str(fake.kubeconfig(tmp_path / "kc")))
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["reviews.bookinfo.svc.cluster.local"]
    assert "the ServiceEntry CRD is not installed" in result.stderr


def test_registry_refused_by_rbac_is_one_line_naming_verb_and_resource(
    fake: FakeApiServer, tmp_path: Path
) -> None:
    fake.cluster.forbidden.add(("Service", "list"))
    result = seguard("registry", "--kubeconfig", str(fake.kubeconfig(tmp_path / "kc")))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "RBAC forbids list on services" in result.stderr


def test_registry_with_an_unreachable_cluster_is_one_line(tmp_path: Path) -> None:
    server = FakeApiServer()
    server.start()
    kubeconfig = server.kubeconfig(tmp_path / "kc")
    server.stop()
    result = seguard("registry", "--kubeconfig", str(kubeconfig))
    assert result.returncode == 2
    assert result.stderr.startswith("seguard: error: cannot reach the API server")
    assert result.stderr.count("\n") == 1


def test_check_judges_manifests_against_the_live_cluster(
    fake: FakeApiServer, tmp_path: Path
) -> None:
    manifest = tmp_path / "se.yaml"
    manifest.write_text(yaml.safe_dump(make_service_entry("copy", "team-b", ["api.stripe.com"])))
    result = seguard(
        "check", str(manifest), "--kubeconfig", str(fake.kubeconfig(tmp_path / "kc")), "-o", "json"
    )
    assert result.returncode == 1
    assert json.loads(result.stdout)[0]["reasons"] == ["ConflictServiceEntry"]


def _get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _validate(port: int, ca: Path, review: dict[str, Any]) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    try:
        conn.request(
            "POST",
            "/validate",
            body=json.dumps(review),
            headers={"Content-Type": "application/json"},
        )
        answer: dict[str, Any] = json.loads(conn.getresponse().read())["response"]
        return answer
    finally:
        conn.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_serve_follows_the_cluster(fake: FakeApiServer, tmp_path: Path) -> None:
    port, ops = _free_port(), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "webhook.cli", "serve", "--kubeconfig", str(fake.kubeconfig(tmp_path / "kc")),
         "--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(ops), "--no-audit-stdout",
         "--drain-seconds", "0"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + PATIENCE_S
        ready: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                status, ready = _get(ops, "/readyz")
            except OSError:
                time.sleep(0.1)
                continue
            if status == 200:
                break
            time.sleep(0.1)
        assert ready.get("ready") is True, ready
        assert ready["registry"]["synced"] == {
            "Namespace": True,
            "Service": True,
            "ServiceEntry": True,
        }
        ca = tmp_path / "certs" / "ca.crt"
        review = make_review(make_service_entry("copy", "team-b", ["api.stripe.com"]))
        assert _validate(port, ca, review)["allowed"] is False
        # The owner deletes theirs: the host is free again, without a restart.
        fake.cluster.delete("ServiceEntry", "team-a", "stripe")
        deadline = time.monotonic() + PATIENCE_S
        while _validate(port, ca, review)["allowed"] is False and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _validate(port, ca, review)["allowed"] is True
        # A Service created later makes a ServiceEntry with its name conflict.
        fake.cluster.put(make_service("payments", "billing"))
        taken = make_review(
            make_service_entry("p", "team-b", ["payments.billing.svc.cluster.local"])
        )
        deadline = time.monotonic() + PATIENCE_S
        while "ConflictKubernetesService" not in _validate(port, ca, taken).get(
            "auditAnnotations", {}
        ).get("reasons", ""):
            assert time.monotonic() < deadline, "the new Service never reached the registry"
            time.sleep(0.05)
        conn = http.client.HTTPConnection("127.0.0.1", ops, timeout=5)
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
        conn.close()
        assert 'seguard_registry_synced{kind="ServiceEntry"} 1.0' in metrics
        assert 'seguard_registry_watch_restarts_total{kind="Service"}' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
