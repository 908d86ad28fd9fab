"""The audit trail end to end: rotation, `seguard audit`, and no record lost to a SIGKILL."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.factories import make_review, make_service_entry
from tests.live import issue_certs
from webhook.audit import AdmissionRecord, AuditLog, FileSink, rotated_files

PATIENCE_S = 30.0


def record(n: int, **fields: Any) -> AdmissionRecord:
    base: AdmissionRecord = {
        "schemaVersion": 1,
        "event": "admission.decision",
        "level": "warning",
        "time": "2026-11-23T10:00:00.000Z",
        "webhook": "validate",
        "uid": f"u{n}",
        "operation": "CREATE",
        "dryRun": False,
        "user": "alice",
        "groups": [],
        "namespace": "team-b",
        "name": f"se{n}",
        "kind": "ServiceEntry",
        "version": "v1",
        "hosts": ["api.stripe.com"],
        "decision": "denied",
        "mode": "Enforce",
        "exemption": None,
        "findings": [
            {
                "code": "ConflictServiceEntry",
                "host": "api.stripe.com",
                "owner": {"namespace": "team-a", "name": "stripe"},
            }
        ],
        "policyGeneration": 1,
    }
    base.update(fields)  # type: ignore[typeddict-item]
    return base


def test_the_file_rotates_by_size_and_keeps_a_bounded_number(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog([FileSink(str(path), max_bytes=2000, keep=3)])
    for n in range(60):
        log.write(record(n))
    log.close()
    files = rotated_files(str(path))
    assert [Path(f).name for f in files] == [
        "audit.log.3",
        "audit.log.2",
        "audit.log.1",
        "audit.log",
    ]
    assert all(Path(f).stat().st_size <= 2000 for f in files)
    uids = [orjson.loads(line)["uid"] for f in files for line in Path(f).read_bytes().splitlines()]
    assert uids == sorted(uids, key=lambda u: int(u[1:])), "oldest first, in order"
    assert uids[-1] == "u59"


def seguard_audit(*argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook.cli", "audit", *argv],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    path = tmp_path / "audit.log"
    now = datetime.now(UTC)
    recent = (now - timedelta(minutes=10)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    old = (now - timedelta(hours=5)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    log = AuditLog([FileSink(str(path), max_bytes=1500, keep=5)])
    log.write(record(1, time=old))
    log.write(record(2, time=recent))
    log.write(record(3, time=recent, user="bob", namespace="team-c"))
    log.write(
        record(4, time=recent, decision="warned", findings=[{"code": "DuplicateHost", "host": "h"}])
    )
    log.write(record(5, time=recent, dryRun=True))
    log.close()
    with path.open("ab") as handle:
        handle.write(b'{"schemaVersion":1,"event":"admission.deci')  # torn by a crash
    return path


@pytest.mark.parametrize(
    ("args", "uids"),
    [
        pytest.param([], ["u1", "u2", "u3", "u4", "u5"], id="everything-across-rotated-files"),
        pytest.param(["--since", "1h"], ["u2", "u3", "u4", "u5"], id="since-an-hour"),
        pytest.param(
            ["--since", "1h", "--code", "ConflictServiceEntry"],
            ["u2", "u3", "u5"],
            id="since-and-code",
        ),
        pytest.param(["--namespace", "team-c"], ["u3"], id="by-namespace"),
        pytest.param(["--user", "bob"], ["u3"], id="by-user"),
        pytest.param(["--decision", "warned"], ["u4"], id="by-decision"),
    ],
)
def test_seguard_audit_filters(trail: Path, args: list[str], uids: list[str]) -> None:
    result = seguard_audit("--file", str(trail), "-o", "json", *args)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["uid"] for line in result.stdout.splitlines()] == uids


def test_seguard_audit_table_reads_like_an_answer(trail: Path) -> None:
    result = seguard_audit("--file", str(trail), "--since", "1h", "--code", "ConflictServiceEntry")
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "TIME",
        "DECISION",
        "USER",
        "OBJECT",
        "HOSTS",
        "CODES",
        "OWNERS",
        "DRY-RUN",
    ]
    assert len(lines) == 4
    assert "team-b/se2" in lines[1]
    assert "team-a/stripe" in lines[1]
    assert lines[3].rstrip().endswith("yes")


def test_seguard_audit_reads_piped_logs(trail: Path) -> None:
    noise = b"2026-11-23 10:00:00,000 INFO seguard: a log line, not a record\n"
    logs = noise + b"".join(Path(name).read_bytes() for name in rotated_files(str(trail)))
    result = seguard_audit("-o", "json", "--user", "bob", stdin=logs)
    assert [json.loads(line)["uid"] for line in result.stdout.splitlines()] == ["u3"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        pytest.param(["--file", "/nonexistent/audit.log"], "no such audit file", id="missing-file"),
        pytest.param(["--file", "x", "--since", "yesterday"], "--since", id="bad-since"),
    ],
)
def test_seguard_audit_errors_are_one_line(args: list[str], fragment: str) -> None:
    result = seguard_audit(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert fragment in result.stderr


def test_sigkill_mid_flood_loses_no_denial_a_client_received(tmp_path: Path) -> None:
    cert_dir = tmp_path / "certs"
    issue_certs(cert_dir)
    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / "se.json").write_text(
        json.dumps(make_service_entry("stripe", "team-a", ["api.stripe.com"]))
    )
    audit = tmp_path / "audit.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "webhook.cli", "serve", "--cert-dir", str(cert_dir), "--registry-dir", str(registry),
         "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--audit-file", str(audit), "--no-audit-stdout"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    port = 0
    deadline = time.monotonic() + PATIENCE_S
    while not port and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "webhook on https://127.0.0.1:" in line:
            port = int(line.split("webhook on https://127.0.0.1:")[1].split(" ")[0])
    assert port, "the server did not start"
    context = ssl.create_default_context(cafile=str(cert_dir / "ca.crt"))
    received: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def flood(worker: int) -> None:
        conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=5)
        n = 0
        try:
            while not stop.is_set():
                uid = f"w{worker}-{n}"
                n += 1
                review = make_review(
                    make_service_entry(f"copy{n}", "team-b", ["api.stripe.com"]), uid=uid
                )
                try:
                    conn.request(
                        "POST",
                        "/validate",
                        body=json.dumps(review),
                        headers={"Content-Type": "application/json"},
                    )
                    answer = json.loads(conn.getresponse().read())["response"]
                except (OSError, http.client.HTTPException, ValueError):
                    return  # the server is gone
                if answer["allowed"] is False:
                    with lock:
                        received.append(uid)
        finally:
            conn.close()  # a socket left to the garbage collector is a ResourceWarning

    threads = [threading.Thread(target=flood, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + PATIENCE_S
    while len(received) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    stop.set()
    for thread in threads:
        thread.join(30)
    proc.stderr.close()
    assert len(received) >= 300
    lines = audit.read_bytes().splitlines()
    recorded = set()
    for raw in lines:
        try:
            recorded.add(orjson.loads(raw)["uid"])
        except orjson.JSONDecodeError:
            continue  # at most one torn line at the end
    missing = [uid for uid in received if uid not in recorded]
    assert missing == [], f"{len(missing)} denials answered but not in the audit file"


def test_a_torn_line_from_a_crash_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(orjson.dumps(record(1)) + b"\n" + b'{"schemaVersion":1,"uid":"torn')
    log = AuditLog([FileSink(str(path))])
    log.write(record(2))
    log.close()
    result = seguard_audit("--file", str(path), "-o", "json")
    assert [json.loads(line)["uid"] for line in result.stdout.splitlines()] == ["u1", "u2"]


def _replica_log(tmp_path: Path, name: str, hosts: list[str]) -> str:
    """What one replica's container log holds: a real ``seguard serve``'s standard output
    (audit records) and standard error (JSON log lines) in one stream, as the kubelet keeps
    them, after it refused an entry for each of ``hosts``."""
    folder = tmp_path / name
    folder.mkdir()
    issue_certs(folder / "certs")
    log = folder / "container.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "webhook.cli", "serve", "--cert-dir", str(folder / "certs"),
                "--registry-dir", str(folder), "--host", "127.0.0.1", "--port", "0",
                "--metrics-port", "0", "--drain-seconds", "0",
            ],
            cwd=folder, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            port = _webhook_port(log)
            context = ssl.create_default_context(cafile=str(folder / "certs" / "ca.crt"))
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
            for i, host in enumerate(hosts):
                review = make_review(
                    make_service_entry(f"e{i}", "team-a", [host]), uid=f"{name}-{i}"
                )
                conn.request("POST", "/validate", body=json.dumps(review), headers={"Content-Type": "application/json"})  # fmt: skip
                assert json.loads(conn.getresponse().read())["response"]["allowed"] is False
            conn.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    return log.read_text()


def _webhook_port(log: Path) -> int:
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "server.started":
                return int(json.loads(line)["webhook"].rsplit(":", 1)[1])
        time.sleep(0.05)
    raise AssertionError(f"serve did not start: {log.read_text()}")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
@pytest.mark.parametrize("flags", [["--prefix"], [], ["--prefix", "--timestamps"]])
def test_seguard_audit_reads_kubectl_logs_of_every_replica(
    tmp_path: Path, flags: list[str]
) -> None:
    """Two replicas' logs through a real ``kubectl logs -l ... --tail=-1`` (which reads only 10
    lines a pod without it): every refusal of both is found, and nothing else is taken for one."""
    from tests.fakeapi import Cluster, FakeApiServer

    server = FakeApiServer(Cluster())
    server.start()
    try:
        for name, hosts in (("seguard-a", ["*.com", "*.net"]), ("seguard-b", ["*.org"])):
            logs = _replica_log(tmp_path, name, hosts)
            assert any(line.startswith('{"time"') for line in logs.splitlines())  # log lines too
            server.cluster.add_pod("seguard-system", name, {"app": "seguard"}, {"webhook": logs})
        kubectl = subprocess.run(
            ["kubectl", "--kubeconfig", str(server.kubeconfig(tmp_path / "kc")), "logs", "-n",
             "seguard-system", "-l", "app=seguard", "--tail=-1", *flags],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        server.stop()
    assert kubectl.returncode == 0, kubectl.stderr
    if "--prefix" in flags:
        assert kubectl.stdout.startswith("[pod/seguard-")
    audit = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "audit", "--file", "-", "-o", "json"],
        input=kubectl.stdout, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert audit.returncode == 0, audit.stderr
    found = [json.loads(line) for line in audit.stdout.splitlines()]
    assert sorted(r["uid"] for r in found) == ["seguard-a-0", "seguard-a-1", "seguard-b-0"]
    assert {r["decision"] for r in found} == {"denied"}
    table = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "audit", "--file", "-", "--code", "WildcardTooBroad"],
        input=kubectl.stdout, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert len(table.stdout.splitlines()) == 1 + 3
