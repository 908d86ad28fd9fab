"""The context of a judgement: visibility, the contest between two entries, ages and newcomers,
effective exportTo, and the request's two allowances."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import make_namespace, make_policy, make_service_entry, make_snapshot
from webhook.core import context
from webhook.core.claims import Claim, service_entry_claim, timestamp_seconds


def entry(namespace: str, hosts: list[str], **kwargs: Any) -> Claim:
    return service_entry_claim(make_service_entry("e", namespace, hosts, **kwargs))


@pytest.mark.parametrize(
    ("export_to", "default", "seen"),
    [
        pytest.param(None, ["*"], {"*"}, id="the-default-when-none-is-written"),
        pytest.param(["."], ["*"], {"team-a"}, id="dot-is-the-own-namespace"),
        pytest.param([".", "team-b"], ["*"], {"team-a", "team-b"}, id="several-namespaces"),
        pytest.param(["team-b", "*"], ["."], {"*"}, id="star-outranks-everything"),
        pytest.param(["~"], ["*"], set(), id="tilde-hides-it"),
        pytest.param(["~", "*"], ["*"], {"*"}, id="star-outranks-tilde"),
        pytest.param(None, ["."], {"team-a"}, id="a-private-default"),
    ],
)  # fmt: skip
def test_visibility_reads_export_to_as_istio_does(
    export_to: list[str] | None, default: list[str], seen: set[str]
) -> None:
    assert context.visibility(export_to, "team-a", default) == frozenset(seen)


@pytest.mark.parametrize(
    ("a", "b", "contested"),
    [
        pytest.param({"*"}, {"*"}, True, id="both-public"),
        pytest.param({"team-a"}, {"team-b"}, False, id="each-private-at-home"),
        pytest.param({"team-a"}, {"*"}, False, id="a-private-entry-wins-at-home"),
        pytest.param({"team-a", "team-c"}, {"*"}, True, id="exported-to-a-third-namespace"),
        pytest.param({"team-b"}, {"team-b"}, False, id="b-at-home-sees-its-own-first"),
        pytest.param({"team-c"}, {"team-c"}, True, id="both-exported-to-a-third-namespace"),
        pytest.param({"*"}, {"team-a"}, True, id="a-public-entry-is-not-protected-at-home"),
        pytest.param(set(), {"*"}, False, id="a-hidden-entry-contests-nothing"),
    ],
)  # fmt: skip
def test_two_entries_are_contested_where_some_namespace_sees_both_and_neither_is_at_home(
    a: set[str], b: set[str], contested: bool
) -> None:
    assert context.contested(frozenset(a), "team-a", frozenset(b), "team-b") is contested
    assert context.contested(frozenset(b), "team-b", frozenset(a), "team-a") is contested


def test_an_update_holds_as_newcomers_the_hosts_it_adds() -> None:
    before = entry("team-a", ["a.example.com"])
    after = entry("team-a", ["a.example.com", "b.example.com"])
    assert context.newcomer_hosts(after, before, ["*"]) == {"b.example.com"}
    assert context.newcomer_hosts(after, None, ["*"]) == {"a.example.com", "b.example.com"}


def test_an_update_that_exports_further_holds_every_host_as_a_newcomer() -> None:
    before = entry("team-a", ["a.example.com"], export_to=["."])
    wider = entry("team-a", ["a.example.com"], export_to=[".", "team-b"])
    narrower = entry("team-a", ["a.example.com"], export_to=["~"])
    assert context.newcomer_hosts(wider, before, ["*"]) == {"a.example.com"}
    assert context.newcomer_hosts(narrower, before, ["*"]) == frozenset()


def test_effective_export_to_is_the_entrys_or_its_namespace_rules_default() -> None:
    policy = make_policy(
        meshDefaultExportTo=["*"],
        namespaces=[
            {"selector": {"matchLabels": {"tier": "private"}}, "meshDefaultExportTo": ["."]}
        ],
    )
    snapshot = make_snapshot(make_namespace("quiet", {"tier": "private"}))
    assert context.effective_export_to(entry("quiet", ["a.example"]), policy, snapshot) == (".",)
    assert context.effective_export_to(entry("loud", ["a.example"]), policy, snapshot) == ("*",)
    written = entry("quiet", ["a.example"], export_to=["team-b"])
    assert context.effective_export_to(written, policy, snapshot) == ("team-b",)


def test_each_context_has_allowances_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    claim = entry("team-a", ["a.example.com"])
    policy = make_policy()
    snapshot = make_snapshot()
    monkeypatch.setattr(context, "MAX_EXAMINED_PER_REQUEST", 7)
    one = context.context_for(claim, name="e", rules=policy.rules, snapshot=snapshot)
    two = context.context_for(claim, name="e", rules=policy.rules, snapshot=snapshot)
    one.examined.left -= 5
    assert (two.examined.left, two.examined.limit) == (7, 7)
    assert (one.examined.left, one.examined.limit) == (2, 7)
    assert one.budget is not two.budget
    assert one.budget.limit == context.MAX_MATCHES_PER_REQUEST


@pytest.mark.parametrize(
    ("a", "b", "younger"),
    [
        pytest.param(("2026-01-01T00:00:00Z", "ns-b", "x"), ("2026-01-02T00:00:00Z", "ns-a", "x"), True, id="a-later-timestamp-is-younger"),
        pytest.param(("2026-01-01T00:00:00Z", "ns-b", "x"), ("2026-01-01T00:00:00Z", "ns-a", "x"), False, id="in-one-second-the-earlier-namespace-is-older"),
        pytest.param(("2026-01-01T00:00:00Z", "ns-a", "x"), ("", "ns-a", "a"), True, id="an-entry-without-a-timestamp-is-younger-than-any-with-one"),
    ],
)  # fmt: skip
def test_age_orders_by_time_then_namespace_then_name(
    a: tuple[str, str, str], b: tuple[str, str, str], younger: bool
) -> None:
    owner = make_snapshot(
        make_service_entry(
            b[2], b[1], ["h.example.com"], metadata={"creationTimestamp": b[0]} if b[0] else {}
        )
    ).objects[("ServiceEntry", b[1], b[2])]
    skip = context.younger_than(context.age_of(timestamp_seconds(a[0]), a[1], a[2]))
    assert skip is not None and skip(owner) is younger
    assert context.younger_than(None) is None
