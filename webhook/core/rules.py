"""One small function per finding, and ``evaluate`` to run them all (pure).

Every function takes one normalised host and the ``Context`` of the object being judged, and
yields ``Finding`` values. A finding carries a stable reason code, the action the policy gives it
(Deny, Warn; Allow means the rule is off and nothing is yielded), and a message that names the
other owner and the way out.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from webhook.core import hosts, servicenames
from webhook.core.claims import SERVICE, SERVICE_ENTRY, Claim
from webhook.core.findings import (
    Code,
    Finding,
    OwnerRef,
    conflict_action,
    finding_of,
)
from webhook.core.policy import Action, Network, Policy, Rules, looks_like_an_address
from webhook.core.registry import Allowance, Match, Relation, Snapshot

# How many owners one host names per code. The decision never depends on this bound: it only
# keeps a wildcard that covers thousands of names from producing thousands of findings.
MAX_OWNERS_PER_CODE = 3
# How many registered names one request may examine. A host that overlaps more than this is far
# too broad to judge name by name (and to allow); without the bound, 256 hosts like
# *.svc.cluster.local against 100k Services would take the API server's whole 5 s. Each
# examined name costs about 2 µs, so the bound keeps any request under about 50 ms of it.
MAX_MATCHES_PER_REQUEST = 20_000
# How many more names one request may look at without their matching: the candidates of a
# partial wildcard (every name in its parent domain), Service names for a single-label partial
# one, a namespace's own Services for a wildcard in its zone. Each costs well under a
# microsecond, so this keeps any request under about 0.1 s of it, and is large enough that a
# partial wildcard in a crowded domain (100k names) is still judged.
MAX_EXAMINED_PER_REQUEST = 200_000


class Context(NamedTuple):
    """The object being judged, with everything the rules read."""

    namespace: str
    name: str  # "" for a CREATE with generateName
    rules: Rules
    snapshot: Snapshot
    visibility: frozenset[str]  # namespaces that can see it; "*" in it means all
    # Owners to leave out besides the object itself: ServiceEntries younger than the one judged
    # (see ``younger_than``), because the oldest owner of a host is the rightful one.
    skip: Callable[[Claim], bool] | None = None
    # Hosts judged against every owner whatever ``skip`` says: those an UPDATE adds, or all of
    # them when it widens exportTo (see ``newcomer_hosts``).
    newcomers: frozenset[str] = frozenset()
    # Registered names this request may still match, and names it may still look at without a
    # match: the request's own two allowances, counted down by every rule (see the bounds above).
    budget: Allowance | None = None
    examined: Allowance | None = None
    # The meshDefaultExportTo of another namespace's entries, when namespace rules set their
    # own; None when every namespace has the global one (then ``rules`` holds it).
    export_default_of: Callable[[str], tuple[str, ...]] | None = None

    @property
    def cluster_domain(self) -> str:
        return self.snapshot.cluster_domain

    def owner_export_default(self, namespace: str) -> tuple[str, ...]:
        lookup = self.export_default_of
        return self.rules.mesh_default_export_to if lookup is None else lookup(namespace)


def entry_export_default(policy: Policy, snapshot: Snapshot, namespace: str) -> tuple[str, ...]:
    """The exportTo of a ServiceEntry of ``namespace`` that sets none: its namespace rule's
    meshDefaultExportTo, or the global one."""
    if policy.export_defaults_vary:
        return policy.export_default_of(namespace, snapshot.labels_of(namespace))
    return policy.rules.mesh_default_export_to


def effective_export_to(claim: Claim, policy: Policy, snapshot: Snapshot) -> tuple[str, ...]:
    """Where an entry of the registry is visible, as written or by default: the one answer
    for the rules and for ``seguard registry``."""
    if claim.export_to:
        return claim.export_to
    if claim.kind == SERVICE_ENTRY:
        return entry_export_default(policy, snapshot, claim.namespace)
    return policy.rules.mesh_default_export_to


def context_for(
    claim: Claim,
    *,
    name: str,
    rules: Rules,
    snapshot: Snapshot,
    skip: Callable[[Claim], bool] | None = None,
    policy: Policy | None = None,
    newcomers: frozenset[str] = frozenset(),
) -> Context:
    """The context in which ``claim`` (in its own namespace) is judged. ``policy`` is needed
    only where namespace rules set their own meshDefaultExportTo (for the owners' defaults)."""
    lookup: Callable[[str], tuple[str, ...]] | None = None
    if policy is not None and policy.export_defaults_vary:

        def lookup(namespace: str) -> tuple[str, ...]:
            return entry_export_default(policy, snapshot, namespace)

    return Context(
        namespace=claim.namespace,
        name=name,
        rules=rules,
        snapshot=snapshot,
        visibility=visibility(claim.export_to, claim.namespace, rules.mesh_default_export_to),
        skip=skip,
        newcomers=newcomers,
        budget=Allowance(MAX_MATCHES_PER_REQUEST),
        examined=Allowance(MAX_EXAMINED_PER_REQUEST),
        export_default_of=lookup,
    )


# --- age: the oldest owner of a host is the rightful one ----------------------------------

Age = tuple[str, str, str]


def age_of(created: str, namespace: str, name: str) -> Age:
    """Where an entry stands among the owners of its hosts, oldest first. creationTimestamp is
    RFC 3339 in UTC with a Z, so text order is time order; an entry without one (from manifests)
    sorts last. Ties (the timestamp counts whole seconds) go to the namespace, then the name:
    Istio's SortServicesByCreationTime breaks them by hostname and then namespace, which for
    the owners of one hostname is the namespace."""
    return (created or "9999", namespace, name)


def claim_age(claim: Claim) -> Age:
    return age_of(claim.created, claim.namespace, claim.name)


def younger_than(age: Age | None) -> Callable[[Claim], bool] | None:
    """The owners an entry of ``age`` is not judged against: the ServiceEntries younger than it
    (Services always win, whatever their age). None, for an entry being created: it is the
    youngest, and judged against every owner. Admission (CREATE and UPDATE), ``check`` and the
    scan all ask this one function."""
    if age is None:
        return None

    def younger(owner: Claim) -> bool:
        return owner.kind == SERVICE_ENTRY and claim_age(owner) > age

    return younger


def newcomer_hosts(claim: Claim, before: Claim | None, default: Iterable[str]) -> frozenset[str]:
    """The hosts an UPDATE holds as a newcomer: those the object did not hold before, and all of
    them when its exportTo now reaches a namespace it did not (None: nothing is known of
    before). Its age is its own only where it already was an owner: an old entry must not take
    a younger owner's host by adding it, or by exporting it further, since Istio would then
    give the host to the old entry."""
    if before is None:
        return frozenset(claim.hosts)
    seen = visibility(claim.export_to, claim.namespace, default)
    seen_before = visibility(before.export_to, before.namespace, default)
    if "*" not in seen_before and ("*" in seen or not seen <= seen_before):
        return frozenset(claim.hosts)
    return frozenset(claim.hosts) - frozenset(before.hosts)


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


def host_denied(host: str, ctx: Context, *, subject: str = "") -> Iterator[Finding]:
    """A denied pattern that matches the host, or that a wildcard host would reach into.
    ``subject`` names an endpoint judged like a host (by default, 'host "<host>"')."""
    for pattern in ctx.rules.hosts.denied:
        if hosts.covers(pattern, host):
            label = subject or f'host "{host}"'
            what = f'{label} matches "{pattern}"'
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


def host_not_allowed(host: str, ctx: Context, *, subject: str = "") -> Iterator[Finding]:
    allowed = ctx.rules.hosts.allowed
    # Kubernetes names (the cluster domain, the short forms of Services' names, a Service's
    # short name) are governed by the Kubernetes rules, not the allowed list.
    if not allowed or _kubernetes_name(host, ctx):
        return
    if any(hosts.covers(pattern, host) for pattern in allowed):
        return
    shown = ", ".join(allowed[:4]) + (", ..." if len(allowed) > 4 else "")
    label = subject or f'host "{host}"'
    yield finding_of(
        Code.HOST_NOT_ALLOWED,
        host,
        Action.DENY,
        f"{label} is outside the allowed domains ({shown}) for namespace {ctx.namespace}; ask "
        "the cluster admin to allow it in the ServiceEntryPolicy",
    )


def _kubernetes_name(host: str, ctx: Context) -> bool:
    """True for the names the Kubernetes rules govern: anything in the cluster domain, the
    reserved short forms (``name.ns.svc``, ``name.ns`` of an existing namespace that is not a
    public suffix), and a single label that is a visible Service's short name."""
    if hosts.is_under(host, ctx.cluster_domain):
        return True
    form = reserved_form(host, ctx)
    if form is not None:
        return not form[1]
    if "." not in host:
        return next(_visible_services_called(host, ctx), None) is not None
    return ctx.snapshot.service_of_alias(host) is not None


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
    where = f'the public suffix "{suffix}"' if suffix else "the root, above every public suffix"
    yield finding_of(
        Code.WILDCARD_TOO_BROAD,
        host,
        action,
        f'wildcard host "{host}" sits at {where} and would open egress to every site under '
        "it; list exact hosts, or a wildcard under a domain you own",
    )


def partial_wildcard(host: str, ctx: Context) -> Iterator[Finding]:
    """``*foo.example.com``: Istio accepts it with a warning; it matches across labels."""
    action = ctx.rules.hosts.partial_wildcards
    if action is Action.ALLOW or not hosts.is_partial_wildcard(host):
        return
    suffix = hosts.base_name(host)
    label = host[1:].split(".", 1)[0]
    parent = hosts.wildcard_parent(host)
    wider = f'"*.{parent}"' if parent else "exact hosts"
    yield finding_of(
        Code.PARTIAL_WILDCARD,
        host,
        action,
        f'partial wildcard "{host}" matches every name that ends in "{suffix}" ({suffix}, '
        f"x{suffix}, a.{suffix} ...), not only names under {label}; Istio accepts it with a "
        f"warning; list the exact hosts, or use {wider}",
    )


# --- names Kubernetes owns -------------------------------------------------------------------


def reserved_form(host: str, ctx: Context) -> tuple[str, bool] | None:
    """Why ``host`` (or a name a wildcard host covers) is reserved for Kubernetes names, and
    whether a real external name is plausible there (a namespace that is a public suffix), or
    None. DESIGN section 2: the whole cluster domain; every ``<name>.<ns>.svc``; and
    ``<name>.<ns>`` where ``<ns>`` is an existing namespace."""
    domain = ctx.cluster_domain
    if not host.startswith("*"):
        if host == domain or host.endswith("." + domain):
            return f"is in the cluster domain {domain}, which is reserved for Kubernetes", False
        labels = host.split(".")
        if len(labels) == 3 and labels[2] == "svc":
            return (
                f"has the form <name>.<namespace>.svc, the short name Istio gives a Service "
                f"{labels[0]} of namespace {labels[1]}",
                False,
            )
        if len(labels) == 2 and ctx.snapshot.has_namespace(labels[1]):
            return _namespace_form(labels[1], f"a Service {labels[0]} there")
        return None
    if hosts.overlaps(host, "*." + domain) or hosts.covers(host, domain):
        return (
            f"covers names in the cluster domain {domain}, reserved for Kubernetes",
            False,
        )
    if _covers_a_svc_form(host):
        return (
            "covers names of the form <name>.<namespace>.svc, the short names Istio gives Services",
            False,
        )
    namespace = _namespace_covered(host, ctx)
    if namespace is not None:
        return _namespace_form(namespace, "the Services there")
    return None


def _namespace_form(namespace: str, whose: str) -> tuple[str, bool]:
    external = hosts.is_public_suffix(namespace)
    return (
        f"has the form <name>.<namespace> of the existing namespace {namespace}, the short name "
        f"Istio gives {whose}",
        external,
    )


def _covers_a_svc_form(host: str) -> bool:
    """True when a wildcard matches some ``<name>.<ns>.svc`` (three labels ending in svc):
    ``*.svc``, ``*.ns.svc``, ``*x.svc`` (a.bx.svc), ``*x.ns.svc`` (ax.ns.svc), and a partial
    wildcard of one label whose suffix ends "svc" does (``*c``: a.b.svc)."""
    parent = hosts.wildcard_parent(host)
    if not parent:
        return "svc".endswith(host[1:])
    labels = parent.split(".")
    return len(labels) <= 2 and labels[-1] == "svc"


def _namespace_covered(host: str, ctx: Context) -> str | None:
    """An existing namespace ``ns`` such that the wildcard matches some ``<name>.<ns>``."""
    snapshot = ctx.snapshot
    if host.startswith("*."):
        base = host[2:]
        return base if "." not in base and snapshot.has_namespace(base) else None
    first, dot, rest = host.partition(".")
    if dot:
        return rest if "." not in rest and snapshot.has_namespace(rest) else None
    fragment = first[1:]  # *s: every namespace whose name ends in "s"
    examined = ctx.examined if ctx.examined is not None else Allowance(MAX_EXAMINED_PER_REQUEST)
    found: str | None = None
    for namespace in snapshot.namespace_names():
        examined.left -= 1
        if examined.left < 0:
            return namespace  # past the bound, taken as covered: reserved, not waved through
        if namespace.endswith(fragment):
            if not hosts.is_public_suffix(namespace):
                return namespace  # one that is not a public suffix decides: Deny, not Warn
            found = found or namespace
    return found


def _own_service_names(ctx: Context) -> Iterator[tuple[str, str, str]]:
    """(FQDN, name.ns.svc, name.ns) of every Service of the requester's namespace, each name
    looked at counted in the request's ``examined``."""
    namespace = ctx.namespace
    suffix = servicenames.fqdn_suffix(namespace, ctx.cluster_domain)
    examined = ctx.examined if ctx.examined is not None else Allowance(MAX_EXAMINED_PER_REQUEST)
    for name in ctx.snapshot.service_names_in(namespace):
        examined.left -= 1
        if examined.left < 0:
            return
        short, svc = servicenames.aliases(name, namespace)
        yield name + suffix, svc, short


def matches_an_own_service(host: str, ctx: Context) -> bool:
    """True when ``host`` is a name of a Service of the requester's namespace (its FQDN, or a
    short form), or a wildcard inside one of its namespace's zones that covers one: the Service
    rules (ShadowsKubernetesService) govern those, not the reservation."""
    snapshot = ctx.snapshot
    namespace = ctx.namespace
    if not host.startswith("*"):
        if any(
            owner.kind == SERVICE and owner.namespace == namespace and host in owner.hosts
            for owner in snapshot.owners(host)
        ):
            return True
        # An alias name.ns or name.ns.svc of a Service of this namespace (the registry is asked
        # only when the host names this namespace).
        alias = servicenames.of_alias(host)
        if alias is not None and alias[0] == namespace:
            return snapshot.service_of_alias(host) is not None
        return False
    # A zone of the namespace's own names: its Services' FQDNs, their .svc forms, their short
    # forms. The wildcard must not also reach reserved names outside that zone: *.local from a
    # namespace "local" covers the whole cluster domain, *.svc from a namespace "svc" every
    # <name>.<ns>.svc.
    domain = ctx.cluster_domain
    fqdn_zone, svc_zone, short_zone = servicenames.zones(namespace, domain)
    zones = [fqdn_zone]
    if not (hosts.overlaps(host, "*." + domain) or hosts.covers(host, domain)):
        zones.append(svc_zone)
        if not _covers_a_svc_form(host):
            zones.append(short_zone)
    for form, zone in enumerate(zones):
        if hosts.is_under(host, zone):
            return any(hosts.covers(host, names[form]) for names in _own_service_names(ctx))
    return False


def reserved_cluster_domain(host: str, ctx: Context) -> Iterator[Finding]:
    action = conflict_action(Code.RESERVED_CLUSTER_DOMAIN, ctx.rules)
    if action is Action.ALLOW:
        return
    form = reserved_form(host, ctx)
    if form is None or matches_an_own_service(host, ctx):
        return
    why, external = form
    if external:
        # A namespace named like a public suffix (dev, app): foo.dev may be a real site.
        action = Action.WARN
    yield finding_of(
        Code.RESERVED_CLUSTER_DOMAIN,
        host,
        action,
        f'host "{host}" {why}, and names no Service of namespace {ctx.namespace}; create the '
        "Service, or use a name Kubernetes does not reserve",
    )


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


def _visible_services_called(label: str, ctx: Context) -> Iterator[Claim]:
    """The Services named ``label`` in the namespaces that can see the entry."""
    seen = ctx.visibility
    return ctx.snapshot.services_called(label, None if "*" in seen else seen)


def short_name_service(host: str, ctx: Context) -> Iterator[Finding]:
    """A single-label host is the short name of the Service of that name in every namespace
    that has one: Istio gives it to that namespace's proxies as a route domain, and an entry
    visible there takes it over."""
    if "." in host:
        return
    if host.startswith("*"):  # *eviews covers the short name reviews
        examined = ctx.examined if ctx.examined is not None else Allowance(MAX_EXAMINED_PER_REQUEST)
        covered = (
            Match(name, owner, Relation.COVERS)
            for name in ctx.snapshot.service_names_ending(host[1:], examined)
            for owner in _visible_services_called(name, ctx)
        )
    else:
        covered = (
            Match(host, owner, Relation.EQUAL) for owner in _visible_services_called(host, ctx)
        )
    budget = ctx.budget if ctx.budget is not None else Allowance(MAX_MATCHES_PER_REQUEST)
    found = (kubernetes_service(host, ctx, match) for match in _counted(covered, budget))
    yield from _capped(host, (f for f in found if f is not None))
    if budget.left < 0:
        yield _too_many(host)


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
    *,
    budget: Allowance,
    examined: Allowance,
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
    if budget.left < 0 or examined.left < 0:
        found.append(_too_many(host, examined=budget.left >= 0))
    return found


def _too_many(host: str, *, examined: bool = False) -> Finding:
    if examined:
        what = f"needs more than {MAX_EXAMINED_PER_REQUEST} registered names looked at to be judged"
    else:
        what = f"overlaps more than {MAX_MATCHES_PER_REQUEST} registered names"
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


# --- targets: where the entry's traffic goes -----------------------------------------------

# IPv6 ranges that carry an IPv4 address in their last 32 bits, which a target there reaches:
# IPv4-mapped (::ffff:a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d, RFC 2765), the NAT64
# well-known and local-use prefixes (64:ff9b::a.b.c.d, RFC 6052; 64:ff9b:1::/48, RFC 8215) and
# the deprecated IPv4-compatible form (::a.b.c.d).
_EMBEDDING_V4 = (
    ipaddress.IPv6Network("::ffff:0:0/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("::/96"),
)
_EVERY_IPV4 = ipaddress.IPv4Network("0.0.0.0/0")


def _networks_of(raw: str) -> tuple[Network, ...] | None:
    """An IP or CIDR as the networks it reaches (an IPv6 form of an IPv4 address reaches both),
    or None when it is not one."""
    try:
        if "/" in raw:
            network: Network = ipaddress.ip_network(raw, strict=False)
        else:
            network = ipaddress.ip_network(ipaddress.ip_address(raw.split("%", 1)[0]))
    except ValueError:
        return None
    if isinstance(network, ipaddress.IPv6Network):
        for embedding in _EMBEDDING_V4:
            if network.prefixlen >= 96 and network.subnet_of(embedding):
                # :: is ::0.0.0.0, as 0.0.0.0 "this host" (a connection to it reaches ::1).
                low = int(network.network_address) & 0xFFFFFFFF
                return (network, ipaddress.IPv4Network((low, network.prefixlen - 96)))
            if network.prefixlen < 96 and network.overlaps(embedding):
                return (network, _EVERY_IPV4)  # it holds every IPv4 address in that form
    return (network,)


def target_findings(claim: Claim, ctx: Context) -> Iterator[Finding]:
    """Findings for where the entry's traffic goes: each endpoint address and address, and its
    hosts when they are resolved as they are (no endpoints)."""
    targets = ctx.rules.targets
    for where, raw in claim.targets:
        if raw.startswith("unix://"):
            continue  # a socket on the proxy's own host: nothing on the network
        if looks_like_an_address(raw):
            networks = _networks_of(raw)
            if networks is None:
                yield _invalid_target(where, raw, "is not a valid IP address or CIDR")
            elif targets.action is not Action.ALLOW:
                yield from _address_findings(where, raw, networks, ctx)
            continue
        if not where.startswith("spec.endpoints"):
            yield _invalid_target(where, raw, "is not an IP address or a CIDR")
            continue
        try:
            name = hosts.normalize(raw)
        except hosts.InvalidHost as exc:
            yield _invalid_target(
                where, raw, f"is not an IP, a unix socket or a DNS name: {exc.reason}"
            )
            continue
        if hosts.is_wildcard(name):
            yield _invalid_target(where, raw, "is a wildcard; an endpoint needs one address")
            continue
        subject = f'endpoint "{name}" ({where})'
        yield from host_denied(name, ctx, subject=subject)
        yield from host_not_allowed(name, ctx, subject=subject)
        yield from _name_target_findings(name, where, subject, ctx)
    if claim.resolves_hosts:
        for host in claim.hosts:
            what = (
                f'host "{host}", where this entry\'s traffic goes (it has no endpoints, so the '
                "name itself is resolved or passed through),"
            )
            yield from _name_target_findings(host, "spec.hosts", what, ctx)


# RFC 6761: every name under localhost resolves to a loopback address; so do the names the
# kubelet writes for ::1 into every pod's /etc/hosts, which resolvers read first.
_LOOPBACK = (ipaddress.IPv4Network("127.0.0.1/32"), ipaddress.IPv6Network("::1/128"))
_LOOPBACK_NAMES = ("localhost", "ip6-localhost", "ip6-loopback")


def _is_loopback_name(name: str) -> bool:
    if name.startswith("*"):
        return hosts.covers(name, "x.localhost") or any(
            hosts.covers(name, loopback) for loopback in _LOOPBACK_NAMES
        )
    return name in _LOOPBACK_NAMES or name.endswith(".localhost")


def _name_target_findings(name: str, where: str, what: str, ctx: Context) -> Iterator[Finding]:
    if ctx.rules.targets.action is Action.ALLOW:
        return
    if _is_loopback_name(name):
        found = list(_address_findings(where, name, _LOOPBACK[:1], ctx))
        yield from found or _address_findings(where, name, _LOOPBACK[1:], ctx)
        return
    numeric = _inet_aton(name)
    if numeric is not None:  # 0x7f000001: a resolver reads it as 127.0.0.1
        yield from _address_findings(where, name, (ipaddress.IPv4Network(numeric),), ctx)
        return
    yield from _denied_name(name, what, ctx)


def _inet_aton(name: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a name denotes as inet_aton reads it (1 to 4 parts, each decimal, octal
    with a leading 0 or hex with 0x; the last part fills the bytes left), as glibc's resolver
    does before it asks DNS; None for a real name."""
    parts = name.split(".")
    if len(parts) > 4:
        return None
    values: list[int] = []
    for part in parts:
        try:
            if part[:2] in ("0x", "0X"):
                values.append(int(part[2:], 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            else:
                values.append(int(part, 10))
        except ValueError:
            return None
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for i, value in enumerate(head):
        number |= value << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def _invalid_target(where: str, raw: str, why: str) -> Finding:
    return finding_of(
        Code.INVALID_SPEC,
        raw[:253],
        Action.DENY,
        f"{where} {_quote(raw)} {why}; fix the ServiceEntry",
    )


def _denied_name(name: str, what: str, ctx: Context) -> Iterator[Finding]:
    """A name matched by a denied target pattern. A single label is also taken for every name
    a resolver's search domains would make of it: ``metadata`` is metadata.google.internal on
    GCE."""
    targets = ctx.rules.targets
    if targets.action is Action.ALLOW:
        return
    if name.startswith("*"):
        pattern = next((p for p in targets.denied_hosts if hosts.overlaps(p, name)), None)
    elif name in targets.denied_exact:
        pattern = name
    else:
        pattern = next((p for p in targets.denied_wildcards if hosts.covers(p, name)), None)
        if pattern is None and "." not in name:
            pattern = targets.denied_first_labels.get(name)
    if pattern is not None:
        yield finding_of(
            Code.TARGET_DENIED,
            name,
            targets.action,
            f'{what} matches "{pattern}", a target the ServiceEntryPolicy denies; point the '
            "entry at the real service, or ask the cluster admin",
        )


def _address_findings(
    where: str, raw: str, networks: tuple[Network, ...], ctx: Context
) -> Iterator[Finding]:
    targets = ctx.rules.targets
    subject = f'address "{raw}" ({where})'
    shortest = networks[-1]  # the IPv4 form, when there is one: its prefix is the one that counts
    minimum = targets.min_prefix_ipv4 if shortest.version == 4 else targets.min_prefix_ipv6
    if shortest.prefixlen < minimum:
        yield finding_of(
            Code.TARGET_TOO_BROAD,
            raw,
            targets.action,
            f"{subject} is a /{shortest.prefixlen}, broader than the /{minimum} the "
            f"ServiceEntryPolicy allows for IPv{shortest.version} (targets.minPrefixLength); "
            "list the narrower ranges the service uses",
        )
    denied = next((d for n in networks for d in targets.denied_networks if _overlap(n, d)), None)
    if denied is not None:
        inside = all(n.subnet_of(denied) for n in networks if n.version == denied.version)  # type: ignore[arg-type]
        yield finding_of(
            Code.TARGET_DENIED,
            raw,
            targets.action,
            f"{subject} {'is in' if inside else 'covers'} {denied}, a range the "
            "ServiceEntryPolicy denies as a target (cloud metadata servers, loopback and the "
            "like); point the entry at the real service, or ask the cluster admin",
        )
    for network in networks:
        if network.num_addresses != 1:
            continue
        service = ctx.snapshot.service_with_ip(network.network_address.compressed)
        if service is not None:
            yield finding_of(
                Code.TARGET_DENIED,
                raw,
                targets.action,
                f"{subject} is the cluster IP of Service {service.ref}, and would send this "
                "entry's traffic to that Service behind its name; use the Service's own name",
                OwnerRef(
                    SERVICE,
                    service.namespace,
                    service.name,
                    network.network_address.compressed,
                    "*",
                ),
            )
            return


def _overlap(a: Network, b: Network) -> bool:
    return a.version == b.version and a.overlaps(b)


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
    """All findings for an object: validity first, then each host through every rule, then
    where its traffic goes.

    Each rule checks for itself whether it applies; the tests below only skip calling a rule
    that cannot apply to this host, which keeps a clean request to a few microseconds.
    """
    findings = invalid_findings(claim) if claim.problems or claim.invalid else []
    if claim.problems:
        return findings
    host_rules = ctx.rules.hosts
    domain = ctx.cluster_domain
    budget, examined = ctx.budget, ctx.examined
    if budget is None or examined is None:
        budget, examined = Allowance(MAX_MATCHES_PER_REQUEST), Allowance(MAX_EXAMINED_PER_REQUEST)
        ctx = ctx._replace(budget=budget, examined=examined)
    for host in claim.hosts:
        wildcard = host.startswith("*")
        if host_rules.denied:
            findings.extend(host_denied(host, ctx))
        if host_rules.allowed:
            findings.extend(host_not_allowed(host, ctx))
        if wildcard:
            findings.extend(wildcard_not_allowed(host, ctx))
            findings.extend(wildcard_too_broad(host, ctx))
            if host[1] != ".":
                findings.extend(partial_wildcard(host, ctx))
        # Reserved forms: the cluster domain, name.ns.svc and name.ns (see ``reserved_form``).
        if wildcard or host.endswith((domain, ".svc")) or host.count(".") == 1:
            findings.extend(reserved_cluster_domain(host, ctx))
        if "." not in host:
            findings.extend(short_name_service(host, ctx))
        matches = ctx.snapshot.matches(host, examined)
        first = next(matches, None)
        if first is not None:
            findings.extend(
                registry_conflicts(host, ctx, first, matches, budget=budget, examined=examined)
            )
        elif examined.left < 0:  # a partial wildcard that examined too many names
            findings.append(_too_many(host, examined=True))
    if claim.targets or (claim.resolves_hosts and _may_reach_a_denied_name(claim.hosts, ctx)):
        findings.extend(target_findings(claim, ctx))
    return findings


def _may_reach_a_denied_name(names: Iterable[str], ctx: Context) -> bool:
    """A quick test that lets nearly every entry skip ``target_findings``: True when one of its
    hosts could be a denied target name (or a localhost name); the rules then say which."""
    targets = ctx.rules.targets
    if targets.action is _ALLOW:
        return False
    if targets.denied_wildcards:
        return True
    quick = targets.denied_quick
    for name in names:
        # A wildcard, or perhaps an address as inet_aton reads one (0x7f000001) when a digit
        # comes first; a denied name, or the first label a search domain completes to one.
        if name[0] in _WILDCARD_OR_DIGIT or name in quick or name.endswith(_LOOPBACK_NAMES):
            return True
    return False


_WILDCARD_OR_DIGIT = frozenset("*0123456789")
# Read on every request: on Python 3.11 reading an enum member from its class (Action.ALLOW)
# costs about ten times reading a global.
_ALLOW = Action.ALLOW
