"""The offline check: manifests judged in order, as the API server would admit them."""

from __future__ import annotations

from tests.factories import make_policy, make_service, make_service_entry
from webhook.core.check import check_objects
from webhook.core.registry import RegistryBuilder


def builder_with(*objects: dict[str, object]) -> RegistryBuilder:
    return RegistryBuilder.bulk((("cluster", o) for o in objects), cluster_domain="cluster.local")


def test_a_manifest_admitted_earlier_owns_its_host_for_the_later_ones() -> None:
    results = check_objects(
        [
            make_service_entry("first", "team-a", ["api.stripe.com"]),
            make_service_entry("second", "team-b", ["api.stripe.com"]),
        ],
        policy=make_policy(),
        builder=builder_with(),
    )
    assert [(r.name, r.operation, r.allowed) for r in results] == [
        ("first", "CREATE", True),
        ("second", "CREATE", False),
    ]
    assert results[1].reasons == ("ConflictServiceEntry",)
    assert any("team-a/first" in m for m in results[1].messages)


def test_a_manifest_of_an_entry_the_cluster_holds_is_an_update_as_old_as_the_entry() -> None:
    held = make_service_entry("stripe", "team-a", ["api.stripe.com"])
    held["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    younger = make_service_entry("copy", "team-b", ["api.stripe.com"])
    younger["metadata"]["creationTimestamp"] = "2026-06-01T00:00:00Z"
    # The manifest of the old entry, applied again: it is judged as an UPDATE of an entry older
    # than the copy, so the copy does not block it.
    results = check_objects(
        [make_service_entry("stripe", "team-a", ["api.stripe.com"])],
        policy=make_policy(),
        builder=builder_with(held, younger),
    )
    assert [(r.operation, r.allowed) for r in results] == [("UPDATE", True)]


def test_only_service_entries_are_judged_and_defaults_are_applied_first() -> None:
    results = check_objects(
        [make_service("api", "team-a"), make_service_entry("e", "team-a", ["api.example.com"])],
        policy=make_policy(),
        builder=builder_with(),
    )
    (result,) = results
    assert result.allowed is True
    assert result.mutated["spec"]["location"] == "MESH_EXTERNAL"
    assert {"op": "add", "path": "/spec/location", "value": "MESH_EXTERNAL"} in result.patch


def test_each_manifest_sees_the_wildcards_and_names_admitted_before_it() -> None:
    """The names under each domain change with every manifest admitted: a wildcard after them
    overlaps them, and a name after a wildcard falls under it (the view the check judges in is
    the registry as it stands, pending changes included)."""
    results = check_objects(
        [
            make_service_entry("one", "team-a", ["a.vendor.example.com"]),
            make_service_entry("two", "team-a", ["b.vendor.example.com"]),
            make_service_entry("wide", "team-b", ["*.vendor.example.com"]),
            make_service_entry("zone", "team-c", ["*.zone.example.org"]),
            make_service_entry("inside", "team-d", ["x.zone.example.org"]),
            make_service_entry("free", "team-d", ["y.elsewhere.example.org"]),
        ],
        policy=make_policy(),
        builder=builder_with(make_service_entry("held", "team-z", ["c.vendor.example.com"])),
    )
    assert [(r.name, r.allowed, r.reasons) for r in results] == [
        ("one", True, ()),
        ("two", True, ()),
        ("wide", True, ("WildcardOverlap",)),
        ("zone", True, ()),
        ("inside", True, ("WildcardOverlap",)),
        ("free", True, ()),
    ]
    overlapped = {
        ref
        for m in results[2].messages
        for ref in ("team-a/one", "team-a/two", "team-z/held")
        if ref in m
    }
    assert overlapped == {"team-a/one", "team-a/two", "team-z/held"}
    assert any("team-c/zone" in m for m in results[4].messages)
