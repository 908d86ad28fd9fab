"""Measurements in process: the imports floor, the registry build, the decision, the endpoint
and the metrics, each the best of interleaved rounds."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cluster import api_server
from bench.settings import ROOT

LIBRARIES = (
    # The Kubernetes client as a pod loads it (webhook.kube, with the service account's loader),
    # or as the bench's server does, following its API server through a kubeconfig file (whose
    # loader's OIDC libraries webhook.kube defers until a token is refreshed).
    "import uvloop, webhook.kube\n"
    "from pathlib import Path\n"
    "webhook.kube._client(); webhook.kube._loader({kubeconfig})\n"
    "import webhook.app, webhook.audit, webhook.cli, webhook.events, webhook.tls\n"
    "import webhook.metrics, webhook.reload, webhook.rollout, webhook.runtime, webhook.scanner\n"
    "import webhook.server, webhook.serve, webhook.kube, webhook.logs, webhook.sources.store\n"
    "from webhook.sources import kubernetes\n"
)


def library_floor_mb(*, kubeconfig: bool = False) -> float:
    """The RSS of a fresh interpreter that has only imported what `seguard serve` imports
    (FastAPI and pydantic, uvicorn, the official Kubernetes client ...): the part of the RSS
    that no registry or request brings, and that no change to the hot path can lower. As in a
    pod, or with ``kubeconfig`` as the bench's server runs (a kubeconfig file's loader)."""
    script = LIBRARIES.format(kubeconfig="Path('kubeconfig')" if kubeconfig else None) + (
        "print(next(int(line.split()[1]) for line in open('/proc/self/status') "
        "if line.startswith('VmRSS')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return int(result.stdout.strip()) / 1024


def registry_build_seconds(objects_count: int = 20_000) -> float:
    """List ``objects_count`` Services and ServiceEntries from an API server (paged, through the
    official client, raw JSON) and index them: the time to a usable snapshot."""
    from webhook import kube
    from webhook.core.registry import RegistryBuilder
    from webhook.sources import kubernetes

    server = api_server(objects_count)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            transport = kube.connect(server.kubeconfig(Path(tmp) / "kubeconfig"))
            started = time.perf_counter()
            objects, _ = kubernetes.read_cluster(transport)
            builder = RegistryBuilder.bulk(
                ((kubernetes.SOURCE, o) for o in objects), cluster_domain="cluster.local"
            )
            builder.snapshot()
            return time.perf_counter() - started
    finally:
        server.stop()


def lookup_costs(rounds: int = 15) -> tuple[dict[str, float], dict[str, float]]:
    """The cost of one decision, in process, for the same requests against registries of
    different sizes: free hosts at 0 and 100k entries, colliding hosts at 1k and 100k (the same
    owners exist in both). Rounds are interleaved and the best of each is kept: a shared machine
    only ever adds time."""
    sys.path.insert(0, str(ROOT))
    import orjson

    from bench.workload import registry_objects, request_mix
    from webhook.core import admission, review
    from webhook.core.policyfile import default_policy
    from webhook.core.registry import RegistryBuilder

    snapshots = {
        n: RegistryBuilder.bulk(
            (("files", o) for o in registry_objects(n)), cluster_domain="cluster.local"
        ).snapshot()
        for n in (0, 1_000, 100_000)
    }
    policy = default_policy()

    def requests(kinds: tuple[str, ...], mix_entries: int) -> list[tuple[Any, str]]:
        return [
            (admission.parse_review(orjson.loads(body)), path)
            for kind, path, body in request_mix(mix_entries)
            if kind in kinds
        ]

    free, colliding = requests(("allow", "mutate"), 0), requests(("deny-entry",), 1_000)
    cases = {
        "free_0": (snapshots[0], free),
        "free_100k": (snapshots[100_000], free),
        "conflict_1k": (snapshots[1_000], colliding),
        "conflict_100k": (snapshots[100_000], colliding),
    }
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for label, (snapshot, batch) in cases.items():
            started = time.perf_counter()
            for _ in range(10):
                for req, path in batch:
                    judge = review.validate if path == "/validate" else review.mutate
                    judge(req, policy=policy, snapshot=snapshot)
            best[label] = min(
                best[label], (time.perf_counter() - started) / (10 * len(batch)) * 1e6
            )
    return best, endpoint_costs(snapshots[100_000], policy)


def metrics_costs(rounds: int = 7, calls: int = 200_000) -> dict[str, float]:
    """What recording one request costs (its result, one finding, its latency): with plain
    counters read at scrape time, and with prometheus-client's metrics (labelled children looked
    up once, as the server does). The best of ``rounds``, in µs."""
    import bisect
    import timeit

    from prometheus_client import CollectorRegistry, Counter, Histogram

    from webhook.metrics import LATENCY_BUCKETS

    class Plain:
        """What the server used before: plain counters and buckets, read at scrape time."""

        def __init__(self) -> None:
            self.requests = {("validate", "denied"): 0}
            self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
            self.sum = 0.0
            self.findings: dict[tuple[str, str, str], int] = {}

    plain = Plain()

    def with_ours() -> None:
        plain.requests["validate", "denied"] += 1
        plain.buckets[bisect.bisect_left(LATENCY_BUCKETS, 0.0004)] += 1
        plain.sum += 0.0004
        key = ("validate", "ConflictServiceEntry", "denied")
        plain.findings[key] = plain.findings.get(key, 0) + 1

    registry = CollectorRegistry()
    requests = Counter("r", "r", ["webhook", "result"], registry=registry)
    findings = Counter("f", "f", ["webhook", "code", "outcome"], registry=registry)
    latency = Histogram("l", "l", ["webhook"], buckets=LATENCY_BUCKETS, registry=registry)
    request_child = requests.labels("validate", "denied")
    latency_child = latency.labels("validate")
    finding_children: dict[tuple[str, str, str], Any] = {}

    def with_client() -> None:
        request_child.inc()
        latency_child.observe(0.0004)
        key = ("validate", "ConflictServiceEntry", "denied")
        child = finding_children.get(key)
        if child is None:
            child = finding_children[key] = findings.labels(*key)
        child.inc()

    return {
        name: min(timeit.repeat(fn, number=calls, repeat=rounds)) / calls * 1e6
        for name, fn in (("ours", with_ours), ("client", with_client))
    }


def shortcut_costs(rounds: int = 7, calls: int = 100_000) -> dict[str, tuple[float, float]]:
    """Each shortcut the server keeps, against what it stands in for, in µs a call (the best of
    ``rounds``): the one-sweep body deadline against a timer per request, the audit timestamp's
    cached second against formatting the time, the regular expression for an already normal
    host against the label-by-label checks, a module constant against an enum member, the
    quick test that lets an entry with no endpoints skip the target rules against running
    them, and a cluster IP's text made from its integer against ``ipaddress``."""
    import asyncio
    import ipaddress
    import timeit
    from datetime import UTC, datetime

    from webhook.aio import Deadlines
    from webhook.audit import timestamp
    from webhook.core import context, hosts, registry, targets
    from webhook.core.claims import service_entry_claim
    from webhook.core.policy import Action
    from webhook.core.policyfile import default_policy

    def best(fn: Callable[[], object], number: int = calls) -> float:
        return min(timeit.repeat(fn, number=number, repeat=rounds)) / number * 1e6

    async def deadlines() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        sweep = Deadlines(10.0)

        def one_sweep() -> None:
            sweep.begin(task)
            sweep.end(task)

        def a_timer() -> None:
            loop.call_later(10.0, task.cancel).cancel()

        return best(one_sweep), best(a_timer)

    name = "api0.vendor0.example.com"
    allow = Action.ALLOW
    claim = service_entry_claim(
        {
            "metadata": {"name": "e", "namespace": "team-a"},
            "spec": {"hosts": [name, "api1.vendor0.example.com"], "resolution": "DNS"},
        }
    )
    rules = default_policy().rules
    ctx = context.context_for(
        claim, name="e", rules=rules, snapshot=registry.RegistryBuilder().snapshot()
    )
    key = registry.ip_key("10.96.12.34")
    assert key is not None
    return {
        "body deadline: one sweep / a timer per request": asyncio.run(deadlines()),
        "audit time: cached second / formatted": (
            best(timestamp),
            best(lambda: datetime.now(UTC).isoformat(timespec="milliseconds")),
        ),
        "host: already normal / checked label by label": (
            best(lambda: hosts.normalize(name)),
            best(lambda: hosts._normalize(name)),
        ),
        "Allow: a module constant / the enum member": (
            best(lambda: allow),
            best(lambda: Action.ALLOW),
        ),
        "targets of a DNS entry: the quick test / the target rules": (
            best(lambda: targets.may_reach_a_denied_name(claim.hosts, ctx)),
            best(lambda: list(targets.target_findings(claim, ctx))),
        ),
        "cluster IP text: from the integer / ipaddress": (
            best(lambda: registry._ip_text(key)),
            best(lambda: ipaddress.IPv4Address(key).compressed),
        ),
    }


def endpoint_costs(snapshot: Any, policy: Any, rounds: int = 7) -> dict[str, float]:
    """The whole /validate or /mutate endpoint in process, per kind of request at 100k entries:
    the body read, the parse, the decision, the audit record, the events and metrics, and the
    answer; everything the server does that the bare app does not, without the HTTP and TLS.
    Set against the server's CPU per request, it shows what the server's share of caches and
    cores costs the same code."""
    import asyncio

    from bench.workload import request_mix
    from webhook.app import JUDGES, AdmissionEndpoint
    from webhook.audit import AuditLog
    from webhook.events import EventRecorder
    from webhook.kube import Transport
    from webhook.runtime import Runtime

    runtime = Runtime(audit=AuditLog([]))
    runtime.set_policy(policy)
    runtime.set_snapshot(snapshot)
    # Never started: denials go through the rate limit, as on the server, and are not sent.
    events = EventRecorder(Transport(None), on_dropped=runtime.metrics.event_dropped)
    endpoints = {
        f"/{name}": AdmissionEndpoint(runtime, name, on_denied=events, judge=judge)
        for name, judge in JUDGES.items()
    }
    groups = {"allow": ("allow",), "mutate": ("mutate",), "deny": ("deny-entry", "deny-service")}
    mix = request_mix(100_000)

    answers: list[Any] = []

    async def send(message: Any) -> None:
        answers.append(message)  # cheap, and it keeps each answer to check below

    async def one(path: str, body: bytes) -> None:
        message = {"type": "http.request", "body": body, "more_body": False}

        async def receive() -> Any:
            return message

        headers = [(b"content-type", b"application/json")]
        scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
        await endpoints[path](scope, receive, send)

    async def measure() -> dict[str, float]:
        best = dict.fromkeys(groups, float("inf"))
        for _ in range(rounds):
            for label, kinds in groups.items():
                batch = [(path, body) for kind, path, body in mix if kind in kinds]
                started = time.perf_counter()
                for _ in range(20):
                    for path, body in batch:
                        await one(path, body)
                elapsed = time.perf_counter() - started
                verdict = b'"allowed":false' if label == "deny" else b'"allowed":true'
                bodies = [m["body"] for m in answers if m["type"] == "http.response.body"]
                if len(bodies) != 20 * len(batch) or not all(verdict in b for b in bodies):
                    raise SystemExit(
                        f"bench: the in-process endpoint did not answer {label} as such"
                    )
                answers.clear()
                best[label] = min(best[label], elapsed / (20 * len(batch)) * 1e6)
        return best

    return asyncio.run(measure())
