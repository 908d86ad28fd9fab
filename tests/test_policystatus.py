"""The ServiceEntryPolicy's conditions from the replicas' reports (core/policystatus.py)."""

from __future__ import annotations

from webhook.core import policystatus as ps

NOW = 1_800_000_000.0


def report(serving: int, *, read: int | None = None, ago: float = 1.0) -> ps.Report:
    return ps.Report(read if read is not None else serving, True, serving, NOW - ago)


def by_type(conditions: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {c["type"]: c for c in conditions}


def test_enforced_once_every_live_replica_serves_the_generation() -> None:
    replicas = {"a": report(3), "b": report(2), "gone": report(1, ago=ps.GONE_AFTER_S + 1)}
    found = by_type(ps.conditions("default", 3, ps.Verdict(3, None), replicas, now=NOW))
    assert found["Accepted"]["status"] == "True"
    assert (found["Enforced"]["status"], found["Enforced"]["reason"]) == ("False", "Rolling")
    assert found["Enforced"]["message"] == (
        "1 of 2 replicas serve generation 3; the others serve generation 2"
    )
    replicas["b"] = report(3)
    found = by_type(ps.conditions("default", 3, ps.Verdict(3, None), replicas, now=NOW))
    assert found["Enforced"]["message"] == "2 of 2 replicas serve generation 3"
    assert ps.gone(replicas, now=NOW) == ["gone"]


def test_a_refused_generation_says_why_and_is_never_enforced() -> None:
    replicas = {"a": report(2, read=3)}
    found = by_type(ps.conditions("default", 3, ps.Verdict(3, "spec.mode: no"), replicas, now=NOW))
    assert (found["Accepted"]["status"], found["Accepted"]["message"]) == ("False", "spec.mode: no")
    assert found["Enforced"]["reason"] == "Refused"
    assert all(c["observedGeneration"] == 3 for c in found.values())


def test_an_object_not_named_default_is_not_in_force() -> None:
    [only] = ps.conditions("team-x", 4, None, {}, now=NOW)
    assert (only["type"], only["status"], only["reason"]) == ("Accepted", "False", "NotInForce")


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = ps.with_transitions(
        ps.conditions("default", 1, ps.Verdict(1, None), {"a": report(1)}, now=NOW), None, at="T1"
    )
    again = ps.with_transitions(
        ps.conditions("default", 2, ps.Verdict(2, None), {"a": report(1)}, now=NOW),
        first,
        at="T2",
    )
    times = {c["type"]: c["lastTransitionTime"] for c in again}
    assert times == {"Accepted": "T1", "Enforced": "T2"}  # Enforced went True -> False
    assert ps.same_conditions(first, [dict(c, lastTransitionTime="X") for c in first])
    assert not ps.same_conditions(first, again)


def test_a_report_reads_back_or_is_left_out() -> None:
    assert ps.report_of(report(2).as_status()) == report(2)
    assert ps.report_of({"readGeneration": "x"}) is None
    assert ps.report_of("text") is None
