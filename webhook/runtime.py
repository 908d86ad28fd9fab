"""What a running server holds: the policy and snapshot in force, and its sinks (shell).

Writers replace ``policy`` and ``snapshot`` whole (one attribute assignment each, atomic under
the GIL); a request reads each once at its start and keeps that value for the whole decision.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from webhook import supervise
from webhook.audit import AuditLog
from webhook.core.claims import SERVICE, SERVICE_ENTRY
from webhook.core.policy import Policy
from webhook.core.registry import Snapshot
from webhook.metrics import Metrics

log = logging.getLogger("seguard")


@dataclass
class Runtime:
    audit: AuditLog
    metrics: Metrics = field(default_factory=Metrics)
    policy: Policy | None = None
    snapshot: Snapshot | None = None
    policy_error: str = ""
    # Sources that must finish a first full sync before the server is ready (kubernetes: one per
    # kind); each maps to True once synced.
    syncs: dict[str, bool] = field(default_factory=dict)
    # False while the policy is read from the cluster and has not been read yet: until then the
    # built-in policy would be judging, which may be stricter or looser than the admin's.
    policy_synced: bool = True
    draining: bool = False
    # Seconds each kind's registry may be behind the cluster (the kubernetes source's), and how
    # far behind it may be while the server stays ready: see readiness().
    registry_staleness: Callable[[], Mapping[str, float]] | None = None
    stale_after_s: float = 120.0
    # The background threads' health: one that cannot run makes the server unready.
    threads: supervise.Health = field(default_factory=lambda: supervise.HEALTH)
    # Body limit for /validate and /mutate, in bytes: an object and its old version can each be
    # up to etcd's 1.5 MiB, and a review wraps both with metadata.
    max_body: int = 6 * 1024 * 1024
    # How long a body may take to arrive: longer than any honest body needs on a cluster
    # network, shorter than the API server's longest webhook timeout (30 s).
    body_deadline_s: float = 10.0
    # Namespaces that have a metric label of their own; the rest share "_other", so a cluster
    # with thousands of namespaces cannot blow up the metric's cardinality.
    labelled_namespaces: set[str] = field(default_factory=set)
    MAX_NAMESPACE_LABELS = 100

    def namespace_label(self, namespace: str) -> str:
        if namespace in self.labelled_namespaces:
            return namespace
        if len(self.labelled_namespaces) < self.MAX_NAMESPACE_LABELS:
            self.labelled_namespaces.add(namespace)
            return namespace
        return "_other"

    def set_policy(self, policy: Policy) -> Policy:
        generation = (self.policy.generation if self.policy else 0) + 1
        self.policy = policy.with_generation(generation)
        self.policy_error = ""
        self.metrics.policy_generation.set(generation)
        self.metrics.policy_valid.set(1)
        return self.policy

    def reject_policy(self, error: str) -> None:
        self.policy_error = error
        self.metrics.policy_errors.inc()
        self.metrics.policy_valid.set(0)

    def set_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        m = self.metrics
        m.registry_entries.labels(SERVICE).set(snapshot.count(SERVICE))
        m.registry_entries.labels(SERVICE_ENTRY).set(snapshot.count(SERVICE_ENTRY))
        m.registry_entries.labels("Namespace").set(len(snapshot.namespaces))
        m.registry_skipped.set(len(snapshot.skipped))
        # The snapshot lives until the next swap: move it out of the collector's sight, so a full
        # collection does not walk 100k entries (about 30 ms) in the middle of a request. Old
        # snapshots hold no reference cycles, so reference counting still frees them.
        gc.freeze()

    @property
    def policy_generation(self) -> int:
        return self.policy.generation if self.policy else 0

    def readiness(self) -> tuple[bool, dict[str, object]]:
        stalled = self.audit.stalled  # a stalled audit trail: let the other replica answer
        # A registry that lost the cluster for longer than stale_after_s misses what the other
        # replica admitted meanwhile (and objects written while the webhooks were away): it is
        # unready, so the API server's calls go to a replica that follows the cluster, or fail
        # (failurePolicy Fail: ServiceEntry writes are refused) rather than be judged against it.
        staleness = dict(self.registry_staleness()) if self.registry_staleness else {}
        stale = sorted(kind for kind, age in staleness.items() if age > self.stale_after_s)
        failing = self.threads.failing(time.monotonic())
        details: dict[str, object] = {
            "policy": {
                "loaded": self.policy is not None,
                "generation": self.policy_generation,
                "source": self.policy.source if self.policy else None,
                "lastError": self.policy_error or None,
                "synced": self.policy_synced,
            },
            "registry": {
                "loaded": self.snapshot is not None,
                "generation": self.snapshot.generation if self.snapshot else 0,
                "entries": len(self.snapshot) if self.snapshot else 0,
                "synced": dict(self.syncs),
                "staleness": {
                    kind: (round(age, 1) if age != float("inf") else None)
                    for kind, age in staleness.items()
                },
                "stale": stale,
            },
            "audit": {"pending": self.audit.pending, "stalled": stalled},
            "threads": {"failing": failing},
            "draining": self.draining,
        }
        ready = (
            self.policy is not None
            and self.policy_synced
            and self.snapshot is not None
            and all(self.syncs.values())
            and not self.draining
            and stalled is None
            and not stale
            and not failing
        )
        self.metrics.ready.set(1 if ready else 0)
        return ready, details
