"""Plain factory functions with keyword overrides for the objects tests need."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from webhook.core.admission import AdmissionRequest, parse_review
from webhook.core.policy import Policy
from webhook.core.policyfile import default_policy, parse_policy
from webhook.core.registry import RegistryBuilder, Snapshot


def make_service(
    name: str = "reviews", namespace: str = "bookinfo", **metadata: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, **metadata},
        "spec": {"ports": [{"name": "http", "port": 9080}]},
    }


def make_namespace(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def make_service_entry(
    name: str = "stripe",
    namespace: str = "team-a",
    hosts: Iterable[Any] = ("api.stripe.com",),
    *,
    api_version: str = "networking.istio.io/v1",
    export_to: list[str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    metadata: Mapping[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"hosts": list(hosts)}
    if ports is None:
        ports = [{"name": "tls", "number": 443, "protocol": "TLS"}]
    if ports:
        body["ports"] = ports
    if export_to is not None:
        body["exportTo"] = export_to
    body.update(spec)
    meta: dict[str, Any] = {"namespace": namespace, **(metadata or {})}
    if name:
        meta["name"] = name
    return {
        "apiVersion": api_version,
        "kind": "ServiceEntry",
        "metadata": meta,
        "spec": body,
    }


def make_review(
    obj: Mapping[str, Any] | None = None,
    *,
    operation: str = "CREATE",
    old: Mapping[str, Any] | None = None,
    uid: str = "6f1c2d3e-0000-4000-8000-000000000001",
    user: str = "alice",
    groups: Iterable[str] = ("system:authenticated",),
    dry_run: bool = False,
    version: str = "v1",
    kind: str = "ServiceEntry",
    group: str = "networking.istio.io",
) -> dict[str, Any]:
    """An admission.k8s.io/v1 AdmissionReview request for ``obj`` (or ``old`` on DELETE)."""
    subject = obj if obj is not None else old
    meta = (subject or {}).get("metadata", {})
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": group, "version": "v1", "kind": kind},
        "resource": {"group": group, "version": "v1", "resource": "serviceentries"},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "namespace": meta.get("namespace", "default"),
        "operation": operation,
        "userInfo": {"username": user, "groups": list(groups)},
        "object": copy.deepcopy(dict(obj)) if obj is not None else None,
        "oldObject": copy.deepcopy(dict(old)) if old is not None else None,
        "dryRun": dry_run,
    }
    if meta.get("name"):
        request["name"] = meta["name"]
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def make_request(obj: Mapping[str, Any] | None = None, **overrides: Any) -> AdmissionRequest:
    return parse_review(make_review(obj, **overrides))


def build_snapshot(
    objects: Iterable[tuple[str, Mapping[str, Any]]], *, cluster_domain: str = "cluster.local"
) -> Snapshot:
    """Index (source, object) pairs at once, as a relist does."""
    return RegistryBuilder.bulk(objects, cluster_domain=cluster_domain).snapshot()


def empty_snapshot(cluster_domain: str = "cluster.local") -> Snapshot:
    return RegistryBuilder(cluster_domain=cluster_domain).snapshot()


def make_snapshot(*objects: Mapping[str, Any], cluster_domain: str = "cluster.local") -> Snapshot:
    return build_snapshot((("files", obj) for obj in objects), cluster_domain=cluster_domain)


def make_policy(**spec: Any) -> Policy:
    """The built-in policy with top-level spec fields replaced (None removes one)."""
    base = default_policy()
    if not spec:
        return base
    import yaml

    from webhook.core.policyfile import DEFAULT_POLICY_YAML

    document = yaml.safe_load(DEFAULT_POLICY_YAML)
    for key, value in spec.items():
        if value is None:
            document["spec"].pop(key, None)
        else:
            document["spec"][key] = value
    return parse_policy(document)
