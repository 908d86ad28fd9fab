"""The shared registry store: what a publish hands back to the system, and when."""

from __future__ import annotations

from tests.factories import make_service_entry
from webhook.core.registry import Snapshot
from webhook.sources.store import RegistryStore


def store_with_trims(
    clock: list[float] | None = None,
) -> tuple[RegistryStore, list[Snapshot], list[int]]:
    published: list[Snapshot] = []
    trims: list[int] = []
    now = clock if clock is not None else [0.0]
    store = RegistryStore(
        cluster_domain="cluster.local",
        on_snapshot=published.append,
        trim=lambda: trims.append(len(published)),
        clock=lambda: now[0],
    )
    return store, published, trims


def test_memory_is_handed_back_after_a_relist_not_after_each_watch_event() -> None:
    store, published, trims = store_with_trims()
    store.replace_kind(
        "ServiceEntry",
        [make_service_entry(f"se-{i}", "team-a", [f"h{i}.example.com"]) for i in range(50)],
        source="k8s",
    )
    assert store.publish() is not None
    assert trims == [1]  # once the relist's snapshot is out
    for i in range(5):
        store.apply(make_service_entry(f"se-{i}", "team-a", [f"n{i}.example.com"]), source="k8s")
        assert store.publish() is not None
    store.delete(make_service_entry("se-9", "team-a", ["h9.example.com"]))
    assert store.publish() is not None
    assert trims == [1]  # churn: seven snapshots, no trim after the first
    store.replace_claims("istiod", [])
    store.publish()
    assert trims == [1, len(published)]
    assert store.publish() is None  # nothing changed: no snapshot, no trim
    assert trims == [1, len(published)]


def test_under_churn_memory_is_handed_back_every_ten_seconds() -> None:
    clock = [0.0]
    store, published, trims = store_with_trims(clock)
    for second in range(25):
        clock[0] = float(second)
        store.apply(make_service_entry("a", "team-a", [f"h{second}.example.com"]), source="k8s")
        store.publish()
    assert len(published) == 25
    assert trims == [1, 11, 21]  # the first snapshot, then at 10 s and 20 s


def test_a_snapshot_keeps_what_it_saw_while_the_store_changes() -> None:
    store, _, _ = store_with_trims()
    store.apply(make_service_entry("a", "team-a", ["a.example.com"]), source="k8s")
    first = store.publish()
    store.apply(make_service_entry("a", "team-a", ["b.example.com"]), source="k8s")
    second = store.publish()
    assert first is not None and second is not None
    assert [m.owner.name for m in first.matches("a.example.com")] == ["a"]
    assert list(first.matches("b.example.com")) == []
    assert list(second.matches("a.example.com")) == []
    assert [m.owner.name for m in second.matches("b.example.com")] == ["a"]
