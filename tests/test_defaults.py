"""Defaulting: only absent fields are set, and a valid ServiceEntry is never turned invalid.

"Valid" is judged by two independent oracles: ``tests/crd.py`` (the CRD's schema and CEL rules,
which the API server checks after the mutating webhooks) and ``tests/istio_validation.py``
(Istio's ``ValidateServiceEntry``, transcribed from Istio's code). ``data/serviceentry-cases.json``
holds Istio's own validation vectors, copies of the valid ones without ``resolution``, and cases of
our own, each with the verdicts both oracles must give; a first test holds the oracles to those
verdicts so that they stay honest.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from tests.conftest import load_fixture_review
from tests.crd import crd_errors, served_versions
from tests.factories import make_policy, make_service_entry
from tests.istio_validation import istio_errors
from webhook.core.defaults import (
    ANNOTATION,
    Defaulting,
    _patch,
    apply_defaults,
    auto_resolution,
    choose_resolution,
    resolution_problem,
)
from webhook.core.policy import Defaults

CASES_FILE = Path(__file__).parent / "data" / "serviceentry-cases.json"
HTTP = [{"name": "http", "number": 80, "protocol": "HTTP"}]
TLS = [{"name": "tls", "number": 443, "protocol": "TLS"}]
TCP = [{"name": "tcp", "number": 5432, "protocol": "TCP"}]
TWO_HOSTS = ("a.example.com", "b.example.com")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_*.~]+", "-", text).strip("-")


def _load_cases() -> list[dict[str, Any]]:
    document = json.loads(CASES_FILE.read_text())
    cases: list[dict[str, Any]] = document["cases"]
    return cases


CASES = _load_cases()
VALID_CASES = [c for c in CASES if c["crd_valid"] and c["istio_valid"]]


def _case_params(cases: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(c, id=_slug(c["name"])) for c in cases]


# Defaults as a cluster admin may write them (each row is checked against the policy parser below).
DEFAULTS = [
    pytest.param(Defaults(), id="built-in-defaults"),
    pytest.param(
        Defaults(location="MESH_INTERNAL", resolution="Auto", export_to=(".",)),
        id="MESH_INTERNAL-Auto-and-exportTo-dot",
    ),
    pytest.param(Defaults(resolution="NONE"), id="fixed-NONE"),
    pytest.param(Defaults(resolution="STATIC"), id="fixed-STATIC"),
    pytest.param(Defaults(resolution="DNS"), id="fixed-DNS"),
    pytest.param(Defaults(resolution="DNS_ROUND_ROBIN"), id="fixed-DNS_ROUND_ROBIN"),
    pytest.param(
        Defaults(location=None, resolution=None, export_to=("~",)), id="only-exportTo-nobody"
    ),
    pytest.param(
        Defaults(location="MESH_EXTERNAL", resolution="Auto", export_to=("istio-system", "ops")),
        id="exportTo-two-other-namespaces",
    ),
]


def se_object(case: Mapping[str, Any]) -> dict[str, Any]:
    """A whole ServiceEntry, as the API server sends it, around a case's spec."""
    metadata: dict[str, Any] = {
        "name": _slug(case["name"]).lower()[:63].strip("-.") or "entry",
        "namespace": case["namespace"],
        "uid": "0d9f4c1e-0000-4000-8000-000000000001",
        "managedFields": [
            {
                "apiVersion": "networking.istio.io/v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:hosts": {}}},
                "manager": "kubectl",
                "operation": "Apply",
            }
        ],
    }
    if case.get("labels"):
        metadata["labels"] = dict(case["labels"])
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": metadata,
        "spec": copy.deepcopy(case["spec"]),
    }


def wrap(spec: Mapping[str, Any], *, namespace: str = "team-a") -> dict[str, Any]:
    """A whole ServiceEntry around a copy of ``spec``."""
    obj = make_service_entry(namespace=namespace)
    obj["spec"] = copy.deepcopy(dict(spec))
    return obj


def defaulted(obj: Mapping[str, Any], defaults: Defaults) -> tuple[dict[str, Any], Defaulting]:
    """The object after the API server applies the webhook's patch, and the webhook's answer."""
    result = apply_defaults(obj, defaults)
    after: dict[str, Any] = jsonpatch.apply_patch(obj, result.patch)
    return after, result


def problems(obj: Mapping[str, Any]) -> list[str]:
    """Every complaint of both oracles about a whole ServiceEntry."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec")
    found = [f"CRD: {e}" for e in crd_errors(spec)]
    found += [
        f"Istio: {e}"
        for e in istio_errors(
            spec, namespace=metadata.get("namespace", "default"), labels=metadata.get("labels")
        )
    ]
    return found


def _has_empty_list(value: Any) -> bool:
    if isinstance(value, list):
        return not value or any(_has_empty_list(v) for v in value)
    if isinstance(value, dict):
        return any(_has_empty_list(v) for v in value.values())
    return False


# The oracles.


@pytest.mark.parametrize("case", _case_params(CASES))
def test_checkers_give_the_recorded_verdicts(case: dict[str, Any]) -> None:
    crd = crd_errors(case["spec"])
    istio = istio_errors(case["spec"], namespace=case["namespace"], labels=case.get("labels"))
    assert (not crd) == case["crd_valid"], crd
    assert (not istio) == case["istio_valid"], istio


def test_case_file_holds_every_valid_istio_vector_and_its_copy_without_resolution() -> None:
    vectors = {c["name"]: c for c in CASES if c["origin"] == "istio-vector"}
    derived = {c["name"] for c in CASES if c["derived"]}
    valid = [v for v in vectors.values() if v["istio_valid"]]
    assert len(vectors) == 103 and len(valid) == 50
    for vector in valid:
        if "resolution" in vector["spec"]:
            assert f"{vector['name']}, resolution removed" in derived
    assert any(not c["istio_valid"] for c in CASES) and any(not c["crd_valid"] for c in CASES)


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_every_served_version_checks_the_same_rules(version: str) -> None:
    assert version in served_versions()
    bad = {"hosts": ["example.com"], "addresses": ["10.0.0.0/8"], "resolution": "DNS"}
    assert crd_errors(bad, version) == crd_errors(bad, "v1") != []


# Auto resolution.


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(make_service_entry(ports=TLS, endpoints=[{"address": "1.2.3.4"}, {"address": "2001:db8::1"}])["spec"], "STATIC", id="ip-endpoints-get-STATIC"),
        pytest.param(make_service_entry(ports=[{"name": "grpc", "number": 6553, "protocol": "GRPC"}], endpoints=[{"address": "unix:///var/run/app.sock"}])["spec"], "STATIC", id="unix-socket-endpoint-gets-STATIC"),
        pytest.param(make_service_entry(ports=TLS, endpoints=[{"network": "net-2"}])["spec"], "STATIC", id="network-only-endpoint-gets-STATIC"),
        pytest.param(make_service_entry(ports=TLS, workloadSelector={"labels": {"app": "vm"}})["spec"], "STATIC", id="workload-selector-gets-STATIC"),
        pytest.param(make_service_entry(hosts=["*.vm.example.com"], ports=HTTP, workloadSelector={"labels": {"app": "vm"}})["spec"], "STATIC", id="workload-selector-gets-STATIC-even-on-a-wildcard-host"),
        pytest.param(make_service_entry(ports=TLS, endpoints=[{"address": "eu.stripe.com"}])["spec"], "DNS", id="hostname-endpoint-gets-DNS"),
        pytest.param(make_service_entry(ports=TLS, endpoints=[{"address": "1.2.3.4"}, {"address": "eu.stripe.com"}])["spec"], "DNS", id="mixed-ip-and-hostname-endpoints-get-DNS"),
        pytest.param(make_service_entry(hosts=["*.example.com"], ports=HTTP)["spec"], "NONE", id="wildcard-host-gets-NONE"),
        pytest.param(make_service_entry(hosts=["api.example.com", "*.example.com"], ports=TLS)["spec"], "NONE", id="one-wildcard-among-several-hosts-gets-NONE"),
        pytest.param(make_service_entry(hosts=["*foo.example.com"], ports=HTTP)["spec"], "NONE", id="partial-wildcard-host-gets-NONE"),
        pytest.param(make_service_entry(ports=TCP, addresses=["10.0.0.0/8"])["spec"], "NONE", id="cidr-address-gets-NONE"),
        pytest.param(make_service_entry(ports=TCP, addresses=["10.0.0.1", "2001:db8::/32"])["spec"], "NONE", id="ipv6-cidr-beside-a-plain-address-gets-NONE"),
        pytest.param(make_service_entry(hosts=TWO_HOSTS, ports=TCP)["spec"], "NONE", id="several-hosts-on-a-TCP-port-get-NONE"),
        pytest.param(make_service_entry(hosts=TWO_HOSTS, ports=[{"name": "tcp", "number": 5432, "protocol": "tcp"}])["spec"], "NONE", id="several-hosts-on-a-lower-case-tcp-port-get-NONE"),
        pytest.param(make_service_entry(hosts=TWO_HOSTS, ports=[*TLS, {"name": "web", "number": 8080}])["spec"], "NONE", id="several-hosts-with-one-unset-protocol-get-NONE"),
        pytest.param(make_service_entry(hosts=TWO_HOSTS, ports=[{"name": "web", "number": 8080, "protocol": ""}])["spec"], "NONE", id="several-hosts-with-an-empty-protocol-get-NONE"),
        pytest.param(make_service_entry(hosts=TWO_HOSTS, ports=[{"name": "mongo", "number": 27017, "protocol": "Mongo"}])["spec"], "NONE", id="several-hosts-on-Mongo-get-NONE"),
        pytest.param(make_service_entry(hosts=TWO_HOSTS, ports=[{"name": "dns", "number": 53, "protocol": "UDP"}])["spec"], "NONE", id="several-hosts-on-UDP-get-NONE"),
        pytest.param(make_service_entry(hosts=TWO_HOSTS, ports=[*HTTP, *TLS])["spec"], "DNS", id="several-hosts-on-HTTP-and-TLS-get-DNS"),
        pytest.param(make_service_entry(hosts=TWO_HOSTS, ports=[{"name": "a", "number": 1, "protocol": "https"}, {"name": "b", "number": 2, "protocol": "Grpc-Web"}, {"name": "c", "number": 3, "protocol": "http2"}, {"name": "d", "number": 4, "protocol": "HTTP_PROXY"}, {"name": "e", "number": 5, "protocol": "grpc"}, {"name": "f", "number": 6, "protocol": "tls"}])["spec"], "DNS", id="several-hosts-on-every-HTTP-and-TLS-protocol-in-any-case-get-DNS"),
        pytest.param(make_service_entry(hosts=TWO_HOSTS, ports=[])["spec"], "DNS", id="several-hosts-without-ports-get-DNS"),
        pytest.param(make_service_entry(ports=TCP)["spec"], "DNS", id="one-host-on-TCP-gets-DNS"),
        pytest.param(make_service_entry(ports=TLS, addresses=["10.0.0.1"])["spec"], "DNS", id="one-host-with-a-plain-address-gets-DNS"),
        pytest.param(make_service_entry(hosts=["istio.io."], ports=HTTP)["spec"], "DNS", id="trailing-dot-host-gets-DNS"),
        pytest.param(make_service_entry(hosts=["reviews"], ports=HTTP)["spec"], "DNS", id="short-name-host-gets-DNS"),
    ],
)  # fmt: skip
def test_auto_resolution_choice(spec: dict[str, Any], expected: str) -> None:
    assert auto_resolution(spec) == expected
    # The choice is valid to both oracles, so Auto keeps it.
    assert istio_errors({**spec, "resolution": expected}) == []
    assert crd_errors({**spec, "resolution": expected}) == []
    assert choose_resolution(spec, "Auto") == (expected, None)
    obj = wrap(spec)
    after, result = defaulted(obj, Defaults())
    assert after["spec"]["resolution"] == expected and "resolution" in result.defaulted


@pytest.mark.parametrize(
    ("spec", "first_choice", "expected"),
    [
        pytest.param(make_service_entry(hosts=TWO_HOSTS, ports=TCP, workloadSelector={"labels": {"app": "vm"}})["spec"], "STATIC", "NONE", id="selector-with-several-hosts-on-TCP-falls-back-to-NONE"),
        pytest.param(make_service_entry(hosts=["123"], ports=HTTP)["spec"], "DNS", "NONE", id="all-numeric-host-falls-back-to-NONE"),
    ],
)  # fmt: skip
def test_auto_falls_back_when_its_first_choice_would_be_refused(
    spec: dict[str, Any], first_choice: str, expected: str
) -> None:
    assert auto_resolution(spec) == first_choice
    chosen, note = choose_resolution(spec, "Auto")
    assert (chosen, note) == (expected, None)
    assert istio_errors({**spec, "resolution": expected}) == []
    assert crd_errors({**spec, "resolution": expected}) == []


def test_auto_gives_DNS_after_a_trailing_dot_as_Istio_does() -> None:
    # Istio's all-numeric top-level check reads the text after the last dot: empty for "foo.123.".
    spec = make_service_entry(hosts=["foo.123."], ports=HTTP)["spec"]
    assert istio_errors({**spec, "resolution": "DNS"}) == []
    assert choose_resolution(spec, "Auto") == ("DNS", None)


def test_auto_gives_DNS_to_an_upper_case_host_as_Istio_accepts_it() -> None:
    # DESIGN.md section 5: DNS "otherwise". Istio's ValidateFQDN takes upper-case labels
    # (labels.dns1123LabelFmt is [a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?), and NONE forwards to
    # whatever IP the client dialled, so NONE is the weaker choice here.
    spec = make_service_entry(hosts=["API.Example.com"], ports=TLS)["spec"]
    assert istio_errors({**spec, "resolution": "DNS"}) == []
    assert crd_errors({**spec, "resolution": "DNS"}) == []
    assert choose_resolution(spec, "Auto") == ("DNS", None)


# The promise: a valid ServiceEntry stays valid.


@pytest.mark.parametrize("defaults", DEFAULTS)
@pytest.mark.parametrize("case", _case_params(VALID_CASES))
def test_defaulting_keeps_a_valid_service_entry_valid(
    case: dict[str, Any], defaults: Defaults
) -> None:
    obj = se_object(case)
    assert problems(obj) == []
    after, result = defaulted(obj, defaults)
    assert problems(after) == [], result.patch
    assert not any(_has_empty_list(op.get("value")) for op in result.patch)


@pytest.mark.parametrize("defaults", DEFAULTS)
@pytest.mark.parametrize("case", _case_params([c for c in CASES if isinstance(c["spec"], dict)]))
def test_a_second_pass_changes_nothing(case: dict[str, Any], defaults: Defaults) -> None:
    once, _ = defaulted(se_object(case), defaults)
    again = apply_defaults(once, defaults)
    assert again.patch == [] and again.defaulted == ()


@pytest.mark.parametrize("defaults", DEFAULTS)
def test_every_defaults_row_is_a_policy_the_parser_accepts(defaults: Defaults) -> None:
    written = {
        "location": defaults.location,
        "resolution": defaults.resolution,
        "exportTo": list(defaults.export_to) if defaults.export_to is not None else None,
    }
    assert make_policy(defaults=written).rules.defaults == defaults


# Only absent fields are set.


@pytest.mark.parametrize(
    ("users", "field"),
    [
        pytest.param({"location": "MESH_INTERNAL"}, "location", id="users-MESH_INTERNAL-is-kept"),
        pytest.param({"resolution": "NONE"}, "resolution", id="users-NONE-is-kept"),
        pytest.param({"resolution": "STATIC"}, "resolution", id="users-STATIC-is-kept"),
        pytest.param({"resolution": "DNS_ROUND_ROBIN"}, "resolution", id="users-DNS_ROUND_ROBIN-is-kept"),
        pytest.param({"exportTo": ["."]}, "exportTo", id="users-exportTo-dot-is-kept"),
        pytest.param({"exportTo": ["team-b", "team-c"]}, "exportTo", id="users-exportTo-list-is-kept"),
    ],
)  # fmt: skip
def test_a_users_value_is_never_overridden(users: dict[str, Any], field: str) -> None:
    obj = make_service_entry(ports=TLS, **users)
    policy = Defaults(location="MESH_EXTERNAL", resolution="DNS", export_to=("*",))
    after, result = defaulted(obj, policy)
    assert after["spec"][field] == users[field]
    assert field not in result.defaulted and field not in result.values
    assert not any(op["path"].startswith(f"/spec/{field}") for op in result.patch)
    # The fields the user left out are still set.
    assert set(result.defaulted) == {"location", "resolution", "exportTo"} - {field}


@pytest.mark.parametrize(
    "value",
    [pytest.param([], id="empty-exportTo-list"), pytest.param(None, id="null-exportTo")],
)
def test_an_empty_exportTo_counts_as_absent(value: Any) -> None:
    obj = make_service_entry(ports=TLS, exportTo=value)
    after, result = defaulted(obj, Defaults(export_to=(".",)))
    assert after["spec"]["exportTo"] == ["."] and "exportTo" in result.defaulted


def test_an_empty_exportTo_is_left_alone_when_the_policy_sets_none() -> None:
    obj = make_service_entry(ports=TLS, exportTo=[])
    after, result = defaulted(obj, Defaults(export_to=None))
    assert after["spec"]["exportTo"] == [] and "exportTo" not in result.defaulted
    assert not any(op["path"].startswith("/spec/exportTo") for op in result.patch)


@pytest.mark.parametrize("defaults", DEFAULTS)
def test_no_empty_list_is_ever_emitted(defaults: Defaults) -> None:
    for case in CASES:
        if not isinstance(case["spec"], dict):
            continue
        result = apply_defaults(se_object(case), defaults)
        for op in result.patch:
            assert not _has_empty_list(op.get("value")), (case["name"], op)


def test_nothing_is_set_when_the_policy_defaults_nothing() -> None:
    obj = make_service_entry(ports=TLS)
    result = apply_defaults(obj, Defaults(location=None, resolution=None, export_to=None))
    assert result == Defaulting([], (), {})


# The annotation.


@pytest.mark.parametrize(
    ("annotations", "spec", "defaults", "newly_set", "expected"),
    [
        pytest.param(None, {}, Defaults(), ("location", "resolution"), "location,resolution", id="built-in-defaults-name-location-and-resolution"),
        pytest.param(None, {}, Defaults(export_to=(".",)), ("location", "resolution", "exportTo"), "location,resolution,exportTo", id="all-three-fields-in-a-fixed-order"),
        pytest.param(None, {"location": "MESH_EXTERNAL"}, Defaults(), ("resolution",), "resolution", id="only-the-resolution-when-location-is-given"),
        pytest.param(None, {"resolution": "DNS"}, Defaults(location=None, export_to=("~",)), ("exportTo",), "exportTo", id="only-exportTo-when-that-is-all-that-was-set"),
        pytest.param({ANNOTATION: "resolution"}, {"resolution": "DNS"}, Defaults(), ("location",), "location,resolution", id="merges-with-an-earlier-resolution"),
        pytest.param({ANNOTATION: "exportTo"}, {"exportTo": ["."]}, Defaults(), ("location", "resolution"), "location,resolution,exportTo", id="merges-with-an-earlier-exportTo-in-field-order"),
        pytest.param({ANNOTATION: "location", "team": "payments"}, {"location": "MESH_INTERNAL"}, Defaults(), ("resolution",), "location,resolution", id="keeps-an-earlier-location-and-other-annotations"),
    ],
)  # fmt: skip
def test_the_annotation_lists_what_was_set(
    annotations: dict[str, str] | None,
    spec: dict[str, Any],
    defaults: Defaults,
    newly_set: tuple[str, ...],
    expected: str,
) -> None:
    metadata = {"annotations": annotations} if annotations is not None else {}
    obj = make_service_entry(ports=TLS, metadata=metadata, **spec)
    after, result = defaulted(obj, defaults)
    assert after["metadata"]["annotations"][ANNOTATION] == expected
    assert result.defaulted == newly_set and tuple(result.values) == newly_set
    for key, value in (annotations or {}).items():
        if key != ANNOTATION:
            assert after["metadata"]["annotations"][key] == value
    # The warning names each value this request set.
    assert result.warning is not None
    for name in newly_set:
        assert f"{name}=" in result.warning


def test_the_annotation_is_left_alone_when_nothing_is_set() -> None:
    obj = make_service_entry(
        ports=TLS,
        location="MESH_EXTERNAL",
        resolution="DNS",
        metadata={"annotations": {ANNOTATION: "location,resolution"}},
    )
    result = apply_defaults(obj, Defaults())
    assert result.patch == [] and result.defaulted == () and result.warning is None


# A fixed resolution from the policy that would make the object invalid.


@pytest.mark.parametrize(
    ("spec", "wanted"),
    [
        pytest.param(make_service_entry(hosts=["*.example.com"], ports=HTTP)["spec"], "DNS", id="DNS-on-a-wildcard-host-is-left-out"),
        pytest.param(make_service_entry(hosts=["*.example.com"], ports=HTTP)["spec"], "DNS_ROUND_ROBIN", id="DNS_ROUND_ROBIN-on-a-wildcard-host-is-left-out"),
        pytest.param(make_service_entry(hosts=["123"], ports=HTTP)["spec"], "DNS", id="DNS-on-an-all-numeric-host-is-left-out"),
        pytest.param(make_service_entry(ports=TCP, addresses=["10.0.0.0/8"])["spec"], "DNS", id="DNS-with-a-CIDR-address-is-left-out"),
        pytest.param(make_service_entry(hosts=TWO_HOSTS, ports=TCP)["spec"], "STATIC", id="STATIC-on-several-hosts-with-TCP-is-left-out"),
        pytest.param(make_service_entry(hosts=TWO_HOSTS, ports=[{"name": "web", "number": 8080}])["spec"], "DNS", id="DNS-on-several-hosts-with-an-unset-protocol-is-left-out"),
    ],
)  # fmt: skip
def test_a_fixed_resolution_that_would_be_refused_is_left_out_with_a_note(
    spec: dict[str, Any], wanted: str
) -> None:
    # Both oracles agree that the policy's value would break this object...
    assert (
        istio_errors({**spec, "resolution": wanted}) != []
        or crd_errors({**spec, "resolution": wanted}) != []
    )
    obj = wrap(spec)
    assert problems(obj) == []
    # ...so the webhook leaves it out, says why, and still sets the rest.
    after, result = defaulted(obj, Defaults(resolution=wanted))
    assert "resolution" not in after["spec"] and "resolution" not in result.defaulted
    assert len(result.notes) == 1 and f"resolution {wanted} not set" in result.notes[0]
    assert resolution_problem(spec, wanted) is not None
    assert result.defaulted == ("location",) and problems(after) == []


@pytest.mark.parametrize(
    ("spec", "wanted"),
    [
        pytest.param(make_service_entry(hosts=["*.example.com"], ports=HTTP)["spec"], "STATIC", id="STATIC-on-a-wildcard-host-is-set"),
        pytest.param(make_service_entry(hosts=TWO_HOSTS, ports=TCP)["spec"], "NONE", id="NONE-on-several-hosts-with-TCP-is-set"),
        pytest.param(make_service_entry(ports=TLS)["spec"], "DNS_ROUND_ROBIN", id="DNS_ROUND_ROBIN-on-one-plain-host-is-set"),
    ],
)  # fmt: skip
def test_a_fixed_resolution_that_keeps_the_object_valid_is_set(
    spec: dict[str, Any], wanted: str
) -> None:
    obj = wrap(spec)
    after, result = defaulted(obj, Defaults(resolution=wanted))
    assert after["spec"]["resolution"] == wanted and result.notes == ()
    assert problems(after) == []


# Patch paths hold on the whole object.


def _fixture_object(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = load_fixture_review(name)["request"]["object"]
    return obj


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(make_service_entry(ports=TLS), id="no-annotations"),
        pytest.param(make_service_entry(ports=TLS, metadata={"annotations": {}}), id="empty-annotations"),
        pytest.param(make_service_entry(ports=TLS, metadata={"annotations": None}), id="null-annotations"),
        pytest.param(make_service_entry(ports=TLS, metadata={"annotations": {"a/b~c": "x"}}), id="annotation-keys-with-slash-and-tilde"),
        pytest.param(make_service_entry(ports=TLS, metadata={"labels": {"app": "x"}, "resourceVersion": "7", "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:hosts": {}}}}]}), id="labels-and-managedFields"),
        pytest.param({**make_service_entry(ports=TLS), "status": {"conditions": []}}, id="with-status"),
        pytest.param(_fixture_object("00-mutating-create-v1.json"), id="captured-kubectl-apply-with-last-applied-annotation"),
        pytest.param(_fixture_object("08-mutating-create-v1-serverside-apply.json"), id="captured-server-side-apply-with-managedFields"),
        pytest.param(_fixture_object("06-mutating-create-v1alpha3-generatename.json"), id="captured-generateName-wildcard"),
    ],
)  # fmt: skip
def test_the_patch_applies_to_the_whole_object(obj: dict[str, Any]) -> None:
    original = copy.deepcopy(obj)
    after, result = defaulted(obj, Defaults(export_to=(".",)))
    assert obj == original  # the webhook works on a copy
    assert result.patch and all(
        op["path"].startswith(("/spec/", "/metadata/annotations")) for op in result.patch
    )
    assert after["metadata"]["annotations"][ANNOTATION] == "location,resolution,exportTo"
    for key in ("location", "resolution", "exportTo"):
        assert after["spec"][key] == result.values[key]
    # Everything else is as it was.
    old_annotations = original["metadata"].get("annotations") or {}
    assert {
        k: v for k, v in after["metadata"]["annotations"].items() if k != ANNOTATION
    } == old_annotations
    assert {k: v for k, v in after["metadata"].items() if k != "annotations"} == {
        k: v for k, v in original["metadata"].items() if k != "annotations"
    }
    assert {k: v for k, v in after["spec"].items() if k not in result.values} == original["spec"]
    assert {k: v for k, v in after.items() if k not in ("metadata", "spec")} == {
        k: v for k, v in original.items() if k not in ("metadata", "spec")
    }
    assert problems(after) == []


# Defaults that need more than the spec to stay valid.


def test_a_MESH_INTERNAL_default_keeps_DYNAMIC_DNS_behind_a_waypoint_valid() -> None:
    # Istio: "location MESH_INTERNAL with resolution type DYNAMIC_DNS is not supported when using
    # waypoints". With no location the object is MESH_EXTERNAL, which a waypoint supports.
    obj = make_service_entry(
        hosts=["*.example.com"],
        ports=HTTP,
        resolution="DYNAMIC_DNS",
        metadata={"labels": {"istio.io/use-waypoint": "egress-waypoint"}},
    )
    assert problems(obj) == []
    assert (
        make_policy(defaults={"location": "MESH_INTERNAL"}).rules.defaults.location
        == "MESH_INTERNAL"
    )
    after, _ = defaulted(obj, Defaults(location="MESH_INTERNAL"))
    assert problems(after) == []


def test_an_exportTo_default_naming_the_own_namespace_beside_dot_keeps_the_object_valid() -> None:
    # Istio's validateExportTo reads "." as the object's own namespace, so [".", "team-a"] in
    # team-a is "duplicate entries in exportTo for entry team-a". The policy parser accepts that
    # list: it cannot know the namespace of each ServiceEntry.
    assert make_policy(defaults={"exportTo": [".", "team-a"]}).rules.defaults.export_to == (
        ".",
        "team-a",
    )
    obj = make_service_entry(namespace="team-a", ports=TLS)
    assert problems(obj) == []
    after, _ = defaulted(obj, Defaults(export_to=(".", "team-a")))
    assert problems(after) == []


def _diffed(state: str, old: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    """What jsonpatch.make_patch gives for the change _patch makes."""
    annotations = {"set": {ANNOTATION: old}, "other": {"team": "a"}}.get(state)
    before: dict[str, Any] = {"metadata": {}, "spec": {}}
    if annotations is not None:
        before["metadata"]["annotations"] = annotations
    after = copy.deepcopy(before)
    already = old.split(",") if state == "set" else []
    merged = ",".join(
        n for n in ("location", "resolution", "exportTo") if n in values or n in already
    )
    after["metadata"].setdefault("annotations", {})[ANNOTATION] = merged
    after["spec"].update(copy.deepcopy(values))
    return list(jsonpatch.make_patch(before, after).patch)


@pytest.mark.parametrize(
    ("state", "old"),
    [
        ("absent", ""),
        ("other", ""),
        ("set", ""),
        ("set", "location"),
        ("set", "location,exportTo"),
        ("set", "resolution"),
    ],
)
@pytest.mark.parametrize(
    "values",
    [
        {"location": "MESH_EXTERNAL"},
        {"resolution": "DNS"},
        {"location": "MESH_EXTERNAL", "resolution": "NONE", "exportTo": ["."]},
        {"exportTo": [".", "istio-system"]},
    ],
)
def test_the_patch_is_what_jsonpatch_would_diff(
    state: str, old: str, values: dict[str, Any]
) -> None:
    assert _patch(state, old, values) == _diffed(state, old, values)
