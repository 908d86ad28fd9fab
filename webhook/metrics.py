"""Prometheus metrics, on a registry of their own per process (no module-level globals)."""

from __future__ import annotations

import bisect
import gc
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from webhook.core.outcomes import RESULTS
from webhook.supervise import HEALTH

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
        # No *_created series: a counter's start time says nothing a dashboard uses.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.admission = AdmissionStats(r)
        # process_* (CPU, memory, open files, start time) and python_info, as any exporter.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        r.register(_ThreadCollector())
        self.gc_pauses = GcPauses()
        r.register(self.gc_pauses)
        self.rejected_bodies = Counter(
            "seguard_admission_bad_requests",
            "Requests refused before a decision (malformed, too large, wrong type), by reason.",
            ["webhook", "reason"],
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
        self.policy_read_errors = Counter(
            "seguard_policy_read_errors",
            "Polls of the policy file that could not read it (the policy in force stayed).",
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
        self._dropped: dict[str, Any] = {}
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

        self.audit_stalled = Counter(
            "seguard_audit_stalled_records",
            "Audit records not committed within the deadline (timeout: answered, written "
            "later) or not kept at all (queue_full: an allow was denied instead), by reason.",
            ["reason"],
            registry=r,
        )
        self.connections_refused = Counter(
            "seguard_connections_refused",
            "Connections closed or refused by the listeners' limits (header too large or too "
            "slow, TLS handshake failed or too slow, closed to make room, pool full), by "
            "listener and reason.",
            ["listener", "reason"],
            registry=r,
        )

    def audit_stall(self, reason: str, count: int) -> None:
        self.audit_stalled.labels(reason).inc(count)

    def connection_refused(self, listener: str, reason: str) -> None:
        self.connections_refused.labels(listener, reason).inc()

    def connections(self, pools: Any) -> None:
        """Expose the listeners' open connections by phase (``{listener: Pool}``), read at
        scrape time."""
        self.registry.register(_PoolCollector(pools))

    def event_dropped(self, why: str) -> None:
        """Count one dropped event. Called on the hot path for each rate-limited denial: the
        labelled child is looked up once per reason (``labels()`` takes a lock and costs more
        than the increment)."""
        child = self._dropped.get(why)
        if child is None:
            child = self._dropped[why] = self.events_dropped.labels(why)
        child.inc()

    def watch(self, source: Any) -> None:
        """Expose a KubernetesSource's per-kind state, read at scrape time."""
        self.registry.register(_SourceCollector(source))

    def render(self) -> bytes:
        return generate_latest(self.registry)


# GC pauses: the target is none over 2 ms under load; finer buckets show how far below.
GC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class GcPauses:
    """A histogram of garbage-collector pauses, fed by ``gc.callbacks``."""

    def __init__(self) -> None:
        self.buckets = [0] * (len(GC_BUCKETS) + 1)
        self.total = 0.0
        self._started = 0.0

    def callback(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.buckets[bisect.bisect_left(GC_BUCKETS, pause)] += 1
        self.total += pause

    def install(self) -> None:
        if self.callback not in gc.callbacks:
            gc.callbacks.append(self.callback)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "seguard_gc_pause_seconds", "Pauses of Python's garbage collector."
        )
        running = 0
        cumulative = []
        for bound, count in zip([*map(str, GC_BUCKETS), "+Inf"], self.buckets, strict=True):
            running += count
            cumulative.append((bound, float(running)))
        family.add_metric([], cumulative, self.total)
        yield family


class AdmissionStats:
    """Requests by webhook and result, findings, denials by namespace and the latency
    histogram, in prometheus-client's metrics. Its labelled children are looked up once each:
    recording a request then costs about 1.5 µs, a microsecond more than plain counters would,
    half a percent of the server's time per request (``bench/run.py`` prints both)."""

    RESULTS = RESULTS
    WEBHOOKS = ("validate", "mutate")

    def __init__(self, registry: CollectorRegistry) -> None:
        requests = Counter(
            "seguard_admission_requests",
            "Admission requests answered, by webhook and result.",
            ["webhook", "result"],
            registry=registry,
        )
        self._findings = Counter(
            "seguard_admission_findings",
            "Findings, by webhook, reason code and outcome.",
            ["webhook", "code", "outcome"],
            registry=registry,
        )
        self._denials = Counter(
            "seguard_admission_denials_by_namespace",
            "Denied requests by namespace; past the first 100 namespaces seen, as _other.",
            ["namespace"],
            registry=registry,
        )
        latency = Histogram(
            "seguard_admission_duration_seconds",
            "Time from the first byte of a request to the response, by webhook.",
            ["webhook"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # Every webhook and result is shown from the start, at 0.
        self._requests = {
            (w, r): requests.labels(w, r) for w in self.WEBHOOKS for r in self.RESULTS
        }
        self._latency = {w: latency.labels(w) for w in self.WEBHOOKS}
        self._finding_children: dict[tuple[str, str, str], Any] = {}
        self._denial_children: dict[str, Any] = {}

    def finding(self, webhook: str, code: str, outcome: str) -> None:
        key = (webhook, code, outcome)
        child = self._finding_children.get(key)
        if child is None:
            child = self._finding_children[key] = self._findings.labels(*key)
        child.inc()

    def denial(self, namespace_label: str) -> None:
        child = self._denial_children.get(namespace_label)
        if child is None:
            child = self._denial_children[namespace_label] = self._denials.labels(namespace_label)
        child.inc()

    def observe(self, webhook: str, result: str | None, seconds: float) -> None:
        """One request; ``result`` is None for one refused before a decision (a 4xx)."""
        if result is not None:
            self._requests[webhook, result].inc()
        self._latency[webhook].observe(seconds)

    def count(self, webhook: str, result: str) -> int:
        """Requests answered so far by ``webhook`` with ``result``."""
        return int(self._requests[webhook, result]._value.get())


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
        staleness = GaugeMetricFamily(
            "seguard_registry_staleness_seconds",
            "Seconds a kind's registry may be behind the cluster: 0 while its watch is open, "
            "else the time since its last list, watch or bookmark (+Inf before the first).",
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
            staleness.add_metric([kind], state.staleness(now))
        yield from (synced, restarts, relists, age, staleness)


class _PoolCollector:
    def __init__(self, pools: Any) -> None:
        self.pools = pools

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        open_now = GaugeMetricFamily(
            "seguard_connections_open",
            "Open connections, by listener and phase (handshake, idle, headers, busy).",
            labels=["listener", "phase"],
        )
        for listener, pool in self.pools.items():
            for phase in pool.by_phase:
                open_now.add_metric([listener, phase.value], float(pool.count(phase)))
        yield open_now


class _ThreadCollector:
    """The supervised background threads' failures (webhook.supervise), read at scrape time."""

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        failures = CounterMetricFamily(
            "seguard_thread_failures",
            "Unforeseen errors that stopped a background thread's loop (it was started again), "
            "by thread.",
            labels=["thread"],
        )
        for name, count in sorted(HEALTH.crash_counts().items()):
            failures.add_metric([name], float(count))
        yield failures
