"""Where an entry's traffic goes (pure): each endpoint address and address, and its hosts when
they are resolved as they are, against the policy's ``targets``: denied ranges and names, the
shortest prefix allowed, and the cluster IPs of Services."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from webhook.core import hosts
from webhook.core.claims import SERVICE, Claim
from webhook.core.context import Context
from webhook.core.findings import Code, Finding, OwnerRef, finding_of, quoted
from webhook.core.hostrules import host_denied, host_not_allowed
from webhook.core.policy import Action, Network, looks_like_an_address

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
        f"{where} {quoted(raw)} {why}; fix the ServiceEntry",
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


def may_reach_a_denied_name(names: Iterable[str], ctx: Context) -> bool:
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
