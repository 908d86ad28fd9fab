"""The watch loop against a small fake API server: list, watch, and every fault we know of.

After each fault the published snapshot must equal the server's state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.factories import make_namespace, make_service, make_service_entry
from tests.fakeapi import Cluster, FakeApiServer
from webhook import kube
from webhook.backoff import JITTER
from webhook.core.registry import Snapshot
from webhook.sources import kubernetes as k8s

# What the registry must hold of each object: kind, namespace, name, hosts, effective exportTo.
ClaimState = tuple[str, str, str, tuple[str, ...], tuple[str, ...] | None]

# Liveness bounds only: how long to wait for something that must happen, never a speed target.
PATIENCE_S = 20.0


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}")


class Harness:
    def __init__(
        self, fake: FakeApiServer, kubeconfig: Path, *, crd_gone_after: float = 0.0
    ) -> None:
        self.fake = fake
        self.cluster = fake.cluster
        self.snapshots: list[Snapshot] = []
        self.errors_seen: list[str] = []  # every problem a watcher reported
        self.lock = threading.Lock()
        self.transport = kube.connect(kubeconfig)
        self.source = k8s.KubernetesSource(
            self.transport,
            cluster_domain="cluster.local",
            on_snapshot=self._got,
            on_change=self._changed,
            backoff_start=0.05,
            backoff_max=0.2,
            crd_retry=0.2,
            crd_gone_after=crd_gone_after,
        )

    def _changed(self, _resource: kube.Resource, state: k8s.KindState) -> None:
        if state.error:
            with self.lock:
                self.errors_seen.append(state.error)

    def _got(self, snapshot: Snapshot) -> None:
        with self.lock:
            self.snapshots.append(snapshot)

    @property
    def latest(self) -> Snapshot | None:
        with self.lock:
            return self.snapshots[-1] if self.snapshots else None

    def state_of_server(
        self,
    ) -> tuple[set[ClaimState], dict[str, frozenset[tuple[str, str]]]]:
        claims = set()
        with self.cluster.lock:
            for kind in ("Service", "ServiceEntry"):
                for (ns, name), obj in self.cluster.objects[kind].items():
                    export_to: tuple[str, ...] | None = None
                    if kind == "Service":
                        hosts: tuple[str, ...] = (f"{name}.{ns}.svc.cluster.local",)
                        raw_export = (obj.get("metadata", {}).get("annotations") or {}).get(
                            "networking.istio.io/exportTo"
                        )
                        if raw_export:
                            export_to = tuple(p.strip() for p in raw_export.split(",") if p.strip())
                    else:
                        spec = obj.get("spec")
                        raw = spec.get("hosts") if isinstance(spec, dict) else None
                        if not isinstance(raw, list) or not all(isinstance(h, str) for h in raw):
                            continue  # garbage: skipped by the registry
                        assert isinstance(spec, dict)
                        hosts = tuple(raw)
                        export_to = tuple(spec.get("exportTo") or ()) or None
                    claims.add((kind, ns, name, hosts, export_to))
            namespaces = {
                name: frozenset((obj.get("metadata", {}).get("labels") or {}).items())
                for (_, name), obj in self.cluster.objects["Namespace"].items()
            }
        return claims, namespaces

    def state_of_snapshot(
        self,
    ) -> tuple[set[ClaimState], dict[str, frozenset[tuple[str, str]]]]:
        snapshot = self.latest
        if snapshot is None:
            return set(), {}
        claims = {
            (c.kind, c.namespace, c.name, c.hosts, c.export_to) for c in snapshot.claims.values()
        }
        return claims, dict(snapshot.namespaces)

    def force_relist(self, marker: str) -> None:
        """Take the server down, change something, compact the history: watches that come back
        are too old (410) and must list again."""
        self.fake.stop()
        self.cluster.put(make_namespace(marker))
        self.cluster.compact()
        self.fake.start()

    def converged(self) -> bool:
        return self.state_of_snapshot() == self.state_of_server()

    def wait_converged(self, what: str) -> None:
        wait_until(self.converged, what)


@pytest.fixture
def cluster() -> Cluster:
    c = Cluster()
    c.put(make_namespace("bookinfo", {"team": "bookinfo"}))
    c.put(make_namespace("team-a", {"team": "a"}))
    c.put(make_service("reviews", "bookinfo"))
    c.put(make_service("ratings", "bookinfo"))
    c.put(make_service_entry("stripe", "team-a", ["api.stripe.com"]))
    return c


@pytest.fixture
def harness(cluster: Cluster, tmp_path: Path) -> Iterator[Harness]:
    fake = FakeApiServer(cluster)
    fake.start()
    h = Harness(fake, fake.kubeconfig(tmp_path / "kubeconfig"))
    h.source.start()
    try:
        yield h
    finally:
        h.source.stop()
        fake.stop()
        h.source.join()


def test_the_first_snapshot_is_published_only_after_every_kind_is_listed(harness: Harness) -> None:
    harness.wait_converged("the first full sync")
    first = harness.snapshots[0]
    assert {key[0] for key in first.claims} == {"Service", "ServiceEntry"}
    assert first.namespaces["team-a"] == frozenset({("team", "a")})
    assert harness.source.synced


def test_events_add_change_and_remove_objects(harness: Harness) -> None:
    harness.wait_converged("the first full sync")
    c = harness.cluster
    c.put(make_service_entry("github", "team-a", ["api.github.com"]))
    c.put(make_service_entry("stripe", "team-a", ["api.stripe.com", "files.stripe.com"]))
    c.put(make_namespace("team-a", {"team": "a", "tier": "gold"}))
    c.delete("Service", "bookinfo", "ratings")
    harness.wait_converged("the events")
    snapshot = harness.latest
    assert snapshot is not None
    assert [m.owner.name for m in snapshot.matches("files.stripe.com")] == ["stripe"]
    assert list(snapshot.matches("ratings.bookinfo.svc.cluster.local")) == []
    assert c.count("Service", "list") == 1, "an event must not cause a relist"


def test_a_closed_watch_stream_resumes_from_the_last_version_without_a_relist(
    harness: Harness,
) -> None:
    harness.wait_converged("the first full sync")
    harness.cluster.close_watches()
    harness.cluster.put(make_service("details", "bookinfo"))
    harness.wait_converged("the event after the stream closed")
    assert harness.cluster.count("Service", "list") == 1
    assert harness.cluster.count("Service", "watch") >= 2


def test_410_gone_makes_a_relist(harness: Harness) -> None:
    harness.wait_converged("the first full sync")
    harness.fake.stop()
    harness.cluster.put(make_service("details", "bookinfo"))  # an event nobody watched
    # The visibility changes too while nobody watched: the relist must carry it.
    harness.cluster.put(make_service_entry("stripe", "team-a", ["api.stripe.com"], export_to=["."]))
    harness.cluster.compact()
    harness.fake.start()
    wait_until(lambda: harness.cluster.count("Service", "list") >= 2, "a relist after 410")
    harness.wait_converged("the state after the relist")
    assert all(w.state.synced for w in harness.source.watchers)
    snapshot = harness.latest
    assert snapshot is not None
    stripe = snapshot.get("ServiceEntry", "team-a", "stripe")
    assert stripe is not None and stripe.export_to == (".",)


def test_a_service_deleted_while_the_watch_is_down_is_removed_by_the_relist(
    harness: Harness,
) -> None:
    harness.wait_converged("the first full sync")
    harness.fake.stop()
    # Deleted while nobody watched, and the history compacted: no DELETED event will come.
    harness.cluster.delete("Service", "bookinfo", "ratings", silently=True)
    harness.fake.start()
    harness.cluster.close_watches()
    harness.wait_converged("the relist that removes the Service")
    snapshot = harness.latest
    assert snapshot is not None
    assert snapshot.get("Service", "bookinfo", "ratings") is None


def test_an_api_server_restart_mid_watch_is_survived(harness: Harness) -> None:
    harness.wait_converged("the first full sync")
    restarts = sum(w.state.restarts for w in harness.source.watchers)
    harness.fake.restart(down_for=0.5)
    harness.cluster.put(make_service_entry("after", "team-a", ["after.example.com"]))
    harness.wait_converged("the state after the restart")
    assert sum(w.state.restarts for w in harness.source.watchers) > restarts
    assert harness.source.synced, "readiness must not flap on a restart"


def test_bookmarks_move_the_version_forward(harness: Harness) -> None:
    """With bookmarks, a quiet Service watch learns the version moved on, so compacting the
    history behind it does not force a relist when its stream is closed."""
    harness.wait_converged("the first full sync")
    harness.fake.set_bookmarks(True)
    for i in range(3):
        harness.cluster.put(make_namespace(f"extra-{i}"))
    version = harness.cluster.version
    watcher = next(w for w in harness.source.watchers if w.resource.kind == "Service")
    wait_until(
        lambda: int(watcher.state.version or 0) >= version, "the Service watcher to read a bookmark"
    )
    harness.cluster.compact()
    harness.cluster.close_watches()
    harness.cluster.put(make_service("details", "bookinfo"))
    harness.wait_converged("the event after the bookmarks")
    assert harness.cluster.count("Service", "list") == 1


def test_a_service_entry_with_garbage_is_skipped_counted_and_logged_once(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="seguard.kubernetes")
    harness.wait_converged("the first full sync")
    garbage: dict[str, Any] = make_service_entry("junk", "team-a", [])
    garbage["spec"] = {"hosts": "not-a-list", "ports": 7}
    harness.cluster.put(garbage)
    wait_until(lambda: bool(harness.latest and harness.latest.skipped), "the skipped object")
    harness.force_relist("marker")  # a relist sees the same garbage again
    wait_until(lambda: harness.cluster.count("ServiceEntry", "list") >= 2, "a relist")
    harness.wait_converged("the state after the relist")
    snapshot = harness.latest
    assert snapshot is not None
    assert [(s.namespace, s.name) for s in snapshot.skipped] == [("team-a", "junk")]
    assert snapshot.get("ServiceEntry", "team-a", "junk") is None
    logged = [r for r in caplog.records if "team-a/junk" in r.getMessage()]
    assert len(logged) == 1


def test_a_missing_crd_means_an_empty_service_entry_registry_until_it_appears(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.missing.add("ServiceEntry")
    fake = FakeApiServer(cluster)
    fake.start()
    h = Harness(fake, fake.kubeconfig(tmp_path / "kc"))
    h.source.start()
    try:
        wait_until(lambda: h.latest is not None, "the first snapshot without the CRD")
        snapshot = h.latest
        assert snapshot is not None
        assert snapshot.count("ServiceEntry") == 0
        assert snapshot.count("Service") == 2
        se_watcher = next(w for w in h.source.watchers if w.resource.kind == "ServiceEntry")
        assert "CRD is not installed" in se_watcher.state.error
        cluster.missing.discard("ServiceEntry")  # Istio is installed
        h.wait_converged("the ServiceEntries once the CRD exists")
    finally:
        h.source.stop()
        fake.stop()
        h.source.join()


def test_a_404_after_the_crd_was_served_keeps_the_service_entries_for_a_while(
    cluster: Cluster, tmp_path: Path
) -> None:
    """After an API server restart a custom resource can answer 404 for a moment: that must not
    empty the registry (conflicts would be admitted meanwhile) until it has lasted."""
    fake = FakeApiServer(cluster)
    fake.start()
    h = Harness(fake, fake.kubeconfig(tmp_path / "kc"), crd_gone_after=1.5)
    h.source.start()
    try:
        h.wait_converged("the first full sync")
        cluster.missing.add("ServiceEntry")
        cluster.close_watches()
        se_watcher = next(w for w in h.source.watchers if w.resource.kind == "ServiceEntry")
        wait_until(lambda: "keeping the last" in se_watcher.state.error, "the 404 to be seen")
        snapshot = h.latest
        assert snapshot is not None
        assert snapshot.get("ServiceEntry", "team-a", "stripe") is not None
        wait_until(lambda: "CRD is not installed" in se_watcher.state.error, "the grace to end")
        wait_until(
            lambda: h.latest is not None and h.latest.count("ServiceEntry") == 0,
            "an empty ServiceEntry registry once the 404 lasted",
        )
        cluster.missing.discard("ServiceEntry")
        h.wait_converged("the ServiceEntries once the resource is served again")
    finally:
        h.source.stop()
        fake.stop()
        h.source.join()


def test_a_404_that_passes_keeps_the_registry_throughout(harness: Harness) -> None:
    harness.wait_converged("the first full sync")
    seen: list[int] = []
    harness.cluster.missing.add("ServiceEntry")
    harness.cluster.close_watches()
    se_watcher = next(w for w in harness.source.watchers if w.resource.kind == "ServiceEntry")
    # A harness with no grace at all would empty at once; give this one the default.
    se_watcher._crd_gone_after = k8s.CRD_GONE_AFTER_S
    wait_until(lambda: "keeping the last" in se_watcher.state.error, "the 404 to be seen")
    harness.cluster.missing.discard("ServiceEntry")
    harness.cluster.put(make_service_entry("github", "team-a", ["api.github.com"]))
    harness.wait_converged("the ServiceEntries after the 404 passed")
    for snapshot in list(harness.snapshots):
        seen.append(snapshot.count("ServiceEntry"))
    assert 0 not in seen, "the registry must never have been emptied"


def test_a_404_before_the_first_list_is_not_taken_for_a_missing_crd_at_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A webhook started just after an API server restart can see a 404 for ServiceEntries
    before the API server serves them: it must stay unready, not publish an empty registry."""
    cluster.missing.add("ServiceEntry")
    fake = FakeApiServer(cluster)
    fake.start()
    h = Harness(fake, fake.kubeconfig(tmp_path / "kc"), crd_gone_after=30.0)
    h.source.start()
    try:
        se_watcher = next(w for w in h.source.watchers if w.resource.kind == "ServiceEntry")
        wait_until(lambda: "not treating" in se_watcher.state.error, "the first 404 to be seen")
        assert h.latest is None and not h.source.synced
        cluster.missing.discard("ServiceEntry")
        h.wait_converged("the ServiceEntries once they are served")
        assert h.snapshots[0].get("ServiceEntry", "team-a", "stripe") is not None
    finally:
        h.source.stop()
        fake.stop()
        h.source.join()


def test_an_unforeseen_error_on_every_watch_backs_off_instead_of_relisting_at_once(
    harness: Harness,
) -> None:
    harness.wait_converged("the first full sync")
    watcher = next(w for w in harness.source.watchers if w.resource.kind == "Service")
    waits: list[float] = []
    real_wait = watcher._stop.wait

    def broken_watch(version: str) -> str:
        raise RuntimeError("a bug in handling events")

    def recorded_wait(timeout: float | None = None) -> bool:
        waits.append(timeout or 0.0)
        return real_wait(0.01)

    watcher._stop.wait = recorded_wait  # type: ignore[method-assign]
    watcher._watch = broken_watch  # type: ignore[method-assign]
    harness.cluster.close_watches()  # the running watch ends; the next ones all break
    wait_until(lambda: len(waits) >= 4, "four failed rounds")
    assert_backs_off(waits[:4], [0.05, 0.1, 0.2, 0.2])  # although each list works


def assert_backs_off(waits: list[float], delays: list[float]) -> None:
    """Each wait is its delay plus at most the jitter (a fifth of it)."""
    assert len(waits) == len(delays)
    for wait, delay in zip(waits, delays, strict=True):
        assert delay <= wait <= delay * (1 + JITTER), (waits, delays)


def test_an_api_server_that_is_gone_is_retried_ever_more_slowly(harness: Harness) -> None:
    """Each failed attempt doubles the wait (to the cap); a list or watch that fails at once
    never resets it (it used to: every retry waited the first delay again)."""
    harness.wait_converged("the first full sync")
    watcher = next(w for w in harness.source.watchers if w.resource.kind == "Service")
    waits: list[float] = []
    real_wait = watcher._stop.wait

    def recorded_wait(timeout: float | None = None) -> bool:
        waits.append(timeout or 0.0)
        return real_wait(0.01)

    watcher._stop.wait = recorded_wait  # type: ignore[method-assign]
    harness.fake.stop()
    harness.cluster.close_watches()
    wait_until(lambda: len(waits) >= 4, "four failed attempts")
    assert not watcher.state.connected and watcher.state.staleness(time.time()) > 0
    harness.fake.start()
    assert_backs_off(waits[:4], [0.05, 0.1, 0.2, 0.2])
    wait_until(lambda: watcher.state.connected, "the watch to be open again")
    assert watcher.state.staleness(time.time()) == 0.0


def test_a_list_cut_off_mid_body_is_retried_not_fatal(harness: Harness) -> None:
    """A connection that breaks while the client reads a body (an API server going away) must
    not end the watcher's thread: it backs off and lists again."""
    harness.wait_converged("the first full sync")
    harness.cluster.cut_lists = 3
    harness.fake.stop()
    harness.cluster.put(make_service("details", "bookinfo"))
    harness.cluster.compact()
    harness.fake.start()
    wait_until(lambda: harness.cluster.cut_lists <= 0, "the cut lists to be served")
    harness.wait_converged("the state after lists that broke off")
    assert all(w._thread.is_alive() for w in harness.source.watchers)
    assert any("broke while reading" in r for r in harness.errors_seen)


def test_rbac_refusal_names_the_verb_and_the_resource(cluster: Cluster, tmp_path: Path) -> None:
    cluster.forbidden.add(("Service", "watch"))
    fake = FakeApiServer(cluster)
    fake.start()
    try:
        transport = kube.connect(fake.kubeconfig(tmp_path / "kc"))
        service = next(r for r in k8s.RESOURCES if r.kind == "Service")
        with pytest.raises(
            kube.Forbidden, match=r"RBAC forbids watch on services at the cluster scope"
        ):
            list(transport.watch(service, resource_version="1"))
        cluster.forbidden = {("ServiceEntry", "list")}
        with pytest.raises(
            kube.Forbidden, match=r"forbids list on serviceentries.networking.istio.io"
        ):
            k8s.read_cluster(transport)
    finally:
        fake.stop()


def test_a_watcher_refused_by_rbac_keeps_the_server_unready_and_says_why(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.forbidden.add(("Service", "list"))
    fake = FakeApiServer(cluster)
    fake.start()
    h = Harness(fake, fake.kubeconfig(tmp_path / "kc"))
    h.source.start()
    try:
        watcher = next(w for w in h.source.watchers if w.resource.kind == "Service")
        wait_until(lambda: "RBAC forbids list on services" in watcher.state.error, "the RBAC error")
        assert not h.source.synced
        assert h.latest is None, "nothing half-built may be published"
        cluster.forbidden.clear()  # the admin fixes the Role
        h.wait_converged("the sync once RBAC allows it")
    finally:
        h.source.stop()
        fake.stop()
        h.source.join()


def test_lists_are_paged(cluster: Cluster, tmp_path: Path) -> None:
    for i in range(1203):
        cluster.put(make_service(f"svc-{i}", "bulk"))
    fake = FakeApiServer(cluster)
    fake.start()
    try:
        transport = kube.connect(fake.kubeconfig(tmp_path / "kc"))
        objects, notes = k8s.read_cluster(transport)
        assert notes == []
        assert sum(1 for o in objects if o["kind"] == "Service") == 1205
        assert cluster.count("Service", "list") == 3  # 500 + 500 + 205
    finally:
        fake.stop()


def test_relabelling_a_namespace_changes_its_rules_without_a_restart(harness: Harness) -> None:
    from tests.factories import make_policy, make_request
    from webhook.core import review

    policy = make_policy(
        namespaces=[
            {
                "selector": {"matchLabels": {"egress": "locked"}},
                "hosts": {"allowed": ["*.internal.example"]},
            }
        ]
    )
    harness.wait_converged("the first full sync")
    request = make_request(make_service_entry("x", "team-a", ["free.example.com"]))

    def verdict() -> tuple[str, ...]:
        snapshot = harness.latest
        assert snapshot is not None
        return review.validate(request, policy=policy, snapshot=snapshot).codes

    assert verdict() == ()
    harness.cluster.put(make_namespace("team-a", {"team": "a", "egress": "locked"}))
    wait_until(lambda: verdict() == ("HostNotAllowed",), "the new label to take effect")
    harness.cluster.put(make_namespace("team-a", {"team": "a"}))
    wait_until(lambda: verdict() == (), "the label removal to take effect")


def test_stopping_closes_the_open_watches_quietly(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.wait_converged("the first full sync")
    wait_until(lambda: all(w.state.connected for w in harness.source.watchers), "every watch open")
    with caplog.at_level(logging.INFO, logger="seguard"):
        harness.source.stop()
        harness.source.join()
    assert all(not w._thread.is_alive() for w in harness.source.watchers)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
