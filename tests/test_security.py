"""No secret ever reaches a log or an audit record: tokens, private keys, client certificates."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.factories import make_review, make_service_entry
from tests.fakeapi import Cluster, FakeApiServer
from tests.live import issue_certs

TOKEN = "s3cr3t-token-0123456789abcdef"


def test_secrets_stay_out_of_logs_and_audit_records(tmp_path: Path) -> None:
    cluster = Cluster()
    cluster.forbidden.add(("Service", "watch"))  # errors get logged: they must not carry the token
    fake = FakeApiServer(cluster)
    fake.start()
    kubeconfig = fake.kubeconfig(tmp_path / "kubeconfig")
    config = yaml.safe_load(kubeconfig.read_text())
    config["users"][0]["user"]["token"] = TOKEN
    kubeconfig.write_text(yaml.safe_dump(config))
    cert_dir = tmp_path / "certs"
    issue_certs(cert_dir)
    key_lines = [
        line
        for line in (cert_dir / "tls.key").read_text().splitlines()
        if "PRIVATE KEY" not in line
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "webhook.cli", "-v", "serve", "--kubeconfig", str(kubeconfig), "--cert-dir", str(cert_dir),
         "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--audit-file", str(tmp_path / "audit.log"),
         "--drain-seconds", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(3)  # long enough to fail a few watches and log why
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        fake.stop()
    assert "RBAC forbids watch on services" in err  # the errors were logged ...
    everything = out + err + (tmp_path / "audit.log").read_text()
    assert TOKEN not in everything  # ... without the token
    for line in key_lines:
        assert line not in everything


def test_a_request_with_secrets_in_user_extra_is_audited_without_them(tmp_path: Path) -> None:
    from tests.live import post, running

    review = make_review(make_service_entry("copy", "team-b", ["*.com"]))
    review["request"]["userInfo"]["extra"] = {"authentication.kubernetes.io/credential-id": [TOKEN]}
    with running(tmp_path) as live:
        conn = live.connection()
        post(conn, "/validate", review)
        conn.close()
        records = live.audit_path.read_text()
    assert json.loads(records.splitlines()[0])["user"] == "alice"
    assert TOKEN not in records


def test_metrics_expose_no_secret(tmp_path: Path) -> None:
    from tests.live import running

    with running(tmp_path) as live:
        conn = http.client.HTTPConnection("127.0.0.1", live.ops_port, timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        key = (live.cert_dir / "tls.key").read_text().splitlines()[1]
    assert key not in text
