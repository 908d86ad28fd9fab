"""The periodic scan in the server, run by one replica at a time (shell).

Leadership is a ``coordination.k8s.io`` Lease, taken and renewed with optimistic concurrency (the
resourceVersion of the read): two replicas can never both believe they hold it for longer than
one lease duration. The leader scans the registry every ``spec.scan.interval`` of the policy and
reports each violation it has not reported before as an audit record and a Warning event; a
gauge always shows the current count by code.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from webhook import logs
from webhook.audit import scan_violation_record, timestamp
from webhook.core.scan import Violation, scan
from webhook.events import EventRecorder, PendingEvent
from webhook.kube import ClusterError, Transport
from webhook.periodic import Periodic
from webhook.reporter import PolicyReporter
from webhook.runtime import Runtime

log = logging.getLogger("seguard.scan")

LEASE_NAME = "seguard-scan"
# client-go's leader election defaults: a 15 s lease, renewed every few seconds. A replica that
# dies hands over within one lease duration.
LEASE_DURATION_S = 15
RENEW_EVERY_S = 5.0
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def own_namespace(default: str = "seguard-system") -> str:
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if NAMESPACE_FILE.exists():
        return NAMESPACE_FILE.read_text().strip()
    return default


def _micro(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        try:
            return datetime.strptime(value.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S%z")
        except ValueError:
            return None


class LeaseElector:
    def __init__(
        self,
        transport: Transport,
        *,
        namespace: str,
        name: str = LEASE_NAME,
        identity: str | None = None,
        duration_s: int = LEASE_DURATION_S,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.transport = transport
        self.namespace = namespace
        self.name = name
        self.identity = identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.duration_s = duration_s
        self._now = now
        self.leading = False

    @property
    def _path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    def step(self) -> bool:
        """Take or renew the lease if we may. True while we hold it."""
        now = self._now()
        status, lease = self.transport.call(
            "GET",
            f"{self._path}/{self.name}",
            verb="get",
            what=f"leases {self.name}",
            where=f"in namespace {self.namespace}",
            grant="get, create and update on leases",
            expected=(404,),
        )
        if status == 404:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, transitions=0),
            }
            status, _ = self.transport.call(
                "POST",
                self._path,
                verb="create",
                what="leases",
                where=f"in namespace {self.namespace}",
                grant="get, create and update on leases",
                body=body,
                expected=(409,),  # another replica created it first
            )
            self.leading = status == 201
            return self.leading
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _parse(spec.get("renewTime")) or datetime.min.replace(tzinfo=UTC)
        duration = int(spec.get("leaseDurationSeconds") or self.duration_s)
        expired = renewed + timedelta(seconds=duration) < now
        if holder != self.identity and not expired:
            self.leading = False
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        acquired = spec.get("acquireTime") if holder == self.identity else None
        lease["spec"] = self._spec(now, transitions=transitions, acquired=acquired)
        status, _ = self.transport.call(
            "PUT",
            f"{self._path}/{self.name}",
            verb="update",
            what=f"leases {self.name}",
            where=f"in namespace {self.namespace}",
            grant="get, create and update on leases",
            body=lease,
            expected=(409,),
        )
        # 409: someone else wrote it since we read it; they win this round.
        self.leading = status == 200
        return self.leading

    def _spec(
        self, now: datetime, *, transitions: int, acquired: str | None = None
    ) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration_s,
            "acquireTime": acquired or _micro(now),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        }


class Scanner(Periodic):
    """Leader election plus the periodic scan, in a thread of its own."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        elector: LeaseElector | None,
        recorder: EventRecorder | None,
        reporter: PolicyReporter | None = None,
        renew_every: float = RENEW_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(every=renew_every, name="scanner", errors=(ClusterError,), log=log)
        self.runtime = runtime
        self.elector = elector
        self.recorder = recorder
        self.reporter = reporter
        self._clock = clock
        self._last_scan: float | None = None
        self._reported: set[tuple[str, str, str, str, str]] = set()
        self._codes_shown: set[str] = set()  # codes the gauge has a series for
        self.scans = 0
        self.last: list[Violation] = []

    def scan_once(self) -> list[Violation]:
        """Scan now; report what is new; return every violation found."""
        snapshot, policy = self.runtime.snapshot, self.runtime.policy
        if snapshot is None or policy is None:
            return []
        # Sleep a moment now and then: the event loop needs the GIL more than the scan does.
        violations = scan(snapshot, policy, pause=lambda: time.sleep(0.001))
        self.scans += 1
        self.last = violations
        gauge = self.runtime.metrics.scan_violations
        counts: dict[str, int] = {}
        for violation in violations:
            counts[violation.finding.code.value] = counts.get(violation.finding.code.value, 0) + 1
        for code in set(counts) | self._codes_shown:
            gauge.labels(code).set(counts.get(code, 0))
        self._codes_shown |= set(counts)
        current = {v.key for v in violations}
        for violation in violations:
            if violation.key in self._reported:
                continue
            self.runtime.audit.write(
                scan_violation_record(
                    violation, policy_generation=policy.generation, at=timestamp()
                )
            )
            if self.recorder is not None and not violation.exempt:
                self.recorder.record(
                    PendingEvent(
                        violation.namespace,
                        violation.name,
                        violation.finding.code.value,
                        f"found by seguard's scan: {violation.finding.message}",
                        "networking.istio.io/v1",
                        "",
                    )
                )
        # A violation that is fixed and comes back is news again.
        self._reported = current
        return violations

    def due(self) -> bool:
        policy = self.runtime.policy
        interval = policy.scan_interval_s if policy else 0.0
        if interval <= 0:
            return False
        return self._last_scan is None or self._clock() - self._last_scan >= interval

    def step(self) -> None:
        leading = self.elector.step() if self.elector is not None else True
        self.runtime.metrics.scan_leader.set(1 if leading else 0)
        if leading and self.due() and self.runtime.readiness()[0]:
            self._last_scan = self._clock()
            found = self.scan_once()
            if self.reporter is not None:
                self.reporter.publish(found)
            log.info(
                "scan %d: %d violation(s) in %d object(s)",
                self.scans,
                len(found),
                len(self.runtime.snapshot or ()),
                extra=logs.fields("scan.completed", scan=self.scans, violations=len(found)),
            )
