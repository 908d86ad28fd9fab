"""Judge ServiceEntry manifests offline, as the API server would call the webhooks (pure).

Each ServiceEntry goes through ``mutate``; its patch is applied, and ``validate`` judges the
mutated object. A manifest whose namespace and name are already in the registry is judged as an
UPDATE of that object. Manifests are judged in order, and each one allowed joins the registry for
the ones after it, so two manifests in one change that claim the same host are caught too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonpatch

from webhook.core import claims
from webhook.core.admission import AdmissionRequest
from webhook.core.policy import Policy
from webhook.core.registry import RegistryBuilder
from webhook.core.review import Verdict, mutate, validate

CHECK_USER = "seguard-check"


@dataclass(frozen=True, slots=True)
class CheckResult:
    namespace: str
    name: str
    operation: str
    allowed: bool
    warnings: tuple[str, ...]
    reasons: tuple[str, ...]
    patch: list[dict[str, Any]]
    messages: tuple[str, ...]  # every finding's full message
    mutated: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "allowed": self.allowed,
            "warnings": list(self.warnings),
            "reasons": list(self.reasons),
            "messages": list(self.messages),
            "patch": self.patch,
        }


def _request(
    obj: Mapping[str, Any], *, operation: str, namespace: str, name: str
) -> AdmissionRequest:
    api_version = str(obj.get("apiVersion", ""))
    version = api_version.split("/", 1)[1] if "/" in api_version else api_version
    meta = obj.get("metadata")
    generate_name = meta.get("generateName", "") if isinstance(meta, dict) else ""
    return AdmissionRequest(
        uid=f"check-{namespace}-{name}",
        operation=operation,
        namespace=namespace,
        name=name,
        generate_name=generate_name if isinstance(generate_name, str) else "",
        user=CHECK_USER,
        groups=(),
        dry_run=True,
        group=claims.ISTIO_GROUP,
        kind=claims.SERVICE_ENTRY,
        version=version,
        object=obj,
        old_object=None,
    )


def check_objects(
    objects: Iterable[Mapping[str, Any]],
    *,
    policy: Policy,
    builder: RegistryBuilder,
    progress: Callable[[int], None] | None = None,
) -> list[CheckResult]:
    """Judge every ServiceEntry in ``objects``; other kinds are skipped. Updates ``builder``.
    ``progress`` is told how many have been judged, after each one."""
    results: list[CheckResult] = []
    snapshot = builder.view()
    for original in objects:
        if claims.kind_of(original) != claims.SERVICE_ENTRY:
            continue
        namespace = claims.object_namespace(original)
        name = claims.object_name(original)
        obj = copy.deepcopy(dict(original))
        meta = obj.get("metadata")
        obj["metadata"] = {**(meta if isinstance(meta, dict) else {}), "namespace": namespace}
        existing = snapshot.get(claims.SERVICE_ENTRY, namespace, name) if name else None
        operation = "UPDATE" if existing is not None else "CREATE"
        if existing is not None and existing.created_s is not None:
            # The API server keeps an object's creationTimestamp through every update: the
            # manifest is as old as the object it updates (the oldest owner of a host wins).
            obj["metadata"]["creationTimestamp"] = existing.created
        req = _request(obj, operation=operation, namespace=namespace, name=name)
        mutation = mutate(req, policy=policy, snapshot=snapshot)
        verdicts: list[Verdict] = [mutation]
        mutated: Mapping[str, Any] = obj
        if mutation.allowed:
            if mutation.patch:
                mutated = jsonpatch.apply_patch(obj, list(mutation.patch))
            req = _request(mutated, operation=operation, namespace=namespace, name=name)
            verdicts.append(validate(req, policy=policy, snapshot=snapshot))
        allowed = all(v.allowed for v in verdicts)
        findings = [f for v in verdicts for f in v.findings]
        results.append(
            CheckResult(
                namespace=namespace,
                name=name or req.display_name,
                operation=operation,
                allowed=allowed,
                warnings=tuple(w for v in verdicts for w in v.warnings),
                reasons=tuple(dict.fromkeys(f.code.value for f in findings)),
                patch=[dict(op) for op in mutation.patch],
                messages=tuple(f.message for f in findings),
                mutated=mutated,
            )
        )
        if allowed and name:
            builder.apply(mutated, source="check")
            snapshot = builder.view()
        if progress is not None:
            progress(len(results))
    return results
