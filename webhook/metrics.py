"""Prometheus metrics, on a registry of their own per process (no module-level globals)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# The API server's own webhook latency histogram starts at 5 ms; finer buckets below it show
# where we sit inside that first bucket.
LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "seguard_admission_requests",
            "Admission requests answered, by webhook and result.",
            ["webhook", "result"],
            registry=r,
        )
        self.findings = Counter(
            "seguard_admission_findings",
            "Findings, by webhook, reason code and outcome.",
            ["webhook", "code", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "seguard_admission_duration_seconds",
            "Time from the first byte of a request to the response, by webhook.",
            ["webhook"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rejected_bodies = Counter(
            "seguard_admission_bad_requests",
            "Requests refused before a decision (malformed, too large, wrong type), by reason.",
            ["webhook", "reason"],
            registry=r,
        )
        self.denials_by_namespace = Counter(
            "seguard_admission_denials_by_namespace",
            "Denied requests by namespace; past the first 100 namespaces seen, as _other.",
            ["namespace"],
            registry=r,
        )
        self.internal_errors = Counter(
            "seguard_admission_internal_errors",
            "Requests denied because judging them failed (fail closed).",
            ["webhook"],
            registry=r,
        )
        self.audit_failures = Counter(
            "seguard_audit_write_failures",
            "Audit records a sink failed to write, by sink.",
            ["sink"],
            registry=r,
        )
        self.registry_entries = Gauge(
            "seguard_registry_entries",
            "Objects in the registry snapshot, by kind.",
            ["kind"],
            registry=r,
        )
        self.registry_skipped = Gauge(
            "seguard_registry_skipped_objects",
            "Objects the registry could not use (bad spec, invalid hosts).",
            registry=r,
        )
        self.policy_generation = Gauge(
            "seguard_policy_generation",
            "Generation of the policy in force (1 for the first one loaded).",
            registry=r,
        )
        self.policy_errors = Counter(
            "seguard_policy_reload_errors",
            "Policy reloads refused because the new document was invalid.",
            registry=r,
        )
        self.policy_valid = Gauge(
            "seguard_policy_last_reload_ok",
            "1 when the last policy (re)load succeeded, 0 when it was refused.",
            registry=r,
        )
        self.ready = Gauge("seguard_ready", "1 when /readyz answers 200.", registry=r)
        self.scan_violations = Gauge(
            "seguard_scan_violations",
            "Findings on existing ServiceEntries at the last scan, by reason code.",
            ["code"],
            registry=r,
        )
        self.scan_leader = Gauge(
            "seguard_scan_leader", "1 while this replica holds the scan lease.", registry=r
        )
        self.events_sent = Counter(
            "seguard_events_sent", "Warning events recorded in the cluster.", registry=r
        )
        self.events_dropped = Counter(
            "seguard_events_dropped",
            "Warning events not recorded, by why (rate limited, queue full, api error).",
            ["reason"],
            registry=r,
        )
        self.certificate_errors = Counter(
            "seguard_certificate_reload_errors",
            "New certificate files that could not be loaded (the old pair stayed in force).",
            registry=r,
        )
        self.certificate_expiry = Gauge(
            "seguard_certificate_expiry_timestamp_seconds",
            "When the serving certificate in force expires (Unix time).",
            registry=r,
        )

    def watch(self, source: Any) -> None:
        """Expose a KubernetesSource's per-kind state, read at scrape time."""
        self.registry.register(_SourceCollector(source))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _SourceCollector:
    def __init__(self, source: Any) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        synced = GaugeMetricFamily(
            "seguard_registry_synced", "1 once a kind has had its first full list.", labels=["kind"]
        )
        restarts = CounterMetricFamily(
            "seguard_registry_watch_restarts",
            "Watches started again (stream ended, error, 410), by kind.",
            labels=["kind"],
        )
        relists = CounterMetricFamily(
            "seguard_registry_relists", "Full lists after the first, by kind.", labels=["kind"]
        )
        age = GaugeMetricFamily(
            "seguard_registry_last_event_age_seconds",
            "Seconds since the last list, event or bookmark, by kind.",
            labels=["kind"],
        )
        now = time.time()
        for watcher in self.source.watchers:
            kind = watcher.resource.kind
            state = watcher.state
            synced.add_metric([kind], 1.0 if state.synced else 0.0)
            restarts.add_metric([kind], float(state.restarts))
            relists.add_metric([kind], float(state.relists))
            age.add_metric([kind], now - state.last_event if state.last_event else float("nan"))
        yield from (synced, restarts, relists, age)
