"""The whole decision on real AdmissionReviews captured from a Kubernetes 1.36 API server."""

from __future__ import annotations

import base64
import copy
from typing import Any

import jsonpatch
import orjson
import pytest

from tests.conftest import load_fixture_review
from tests.factories import (
    make_policy,
    make_request,
    make_service,
    make_service_entry,
    make_snapshot,
)
from webhook.core import outcomes, review
from webhook.core.admission import parse_review
from webhook.core.findings import Code, finding_of
from webhook.core.policy import Action, Mode
from webhook.core.registry import Snapshot
from webhook.core.scan import Violation, denying

# The cluster the fixtures meet: team-a already has its stripe entry (so the captured CREATE and
# UPDATE of team-a/stripe are the object itself), team-b holds *.googleapis.com for the whole
# mesh, and team-b's api.github.com is visible everywhere.
REGISTRY = make_snapshot(
    make_service("reviews", "bookinfo"),
    make_service_entry("stripe", "team-a", ["api.stripe.com"]),
    make_service_entry("googleapis", "team-b", ["*.googleapis.com"]),
    make_service_entry("github", "team-b", ["api.github.com"]),
)


def answer(name: str, snapshot: Snapshot = REGISTRY) -> tuple[dict[str, Any], review.Verdict]:
    body = load_fixture_review(name)
    req = parse_review(body)
    judge = review.mutate if name.split("-", 2)[1] == "mutating" else review.validate
    verdict = judge(req, policy=make_policy(), snapshot=snapshot)
    return verdict.to_response(req.uid)["response"], verdict


def assert_valid_audit_annotation_keys(annotations: dict[str, str]) -> None:
    """The API server prefixes each key with the webhook's name and refuses a key that holds a
    "/" or that is not a qualified name of 63 characters or fewer."""
    for key in annotations:
        assert "/" not in key, key
        assert 0 < len(key) <= 63, key
        assert key[0].isalnum() and key[-1].isalnum(), key
        assert all(ch.isalnum() or ch in "-_." for ch in key), key


def decoded_patch(response: dict[str, Any]) -> list[dict[str, Any]]:
    if "patch" not in response:
        return []
    assert response["patchType"] == "JSONPatch"
    patch: list[dict[str, Any]] = orjson.loads(base64.b64decode(response["patch"]))
    return patch


@pytest.mark.parametrize(
    ("fixture", "allowed", "codes", "defaulted"),
    [
        pytest.param("00-mutating-create-v1.json", True, [], {"location": "MESH_EXTERNAL", "resolution": "DNS"}, id="mutating-create-v1-gets-location-and-dns"),
        pytest.param("01-validating-create-v1.json", True, [], None, id="validating-create-of-the-object-itself-is-no-conflict"),
        pytest.param("02-mutating-update-v1.json", True, [], {"location": "MESH_EXTERNAL", "resolution": "DNS"}, id="mutating-update-defaults-what-is-absent"),
        pytest.param("03-validating-update-v1.json", True, [], None, id="validating-update-excludes-the-object-itself"),
        pytest.param("04-mutating-create-v1beta1.json", True, [], {"location": "MESH_EXTERNAL", "resolution": "DNS"}, id="mutating-create-at-v1beta1-is-judged-as-v1"),
        pytest.param("05-validating-create-v1beta1.json", True, ["DuplicateHost"], None, id="second-entry-for-a-host-in-one-namespace-warns"),
        pytest.param("06-mutating-create-v1alpha3-generatename.json", True, [], {"location": "MESH_EXTERNAL", "resolution": "NONE"}, id="generatename-wildcard-gets-resolution-none"),
        pytest.param("07-validating-create-v1alpha3-generatename.json", False, ["ConflictServiceEntry"], None, id="v1alpha3-wildcard-held-by-another-namespace-is-denied"),
        pytest.param("08-mutating-create-v1-serverside-apply.json", True, [], {"location": "MESH_EXTERNAL", "resolution": "DNS"}, id="server-side-apply-is-defaulted"),
        pytest.param("09-validating-create-v1-serverside-apply.json", True, [], None, id="server-side-apply-of-a-free-host-is-allowed"),
        pytest.param("10-validating-delete-v1.json", True, [], None, id="delete-is-always-allowed"),
        pytest.param("11-mutating-create-v1-dryrun.json", True, [], {"location": "MESH_EXTERNAL"}, id="dry-run-keeps-the-users-resolution"),
        pytest.param("12-validating-create-v1-dryrun.json", True, [], None, id="dry-run-local-only-entry-beside-a-mesh-wide-one-is-allowed"),
    ],
)  # fmt: skip
def test_captured_reviews_are_answered_correctly(
    fixture: str, allowed: bool, codes: list[str], defaulted: dict[str, str] | None
) -> None:
    response, verdict = answer(fixture)
    body = load_fixture_review(fixture)
    assert response["uid"] == body["request"]["uid"]
    assert response["allowed"] is allowed
    assert list(verdict.codes) == codes
    if not allowed:
        assert response["status"]["code"] == 403
        assert f"[{codes[0]}]" in response["status"]["message"]
    assert response["auditAnnotations"]["decision"] == verdict.result
    assert_valid_audit_annotation_keys(response["auditAnnotations"])
    patch = decoded_patch(response)
    if defaulted is None:
        assert patch == []
        return
    mutated = jsonpatch.apply_patch(body["request"]["object"], patch)
    for field, value in defaulted.items():
        assert mutated["spec"][field] == value
    annotation = mutated["metadata"]["annotations"]["seguard.io/defaulted"]
    assert annotation.split(",") == list(defaulted)
    # Defaulting never touches what the user wrote.
    for key, value in body["request"]["object"]["spec"].items():
        assert mutated["spec"][key] == value


def test_every_request_version_is_judged_the_same() -> None:
    verdicts = []
    for version in ("v1", "v1beta1", "v1alpha3"):
        obj = make_service_entry("g", "team-c", ["*.googleapis.com"])
        verdicts.append(
            review.validate(
                make_request(obj, version=version), policy=make_policy(), snapshot=REGISTRY
            )
        )
    assert {v.codes for v in verdicts} == {("ConflictServiceEntry",)}
    assert {v.message for v in verdicts} == {verdicts[0].message}


@pytest.mark.parametrize(
    ("policy", "snapshot", "code"),
    [
        pytest.param(None, REGISTRY, "PolicyUnavailable", id="no-policy-yet-denies"),
        pytest.param(make_policy(), None, "PolicyUnavailable", id="no-registry-yet-denies"),
    ],
)
def test_without_a_policy_or_registry_requests_fail_closed(
    policy: Any, snapshot: Snapshot | None, code: str
) -> None:
    req = make_request(make_service_entry("x", "team-c", ["free.example.com"]))
    for judge in (review.validate, review.mutate):
        verdict = judge(req, policy=policy, snapshot=snapshot)
        assert verdict.allowed is False
        assert verdict.codes == (code,)


DELETING = {"deletionTimestamp": "2026-11-23T10:00:00Z", "finalizers": ["example.com/hold"]}


@pytest.mark.parametrize(
    ("old_hosts", "new_hosts", "new_meta", "allowed", "codes"),
    [
        pytest.param(["free.example.com"], ["api.stripe.com"], DELETING, False, ("ConflictServiceEntry",), id="new-hosts-onto-an-object-being-deleted-are-judged-and-denied"),
        pytest.param(["api.stripe.com"], ["api.stripe.com"], {"deletionTimestamp": "2026-11-23T10:00:00Z"}, True, (), id="removing-the-finalizer-of-a-conflicting-object-is-never-blocked"),
        pytest.param(["api.stripe.com"], ["api.stripe.com"], {"labels": {"team": "b"}}, True, (), id="a-label-change-that-leaves-the-spec-is-not-judged"),
        pytest.param(["free.example.com"], ["other.example.com"], DELETING, True, (), id="a-free-host-onto-an-object-being-deleted-is-allowed"),
    ],
)  # fmt: skip
def test_only_an_update_that_keeps_the_spec_skips_judging(
    old_hosts: list[str],
    new_hosts: list[str],
    new_meta: dict[str, Any],
    allowed: bool,
    codes: tuple[str, ...],
) -> None:
    old = make_service_entry("held", "team-b", old_hosts, metadata=DELETING)
    obj = make_service_entry("held", "team-b", new_hosts, metadata=new_meta)
    req = make_request(obj, operation="UPDATE", old=old)
    verdict = review.validate(req, policy=make_policy(), snapshot=REGISTRY)
    assert (verdict.allowed, verdict.codes) == (allowed, codes)
    # The mutating webhook leaves an unchanged spec alone too: a default it added would make
    # the spec differ, and so get a finalizer's removal judged (and maybe refused).
    old_bare = make_service_entry("held", "team-b", old_hosts, ports=[], metadata=DELETING)
    same = make_request(copy.deepcopy(old_bare), operation="UPDATE", old=old_bare)
    assert review.mutate(same, policy=make_policy(), snapshot=REGISTRY).patch == ()


@pytest.mark.parametrize(
    ("hosts", "code"),
    [
        pytest.param(["ok.example.com", 42], "InvalidHost", id="a-host-that-is-not-a-string"),
        pytest.param(
            [f"h{i}.example.com" for i in range(10_000)], "InvalidSpec", id="ten-thousand-hosts"
        ),
        pytest.param([], "InvalidSpec", id="no-hosts"),
        pytest.param("api.example.com", "InvalidSpec", id="hosts-not-a-list"),
    ],
)
def test_bad_hosts_are_denied_by_both_webhooks_in_every_mode(hosts: Any, code: str) -> None:
    obj = make_service_entry("bad", "team-c", [])
    obj["spec"]["hosts"] = hosts
    for mode in ("Enforce", "Warn", "Audit"):
        for judge in (review.validate, review.mutate):
            verdict = judge(make_request(obj), policy=make_policy(mode=mode), snapshot=REGISTRY)
            assert verdict.allowed is False
            assert code in verdict.codes
            assert len(verdict.message) <= 3000


def test_exempt_namespace_is_allowed_with_its_findings_kept() -> None:
    obj = make_service_entry("stripe", "istio-system", ["api.stripe.com"])
    verdict = review.validate(make_request(obj), policy=make_policy(), snapshot=REGISTRY)
    assert verdict.allowed
    assert verdict.exemption == "namespace istio-system"
    assert verdict.codes == ("ConflictServiceEntry",)
    assert verdict.outcomes == ("exempted",)


@pytest.mark.parametrize(
    ("code", "action", "mode", "exempt", "outcome"),
    [
        (Code.CONFLICT_SERVICE_ENTRY, Action.DENY, Mode.ENFORCE, False, outcomes.DENIED),
        (Code.CONFLICT_SERVICE_ENTRY, Action.WARN, Mode.ENFORCE, False, outcomes.WARNED),
        (Code.CONFLICT_SERVICE_ENTRY, Action.DENY, Mode.WARN, False, outcomes.WARNED),
        (Code.CONFLICT_SERVICE_ENTRY, Action.DENY, Mode.AUDIT, False, outcomes.AUDITED),
        (Code.CONFLICT_SERVICE_ENTRY, Action.DENY, Mode.ENFORCE, True, outcomes.EXEMPTED),
        (Code.CONFLICT_SERVICE_ENTRY, Action.DENY, Mode.AUDIT, True, outcomes.EXEMPTED),
        (Code.INVALID_HOST, Action.DENY, Mode.AUDIT, True, outcomes.DENIED),
    ],
)
def test_one_rule_says_what_becomes_of_a_finding(
    code: Code, action: Action, mode: Mode, exempt: bool, outcome: str
) -> None:
    finding = finding_of(code, "h.example.com", action, "m")
    assert review.outcome_of(finding, mode, exempt) == outcome
    assert outcome in outcomes.OUTCOMES
    # The scan asks the same rule: a violation is refused today exactly when it is denied.
    violation = Violation("ns", "se", "", finding, exempt=exempt, mode=mode)
    assert bool(denying([violation])) is (outcome == outcomes.DENIED)
