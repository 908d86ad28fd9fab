"""``seguard serve``: the composition root (shell). It builds the parts and starts them, in
order: certificates, metrics, the audit trail, the runtime, the listeners, the registry's
sources, the reporting (Events, the scan), the HTTPS and operations apps, the reloaders; then
serves until a signal, drains, and stops each part. The command line (``webhook.cli``) parses
the flags into ``Options`` and loads the policy and the manifests."""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from webhook import __version__, connections, heap, kube, logs, reload, server, tls
from webhook.app import create_app, create_ops_app
from webhook.audit import open_audit_log
from webhook.core.policy import Policy
from webhook.core.registry import RegistryBuilder
from webhook.events import EventRecorder
from webhook.metrics import Metrics
from webhook.runtime import Runtime
from webhook.sources.store import RegistryStore

log = logging.getLogger("seguard")

SAMPLE_REVIEW = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "00000000-0000-0000-0000-000000000001",
        "kind": {"group": "networking.istio.io", "version": "v1", "kind": "ServiceEntry"},
        "operation": "CREATE",
        "namespace": "default",
        "name": "everything",
        "userInfo": {"username": "curl"},
        "object": {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "everything", "namespace": "default"},
            "spec": {
                "hosts": ["*.com"],
                "ports": [{"name": "tls", "number": 443, "protocol": "TLS"}],
            },
        },
    },
}


@dataclass(frozen=True)
class Options:
    """What ``seguard serve`` was asked for (its flags, parsed)."""

    host: str = "0.0.0.0"
    port: int = 8443
    metrics_port: int = 8080
    cert_dir: Path | None = None  # None: development certificates in ./certs
    client_ca: Path | None = None
    policy_file: Path | None = None  # reloaded live when given
    follow_files: bool = False  # --registry-dir given: no cluster unless --kubeconfig
    kubeconfig: Path | None = None
    istiod_url: str | None = None
    audit_file: Path | None = None
    audit_stdout: bool = True
    manage_webhooks: str | None = None
    rollout_probe_namespace: str = "default"
    lease_namespace: str | None = None
    drain_seconds: float = 5.0
    max_connections: int | None = None
    log_format: str = logs.TEXT


class Stoppable(Protocol):
    def stop(self) -> None: ...


def curl_command(*, host: str, port: int, cert_dir: Path) -> str:
    shown_host = "localhost" if host in ("0.0.0.0", "::", "127.0.0.1", "") else host
    if ":" in shown_host:
        shown_host = f"[{shown_host}]"
    body = json.dumps(SAMPLE_REVIEW, separators=(",", ":"))
    ca = cert_dir / "ca.crt"
    trust = f"--cacert {shlex.quote(str(ca))}" if ca.exists() else "--insecure"
    return (
        f"curl -sS {trust} -H 'Content-Type: application/json' "
        f"--data {shlex.quote(body)} https://{shown_host}:{port}/validate"
    )


def cluster_to_follow(options: Options) -> tuple[bool, Path | None]:
    """Whether serve follows a cluster, and through which kubeconfig (None: in-cluster)."""
    return kube.cluster_to_read(options.kubeconfig, other_sources=options.follow_files)


def start_sources(
    options: Options,
    *,
    policy: Policy,
    builder: RegistryBuilder,
    runtime: Runtime,
    cluster: bool,
    kubeconfig: Path | None,
    stoppers: list[Stoppable],
) -> kube.Transport | None:
    """Start what keeps the registry current; returns the cluster's transport (None without a
    cluster)."""
    store: RegistryStore
    transport = None
    if cluster:
        from webhook.sources import kubernetes

        transport = kube.connect(kubeconfig)
        log.info(
            "following the cluster at %s (%s)",
            transport.host,
            kubeconfig or "in-cluster service account",
            extra=logs.fields("cluster.following", host=transport.host),
        )
        runtime.syncs = {r.kind: False for r in kubernetes.RESOURCES}

        def synced(resource: kube.Resource, state: kubernetes.KindState) -> None:
            # Once synced, a kind stays synced: readiness does not flap on a reconnect.
            runtime.syncs[resource.kind] = runtime.syncs.get(resource.kind, False) or state.synced

        source = kubernetes.KubernetesSource(
            transport,
            cluster_domain=policy.cluster_domain,
            on_snapshot=runtime.set_snapshot,
            on_change=synced,
            initial=builder,
        )
        runtime.metrics.watch(source)
        runtime.registry_staleness = source.staleness
        store = source.store
        source.start()
        stoppers.append(source)
    else:
        store = RegistryStore(
            cluster_domain=policy.cluster_domain, on_snapshot=runtime.set_snapshot, initial=builder
        )
        runtime.set_snapshot(store.snapshot())
        heap.trim()  # reading the manifests allocated and freed several times what is kept
        store.start_publisher()
        stoppers.append(store)
    if options.manage_webhooks:
        if transport is None:
            raise ValueError("--manage-webhooks needs a cluster (--kubeconfig, or run in a pod)")
        from webhook.rollout import RolloutManager

        cert_dir = options.cert_dir or Path("certs")
        manager = RolloutManager(
            transport,
            name=options.manage_webhooks,
            ca_file=cert_dir / "ca.crt",
            probe_namespace=options.rollout_probe_namespace,
            is_ready=lambda: runtime.readiness()[0],
        )
        manager.start()
        stoppers.append(manager)
    if options.istiod_url:
        from webhook.sources import istiod

        poller = istiod.IstiodPoller(options.istiod_url, store)
        poller.start()
        stoppers.append(poller)
    return transport


def start_reporting(
    options: Options,
    *,
    runtime: Runtime,
    transport: kube.Transport | None,
    stoppers: list[Stoppable],
) -> EventRecorder | None:
    """Warning events (with a cluster) and the periodic scan; returns the event recorder."""
    from webhook.scanner import LeaseElector, Scanner, own_namespace

    metrics = runtime.metrics
    recorder = None
    elector = None
    if transport is not None:
        recorder = EventRecorder(
            transport,
            on_dropped=metrics.event_dropped,
            on_sent=metrics.events_sent.inc,
        )
        recorder.start()
        stoppers.append(recorder)
        elector = LeaseElector(transport, namespace=options.lease_namespace or own_namespace())
    reporter = None
    if transport is not None:
        from webhook.reporter import PolicyReporter

        reporter = PolicyReporter(transport)
    scanner = Scanner(runtime, elector=elector, recorder=recorder, reporter=reporter)
    scanner.start()
    stoppers.append(scanner)
    if transport is not None and elector is not None and options.policy_file is None:
        # The policy is the cluster's ServiceEntryPolicy "default"; the scan's Lease holder
        # writes its status.
        from webhook.policysource import PolicyResource

        lease = elector
        source = PolicyResource(transport, runtime, leading=lambda: lease.leading)
        source.start()
        stoppers.append(source)
    return recorder


def announce(options: Options, webhook_port: int, ops_port: int, what: str, cert_dir: Path) -> None:
    """The line that says the server is up: a banner and a curl to try, or one JSON line."""
    webhook_url = f"https://{options.host}:{webhook_port}"
    ops_url = f"http://{options.host}:{ops_port}"
    banner = (
        f"seguard {__version__}: webhook on {webhook_url} (/validate, /mutate), operations "
        f"on {ops_url} (/healthz, /readyz, /metrics); {what}"
    )
    curl = curl_command(host=options.host, port=webhook_port, cert_dir=cert_dir)
    if options.log_format == logs.JSON:
        log.info(
            banner,
            extra=logs.fields(
                "server.started",
                version=__version__,
                webhook=webhook_url,
                operations=ops_url,
                try_it=curl,
            ),
        )
        return
    print(banner, file=sys.stderr)
    print("Try it:", file=sys.stderr)
    print("  " + curl, file=sys.stderr, flush=True)


def run(options: Options, *, policy: Policy, builder: RegistryBuilder) -> None:
    """Serve until a signal; then drain, and stop every part."""
    follow_cluster, kubeconfig = cluster_to_follow(options)
    cert_dir = options.cert_dir if options.cert_dir is not None else Path("certs")
    if options.cert_dir is None:
        # Issuing takes cryptography, which serving a certificate does not (see webhook.tls).
        from webhook import certs

        if certs.ensure_dev_certs(cert_dir):
            log.info(
                "made development certificates in %s/ (CA: %s)",
                cert_dir,
                cert_dir / tls.CA_FILE,
                extra=logs.fields("certs.generated", directory=str(cert_dir)),
            )
    ssl_context = tls.server_context(cert_dir, client_ca=options.client_ca)
    metrics = Metrics()
    metrics.gc_pauses.install()
    heap.map_big_blocks()  # an old snapshot's memory goes back to the system when it is freed
    audit_log = open_audit_log(
        stdout=options.audit_stdout,
        file=str(options.audit_file) if options.audit_file else None,
        on_failure=lambda sink: metrics.audit_failures.labels(sink).inc(),
        on_stall=metrics.audit_stall,
    )
    audit_log.start()  # group commit: the event loop never waits on the disk
    runtime = Runtime(audit=audit_log, metrics=metrics)
    runtime.set_policy(policy)
    listeners = server.Listeners(
        webhook=server.bind(options.host, options.port),
        ops=server.bind(options.host, options.metrics_port),
    )
    stoppers: list[Stoppable] = []
    try:
        transport = start_sources(
            options,
            policy=policy,
            builder=builder,
            runtime=runtime,
            cluster=follow_cluster,
            kubeconfig=kubeconfig,
            stoppers=stoppers,
        )
        recorder = start_reporting(options, runtime=runtime, transport=transport, stoppers=stoppers)
        limits = connections.fit_fd_limit(
            connections.Limits(
                max_connections=options.max_connections or connections.MAX_CONNECTIONS
            )
        )
        web = server.WebhookServer(
            webhook_app=create_app(runtime, on_denied=recorder),
            ops_app=create_ops_app(runtime),
            listeners=listeners,
            ssl_context=ssl_context,
            limits=limits,
            on_refused=metrics.connection_refused,
        )
        metrics.connections(web.pools)
        checks: dict[str, Callable[[], object]] = {
            "certificate-reloader": reload.CertificateReloader(
                cert_dir,
                ssl_context,
                on_error=metrics.certificate_errors.inc,
                on_loaded=metrics.certificate_expiry.set,
            ).check
        }
        if options.policy_file is not None:
            checks["policy-reloader"] = reload.PolicyReloader(options.policy_file, runtime).check

        async def drain(_signal: int) -> None:
            if runtime.draining:  # a second signal: stop now
                web.stop()
                return
            # Go unready, so the Service stops routing here, but keep answering (with
            # Connection: close, so kept-alive callers reconnect elsewhere) for the drain
            # window; then stop.
            runtime.draining = True
            log.info(
                "draining for %.1f s before stopping",
                options.drain_seconds,
                extra=logs.fields("server.draining", seconds=options.drain_seconds),
            )
            await asyncio.sleep(options.drain_seconds)
            web.stop()

        def started() -> None:
            snapshot = runtime.snapshot
            where = (
                "following the cluster"
                if follow_cluster
                else f"{len(snapshot) if snapshot else 0} registry objects"
            )
            announce(
                options,
                listeners.webhook_port,
                listeners.ops_port,
                f"policy {policy.source}, {where}",
                cert_dir,
            )

        server.run(
            lambda: web.serve(
                on_started=started, on_signal=drain, background=[lambda: reload.poll(checks)]
            )
        )
    finally:
        for stopper in stoppers:
            stopper.stop()
        audit_log.close()
