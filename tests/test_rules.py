"""The rules: one row per reason code, visibility, the object itself, modes and exemptions."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.factories import (
    make_namespace,
    make_policy,
    make_request,
    make_service,
    make_service_entry,
    make_snapshot,
)
from tests.test_registry import CountingMapping
from webhook.core import conflicts, context, review
from webhook.core.registry import Snapshot

REGISTRY = make_snapshot(
    make_namespace("sandbox", {"tier": "sandbox"}),
    make_service("reviews", "bookinfo"),
    make_service("ratings", "bookinfo"),
    make_service_entry("stripe", "team-a", ["api.stripe.com"]),
    make_service_entry("github", "team-a", ["api.github.com"], export_to=["."]),
    make_service_entry("slack", "team-b", ["hooks.slack.com"]),
)
POLICY = make_policy(
    hosts={"denied": ["metadata.google.internal"], "publicSuffixWildcards": "Deny"},
    namespaces=[
        {"selector": {"names": ["payments"]}, "hosts": {"allowed": ["*.stripe.com"]}},
        {"selector": {"matchLabels": {"tier": "sandbox"}}, "hosts": {"wildcards": "Deny"}},
    ],
)


def judge(
    namespace: str,
    hosts: list[Any],
    *,
    name: str = "new",
    policy: Any = POLICY,
    snapshot: Snapshot = REGISTRY,
    **kwargs: Any,
) -> review.Verdict:
    obj = make_service_entry(name, namespace, hosts, **kwargs)
    return review.validate(make_request(obj), policy=policy, snapshot=snapshot)


@pytest.mark.parametrize(
    ("namespace", "hosts", "code", "action", "words"),
    [
        pytest.param("team-x", ["bad_host.example.com"], "InvalidHost", "Deny", ["spec.hosts[0]", "DNS name"], id="invalid-host"),
        pytest.param("payments", ["api.paypal.com"], "HostNotAllowed", "Deny", ["*.stripe.com", "cluster admin"], id="host-not-allowed"),
        pytest.param("team-x", ["metadata.google.internal"], "HostDenied", "Deny", ["metadata.google.internal", "denies"], id="host-denied"),
        pytest.param("team-x", ["*.google.internal"], "HostDenied", "Deny", ["covers"], id="a-wildcard-over-a-denied-host"),
        pytest.param("sandbox", ["*.example.org"], "WildcardNotAllowed", "Deny", ["sandbox", "exact hosts"], id="wildcard-not-allowed"),
        pytest.param("team-x", ["*.co.uk"], "WildcardTooBroad", "Deny", ["co.uk", "public suffix"], id="wildcard-too-broad"),
        pytest.param("team-x", ["billing.team-x.svc.cluster.local"], "ReservedClusterDomain", "Deny", ["svc.cluster.local", "create the Service"], id="reserved-cluster-domain"),
        pytest.param("team-x", ["reviews.bookinfo"], "ConflictKubernetesService", "Deny", ["bookinfo/reviews", "another namespace"], id="conflict-with-a-service-alias"),
        pytest.param("team-x", ["reviews.bookinfo.svc"], "ConflictKubernetesService", "Deny", ["alias"], id="conflict-with-the-svc-alias"),
        pytest.param("bookinfo", ["ratings.bookinfo.svc.cluster.local"], "ShadowsKubernetesService", "Warn", ["bookinfo/ratings", "merge"], id="shadows-a-service"),
        pytest.param("bookinfo", ["reviews"], "ShadowsKubernetesService", "Warn", ["short name", "bookinfo/reviews"], id="a-short-name-in-its-namespace"),
        pytest.param("team-x", ["api.stripe.com"], "ConflictServiceEntry", "Deny", ["team-a/stripe", "exportTo: *", 'exportTo: ["."]'], id="conflict-with-a-service-entry"),
        pytest.param("team-a", ["api.stripe.com"], "DuplicateHost", "Warn", ["team-a/stripe", "merge"], id="duplicate-in-the-same-namespace"),
        pytest.param("team-x", ["*.slack.com"], "WildcardOverlap", "Warn", ["hooks.slack.com", "team-b/slack"], id="wildcard-overlap"),
    ],
)  # fmt: skip
def test_one_row_per_reason_code(
    namespace: str, hosts: list[str], code: str, action: str, words: list[str]
) -> None:
    verdict = judge(namespace, hosts)
    finding = next(f for f in verdict.findings if f.code.value == code)
    assert finding.action.value == action
    assert finding.message.endswith(f"[{code}]")
    for word in words:
        assert word in finding.message


@pytest.mark.parametrize(
    ("namespace", "hosts", "codes"),
    [
        pytest.param("bookinfo", ["*.bookinfo.svc.cluster.local"], ["ShadowsKubernetesService"], id="a-wildcard-over-its-own-services-is-not-reserved"),
        pytest.param("team-x", ["*.team-x.svc.cluster.local"], ["ReservedClusterDomain"], id="a-wildcard-over-its-own-empty-zone-is-reserved"),
        pytest.param("bookinfo", ["*.svc.cluster.local"], ["ReservedClusterDomain", "ShadowsKubernetesService"], id="a-wildcard-over-every-zone-is-reserved"),
        pytest.param("team-x", ["*.bookinfo.svc.cluster.local"], ["ReservedClusterDomain", "ConflictKubernetesService"], id="a-wildcard-over-another-namespaces-services-is-reserved"),
        pytest.param("bookinfo", ["*.x.reviews.bookinfo.svc.cluster.local"], ["ReservedClusterDomain"], id="a-wildcard-under-a-service-name-is-reserved"),
    ],
)  # fmt: skip
def test_a_wildcard_in_the_cluster_domain_is_reserved_unless_it_matches_a_service_of_its_own(
    namespace: str, hosts: list[str], codes: list[str]
) -> None:
    assert sorted(judge(namespace, hosts).codes) == sorted(codes)


@pytest.mark.parametrize(
    ("namespace", "host", "codes"),
    [
        pytest.param("payments", "ledger.payments", ["ShadowsKubernetesService"], id="an-alias-of-an-own-service"),
        pytest.param("payments", "ledger", ["ShadowsKubernetesService"], id="a-short-name-of-an-own-service"),
        pytest.param("payments", "reviews.bookinfo.svc", ["ReservedClusterDomain", "ConflictKubernetesService"], id="an-alias-of-another-namespaces-service"),
        pytest.param("payments", "nothing.here", ["HostNotAllowed"], id="an-alias-shape-with-no-service-is-an-external-host"),
    ],
)  # fmt: skip
def test_the_allowed_list_leaves_kubernetes_names_to_the_kubernetes_rules(
    namespace: str, host: str, codes: list[str]
) -> None:
    snapshot = make_snapshot(
        make_service("reviews", "bookinfo"), make_service("ledger", "payments")
    )
    assert list(judge(namespace, [host], snapshot=snapshot).codes) == codes


@pytest.mark.parametrize(
    ("requester", "owner", "conflict"),
    [
        pytest.param("team-x", "team-p", False, id="the-owners-namespace-defaults-to-private"),
        pytest.param("team-p", "team-a", False, id="the-requesters-namespace-defaults-to-private"),
        pytest.param("team-x", "team-a", True, id="neither-namespace-has-the-override"),
    ],
)  # fmt: skip
def test_a_namespace_rule_sets_the_default_export_to_of_its_own_entries(
    requester: str, owner: str, conflict: bool
) -> None:
    policy = make_policy(
        namespaces=[{"selector": {"names": ["team-p"]}, "meshDefaultExportTo": ["."]}]
    )
    snapshot = make_snapshot(make_service_entry("held", owner, ["shared.example.com"]))
    verdict = judge(requester, ["shared.example.com"], policy=policy, snapshot=snapshot)
    assert ("ConflictServiceEntry" in verdict.codes) is conflict


def test_no_finding_for_a_free_host() -> None:
    assert judge("team-x", ["free.example.com"]).findings == ()


@pytest.mark.parametrize(
    ("mine", "theirs", "contested"),
    [
        pytest.param(None, None, True, id="both-mesh-wide"),
        pytest.param(["."], None, False, id="mine-local-only"),
        pytest.param(None, ["."], False, id="theirs-local-only"),
        pytest.param(["~"], None, False, id="mine-exported-nowhere"),
        pytest.param(["team-z"], ["team-z"], True, id="both-to-a-third-namespace"),
        pytest.param(["team-z"], ["team-y"], False, id="to-different-namespaces"),
        pytest.param(["team-z"], None, True, id="mine-to-one-they-see-too"),
        # Istio puts an entry exported to a namespace by name before that namespace's own public
        # entries: exporting into the owner's namespace hijacks its public entry there.
        pytest.param(
            [".", "team-a"],
            None,
            True,
            id="mine-into-the-owners-namespace-hijacks-its-public-entry",
        ),
        pytest.param(["team-a"], None, True, id="mine-only-into-the-owners-namespace-hijacks-it"),
        pytest.param(None, ["team-x"], True, id="theirs-into-my-namespace-hijacks-my-public-entry"),
        # A private entry (exportTo "." or its own name) wins in its own namespace.
        pytest.param(
            ["."], ["team-x"], False, id="my-private-entry-wins-over-theirs-exported-to-me"
        ),
        pytest.param(
            ["team-a"], ["."], False, id="their-private-entry-wins-over-mine-exported-to-them"
        ),
        pytest.param(["team-x"], None, False, id="mine-private-by-its-own-name"),
        pytest.param(
            ["~", "team-z"], ["team-z"], False, id="tilde-hides-an-entry-whatever-else-it-lists"
        ),
    ],
)
def test_visibility_decides_a_cross_namespace_conflict(
    mine: list[str] | None, theirs: list[str] | None, contested: bool
) -> None:
    snapshot = make_snapshot(
        make_service_entry("held", "team-a", ["shared.example.com"], export_to=theirs)
    )
    verdict = judge("team-x", ["shared.example.com"], snapshot=snapshot, export_to=mine)
    assert ("ConflictServiceEntry" in verdict.codes) is contested


@pytest.mark.parametrize(
    ("mine", "theirs", "overlap"),
    [
        pytest.param(["team-a"], None, True, id="an-exact-host-exported-into-the-wildcards-namespace"),
        pytest.param(["."], None, False, id="an-exact-host-private-to-its-own-namespace"),
        pytest.param(None, ["."], False, id="a-wildcard-private-to-its-own-namespace"),
        pytest.param(None, None, True, id="both-mesh-wide"),
    ],
)  # fmt: skip
def test_visibility_decides_a_wildcard_overlap_the_same_way(
    mine: list[str] | None, theirs: list[str] | None, overlap: bool
) -> None:
    snapshot = make_snapshot(
        make_service_entry("slack", "team-a", ["*.slack.com"], export_to=theirs)
    )
    verdict = judge("team-x", ["api.slack.com"], snapshot=snapshot, export_to=mine)
    assert ("WildcardOverlap" in verdict.codes) is overlap


def test_the_mesh_default_export_to_applies_to_entries_without_one() -> None:
    snapshot = make_snapshot(make_service_entry("held", "team-a", ["shared.example.com"]))
    local = make_policy(meshDefaultExportTo=["."])
    assert judge("team-x", ["shared.example.com"], snapshot=snapshot, policy=local).findings == ()
    assert (
        "ConflictServiceEntry" in judge("team-x", ["shared.example.com"], snapshot=snapshot).codes
    )


def test_a_duplicate_in_one_namespace_is_found_whatever_the_export_to() -> None:
    snapshot = make_snapshot(
        make_service_entry("held", "team-a", ["shared.example.com"], export_to=["."])
    )
    assert judge("team-a", ["shared.example.com"], snapshot=snapshot, export_to=["."]).codes == (
        "DuplicateHost",
    )


def test_an_update_is_never_its_own_conflict() -> None:
    obj = make_service_entry("stripe", "team-a", ["api.stripe.com"])
    verdict = review.validate(
        make_request(obj, operation="UPDATE", old=obj), policy=POLICY, snapshot=REGISTRY
    )
    assert verdict.findings == ()


def test_delete_is_always_allowed() -> None:
    obj = make_service_entry("stripe", "team-x", ["*.com"])
    verdict = review.validate(
        make_request(None, operation="DELETE", old=obj), policy=POLICY, snapshot=REGISTRY
    )
    assert verdict.allowed
    assert verdict.findings == ()


@pytest.mark.parametrize(
    ("mode", "allowed", "result", "warned"),
    [
        pytest.param("Enforce", False, "denied", True, id="enforce-denies-and-warns-the-rest"),
        pytest.param("Warn", True, "warned", True, id="warn-allows-with-warnings"),
        pytest.param("Audit", True, "allowed", False, id="audit-allows-silently"),
    ],
)
def test_modes(mode: str, allowed: bool, result: str, warned: bool) -> None:
    # A Deny (ConflictServiceEntry) and a Warn (WildcardOverlap) finding.
    verdict = judge("team-x", ["api.stripe.com", "*.slack.com"], policy=make_policy(mode=mode))
    assert verdict.allowed is allowed
    assert verdict.result == result
    assert bool(verdict.warnings) is warned
    assert set(verdict.codes) == {"ConflictServiceEntry", "WildcardOverlap"}


@pytest.mark.parametrize("mode", ["Warn", "Audit"])
def test_invalid_input_is_denied_in_every_mode(mode: str) -> None:
    assert judge("team-x", ["*"], policy=make_policy(mode=mode)).allowed is False


@pytest.mark.parametrize(
    ("exemptions", "user", "groups", "exemption"),
    [
        pytest.param(
            {"namespaces": ["team-x"]}, "alice", [], "namespace team-x", id="by-namespace"
        ),
        pytest.param({"users": ["alice"]}, "alice", [], "user alice", id="by-user"),
        pytest.param(
            {"groups": ["platform"]}, "bob", ["platform"], "group platform", id="by-group"
        ),
    ],
)
def test_exemptions_allow_and_keep_the_findings(
    exemptions: dict[str, list[str]], user: str, groups: list[str], exemption: str
) -> None:
    obj = make_service_entry("copy", "team-x", ["api.stripe.com"])
    verdict = review.validate(
        make_request(obj, user=user, groups=groups),
        policy=make_policy(exemptions=exemptions),
        snapshot=REGISTRY,
    )
    assert verdict.allowed
    assert verdict.exemption == exemption
    assert verdict.codes == ("ConflictServiceEntry",)
    assert verdict.outcomes == ("exempted",)


def test_a_conflict_set_to_allow_makes_no_finding() -> None:
    policy = make_policy(conflicts={"serviceEntry": "Allow"})
    assert judge("team-x", ["api.stripe.com"], policy=policy).findings == ()


def test_a_wildcard_over_many_services_reports_a_few_and_still_denies() -> None:
    snapshot = make_snapshot(*(make_service(f"svc-{i}", "big") for i in range(50)))
    verdict = judge(
        "team-x",
        ["*.big.svc.cluster.local"],
        snapshot=snapshot,
        policy=make_policy(conflicts={"reservedClusterDomain": "Allow"}),
    )
    found = [f for f in verdict.findings if f.code.value == "ConflictKubernetesService"]
    assert verdict.allowed is False
    assert len(found) == conflicts.MAX_OWNERS_PER_CODE + 1
    assert "47 more" in found[-1].message


def test_the_work_of_one_request_is_bounded() -> None:
    snapshot = make_snapshot(
        *(
            make_service(f"svc-{i}", f"ns-{i % 7}")
            for i in range(context.MAX_MATCHES_PER_REQUEST + 10)
        )
    )
    verdict = judge(
        "team-x",
        ["*.svc.cluster.local"],
        snapshot=snapshot,
        policy=make_policy(conflicts={"reservedClusterDomain": "Allow"}),
    )
    assert "TooManyMatches" in verdict.codes
    assert verdict.allowed is False


# --- every name a proxy resolves ---------------------------------------------------------------

NAMES = make_snapshot(
    make_namespace("bookinfo"),
    make_namespace("team-p"),
    # Namespaces named like a public suffix (dev, prod, app are top-level domains): there,
    # foo.dev may well be a real site.
    make_namespace("dev"),
    make_service("reviews", "bookinfo"),
    make_service("ratings", "bookinfo"),
    make_service("reviews", "team-p"),
    make_service("ledger", "payments"),
)


@pytest.mark.parametrize(
    ("namespace", "host", "export_to", "expected"),
    [
        pytest.param("team-x", "reviews", None, [("ConflictKubernetesService", "bookinfo/reviews"), ("ConflictKubernetesService", "team-p/reviews")], id="a-single-label-exported-everywhere-takes-every-services-short-name"),
        pytest.param("team-x", "reviews", ["bookinfo"], [("ConflictKubernetesService", "bookinfo/reviews")], id="a-single-label-exported-into-a-services-namespace-takes-it-there"),
        pytest.param("team-x", "reviews", ["."], [], id="a-single-label-kept-in-its-own-namespace-takes-nothing"),
        pytest.param("team-x", "reviews", ["~"], [], id="a-single-label-hidden-everywhere-takes-nothing"),
        pytest.param("bookinfo", "reviews", ["."], [("ShadowsKubernetesService", "bookinfo/reviews")], id="a-services-own-namespace-shadows-its-short-name"),
        pytest.param("bookinfo", "ratings", None, [("ShadowsKubernetesService", "bookinfo/ratings")], id="a-short-name-only-its-own-namespace-has-shadows-there"),
        pytest.param("team-x", "nothing", None, [], id="a-single-label-no-namespace-has-is-free"),
    ],
)  # fmt: skip
def test_a_single_label_host_is_judged_wherever_the_entry_is_visible(
    namespace: str, host: str, export_to: list[str] | None, expected: list[tuple[str, str]]
) -> None:
    verdict = judge(namespace, [host], snapshot=NAMES, export_to=export_to)
    found = [
        (f.code.value, f"{f.owner.namespace}/{f.owner.name}") for f in verdict.findings if f.owner
    ]
    assert sorted(found) == sorted(expected)
    assert len(verdict.findings) == len(expected)


def test_a_partial_wildcard_of_one_label_takes_the_short_names_it_covers() -> None:
    verdict = judge(
        "team-x",
        ["*eviews"],
        snapshot=NAMES,
        policy=make_policy(hosts={"publicSuffixWildcards": "Warn"}),
    )
    taken = sorted(
        f"{f.owner.namespace}/{f.owner.name}"
        for f in verdict.findings
        if f.code.value == "ConflictKubernetesService" and f.owner
    )
    assert taken == ["bookinfo/reviews", "team-p/reviews"]
    assert verdict.allowed is False


def test_a_single_label_host_is_looked_up_once_however_many_namespaces() -> None:
    objects = [make_service("api", "far")] + [
        make_service(f"svc-{i}", f"ns-{i}") for i in range(2000)
    ]
    snapshot = make_snapshot(*objects)
    counter = [0]
    counting = dataclasses.replace(snapshot, services=CountingMapping(snapshot.services, counter))
    verdict = judge("team-x", ["api"], snapshot=counting)
    assert verdict.codes == ("ConflictKubernetesService",)
    assert counter[0] <= 3  # the one namespace holding a Service "api", not all 2,001


@pytest.mark.parametrize(
    ("namespace", "host"),
    [
        pytest.param("local", "*.local", id="a-namespace-local-does-not-own-the-cluster-domain"),
        pytest.param("svc", "*.svc", id="a-namespace-svc-does-not-own-every-svc-form"),
        pytest.param("cluster", "*.cluster.local", id="a-namespace-cluster-does-not-own-the-cluster-domain"),
    ],
)  # fmt: skip
def test_a_namespace_named_like_a_zone_does_not_own_it(namespace: str, host: str) -> None:
    snapshot = make_snapshot(
        make_namespace(namespace), make_service("x", namespace), make_service("reviews", "bookinfo")
    )
    policy = make_policy(conflicts={"kubernetesService": "Warn"})
    verdict = judge(namespace, [host], snapshot=snapshot, policy=policy)
    assert "ReservedClusterDomain" in verdict.codes
    assert verdict.allowed is False


@pytest.mark.parametrize(
    "order", [["dev", "prodev"], ["prodev", "dev"]], ids=["dev-first", "prodev-first"]
)
def test_a_partial_wildcard_over_namespaces_denies_whatever_their_order(order: list[str]) -> None:
    snapshot = make_snapshot(*(make_namespace(ns) for ns in order))
    policy = make_policy(hosts={"publicSuffixWildcards": "Allow", "partialWildcards": "Allow"})
    verdict = judge("team-x", ["*ev"], snapshot=snapshot, policy=policy)
    assert verdict.codes == ("ReservedClusterDomain",)
    assert verdict.allowed is False  # x.prodev is covered, and prodev is no public suffix


def test_the_walk_over_a_namespaces_own_services_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    snapshot = make_snapshot(*(make_service(f"svc-{i}", "own") for i in range(300)))
    monkeypatch.setattr(context, "MAX_EXAMINED_PER_REQUEST", 100)
    verdict = judge(
        "own", ["*.x.own.svc.cluster.local", "*.own.svc.cluster.local"], snapshot=snapshot
    )
    assert "TooManyMatches" in verdict.codes
    assert verdict.allowed is False


def test_a_single_label_host_names_a_few_services_and_counts_the_rest() -> None:
    snapshot = make_snapshot(*(make_service("api", f"ns-{i}") for i in range(20)))
    verdict = judge("team-x", ["api"], snapshot=snapshot)
    assert verdict.codes == ("ConflictKubernetesService",)
    assert len(verdict.findings) == conflicts.MAX_OWNERS_PER_CODE + 1
    assert "17 more" in verdict.findings[-1].message
    assert verdict.allowed is False


@pytest.mark.parametrize(
    ("namespace", "host", "codes", "allowed"),
    [
        pytest.param("team-x", "billing.team-p.svc", ["ReservedClusterDomain"], False, id="a-future-services-svc-form-is-reserved"),
        pytest.param("team-x", "billing.nowhere.svc", ["ReservedClusterDomain"], False, id="every-svc-form-is-reserved-even-of-a-namespace-not-yet-made"),
        pytest.param("team-x", "billing.team-p", ["ReservedClusterDomain"], False, id="a-future-services-namespace-form-is-reserved"),
        pytest.param("team-x", "x.cluster.local", ["ReservedClusterDomain"], False, id="a-name-in-the-cluster-domain-outside-svc-is-reserved"),
        pytest.param("team-x", "cluster.local", ["ReservedClusterDomain"], False, id="the-cluster-domain-itself-is-reserved"),
        pytest.param("team-x", "*.pod.cluster.local", ["ReservedClusterDomain"], False, id="a-wildcard-over-pod-names-is-reserved"),
        pytest.param("team-x", "*.local", ["ReservedClusterDomain", "ConflictKubernetesService"], False, id="a-wildcard-above-the-cluster-domain-is-reserved"),
        pytest.param("team-x", "*.team-p", ["ReservedClusterDomain", "ConflictKubernetesService"], False, id="a-wildcard-over-a-namespaces-short-names-is-reserved"),
        pytest.param("team-x", "*.team-p.svc", ["ReservedClusterDomain", "ConflictKubernetesService"], False, id="a-wildcard-over-a-namespaces-svc-names-is-reserved"),
        pytest.param("team-x", "*.empty.svc", ["ReservedClusterDomain"], False, id="a-wildcard-over-any-svc-names-is-reserved"),
        pytest.param("team-x", "*s.team-p", ["PartialWildcard", "ReservedClusterDomain", "ConflictKubernetesService"], False, id="a-partial-wildcard-over-a-namespaces-short-names-is-reserved"),
        pytest.param("team-x", "reviews.team-p", ["ReservedClusterDomain", "ConflictKubernetesService"], False, id="another-namespaces-service-short-name-is-reserved-and-taken"),
        pytest.param("bookinfo", "reviews.bookinfo.svc", ["ShadowsKubernetesService"], True, id="an-own-services-svc-form-only-shadows-it"),
        pytest.param("bookinfo", "reviews.bookinfo", ["ShadowsKubernetesService"], True, id="an-own-services-namespace-form-only-shadows-it"),
        pytest.param("bookinfo", "future.bookinfo", ["ReservedClusterDomain"], False, id="an-own-future-service-short-name-is-reserved-too"),
        pytest.param("bookinfo", "*.bookinfo", ["ShadowsKubernetesService"], True, id="a-wildcard-over-its-own-services-short-names-shadows-them"),
        pytest.param("team-x", "api.stripe", [], True, id="two-labels-of-no-namespace-are-an-external-name"),
        pytest.param("team-x", "api.dev", ["ReservedClusterDomain"], True, id="a-namespace-named-like-a-public-suffix-only-warns"),
        pytest.param("team-x", "a.b.team-p.svc", [], True, id="four-labels-are-no-services-short-name"),
        pytest.param("team-x", "*.x.team-p", [], True, id="a-deeper-wildcard-covers-no-short-name"),
        pytest.param("team-x", "api.svc.example.com", [], True, id="svc-inside-an-external-name-is-external"),
    ],
)  # fmt: skip
def test_the_cluster_domain_and_future_services_short_names_are_reserved(
    namespace: str, host: str, codes: list[str], allowed: bool
) -> None:
    verdict = judge(namespace, [host], snapshot=NAMES)
    assert sorted(verdict.codes) == sorted(codes)
    assert verdict.allowed is allowed


def test_a_namespace_named_like_a_public_suffix_warns_whatever_the_policy() -> None:
    verdict = judge("team-x", ["api.dev"], snapshot=NAMES)
    [finding] = verdict.findings
    assert finding.action.value == "Warn"
    assert "namespace dev" in finding.message
    off = make_policy(conflicts={"reservedClusterDomain": "Allow"})
    assert judge("team-x", ["api.dev"], snapshot=NAMES, policy=off).findings == ()


@pytest.mark.parametrize(
    ("host", "code"),
    [
        pytest.param("billing.team-p.svc", None, id="a-reserved-svc-form-is-left-to-the-kubernetes-rules"),
        pytest.param("billing.team-p", None, id="a-reserved-namespace-form-is-left-to-the-kubernetes-rules"),
        pytest.param("api.dev", "HostNotAllowed", id="a-public-suffix-namespace-form-is-an-external-name-too"),
        pytest.param("nothing", "HostNotAllowed", id="a-single-label-no-service-has-is-external"),
    ],
)  # fmt: skip
def test_the_allowed_list_leaves_reserved_names_to_the_reservation(
    host: str, code: str | None
) -> None:
    policy = make_policy(hosts={"allowed": ["*.stripe.com"]})
    verdict = judge("team-x", [host], snapshot=NAMES, policy=policy)
    assert ("HostNotAllowed" in verdict.codes) is (code is not None)


# --- the oldest owner is the rightful one ------------------------------------------------------

OLDEST = make_snapshot(
    make_service_entry("stripe", "team-a", ["api.stripe.com"], metadata={"creationTimestamp": "2026-03-01T00:00:00Z"}),
    make_service_entry("intruder", "team-c", ["api.stripe.com"], metadata={"creationTimestamp": "2026-04-01T00:00:00Z"}),
    make_service_entry("same-second-b", "team-b", ["tie.example.com"], metadata={"creationTimestamp": "2026-05-01T00:00:00Z"}),
    make_service_entry("same-second-a", "team-z", ["tie.example.com"], metadata={"creationTimestamp": "2026-05-01T00:00:00Z"}),
)  # fmt: skip


def update(namespace: str, name: str, hosts: list[str], created: str | None) -> review.Verdict:
    meta = {"creationTimestamp": created} if created else {}
    old = make_service_entry(name, namespace, hosts, metadata=meta)
    new = make_service_entry(
        name,
        namespace,
        hosts,
        metadata=meta,
        ports=[{"name": "http", "number": 80, "protocol": "HTTP"}],
    )
    req = make_request(new, operation="UPDATE", old=old)
    return review.validate(req, policy=POLICY, snapshot=OLDEST)


@pytest.mark.parametrize(
    ("namespace", "name", "hosts", "created", "owners"),
    [
        pytest.param("team-a", "stripe", ["api.stripe.com"], "2026-03-01T00:00:00Z", [], id="the-oldest-owner-updates-although-a-younger-duplicate-got-in"),
        pytest.param("team-c", "intruder", ["api.stripe.com"], "2026-04-01T00:00:00Z", ["team-a/stripe"], id="the-younger-duplicate-is-the-conflict"),
        pytest.param("team-a", "stripe", ["api.stripe.com"], None, [], id="the-age-of-an-update-comes-from-the-registry-when-the-request-has-none"),
        pytest.param("team-b", "same-second-b", ["tie.example.com"], "2026-05-01T00:00:00Z", [], id="in-the-same-second-the-first-namespace-is-older"),
        pytest.param("team-z", "same-second-a", ["tie.example.com"], "2026-05-01T00:00:00Z", ["team-b/same-second-b"], id="in-the-same-second-the-later-namespace-is-the-conflict"),
    ],
)  # fmt: skip
def test_an_update_is_judged_only_against_older_entries(
    namespace: str, name: str, hosts: list[str], created: str | None, owners: list[str]
) -> None:
    verdict = update(namespace, name, hosts, created)
    assert [f"{f.owner.namespace}/{f.owner.name}" for f in verdict.findings if f.owner] == owners
    assert verdict.allowed is (not owners)


@pytest.mark.parametrize(
    ("old_hosts", "new_hosts", "old_export", "new_export", "owners"),
    [
        pytest.param(["api.stripe.com"], ["api.stripe.com", "tie.example.com"], None, None, ["team-b/same-second-b", "team-z/same-second-a"], id="an-old-entry-adding-a-younger-owners-host-is-the-conflict"),
        pytest.param(["api.stripe.com"], ["api.stripe.com"], ["."], None, ["team-c/intruder"], id="an-old-private-entry-going-public-over-a-younger-public-one-is-the-conflict"),
        pytest.param(["api.stripe.com"], ["api.stripe.com"], None, ["."], [], id="an-old-entry-narrowing-its-export-to-keeps-its-age"),
        pytest.param(["api.stripe.com", "old.example.com"], ["api.stripe.com"], None, None, [], id="an-old-entry-dropping-a-host-keeps-its-age"),
    ],
)  # fmt: skip
def test_an_update_holds_its_age_only_where_it_already_was_an_owner(
    old_hosts: list[str],
    new_hosts: list[str],
    old_export: list[str] | None,
    new_export: list[str] | None,
    owners: list[str],
) -> None:
    meta = {"creationTimestamp": "2026-03-01T00:00:00Z"}
    old = make_service_entry("stripe", "team-a", old_hosts, export_to=old_export, metadata=meta)
    new = make_service_entry("stripe", "team-a", new_hosts, export_to=new_export, metadata=meta)
    verdict = review.validate(
        make_request(new, operation="UPDATE", old=old), policy=POLICY, snapshot=OLDEST
    )
    assert (
        sorted(f"{f.owner.namespace}/{f.owner.name}" for f in verdict.findings if f.owner) == owners
    )


def test_an_update_the_registry_does_not_know_yet_is_the_youngest_whatever_it_claims() -> None:
    old = make_service_entry("ghost", "team-g", ["free.example.com"])
    new = make_service_entry(
        "ghost",
        "team-g",
        ["api.stripe.com"],
        metadata={"creationTimestamp": "2000-01-01T00:00:00Z"},
    )
    verdict = review.validate(
        make_request(new, operation="UPDATE", old=old), policy=POLICY, snapshot=OLDEST
    )
    assert sorted(f"{f.owner.namespace}/{f.owner.name}" for f in verdict.findings if f.owner) == [
        "team-a/stripe",
        "team-c/intruder",
    ]


def test_a_create_is_the_youngest_and_meets_every_owner() -> None:
    verdict = judge("team-x", ["api.stripe.com"], snapshot=OLDEST)
    assert sorted(f"{f.owner.namespace}/{f.owner.name}" for f in verdict.findings if f.owner) == [
        "team-a/stripe",
        "team-c/intruder",
    ]


# --- partial wildcards ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "hosts", "spec", "codes", "allowed"),
    [
        pytest.param("team-x", ["*cdn.example.net"], {}, ["PartialWildcard"], True, id="a-partial-wildcard-is-a-warning-by-default"),
        pytest.param("team-x", ["*cdn.example.net"], {"hosts": {"partialWildcards": "Deny"}}, ["PartialWildcard"], False, id="a-partial-wildcard-can-be-denied"),
        pytest.param("team-x", ["*cdn.example.net"], {"hosts": {"partialWildcards": "Deny"}, "mode": "Audit"}, ["PartialWildcard"], True, id="audit-mode-refuses-no-partial-wildcard"),
        pytest.param("team-x", ["*cdn.example.net"], {"hosts": {"partialWildcards": "Deny"}, "exemptions": {"namespaces": ["team-x"]}}, ["PartialWildcard"], True, id="an-exempt-namespace-may-use-one"),
        pytest.param("team-x", ["*cdn.example.net"], {"hosts": {"partialWildcards": "Allow"}}, [], True, id="a-partial-wildcard-can-be-allowed-silently"),
        pytest.param("sandbox", ["*cdn.example.net"], {"namespaces": [{"selector": {"names": ["sandbox"]}, "hosts": {"wildcards": "Deny"}}]}, ["WildcardNotAllowed", "PartialWildcard"], False, id="a-partial-wildcard-is-a-wildcard"),
        pytest.param("team-x", ["*oogle.com"], {}, ["WildcardTooBroad", "PartialWildcard"], False, id="a-partial-label-over-a-public-suffix-is-too-broad"),
        pytest.param("team-x", ["*tripe.com"], {}, ["WildcardTooBroad", "PartialWildcard", "WildcardOverlap"], False, id="a-partial-label-over-a-public-suffix-overlaps-what-it-covers"),
        pytest.param("team-x", ["*api.stripe.com"], {}, ["PartialWildcard", "WildcardOverlap"], True, id="a-partial-wildcard-covers-the-name-it-ends-with"),
        pytest.param("team-x", ["*.stripe.com"], {}, ["WildcardOverlap"], True, id="a-wildcard-does-not-cover-its-base-but-covers-below"),
    ],
)  # fmt: skip
def test_partial_wildcards_have_their_own_code_and_match_as_istio_does(
    namespace: str, hosts: list[str], spec: dict[str, Any], codes: list[str], allowed: bool
) -> None:
    snapshot = make_snapshot(
        make_service_entry("stripe", "team-a", ["api.stripe.com", "x.api.stripe.com"])
    )
    verdict = judge(namespace, hosts, snapshot=snapshot, policy=make_policy(**spec))
    assert sorted(verdict.codes) == sorted(codes)
    assert verdict.allowed is allowed


@pytest.mark.parametrize(
    ("registered", "host", "overlap"),
    [
        pytest.param("*foo.example.com", "foo.example.com", True, id="a-registered-partial-wildcard-covers-its-suffix"),
        pytest.param("*foo.example.com", "xfoo.example.com", True, id="a-registered-partial-wildcard-covers-across-the-label"),
        pytest.param("*foo.example.com", "a.b.foo.example.com", True, id="a-registered-partial-wildcard-covers-deeper-names"),
        pytest.param("*foo.example.com", "*.foo.example.com", True, id="a-registered-partial-wildcard-covers-a-wildcard-below"),
        pytest.param("*foo.example.com", "*oo.example.com", True, id="a-broader-partial-wildcard-covers-a-registered-one"),
        pytest.param("*foo.example.com", "*.example.com", True, id="a-wildcard-covers-a-registered-partial-one"),
        pytest.param("*foo.example.com", "bar.example.com", False, id="a-registered-partial-wildcard-leaves-other-names"),
        pytest.param("*foo", "foo", True, id="a-registered-partial-wildcard-of-one-label-covers-its-suffix"),
        pytest.param("*foo", "a.xfoo", True, id="a-registered-partial-wildcard-of-one-label-covers-names-ending-so"),
    ],
)  # fmt: skip
def test_a_registered_partial_wildcard_is_found_by_what_it_overlaps(
    registered: str, host: str, overlap: bool
) -> None:
    snapshot = make_snapshot(make_service_entry("partial", "team-a", [registered]))
    verdict = judge("team-x", [host], snapshot=snapshot)
    assert ("WildcardOverlap" in verdict.codes) is overlap


def test_a_partial_wildcard_over_a_crowded_domain_is_judged_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    snapshot = make_snapshot(
        *(
            make_service_entry(f"e{i}", "team-a", [f"h{i}.crowded.example"])
            for i in range(context.MAX_MATCHES_PER_REQUEST + 10)
        )
    )
    # More names in the domain than a request may match: the ones it does not cover do not
    # count as matches, so a partial wildcard that overlaps none is judged as it is (a warning).
    verdict = judge("team-x", ["*zzz.crowded.example"], snapshot=snapshot)
    assert verdict.codes == ("PartialWildcard",)
    assert verdict.allowed is True
    # The names it looks at are bounded too.
    monkeypatch.setattr(context, "MAX_EXAMINED_PER_REQUEST", 1_000)
    verdict = judge("team-x", ["*zzz.crowded.example"], snapshot=snapshot)
    assert "TooManyMatches" in verdict.codes
    assert "more than 1000 registered names looked at" in verdict.message
    assert verdict.allowed is False
