"""Living with a running server: policy reloads, certificate rotation and a SIGTERM drain."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.factories import make_review, make_service_entry
from tests.live import issue_certs, post, running
from webhook import certs

PATIENCE_S = 30.0  # liveness only


def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ConfigMapMount:
    """A folder laid out as kubelet mounts a ConfigMap: policy.yaml -> ..data/policy.yaml, and
    ..data -> a timestamped folder, swapped atomically on every update."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.version = 0
        (root / "policy.yaml").symlink_to("..data/policy.yaml")

    @property
    def path(self) -> Path:
        return self.root / "policy.yaml"

    def publish(self, document: dict[str, Any] | str) -> None:
        self.version += 1
        target = self.root / f"..2026_11_23_{self.version:04}"
        target.mkdir()
        text = document if isinstance(document, str) else yaml.safe_dump(document)
        (target / "policy.yaml").write_text(text)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(target.name)
        os.replace(tmp, self.root / "..data")


def policy(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "seguard.io/v1alpha1", "kind": "ServiceEntryPolicy", "spec": spec}


class Serve:
    """`seguard serve` in a subprocess, with clients for both ports."""

    def __init__(self, tmp_path: Path, *extra: str) -> None:
        self.tmp = tmp_path
        self.port = free_port()
        self.ops = free_port()
        cert_dir = tmp_path / "certs"
        issue_certs(cert_dir)
        self.ca = cert_dir / "ca.crt"
        self.audit = tmp_path / "audit.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webhook.cli", "serve", "--cert-dir", str(cert_dir), "--host", "127.0.0.1",
             "--port", str(self.port), "--metrics-port", str(self.ops), "--audit-file", str(self.audit),
             "--no-audit-stdout", *extra],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_for(lambda: self.ready()[0] == 200, "readiness")

    def ready(self) -> tuple[int, dict[str, Any]]:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.ops, timeout=5)
            conn.request("GET", "/readyz")
            response = conn.getresponse()
            body = json.loads(response.read())
            conn.close()
            return response.status, body
        except OSError:
            return 0, {}

    def metrics(self) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.ops, timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        return text

    def connection(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "localhost",
            self.port,
            context=ssl.create_default_context(cafile=str(self.ca)),
            timeout=10,
        )

    def validate(self, hosts: list[str]) -> dict[str, Any]:
        conn = self.connection()
        try:
            _, body = post(conn, "/validate", make_review(make_service_entry("w", "team-z", hosts)))
            response: dict[str, Any] = body["response"]
            return response
        finally:
            conn.close()

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err


def test_a_good_then_a_bad_policy_reload_under_a_running_server(tmp_path: Path) -> None:
    mount = ConfigMapMount(tmp_path / "config")
    mount.publish(policy(hosts={"publicSuffixWildcards": "Allow"}))
    serve = Serve(tmp_path, "--policy", str(mount.path), "--drain-seconds", "0")
    try:
        assert serve.validate(["*.com"])["allowed"] is True
        # A good change, through the ..data symlink swap: it takes effect without a restart.
        mount.publish(policy(hosts={"publicSuffixWildcards": "Deny"}))
        wait_for(lambda: serve.ready()[1]["policy"]["generation"] == 2, "generation 2")
        assert serve.validate(["*.com"])["allowed"] is False
        # A bad change: refused, the last good policy stays, and the error is visible.
        mount.publish(policy(hosts={"publicSuffixWildcards": "Deny"}, hostz={}))
        wait_for(lambda: serve.ready()[1]["policy"]["lastError"], "the refused reload")
        status, ready = serve.ready()
        assert status == 200
        assert ready["policy"]["generation"] == 2
        assert "spec.hostz" in ready["policy"]["lastError"]
        assert serve.validate(["*.com"])["allowed"] is False
        text = serve.metrics()
        assert "seguard_policy_reload_errors_total 1.0" in text
        assert "seguard_policy_last_reload_ok 0.0" in text
        records = [json.loads(line) for line in serve.audit.read_text().splitlines()]
        rejected = [r for r in records if r["event"] == "policy.rejected"]
        assert len(rejected) == 1
        assert rejected[0]["policyGeneration"] == 2
        assert "spec.hostz" in rejected[0]["error"]
        denials = [
            r for r in records if r["event"] == "admission.decision" and r["decision"] == "denied"
        ]
        assert {r["policyGeneration"] for r in denials} == {2}
    finally:
        _, err = serve.stop()
    assert err.count("policy reload refused") == 1, "one clear error, not one per poll"


def _leaf(cert_dir: Path, *, mismatched_key: bool = False) -> int:
    """Rotate tls.crt and tls.key in place, signed by the same CA; return the new serial."""
    ca_cert = x509.load_pem_x509_certificate((cert_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((cert_dir / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    _, leaf = certs.issue(dns_names=["localhost"], ip_addresses=["127.0.0.1"], ca=(ca_cert, ca_key))
    key = leaf.key_pem
    if mismatched_key:
        key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    (cert_dir / "tls.key").write_bytes(key)
    (cert_dir / "tls.crt").write_bytes(leaf.cert_pem)
    return x509.load_pem_x509_certificate(leaf.cert_pem).serial_number


def _served_serial(port: int, ca: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_certificate_rotation_drops_no_request_and_no_kept_alive_connection(tmp_path: Path) -> None:
    with running(tmp_path, reload_every=0.1) as live:
        ca = live.cert_dir / "ca.crt"
        before = _served_serial(live.port, ca)
        failures: list[str] = []
        counts = {"kept": 0, "fresh": 0}
        stop = threading.Event()

        def kept_alive() -> None:
            conn = live.connection()
            conn.connect()
            sock = conn.sock
            while not stop.is_set():
                try:
                    status, _ = post(
                        conn,
                        "/validate",
                        make_review(make_service_entry("k", "team-k", ["k.example.com"])),
                    )
                    assert status == 200
                    assert conn.sock is sock, "the kept-alive connection was dropped"
                    counts["kept"] += 1
                except Exception as exc:
                    failures.append(f"kept-alive: {exc!r}")
                    return
            conn.close()

        def fresh() -> None:
            while not stop.is_set():
                try:
                    status, _ = live.call(
                        "/validate",
                        make_review(make_service_entry("f", "team-f", ["f.example.com"])),
                    )
                    assert status == 200
                    counts["fresh"] += 1
                except Exception as exc:
                    failures.append(f"new connection: {exc!r}")

        threads = [threading.Thread(target=kept_alive), threading.Thread(target=fresh)]
        for thread in threads:
            thread.start()
        wait_for(lambda: counts["kept"] > 20 and counts["fresh"] > 5, "traffic before the rotation")
        # A rotation caught half-way (new certificate, key not yet matching) is not loaded.
        _leaf(live.cert_dir, mismatched_key=True)
        wait_for(
            lambda: live.runtime.metrics.certificate_errors._value.get() >= 1, "the refused pair"
        )
        assert _served_serial(live.port, ca) == before
        serial = _leaf(live.cert_dir)
        wait_for(
            lambda: _served_serial(live.port, ca) == serial,
            "the new certificate on new connections",
        )
        at_rotation = dict(counts)
        wait_for(
            lambda: (
                counts["kept"] > at_rotation["kept"] + 20
                and counts["fresh"] > at_rotation["fresh"] + 5
            ),
            "traffic after",
        )
        stop.set()
        for thread in threads:
            thread.join(30)
    assert failures == []
    assert serial != before


def test_sigterm_drains_with_zero_failed_requests(tmp_path: Path) -> None:
    serve = Serve(tmp_path, "--drain-seconds", "2")
    failures: list[str] = []
    closes = {"seen": 0}
    answered = {"n": 0}
    unready_at: list[float] = []
    stop = threading.Event()

    def caller() -> None:
        conn = serve.connection()
        while not stop.is_set():
            try:
                conn.request(
                    "POST",
                    "/validate",
                    body=json.dumps(
                        make_review(make_service_entry("d", "team-d", ["d.example.com"]))
                    ),
                    headers={"Content-Type": "application/json"},
                )
                response = conn.getresponse()
                body = json.loads(response.read())
                assert response.status == 200
                assert body["response"]["allowed"] is True
                answered["n"] += 1
                if response.getheader("connection", "").lower() == "close":
                    closes["seen"] += 1
                    conn.close()
                    conn = serve.connection()
            except Exception as exc:
                failures.append(repr(exc))
                return
        conn.close()

    thread = threading.Thread(target=caller)
    thread.start()
    wait_for(lambda: answered["n"] > 20, "traffic before SIGTERM")
    serve.proc.send_signal(signal.SIGTERM)

    def unready() -> bool:
        if serve.ready()[0] == 503:
            unready_at.append(time.monotonic())
            return True
        return False

    wait_for(unready, "the server to go unready")
    # The API server stops routing to an unready endpoint; until then requests keep coming.
    before = answered["n"]
    wait_for(lambda: answered["n"] > before + 10, "answers while draining")
    stop.set()
    thread.join(30)
    code, err = serve.stop()
    assert failures == []
    assert closes["seen"] >= 1, "answers while draining must ask the caller to reconnect"
    assert code == 0, err
