"""The registry every source feeds: thread-safe, publishing immutable snapshots (shell)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from webhook import heap, logs, supervise
from webhook.core.claims import Claim
from webhook.core.registry import RegistryBuilder, Snapshot

log = logging.getLogger("seguard.registry")


class RegistryStore:
    """The registry the sources share. Thread-safe; publishes immutable snapshots.

    A relist replaces one kind of one source whole (objects gone while a watch was down
    disappear); a watch event changes one object; a poll replaces all of a source's claims.
    ``publish`` hands a new snapshot to ``on_snapshot`` when anything changed since the last.
    """

    def __init__(
        self,
        *,
        cluster_domain: str,
        on_snapshot: Callable[[Snapshot], None],
        initial: RegistryBuilder | None = None,
        trim: Callable[[], None] = heap.trim,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._trim = trim
        self._builder = initial or RegistryBuilder(cluster_domain=cluster_domain)
        self._on_snapshot = on_snapshot
        self._dirty = threading.Event()
        # A relist or poll replaced many objects since the last snapshot: what it allocated and
        # freed is handed back to the system once that snapshot is out. Under churn, at most
        # every TRIM_EVERY_S: a trim costs half a millisecond and more at 100k entries, and
        # after every snapshot (four a second) it showed in the requests' p99.
        self._bulk = True
        self._clock = clock
        self._trimmed = clock()
        self._logged_skips: set[tuple[str, str, str, str]] = set()

    def replace_kind(self, kind: str, objects: Iterable[Mapping[str, Any]], *, source: str) -> None:
        # Index the new objects first, outside the lock (objects may be a listing still being
        # paged in from the API server); then swap them in.
        fresh = RegistryBuilder.bulk(
            ((source, obj) for obj in objects), cluster_domain=self._builder.cluster_domain
        )
        with self._lock:
            self._builder = self._builder.merge_kind(kind, fresh, source=source)
            self._bulk = True
            self._log_skips()
        self._dirty.set()

    def replace_claims(self, source: str, claims: Iterable[Claim]) -> None:
        with self._lock:
            self._builder = self._builder.replace_claims(source, claims)
            self._bulk = True
        self._dirty.set()

    def apply(self, obj: Mapping[str, Any], *, source: str) -> None:
        with self._lock:
            self._builder.apply(obj, source=source)
            self._log_skips()
        self._dirty.set()

    def delete(self, obj: Mapping[str, Any]) -> None:
        with self._lock:
            self._builder.delete(obj)
        self._dirty.set()

    def _log_skips(self) -> None:
        # Once per object and reason, however often a watch replays it.
        for skipped in self._builder.skipped.values():
            key = (skipped.kind, skipped.namespace, skipped.name, skipped.reason)
            if key not in self._logged_skips:
                self._logged_skips.add(key)
                log.warning(
                    "skipped %s %s/%s: %s",
                    skipped.kind,
                    skipped.namespace,
                    skipped.name,
                    skipped.reason,
                    extra=logs.fields(
                        "registry.object.skipped",
                        kind=skipped.kind,
                        namespace=skipped.namespace,
                        name=skipped.name,
                    ),
                )

    def snapshot(self) -> Snapshot:
        with self._lock:
            self._dirty.clear()
            return self._builder.snapshot()

    def publish(self) -> Snapshot | None:
        """Hand a new snapshot to ``on_snapshot`` if anything changed since the last one."""
        if not self._dirty.is_set():
            return None
        bulk, self._bulk = self._bulk, False
        snapshot = self.snapshot()
        self._on_snapshot(snapshot)
        now = self._clock()
        if bulk or now - self._trimmed >= self.TRIM_EVERY_S:
            self._trim()
            self._trimmed = now
        return snapshot

    def wait_dirty(self, timeout: float) -> bool:
        return self._dirty.wait(timeout)

    # Changes that arrive together (a relist, a namespace deleted with its objects) are folded
    # into one snapshot; 50 ms keeps a deleted host free well within a second.
    PUBLISH_EVERY_S = 0.05
    # Under churn, at most four snapshots a second: each costs the first change after it a copy
    # of the dictionaries it touches (milliseconds at 100k entries, holding the GIL the
    # requests need), and a deleted host is still free within a third of a second.
    PUBLISH_GAP_S = 0.25
    TRIM_EVERY_S = 10.0

    def start_publisher(self, ready: Callable[[], bool] = lambda: True) -> None:
        """Publish changes from a thread of their own, once ``ready()`` (nothing half-built)."""
        self._stop = threading.Event()

        def loop() -> None:
            last = 0.0
            while not self._stop.is_set():
                if not self.wait_dirty(0.5):
                    continue
                gap = self.PUBLISH_GAP_S - (time.monotonic() - last)
                self._stop.wait(max(self.PUBLISH_EVERY_S, gap))
                if ready():
                    self.publish()
                    last = time.monotonic()

        self._publisher = supervise.thread("registry-publisher", loop, stop=self._stop)
        self._publisher.start()

    def stop(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()

    def join(self, timeout: float = 5.0) -> None:
        publisher = getattr(self, "_publisher", None)
        if publisher is not None:
            publisher.join(timeout)
