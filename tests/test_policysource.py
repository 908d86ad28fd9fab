"""The policy as a resource (policysource.py), against the fake API server: a spec put in force,
a bad edit refused while the last good policy stays, status per generation across two replicas
(each writes only its own report; only the Lease holder writes the conditions), objects other
than ``default`` refused, and no CRD at all."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakeapi import Cluster, FakeApiServer
from webhook import kube
from webhook.audit import AuditLog
from webhook.policysource import PolicyResource
from webhook.runtime import Runtime


class Lines:
    name = "lines"

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.records += [json.loads(line) for line in data.splitlines()]

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[FakeApiServer, kube.Transport]]:
    server = FakeApiServer(Cluster())
    server.start()
    yield server, kube.connect(server.kubeconfig(tmp_path / "kc"))
    server.stop()


def policy_object(spec: dict[str, Any], name: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "seguard.io/v1alpha1",
        "kind": "ServiceEntryPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def replica(
    transport: kube.Transport, identity: str, *, leading: bool, clock: Clock
) -> tuple[PolicyResource, Runtime, Lines]:
    lines = Lines()
    runtime = Runtime(audit=AuditLog([lines]))
    from webhook.core.policyfile import default_policy

    runtime.set_policy(default_policy())
    source = PolicyResource(
        transport, runtime, leading=lambda: leading, identity=identity, clock=clock
    )
    return source, runtime, lines


def stored(server: FakeApiServer, name: str = "default") -> dict[str, Any]:
    with server.cluster.lock:
        obj = server.cluster.objects["ServiceEntryPolicy"][("", name)]
        return dict(obj)


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in obj["status"]["conditions"] if c["type"] == kind]
    [one] = found
    return one


def test_the_default_object_is_put_in_force_and_its_status_says_so(
    api: tuple[FakeApiServer, kube.Transport],
) -> None:
    server, transport = api
    server.cluster.put(policy_object({"mode": "Warn", "hosts": {"allowed": ["*.example.com"]}}))
    source, runtime, _ = replica(transport, "seguard-a", leading=True, clock=Clock())
    assert runtime.readiness()[0] is False or not runtime.policy_synced  # not read yet
    source.step()
    assert runtime.policy_synced
    assert runtime.policy is not None and str(runtime.policy.rules.mode) == "Warn"
    assert runtime.policy.rules.hosts.allowed == ("*.example.com",)
    assert runtime.policy.source == "serviceentrypolicy/default generation 1"
    source.step()  # the status it wrote is read back
    obj = stored(server)
    assert obj["status"]["observedGeneration"] == 1
    assert obj["status"]["replicas"]["seguard-a"]["servingGeneration"] == 1
    assert condition(obj, "Accepted")["status"] == "True"
    enforced = condition(obj, "Enforced")
    assert (enforced["status"], enforced["message"]) == (
        "True",
        "1 of 1 replicas serve generation 1",
    )


def test_a_bad_edit_is_refused_with_a_condition_and_the_last_good_policy_stays(
    api: tuple[FakeApiServer, kube.Transport],
) -> None:
    server, transport = api
    server.cluster.put(policy_object({"mode": "Warn"}))
    source, runtime, lines = replica(transport, "seguard-a", leading=True, clock=Clock())
    source.step()
    in_force = runtime.policy_generation
    server.cluster.put(policy_object({"mode": "Sometimes"}))
    source.step()
    source.step()
    assert runtime.policy_generation == in_force  # the last good one
    assert runtime.policy is not None and str(runtime.policy.rules.mode) == "Warn"
    assert "spec.mode" in runtime.policy_error
    obj = stored(server)
    assert obj["metadata"]["generation"] == 2
    accepted = condition(obj, "Accepted")
    assert (accepted["status"], accepted["reason"], accepted["observedGeneration"]) == (
        "False",
        "Invalid",
        2,
    )
    assert "spec.mode: expected one of Enforce | Warn | Audit" in accepted["message"]
    enforced = condition(obj, "Enforced")
    assert enforced["status"] == "False" and enforced["reason"] == "Refused"
    assert enforced["message"] == (
        "0 of 1 replicas serve generation 2; the others serve generation 1"
    )
    [record] = [r for r in lines.records if r["event"] == "policy.rejected"]
    assert record["file"] == "serviceentrypolicy/default generation 2"
    # Fixed: taken at once, and the conditions follow.
    server.cluster.put(policy_object({"mode": "Audit"}))
    source.step()
    source.step()
    assert runtime.policy is not None and str(runtime.policy.rules.mode) == "Audit"
    assert condition(stored(server), "Accepted")["status"] == "True"


def connect(server: FakeApiServer, folder: Path, token: str) -> kube.Transport:
    return kube.connect(server.kubeconfig(folder / f"kc-{token}", token=token))


def test_enforced_counts_every_replica_and_only_the_lease_holder_writes_conditions(
    api: tuple[FakeApiServer, kube.Transport], tmp_path: Path
) -> None:
    server, _ = api
    clock = Clock()
    server.cluster.put(policy_object({"mode": "Warn"}))
    leader, _, _ = replica(connect(server, tmp_path, "a"), "seguard-a", leading=True, clock=clock)
    other, other_runtime, _ = replica(
        connect(server, tmp_path, "b"), "seguard-b", leading=False, clock=clock
    )
    for source in (leader, other, leader):
        source.step()
    assert condition(stored(server), "Enforced")["message"] == "2 of 2 replicas serve generation 1"
    server.cluster.put(policy_object({"mode": "Audit"}))
    leader.step()
    leader.step()
    enforced = condition(stored(server), "Enforced")
    assert (enforced["status"], enforced["reason"], enforced["message"]) == (
        "False",
        "Rolling",
        "1 of 2 replicas serve generation 2; the others serve generation 1",
    )
    other.step()
    leader.step()
    assert other_runtime.policy is not None and str(other_runtime.policy.rules.mode) == "Audit"
    enforced = condition(stored(server), "Enforced")
    assert (enforced["status"], enforced["message"]) == (
        "True",
        "2 of 2 replicas serve generation 2",
    )
    # The replica that does not hold the Lease wrote its own entry and nothing else.
    from_other = [patch for token, _, patch in server.cluster.status_patches if token == "b"]
    assert from_other
    for patch in from_other:
        assert list(patch["status"]) == ["replicas"] and list(patch["status"]["replicas"]) == ["seguard-b"]  # fmt: skip
    from_leader = [patch for token, _, patch in server.cluster.status_patches if token == "a"]
    assert any("conditions" in patch["status"] for patch in from_leader)
    # A replica that stops reporting is no longer counted, and its entry is removed.
    clock.now += 200
    leader._reported = None  # its own report is due again
    leader.step()
    leader.step()
    obj = stored(server)
    assert set(obj["status"]["replicas"]) == {"seguard-a"}
    assert condition(obj, "Enforced")["message"] == "1 of 1 replicas serve generation 2"


def test_an_object_not_named_default_is_refused_and_changes_nothing(
    api: tuple[FakeApiServer, kube.Transport],
) -> None:
    server, transport = api
    server.cluster.put(policy_object({"mode": "Warn"}))
    server.cluster.put(policy_object({"mode": "Audit"}, name="team-x"))
    source, runtime, _ = replica(transport, "seguard-a", leading=True, clock=Clock())
    source.step()
    assert runtime.policy is not None and str(runtime.policy.rules.mode) == "Warn"
    accepted = condition(stored(server, "team-x"), "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "NotInForce")
    assert "only the ServiceEntryPolicy named default is in force" in accepted["message"]
    assert "replicas" not in stored(server, "team-x")["status"]


def test_without_the_crd_the_built_in_policy_is_in_force_and_that_is_logged_once(
    api: tuple[FakeApiServer, kube.Transport], caplog: pytest.LogCaptureFixture
) -> None:
    server, transport = api
    server.cluster.missing.add("ServiceEntryPolicy")
    source, runtime, _ = replica(transport, "seguard-a", leading=True, clock=Clock())
    with caplog.at_level(logging.INFO, logger="seguard.policy"):
        source.step()
        source.step()
    assert runtime.policy_synced and runtime.policy is not None
    assert runtime.policy.source == "built-in"
    missing = [r for r in caplog.records if getattr(r, "event", "") == "policy.resource.missing"]
    assert len(missing) == 1
    # The CRD appears, with a policy: read at once.
    server.cluster.missing.discard("ServiceEntryPolicy")
    server.cluster.put(policy_object({"mode": "Audit"}))
    source.step()
    assert str(runtime.policy.rules.mode) == "Audit"


def test_with_no_default_object_the_built_in_policy_is_in_force(
    api: tuple[FakeApiServer, kube.Transport],
) -> None:
    server, transport = api
    server.cluster.put(policy_object({"mode": "Audit"}))
    source, runtime, _ = replica(transport, "seguard-a", leading=True, clock=Clock())
    source.step()
    assert runtime.policy is not None and str(runtime.policy.rules.mode) == "Audit"
    server.cluster.delete("ServiceEntryPolicy", "", "default")
    source.step()
    assert str(runtime.policy.rules.mode) == "Enforce"
    assert runtime.policy.source.startswith("built-in")
