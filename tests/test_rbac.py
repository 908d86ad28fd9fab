"""The RBAC in deploy/ is exactly what the code uses: every request the webhook makes is allowed
by it, and every permission it grants is used by some request.

Each part of the webhook that talks to the API server (the watch source, the safe rollout, the
Warning events, the scan's Lease) runs against the fake API server, which logs every request.
Each logged request is turned into (verb, API group, resource, namespace, name) and checked
against the rendered Roles and ClusterRoles as the RBAC authorizer would.
"""

from __future__ import annotations

import ast
import base64
import time
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlparse

from tests.factories import (
    make_namespace,
    make_request,
    make_service,
    make_service_entry,
    make_snapshot,
)
from tests.fakeapi import Cluster, FakeApiServer
from tests.live import running
from tests.test_deploy import render
from webhook import kube
from webhook.audit import AuditLog
from webhook.core.findings import Code, finding_of
from webhook.core.policy import Action
from webhook.core.policyfile import default_policy
from webhook.core.review import Verdict
from webhook.core.scan import scan
from webhook.events import EventRecorder, denied_messages, event_of
from webhook.policysource import PolicyResource
from webhook.reporter import PolicyReporter
from webhook.rollout import RolloutManager
from webhook.runtime import Runtime
from webhook.scanner import LeaseElector
from webhook.sources import kubernetes as k8s

SERVICE_ACCOUNT = ("seguard", "seguard-system")


class Access(NamedTuple):
    verb: str
    group: str
    resource: str
    namespace: str  # "" at the cluster scope
    name: str  # "" for a collection


def access_of(method: str, raw: str) -> Access:
    url = urlparse(raw)
    query = parse_qs(url.query)
    parts = url.path.strip("/").split("/")
    if parts[0] == "api":  # /api/v1/...
        group, rest = "", parts[2:]
    else:  # /apis/GROUP/VERSION/...
        group, rest = parts[1], parts[3:]
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")  # a subresource: pods/log
    name = rest[1] if len(rest) > 1 else ""
    if method == "GET":
        verb = "watch" if query.get("watch") == ["true"] else ("get" if name else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
    return Access(verb, group, resource, namespace, name)


def rules_for_our_account(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(namespace or "" for cluster-wide, rule) for every rule bound to our service account."""
    roles = {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
    }
    found: list[tuple[str, dict[str, Any]]] = []
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        subjects = {
            (s.get("name"), s.get("namespace"))
            for s in binding["subjects"]
            if s["kind"] == "ServiceAccount"
        }
        if SERVICE_ACCOUNT not in subjects:
            continue
        ref = binding["roleRef"]
        scope = binding["metadata"].get("namespace", "") if binding["kind"] == "RoleBinding" else ""
        role = roles[
            (
                ref["kind"],
                binding["metadata"].get("namespace", "") if ref["kind"] == "Role" else "",
                ref["name"],
            )
        ]
        found.extend((scope, rule) for rule in role["rules"])
    return found


def allows(scope: str, rule: dict[str, Any], access: Access) -> bool:
    return (
        (scope in ("", access.namespace))
        and access.group in rule.get("apiGroups", [])
        and access.resource in rule.get("resources", [])
        and access.verb in rule.get("verbs", [])
        and (not rule.get("resourceNames") or access.name in rule["resourceNames"])
    )


def exercise_every_client(tmp_path: Path) -> list[Access]:
    cluster = Cluster()
    cluster.put(make_namespace("team-a"))
    cluster.put(make_service("reviews", "bookinfo"))
    cluster.put(make_service_entry("stripe", "team-a", ["api.stripe.com"]))
    with running(tmp_path / "webhook") as live:
        bundle = base64.b64encode(b"stale").decode()
        hook = {
            "clientConfig": {"url": f"https://127.0.0.1:{live.port}/validate", "caBundle": bundle},
            "failurePolicy": "Ignore",
        }
        cluster.webhooks = {
            ("mutating", "seguard"): {
                "metadata": {"name": "seguard"},
                "webhooks": [{**hook, "name": "mutate.seguard.io"}],
            },
            ("validating", "seguard"): {
                "metadata": {"name": "seguard"},
                "webhooks": [{**hook, "name": "validate.seguard.io"}],
            },
        }
        fake = FakeApiServer(cluster)
        fake.start()
        try:
            transport = kube.connect(fake.kubeconfig(tmp_path / "kubeconfig"))
            # The registry: list and watch each kind.
            source = k8s.KubernetesSource(
                transport, cluster_domain="cluster.local", on_snapshot=lambda _: None
            )
            source.start()
            deadline = time.monotonic() + 20
            while (
                not (source.synced and cluster.count("ServiceEntry", "watch"))
                and time.monotonic() < deadline
            ):
                time.sleep(0.02)
            source.stop()
            # The safe rollout: get, patch, and the dry-run probe.
            RolloutManager(
                transport,
                name="seguard",
                ca_file=live.cert_dir / "ca.crt",
                probe_namespace="default",
            ).step()
            # A Warning event for a denial.
            req = make_request(make_service_entry("copy", "team-b", ["api.stripe.com"]))
            verdict = Verdict(
                allowed=False,
                result="denied",
                findings=(finding_of(Code.HOST_DENIED, "x", Action.DENY, "m"),),
                outcomes=("denied",),
            )
            for code, messages in denied_messages(verdict).items():
                EventRecorder(transport).send(event_of(req, code, messages))
            # The scan's Lease: create it, then renew it.
            elector = LeaseElector(transport, namespace="seguard-system")
            elector.step()
            elector.step()
            # The policy resource: read it, report, and (holding the Lease) write conditions.
            cluster.put(
                {"apiVersion": "seguard.io/v1alpha1", "kind": "ServiceEntryPolicy",
                 "metadata": {"name": "default"}, "spec": {"mode": "Audit"}}
            )  # fmt: skip
            policies = PolicyResource(transport, Runtime(audit=AuditLog([])), leading=lambda: True)
            policies.step()
            policies.step()
            # The scan's PolicyReports: created, replaced, removed when clean.
            held = make_service_entry("early", "team-a", ["api.stripe.com"], metadata={"creationTimestamp": "2026-01-01T00:00:00Z"})  # fmt: skip
            copy = make_service_entry("late", "team-b", ["api.stripe.com"], metadata={"creationTimestamp": "2026-02-01T00:00:00Z"})  # fmt: skip
            wide = make_service_entry("wide", "team-b", ["*.org"], metadata={"creationTimestamp": "2026-03-01T00:00:00Z"})  # fmt: skip
            reporter = PolicyReporter(transport)
            for objects in ((held, copy), (held, copy, wide), (held,)):
                reporter.publish(scan(make_snapshot(*objects), default_policy()))
            source.join()
        finally:
            fake.stop()
    return [access_of(method, path) for method, path in cluster.log]


def test_every_request_is_allowed_and_every_permission_is_used(tmp_path: Path) -> None:
    accesses = set(exercise_every_client(tmp_path))
    granted = rules_for_our_account(render("base", tmp_path / "render"))
    refused = [a for a in accesses if not any(allows(scope, rule, a) for scope, rule in granted)]
    assert refused == [], f"the code makes requests its RBAC does not allow: {refused}"
    for scope, rule in granted:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    used = [
                        a for a in accesses
                        if (a.verb, a.group, a.resource) == (verb, group, resource)
                        and (scope in ("", a.namespace))
                        and (not rule.get("resourceNames") or a.name in rule["resourceNames"])
                    ]  # fmt: skip
                    assert used, (
                        f"RBAC grants {verb} on {group or 'core'}/{resource} ({scope or 'cluster'}), which no code uses"
                    )


def test_no_regular_expression_is_built_from_input() -> None:
    """Every pattern the webhook compiles is a literal in its source: none comes from a user."""
    package = Path(__file__).resolve().parent.parent / "webhook"
    functions = {"compile", "match", "search", "fullmatch", "sub", "findall", "split", "finditer"}
    calls = 0
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "re"
                and node.func.attr in functions
            ):
                calls += 1
                pattern = node.args[0] if node.args else None
                assert isinstance(pattern, ast.Constant) and isinstance(
                    pattern.value, str | bytes
                ), f"{path.name}:{node.lineno}: re.{node.func.attr} with a non-literal pattern"
    assert calls  # the walk found the patterns there are
