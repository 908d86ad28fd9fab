"""The conflicts of a host with the registry (pure): the Services whose names it takes and the
ServiceEntries it duplicates or overlaps where some namespace sees both, each with the action
``spec.conflicts`` gives its code, a few owners per code and the request's bounds."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator

from webhook.core.claims import SERVICE, SERVICE_ENTRY
from webhook.core.context import Context, contested, render_export_to, visibility
from webhook.core.findings import Code, Finding, OwnerRef, conflict_action, finding_of
from webhook.core.policy import Action
from webhook.core.registry import Allowance, Match, Relation

# How many owners one host names per code. The decision never depends on this bound: it only
# keeps a wildcard that covers thousands of names from producing thousands of findings.
MAX_OWNERS_PER_CODE = 3


def kubernetes_service(host: str, ctx: Context, match: Match) -> Finding | None:
    """A Service's name, alias or a wildcard over it: Conflict elsewhere, Shadows at home."""
    owner = match.owner
    fqdn = owner.hosts[0]
    if match.relation is Relation.COVERS:
        what = f'host "{host}" covers "{match.key}", the name of Service {owner.ref}'
    elif "." not in match.key:
        what = f'host "{host}" is the short name of Service {owner.ref} ({fqdn})'
    elif match.is_alias:
        what = f'host "{host}" is an alias of Service {owner.ref} ({fqdn})'
    else:
        what = f'host "{host}" is the name of Service {owner.ref}'
    ref = OwnerRef(SERVICE, owner.namespace, owner.name, match.key, "*")
    if owner.namespace == ctx.namespace:
        return _conflict(
            Code.SHADOWS_KUBERNETES_SERVICE,
            host,
            ctx,
            f"{what} in this namespace, and Istio would merge their endpoints; "
            "use the Service itself, or pick another host",
            ref,
        )
    if "." not in match.key:
        # Only the proxies of the Service's namespace resolve its short name.
        why = (
            f" for the proxies of namespace {owner.namespace}; this entry is visible there and "
            'would take over its traffic; pick another host, or use exportTo: ["."]'
        )
    else:
        why = " in another namespace, and would take over its traffic; pick another host"
    return _conflict(Code.CONFLICT_KUBERNETES_SERVICE, host, ctx, what + why, ref)


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
        return _conflict(
            Code.WILDCARD_OVERLAP,
            host,
            ctx,
            f'host "{host}" overlaps "{match.key}" of ServiceEntry {owner.ref} '
            f"(exportTo: {export_to}); use hosts that do not overlap, or ask its owners",
            ref,
        )
    if same:
        return _conflict(
            Code.DUPLICATE_HOST,
            host,
            ctx,
            f'host "{host}" is already registered by ServiceEntry {owner.ref} in this namespace, '
            f"and Istio would merge the two; add your ports or endpoints to {owner.name} instead",
            ref,
        )
    # exportTo: ["."] always ends the contest: only the two owners' namespaces would see both.
    return _conflict(
        Code.CONFLICT_SERVICE_ENTRY,
        host,
        ctx,
        f'host "{host}" is already registered by ServiceEntry {owner.ref} '
        f'(exportTo: {export_to}); ask its owners, or use exportTo: ["."]',
        ref,
    )


def _conflict(
    code: Code, host: str, ctx: Context, message: str, ref: OwnerRef | None = None
) -> Finding | None:
    """A conflict with the registry, with the action ``spec.conflicts`` gives its code (None
    when that action is Allow)."""
    action = conflict_action(code, ctx.rules)
    return None if action is Action.ALLOW else finding_of(code, host, action, message, ref)


def short_name_service(host: str, ctx: Context) -> Iterator[Finding]:
    """A single-label host is the short name of the Service of that name in every namespace
    that has one: Istio gives it to that namespace's proxies as a route domain, and an entry
    visible there takes it over."""
    if "." in host:
        return
    if host.startswith("*"):  # *eviews covers the short name reviews
        examined = ctx.examined
        covered = (
            Match(name, owner, Relation.COVERS)
            for name in ctx.snapshot.service_names_ending(host[1:], examined)
            for owner in ctx.services_called(name)
        )
    else:
        covered = (Match(host, owner, Relation.EQUAL) for owner in ctx.services_called(host))
    budget = ctx.budget
    found = (kubernetes_service(host, ctx, match) for match in _counted(covered, budget))
    yield from _capped(host, (f for f in found if f is not None))
    if budget.left < 0:
        yield too_many(host, ctx)


def _counted(matches: Iterable[Match], budget: Allowance) -> Iterator[Match]:
    """``matches``, each taking one off the request's ``budget``, until it is spent."""
    for match in matches:
        budget.left -= 1
        if budget.left < 0:
            return
        yield match


def registry_conflicts(
    host: str,
    ctx: Context,
    first: Match,
    matches: Iterator[Match],
) -> list[Finding]:
    """Every owner in the registry that the host collides with, at most a few per code, from
    its matches (``first`` already taken from them: a free host has none, and ``evaluate``
    stops there)."""
    conflicts = ctx.rules.conflicts
    if (
        conflicts.kubernetes_service is _ALLOW
        and conflicts.kubernetes_service_same_namespace is _ALLOW
        and conflicts.service_entry is _ALLOW
        and conflicts.service_entry_same_namespace is _ALLOW
        and conflicts.wildcard_overlap is _ALLOW
    ):
        return []
    found: list[Finding] = []
    budget = ctx.budget
    skip = None if host in ctx.newcomers else ctx.skip
    for match in itertools.chain((first,), matches):
        budget.left -= 1
        if budget.left < 0:
            break
        owner = match.owner
        if (
            owner.kind == SERVICE_ENTRY
            and owner.namespace == ctx.namespace
            and owner.name == ctx.name
        ):
            continue  # the object itself (UPDATE), never its own conflict
        if skip is not None and skip(owner):
            continue
        judge: Callable[[str, Context, Match], Finding | None] = (
            kubernetes_service if owner.kind == SERVICE else service_entry
        )
        finding = judge(host, ctx, match)
        if finding is not None:
            found.append(finding)
    found = _capped(host, found)
    if budget.left < 0 or ctx.examined.left < 0:
        found.append(too_many(host, ctx, examined=budget.left >= 0))
    return found


def too_many(host: str, ctx: Context, *, examined: bool = False) -> Finding:
    """The finding for a host that spent one of the request's allowances: the names it may
    match (``ctx.budget``), or with ``examined`` those it may look at (``ctx.examined``)."""
    if examined:
        what = f"needs more than {ctx.examined.limit} registered names looked at to be judged"
    else:
        what = f"overlaps more than {ctx.budget.limit} registered names"
    return finding_of(
        Code.TOO_MANY_MATCHES,
        host,
        Action.DENY,
        f'host "{host}" {what} (with the other hosts of this ServiceEntry); use narrower hosts',
    )


def _capped(host: str, findings: Iterable[Finding]) -> list[Finding]:
    """Each owner once per code, and at most ``MAX_OWNERS_PER_CODE`` owners per code, the rest
    counted in one more finding of that code (with the action of the first)."""
    kept: list[Finding] = []
    shown: dict[Code, int] = {}
    first: dict[Code, Finding] = {}
    seen: set[tuple[Code, str, str, str]] = set()
    for finding in findings:
        owner = finding.owner
        code = finding.code
        key = (code, owner.kind, owner.namespace, owner.name) if owner else (code, "", "", "")
        if key in seen:
            continue
        seen.add(key)
        count = shown.get(code, 0)
        shown[code] = count + 1
        if count < MAX_OWNERS_PER_CODE:
            kept.append(finding)
            if not count:
                first[code] = finding
    for code, count in shown.items():
        if count > MAX_OWNERS_PER_CODE:
            kept.append(
                finding_of(
                    code,
                    host,
                    first[code].action,
                    f'host "{host}" also collides with {count - MAX_OWNERS_PER_CODE} more '
                    "owner(s) like the ones above",
                )
            )
    return kept


# Read on every request: on Python 3.11 reading an enum member from its class (Action.ALLOW)
# costs about ten times reading a global.
_ALLOW = Action.ALLOW
