"""The scanner (shell): the Lease that lets one replica scan, the scan's reports, and
``seguard scan`` against a cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.factories import make_namespace, make_policy, make_snapshot
from tests.fakeapi import Cluster, FakeApiServer
from tests.test_scan import aged
from webhook import kube
from webhook.audit import AuditLog
from webhook.runtime import Runtime
from webhook.scanner import LeaseElector, Scanner


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeApiServer, kube.Transport]]:
    server = FakeApiServer(Cluster())
    server.start()
    yield server, kube.connect(server.kubeconfig(tmp_path / "kc"))
    server.stop()


def test_only_one_replica_holds_the_lease_until_it_lapses(
    fake: tuple[FakeApiServer, kube.Transport],
) -> None:
    _, transport = fake
    clock = Clock()
    first = LeaseElector(
        transport, namespace="seguard-system", identity="replica-1", duration_s=15, now=clock
    )
    second = LeaseElector(
        transport, namespace="seguard-system", identity="replica-2", duration_s=15, now=clock
    )
    assert first.step() is True
    assert second.step() is False
    clock.now += timedelta(seconds=10)
    assert first.step() is True  # renewed
    clock.now += timedelta(seconds=10)
    assert second.step() is False  # 10 s since the renewal: still held
    clock.now += timedelta(seconds=20)  # replica-1 died: its lease lapsed
    assert second.step() is True
    assert first.step() is False


def test_the_scanner_reports_new_violations_once(
    fake: tuple[FakeApiServer, kube.Transport],
) -> None:
    _, transport = fake
    lines: list[bytes] = []

    class Lines:
        name = "lines"

        def write(self, data: bytes) -> None:
            lines.extend(data.splitlines())

        def close(self) -> None:
            pass

    runtime = Runtime(audit=AuditLog([Lines()]))
    runtime.set_policy(make_policy(scan={"interval": "1m"}))
    runtime.set_snapshot(make_snapshot(
        make_namespace("team-a"), aged("early", "team-a", ["api.stripe.com"], "2026-03-01T00:00:00Z"), aged("late", "team-b", ["api.stripe.com"], "2026-03-02T00:00:00Z")
    ))  # fmt: skip
    now = [0.0]
    scanner = Scanner(
        runtime,
        elector=LeaseElector(transport, namespace="seguard-system"),
        recorder=None,
        clock=lambda: now[0],
    )
    scanner.step()
    scanner.step()  # not due again yet
    now[0] += 61
    scanner.step()  # due: the same violation, not reported again
    assert scanner.scans == 2
    records = [json.loads(line) for line in lines]
    assert [(r["event"], r["name"], r["code"]) for r in records] == [
        ("scan.violation", "late", "ConflictServiceEntry")
    ]
    text = runtime.metrics.render().decode()
    assert 'seguard_scan_violations{code="ConflictServiceEntry"} 1.0' in text
    assert "seguard_scan_leader 1.0" in text


def test_seguard_scan_against_a_cluster(
    fake: tuple[FakeApiServer, kube.Transport], tmp_path: Path
) -> None:
    server, _ = fake
    server.cluster.put(aged("early", "team-a", ["api.stripe.com"], "2026-03-01T00:00:00Z"))
    server.cluster.put(aged("late", "team-b", ["api.stripe.com"], "2026-03-02T00:00:00Z"))
    kubeconfig = server.kubeconfig(tmp_path / "kc")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook.cli",
            "scan",
            "--kubeconfig",
            str(kubeconfig),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    [violation] = json.loads(result.stdout)
    assert (violation["namespace"], violation["name"], violation["code"]) == (
        "team-b",
        "late",
        "ConflictServiceEntry",
    )
    assert violation["owner"]["name"] == "early"
    table = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "scan", "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert table.stdout.splitlines()[0].split() == [
        "NAMESPACE",
        "NAME",
        "CREATED",
        "CODE",
        "HOST",
        "OLDER",
        "OWNER",
        "ACTION",
    ]


@pytest.mark.parametrize("command", ["scan", "registry"])
def test_scan_and_registry_find_the_cluster_as_serve_does(
    command: str, fake: tuple[FakeApiServer, kube.Transport], tmp_path: Path
) -> None:
    server, _ = fake
    server.cluster.put(aged("early", "team-a", ["api.stripe.com"], "2026-03-01T00:00:00Z"))
    server.cluster.put(aged("late", "team-b", ["api.stripe.com"], "2026-03-02T00:00:00Z"))
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    env["KUBECONFIG"] = os.pathsep.join(
        [str(tmp_path / "missing"), str(server.kubeconfig(tmp_path / "kc"))]
    )
    argv = [sys.executable, "-m", "webhook.cli", command, "-o", "json"]
    found = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert found.returncode == (1 if command == "scan" else 0), found.stderr
    assert "api.stripe.com" in found.stdout and "late" in found.stdout
    # Pointed nowhere: no $KUBECONFIG, no ~/.kube/config, not in a pod. Not a pass.
    del env["KUBECONFIG"]
    nowhere = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert nowhere.returncode == 2
    assert nowhere.stdout == ""
    assert nowhere.stderr.startswith("seguard: error: nothing to read")
