"""The context an object is judged in (pure): the request's bounds, where the object and each
owner are visible, and how old each owner is, since the oldest owner of a host is the rightful
one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from webhook.core.claims import SERVICE_ENTRY, Claim
from webhook.core.policy import Policy, Rules
from webhook.core.registry import Allowance, Snapshot

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
    # Registered names this request may still match, and names it may still look at without a
    # match: the request's own two allowances, counted down by every rule (see the bounds above).
    budget: Allowance
    examined: Allowance
    # Owners to leave out besides the object itself: ServiceEntries younger than the one judged
    # (see ``younger_than``), because the oldest owner of a host is the rightful one.
    skip: Callable[[Claim], bool] | None = None
    # Hosts judged against every owner whatever ``skip`` says: those an UPDATE adds, or all of
    # them when it widens exportTo (see ``newcomer_hosts``).
    newcomers: frozenset[str] = frozenset()
    # The meshDefaultExportTo of another namespace's entries, when namespace rules set their
    # own; None when every namespace has the global one (then ``rules`` holds it).
    export_default_of: Callable[[str], tuple[str, ...]] | None = None

    @property
    def cluster_domain(self) -> str:
        return self.snapshot.cluster_domain

    def owner_export_default(self, namespace: str) -> tuple[str, ...]:
        lookup = self.export_default_of
        return self.rules.mesh_default_export_to if lookup is None else lookup(namespace)

    def services_called(self, label: str) -> Iterator[Claim]:
        """The Services named ``label`` in the namespaces that can see the object."""
        seen = self.visibility
        return self.snapshot.services_called(label, None if "*" in seen else seen)


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

Age = tuple[int, str, str]
# Where an entry without a creationTimestamp stands: after every entry that has one.
UNKNOWN_AGE = 1 << 62


def age_of(created_s: int | None, namespace: str, name: str) -> Age:
    """Where an entry stands among the owners of its hosts, oldest first: by creationTimestamp
    (in seconds; an entry without one, from manifests, sorts last). Ties (the timestamp counts
    whole seconds) go to the namespace, then the name: Istio's SortServicesByCreationTime
    breaks them by hostname and then namespace, which for the owners of one hostname is the
    namespace."""
    return (UNKNOWN_AGE if created_s is None else created_s, namespace, name)


def claim_age(claim: Claim) -> Age:
    return age_of(claim.created_s, claim.namespace, claim.name)


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
