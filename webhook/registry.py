"""The registry: every name in the mesh, indexed for constant-time lookups (pure).

A ``Snapshot`` is immutable: readers hold one for a whole decision while a writer builds the next
and swaps it in whole. Three indexes make a lookup cost the same for 100 entries and for 100,000:

- ``names``: every registered host (exact or wildcard) and every Service alias -> its owners;
- ``under``: every domain -> the registered names strictly inside it, so a new wildcard finds the
  names it would cover with one dictionary read;
- ``short``: ``namespace/label`` -> Services, for single-label hosts that are aliases only inside
  their own namespace.

An exact host is checked with one read plus one read per parent domain (the wildcards that might
cover it); a wildcard adds one read of ``under``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from webhook import claims as claims_mod
from webhook import hosts
from webhook.claims import Claim

Labels = frozenset[tuple[str, str]]
ClaimKey = tuple[str, str, str]  # (kind, namespace, name)


class Relation(Enum):
    EQUAL = "equal"  # the registered name is the host
    COVERED_BY = "covered_by"  # a registered wildcard covers the host
    COVERS = "covers"  # the host (a wildcard) covers the registered name


@dataclass(frozen=True, slots=True)
class Match:
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


@dataclass(frozen=True, slots=True)
class Snapshot:
    cluster_domain: str
    names: Mapping[str, tuple[Claim, ...]]
    under: Mapping[str, tuple[str, ...]]
    short: Mapping[str, tuple[Claim, ...]]
    claims: Mapping[ClaimKey, Claim]
    namespaces: Mapping[str, Labels]
    skipped: tuple[Skipped, ...] = ()
    generation: int = 0

    def matches(self, host: str) -> Iterator[Match]:
        """Registered names that overlap ``host``: the equal name, then wildcards that cover it,
        then (for a wildcard host) the names it covers. Lazy, so a caller may stop early."""
        names = self.names
        for owner in names.get(host, ()):
            yield Match(host, owner, Relation.EQUAL)
        base = hosts.base_name(host)
        for parent in hosts.parents(base):
            key = "*." + parent
            for owner in names.get(key, ()):
                yield Match(key, owner, Relation.COVERED_BY)
        if host.startswith(hosts.WILDCARD_PREFIX):
            for key in self.under.get(base, ()):
                for owner in names.get(key, ()):
                    yield Match(key, owner, Relation.COVERS)

    def services_named(self, namespace: str, label: str) -> tuple[Claim, ...]:
        """Services whose short name ``label`` is an alias inside ``namespace``."""
        return self.short.get(f"{namespace}/{label}", ())

    def labels_of(self, namespace: str) -> Labels:
        return self.namespaces.get(namespace, frozenset())

    def get(self, kind: str, namespace: str, name: str) -> Claim | None:
        return self.claims.get((kind, namespace, name))

    def __len__(self) -> int:
        return len(self.claims)

    def count(self, kind: str) -> int:
        return sum(1 for key in self.claims if key[0] == kind)


def empty_snapshot(cluster_domain: str = "cluster.local") -> Snapshot:
    return Snapshot(
        cluster_domain=cluster_domain, names={}, under={}, short={}, claims={}, namespaces={}
    )


@dataclass
class RegistryBuilder:
    """The mutable side: apply objects and deletions, then take an immutable ``snapshot()``.

    Values in the index dictionaries are tuples that are replaced, never changed in place, so a
    snapshot only needs shallow copies of the dictionaries.
    """

    cluster_domain: str = "cluster.local"
    names: dict[str, tuple[Claim, ...]] = field(default_factory=dict)
    under: dict[str, tuple[str, ...]] = field(default_factory=dict)
    short: dict[str, tuple[Claim, ...]] = field(default_factory=dict)
    claims: dict[ClaimKey, Claim] = field(default_factory=dict)
    namespaces: dict[str, Labels] = field(default_factory=dict)
    skipped: dict[ClaimKey, Skipped] = field(default_factory=dict)
    generation: int = 0

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
        """Index many objects at once: lists while building, tuples once at the end, which is
        several times faster than applying them one by one.

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
        names: dict[str, list[Claim]] = {}
        under: dict[str, list[str]] = {}
        short: dict[str, list[Claim]] = {}
        for claim in latest.values():
            for name in claim.hosts + claim.aliases:
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
            if claim.kind == claims_mod.SERVICE:
                short.setdefault(f"{claim.namespace}/{claim.name}", []).append(claim)
        builder.claims = latest
        builder.names = {k: tuple(v) for k, v in names.items()}
        builder.under = {k: tuple(v) for k, v in under.items()}
        builder.short = {k: tuple(v) for k, v in short.items()}
        return builder

    # --- claims ----------------------------------------------------------------------------

    def put_claim(self, claim: Claim) -> None:
        key = claim.key
        if key in self.claims:
            self.remove_claim(key)
        self.claims[key] = claim
        for name in claim.hosts + claim.aliases:
            self.names[name] = (*self.names.get(name, ()), claim)
            if len(self.names[name]) == 1:
                for domain in _domains_above(name):
                    self.under[domain] = (*self.under.get(domain, ()), name)
        if claim.kind == claims_mod.SERVICE:
            short = f"{claim.namespace}/{claim.name}"
            self.short[short] = (*self.short.get(short, ()), claim)

    def remove_claim(self, key: ClaimKey) -> None:
        claim = self.claims.pop(key, None)
        if claim is None:
            return
        for name in claim.hosts + claim.aliases:
            left = tuple(owner for owner in self.names.get(name, ()) if owner.key != key)
            if left:
                self.names[name] = left
                continue
            self.names.pop(name, None)
            for domain in _domains_above(name):
                inside = tuple(other for other in self.under.get(domain, ()) if other != name)
                if inside:
                    self.under[domain] = inside
                else:
                    self.under.pop(domain, None)
        if claim.kind == claims_mod.SERVICE:
            short = f"{claim.namespace}/{claim.name}"
            left_short = tuple(o for o in self.short.get(short, ()) if o.key != key)
            if left_short:
                self.short[short] = left_short
            else:
                self.short.pop(short, None)

    def snapshot(self) -> Snapshot:
        self.generation += 1
        return Snapshot(
            cluster_domain=self.cluster_domain,
            names=dict(self.names),
            under=dict(self.under),
            short=dict(self.short),
            claims=dict(self.claims),
            namespaces=dict(self.namespaces),
            skipped=tuple(self.skipped.values()),
            generation=self.generation,
        )


def _domains_above(name: str) -> Iterator[str]:
    """The domains a registered name lies strictly inside: for a wildcard, those of its base."""
    return hosts.parents(hosts.base_name(name))


def build_snapshot(
    objects: Iterable[tuple[str, Mapping[str, Any]]], *, cluster_domain: str
) -> Snapshot:
    """Index many objects at once; see ``RegistryBuilder.bulk``."""
    return RegistryBuilder.bulk(objects, cluster_domain=cluster_domain).snapshot()
