"""The scanner (shell): the Lease that lets one replica scan, the scan's reports, and
``seguard scan`` against a cluster."""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.factories import make_namespace, make_policy, make_snapshot
from tests.fakeapi import Cluster, FakeApiServer
from tests.test_scan import aged
from webhook import kube
from webhook.audit import AuditLog
from webhook.reporter import PolicyReporter
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


def reports_in(server: FakeApiServer) -> dict[tuple[str, str], dict[str, Any]]:
    with server.cluster.lock:
        return copy.deepcopy(server.cluster.objects["PolicyReport"])


def writes(server: FakeApiServer) -> list[tuple[str, str]]:
    with server.cluster.lock:
        return [(m, p) for m, p in server.cluster.log if "policyreports" in p and m != "GET"]


def reporting_scanner(
    transport: kube.Transport, runtime: Runtime, now: list[float], identity: str
) -> Scanner:
    return Scanner(
        runtime,
        elector=LeaseElector(transport, namespace="seguard-system", identity=identity),
        recorder=None,
        reporter=PolicyReporter(transport, clock=lambda: 1_800_000_000.0),
        clock=lambda: now[0],
    )


def test_policy_reports_are_written_replaced_and_removed_by_the_lease_holder_alone(
    fake: tuple[FakeApiServer, kube.Transport],
) -> None:
    server, transport = fake
    # Someone else's report in a namespace seguard writes to: never touched.
    server.cluster.objects["PolicyReport"][("team-c", "kyverno")] = {
        "metadata": {"name": "kyverno", "namespace": "team-c", "resourceVersion": "1"},
        "results": [],
    }
    early = aged("early", "team-a", ["api.stripe.com"], "2026-03-01T00:00:00Z")
    late = aged("late", "team-b", ["api.stripe.com"], "2026-03-02T00:00:00Z")
    wide = aged("wide", "team-b", ["*.org"], "2026-03-03T00:00:00Z")
    runtime = Runtime(audit=AuditLog([]))
    runtime.set_policy(make_policy(scan={"interval": "1m"}))
    runtime.set_snapshot(make_snapshot(early, late))
    now = [0.0]
    leader = reporting_scanner(transport, runtime, now, "replica-1")
    follower = reporting_scanner(transport, runtime, now, "replica-2")

    leader.step()
    follower.step()
    [(key, report)] = [(k, r) for k, r in reports_in(server).items() if k[1] == "seguard"]
    assert key == ("team-b", "seguard")
    assert report["apiVersion"] == "wgpolicyk8s.io/v1alpha2" and report["kind"] == "PolicyReport"
    assert report["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "seguard"}
    assert report["summary"] == {"pass": 0, "fail": 1, "warn": 0, "error": 0, "skip": 0}
    [result] = report["results"]
    assert (result["policy"], result["rule"], result["source"]) == ("seguard", "ConflictServiceEntry", "seguard")  # fmt: skip
    assert (result["result"], result["severity"]) == ("fail", "high")
    assert result["resources"] == [
        {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "namespace": "team-b", "name": "late"}
    ]  # fmt: skip
    assert "team-a/early" in result["message"]
    written = len(writes(server))
    assert written == 1  # the follower wrote nothing

    # A new violation: the report is replaced whole.
    runtime.set_snapshot(make_snapshot(early, late, wide))
    now[0] += 61
    follower.step()
    leader.step()
    report = reports_in(server)[("team-b", "seguard")]
    assert sorted(r["rule"] for r in report["results"]) == [
        "ConflictServiceEntry",
        "WildcardTooBroad",
    ]
    assert [m for m, _ in writes(server)[written:]] == ["PUT"]

    # Nothing changed: nothing written.
    written = len(writes(server))
    now[0] += 61
    leader.step()
    assert len(writes(server)) == written

    # Clean again: the report goes; the other tool's stays.
    runtime.set_snapshot(make_snapshot(early))
    now[0] += 61
    leader.step()
    assert set(reports_in(server)) == {("team-c", "kyverno")}
    assert [m for m, _ in writes(server)[written:]] == ["DELETE"]


def test_without_the_policy_report_crd_nothing_is_written_and_it_is_said_once(
    fake: tuple[FakeApiServer, kube.Transport], caplog: pytest.LogCaptureFixture
) -> None:
    server, transport = fake
    server.cluster.missing.add("PolicyReport")
    runtime = Runtime(audit=AuditLog([]))
    runtime.set_policy(make_policy(scan={"interval": "1m"}))
    runtime.set_snapshot(
        make_snapshot(
            aged("early", "team-a", ["api.stripe.com"], "2026-03-01T00:00:00Z"),
            aged("late", "team-b", ["api.stripe.com"], "2026-03-02T00:00:00Z"),
        )
    )
    now = [0.0]
    scanner = reporting_scanner(transport, runtime, now, "replica-1")
    with caplog.at_level(logging.INFO, logger="seguard.reports"):
        scanner.step()
        now[0] += 61
        scanner.step()
    assert scanner.scans == 2
    assert writes(server) == []
    missing = [r for r in caplog.records if getattr(r, "event", "") == "reports.crd_missing"]
    assert len(missing) == 1
