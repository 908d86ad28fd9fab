"""AdmissionReview in and out: what is a 400, and the shape of every answer."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from tests.factories import make_review, make_service_entry
from webhook.core.admission import (
    WARNING_MAX,
    WARNINGS_TOTAL_MAX,
    MalformedReview,
    fit_message,
    fit_warnings,
    parse_review,
    repeats_a_key,
    response,
)


def with_request(**changes: Any) -> dict[str, Any]:
    review = make_review(make_service_entry())
    review["request"].update(changes)
    return review


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        pytest.param([], "JSON object", id="a-list"),
        pytest.param({**make_review(make_service_entry()), "apiVersion": "admission.k8s.io/v1beta1"}, "apiVersion", id="v1beta1-review"),
        pytest.param({**make_review(make_service_entry()), "kind": "Review"}, "kind", id="wrong-kind"),
        pytest.param({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, "request", id="no-request"),
        pytest.param(with_request(uid=""), "uid", id="empty-uid"),
        pytest.param(with_request(operation="PATCH"), "operation", id="unknown-operation"),
        pytest.param(with_request(object=None), "object is required", id="create-without-object"),
        pytest.param(with_request(object="spec"), "object must be an object", id="object-not-an-object"),
        pytest.param(with_request(requestKind=None, kind=None), "kind", id="no-kind"),
        pytest.param(with_request(namespace=7), "namespace", id="namespace-not-a-string"),
        pytest.param(with_request(kind={}), "request.kind must be networking.istio.io ServiceEntry", id="an-empty-kind"),
        pytest.param(with_request(kind={"group": "networking.istio.io", "version": "v1", "kind": None}), "request.kind must be", id="a-kind-of-null"),
        pytest.param(with_request(requestKind={"group": "networking.istio.io", "version": "v1", "kind": None}), "request.requestKind must be", id="a-request-kind-of-null"),
        pytest.param(with_request(kind={"group": "networking.istio.io", "version": "v1", "kind": "serviceentry"}), "kind 'serviceentry'", id="a-kind-in-the-wrong-case"),
        pytest.param(with_request(requestKind={"group": "Networking.Istio.io", "version": "v1", "kind": "ServiceEntry"}), "group 'Networking.Istio.io'", id="a-group-in-the-wrong-case"),
        pytest.param(with_request(kind={"group": "", "version": "v1", "kind": "Service"}), "the only kind seguard judges", id="another-kind"),
        pytest.param(with_request(requestKind={"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"}), "request.requestKind", id="a-request-kind-of-another-kind"),
        pytest.param(with_request(kind={"group": "networking.istio.io", "version": "", "kind": "ServiceEntry"}), "version", id="a-kind-without-a-version"),
        pytest.param(with_request(kind="ServiceEntry"), "must be an object", id="a-kind-that-is-a-string"),
    ],
)  # fmt: skip
def test_malformed_reviews_are_refused_with_the_reason(body: Any, fragment: str) -> None:
    with pytest.raises(MalformedReview, match=fragment):
        parse_review(body)


def test_delete_needs_no_object() -> None:
    obj = make_service_entry()
    req = parse_review(make_review(None, operation="DELETE", old=obj))
    assert req.operation == "DELETE" and req.object is None and req.old_object == obj


def test_generate_name_is_kept_for_display() -> None:
    obj = make_service_entry(name="", metadata={"generateName": "wild-"})
    req = parse_review(make_review(obj))
    assert req.name == "" and req.display_name == "wild-*"


def test_the_request_version_is_the_one_the_client_used() -> None:
    assert parse_review(make_review(make_service_entry(), version="v1alpha3")).version == "v1alpha3"


def test_a_denial_carries_code_403_and_the_message() -> None:
    answer = response(
        "u1", allowed=False, message="no [HostDenied]", audit_annotations={"decision": "denied"}
    )
    assert answer == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": "u1",
            "allowed": False,
            "status": {"code": 403, "reason": "Forbidden", "message": "no [HostDenied]"},
            "auditAnnotations": {"decision": "denied"},
        },
    }


def test_a_patch_is_base64_json_patch() -> None:
    ops = [{"op": "add", "path": "/spec/location", "value": "MESH_EXTERNAL"}]
    body = response("u", allowed=True, patch=ops)["response"]
    assert body["patchType"] == "JSONPatch"
    assert orjson.loads(base64.b64decode(body["patch"])) == ops


@pytest.mark.parametrize(
    "warnings",
    [
        pytest.param(["x" * 500], id="one-long-warning"),
        pytest.param([f"warning {i} " + "y" * 100 for i in range(200)], id="many-warnings"),
        pytest.param(["short"] * 3, id="a-few-short-ones"),
    ],
)
def test_warnings_fit_the_api_servers_limits(warnings: list[str]) -> None:
    fitted = fit_warnings(warnings)
    assert all(len(w) <= WARNING_MAX for w in fitted)
    assert sum(len(w) for w in fitted) <= WARNINGS_TOTAL_MAX
    if sum(min(len(w), WARNING_MAX) for w in warnings) <= WARNINGS_TOTAL_MAX:
        assert len(fitted) == len(warnings)
    else:
        assert fitted[-1].startswith("... and ")


def test_a_long_denial_message_is_cut_with_a_count() -> None:
    message = fit_message([f"host h{i}.example.com is denied [HostDenied]" for i in range(500)])
    assert len(message) <= 3000
    assert "more (see the audit log)" in message


@pytest.mark.parametrize(
    ("body", "repeats"),
    [
        pytest.param(b'{"a":1,"b":2}', False, id="distinct-keys"),
        pytest.param(b'{"a":1,"a":2}', True, id="a-key-twice"),
        pytest.param(b'{"a":{"x":1,"y":{"x":2}}}', False, id="one-key-in-two-objects"),
        pytest.param(b'{"a":[{"x":1,"x":1}]}', True, id="a-key-twice-deep-inside-a-list"),
        pytest.param(b'{"a":"x:y","a":"z"}', True, id="a-repeated-key-whose-first-value-holds-a-colon"),
        pytest.param(b'{"a": 1, "b" : 2}\n', False, id="spaces-and-a-newline"),
        pytest.param(b'{"a": 1, "a" : 2}', True, id="a-key-twice-with-spaces"),
        pytest.param(b'{"\\u0061":1,"a":2}', True, id="a-key-twice-once-escaped"),
        pytest.param(b'{"a":"\\u003a","b":1}', False, id="an-escaped-colon-in-a-value"),
        pytest.param(b'{"a":"\\u003a","b":1,"b":2}', True, id="an-escaped-colon-and-a-key-twice"),
        pytest.param(b'{"a":"\\u003A","b":{"c":1,"c":2}}', True, id="an-upper-case-escaped-colon-and-a-key-twice"),
        pytest.param(b'{"k":"<&>","k2":"\\u003c"}', False, id="html-escapes-as-go-writes-them"),
    ],
)  # fmt: skip
def test_a_repeated_key_is_found_however_the_json_is_written(body: bytes, repeats: bool) -> None:
    assert repeats_a_key(body, orjson.loads(body)) is repeats


def test_a_review_as_the_api_server_writes_it_repeats_no_key() -> None:
    body = orjson.dumps(make_review(make_service_entry())) + b"\n"
    assert repeats_a_key(body, orjson.loads(body)) is False
