"""Findings and their reason codes (pure): the table of what each code means, the value a
rule yields, and its one-line form for kubectl."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

from webhook.core.policy import Action, Rules


class Code(StrEnum):
    INVALID_HOST = "InvalidHost"
    INVALID_SPEC = "InvalidSpec"
    HOST_NOT_ALLOWED = "HostNotAllowed"
    HOST_DENIED = "HostDenied"
    WILDCARD_NOT_ALLOWED = "WildcardNotAllowed"
    WILDCARD_TOO_BROAD = "WildcardTooBroad"
    PARTIAL_WILDCARD = "PartialWildcard"
    RESERVED_CLUSTER_DOMAIN = "ReservedClusterDomain"
    CONFLICT_KUBERNETES_SERVICE = "ConflictKubernetesService"
    SHADOWS_KUBERNETES_SERVICE = "ShadowsKubernetesService"
    CONFLICT_SERVICE_ENTRY = "ConflictServiceEntry"
    DUPLICATE_HOST = "DuplicateHost"
    WILDCARD_OVERLAP = "WildcardOverlap"
    TARGET_DENIED = "TargetDenied"
    TARGET_TOO_BROAD = "TargetTooBroad"
    POLICY_UNAVAILABLE = "PolicyUnavailable"
    INTERNAL_ERROR = "InternalError"
    ROLLOUT_PROBE = "RolloutProbe"
    TOO_MANY_MATCHES = "TooManyMatches"


class Reason(NamedTuple):
    """What the rest of seguard knows of a reason code: its kubectl summary (``{ref}``: the
    owner, ``{key}``: the owner's name that matched; empty: the full message is shown), whether
    it denies in every mode and for every requester (the object is not valid, or cannot be
    judged at all: modes and exemptions soften policy, not validity), and the field of
    ``spec.conflicts`` that sets its action (for the conflicts with the registry)."""

    summary: str = ""
    always_deny: bool = False
    conflict: str = ""


# The table of reason codes: a new code is a member of Code and a row here (a test checks that
# every code has its row, and the README its line).
REASONS: Mapping[Code, Reason] = MappingProxyType(
    {
        Code.INVALID_HOST: Reason("is not a valid DNS name", always_deny=True),
        Code.INVALID_SPEC: Reason(always_deny=True),
        Code.HOST_NOT_ALLOWED: Reason("is outside the allowed domains"),
        Code.HOST_DENIED: Reason("is denied by the policy"),
        Code.WILDCARD_NOT_ALLOWED: Reason("is a wildcard, not allowed here"),
        Code.WILDCARD_TOO_BROAD: Reason("covers a whole public suffix"),
        Code.PARTIAL_WILDCARD: Reason("is a partial wildcard: it matches across labels"),
        Code.RESERVED_CLUSTER_DOMAIN: Reason(
            "is in the reserved cluster domain", conflict="reserved_cluster_domain"
        ),
        Code.CONFLICT_KUBERNETES_SERVICE: Reason(
            "collides with Service {ref}", conflict="kubernetes_service"
        ),
        Code.SHADOWS_KUBERNETES_SERVICE: Reason(
            "shadows Service {ref}", conflict="kubernetes_service_same_namespace"
        ),
        Code.CONFLICT_SERVICE_ENTRY: Reason(
            "is held by ServiceEntry {ref}", conflict="service_entry"
        ),
        Code.DUPLICATE_HOST: Reason(
            "duplicates ServiceEntry {ref}", conflict="service_entry_same_namespace"
        ),
        Code.WILDCARD_OVERLAP: Reason(
            "overlaps {key} of ServiceEntry {ref}", conflict="wildcard_overlap"
        ),
        Code.TARGET_DENIED: Reason("is a target the policy denies"),
        Code.TARGET_TOO_BROAD: Reason("is a range broader than the policy allows"),
        Code.POLICY_UNAVAILABLE: Reason(always_deny=True),
        Code.INTERNAL_ERROR: Reason(always_deny=True),
        Code.ROLLOUT_PROBE: Reason(always_deny=True),
        Code.TOO_MANY_MATCHES: Reason("overlaps too many registered names", always_deny=True),
    }
)


ALWAYS_DENY = frozenset(code for code, reason in REASONS.items() if reason.always_deny)


def conflict_action(code: Code, rules: Rules) -> Action:
    """The action the policy gives a conflict with the registry (``spec.conflicts``)."""
    action: Action = getattr(rules.conflicts, REASONS[code].conflict)
    return action


class OwnerRef(NamedTuple):
    kind: str
    namespace: str
    name: str
    host: str  # the registered name that matched
    export_to: str  # as written, or the mesh default, for messages

    def as_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "host": self.host,
            "exportTo": self.export_to,
        }


class Finding(NamedTuple):
    code: Code
    host: str
    action: Action
    message: str
    owner: OwnerRef | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "code": str(self.code),
            "host": self.host,
            "action": str(self.action),
            "message": self.message,
            "owner": self.owner.as_dict() if self.owner else None,
        }


def finding_of(
    code: Code, host: str, action: Action, message: str, owner: OwnerRef | None = None
) -> Finding:
    """A finding whose message ends with its reason code, as kubectl shows it."""
    return Finding(code, host, action, f"{message} [{code!s}]", owner)


def quoted(raw: object) -> str:
    """A value of the object as a message quotes it: a string in quotes, cut at 80 characters;
    anything else as "value"."""
    if isinstance(raw, str):
        text = raw if len(raw) <= 80 else raw[:77] + "..."
        return f'"{text}"'
    return "value"


def summary(finding: Finding) -> str:
    """A one-line form of a finding for kubectl's warnings (the API server's advice is 120
    characters or fewer each); the full message is in the audit record."""
    phrase = REASONS[finding.code].summary
    if not phrase or (finding.owner is None and "{" in phrase) or not finding.host:
        return finding.message
    owner = finding.owner
    text = phrase.format(
        ref=f"{owner.namespace}/{owner.name}" if owner else "", key=owner.host if owner else ""
    )
    return f'{finding.code!s}: "{finding.host}" {text}'
