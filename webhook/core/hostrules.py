"""The rules of a host on its own (pure): the policy's allowed and denied domains, wildcards,
and the names Kubernetes reserves (DESIGN section 2). Each takes one normalised host and the
``Context`` of the object judged, and yields findings."""

from __future__ import annotations

from collections.abc import Iterator

from webhook.core import hosts, servicenames
from webhook.core.claims import SERVICE
from webhook.core.context import Context
from webhook.core.findings import Code, Finding, conflict_action, finding_of
from webhook.core.policy import Action


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
        return next(ctx.services_called(host), None) is not None
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
    examined = ctx.examined
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
    examined = ctx.examined
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
