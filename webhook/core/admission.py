"""AdmissionReview in and out (pure).

``parse_review`` checks only what the decision needs and raises ``MalformedReview`` (an HTTP 400)
for anything else. ``response`` turns a decision into the ``admission.k8s.io/v1`` answer, within
the API server's limits on warnings and audit annotations.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import orjson

from webhook.core.claims import ISTIO_GROUP, SERVICE_ENTRY
from webhook.core.shapes import describe

API_VERSION = "admission.k8s.io/v1"
OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
# kubectl prints each warning on one line; the API server advises 120 characters or fewer per
# warning and drops what goes past 4096 characters in all.
WARNING_MAX = 120
WARNINGS_TOTAL_MAX = 4096
# The status message is shown whole by kubectl; past this it stops being readable, and the full
# list is in the audit record anyway.
MESSAGE_MAX = 3000


class MalformedReview(ValueError):
    """A body that is not an admission.k8s.io/v1 AdmissionReview request we can answer."""


class AdmissionRequest(NamedTuple):
    uid: str
    operation: str
    namespace: str
    name: str  # "" for a CREATE with generateName, before the API server picks a name
    generate_name: str
    user: str
    groups: tuple[str, ...]
    dry_run: bool
    group: str
    kind: str
    version: str  # the version the client used (requestKind), v1, v1beta1 or v1alpha3
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None

    @property
    def display_name(self) -> str:
        return self.name or (self.generate_name + "*" if self.generate_name else "")


def parse_review(review: object) -> AdmissionRequest:
    if type(review) is not dict:
        raise MalformedReview("body must be a JSON object (an AdmissionReview)")
    get = review.get
    if get("apiVersion") != API_VERSION:
        raise MalformedReview(f"apiVersion must be {API_VERSION}, got {get('apiVersion')!r}")
    if get("kind") != "AdmissionReview":
        raise MalformedReview(f"kind must be AdmissionReview, got {get('kind')!r}")
    request = get("request")
    if type(request) is not dict:
        raise MalformedReview("request is missing or not an object")
    uid = request.get("uid")
    if type(uid) is not str or not uid:
        raise MalformedReview("request.uid is missing")
    operation = request.get("operation")
    if type(operation) is not str or operation not in OPERATIONS:
        raise MalformedReview(
            f"request.operation must be one of {sorted(OPERATIONS)}, got {operation!r}"
        )
    obj = request.get("object")
    old = request.get("oldObject")
    if obj is not None and type(obj) is not dict:
        raise MalformedReview("request.object must be an object")
    if old is not None and type(old) is not dict:
        raise MalformedReview("request.oldObject must be an object")
    if obj is None and operation in ("CREATE", "UPDATE"):
        raise MalformedReview(f"request.object is required for {operation}")
    kind_info = _service_entry_kind(request.get("kind"), "request.kind")
    if request.get("requestKind") is not None:
        kind_info = _service_entry_kind(request["requestKind"], "request.requestKind")
    subject = obj if obj is not None else old
    meta = subject.get("metadata") if subject is not None else None
    if type(meta) is not dict:
        meta = {}
    namespace = request.get("namespace") or meta.get("namespace") or ""
    name = request.get("name") or meta.get("name") or ""
    generate_name = meta.get("generateName") or ""
    if type(namespace) is not str or type(name) is not str or type(generate_name) is not str:
        raise MalformedReview("request namespace, name and generateName must be strings")
    user_info = request.get("userInfo")
    user: object = None
    groups: object = None
    if type(user_info) is dict:
        user = user_info.get("username")
        groups = user_info.get("groups")
    return AdmissionRequest(
        uid,
        operation,
        namespace,
        name,
        generate_name,
        user if type(user) is str else "",
        tuple(g for g in groups if type(g) is str) if type(groups) is list else (),
        request.get("dryRun") is True,
        ISTIO_GROUP,
        SERVICE_ENTRY,
        kind_info["version"],
        obj,
        old,
    )


def _service_entry_kind(value: object, where: str) -> dict[str, Any]:
    """A GroupVersionKind that names a ServiceEntry: the only kind seguard judges, so a review of
    any other (or of none) is not one it can answer."""
    if type(value) is not dict:
        raise MalformedReview(f"{where} must be an object with group, version and kind")
    group, kind, version = value.get("group"), value.get("kind"), value.get("version")
    if group != ISTIO_GROUP or kind != SERVICE_ENTRY:
        raise MalformedReview(
            f"{where} must be {ISTIO_GROUP} {SERVICE_ENTRY}, the only kind seguard judges; got "
            f"group {describe(group)}, kind {describe(kind)}"
        )
    if type(version) is not str or not version:
        raise MalformedReview(f"{where}.version must be a version such as v1")
    return value


class _RepeatedKey(ValueError):
    pass


def repeats_a_key(body: bytes, parsed: object) -> bool:
    """True when some JSON object in ``body`` holds a key twice (``parsed`` is what orjson made of
    it: it keeps the last value, as Go's decoder does, but a body the API server wrote never
    repeats one).

    Exact, at the cost of one orjson.dumps. The API server writes compact JSON, which is
    nearly always just what orjson writes of the parsed tree (Go adds a newline): then no key
    was dropped. Otherwise (HTML characters Go escapes, spaces, a review made by hand) every
    ':' in the body is a key's or one written in a string, and orjson writes the parsed tree's
    the same way, so the counts differ exactly when a key was dropped. Only a colon written as
    the escape \\u003a is not counted in the body; such a body is read again with the standard
    library, which reports every key."""
    try:
        canonical = orjson.dumps(parsed)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (255 levels)
        return _repeats_a_key_slowly(body)
    if canonical == body or (body.endswith(b"\n") and canonical == body[:-1]):
        return False
    if b"\\u003" in body and (b"\\u003a" in body or b"\\u003A" in body):
        return _repeats_a_key_slowly(body)
    return body.count(b":") != canonical.count(b":")


def _repeats_a_key_slowly(body: bytes) -> bool:
    def check(pairs: list[tuple[str, Any]]) -> None:
        if len({key for key, _ in pairs}) != len(pairs):
            raise _RepeatedKey

    try:
        json.loads(body, object_pairs_hook=check)
    except _RepeatedKey:
        return True
    except RecursionError:
        raise MalformedReview("body is nested too deeply to be an AdmissionReview") from None
    except ValueError:
        return False  # orjson read it: a difference of the two parsers is not a repeated key
    return False


def fit_warnings(warnings: Sequence[str]) -> list[str]:
    """Warnings shortened to the API server's limits, with a last one that counts the rest."""
    fitted: list[str] = []
    total = 0
    for i, text in enumerate(warnings):
        line = text if len(text) <= WARNING_MAX else text[: WARNING_MAX - 3] + "..."
        left = len(warnings) - i
        reserve = 40 if left > 1 else 0  # room for the "and N more" line
        if total + len(line) + reserve > WARNINGS_TOTAL_MAX:
            fitted.append(f"... and {left} more (see the audit log)")
            break
        fitted.append(line)
        total += len(line)
    return fitted


def fit_message(messages: Sequence[str]) -> str:
    text = "; ".join(messages)
    if len(text) <= MESSAGE_MAX:
        return text
    kept: list[str] = []
    size = 0
    for i, message in enumerate(messages):
        if size + len(message) + 2 > MESSAGE_MAX - 60:
            kept.append(f"... and {len(messages) - i} more (see the audit log)")
            break
        kept.append(message)
        size += len(message) + 2
    return "; ".join(kept)


def response(
    uid: str,
    *,
    allowed: bool,
    message: str = "",
    code: int = 403,
    warnings: Sequence[str] = (),
    audit_annotations: Mapping[str, str] | None = None,
    patch: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """An admission.k8s.io/v1 AdmissionReview response."""
    body: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        body["status"] = {
            "code": code,
            "reason": "Forbidden" if code == 403 else "InternalError",
            "message": message,
        }
    if warnings:
        body["warnings"] = fit_warnings(warnings)
    if audit_annotations:
        body["auditAnnotations"] = dict(audit_annotations)
    if patch:
        body["patchType"] = "JSONPatch"
        body["patch"] = base64.b64encode(orjson.dumps(list(patch))).decode("ascii")
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": body}
