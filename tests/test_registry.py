"""The registry: claims, lookups, incremental changes equal to a rebuild, constant-cost lookups."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import (
    build_snapshot,
    make_namespace,
    make_service,
    make_service_entry,
    make_snapshot,
)
from webhook.core import claims
from webhook.core.claims import Claim
from webhook.core.registry import ObjectTable, RegistryBuilder, Relation, Snapshot, held_ips

SNAPSHOT = make_snapshot(
    make_namespace("bookinfo", {"team": "books"}),
    make_service("reviews", "bookinfo"),
    make_service("ratings", "bookinfo"),
    make_service("ledger", "svc"),
    make_service_entry("stripe", "team-a", ["api.stripe.com"]),
    make_service_entry("books-api", "team-f", ["api.v2.bookinfo"]),
    make_service_entry("google", "team-c", ["*.googleapis.com"]),
    make_service_entry("deep", "team-d", ["a.b.googleapis.com"]),
    make_service_entry("apex", "team-e", ["googleapis.com"]),
)


@pytest.mark.parametrize(
    ("host", "found"),
    [
        pytest.param("api.stripe.com", [("api.stripe.com", "stripe", Relation.EQUAL)], id="an-exact-name"),
        pytest.param("storage.googleapis.com", [("*.googleapis.com", "google", Relation.COVERED_BY)], id="covered-by-a-wildcard"),
        pytest.param("*.googleapis.com", [("*.googleapis.com", "google", Relation.EQUAL), ("a.b.googleapis.com", "deep", Relation.COVERS)], id="a-wildcard-and-what-it-covers"),
        pytest.param("*.com", [("*.googleapis.com", "google", Relation.COVERS), ("a.b.googleapis.com", "deep", Relation.COVERS), ("api.stripe.com", "stripe", Relation.COVERS), ("googleapis.com", "apex", Relation.COVERS)], id="a-broad-wildcard"),
        pytest.param("reviews.bookinfo", [("reviews.bookinfo", "reviews", Relation.EQUAL)], id="a-service-alias"),
        pytest.param("reviews.bookinfo.svc", [("reviews.bookinfo.svc", "reviews", Relation.EQUAL)], id="a-service-svc-alias"),
        pytest.param("reviews.team-a", [], id="an-alias-shape-with-no-such-service"),
        pytest.param("reviews.bookinfo.svc.corp", [], id="four-labels-are-no-alias"),
        pytest.param("x.reviews.bookinfo", [], id="a-name-under-an-alias-is-no-alias"),
        pytest.param("*.bookinfo", [("api.v2.bookinfo", "books-api", Relation.COVERS), ("ratings.bookinfo", "ratings", Relation.COVERS), ("reviews.bookinfo", "reviews", Relation.COVERS)], id="a-wildcard-over-a-namespace-covers-its-services-aliases"),
        pytest.param("*.bookinfo.svc", [("ratings.bookinfo.svc", "ratings", Relation.COVERS), ("reviews.bookinfo.svc", "reviews", Relation.COVERS)], id="a-wildcard-over-a-namespace-svc-covers-the-svc-aliases"),
        pytest.param("*.svc", [("ledger.svc", "ledger", Relation.COVERS), ("ledger.svc.svc", "ledger", Relation.COVERS), ("ratings.bookinfo.svc", "ratings", Relation.COVERS), ("reviews.bookinfo.svc", "reviews", Relation.COVERS)], id="a-wildcard-over-svc-covers-every-svc-alias"),
        pytest.param("*.reviews.bookinfo", [], id="a-wildcard-under-an-alias-covers-nothing"),
        pytest.param("*.team-a", [], id="a-wildcard-over-a-namespace-without-services"),
        pytest.param("*.bookinfo.svc.cluster.local", [("ratings.bookinfo.svc.cluster.local", "ratings", Relation.COVERS), ("reviews.bookinfo.svc.cluster.local", "reviews", Relation.COVERS)], id="a-wildcard-over-a-service"),
        pytest.param("free.example.com", [], id="a-free-host"),
    ],
)  # fmt: skip
def test_matches(host: str, found: list[tuple[str, str, Relation]]) -> None:
    got = sorted((m.key, m.owner.name, m.relation) for m in SNAPSHOT.matches(host))
    assert got == sorted(found)


def test_short_names_are_aliases_only_in_their_namespace() -> None:
    assert [c.name for c in SNAPSHOT.services_called("reviews", {"bookinfo"})] == ["reviews"]
    assert list(SNAPSHOT.services_called("reviews", {"team-a"})) == []


def test_namespace_labels() -> None:
    assert SNAPSHOT.labels_of("bookinfo") == frozenset({("team", "books")})
    assert SNAPSHOT.labels_of("nowhere") == frozenset()


def index(snapshot: Snapshot) -> tuple[Any, ...]:
    def owners(value: Any) -> tuple[Any, ...]:
        return tuple(
            sorted(
                c.key
                for c in (
                    value
                    if isinstance(value, tuple) and not isinstance(value, claims.Claim)
                    else (value,)
                )
            )
        )

    return (
        {k: owners(v) for k, v in snapshot.names.items()},
        {k: tuple(sorted(v)) for k, v in snapshot.under.items()},
        dict(snapshot.claims),
        {ns: dict(table) for ns, table in snapshot.services.items()},
        len(snapshot),
        dict(snapshot.namespaces),
        dict(snapshot.cluster_ips),
        {k: tuple(sorted(v)) for k, v in snapshot.partials.items()},
        {
            k: tuple(sorted((v,) if isinstance(v, str) else v))
            for k, v in snapshot.service_names.items()
        },
    )


def with_ips(service: dict[str, Any], *ips: str) -> dict[str, Any]:
    service["spec"]["clusterIP"] = ips[0] if ips else "None"
    service["spec"]["clusterIPs"] = list(ips) or ["None"]
    return service


def test_incremental_changes_equal_a_rebuild() -> None:
    builder = RegistryBuilder()
    history: list[dict[str, Any]] = []
    steps: list[tuple[str, dict[str, Any]]] = [
        ("apply", with_ips(make_service("reviews", "bookinfo"), "10.96.0.7", "fd00::7")),
        ("apply", make_service_entry("a", "team-a", ["x.example.com", "*.y.example.com"])),
        ("apply", make_service_entry("b", "team-b", ["x.example.com"])),
        ("apply", make_namespace("team-a", {"t": "1"})),
        ("apply", make_service_entry("a", "team-a", ["z.example.com"])),  # hosts changed
        ("delete", make_service_entry("b", "team-b")),  # last owner of x.example.com
        ("apply", with_ips(make_service("ratings", "bookinfo"), "10.96.0.8")),
        ("apply", make_service_entry("p", "team-p", ["*cdn.example.com", "*cdn.example.com"])),
        ("apply", make_service_entry("q", "team-q", ["*cdn.example.com", "*img.example.com"])),
        ("delete", make_service("reviews", "bookinfo")),
        ("apply", with_ips(make_service("ratings", "bookinfo"))),  # made headless
        ("delete", make_service_entry("p", "team-p")),
        ("delete", make_namespace("team-a")),
    ]
    for op, obj in steps:
        if op == "apply":
            builder.apply(obj, source="files")
            history = [
                o
                for o in history
                if claims.object_name(o) != claims.object_name(obj) or o["kind"] != obj["kind"]
            ] + [obj]
        else:
            builder.delete(obj)
            history = [
                o
                for o in history
                if not (
                    claims.object_name(o) == claims.object_name(obj) and o["kind"] == obj["kind"]
                )
            ]
        assert index(builder.snapshot()) == index(
            build_snapshot((("files", o) for o in history), cluster_domain="cluster.local")
        )
    assert "example.com" not in builder.under or "x.example.com" not in builder.under["example.com"]


def test_a_snapshot_does_not_change_when_the_builder_does() -> None:
    builder = RegistryBuilder()
    builder.apply(make_service_entry("a", "team-a", ["a.example.com"]))
    before = builder.snapshot()
    frozen = index(before)
    builder.apply(make_service_entry("b", "team-b", ["b.example.com"]))
    builder.delete(make_service_entry("a", "team-a"))
    assert index(before) == frozen
    assert [m.owner.name for m in before.matches("a.example.com")] == ["a"]


def test_a_relist_replaces_one_kind_of_one_source() -> None:
    builder = RegistryBuilder.bulk(
        [
            ("kubernetes", make_service("old", "ns")),
            ("kubernetes", make_service_entry("se", "ns", ["a.com"])),
            ("files", make_service("kept", "ns")),
        ],
        cluster_domain="cluster.local",
    )
    relisted = builder.replace_kind("Service", [make_service("new", "ns")], source="kubernetes")
    names = sorted(c.name for c in relisted.claims.values())
    assert names == ["kept", "new", "se"]


def test_unusable_objects_are_skipped_and_said_so() -> None:
    junk = make_service_entry("junk", "ns", [])
    junk["spec"] = "garbage"
    partial = make_service_entry("partial", "ns", ["ok.com", "bad_host.com"])
    snapshot = make_snapshot(junk, partial)
    assert {s.name for s in snapshot.skipped} == {"junk", "partial"}
    assert snapshot.get("ServiceEntry", "ns", "junk") is None
    assert snapshot.get("ServiceEntry", "ns", "partial") is not None


class CountingMapping(Mapping[Any, Any]):
    """A mapping that counts every entry read: a lookup, and each key an iteration yields."""

    def __init__(self, inner: Mapping[Any, Any], counter: list[int]) -> None:
        self.inner = inner
        self.counter = counter

    def __getitem__(self, key: Any) -> Any:
        self.counter[0] += 1
        return self.inner[key]

    def get(self, key: Any, default: Any = None) -> Any:
        self.counter[0] += 1
        return self.inner.get(key, default)

    def __contains__(self, key: object) -> bool:
        self.counter[0] += 1
        return key in self.inner

    def __iter__(self) -> Iterator[Any]:
        for key in self.inner:
            self.counter[0] += 1
            yield key

    def __len__(self) -> int:
        return len(self.inner)


def reads(snapshot: Snapshot, host: str) -> int:
    """Entries read by one lookup, in every table of the snapshot (the Services' tables of each
    namespace included)."""
    counter = [0]
    counted: dict[str, Any] = {}
    for field in dataclasses.fields(snapshot):
        value = getattr(snapshot, field.name)
        if field.name == "services":
            tables = {ns: CountingMapping(table, counter) for ns, table in value.items()}
            counted[field.name] = CountingMapping(tables, counter)
        elif isinstance(value, Mapping):
            counted[field.name] = CountingMapping(value, counter)
    assert {"names", "under", "objects", "services", "service_names"} <= counted.keys()
    list(dataclasses.replace(snapshot, **counted).matches(host))
    return counter[0]


@functools.cache
def sized(n: int) -> Snapshot:
    """``n`` objects in n/20 namespaces: the namespaces grow with the registry, as the tables of
    Services in each namespace do."""
    spaces = max(2, n // 20)
    objects = [make_service(f"svc-{i}", f"ns-{i % spaces}") for i in range(n // 2)]
    objects += [
        make_service_entry(f"se-{i}", f"ns-{i % spaces}", [f"api{i}.vendor{i % 97}.example.com"])
        for i in range(n - n // 2)
    ]
    return make_snapshot(*objects, make_service_entry("wild", "w", ["*.vendor3.example.com"]))


@pytest.mark.parametrize("host", ["api3.vendor3.example.com", "free.example.org", "svc-1.ns-1"])
def test_a_lookup_reads_the_same_number_of_entries_at_100_and_at_100000(host: str) -> None:
    assert reads(sized(100), host) == reads(sized(100_000), host)


def _istiod_snapshot() -> Snapshot:
    # Services as istiod may list them: one from a cluster with another domain, and a
    # multi-cluster Service whose clusterset name comes first.
    remote = claims.Claim(
        kind="Service",
        namespace="ns2",
        name="rem",
        hosts=("rem.ns2.svc.corp.local",),
        source="istiod",
    )
    mcs = claims.Claim(
        kind="Service",
        namespace="ns3",
        name="mcs",
        hosts=("mcs.ns3.svc.clusterset.local", "mcs.ns3.svc.cluster.local"),
        source="istiod",
    )
    builder = RegistryBuilder(cluster_domain="cluster.local").replace_claims(
        "istiod", [remote, mcs]
    )
    return builder.snapshot()


@pytest.mark.parametrize(
    ("host", "found"),
    [
        pytest.param("rem.ns2", [("rem.ns2", "rem", Relation.EQUAL)], id="the-alias-of-a-service-from-another-domain-once"),
        pytest.param("*.ns2", [("rem.ns2", "rem", Relation.COVERS)], id="a-wildcard-over-its-namespace"),
        pytest.param("*.ns2.svc", [("rem.ns2.svc", "rem", Relation.COVERS)], id="a-wildcard-over-its-namespace-svc"),
        pytest.param("mcs.ns3", [("mcs.ns3", "mcs", Relation.EQUAL)], id="the-alias-of-a-multi-cluster-service"),
        pytest.param("*.ns3", [("mcs.ns3", "mcs", Relation.COVERS)], id="a-wildcard-over-the-multi-cluster-services-namespace"),
        pytest.param("*.svc", [("mcs.ns3.svc", "mcs", Relation.COVERS), ("rem.ns2.svc", "rem", Relation.COVERS)], id="a-wildcard-over-svc"),
        pytest.param("rem.ns2.svc.cluster.local", [], id="a-service-of-another-domain-has-no-fqdn-here"),
        pytest.param("mcs.ns3.svc.cluster.local", [("mcs.ns3.svc.cluster.local", "mcs", Relation.EQUAL)], id="the-fqdn-of-a-multi-cluster-service-once"),
        pytest.param("*.ns3.svc.cluster.local", [("mcs.ns3.svc.cluster.local", "mcs", Relation.COVERS)], id="a-wildcard-over-the-multi-cluster-services-zone"),
    ],
)  # fmt: skip
def test_aliases_of_services_istiod_lists(
    host: str, found: list[tuple[str, str, Relation]]
) -> None:
    got = sorted((m.key, m.owner.name, m.relation) for m in _istiod_snapshot().matches(host))
    assert got == sorted(found)


def test_a_snapshot_keeps_its_services_when_the_builder_changes_them() -> None:
    builder = RegistryBuilder()
    builder.apply(make_service("reviews", "bookinfo"))
    before = builder.snapshot()
    frozen = index(before)
    builder.apply(make_service("ratings", "bookinfo"))  # the same namespace's table
    builder.delete(make_service("reviews", "bookinfo"))
    assert index(before) == frozen
    assert [m.owner.name for m in before.matches("reviews.bookinfo.svc.cluster.local")] == [
        "reviews"
    ]
    after = builder.snapshot()
    assert [m.owner.name for m in after.matches("reviews.bookinfo.svc.cluster.local")] == []
    assert [m.owner.name for m in after.matches("ratings.bookinfo")] == ["ratings"]


def test_services_are_held_by_namespace_and_name_and_read_back_whole() -> None:
    service = make_service("reviews", "bookinfo", annotations={"networking.istio.io/exportTo": "."})
    snapshot = make_snapshot(service, make_service_entry("se", "bookinfo", ["a.example.com"]))
    assert snapshot.objects.keys() == {("ServiceEntry", "bookinfo", "se")}
    assert "reviews.bookinfo.svc.cluster.local" not in snapshot.names
    expected = claims.service_claim(service, cluster_domain="cluster.local", source="files")
    assert snapshot.get("Service", "bookinfo", "reviews") == expected
    assert snapshot.claims[("Service", "bookinfo", "reviews")] == expected
    assert set(snapshot.claims) == {
        ("ServiceEntry", "bookinfo", "se"),
        ("Service", "bookinfo", "reviews"),
    }
    assert (len(snapshot), snapshot.count("Service"), snapshot.count("ServiceEntry")) == (2, 1, 1)
    assert snapshot.owners("reviews.bookinfo.svc.cluster.local") == (expected,)


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("reviews.bookinfo.svc.cluster.local", id="a-service-fqdn"),
        pytest.param("*.bookinfo.svc.cluster.local", id="a-wildcard-over-a-namespace-zone"),
        pytest.param("*.svc.cluster.local", id="a-wildcard-over-the-zone"),
        pytest.param("*.cluster.local", id="a-wildcard-over-the-cluster-domain"),
        pytest.param("*.reviews.bookinfo.svc.cluster.local", id="a-wildcard-under-a-service"),
        pytest.param("reviews.bookinfo.svc.corp.local", id="another-domain"),
        pytest.param("x.reviews.bookinfo.svc.cluster.local", id="a-name-under-a-service"),
    ],
)
def test_a_service_listed_by_istiod_or_by_its_manifest_matches_alike(host: str) -> None:
    """A Service read from its manifest is held by namespace and name, the same Service from
    istiod with its hosts spelled out is held as an object: lookups cannot tell them apart."""
    manifest = make_snapshot(make_service("reviews", "bookinfo"))
    listed = (
        RegistryBuilder(cluster_domain="cluster.local")
        .replace_claims(
            "files",
            [
                claims.Claim(
                    kind="Service",
                    namespace="bookinfo",
                    name="reviews",
                    hosts=("reviews.bookinfo.svc.cluster.local", "reviews.bookinfo.global"),
                    source="files",
                )
            ],
        )
        .snapshot()
    )
    assert listed.objects and not listed.services and manifest.services and not manifest.objects

    def found(snapshot: Snapshot) -> list[tuple[str, str, Relation]]:
        return sorted((m.key, m.owner.name, m.relation) for m in snapshot.matches(host))

    expected = found(manifest)
    got = found(listed)
    assert [m for m in got if m[0] != "reviews.bookinfo.global"] == expected


@pytest.mark.parametrize(
    ("name", "namespace", "host", "found"),
    [
        pytest.param("a.b", "ns", "a.b.ns.svc.cluster.local", [("a.b.ns.svc.cluster.local", Relation.EQUAL)], id="a-dotted-name-by-its-fqdn"),
        pytest.param("a.b", "ns", "*.b.ns.svc.cluster.local", [("a.b.ns.svc.cluster.local", Relation.COVERS)], id="a-dotted-name-under-a-wildcard"),
        pytest.param("x", "team.prod", "x.team.prod.svc.cluster.local", [("x.team.prod.svc.cluster.local", Relation.EQUAL)], id="a-dotted-namespace-by-fqdn"),
        pytest.param("x", "team.prod", "*.prod.svc.cluster.local", [("x.team.prod.svc.cluster.local", Relation.COVERS)], id="a-dotted-namespace-under-a-wildcard"),
        pytest.param("*", "ns", "x.ns.svc.cluster.local", [("*.ns.svc.cluster.local", Relation.COVERED_BY)], id="a-service-named-star-covers-like-a-wildcard"),
        pytest.param("Up", "ns", "*.ns.svc.cluster.local", [("Up.ns.svc.cluster.local", Relation.COVERS)], id="a-capitalised-name-as-written"),
    ],
)  # fmt: skip
def test_services_a_manifest_names_oddly_are_still_found(
    name: str, namespace: str, host: str, found: list[tuple[str, Relation]]
) -> None:
    """The API server allows only single-label names, but manifests on disk may hold anything:
    such a Service is kept whole, and found as its hosts say."""
    snapshot = make_snapshot(make_service(name, namespace))
    assert [(m.key, m.relation) for m in snapshot.matches(host)] == found
    assert len(snapshot) == 1


@pytest.mark.parametrize(
    ("hosts", "host", "found"),
    [
        pytest.param(("a.ns.svc.cluster.local", "a.ns"), "*.ns", [("a.ns", Relation.COVERS)], id="an-alias-listed-with-the-fqdn-once-under-a-wildcard"),
        pytest.param(("a.ns.svc.cluster.local", "a.ns.svc"), "*.svc", [("a.ns.svc", Relation.COVERS)], id="a-svc-alias-listed-with-the-fqdn-once"),
        pytest.param(("a.ns.svc.corp.local", "a.ns"), "*.ns", [("a.ns", Relation.COVERS)], id="an-alias-listed-without-the-fqdn-once"),
        pytest.param(("a.ns.svc.corp.local", "a.ns"), "a.ns", [("a.ns", Relation.EQUAL)], id="the-same-alias-exactly-once"),
    ],
)  # fmt: skip
def test_a_service_that_lists_its_own_alias_matches_it_once(
    hosts: tuple[str, ...], host: str, found: list[tuple[str, Relation]]
) -> None:
    service = claims.Claim(kind="Service", namespace="ns", name="a", hosts=hosts, source="istiod")
    snapshot = RegistryBuilder(cluster_domain="cluster.local").replace_claims("istiod", [service])
    assert [(m.key, m.relation) for m in snapshot.snapshot().matches(host)] == found


def test_a_services_cluster_ips_are_found_while_it_has_them() -> None:
    builder = RegistryBuilder()
    builder.apply(with_ips(make_service("reviews", "bookinfo"), "10.96.0.7", "fd00::7"))
    builder.apply(make_service_entry("e", "team-a", ["e.example.com"]))
    first = builder.snapshot()
    assert first.service_with_ip("10.96.0.7") == first.get("Service", "bookinfo", "reviews")
    assert first.service_with_ip("fd00::7") is not None
    assert first.service_with_ip("10.96.0.8") is None
    builder.apply(with_ips(make_service("reviews", "bookinfo")))  # made headless
    builder.apply(with_ips(make_service("ratings", "bookinfo"), "10.96.0.8"))
    second = builder.snapshot()
    assert second.service_with_ip("10.96.0.7") is None
    assert second.service_with_ip("10.96.0.8") is not None
    # The first snapshot is unchanged (copy on write).
    assert first.service_with_ip("10.96.0.7") is not None
    assert first.service_with_ip("10.96.0.8") is None
    relisted = builder.replace_kind(
        "Service", [with_ips(make_service("other", "ns"), "10.96.0.9")], source=""
    ).snapshot()
    assert relisted.service_with_ip("10.96.0.8") is None
    assert relisted.service_with_ip("10.96.0.9") == relisted.get("Service", "ns", "other")


def test_an_address_two_services_list_stays_with_the_one_still_there() -> None:
    builder = RegistryBuilder()
    builder.apply(with_ips(make_service("a", "ns"), "10.96.0.7"))
    builder.apply(with_ips(make_service("b", "ns"), "10.96.0.7"))  # a stale copy, say
    builder.delete(make_service("a", "ns"))
    found = builder.snapshot().service_with_ip("10.96.0.7")
    assert found is not None and found.name == "b"


def test_services_are_found_by_name_in_any_namespace() -> None:
    snapshot = make_snapshot(
        make_namespace("empty"),
        make_service("api", "ns-a"),
        make_service("api", "ns-b"),
        make_service("web", "ns-b"),
    )
    assert sorted(c.ref for c in snapshot.services_called("api")) == ["ns-a/api", "ns-b/api"]
    assert [c.ref for c in snapshot.services_called("api", ["ns-b", "empty"])] == ["ns-b/api"]
    assert list(snapshot.services_called("none")) == []
    assert sorted(snapshot.namespace_names()) == ["empty", "ns-a", "ns-b"]
    assert snapshot.has_namespace("empty") and snapshot.has_namespace("ns-a")
    assert not snapshot.has_namespace("ns-c")


@pytest.mark.parametrize(
    "ips",
    [
        pytest.param(("0.0.0.0",), id="the-lowest-ipv4"),
        pytest.param(("255.255.255.255",), id="the-highest-ipv4"),
        pytest.param(("10.96.0.10", "fd00::a"), id="dual-stack"),
        pytest.param(("172.16.254.1", "192.168.0.255", "1.2.3.4"), id="several-octet-widths"),
        pytest.param(("::", "2001:db8::ffff:1"), id="ipv6-edges"),
    ],
)
def test_the_registry_gives_back_the_cluster_ips_a_service_has(ips: tuple[str, ...]) -> None:
    snapshot = make_snapshot(with_ips(make_service("a", "ns"), *ips))
    held = snapshot.get("Service", "ns", "a")
    assert held is not None and held.cluster_ips == ips
    assert snapshot.claims[("Service", "ns", "a")].cluster_ips == ips


def frozen(snapshot: Snapshot) -> dict[str, Any]:
    """Everything a snapshot holds, copied deep enough to notice any later change."""
    return {
        "names": dict(snapshot.names),
        "under": dict(snapshot.under),
        "objects": dict(snapshot.objects),
        "services": {ns: dict(table) for ns, table in snapshot.services.items()},
        "namespaces": dict(snapshot.namespaces),
        "cluster_ips": dict(snapshot.cluster_ips),
        "partials": dict(snapshot.partials),
        "service_names": dict(snapshot.service_names),
        "count": snapshot.service_count,
    }


def test_a_snapshot_never_changes_after_it_is_taken() -> None:
    """The builder copies a shared table only when a change touches it: every kind of change
    after a snapshot leaves that snapshot as it was."""
    builder = RegistryBuilder()
    builder.apply(make_namespace("bookinfo", {"team": "b"}))
    builder.apply(with_ips(make_service("reviews", "bookinfo"), "10.96.0.7"))
    builder.apply(with_ips(make_service("ratings", "bookinfo"), "10.96.0.8"))
    builder.apply(make_service("web", "shop"))
    builder.apply(make_service_entry("stripe", "team-a", ["api.stripe.com", "*pay.example.com"]))
    changes: list[Callable[[], None]] = [
        lambda: builder.apply(with_ips(make_service("details", "bookinfo"), "10.96.0.9")),
        lambda: builder.apply(with_ips(make_service("reviews", "bookinfo"), "10.96.0.17")),
        lambda: builder.delete(make_service("ratings", "bookinfo")),
        lambda: builder.apply(make_service("api", "new-namespace")),
        lambda: builder.delete(make_service("web", "shop")),
        lambda: builder.apply(make_service_entry("github", "team-a", ["api.github.com"])),
        lambda: builder.apply(make_service_entry("stripe", "team-a", ["*charge.example.com"])),
        lambda: builder.delete(make_service_entry("github", "team-a", ["api.github.com"])),
        lambda: builder.apply(make_namespace("bookinfo", {"team": "c"})),
        lambda: builder.apply(make_service_entry("web", "shop", ["web.shop.svc.cluster.local"])),
    ]
    for change in changes:
        before = builder.snapshot()
        held = frozen(before)
        change()
        assert frozen(before) == held
        after = builder.snapshot()
        assert frozen(after) != held  # the change did land
        for kind in ("Service", "ServiceEntry"):  # counts kept as changes come, not recounted
            whole = sum(1 for key in after.objects if key[0] == kind)
            assert after.count(kind) == whole + (after.service_count if kind == "Service" else 0)


def test_a_lookup_in_the_last_namespace_reads_as_much_at_100_as_at_100000() -> None:
    """A scan that stops at the namespace it looks for reads more the later that namespace
    comes: ask for a Service of the last one."""

    def last(n: int) -> str:
        k = max(2, n // 20) - 1
        return f"svc-{k}.ns-{k}"

    assert reads(sized(100), last(100)) == reads(sized(100_000), last(100_000))


def _with_ip(service: dict[str, Any], ip: str) -> dict[str, Any]:
    service["spec"]["clusterIP"] = ip
    return service


def test_a_registry_built_from_another_holds_the_same_claims_and_profiles_not_copies() -> None:
    # A relist builds the new objects in a builder of their own, then merges it into the
    # registry: what the merged tables hold must be the objects the fresh builder made, and a
    # Service's address must be one object in its profile and in the address table. The
    # compiled core held copies of each (mypyc stores a new tuple or int for a fixed-length
    # tuple or an int it had unboxed): several MB at 100,000 entries.
    exported = {"annotations": {"networking.istio.io/exportTo": "."}}
    objects = [
        *(_with_ip(make_service(f"svc-{i}", f"ns-{i % 3}", **(exported if i % 4 == 0 else {})), f"10.96.{i}.{i + 1}") for i in range(20)),
        *(make_service_entry(f"se-{i}", f"ns-{i % 3}", [f"api{i}.example.com"]) for i in range(20)),
    ]  # fmt: skip
    base = RegistryBuilder.bulk(
        (("kubernetes", o) for o in objects[:20]), cluster_domain="cluster.local"
    )
    fresh = RegistryBuilder.bulk(
        (("kubernetes", o) for o in objects[20:]), cluster_domain="cluster.local"
    )
    merged = base.merge_kind(claims.SERVICE_ENTRY, fresh, source="kubernetes")
    snapshot = merged.snapshot()
    fresh_claims = {claim.key: claim for claim in fresh.objects.claims()}
    assert len(snapshot.objects) == 20 and set(snapshot.objects) == set(fresh_claims)
    for claim in snapshot.objects.values():
        assert claim is fresh_claims[claim.key], claim.key
    base_profiles = {(ns, name): p for ns, table in base.services.items() for name, p in table.items()}  # fmt: skip
    assert len(base_profiles) == 20
    assert sum(isinstance(held, int) for held in base_profiles.values()) == 15  # see Held
    for namespace, table in snapshot.services.items():
        for name, profile in table.items():
            assert profile is base_profiles[namespace, name]
    addresses = [held_ips(held) for held in base_profiles.values()]
    held_addresses = {address: address for address in addresses}
    assert len(snapshot.cluster_ips) == 20
    for address in snapshot.cluster_ips:
        assert address is held_addresses[address]


@pytest.mark.parametrize("source", ["kubernetes", "files", "istiod"])
@pytest.mark.parametrize(
    "ips", [(), ("10.96.0.10",), ("fd00::a",), ("10.96.0.11", "fd00::b")], ids=str
)
@pytest.mark.parametrize("export_to", [None, ".", "., istio-system"])
def test_a_service_reads_back_as_it_was_listed_however_it_is_held(
    source: str, ips: tuple[str, ...], export_to: str | None
) -> None:
    metadata = {"annotations": {"networking.istio.io/exportTo": export_to}} if export_to else {}
    service = with_ips(make_service("a", "ns", **metadata), *ips)
    expected = claims.service_claim(service, cluster_domain="cluster.local", source=source)
    assert expected.cluster_ips == ips
    incremental = RegistryBuilder()
    incremental.apply(service, source=source)
    for snapshot in (build_snapshot([(source, service)]), incremental.snapshot()):
        assert snapshot.get("Service", "ns", "a") == expected
        held = snapshot.services["ns"]["a"]
        # Only the Service most clusters are made of is held as its address alone.
        assert isinstance(held, int) == (source == "kubernetes" and len(ips) == 1 and not export_to)
        for ip in ips:
            assert snapshot.service_with_ip(ip) == expected
        assert snapshot.owners("a.ns.svc.cluster.local") == (expected,)


def test_a_relist_of_the_cluster_s_services_keeps_the_others() -> None:
    listed = [with_ips(make_service(f"s{i}", "ns"), f"10.96.1.{i}") for i in range(4)]
    from_files = with_ips(make_service("f", "ns"), "10.96.2.1")
    builder = RegistryBuilder.bulk(
        [*(("kubernetes", s) for s in listed), ("files", from_files)],
        cluster_domain="cluster.local",
    )
    relisted = RegistryBuilder.bulk(
        (("kubernetes", s) for s in listed[2:]), cluster_domain="cluster.local"
    )
    snapshot = builder.merge_kind(claims.SERVICE, relisted, source="kubernetes").snapshot()
    assert sorted(snapshot.services["ns"]) == ["f", "s2", "s3"]
    assert snapshot.service_with_ip("10.96.1.0") is None
    assert snapshot.service_with_ip("10.96.1.3") is not None
    assert snapshot.service_with_ip("10.96.2.1") == claims.service_claim(
        from_files, cluster_domain="cluster.local", source="files"
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["put", "pop", "copy"]),
            st.sampled_from([claims.SERVICE_ENTRY, claims.SERVICE]),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["x", "y", "z", "w"]),
        ),
        max_size=60,
    )
)
def test_the_object_table_reads_as_a_dict_of_its_keys_and_a_copy_never_sees_later_changes(
    steps: list[tuple[str, str, str, str]],
) -> None:
    # The builder copies the table a snapshot shares before it changes it; the copy shares
    # the namespaces' tables until one changes. Against a plain dict, after every step: the
    # table and every copy taken before still read as the dict did then.
    table, model = ObjectTable(), {}
    copies: list[tuple[ObjectTable, dict[Any, Claim]]] = []
    for n, (step, kind, namespace, name) in enumerate(steps):
        key = (kind, namespace, name)
        if step == "put":
            claim = Claim(kind, namespace, name, (f"h{n}.example.com",))
            table.put(claim)
            model[key] = claim
        elif step == "pop":
            assert table.pop(key) is model.pop(key, None)
        else:
            copies.append((table, dict(model)))
            table = table.copy()
        for held, expected in [(table, model), *copies]:
            assert len(held) == len(expected)
            assert dict(held.items()) == expected
            assert len(held.values()) == len(expected)
            assert sorted(held.values(), key=lambda c: c.key) == sorted(
                expected.values(), key=lambda c: c.key
            )
            assert held.counts() == {
                k: c
                for k in (claims.SERVICE_ENTRY, claims.SERVICE)
                if (c := sum(1 for x in expected if x[0] == k))
            }
            assert (key in held) is (key in expected) and held.find(key) is expected.get(key)
