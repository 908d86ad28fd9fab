"""The rules: one row per reason code, visibility, the object itself, modes and exemptions."""

from __future__ import annotations

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
from webhook import review, rules
from webhook.registry import Snapshot

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
    conflicts = [f for f in verdict.findings if f.code.value == "ConflictKubernetesService"]
    assert verdict.allowed is False
    assert len(conflicts) == rules.MAX_OWNERS_PER_CODE + 1
    assert "47 more" in conflicts[-1].message


def test_the_work_of_one_request_is_bounded() -> None:
    snapshot = make_snapshot(
        *(
            make_service(f"svc-{i}", f"ns-{i % 7}")
            for i in range(rules.MAX_MATCHES_PER_REQUEST + 10)
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
