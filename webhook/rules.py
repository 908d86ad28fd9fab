"""One small function per finding, and ``evaluate`` to run them all (pure).

Every function takes one normalised host and the ``Context`` of the object being judged, and
yields ``Finding`` values. A finding carries a stable reason code, the action the policy gives it
(Deny, Warn; Allow means the rule is off and nothing is yielded), and a message that names the
other owner and the way out.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from typing import NamedTuple

from webhook import hosts
from webhook.claims import SERVICE, SERVICE_ENTRY, Claim
from webhook.policy import Action, Policy, Rules
from webhook.registry import Match, Relation, Snapshot, service_fqdn


class Code(StrEnum):
    INVALID_HOST = "InvalidHost"
    INVALID_SPEC = "InvalidSpec"
    HOST_NOT_ALLOWED = "HostNotAllowed"
    HOST_DENIED = "HostDenied"
    WILDCARD_NOT_ALLOWED = "WildcardNotAllowed"
    WILDCARD_TOO_BROAD = "WildcardTooBroad"
    RESERVED_CLUSTER_DOMAIN = "ReservedClusterDomain"
    CONFLICT_KUBERNETES_SERVICE = "ConflictKubernetesService"
    SHADOWS_KUBERNETES_SERVICE = "ShadowsKubernetesService"
    CONFLICT_SERVICE_ENTRY = "ConflictServiceEntry"
    DUPLICATE_HOST = "DuplicateHost"
    WILDCARD_OVERLAP = "WildcardOverlap"
    POLICY_UNAVAILABLE = "PolicyUnavailable"
    INTERNAL_ERROR = "InternalError"
    ROLLOUT_PROBE = "RolloutProbe"
    TOO_MANY_MATCHES = "TooManyMatches"


# Codes that deny in every mode and for every requester: the object is not valid, or we cannot
# judge it at all. Modes and exemptions soften policy, not validity.
ALWAYS_DENY = frozenset(
    {
        Code.INVALID_HOST,
        Code.INVALID_SPEC,
        Code.POLICY_UNAVAILABLE,
        Code.INTERNAL_ERROR,
        Code.ROLLOUT_PROBE,
        Code.TOO_MANY_MATCHES,
    }
)
# How many owners one host names per code. The decision never depends on this bound: it only
# keeps a wildcard that covers thousands of names from producing thousands of findings.
MAX_OWNERS_PER_CODE = 3
# How many registered names one request may examine. A host that overlaps more than this is far
# too broad to judge name by name (and to allow); without the bound, 256 hosts like
# *.svc.cluster.local against 100k Services would take the API server's whole 5 s. Each
# examined name costs about 2 µs, so the bound keeps any request under about 50 ms of it.
MAX_MATCHES_PER_REQUEST = 20_000


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
            "code": self.code.value,
            "host": self.host,
            "action": self.action.value,
            "message": self.message,
            "owner": self.owner.as_dict() if self.owner else None,
        }


class Context(NamedTuple):
    """The object being judged, with everything the rules read."""

    namespace: str
    name: str  # "" for a CREATE with generateName
    rules: Rules
    snapshot: Snapshot
    visibility: frozenset[str]  # namespaces that can see it; "*" in it means all
    # Owners to leave out besides the object itself: the scan leaves out ServiceEntries younger
    # than the one it judges, because the oldest owner of a host is the rightful one.
    skip: Callable[[Claim], bool] | None = None
    # Registered names this request may still examine (one shared, mutable count).
    budget: list[int] | None = None
    # The meshDefaultExportTo of another namespace's entries, when namespace rules set their
    # own; None when every namespace has the global one (then ``rules`` holds it).
    export_default_of: Callable[[str], tuple[str, ...]] | None = None

    @property
    def cluster_domain(self) -> str:
        return self.snapshot.cluster_domain

    def owner_export_default(self, namespace: str) -> tuple[str, ...]:
        lookup = self.export_default_of
        return self.rules.mesh_default_export_to if lookup is None else lookup(namespace)


def context_for(
    claim: Claim,
    *,
    name: str,
    rules: Rules,
    snapshot: Snapshot,
    skip: Callable[[Claim], bool] | None = None,
    policy: Policy | None = None,
) -> Context:
    """The context in which ``claim`` (in its own namespace) is judged. ``policy`` is needed
    only where namespace rules set their own meshDefaultExportTo (for the owners' defaults)."""
    lookup: Callable[[str], tuple[str, ...]] | None = None
    if policy is not None and policy.export_defaults_vary:

        def lookup(namespace: str) -> tuple[str, ...]:
            return policy.export_default_of(namespace, snapshot.labels_of(namespace))

    return Context(
        namespace=claim.namespace,
        name=name,
        rules=rules,
        snapshot=snapshot,
        visibility=visibility(claim.export_to, claim.namespace, rules.mesh_default_export_to),
        skip=skip,
        budget=[MAX_MATCHES_PER_REQUEST],
        export_default_of=lookup,
    )


def finding_of(
    code: Code, host: str, action: Action, message: str, owner: OwnerRef | None = None
) -> Finding:
    """A finding whose message ends with its reason code, as kubectl shows it."""
    return Finding(code, host, action, f"{message} [{code.value}]", owner)


# --- visibility ----------------------------------------------------------------------------


EVERYWHERE = frozenset({"*"})


def visibility(
    export_to: Iterable[str] | None, namespace: str, default: Iterable[str]
) -> frozenset[str]:
    """The namespaces that can see an entry. ``*`` (all) is kept as a member; as in Istio, ``*``
    outranks everything else, and ``~`` (with no ``*``) hides the entry from every namespace."""
    items = tuple(export_to) if export_to else tuple(default)
    if "*" in items:
        return EVERYWHERE
    if "~" in items:
        return frozenset()
    return frozenset(namespace if item == "." else item for item in items)


def contested(a: frozenset[str], a_namespace: str, b: frozenset[str], b_namespace: str) -> bool:
    """True when some namespace sees both entries and one would silently shadow the other there.

    Istio orders the entries a namespace sees (PushContext.servicesExportedToNamespace): its own
    private ones first (exportTo "." or its own name), then those exported to it by name, then
    the public ones, oldest first; the first entry of a hostname wins. So every namespace that
    sees both is contested, except the namespace of an entry that is private to it: there the
    local entry wins, by design, which is the way out the messages suggest (exportTo: ["."]). A
    public entry is not protected at home: another namespace's entry exported to that namespace
    by name comes before it.
    """
    exempt = {
        ns for seen, ns in ((a, a_namespace), (b, b_namespace)) if "*" not in seen and ns in seen
    }
    if "*" in a and "*" in b:
        return True
    if "*" in a:
        return not b <= exempt
    if "*" in b:
        return not a <= exempt
    return not (a & b) <= exempt


def render_export_to(export_to: Iterable[str] | None, default: Iterable[str]) -> str:
    return ",".join(tuple(export_to) if export_to else tuple(default))


# --- the rules -------------------------------------------------------------------------------


def host_denied(host: str, ctx: Context) -> Iterator[Finding]:
    """A denied pattern that matches the host, or that a wildcard host would reach into."""
    for pattern in ctx.rules.hosts.denied:
        if hosts.covers(pattern, host):
            what = f'host "{host}" matches "{pattern}"'
        elif hosts.covers(host, pattern):
            what = f'wildcard host "{host}" covers "{pattern}"'
        else:
            continue
        yield finding_of(
            Code.HOST_DENIED,
            host,
            Action.DENY,
            f"{what}, which the ServiceEntryPolicy denies; remove it, or ask the cluster admin",
        )
        return


def host_not_allowed(host: str, ctx: Context) -> Iterator[Finding]:
    allowed = ctx.rules.hosts.allowed
    # Inside the cluster domain the Kubernetes rules govern, not the allowed list; so they do for
    # the short names of an existing Service (name.ns, name.ns.svc, or name in its namespace).
    if not allowed or hosts.is_under(host, ctx.cluster_domain) or _names_a_service(host, ctx):
        return
    if any(hosts.covers(pattern, host) for pattern in allowed):
        return
    shown = ", ".join(allowed[:4]) + (", ..." if len(allowed) > 4 else "")
    yield finding_of(
        Code.HOST_NOT_ALLOWED,
        host,
        Action.DENY,
        f'host "{host}" is outside the allowed domains ({shown}) for namespace {ctx.namespace}; '
        "ask the cluster admin to allow it in the ServiceEntryPolicy",
    )


def _names_a_service(host: str, ctx: Context) -> bool:
    snapshot = ctx.snapshot
    if "." not in host:
        return bool(snapshot.services_named(ctx.namespace, host))
    return snapshot.service_of_alias(host) is not None


def wildcard_not_allowed(host: str, ctx: Context) -> Iterator[Finding]:
    action = ctx.rules.hosts.wildcards
    if action is Action.ALLOW or not hosts.is_wildcard(host):
        return
    yield finding_of(
        Code.WILDCARD_NOT_ALLOWED,
        host,
        action,
        f'wildcard host "{host}" is not allowed in namespace {ctx.namespace}; list the exact hosts',
    )


def wildcard_too_broad(host: str, ctx: Context) -> Iterator[Finding]:
    action = ctx.rules.hosts.public_suffix_wildcards
    if action is Action.ALLOW:
        return
    suffix = hosts.public_suffix_of_wildcard(host)
    if suffix is None:
        return
    yield finding_of(
        Code.WILDCARD_TOO_BROAD,
        host,
        action,
        f'wildcard host "{host}" sits at the public suffix "{suffix}" and would open egress to '
        "every site under it; list exact hosts, or a wildcard under a domain you own",
    )


def reserved_cluster_domain(host: str, ctx: Context) -> Iterator[Finding]:
    action = ctx.rules.conflicts.reserved_cluster_domain
    if action is Action.ALLOW:
        return
    domain = ctx.cluster_domain
    zone = "svc." + domain
    if hosts.is_wildcard(host):
        reserved = hosts.covers(host, "x." + zone) or hosts.is_under(host, zone)
        # A wildcard inside the namespace's own zone that covers a Service the namespace owns
        # matches that Service: the Service rules (ShadowsKubernetesService) govern it.
        if reserved and _covers_an_own_service(host, ctx, f"{ctx.namespace}.{zone}"):
            return
    else:
        reserved = host in (domain, zone) or host.endswith("." + zone)
        if reserved and any(
            owner.kind == SERVICE and owner.namespace == ctx.namespace and host in owner.hosts
            for owner in ctx.snapshot.owners(host)
        ):
            return
    if reserved:
        yield finding_of(
            Code.RESERVED_CLUSTER_DOMAIN,
            host,
            action,
            f'host "{host}" is in the reserved domain {zone} and names no Service of namespace '
            f"{ctx.namespace}; create the Service, or use a name outside {domain}",
        )


def _covers_an_own_service(host: str, ctx: Context, own_zone: str) -> bool:
    if not hosts.is_under(host, own_zone):
        return False
    domain = ctx.cluster_domain
    return any(
        owner.kind == SERVICE
        and owner.namespace == ctx.namespace
        and key == service_fqdn(owner, domain)
        for key, owner in ctx.snapshot.names_under(hosts.base_name(host))
    )


def kubernetes_service(host: str, ctx: Context, match: Match) -> Finding | None:
    """A Service's name, alias or a wildcard over it: Conflict elsewhere, Shadows at home."""
    owner = match.owner
    fqdn = owner.hosts[0]
    if match.relation is Relation.COVERS:
        what = f'host "{host}" covers "{match.key}", the name of Service {owner.ref}'
    elif match.is_alias:
        what = f'host "{host}" is an alias of Service {owner.ref} ({fqdn})'
    else:
        what = f'host "{host}" is the name of Service {owner.ref}'
    ref = OwnerRef(SERVICE, owner.namespace, owner.name, match.key, "*")
    if owner.namespace == ctx.namespace:
        action = ctx.rules.conflicts.kubernetes_service_same_namespace
        if action is Action.ALLOW:
            return None
        return finding_of(
            Code.SHADOWS_KUBERNETES_SERVICE,
            host,
            action,
            f"{what} in this namespace, and Istio would merge their endpoints; "
            "use the Service itself, or pick another host",
            ref,
        )
    action = ctx.rules.conflicts.kubernetes_service
    if action is Action.ALLOW:
        return None
    return finding_of(
        Code.CONFLICT_KUBERNETES_SERVICE,
        host,
        action,
        f"{what} in another namespace, and would take over its traffic; pick another host",
        ref,
    )


def service_entry(host: str, ctx: Context, match: Match) -> Finding | None:
    """Another ServiceEntry in this namespace, or in another one where some namespace sees both
    (see ``contested``)."""
    owner = match.owner
    same = owner.namespace == ctx.namespace
    default = (
        ctx.rules.mesh_default_export_to if same else ctx.owner_export_default(owner.namespace)
    )
    if not same and not contested(
        ctx.visibility,
        ctx.namespace,
        visibility(owner.export_to, owner.namespace, default),
        owner.namespace,
    ):
        return None
    export_to = render_export_to(owner.export_to, default)
    ref = OwnerRef(SERVICE_ENTRY, owner.namespace, owner.name, match.key, export_to)
    if match.relation is not Relation.EQUAL:
        action = ctx.rules.conflicts.wildcard_overlap
        if action is Action.ALLOW:
            return None
        return finding_of(
            Code.WILDCARD_OVERLAP,
            host,
            action,
            f'host "{host}" overlaps "{match.key}" of ServiceEntry {owner.ref} '
            f"(exportTo: {export_to}); use hosts that do not overlap, or ask its owners",
            ref,
        )
    if same:
        action = ctx.rules.conflicts.service_entry_same_namespace
        if action is Action.ALLOW:
            return None
        return finding_of(
            Code.DUPLICATE_HOST,
            host,
            action,
            f'host "{host}" is already registered by ServiceEntry {owner.ref} in this namespace, '
            f"and Istio would merge the two; add your ports or endpoints to {owner.name} instead",
            ref,
        )
    action = ctx.rules.conflicts.service_entry
    if action is Action.ALLOW:
        return None
    # exportTo: ["."] always ends the contest: only the two owners' namespaces would see both.
    return finding_of(
        Code.CONFLICT_SERVICE_ENTRY,
        host,
        action,
        f'host "{host}" is already registered by ServiceEntry {owner.ref} '
        f'(exportTo: {export_to}); ask its owners, or use exportTo: ["."]',
        ref,
    )


def short_name_service(host: str, ctx: Context) -> Iterator[Finding]:
    """A single-label host is an alias of the Service of that name in the same namespace."""
    if "." in host:
        return
    for owner in ctx.snapshot.services_named(ctx.namespace, host):
        match = Match(host, owner, Relation.EQUAL)
        finding = kubernetes_service(host, ctx, match)
        if finding is not None:
            yield finding


def registry_conflicts(host: str, ctx: Context) -> Iterator[Finding]:
    """Every owner in the registry that the host collides with, at most a few per code."""
    matches = ctx.snapshot.matches(host)
    first = next(matches, None)
    if first is None:  # the common case, a free host: nothing more to look at
        return
    conflicts = ctx.rules.conflicts
    if all(
        action is Action.ALLOW
        for action in (
            conflicts.kubernetes_service,
            conflicts.kubernetes_service_same_namespace,
            conflicts.service_entry,
            conflicts.service_entry_same_namespace,
            conflicts.wildcard_overlap,
        )
    ):
        return
    shown: dict[Code, int] = {}
    seen: set[tuple[Code, tuple[str, str, str]]] = set()
    budget = ctx.budget if ctx.budget is not None else [MAX_MATCHES_PER_REQUEST]
    for match in itertools.chain((first,), matches):
        budget[0] -= 1
        if budget[0] < 0:
            yield finding_of(
                Code.TOO_MANY_MATCHES,
                host,
                Action.DENY,
                f'host "{host}" overlaps more than {MAX_MATCHES_PER_REQUEST} registered names '
                "(with the other hosts of this ServiceEntry); use narrower hosts",
            )
            return
        owner = match.owner
        if (
            owner.kind == SERVICE_ENTRY
            and owner.namespace == ctx.namespace
            and owner.name == ctx.name
        ):
            continue  # the object itself (UPDATE), never its own conflict
        if ctx.skip is not None and ctx.skip(owner):
            continue
        judge: Callable[[str, Context, Match], Finding | None] = (
            kubernetes_service if owner.kind == SERVICE else service_entry
        )
        finding = judge(host, ctx, match)
        if finding is None or (finding.code, owner.key) in seen:
            continue
        seen.add((finding.code, owner.key))
        count = shown.get(finding.code, 0)
        shown[finding.code] = count + 1
        if count < MAX_OWNERS_PER_CODE:
            yield finding
    for code, count in shown.items():
        if count > MAX_OWNERS_PER_CODE:
            extra = count - MAX_OWNERS_PER_CODE
            action = _action_for(code, ctx.rules)
            yield finding_of(
                code,
                host,
                action,
                f'host "{host}" also collides with {extra} more owner(s) like the ones above',
            )


def _action_for(code: Code, rules: Rules) -> Action:
    c = rules.conflicts
    return {
        Code.CONFLICT_KUBERNETES_SERVICE: c.kubernetes_service,
        Code.SHADOWS_KUBERNETES_SERVICE: c.kubernetes_service_same_namespace,
        Code.CONFLICT_SERVICE_ENTRY: c.service_entry,
        Code.DUPLICATE_HOST: c.service_entry_same_namespace,
        Code.WILDCARD_OVERLAP: c.wildcard_overlap,
    }.get(code, Action.DENY)


_SUMMARIES = {
    Code.INVALID_HOST: "is not a valid DNS name",
    Code.HOST_NOT_ALLOWED: "is outside the allowed domains",
    Code.HOST_DENIED: "is denied by the policy",
    Code.WILDCARD_NOT_ALLOWED: "is a wildcard, not allowed here",
    Code.WILDCARD_TOO_BROAD: "covers a whole public suffix",
    Code.RESERVED_CLUSTER_DOMAIN: "is in the reserved cluster domain",
    Code.CONFLICT_KUBERNETES_SERVICE: "collides with Service {ref}",
    Code.SHADOWS_KUBERNETES_SERVICE: "shadows Service {ref}",
    Code.CONFLICT_SERVICE_ENTRY: "is held by ServiceEntry {ref}",
    Code.DUPLICATE_HOST: "duplicates ServiceEntry {ref}",
    Code.WILDCARD_OVERLAP: "overlaps {key} of ServiceEntry {ref}",
    Code.TOO_MANY_MATCHES: "overlaps too many registered names",
}


def summary(finding: Finding) -> str:
    """A one-line form of a finding for kubectl's warnings (the API server's advice is 120
    characters or fewer each); the full message is in the audit record."""
    phrase = _SUMMARIES.get(finding.code)
    if phrase is None or (finding.owner is None and "{" in phrase) or not finding.host:
        return finding.message
    owner = finding.owner
    text = phrase.format(
        ref=f"{owner.namespace}/{owner.name}" if owner else "", key=owner.host if owner else ""
    )
    return f'{finding.code.value}: "{finding.host}" {text}'


def invalid_findings(claim: Claim) -> list[Finding]:
    """Findings for an object whose shape or hosts are not valid."""
    findings = [
        finding_of(Code.INVALID_SPEC, "", Action.DENY, f"{problem}; fix the ServiceEntry")
        for problem in claim.problems
    ]
    for index, raw, reason in claim.invalid:
        shown = raw if isinstance(raw, str) else repr(raw)
        findings.append(
            finding_of(
                Code.INVALID_HOST,
                shown[:253],
                Action.DENY,
                f"spec.hosts[{index}] {_quote(raw)} {reason}; use a DNS name such as "
                'api.example.com or a wildcard such as "*.example.com"',
            )
        )
    return findings


def _quote(raw: object) -> str:
    if isinstance(raw, str):
        text = raw if len(raw) <= 80 else raw[:77] + "..."
        return f'"{text}"'
    return "value"


def evaluate(claim: Claim, ctx: Context) -> list[Finding]:
    """All findings for an object: validity first, then each host through every rule.

    Each rule checks for itself whether it applies; the tests below only skip calling a rule
    that cannot apply to this host, which keeps a clean request to a few microseconds.
    """
    findings = invalid_findings(claim) if claim.problems or claim.invalid else []
    if claim.problems:
        return findings
    host_rules = ctx.rules.hosts
    domain = ctx.cluster_domain
    if ctx.budget is None:
        ctx = ctx._replace(budget=[MAX_MATCHES_PER_REQUEST])
    for host in claim.hosts:
        wildcard = host.startswith(hosts.WILDCARD_PREFIX)
        if host_rules.denied:
            findings.extend(host_denied(host, ctx))
        if host_rules.allowed:
            findings.extend(host_not_allowed(host, ctx))
        if wildcard:
            findings.extend(wildcard_not_allowed(host, ctx))
            findings.extend(wildcard_too_broad(host, ctx))
        if wildcard or host.endswith(domain):
            findings.extend(reserved_cluster_domain(host, ctx))
        if "." not in host:
            findings.extend(short_name_service(host, ctx))
        findings.extend(registry_conflicts(host, ctx))
    return findings
