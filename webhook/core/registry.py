"""The registry: every name in the mesh, indexed for constant-time lookups (pure).

A ``Snapshot`` is immutable: readers hold one for a whole decision while a writer builds the next
and swaps it in whole. Its indexes make a lookup cost the same for 100 entries and for 100,000:

- ``names``: every registered host (exact or wildcard) -> its owners;
- ``under``: every domain -> the registered names strictly inside it, so a new wildcard finds the
  names it would cover with one dictionary read;
- ``services``: the Services of this cluster, namespace -> name -> what else they carry
  (exportTo, source, cluster IPs: a ``Profile``, or for most Services their one address
  alone). A Service's names all follow from its namespace and name: its FQDN
  (``name.ns.svc.<domain>``) and the aliases Istio adds as route domains (``name.ns``,
  ``name.ns.svc``, and a single label inside its own namespace). So they are not stored: a
  lookup reads them back from the host's labels, and a ``Claim`` is made for a Service only
  when a lookup finds one. Services are most of a cluster's objects; at 100,000 entries this
  saves about 20 MB;
- ``objects``: every other object (ServiceEntries, and Services as istiod may list them from
  another cluster, whose names do not follow from this cluster's domain) by (kind, namespace,
  name): an ``ObjectTable``, kind -> namespace -> name, so no key tuple is stored for each;
- ``cluster_ips``: every Service's cluster IP -> its namespace (the Service's own table holds
  the address, so a hit is confirmed there), for the targets rules;
- ``service_names``: every Service's name -> the namespace(s) holding one, so a single-label host
  (a Service's short name in its own namespace) is looked up once, not in every namespace;
- ``partials``: the partial wildcards (``*foo.example.com``) registered, by the domain they lie
  in (``example.com``). They are rare, so a lookup reads this table only when it is not empty.

``claims`` shows both tables as one mapping of ``Claim`` values, for the callers that list or
fetch objects.

An exact host is checked with one read plus one read per parent domain (the wildcards that might
cover it), and one more when it has the shape of a Service's name; a wildcard adds one read of
``under``, and a walk of the Services it covers when it lies in the cluster's domain. A partial
wildcard walks the names in its parent domain and keeps those it covers, counting the others
against the request's count of names examined. A single-label host is one read of
``service_names``, then one per namespace holding a Service of that name.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, ValuesView
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

from webhook.core import claims as claims_mod
from webhook.core import hosts, servicenames
from webhook.core.claims import Claim, ClaimKey

Labels = frozenset[tuple[str, str]]


class Relation(Enum):
    EQUAL = "equal"  # the registered name is the host
    COVERED_BY = "covered_by"  # a registered wildcard covers the host
    COVERS = "covers"  # the host (a wildcard) covers the registered name


class Allowance:
    """How many more names one request may look at (or match): counted down as they are, by
    every rule the request goes through. One per request, never shared between two."""

    __slots__ = ("left", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit  # what it started with, for the messages
        self.left = limit


class Match(NamedTuple):
    key: str  # the registered name that matched (a host or a Service alias)
    owner: Claim
    relation: Relation

    @property
    def is_alias(self) -> bool:
        return self.key not in self.owner.hosts


@dataclass(frozen=True, slots=True)
class Skipped:
    """An object the registry could not use, and why."""

    kind: str
    namespace: str
    name: str
    source: str
    reason: str


# A name's owners: one Claim (nearly always), or a tuple of them. A lone owner is kept bare: at
# 100,000 entries the one-element tuples would cost about 17 MB.
Owners = Claim | tuple[Claim, ...]


def owners_of(value: Owners | None) -> tuple[Claim, ...]:
    if value is None:
        return ()
    return (value,) if type(value) is Claim else value  # type: ignore[return-value]


# A cluster IP as a number: an IPv4 address as its integer, an IPv6 one as its integer plus 2**128
# so the two never meet. An int takes 28 bytes where the text takes about 60, at 60,000 Services.
IpKey = int
_V6 = 1 << 128
# One Service's cluster IPs: None, one key (nearly always), or several (dual stack).
PackedIps = IpKey | tuple[IpKey, ...] | None


def ip_key(text: str) -> IpKey | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return int(address) + (_V6 if address.version == 6 else 0)


def _ip_text(key: IpKey) -> str:
    if key >= _V6:
        return ipaddress.IPv6Address(key - _V6).compressed
    # What IPv4Address(key).compressed gives, in a fifth of the time (a Service claim is made
    # for every Service a denial names).
    return f"{key >> 24}.{key >> 16 & 255}.{key >> 8 & 255}.{key & 255}"


def _packed(ips: tuple[str, ...]) -> PackedIps:
    keys = tuple(key for key in map(ip_key, ips) if key is not None)
    return keys[0] if len(keys) == 1 else (keys or None)


def _keys(packed: object) -> tuple[Any, ...]:
    """A Service's cluster IPs (PackedIps) as a tuple of IpKey. Typed ``object`` in and ``Any``
    out so that mypyc keeps the int objects as they are: an ``int`` it unboxes, and stores a new
    object for, so ``cluster_ips`` held a second copy of every address (2 MB at 60,000)."""
    if packed is None:
        return ()
    if isinstance(packed, tuple):
        return packed
    return (packed,)


@dataclass(frozen=True, slots=True)
class Profile:
    """What a Service carries besides its namespace and name. Shared when it has no cluster IP
    (headless, or from manifests without one): nearly every such Service of a cluster has the
    same one.

    A slotted class, not a ``tuple[...]``: mypyc keeps a fixed-length tuple unboxed and makes a
    new tuple object each time it stores one, so a registry built from another held copies and
    left the freed ones' pools behind (3 MB more at 60,000 Services); a named tuple takes 80
    bytes where this takes 64, as a 3-tuple does."""

    export_to: tuple[str, ...] | None
    source: str
    ips: PackedIps


# What a Service's table holds for it: its Profile, or, for the Service nearly every cluster is
# made of (one cluster IP, no exportTo annotation, listed by the cluster's API server), that
# address alone: 64 bytes less a Service, 3.8 MB at 60,000. ``held_profile`` reads either back.
Held = Profile | IpKey
Services = Mapping[str, Mapping[str, Held]]


def held_profile(held: Held) -> Profile:
    if isinstance(held, Profile):
        return held
    return Profile(None, claims_mod.CLUSTER_SOURCE, held)


def held_ips(held: object) -> Any:
    """A held Service's cluster IPs (PackedIps), the very objects it holds (``object`` in and
    ``Any`` out, so mypyc keeps them as they are: see ``_keys``)."""
    return held.ips if isinstance(held, Profile) else held


def _held_source(held: Held) -> str:
    return held.source if isinstance(held, Profile) else claims_mod.CLUSTER_SOURCE


# Where a cluster IP is held: the namespace of a Service kept in its table, or the key of one kept
# whole.
IpOwner = str | ClaimKey
# Values many objects share (namespaces, profiles without cluster IPs) are held once per
# registry: a builder keeps one of each in its own table, handed on to the builders made from
# it. Distinct namespaces and exportTo annotations are few; past this many, simply not shared.
SHARED_MAX = 65536
Shared = Callable[[Any], Any]


def _profile(claim: Claim, shared: Shared) -> Held:
    if claim.cluster_ips:
        # Its own: cluster IPs are unique to a Service.
        packed = _packed(claim.cluster_ips)
        if (
            isinstance(packed, int)
            and claim.export_to is None
            and claim.source == claims_mod.CLUSTER_SOURCE
        ):
            return packed
        return Profile(claim.export_to, claim.source, packed)
    profile: Profile = shared(Profile(claim.export_to, claim.source, None))
    return profile


def is_compact(claim: Claim, cluster_domain: str) -> bool:
    """A Service whose only host is its FQDN in this cluster: all it holds follows from its
    namespace, name and profile. Its name and namespace must be single DNS labels, as the API
    server makes them, for its names to be read back from a host's labels; a manifest may hold
    anything (``a.b``, ``*``), and such a Service is kept whole."""
    return (
        claim.kind == claims_mod.SERVICE
        and claim.hosts == (service_fqdn(claim, cluster_domain),)
        and claim.created_s is None
        and not claim.invalid
        and not claim.problems
        and hosts.DNS_LABEL.match(claim.name) is not None
        and hosts.DNS_LABEL.match(claim.namespace) is not None
    )


def service_claim_of(namespace: str, name: str, held: Held, cluster_domain: str) -> Claim:
    profile = held_profile(held)
    return Claim(
        kind=claims_mod.SERVICE,
        namespace=namespace,
        name=name,
        hosts=(servicenames.fqdn(name, namespace, cluster_domain),),
        export_to=profile.export_to,
        source=profile.source,
        cluster_ips=tuple(map(_ip_text, _keys(profile.ips))),
    )


class ObjectTable(Mapping[ClaimKey, Claim]):
    """The objects held whole (ServiceEntries, Services that are not compact), by kind,
    namespace and name: tables within tables, so that no key tuple is stored for each object
    (64 bytes an object, 2.6 MB at 40,000 ServiceEntries; its namespace and name are strings
    the claim holds anyway). A ``copy`` shares the namespaces' tables with the original until
    either changes one (copy on write, a namespace at a time)."""

    __slots__ = ("_count", "_owned", "_tables")

    def __init__(self, claims: Iterable[Claim] = ()) -> None:
        self._tables: dict[str, dict[str, dict[str, Claim]]] = {}
        self._count = 0
        # The namespace tables this one may change in place: None for all (none is shared).
        self._owned: set[tuple[str, str]] | None = None
        for claim in claims:
            self.put(claim)

    def find(self, key: ClaimKey) -> Claim | None:
        """What is held under ``key`` (None if nothing is)."""
        by_namespace = self._tables.get(key[0])
        table = by_namespace.get(key[1]) if by_namespace is not None else None
        return table.get(key[2]) if table is not None else None

    def get(self, key: ClaimKey, default: Any = None) -> Any:
        found = self.find(key)
        return default if found is None else found

    def __getitem__(self, key: ClaimKey) -> Claim:
        found = self.find(key)
        if found is None:
            raise KeyError(key)
        return found

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 3 and self.find(key) is not None

    def __iter__(self) -> Iterator[ClaimKey]:
        for kind, by_namespace in self._tables.items():
            for namespace, table in by_namespace.items():
                for name in table:
                    yield (kind, namespace, name)

    def __len__(self) -> int:
        return self._count

    def values(self) -> ValuesView[Claim]:
        return _Claims(self)

    def claims(self) -> Iterator[Claim]:
        """Every claim held (``values()``, without a lookup for each)."""
        for by_namespace in self._tables.values():
            for table in by_namespace.values():
                yield from table.values()

    def counts(self) -> dict[str, int]:
        """How many objects of each kind are held."""
        return {
            kind: sum(len(table) for table in by_namespace.values())
            for kind, by_namespace in self._tables.items()
        }

    def copy(self) -> ObjectTable:
        copy = ObjectTable()
        copy._tables = {kind: dict(by_namespace) for kind, by_namespace in self._tables.items()}
        copy._count = self._count
        copy._owned = set()
        self._owned = set()  # its tables are the copy's too now
        return copy

    def _table(self, kind: str, namespace: str) -> dict[str, Claim]:
        """The namespace's table of ``kind``, this one's own to change (made if missing)."""
        by_namespace = self._tables.get(kind)
        if by_namespace is None:
            by_namespace = self._tables[kind] = {}
        table = by_namespace.get(namespace)
        owned = self._owned
        if table is None:
            table = by_namespace[namespace] = {}
        elif owned is not None and (kind, namespace) not in owned:
            table = by_namespace[namespace] = table.copy()
        else:
            return table
        if owned is not None:
            owned.add((kind, namespace))
        return table

    def put(self, claim: Claim) -> None:
        """Hold ``claim`` under its key, in place of what was held there."""
        table = self._table(claim.kind, claim.namespace)
        if claim.name not in table:
            self._count += 1
        table[claim.name] = claim

    def pop(self, key: ClaimKey) -> Claim | None:
        """Forget what is held under ``key``, and return it (None if nothing was)."""
        found = self.find(key)
        if found is None:
            return None
        table = self._table(key[0], key[1])
        del table[key[2]]
        self._count -= 1
        if not table:
            by_namespace = self._tables[key[0]]
            del by_namespace[key[1]]
            if not by_namespace:
                del self._tables[key[0]]
            if self._owned is not None:
                self._owned.discard((key[0], key[1]))
        return found


class _Claims(ValuesView[Claim]):
    """An ObjectTable's values, read from its tables rather than looked up key by key."""

    _mapping: ObjectTable

    def __iter__(self) -> Iterator[Claim]:
        return self._mapping.claims()


class ClaimsView(Mapping[ClaimKey, Claim]):
    """Every object of a registry as one mapping: the objects, then the Services."""

    __slots__ = ("_count", "_domain", "_objects", "_services")

    def __init__(
        self,
        objects: Mapping[ClaimKey, Claim],
        services: Services,
        *,
        cluster_domain: str,
        service_count: int,
    ) -> None:
        self._objects = objects
        self._services = services
        self._domain = cluster_domain
        self._count = service_count

    @classmethod
    def of(cls, registry: Snapshot | RegistryBuilder) -> ClaimsView:
        return cls(
            registry.objects,
            registry.services,
            cluster_domain=registry.cluster_domain,
            service_count=registry.service_count,
        )

    def get(self, key: ClaimKey, default: Any = None) -> Any:
        if key[0] == claims_mod.SERVICE:
            table = self._services.get(key[1])
            profile = table.get(key[2]) if table is not None else None
            if profile is not None:
                return service_claim_of(key[1], key[2], profile, self._domain)
        return self._objects.get(key, default)

    def __getitem__(self, key: ClaimKey) -> Claim:
        found: Claim | None = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 3 and self.get(key) is not None

    def __iter__(self) -> Iterator[ClaimKey]:
        yield from self._objects
        for namespace, table in self._services.items():
            for name in table:
                yield (claims_mod.SERVICE, namespace, name)

    def __len__(self) -> int:
        return len(self._objects) + self._count


@dataclass(frozen=True, slots=True)
class Snapshot:
    cluster_domain: str
    names: Mapping[str, Owners]
    under: Mapping[str, tuple[str, ...]]
    objects: Mapping[ClaimKey, Claim]  # an ObjectTable
    namespaces: Mapping[str, Labels]
    services: Services = field(default_factory=dict)
    service_count: int = 0
    # The objects held whole, by kind (ServiceEntries, and Services that are not compact).
    object_counts: Mapping[str, int] = field(default_factory=dict)
    skipped: tuple[Skipped, ...] = ()
    generation: int = 0
    cluster_ips: Mapping[IpKey, IpOwner] = field(default_factory=dict)
    partials: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    service_names: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)

    @property
    def claims(self) -> ClaimsView:
        """Every object, Services included, by (kind, namespace, name)."""
        return ClaimsView.of(self)

    def matches(self, host: str, examined: Allowance | None = None) -> Iterator[Match]:
        """Registered names that overlap ``host``: the equal name, then wildcards that cover it,
        then (for a wildcard host) the names it covers. Lazy, so a caller may stop early. A
        partial wildcard host takes one off ``examined`` for each name it examines and does not
        cover (the caller counts the matches), and stops when that count is spent."""
        names = self.names
        wildcard = host.startswith("*")
        if not wildcard:
            service = self._service_of_fqdn(host)
            if service is not None:
                yield Match(host, service, Relation.EQUAL)
        equal = owners_of(names.get(host))
        for owner in equal:
            yield Match(host, owner, Relation.EQUAL)
        if not wildcard:
            service = self.service_of_alias(host)
            # A Service whose aliases are registered names (see _names_of) is already there.
            if service is not None and all(owner is not service for owner in equal):
                yield Match(host, service, Relation.EQUAL)
        base = hosts.base_name(host)
        dot = base.find(".")
        while dot != -1:  # each parent domain, nearest first (hosts.parents, inlined)
            key = "*" + base[dot:]
            value = names.get(key)
            if value is not None:
                for owner in owners_of(value):
                    yield Match(key, owner, Relation.COVERED_BY)
            dot = base.find(".", dot + 1)
        if self.partials:
            yield from self._partials_covering(host, base)
        if not wildcard:
            return
        parent = hosts.wildcard_parent(host)
        if hosts.is_partial_wildcard(host):
            yield from self._covered_by_partial(host, parent, examined)
            return
        for key, owner in self.names_under(parent):
            yield Match(key, owner, Relation.COVERS)
        yield from self._aliases_under(parent)

    def _partials_covering(self, host: str, base: str) -> Iterator[Match]:
        """Registered partial wildcards that cover ``host``: they lie in one of its parent
        domains, or at the root."""
        partials = self.partials
        for parent in itertools.chain(hosts.parents(base), ("",)):
            for key in partials.get(parent, ()):
                if key != host and hosts.covers(key, host):
                    for owner in owners_of(self.names.get(key)):
                        yield Match(key, owner, Relation.COVERED_BY)

    def _covered_by_partial(
        self, host: str, parent: str, examined: Allowance | None
    ) -> Iterator[Match]:
        """What a partial wildcard covers: the names and aliases in its parent domain that end
        with its suffix (each tested by name, before any Claim is made for it)."""

        def keep(key: str) -> bool:
            if key != host and hosts.covers(host, key):
                return True
            if examined is not None:
                examined.left -= 1
                if examined.left < 0:
                    raise _Spent
            return False

        try:
            for key, owner in self.names_under(parent, keep):
                yield Match(key, owner, Relation.COVERS)
            yield from self._aliases_under(parent, keep)
        except _Spent:
            return

    def names_under(
        self, domain: str, keep: Callable[[str], bool] | None = None
    ) -> Iterator[tuple[str, Claim]]:
        """(name, owner) for every registered name strictly inside ``domain`` (every name, for
        the root ""), Services' FQDNs included; only the names ``keep`` accepts, when given."""
        names = self.names
        keys = names if not domain else self.under.get(domain, ())
        for key in keys:
            if keep is None or keep(key):
                for owner in owners_of(names.get(key)):
                    yield key, owner
        zone = "svc." + self.cluster_domain
        for namespace in self._namespaces_under(domain, zone):
            for name, profile in self.services.get(namespace, {}).items():
                key = f"{name}.{namespace}.{zone}"
                if keep is None or keep(key):
                    yield key, service_claim_of(namespace, name, profile, self.cluster_domain)

    def _namespaces_under(self, domain: str, zone: str) -> Iterable[str]:
        """The namespaces whose Services' FQDNs lie strictly inside ``domain``."""
        if not domain or domain == zone or zone.endswith("." + domain):
            return self.services  # the zone or a domain above it: every Service
        if domain.endswith("." + zone):
            namespace = domain[: -len(zone) - 1]
            if "." not in namespace:
                return (namespace,)
        return ()

    def _service(self, namespace: str, name: str) -> Claim | None:
        table = self.services.get(namespace)
        profile = table.get(name) if table is not None else None
        if profile is not None:
            return service_claim_of(namespace, name, profile, self.cluster_domain)
        found: Claim | None = self.objects.get((claims_mod.SERVICE, namespace, name))
        return found

    def _service_of_fqdn(self, host: str) -> Claim | None:
        """The Service whose FQDN ``host`` is (``name.ns.svc.<domain>``), when its names follow
        from it (Services listed another way hold their names in ``names``)."""
        found = servicenames.of_fqdn(host, self.cluster_domain)
        if found is None:
            return None
        namespace, name = found
        table = self.services.get(namespace)
        profile = table.get(name) if table is not None else None
        if profile is None:
            return None
        return service_claim_of(namespace, name, profile, self.cluster_domain)

    def service_of_alias(self, host: str) -> Claim | None:
        """The Service whose alias ``host`` is: ``name.ns`` or ``name.ns.svc``."""
        found = servicenames.of_alias(host)
        return self._service(*found) if found is not None else None

    def _aliases_under(
        self, domain: str, keep: Callable[[str], bool] | None = None
    ) -> Iterator[Match]:
        """Service aliases strictly inside ``domain``: ``*.ns`` covers every ``name.ns``,
        ``*.ns.svc`` and ``*.svc`` cover ``name.ns.svc``. The Services come from the names under
        their namespace's zone, each the FQDN of its Service."""
        dot = domain.find(".")
        if not domain:  # the root: every alias
            yield from self._service_aliases(None, "", keep)
            yield from self._service_aliases(None, ".svc", keep)
        elif dot == -1:
            yield from self._service_aliases(domain, "", keep)
            if domain == "svc":
                yield from self._service_aliases(None, ".svc", keep)
        elif domain.endswith(".svc") and dot == len(domain) - 4:
            yield from self._service_aliases(domain[:dot], ".svc", keep)

    def _service_aliases(
        self, namespace: str | None, suffix: str, keep: Callable[[str], bool] | None = None
    ) -> Iterator[Match]:
        services = self.services
        domain = self.cluster_domain
        for ns in services if namespace is None else (namespace,):
            for name, profile in services.get(ns, {}).items():
                alias = f"{name}.{ns}{suffix}"
                if keep is None or keep(alias):
                    yield Match(alias, service_claim_of(ns, name, profile, domain), Relation.COVERS)
        # Services held as objects whose FQDN here is among their hosts: found by that FQDN.
        zone = f"svc.{self.cluster_domain}"
        if namespace is not None:
            zone = f"{namespace}.{zone}"
        names = self.names
        for key in self.under.get(zone, ()):
            for owner in owners_of(names.get(key)):
                if (
                    owner.kind == claims_mod.SERVICE
                    and (namespace is None or owner.namespace == namespace)
                    and key == service_fqdn(owner, domain)
                ):
                    alias = f"{owner.name}.{owner.namespace}{suffix}"
                    # Else found as a registered name already.
                    if alias not in owner.hosts and (keep is None or keep(alias)):
                        yield Match(alias, owner, Relation.COVERS)

    def owners(self, name: str) -> tuple[Claim, ...]:
        """The owners of exactly this registered host, a Service's FQDN included (aliases are
        not registered names)."""
        found = owners_of(self.names.get(name))
        service = self._service_of_fqdn(name)
        return found if service is None else (service, *found)

    def services_called(
        self, label: str, namespaces: Container[str] | None = None
    ) -> Iterator[Claim]:
        """The Services named ``label`` in ``namespaces`` (None: in every namespace): the ones
        whose short name ``label`` is, for the proxies of their namespace."""
        for namespace in _spaces(self.service_names.get(label)):
            if namespaces is None or namespace in namespaces:
                service = self._service(namespace, label)
                if service is not None:
                    yield service

    def service_names_ending(self, suffix: str, examined: Allowance | None = None) -> Iterator[str]:
        """The names of Services that end with ``suffix`` (what a partial wildcard of one label,
        ``*eviews``, covers), each name examined taking one off ``examined``."""
        for name in self.service_names:
            if examined is not None:
                examined.left -= 1
                if examined.left < 0:
                    return
            if name.endswith(suffix):
                yield name

    def service_names_in(self, namespace: str) -> Iterator[str]:
        """The names of the Services of ``namespace`` whose FQDN is in this cluster's domain."""
        yield from self.services.get(namespace, ())
        zone = f"{namespace}.svc.{self.cluster_domain}"
        for key in self.under.get(zone, ()):
            for owner in owners_of(self.names.get(key)):
                if (
                    owner.kind == claims_mod.SERVICE
                    and owner.namespace == namespace
                    and key == service_fqdn(owner, self.cluster_domain)
                ):
                    yield owner.name

    def namespace_names(self) -> Iterator[str]:
        """Every namespace the registry knows of: those listed, and those holding Services."""
        yield from self.namespaces
        for namespace in self.services:
            if namespace not in self.namespaces:
                yield namespace

    def has_namespace(self, namespace: str) -> bool:
        return namespace in self.namespaces or namespace in self.services

    def service_with_ip(self, ip: str) -> Claim | None:
        """The Service whose cluster IP ``ip`` is, if any."""
        key = ip_key(ip)
        owner = self.cluster_ips.get(key) if key is not None else None
        if owner is None:
            return None
        if isinstance(owner, str):  # a namespace: the Service is in its table
            for name, profile in self.services.get(owner, {}).items():
                if key in _keys(held_ips(profile)):
                    return service_claim_of(owner, name, profile, self.cluster_domain)
            return None
        claim: Claim | None = self.objects.get(owner)
        if claim is not None and key in map(ip_key, claim.cluster_ips):
            return claim
        return None

    def labels_of(self, namespace: str) -> Labels:
        return self.namespaces.get(namespace, frozenset())

    def get(self, kind: str, namespace: str, name: str) -> Claim | None:
        if kind == claims_mod.SERVICE:
            return self._service(namespace, name)
        found: Claim | None = self.objects.get((kind, namespace, name))
        return found

    def __len__(self) -> int:
        return len(self.objects) + self.service_count

    def count(self, kind: str) -> int:
        held = self.object_counts.get(kind, 0)
        return held + self.service_count if kind == claims_mod.SERVICE else held


class RegistryBuilder:
    """The mutable side: apply objects and deletions, then take an immutable ``snapshot()``.

    Values of ``names`` are small, replaced on change. A domain in ``under`` may
    hold 100,000 names, so a change does not copy its tuple: it goes into an ordered set of
    pending changes for that domain, and the tuple is rebuilt once, when ``under`` or a snapshot
    is next read. A burst of events then costs one copy per domain, not one per event.

    A snapshot shares the builder's dictionaries (copy on write): the builder copies them only
    when it changes next, so a quiet registry is held once, not twice.
    """

    def __init__(self, cluster_domain: str = "cluster.local") -> None:
        self.cluster_domain = cluster_domain
        self._shared = False
        # The big dictionaries a snapshot still shares (see _own), and the namespaces whose
        # Service table is this builder's own since the last snapshot.
        self._shared_big: set[str] = set()
        self._owned_tables: set[str] = set()
        self.names: dict[str, Owners] = {}
        self._under: dict[str, tuple[str, ...]] = {}
        self._pending: dict[str, dict[str, None]] = {}
        self.objects = ObjectTable()
        self.services: dict[str, dict[str, Held]] = {}
        self.service_count = 0
        self.object_counts: dict[str, int] = {}
        self.namespaces: dict[str, Labels] = {}
        self.skipped: dict[ClaimKey, Skipped] = {}
        self.generation = 0
        self.cluster_ips: dict[IpKey, IpOwner] = {}
        self.partials: dict[str, tuple[str, ...]] = {}
        self.service_names: dict[str, str | tuple[str, ...]] = {}
        self._interned: dict[Any, Any] = {}

    @property
    def claims(self) -> ClaimsView:
        return ClaimsView.of(self)

    def _own(self) -> None:
        """Copy the small dictionaries a snapshot shares, before changing any of them. The big
        ones (names, objects, Services, cluster IPs, Service names: hundreds of thousands of
        entries at 100k) are copied only when a change touches them, and the Services one
        namespace's table at a time (``_own_big``, ``_own_table``): copying them all after
        each snapshot held the GIL for about 10 ms, several times a second under churn."""
        if self._shared:
            self._under = self._under.copy()
            self.namespaces = self.namespaces.copy()
            self.skipped = self.skipped.copy()
            self.partials = self.partials.copy()
            self._shared = False

    def _own_big(self, field: str) -> None:
        if field in self._shared_big:
            self._shared_big.discard(field)
            # dict.copy(), not dict(): a dict that has seen deletions is copied by dict() one
            # entry at a time (3.5 ms for 40,000 names in the server under churn), by copy()
            # as one block (about 1 ms), both in a single C call that holds the GIL throughout.
            setattr(self, field, getattr(self, field).copy())

    def _own_table(self, namespace: str) -> dict[str, Held] | None:
        """The namespace's Service table, ours to change (None when it has none)."""
        if "services" in self._shared_big:
            self._shared_big.discard("services")
            self.services = self.services.copy()  # the tables themselves are still shared
            self._owned_tables = set()
        table = self.services.get(namespace)
        if table is not None and namespace not in self._owned_tables:
            table = self.services[namespace] = table.copy()
            self._owned_tables.add(namespace)
        return table

    @property
    def under(self) -> dict[str, tuple[str, ...]]:
        if self._pending:
            self._own()
        for domain, inside in self._pending.items():
            if inside:
                self._under[domain] = tuple(inside)
            else:
                self._under.pop(domain, None)
        self._pending.clear()
        return self._under

    def _domain(self, domain: str) -> dict[str, None]:
        pending = self._pending.get(domain)
        if pending is None:
            pending = self._pending[domain] = dict.fromkeys(self._under.get(domain, ()))
        return pending

    # --- whole objects, as a source sees them ---------------------------------------------

    def apply(self, obj: Mapping[str, Any], *, source: str = "") -> None:
        """Add or replace a Service, ServiceEntry or Namespace (other kinds are ignored)."""
        claim = self._admit(obj, source)
        if claim is not None:
            self.put_claim(claim)

    def _admit(self, obj: Mapping[str, Any], source: str) -> Claim | None:
        """The claim to index for ``obj``, recording why when it cannot be used (or only in
        part). Namespaces update the labels and give None."""
        kind = claims_mod.kind_of(obj)
        if kind is None:
            return None
        self._own()
        if kind == claims_mod.NAMESPACE:
            name = claims_mod.object_name(obj)
            if name:
                self.namespaces[name] = claims_mod.namespace_labels(obj)
            return None
        claim = self.claim_of(kind, obj, source)
        key = claim.key
        self.skipped.pop(key, None)
        if not claim.name or claim.problems:
            self.remove_claim(key)
            reason = "; ".join(claim.problems) or "object has no name"
            self.skipped[key] = Skipped(kind, claim.namespace, claim.name, source, reason)
            return None
        if claim.invalid:
            index, raw, why = claim.invalid[0]
            more = f" (and {len(claim.invalid) - 1} more)" if len(claim.invalid) > 1 else ""
            self.skipped[key] = Skipped(
                kind,
                claim.namespace,
                claim.name,
                source,
                f"spec.hosts[{index}] {raw!r} {why}{more}; its other hosts are kept",
            )
        return claim

    def delete(self, obj: Mapping[str, Any]) -> None:
        kind = claims_mod.kind_of(obj)
        if kind is None:
            return
        name = claims_mod.object_name(obj)
        self._own()
        if kind == claims_mod.NAMESPACE:
            self.namespaces.pop(name, None)
            return
        key = (kind, claims_mod.object_namespace(obj), name)
        self.skipped.pop(key, None)
        self.remove_claim(key)

    def shared(self, value: Any) -> Any:
        """The one copy of ``value`` this registry holds (see SHARED_MAX)."""
        found = self._interned.get(value)
        if found is not None:
            return found
        if len(self._interned) < SHARED_MAX:
            self._interned[value] = value
        return value

    def _derived(self) -> RegistryBuilder:
        """An empty builder for the same cluster that shares this one's values."""
        builder = RegistryBuilder(cluster_domain=self.cluster_domain)
        builder.generation = self.generation
        builder._interned = self._interned
        return builder

    def claim_of(self, kind: str, obj: Mapping[str, Any], source: str) -> Claim:
        # Thousands of objects share each namespace: one string per namespace, not per object.
        namespace = self.shared(claims_mod.object_namespace(obj))
        if kind == claims_mod.SERVICE:
            return claims_mod.service_claim(
                obj, cluster_domain=self.cluster_domain, source=source, namespace=namespace
            )
        return claims_mod.service_entry_claim(obj, source=source, namespace=namespace)

    @classmethod
    def bulk(
        cls, objects: Iterable[tuple[str, Mapping[str, Any]]], *, cluster_domain: str
    ) -> RegistryBuilder:
        """Index many objects at once, several times faster than applying them one by one.

        ``objects`` yields (source, object) pairs. The last object with a given kind, namespace
        and name wins, as it would in a watch.
        """
        builder = cls(cluster_domain=cluster_domain)
        held = ObjectTable()
        services: dict[str, dict[str, Held]] = {}
        for source, obj in objects:
            claim = builder._admit(obj, source)
            if claim is None:
                kind = claims_mod.kind_of(obj)
                if kind is not None and kind != claims_mod.NAMESPACE:
                    # A later, unusable version replaces an earlier good one.
                    namespace = claims_mod.object_namespace(obj)
                    name = claims_mod.object_name(obj)
                    _drop((kind, namespace, name), held, services)
                continue
            # A compact Service is reduced at once: its Claim, key and FQDN are never kept.
            _drop((claim.kind, claim.namespace, claim.name), held, services)
            _hold(claim, held, services, cluster_domain, builder.shared)
        builder._index(held, services)
        return builder

    def replace_kind(
        self, kind: str, objects: Iterable[Mapping[str, Any]], *, source: str
    ) -> RegistryBuilder:
        """A new builder in which every object of ``kind`` from ``source`` is replaced by
        ``objects`` (a relist: whatever is not listed is gone). Everything else is kept."""
        fresh = RegistryBuilder.bulk(
            ((source, obj) for obj in objects), cluster_domain=self.cluster_domain
        )
        return self.merge_kind(kind, fresh, source=source)

    def merge_kind(self, kind: str, fresh: RegistryBuilder, *, source: str) -> RegistryBuilder:
        """``replace_kind`` with the new objects already indexed in ``fresh`` (so the slow part,
        listing and indexing, can happen outside any lock)."""
        builder = self._derived()
        if kind == claims_mod.NAMESPACE:
            builder.namespaces = fresh.namespaces
        else:
            builder.namespaces = dict(self.namespaces)
        held = ObjectTable(
            claim for claim in self.objects.claims() if claim.kind != kind or claim.source != source
        )
        services = _services_without(self.services, source if kind == claims_mod.SERVICE else None)
        for claim in fresh.objects.claims():
            _drop(claim.key, held, services)
            held.put(claim)
        for namespace, table in fresh.services.items():
            for name, profile in table.items():
                _drop((claims_mod.SERVICE, namespace, name), held, services)
                # One profile object for the many Services without a cluster IP (see _profile).
                kept = profile if held_ips(profile) else builder.shared(profile)
                services.setdefault(namespace, {})[name] = kept
        builder.skipped = {
            key: s for key, s in self.skipped.items() if key[0] != kind or s.source != source
        }
        builder.skipped.update(fresh.skipped)
        builder._index(held, services)
        return builder

    def replace_claims(self, source: str, claims: Iterable[Claim]) -> RegistryBuilder:
        """A new builder in which every claim of ``source`` is replaced by ``claims``. A claim
        whose key another source already holds is left out: the other source is closer to the
        object (the cluster itself, or the manifests)."""
        builder = self._derived()
        builder.namespaces = dict(self.namespaces)
        builder.skipped = dict(self.skipped)
        held = ObjectTable(claim for claim in self.objects.claims() if claim.source != source)
        services = _services_without(self.services, source)
        for claim in claims:
            key = claim.key
            table = services.get(claim.namespace) if claim.kind == claims_mod.SERVICE else None
            if key in held or (table is not None and claim.name in table):
                continue
            _hold(claim, held, services, self.cluster_domain, builder.shared)
        builder._index(held, services)
        return builder

    def _index(self, held: ObjectTable, services: dict[str, dict[str, Held]]) -> None:
        """Every index from the objects held and the Services' tables, in one pass: lists while
        building, tuples at the end."""
        names: dict[str, list[Claim]] = {}
        under: dict[str, list[str]] = {}
        for claim in held.claims():
            for name in self._names_of(claim):
                owners = names.get(name)
                if owners is not None:
                    owners.append(claim)
                    continue
                names[name] = [claim]
                for domain in _domains_above(name):
                    inside = under.get(domain)
                    if inside is None:
                        under[domain] = [name]
                    else:
                        inside.append(name)
        self.objects = held
        self.services = services
        self._owned_tables = set(services)  # made for this builder: its own
        self.service_count = sum(len(table) for table in services.values())
        self.object_counts = held.counts()
        self.names = {k: v[0] if len(v) == 1 else tuple(v) for k, v in names.items()}
        self._under = {k: tuple(v) for k, v in under.items()}
        self._pending = {}
        self.partials = {}
        self.service_names = {}
        for claim in held.claims():
            if claim.kind == claims_mod.SERVICE:
                self._add_name(claim.name, claim.namespace)
        for namespace, table in services.items():
            for name in table:
                self._add_name(name, namespace)
        for name in names:
            if hosts.is_partial_wildcard(name):
                self._add_partial(name)
        self.cluster_ips = {}
        for claim in held.claims():
            if claim.cluster_ips:
                self._add_ips(_packed(claim.cluster_ips), claim.key)
        for namespace, table in services.items():
            for profile in table.values():
                ips = held_ips(profile)
                if ips is not None:
                    self._add_ips(ips, namespace)

    def _add_ips(self, packed: PackedIps, owner: IpOwner) -> None:
        keys = _keys(packed)
        if keys:
            self._own_big("cluster_ips")
        for key in keys:
            self.cluster_ips[key] = owner

    def _drop_ips(self, packed: PackedIps, owner: IpOwner) -> None:
        for key in _keys(packed):
            if self.cluster_ips.get(key) != owner:
                continue
            # Another Service of the namespace may list the same address (cluster IPs are unique
            # in a cluster, but manifests may hold anything): the address stays its.
            table = self.services.get(owner) if isinstance(owner, str) else None
            if table is None or not any(key in _keys(held_ips(p)) for p in table.values()):
                self._own_big("cluster_ips")
                del self.cluster_ips[key]

    def _add_name(self, name: str, namespace: str) -> None:
        self._own_big("service_names")
        found = self.service_names.get(name)
        if found is None:
            self.service_names[name] = namespace
        elif namespace not in _spaces(found):
            self.service_names[name] = (*_spaces(found), namespace)

    def _drop_name(self, name: str, namespace: str) -> None:
        self._own_big("service_names")
        left = tuple(ns for ns in _spaces(self.service_names.get(name)) if ns != namespace)
        if not left:
            self.service_names.pop(name, None)
        else:
            self.service_names[name] = left[0] if len(left) == 1 else left

    def _add_partial(self, name: str) -> None:
        parent = hosts.wildcard_parent(name)
        self.partials[parent] = (*self.partials.get(parent, ()), name)

    def _drop_partial(self, name: str) -> None:
        parent = hosts.wildcard_parent(name)
        left = tuple(key for key in self.partials.get(parent, ()) if key != name)
        if left:
            self.partials[parent] = left
        else:
            self.partials.pop(parent, None)

    # --- claims ----------------------------------------------------------------------------

    def _names_of(self, claim: Claim) -> tuple[str, ...]:
        """The names a claim held as an object registers. A Service's aliases are derived from
        its namespace and name when one of its hosts is its FQDN here; a Service without it
        (from istiod: a remote cluster with another domain) registers its aliases as names, as
        they cannot be found from an FQDN."""
        if (
            claim.kind == claims_mod.SERVICE
            and service_fqdn(claim, self.cluster_domain) not in claim.hosts
        ):
            # An alias istiod also lists as a host is one name, registered once.
            return tuple(dict.fromkeys(claim.hosts + claim.aliases))
        return claim.hosts

    def put_claim(self, claim: Claim) -> None:
        self._own()
        self.remove_claim(claim.key)
        if claim.kind == claims_mod.SERVICE:
            self._add_name(claim.name, claim.namespace)
        if is_compact(claim, self.cluster_domain):
            self._own_table(claim.namespace)
        else:
            self._own_big("objects")
        if _hold(claim, self.objects, self.services, self.cluster_domain, self.shared):
            self._owned_tables.add(claim.namespace)  # a table _hold made is ours
            self.service_count += 1
            self._add_ips(held_ips(self.services[claim.namespace][claim.name]), claim.namespace)
            return
        self.object_counts[claim.kind] = self.object_counts.get(claim.kind, 0) + 1
        self._add_ips(_packed(claim.cluster_ips), claim.key)
        self._own_big("names")
        for name in self._names_of(claim):
            existing = self.names.get(name)
            if existing is None:
                self.names[name] = claim
                for domain in _domains_above(name):
                    self._domain(domain)[name] = None
                if hosts.is_partial_wildcard(name):
                    self._add_partial(name)
            else:
                self.names[name] = (*owners_of(existing), claim)

    def remove_claim(self, key: ClaimKey) -> None:
        self._own()
        if key[0] == claims_mod.SERVICE:
            table = self.services.get(key[1])
            if table is not None and key[2] in table:
                table = self._own_table(key[1])
            profile = table.pop(key[2], None) if table is not None else None
            if table is not None and profile is not None:
                self.service_count -= 1
                self._drop_ips(held_ips(profile), key[1])
                self._drop_name(key[2], key[1])
                if not table:
                    del self.services[key[1]]
                return
        if self.objects.find(key) is None:
            return
        self._own_big("objects")
        claim = self.objects.pop(key)
        assert claim is not None
        self.object_counts[key[0]] -= 1
        self._drop_ips(_packed(claim.cluster_ips), key)
        if claim.kind == claims_mod.SERVICE:
            self._drop_name(claim.name, claim.namespace)
        self._own_big("names")
        for name in self._names_of(claim):
            left = tuple(o for o in owners_of(self.names.get(name)) if o.key != key)
            if left:
                self.names[name] = left[0] if len(left) == 1 else left
                continue
            self.names.pop(name, None)
            for domain in _domains_above(name):
                self._domain(domain).pop(name, None)
            if hosts.is_partial_wildcard(name):
                self._drop_partial(name)

    def snapshot(self) -> Snapshot:
        """An immutable snapshot: it shares the builder's dictionaries, which the builder copies
        before it next changes them (copy on write)."""
        self.generation += 1
        snapshot = self._snapshot(self.under)  # applies pending domain changes first
        self._shared = True
        self._shared_big = set(_BIG)
        return snapshot

    def view(self) -> Snapshot:
        """The registry as it is now, over the builder's own dictionaries: nothing is copied,
        now or at the next change, so it is right only until that change. For one thread that
        judges and changes in turn (``seguard check``: an allowed manifest joins the registry
        for the next one); a snapshot after each change would copy the whole index each time."""
        self.generation += 1
        return self._snapshot(_PendingUnder(self._under, self._pending))

    def _snapshot(self, under: Mapping[str, tuple[str, ...]]) -> Snapshot:
        return Snapshot(
            cluster_domain=self.cluster_domain,
            names=self.names,
            under=under,
            objects=self.objects,
            services=self.services,
            service_count=self.service_count,
            object_counts=dict(self.object_counts),
            namespaces=self.namespaces,
            skipped=tuple(self.skipped.values()),
            generation=self.generation,
            cluster_ips=self.cluster_ips,
            partials=self.partials,
            service_names=self.service_names,
        )


class _PendingUnder(Mapping[str, tuple[str, ...]]):
    """A builder's names under each domain, its pending changes included, for a ``view``: a
    domain with changes is made into a tuple when it is read (for a wildcard host), not at
    each change, and the changes stay pending."""

    __slots__ = ("_pending", "_under")

    def __init__(
        self, under: Mapping[str, tuple[str, ...]], pending: Mapping[str, dict[str, None]]
    ) -> None:
        self._under = under
        self._pending = pending

    def __getitem__(self, domain: str) -> tuple[str, ...]:
        inside = self._pending.get(domain)
        if inside is None:
            return self._under[domain]
        if not inside:
            raise KeyError(domain)
        return tuple(inside)

    def __iter__(self) -> Iterator[str]:
        for domain in self._under:
            if self._pending.get(domain, True):
                yield domain
        for domain, inside in self._pending.items():
            if inside and domain not in self._under:
                yield domain

    def __len__(self) -> int:
        return sum(1 for _ in self)


# The dictionaries a builder copies only when a change touches them (see RegistryBuilder._own).
_BIG = ("names", "objects", "services", "cluster_ips", "service_names")


def _drop(key: ClaimKey, held: ObjectTable, services: dict[str, dict[str, Held]]) -> None:
    """Forget ``key`` in whichever table holds it."""
    if held.pop(key) is None and key[0] == claims_mod.SERVICE:
        table = services.get(key[1])
        if table is not None and table.pop(key[2], None) is not None and not table:
            del services[key[1]]


def _hold(
    claim: Claim,
    held: ObjectTable,
    services: dict[str, dict[str, Held]],
    cluster_domain: str,
    shared: Shared,
) -> bool:
    """Keep ``claim``: a compact Service in its namespace's table (True), anything else whole."""
    if is_compact(claim, cluster_domain):
        table = services.get(claim.namespace)
        if table is None:
            table = services[claim.namespace] = {}
        table[claim.name] = _profile(claim, shared)
        return True
    held.put(claim)
    return False


def _services_without(services: Services, source: str | None) -> dict[str, dict[str, Held]]:
    """A copy of the Services' tables, without those of ``source`` (None: all kept)."""
    copy: dict[str, dict[str, Held]] = {}
    for namespace, table in services.items():
        kept = (
            dict(table)
            if source is None
            else {name: held for name, held in table.items() if _held_source(held) != source}
        )
        if kept:
            copy[namespace] = kept
    return copy


def service_fqdn(claim: Claim, cluster_domain: str) -> str:
    """The name a Service has in this cluster's domain (its aliases follow from it)."""
    return servicenames.fqdn(claim.name, claim.namespace, cluster_domain)


def _domains_above(name: str) -> Iterator[str]:
    """The domains a registered name lies strictly inside: for a wildcard, those of its base."""
    return hosts.parents(hosts.base_name(name))


def _spaces(found: str | tuple[str, ...] | None) -> tuple[str, ...]:
    """The namespaces a ``service_names`` value holds."""
    if found is None:
        return ()
    return (found,) if type(found) is str else found  # type: ignore[return-value]


class _Spent(Exception):
    """A request's count of names looked at ran out in the middle of a walk."""
