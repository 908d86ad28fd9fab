"""Properties, checked on generated input (hypothesis).

CI runs each a short while (150 examples); `HYPOTHESIS_PROFILE=long pytest tests/test_properties.py`
runs 20,000 each.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.factories import (
    make_policy,
    make_review,
    make_service,
    make_service_entry,
    make_snapshot,
)
from webhook import app as app_module
from webhook.app import create_app
from webhook.audit import AuditLog
from webhook.core import claims, hosts, policyfile, review, rules
from webhook.core import scan as scan_mod
from webhook.core.admission import parse_review
from webhook.runtime import Runtime

LABEL_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-ÄÉßñü漢字"
labels = st.text(alphabet=LABEL_CHARS, min_size=0, max_size=12)
names = st.builds(
    lambda prefix, parts, dot, upper: (prefix + ".".join(parts) + dot).upper() if upper else prefix + ".".join(parts) + dot,
    st.sampled_from(["", "", "*.", "*", "**."]),
    st.lists(labels, min_size=1, max_size=5),
    st.sampled_from(["", "."]),
    st.booleans(),
)  # fmt: skip
any_text = st.text(max_size=80)


@given(st.one_of(names, any_text))
def test_normalising_is_idempotent_and_raises_only_invalid_host(raw: str) -> None:
    try:
        once = hosts.normalize(raw)
    except hosts.InvalidHost:
        return
    assert hosts.normalize(once) == once
    assert once == once.lower()
    assert once.isascii()
    assert not once.endswith(".")


ip_like = st.one_of(
    st.ip_addresses().map(str),
    st.text(alphabet="0123456789.:abcdefABCDEF%", max_size=45),
    st.text(max_size=20),
)


@given(ip_like)
def test_is_ip_agrees_with_ipaddress(text: str) -> None:
    """The shortcut that skips ipaddress for plain names must not change its answer."""
    try:
        ipaddress.ip_address(text)
        expected = True
    except ValueError:
        expected = False
    assert hosts.is_ip(text) is expected


@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.floats(),
        st.lists(st.integers()),
        st.dictionaries(st.text(), st.text()),
    )
)
def test_a_host_that_is_not_text_is_invalid_not_a_crash(raw: Any) -> None:
    with pytest.raises(hosts.InvalidHost):
        hosts.normalize(raw)


# Small alphabets, so that generated names often share suffixes.
small_names = st.builds(
    lambda wildcard, parts: ("*." if wildcard else "") + ".".join(parts),
    st.booleans(),
    st.lists(st.sampled_from(["a", "b", "c", "ab"]), min_size=1, max_size=4),
)


def covers_by_labels(pattern: str, host: str) -> bool:
    """The reference: cover as a comparison of label lists."""
    if not pattern.startswith("*."):
        return pattern == host
    base = pattern[2:].split(".")
    if host.startswith("*."):
        other = host[2:].split(".")
        return len(other) >= len(base) and other[len(other) - len(base) :] == base
    labels_ = host.split(".")
    return len(labels_) > len(base) and labels_[len(labels_) - len(base) :] == base


@given(small_names, small_names)
def test_cover_and_overlap_agree_with_each_other_and_with_a_label_reference(a: str, b: str) -> None:
    assert hosts.covers(a, b) == covers_by_labels(a, b)
    assert hosts.overlaps(a, b) == (covers_by_labels(a, b) or covers_by_labels(b, a))
    assert hosts.overlaps(a, b) == hosts.overlaps(b, a)
    assert hosts.covers(a, a)
    if hosts.covers(a, b) and hosts.covers(b, a):
        assert a == b


@given(small_names, small_names, small_names)
def test_cover_is_transitive(a: str, b: str, c: str) -> None:
    if hosts.covers(a, b) and hosts.covers(b, c):
        assert hosts.covers(a, c)


# Registry names from a few labels, so that hosts, Service names, namespaces and aliases collide;
# some are wildcards, some partial wildcards ("*ans" matches ans, bans and x.ans; "*b.ns"
# matches b.ns, ab.ns and x.b.ns).
REGISTRY_LABELS = ["a", "b", "ns", "svc", "cluster", "local"]
registry_hosts = st.builds(
    lambda prefix, parts: prefix + ".".join(parts),
    st.sampled_from(["", "", "*.", "*a", "*b."]),
    st.lists(st.sampled_from(REGISTRY_LABELS), min_size=1, max_size=5),
)
registry_services = st.lists(
    st.tuples(st.sampled_from(["a", "b", "svc"]), st.sampled_from(["ns", "b", "svc"])),
    max_size=6,
    unique=True,
)
registry_entries = st.lists(st.lists(registry_hosts, min_size=1, max_size=3), max_size=4)


@given(registry_services, registry_entries, registry_hosts)
def test_registry_matches_agree_with_a_scan_of_every_name_and_alias(
    services: list[tuple[str, str]], entries: list[list[str]], host: str
) -> None:
    """The indexes (aliases derived, not stored) find exactly what comparing the host with every
    registered name and every Service alias finds."""
    objects = [make_service(name, namespace) for name, namespace in services]
    objects += [
        make_service_entry(f"se{i}", "team", entry_hosts) for i, entry_hosts in enumerate(entries)
    ]
    snapshot = make_snapshot(*objects)
    expected = set()
    for claim in snapshot.claims.values():
        for key in claim.hosts + claim.aliases:
            if key == host:
                relation = "equal"
            elif hosts.covers(key, host):
                relation = "covered_by"
            elif hosts.covers(host, key):
                relation = "covers"
            else:
                continue
            expected.add((key, claim.key, relation))
    found = [(m.key, m.owner.key, m.relation.value) for m in snapshot.matches(host)]
    assert sorted(found) == sorted(expected)


# JSON as an API server can send it: integers within 64 bits.
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), ints, st.floats(allow_nan=False), st.text(max_size=20)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_any_service_entry_spec_gives_a_claim_not_a_crash(spec: Any) -> None:
    claim = claims.service_entry_claim({"metadata": {"name": "x", "namespace": "y"}, "spec": spec})
    assert all(isinstance(h, str) for h in claim.hosts)


@given(json_values)
def test_any_policy_document_parses_or_names_its_errors(document: Any) -> None:
    errors: list[str] = []
    try:
        policyfile.parse_policy(document)
    except policyfile.PolicyError as exc:
        errors = exc.errors or ["(a PolicyError with no errors)"]
    assert all(":" in line for line in errors)


REGISTRY = make_snapshot(
    make_service("reviews", "bookinfo"),
    make_service_entry("stripe", "team-a", ["api.stripe.com"]),
    make_service_entry("g", "team-c", ["*.googleapis.com"]),
)


def mutated_review(base: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """The review with the value at ``path`` replaced (or the path created)."""
    review_ = orjson.loads(orjson.dumps(base))
    node = review_
    for key in path[:-1]:
        child = node.get(key) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value
    return review_  # type: ignore[no-any-return]


PATHS = [
    ["request", "uid"], ["request", "operation"], ["request", "namespace"], ["request", "name"],
    ["request", "object"], ["request", "object", "spec"], ["request", "object", "spec", "hosts"],
    ["request", "object", "spec", "exportTo"], ["request", "object", "metadata"],
    ["request", "object", "metadata", "annotations"], ["request", "userInfo"], ["request", "userInfo", "groups"],
    ["request", "requestKind"], ["request", "dryRun"], ["request", "oldObject"], ["apiVersion"], ["request"],
]  # fmt: skip
reviews = st.builds(
    mutated_review,
    st.sampled_from(
        [
            make_review(make_service_entry("a", "team-b", ["api.stripe.com"])),
            make_review(
                make_service_entry("b", "team-b", ["*.googleapis.com"]), operation="UPDATE"
            ),
            make_review(None, operation="DELETE", old=make_service_entry("c", "team-b")),
        ]
    ),
    st.sampled_from(PATHS),
    json_values,
)


def call(path: str, body: bytes, *, runtime: Runtime | None = None) -> tuple[int, dict[str, Any]]:
    if runtime is None:
        runtime = Runtime(audit=AuditLog([]))
        runtime.set_policy(make_policy())
        runtime.set_snapshot(REGISTRY)
    app = create_app(runtime)
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", b"application/json")],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    return sent[0]["status"], orjson.loads(sent[1]["body"])


def assert_well_formed(status: int, answer: dict[str, Any], sent: dict[str, Any]) -> None:
    assert status in (200, 400)
    if status == 400:
        assert isinstance(answer["error"], str)
        return
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == sent["request"]["uid"]
    assert isinstance(response["allowed"], bool)
    if not response["allowed"]:
        assert response["status"]["code"] in (403, 500)
        assert response["status"]["message"]
    for warning in response.get("warnings", []):
        assert len(warning) <= 120


@given(reviews, st.sampled_from(["/validate", "/mutate"]))
def test_any_admission_review_shaped_input_gets_a_well_formed_answer(
    sent: dict[str, Any], path: str
) -> None:
    status, answer = call(path, orjson.dumps(sent))
    assert_well_formed(status, answer, sent)


@given(
    st.lists(st.one_of(names, ints, st.none()), min_size=1, max_size=6),
    st.sampled_from(["Enforce", "Warn", "Audit"]),
)
def test_an_invalid_host_is_never_allowed(hosts_: list[Any], mode: str) -> None:
    sent = make_review(make_service_entry("x", "team-b", hosts_))
    runtime = Runtime(audit=AuditLog([]))
    runtime.set_policy(make_policy(mode=mode))
    runtime.set_snapshot(REGISTRY)
    for path in ("/validate", "/mutate"):
        _, answer = call(path, orjson.dumps(sent), runtime=runtime)
        invalid = any(not isinstance(h, str) for h in hosts_) or any(
            _invalid(h) for h in hosts_ if isinstance(h, str)
        )
        if invalid:
            assert answer["response"]["allowed"] is False


def _invalid(host: str) -> bool:
    try:
        hosts.normalize(host)
    except hosts.InvalidHost:
        return True
    return False


FAULT_POINTS = [
    (app_module, "admission_record"),
    (app_module, "should_record"),
    (rules, "evaluate"),
    (claims, "service_entry_claim"),
    (review, "decide"),
    (review, "exemption_of"),
    (hosts, "normalize"),
]


@given(st.sampled_from(FAULT_POINTS), reviews)
def test_validate_never_allows_when_judging_fails(
    point: tuple[Any, str], sent: dict[str, Any]
) -> None:
    module, name = point
    original = getattr(module, name)
    called: list[bool] = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        called.append(True)
        raise RuntimeError("injected fault")

    runtime = Runtime(audit=AuditLog([]))
    runtime.set_policy(make_policy())
    runtime.set_snapshot(REGISTRY)
    setattr(module, name, broken)
    try:
        status, answer = call("/validate", orjson.dumps(sent), runtime=runtime)
    finally:
        setattr(module, name, original)
    assert_well_formed(status, answer, sent)
    if called:  # the fault was hit while judging: the answer must be a denial, code 500
        assert status == 200
        assert answer["response"]["allowed"] is False
        assert answer["response"]["status"]["code"] == 500


# --- the oldest owner: admission and the scan agree ---------------------------------------------

AGE_NAMESPACES = ["team-a", "team-b", "team-c"]
AGE_HOSTS = ["x.example.com", "y.example.com", "*.example.com", "x.team-a", "reviews"]
# Few timestamps, so that entries are often created in the same second (ties).
AGE_TIMES = ["2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", "2026-02-01T00:00:00Z"]
aged_entries = st.lists(
    st.tuples(
        st.sampled_from(AGE_NAMESPACES),
        st.lists(st.sampled_from(AGE_HOSTS), min_size=1, max_size=2, unique=True),
        st.sampled_from(AGE_TIMES),
        st.sampled_from([None, ["."], ["team-b"], ["*"]]),
    ),
    min_size=1,
    max_size=7,
)


@given(aged_entries, st.sampled_from(["Enforce", "Warn"]))
def test_admission_of_each_existing_entry_and_the_scan_name_the_same_violators(
    entries: list[tuple[str, list[str], str, list[str] | None]], mode: str
) -> None:
    """A cluster with duplicates of mixed ages (outages, the replica race): an UPDATE of each
    entry is denied exactly when the scan says the webhook would deny it, with the same
    findings, so the oldest owner is never locked out and the younger one always is."""
    objects: list[dict[str, Any]] = [make_service("reviews", "team-b")]
    for i, (namespace, entry_hosts, created, export_to) in enumerate(entries):
        objects.append(
            make_service_entry(
                f"se-{i}",
                namespace,
                entry_hosts,
                export_to=export_to,
                metadata={"creationTimestamp": created},
            )
        )
    snapshot = make_snapshot(*objects)
    chosen = make_policy(mode=mode)
    violations = scan_mod.scan(snapshot, chosen)
    denying = {(v.namespace, v.name) for v in scan_mod.denying(violations)}
    for obj in objects[1:]:
        meta = obj["metadata"]
        changed = copy.deepcopy(obj)
        changed["spec"]["ports"].append({"name": "http", "number": 80, "protocol": "HTTP"})
        req = parse_review(make_review(changed, operation="UPDATE", old=obj))
        verdict = review.validate(req, policy=chosen, snapshot=snapshot)
        key = (meta["namespace"], meta["name"])
        assert (not verdict.allowed) is (key in denying), (key, verdict.codes, denying)
        scanned = [
            (v.finding.code, v.finding.host, v.finding.owner)
            for v in violations
            if (v.namespace, v.name) == key
        ]
        admitted = [(f.code, f.host, f.owner) for f in verdict.findings]
        assert admitted == scanned
