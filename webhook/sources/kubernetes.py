"""The kubernetes source: list, then watch, Services, Namespaces and ServiceEntries (shell).

Objects stay raw JSON (orjson), never the client's typed models: the typed path costs about five
times as much. One thread per kind runs the list-then-watch loop; the ``RegistryStore`` they share
turns their events into immutable snapshots, published whole.

Per kind, the loop is client-go's reflector in miniature: list (paged) and replace that kind's
objects; watch from the list's resourceVersion with bookmarks; on a closed stream, watch again
from the last resourceVersion seen; on 410 Gone, list again; on any other error, back off from
0.8 s, doubling up to 30 s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from webhook import logs, supervise
from webhook.backoff import Backoff
from webhook.core.claims import CLUSTER_SOURCE, NAMESPACE, SERVICE, SERVICE_ENTRY
from webhook.core.registry import RegistryBuilder, Snapshot
from webhook.kube import (
    ClusterError,
    Gone,
    NotFound,
    Resource,
    Transport,
)
from webhook.sources.store import RegistryStore

log = logging.getLogger("seguard.kubernetes")

SOURCE = CLUSTER_SOURCE
# client-go's defaults for a reflector's backoff: start at 800 ms, double, stop growing at 30 s.
BACKOFF_START_S = 0.8
BACKOFF_MAX_S = 30.0
# A watch stream is healthy once it delivered an event or bookmark, or stayed open this long:
# only then does the backoff start again from the beginning. One that ends at once (an API
# server shutting down) is waited after like a failure, never reopened in a tight loop.
HEALTHY_STREAM_S = 10.0
# How often to look again for the ServiceEntry CRD while Istio is not installed.
CRD_RETRY_S = 30.0
# How long ServiceEntries must answer 404 before the CRD is taken for missing (the registry then
# empty). After an API server restart, custom resources can answer 404 for a moment
# (kubernetes/kubernetes#115241); taking that for "not installed" would admit conflicts
# meanwhile. A CRD that is really deleted takes its objects with it, and the watch reports those
# deletions anyway; a cluster without Istio waits this long before the first ready.
CRD_GONE_AFTER_S = 60.0


RESOURCES: tuple[Resource, ...] = (
    Resource(NAMESPACE, "v1", "/api/v1/namespaces", "", "namespaces"),
    Resource(SERVICE, "v1", "/api/v1/services", "", "services"),
    Resource(
        SERVICE_ENTRY,
        "networking.istio.io/v1",
        "/apis/networking.istio.io/v1/serviceentries",
        "networking.istio.io",
        "serviceentries",
    ),
)


class Listing:
    """Every object of a kind, page by page (following continue tokens), as an iterator: a page
    is dropped as soon as its objects are indexed, so a 100k list never sits in memory whole.
    ``resource_version`` is set once the last page is read."""

    def __init__(self, transport: Transport, resource: Resource) -> None:
        self.transport = transport
        self.resource = resource
        self.resource_version = ""
        self.count = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        token = ""
        resource = self.resource
        while True:
            page = self.transport.list(resource, continue_token=token)
            for item in page.get("items") or []:
                if isinstance(item, dict):
                    # Items of a typed list carry no kind or apiVersion.
                    item.setdefault("kind", resource.kind)
                    item.setdefault("apiVersion", resource.api_version)
                    self.count += 1
                    yield item
            meta = page.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                self.resource_version = str(meta.get("resourceVersion") or "")
                return


def list_all(transport: Transport, resource: Resource) -> tuple[list[dict[str, Any]], str]:
    """Every object of a kind, and the list's resourceVersion."""
    listing = Listing(transport, resource)
    items = list(listing)
    return items, listing.resource_version


def read_cluster(transport: Transport) -> tuple[list[dict[str, Any]], list[str]]:
    """One full list of every kind, for the CLI. A missing ServiceEntry CRD is a note, not an
    error: the ServiceEntry registry is then empty."""
    objects: list[dict[str, Any]] = []
    notes: list[str] = []
    for resource in RESOURCES:
        try:
            items, _ = list_all(transport, resource)
        except NotFound:
            if resource.kind != SERVICE_ENTRY:
                raise
            notes.append(
                "the ServiceEntry CRD is not installed (is Istio installed?); "
                "the ServiceEntry registry is empty"
            )
            continue
        objects.extend(items)
    return objects, notes


# --- the watchers ------------------------------------------------------------------------------


@dataclass
class KindState:
    synced: bool = False
    last_event: float = 0.0  # time.time() of the last list or event
    restarts: int = 0
    relists: int = 0
    error: str = ""
    version: str = ""  # the last resourceVersion seen (list, event or bookmark)
    # Whether a watch stream is open now, and time.time() of the last sign the registry of this
    # kind was current: a list, a watch opened, an event or bookmark, a watch that ended well.
    connected: bool = False
    last_ok: float = 0.0

    def staleness(self, now: float) -> float:
        """Seconds the registry of this kind may be behind the cluster: none while a watch is
        open (a dead connection is found within the watch's read timeout), else the time since
        the last sign it was current. Infinite before the first list."""
        if self.connected:
            return 0.0
        return now - self.last_ok if self.last_ok else float("inf")


class Watcher:
    """List-then-watch for one kind, in a thread of its own."""

    def __init__(
        self,
        transport: Transport,
        resource: Resource,
        store: RegistryStore,
        *,
        on_change: Callable[[Resource, KindState], None] | None = None,
        backoff_start: float = BACKOFF_START_S,
        backoff_max: float = BACKOFF_MAX_S,
        crd_retry: float = CRD_RETRY_S,
        crd_gone_after: float = CRD_GONE_AFTER_S,
    ) -> None:
        self.transport = transport
        self.resource = resource
        self._crd_gone_after = crd_gone_after
        # When the served resource started answering 404 (None while it is served), and whether
        # its registry has been emptied because the resource is not served.
        self._missing_since: float | None = None
        self._absent = False
        self.store = store
        self.state = KindState()
        self._on_change = on_change
        self._backoff_start = backoff_start
        self._backoff_max = backoff_max
        self._crd_retry = crd_retry
        self._stop = threading.Event()
        self._thread = supervise.thread(f"watch-{resource.plural}", self.run, stop=self._stop)
        self._reported: str = ""
        self._response: Any = None
        self._events = 0  # events and bookmarks received, over every stream

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            # Unblock a read that may wait up to the watch timeout.
            shutdown = getattr(response, "shutdown", None) or response.close
            try:
                shutdown()
            except Exception as exc:  # already closed
                log.debug(
                    "closing the watch of %s: %s",
                    self.resource.qualified,
                    exc,
                    extra=logs.fields("registry.watch.closing", resource=self.resource.qualified),
                )

    def _opened(self, response: Any) -> None:
        self._response = response
        self.state.connected = True
        self.state.last_ok = time.time()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.resource, self.state)

    def _report(self, message: str, *, level: int = logging.ERROR) -> None:
        # One line per distinct problem, not one per retry.
        self.state.error = message
        if message != self._reported:
            self._reported = message
            log.log(
                level,
                "%s: %s",
                self.resource.qualified,
                message,
                extra=logs.fields("registry.watch.error", resource=self.resource.qualified),
            )
        self._changed()

    def relist(self) -> str:
        listing = Listing(self.transport, self.resource)
        self.store.replace_kind(self.resource.kind, listing, source=SOURCE)
        version = listing.resource_version
        first = not self.state.synced
        self.state.synced = True
        self.state.relists += 0 if first else 1
        self.state.last_event = self.state.last_ok = time.time()
        self.state.version = version
        self.state.error = ""
        self._missing_since = None
        self._absent = False
        if self._reported:
            log.info(
                "%s: listed %d objects; the problem is gone",
                self.resource.qualified,
                listing.count,
                extra=logs.fields(
                    "registry.watch.recovered",
                    resource=self.resource.qualified,
                    objects=listing.count,
                ),
            )
            self._reported = ""
        self._changed()
        return version

    def run(self) -> None:
        backoff = Backoff(self._backoff_start, self._backoff_max)
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    version = self.relist()
                started = time.monotonic()
                events_before = self._events
                version = self._watch(version)
                # The server ended the watch (its timeout, or it closed the stream): watch again
                # from where we were; at once if the stream was healthy.
                self.state.restarts += 1
                self.state.last_ok = time.time()
                self._changed()
                if self._events > events_before or time.monotonic() - started >= HEALTHY_STREAM_S:
                    backoff.reset()
                else:
                    self._stop.wait(backoff.next())
            except Gone:
                log.info(
                    "%s: resourceVersion %s is gone (410); listing again",
                    self.resource.qualified,
                    version,
                    extra=logs.fields("registry.watch.expired", resource=self.resource.qualified),
                )
                version = ""
                self.state.restarts += 1
            except NotFound as exc:
                if self.resource.kind != SERVICE_ENTRY:
                    wait = backoff.next()
                    self._report(f"{exc}; retrying in {wait:.1f} s")
                    self._stop.wait(wait)
                    continue
                if self._keep_through_404(exc, backoff.next()):
                    version = ""
                    continue
                # Istio is not installed (yet, or any more): an empty ServiceEntry registry,
                # and look again.
                self.store.replace_kind(self.resource.kind, [], source=SOURCE)
                self._absent = True
                self.state.synced = True
                version = ""
                self._report(
                    "the ServiceEntry CRD is not installed (is Istio installed?); treating "
                    "the ServiceEntry registry as empty and checking again every "
                    f"{self._crd_retry:g} s",
                    level=logging.WARNING,
                )
                self._stop.wait(self._crd_retry)
            except ClusterError as exc:
                if self._stop.is_set():
                    return  # stop() shut the watch down: the broken read is ours, not a fault
                wait = backoff.next()
                self._report(f"{exc}; retrying in {wait:.1f} s")
                self.state.restarts += 1
                self._stop.wait(wait)
            except Exception as exc:
                # A bug, or a failure nobody foresaw: this kind must not stop following the
                # cluster for good. Log it with its traceback, back off, and list again.
                log.exception(
                    "%s: the watch loop failed",
                    self.resource.qualified,
                    extra=logs.fields("registry.watch.failed", resource=self.resource.qualified),
                )
                self._report(f"internal error {type(exc).__name__}: {exc}; listing again")
                self.state.restarts += 1
                version = ""
                self._stop.wait(backoff.next())

    def _keep_through_404(self, exc: NotFound, delay: float) -> bool:
        """True while a 404 from a resource that was served is taken for a passing fault: the
        last registry of this kind stays, and the watcher retries with backoff."""
        if self._absent:
            return False
        now = time.monotonic()
        if self._missing_since is None:
            self._missing_since = now
        if now - self._missing_since >= self._crd_gone_after:
            return False
        # Before the first list, too: a webhook started just after an API server restart must
        # not take a passing 404 for "Istio is not installed" and admit conflicts meanwhile (it
        # stays unready instead).
        what = (
            f"keeping the last {self.resource.kind} registry"
            if self.state.synced
            else f"not treating the {self.resource.kind} registry as empty yet"
        )
        self._report(
            f"{exc}; {what} for up to {self._crd_gone_after:g} s in case the API server is "
            f"still starting, retrying in {delay:.1f} s",
            level=logging.WARNING,
        )
        self.state.restarts += 1
        self._stop.wait(delay)
        return True

    def _watch(self, version: str) -> str:
        try:
            return self._follow(version)
        finally:
            self.state.connected = False

    def _follow(self, version: str) -> str:
        events = self.transport.watch(self.resource, resource_version=version, on_open=self._opened)
        for event in events:
            if self._stop.is_set():
                break
            kind = event.get("type")
            obj = event.get("object")
            if not isinstance(obj, dict):
                continue
            if kind == "ERROR":
                code = obj.get("code")
                if code == 410:
                    raise Gone(str(obj.get("message", "")))
                raise ClusterError(f"watch error {code}: {obj.get('message', '')}")
            meta = obj.get("metadata") or {}
            version = str(meta.get("resourceVersion") or version)
            self.state.version = version
            self.state.last_event = self.state.last_ok = time.time()
            self._events += 1
            if kind == "BOOKMARK":
                continue
            obj.setdefault("kind", self.resource.kind)
            obj.setdefault("apiVersion", self.resource.api_version)
            if kind in ("ADDED", "MODIFIED"):
                self.store.apply(obj, source=SOURCE)
            elif kind == "DELETED":
                self.store.delete(obj)
        return version


class KubernetesSource:
    """All three watchers, and a publisher that swaps in new snapshots as they come."""

    def __init__(
        self,
        transport: Transport,
        *,
        cluster_domain: str,
        on_snapshot: Callable[[Snapshot], None],
        on_change: Callable[[Resource, KindState], None] | None = None,
        backoff_start: float = BACKOFF_START_S,
        backoff_max: float = BACKOFF_MAX_S,
        crd_retry: float = CRD_RETRY_S,
        crd_gone_after: float = CRD_GONE_AFTER_S,
        initial: RegistryBuilder | None = None,
    ) -> None:
        self.transport = transport
        self.store = RegistryStore(
            cluster_domain=cluster_domain, on_snapshot=self._publish, initial=initial
        )
        self._on_snapshot = on_snapshot
        self.watchers = [
            Watcher(
                transport,
                resource,
                self.store,
                on_change=on_change,
                backoff_start=backoff_start,
                backoff_max=backoff_max,
                crd_retry=crd_retry,
                crd_gone_after=crd_gone_after,
            )
            for resource in RESOURCES
        ]

    @property
    def synced(self) -> bool:
        return all(w.state.synced for w in self.watchers)

    def staleness(self) -> dict[str, float]:
        """Seconds each kind's registry may be behind the cluster (see KindState.staleness)."""
        now = time.time()
        return {w.resource.kind: w.state.staleness(now) for w in self.watchers}

    def _publish(self, snapshot: Snapshot) -> None:
        # Serve nothing half-built: the first snapshot goes out once every kind has been listed.
        if self.synced:
            self._on_snapshot(snapshot)

    def start(self) -> None:
        for watcher in self.watchers:
            watcher.start()
        self.store.start_publisher(lambda: self.synced)

    def stop(self) -> None:
        self.store.stop()
        for watcher in self.watchers:
            watcher.stop()

    def join(self, timeout: float = 5.0) -> None:
        for watcher in self.watchers:
            watcher.join(timeout)
        self.store.join(timeout)
