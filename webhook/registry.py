"""The registry: every name in the mesh, indexed for constant-time lookups (pure).

A ``Snapshot`` is immutable: readers hold one for a whole decision while a writer builds the next
and swaps it in whole. Three indexes make a lookup cost the same for 100 entries and for 100,000:

- ``names``: every registered host (exact or wildcard) -> its owners;
- ``under``: every domain -> the registered names strictly inside it, so a new wildcard finds the
  names it would cover with one dictionary read;
- ``claims``: every object by (kind, namespace, name). It answers the Service aliases Istio adds as
  route domains (``name.ns``, ``name.ns.svc``, and a single label inside its own namespace): an
  alias names its Service's namespace and name, so aliases need no index of their own (at 100,000
  entries one would take about 16 MB).

An exact host is checked with one read plus one read per parent domain (the wildcards that might
cover it), and one more when it has the shape of an alias; a wildcard adds one read of ``under``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

from webhook import claims as claims_mod
from webhook import hosts
from webhook.claims import Claim

Labels = frozenset[tuple[str, str]]
ClaimKey = tuple[str, str, str]  # (kind, namespace, name)


class Relation(Enum):
    EQUAL = "equal"  # the registered name is the host
    COVERED_BY = "covered_by"  # a registered wildcard covers the host
    COVERS = "covers"  # the host (a wildcard) covers the registered name


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


@dataclass(frozen=True, slots=True)
class Snapshot:
    cluster_domain: str
    names: Mapping[str, Owners]
    under: Mapping[str, tuple[str, ...]]
    claims: Mapping[ClaimKey, Claim]
    namespaces: Mapping[str, Labels]
    skipped: tuple[Skipped, ...] = ()
    generation: int = 0

    def matches(self, host: str) -> Iterator[Match]:
        """Registered names that overlap ``host``: the equal name, then wildcards that cover it,
        then (for a wildcard host) the names it covers. Lazy, so a caller may stop early."""
        names = self.names
        equal = owners_of(names.get(host))
        for owner in equal:
            yield Match(host, owner, Relation.EQUAL)
        wildcard = host.startswith(hosts.WILDCARD_PREFIX)
        if not wildcard:
            service = self.service_of_alias(host)
            # A Service whose aliases are registered names (see _names_of) is already there.
            if service is not None and all(owner is not service for owner in equal):
                yield Match(host, service, Relation.EQUAL)
        base = hosts.base_name(host)
        for parent in hosts.parents(base):
            key = "*." + parent
            value = names.get(key)
            if value is not None:
                for owner in owners_of(value):
                    yield Match(key, owner, Relation.COVERED_BY)
        if wildcard:
            for key in self.under.get(base, ()):
                for owner in owners_of(names.get(key)):
                    yield Match(key, owner, Relation.COVERS)
            yield from self._aliases_under(base)

    def service_of_alias(self, host: str) -> Claim | None:
        """The Service whose alias ``host`` is: ``name.ns`` or ``name.ns.svc``."""
        first = host.find(".")
        if first == -1:
            return None
        second = host.find(".", first + 1)
        if second == -1:
            namespace = host[first + 1 :]
        elif host.endswith(".svc") and second == len(host) - 4:
            namespace = host[first + 1 : second]
        else:
            return None
        return self.claims.get((claims_mod.SERVICE, namespace, host[:first]))

    def _aliases_under(self, domain: str) -> Iterator[Match]:
        """Service aliases strictly inside ``domain``: ``*.ns`` covers every ``name.ns``,
        ``*.ns.svc`` and ``*.svc`` cover ``name.ns.svc``. The Services come from the names under
        their namespace's zone, each the FQDN of its Service."""
        dot = domain.find(".")
        if dot == -1:
            yield from self._service_aliases(domain, "")
            if domain == "svc":
                yield from self._service_aliases(None, ".svc")
        elif domain.endswith(".svc") and dot == len(domain) - 4:
            yield from self._service_aliases(domain[:dot], ".svc")

    def _service_aliases(self, namespace: str | None, suffix: str) -> Iterator[Match]:
        zone = f"svc.{self.cluster_domain}"
        if namespace is not None:
            zone = f"{namespace}.{zone}"
        names = self.names
        domain = self.cluster_domain
        for key in self.under.get(zone, ()):
            for owner in owners_of(names.get(key)):
                if (
                    owner.kind == claims_mod.SERVICE
                    and (namespace is None or owner.namespace == namespace)
                    and key == service_fqdn(owner, domain)
                ):
                    yield Match(f"{owner.name}.{owner.namespace}{suffix}", owner, Relation.COVERS)

    def owners(self, name: str) -> tuple[Claim, ...]:
        """The owners of exactly this registered host (aliases are not registered names)."""
        return owners_of(self.names.get(name))

    def services_named(self, namespace: str, label: str) -> tuple[Claim, ...]:
        """Services whose short name ``label`` is an alias inside ``namespace``."""
        service = self.claims.get((claims_mod.SERVICE, namespace, label))
        return (service,) if service is not None else ()

    def labels_of(self, namespace: str) -> Labels:
        return self.namespaces.get(namespace, frozenset())

    def get(self, kind: str, namespace: str, name: str) -> Claim | None:
        return self.claims.get((kind, namespace, name))

    def __len__(self) -> int:
        return len(self.claims)

    def count(self, kind: str) -> int:
        return sum(1 for key in self.claims if key[0] == kind)


def empty_snapshot(cluster_domain: str = "cluster.local") -> Snapshot:
    return Snapshot(cluster_domain=cluster_domain, names={}, under={}, claims={}, namespaces={})


class RegistryBuilder:
    """The mutable side: apply objects and deletions, then take an immutable ``snapshot()``.

    Values of ``names`` are small, replaced on change. A domain in ``under`` may
    hold 100,000 names (``svc.cluster.local``), so a change does not copy its tuple: it goes into
    an ordered set of pending changes for that domain, and the tuple is rebuilt once, when
    ``under`` or a snapshot is next read. A burst of events then costs one copy per domain, not
    one per event.

    A snapshot shares the builder's dictionaries (copy on write): the builder copies them only
    when it changes next, so a quiet registry is held once, not twice.
    """

    def __init__(self, cluster_domain: str = "cluster.local") -> None:
        self.cluster_domain = cluster_domain
        self._shared = False
        self.names: dict[str, Owners] = {}
        self._under: dict[str, tuple[str, ...]] = {}
        self._pending: dict[str, dict[str, None]] = {}
        self.claims: dict[ClaimKey, Claim] = {}
        self.namespaces: dict[str, Labels] = {}
        self.skipped: dict[ClaimKey, Skipped] = {}
        self.generation = 0

    def _own(self) -> None:
        """Copy the dictionaries a snapshot shares, before changing any of them."""
        if self._shared:
            self.names = dict(self.names)
            self._under = dict(self._under)
            self.claims = dict(self.claims)
            self.namespaces = dict(self.namespaces)
            self.skipped = dict(self.skipped)
            self._shared = False

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

    def claim_of(self, kind: str, obj: Mapping[str, Any], source: str) -> Claim:
        if kind == claims_mod.SERVICE:
            return claims_mod.service_claim(obj, cluster_domain=self.cluster_domain, source=source)
        return claims_mod.service_entry_claim(obj, source=source)

    @classmethod
    def bulk(
        cls, objects: Iterable[tuple[str, Mapping[str, Any]]], *, cluster_domain: str
    ) -> RegistryBuilder:
        """Index many objects at once, several times faster than applying them one by one.

        ``objects`` yields (source, object) pairs. The last object with a given kind, namespace
        and name wins, as it would in a watch.
        """
        builder = cls(cluster_domain=cluster_domain)
        latest: dict[ClaimKey, Claim] = {}
        for source, obj in objects:
            claim = builder._admit(obj, source)
            if claim is not None:
                latest.pop(claim.key, None)
                latest[claim.key] = claim
                continue
            kind = claims_mod.kind_of(obj)
            if kind is not None and kind != claims_mod.NAMESPACE:
                # A later, unusable version replaces an earlier good one.
                key = (kind, claims_mod.object_namespace(obj), claims_mod.object_name(obj))
                latest.pop(key, None)
        builder._index(latest)
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
        builder = RegistryBuilder(cluster_domain=self.cluster_domain)
        builder.generation = self.generation
        if kind == claims_mod.NAMESPACE:
            builder.namespaces = fresh.namespaces
        else:
            builder.namespaces = dict(self.namespaces)
        kept = {
            key: claim
            for key, claim in self.claims.items()
            if key[0] != kind or claim.source != source
        }
        kept.update(fresh.claims)
        builder.skipped = {
            key: s for key, s in self.skipped.items() if key[0] != kind or s.source != source
        }
        builder.skipped.update(fresh.skipped)
        builder._index(kept)
        return builder

    def replace_claims(self, source: str, claims: Iterable[Claim]) -> RegistryBuilder:
        """A new builder in which every claim of ``source`` is replaced by ``claims``. A claim
        whose key another source already holds is left out: the other source is closer to the
        object (the cluster itself, or the manifests)."""
        builder = RegistryBuilder(cluster_domain=self.cluster_domain)
        builder.generation = self.generation
        builder.namespaces = dict(self.namespaces)
        builder.skipped = dict(self.skipped)
        kept = {key: claim for key, claim in self.claims.items() if claim.source != source}
        for claim in claims:
            kept.setdefault(claim.key, claim)
        builder._index(kept)
        return builder

    def _index(self, claims: dict[ClaimKey, Claim]) -> None:
        """Every index from ``claims`` in one pass: lists while building, tuples at the end."""
        names: dict[str, list[Claim]] = {}
        under: dict[str, list[str]] = {}
        for claim in claims.values():
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
        self.claims = claims
        self.names = {k: v[0] if len(v) == 1 else tuple(v) for k, v in names.items()}
        self._under = {k: tuple(v) for k, v in under.items()}
        self._pending = {}

    # --- claims ----------------------------------------------------------------------------

    def _names_of(self, claim: Claim) -> tuple[str, ...]:
        """The names ``claim`` registers. A Service's aliases are derived from its namespace and
        name when one of its hosts is its FQDN here; a Service without it (from istiod: a remote
        cluster with another domain) registers its aliases as names, as they cannot be found
        from an FQDN."""
        if (
            claim.kind == claims_mod.SERVICE
            and service_fqdn(claim, self.cluster_domain) not in claim.hosts
        ):
            return claim.hosts + claim.aliases
        return claim.hosts

    def put_claim(self, claim: Claim) -> None:
        self._own()
        key = claim.key
        if key in self.claims:
            self.remove_claim(key)
        self.claims[key] = claim
        for name in self._names_of(claim):
            existing = self.names.get(name)
            if existing is None:
                self.names[name] = claim
                for domain in _domains_above(name):
                    self._domain(domain)[name] = None
            else:
                self.names[name] = (*owners_of(existing), claim)

    def remove_claim(self, key: ClaimKey) -> None:
        self._own()
        claim = self.claims.pop(key, None)
        if claim is None:
            return
        for name in self._names_of(claim):
            left = tuple(o for o in owners_of(self.names.get(name)) if o.key != key)
            if left:
                self.names[name] = left[0] if len(left) == 1 else left
                continue
            self.names.pop(name, None)
            for domain in _domains_above(name):
                self._domain(domain).pop(name, None)

    def snapshot(self) -> Snapshot:
        self.generation += 1
        under = self.under  # applies pending domain changes first
        self._shared = True
        return Snapshot(
            cluster_domain=self.cluster_domain,
            names=self.names,
            under=under,
            claims=self.claims,
            namespaces=self.namespaces,
            skipped=tuple(self.skipped.values()),
            generation=self.generation,
        )


def service_fqdn(claim: Claim, cluster_domain: str) -> str:
    """The name a Service has in this cluster's domain (its aliases follow from it)."""
    return f"{claim.name}.{claim.namespace}.svc.{cluster_domain}"


def _domains_above(name: str) -> Iterator[str]:
    """The domains a registered name lies strictly inside: for a wildcard, those of its base."""
    return hosts.parents(hosts.base_name(name))


def build_snapshot(
    objects: Iterable[tuple[str, Mapping[str, Any]]], *, cluster_domain: str
) -> Snapshot:
    """Index many objects at once; see ``RegistryBuilder.bulk``."""
    return RegistryBuilder.bulk(objects, cluster_domain=cluster_domain).snapshot()
