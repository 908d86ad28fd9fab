"""The scan of existing ServiceEntries: conflicts that got in anyway (pure).

A conflict can enter the registry while the webhook is down (failurePolicy Ignore), through a
race between two replicas admitting two creates of one host at once, or before seguard was
installed. The scan judges every ServiceEntry in the registry as the webhook would, oldest first:
as in Istio, the oldest owner of a host is the rightful one, so each entry is judged only against
the Services and the ServiceEntries created before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from webhook.core import context, rules
from webhook.core.claims import SERVICE_ENTRY, Claim
from webhook.core.findings import Finding
from webhook.core.outcomes import DENIED
from webhook.core.policy import Mode, Policy
from webhook.core.registry import Snapshot
from webhook.core.review import outcome_of

# About a millisecond of judging between two pauses.
PAUSE_EVERY = 50


@dataclass(frozen=True, slots=True)
class Violation:
    namespace: str
    name: str
    created: str
    finding: Finding
    exempt: bool = False
    mode: Mode = Mode.ENFORCE  # the namespace's mode: what the webhook would do with it today

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        owner = self.finding.owner
        return (
            self.namespace,
            self.name,
            self.finding.code.value,
            self.finding.host,
            f"{owner.kind}/{owner.namespace}/{owner.name}" if owner else "",
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "created": self.created,
            "exempt": self.exempt,
            "mode": self.mode.value,
            **self.finding.as_dict(),
        }


def entries_by_age(snapshot: Snapshot) -> list[Claim]:
    return sorted(
        (claim for claim in snapshot.objects.values() if claim.kind == SERVICE_ENTRY),
        key=context.claim_age,
    )


def scan(
    snapshot: Snapshot, policy: Policy, *, pause: Callable[[], None] | None = None
) -> list[Violation]:
    """Every finding on every ServiceEntry, oldest entries first. ``pause`` is called every
    ``PAUSE_EVERY`` entries: the server's scan runs beside the event loop and must leave it
    room (a busy thread holds Python's GIL for up to 5 ms at a time)."""
    violations: list[Violation] = []
    for index, claim in enumerate(entries_by_age(snapshot)):
        if pause is not None and index % PAUSE_EVERY == PAUSE_EVERY - 1:
            pause()
        namespace_rules = policy.for_namespace(claim.namespace, snapshot.labels_of(claim.namespace))
        ctx = context.context_for(
            claim,
            name=claim.name,
            rules=namespace_rules,
            snapshot=snapshot,
            skip=context.younger_than(context.claim_age(claim)),
            policy=policy,
        )
        exempt = claim.namespace in namespace_rules.exemptions.namespaces
        violations.extend(
            Violation(
                claim.namespace, claim.name, claim.created, finding, exempt, namespace_rules.mode
            )
            for finding in rules.evaluate(claim, ctx)
        )
    return violations


def denying(violations: Iterable[Violation]) -> list[Violation]:
    """The violations the webhook would refuse today: invalid objects always; otherwise a Deny
    action, in a namespace whose mode is Enforce, from a requester that is not exempt."""
    return [v for v in violations if outcome_of(v.finding, v.mode, v.exempt) == DENIED]
