"""The status of ServiceEntryPolicy objects (pure): what each replica reports, and the
conditions the replica holding the scan Lease writes from those reports.

Every replica writes only its own entry of ``status.replicas`` (a JSON merge patch of one key),
and only the Lease holder writes ``status.conditions`` and ``status.observedGeneration``: no two
replicas write the same field, so they never fight over it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from webhook.core.policyschema import IN_FORCE

# A replica that has not reported for this long is taken for gone: it is not counted, and the
# Lease holder removes its entry. Replicas report at least every REPORT_EVERY_S.
REPORT_EVERY_S = 30.0
GONE_AFTER_S = 3 * REPORT_EVERY_S


class Report(NamedTuple):
    """What one replica serves: the generation of the object it last read, whether it took it,
    and the generation it enforces (the last it took)."""

    read: int
    accepted: bool
    serving: int
    seen: float  # when it reported, in seconds since the epoch

    def as_status(self) -> dict[str, Any]:
        return {
            "readGeneration": self.read,
            "accepted": self.accepted,
            "servingGeneration": self.serving,
            "lastReport": self.seen,
        }


def report_of(raw: object) -> Report | None:
    """A replica's entry as read back from the object's status, or None if it is not one."""
    if not isinstance(raw, Mapping):
        return None
    try:
        return Report(
            int(raw["readGeneration"]),
            bool(raw["accepted"]),
            int(raw["servingGeneration"]),
            float(raw["lastReport"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


class Verdict(NamedTuple):
    """What this replica made of an object's spec: None when it took it, else why not."""

    generation: int
    error: str | None


def conditions(
    name: str,
    generation: int,
    verdict: Verdict | None,
    replicas: Mapping[str, Report],
    *,
    now: float,
) -> list[dict[str, Any]]:
    """The conditions of the object ``name`` at ``generation``: Accepted (from this replica's
    own reading, the same on every replica) and Enforced (from every live replica's report)."""
    if name != IN_FORCE:
        return [
            _condition(
                "Accepted",
                False,
                "NotInForce",
                f"only the ServiceEntryPolicy named {IN_FORCE} is in force; move this spec "
                f"there, or delete this object",
                generation,
            )
        ]
    if verdict is None or verdict.generation != generation:
        accepted = _condition(
            "Accepted", None, "Pending", f"generation {generation} is not read yet", generation
        )
    elif verdict.error is None:
        accepted = _condition(
            "Accepted", True, "Valid", f"generation {generation} is valid", generation
        )
    else:
        accepted = _condition("Accepted", False, "Invalid", verdict.error, generation)
    live = {pod: r for pod, r in replicas.items() if now - r.seen <= GONE_AFTER_S}
    serving = sorted(pod for pod, r in live.items() if r.serving == generation)
    total = len(live)
    if total and len(serving) == total:
        enforced = _condition(
            "Enforced",
            True,
            "AllReplicas",
            f"{total} of {total} replicas serve generation {generation}",
            generation,
        )
    else:
        others = sorted({r.serving for r in live.values() if r.serving != generation})
        still = f"; the others serve generation {', '.join(map(str, others))}" if others else ""
        enforced = _condition(
            "Enforced",
            False,
            "Refused" if accepted["status"] == "False" else "Rolling",
            f"{len(serving)} of {total} replicas serve generation {generation}{still}",
            generation,
        )
    return [accepted, enforced]


def gone(replicas: Mapping[str, Report], *, now: float) -> list[str]:
    """The replicas whose entries the Lease holder removes: silent past GONE_AFTER_S."""
    return sorted(pod for pod, r in replicas.items() if now - r.seen > GONE_AFTER_S)


def _condition(
    kind: str, status: bool | None, reason: str, message: str, generation: int
) -> dict[str, Any]:
    shown = "Unknown" if status is None else ("True" if status else "False")
    return {
        "type": kind,
        "status": shown,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def with_transitions(
    wanted: list[dict[str, Any]], current: object, *, at: str
) -> list[dict[str, Any]]:
    """``wanted`` with each condition's lastTransitionTime: kept from ``current`` where its
    status did not change, else ``at``."""
    before: dict[str, Mapping[str, Any]] = {}
    if isinstance(current, list):
        before = {
            str(c.get("type")): c for c in current if isinstance(c, Mapping) and c.get("type")
        }
    stamped = []
    for condition in wanted:
        old = before.get(condition["type"])
        same = old is not None and old.get("status") == condition["status"]
        since = old.get("lastTransitionTime") if same and old is not None else at
        stamped.append({**condition, "lastTransitionTime": since or at})
    return stamped


def same_conditions(a: object, b: object) -> bool:
    """Whether two condition lists say the same, their times aside."""

    def plain(conditions: object) -> list[dict[str, Any]]:
        if not isinstance(conditions, list):
            return []
        return sorted(
            (
                {k: v for k, v in c.items() if k != "lastTransitionTime"}
                for c in conditions
                if isinstance(c, Mapping)
            ),
            key=lambda c: str(c.get("type")),
        )

    return plain(a) == plain(b)
