"""The ServiceEntryPolicy: the built-in default, precise errors, namespace rules and merging."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.factories import make_policy
from webhook.core.policy import Action, Mode
from webhook.core.policyfile import (
    DEFAULT_POLICY_YAML,
    PolicyError,
    default_policy,
    parse_policy,
    parse_policy_text,
)


def document(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "seguard.io/v1alpha1", "kind": "ServiceEntryPolicy", "spec": spec}


def test_the_built_in_default_is_the_design_document() -> None:
    policy = default_policy()
    rules = policy.rules
    assert policy.cluster_domain == "cluster.local"
    assert rules.mode is Mode.ENFORCE
    assert rules.mesh_default_export_to == ("*",)
    assert rules.exemptions.namespaces == frozenset({"istio-system"})
    assert rules.exemptions.users == rules.exemptions.groups == frozenset()
    assert rules.hosts.allowed == rules.hosts.denied == ()
    assert rules.hosts.wildcards is Action.ALLOW
    assert rules.hosts.public_suffix_wildcards is Action.DENY
    c = rules.conflicts
    assert (c.kubernetes_service, c.kubernetes_service_same_namespace, c.service_entry) == (
        Action.DENY,
        Action.WARN,
        Action.DENY,
    )
    assert (c.service_entry_same_namespace, c.wildcard_overlap, c.reserved_cluster_domain) == (
        Action.WARN,
        Action.WARN,
        Action.DENY,
    )
    assert (rules.defaults.location, rules.defaults.resolution, rules.defaults.export_to) == (
        "MESH_EXTERNAL",
        "Auto",
        None,
    )
    assert rules.audit.record_allowed is False
    assert rules.hosts.partial_wildcards is Action.WARN
    targets = rules.targets
    assert [str(n) for n in targets.denied_networks] == [
        "169.254.0.0/16",
        "fe80::/10",
        "127.0.0.0/8",
        "::1/128",
        "0.0.0.0/8",
        "fd00:ec2::254/128",
    ]
    assert targets.denied_hosts == ("metadata.google.internal", "metadata.azure.internal")
    assert (targets.min_prefix_ipv4, targets.min_prefix_ipv6, targets.action) == (
        8,
        32,
        Action.DENY,
    )
    # The payments rule of the design's document is an example, not a default.
    assert policy.namespace_rules == ()
    assert parse_policy_text(DEFAULT_POLICY_YAML).rules == rules
    # A policy that leaves targets out gets the same built-in targets.
    assert parse_policy(document(mode="Enforce")).rules.targets == targets


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        pytest.param({**document(), "spek": {}}, "policy.spek", id="unknown-top-level-field"),
        pytest.param(document(mode="Enforce", hostz={}), "spec.hostz", id="unknown-spec-field"),
        pytest.param(document(mode="Sometimes"), "spec.mode", id="bad-mode"),
        pytest.param(document(hosts={"allowed": ["*.*.com"]}), "spec.hosts.allowed[0]", id="bad-allowed-pattern"),
        pytest.param(document(hosts={"denied": ["1.2.3.4"]}), "spec.hosts.denied[0]", id="ip-in-denied"),
        pytest.param(document(hosts={"wildcards": "Maybe"}), "spec.hosts.wildcards", id="bad-action"),
        pytest.param(document(conflicts={"serviceEntry": "Block"}), "spec.conflicts.serviceEntry", id="bad-conflict-action"),
        pytest.param(document(conflicts={"services": "Deny"}), "spec.conflicts.services", id="unknown-conflict"),
        pytest.param(document(meshDefaultExportTo=["*", "ns1"]), "spec.meshDefaultExportTo", id="star-with-others"),
        pytest.param(document(meshDefaultExportTo=["ns_1"]), "spec.meshDefaultExportTo[0]", id="bad-namespace-in-export-to"),
        pytest.param(document(meshDefaultExportTo=[]), "spec.meshDefaultExportTo", id="empty-export-to"),
        pytest.param(document(defaults={"exportTo": []}), "spec.defaults.exportTo", id="empty-default-export-to"),
        pytest.param(document(defaults={"resolution": "Guess"}), "spec.defaults.resolution", id="bad-default-resolution"),
        pytest.param(document(defaults={"location": "MESH_SOMEWHERE"}), "spec.defaults.location", id="bad-default-location"),
        pytest.param(document(audit={"recordAllowed": "yes"}), "spec.audit.recordAllowed", id="bad-boolean"),
        pytest.param(document(clusterDomain="*.local"), "spec.clusterDomain", id="wildcard-cluster-domain"),
        pytest.param(document(scan={"interval": "soon"}), "spec.scan.interval", id="bad-duration"),
        pytest.param(document(namespaces=[{"selector": {}, "clusterDomain": "x.local"}]), "spec.namespaces[0].clusterDomain", id="mesh-wide-field-per-namespace"),
        pytest.param(document(namespaces=[{"selector": {}, "scan": {"interval": "1m"}}]), "spec.namespaces[0].scan", id="scan-per-namespace"),
        pytest.param(document(namespaces=[{"selector": {}, "meshDefaultExportTo": ["*", "."]}]), "spec.namespaces[0].meshDefaultExportTo", id="bad-mesh-default-per-namespace"),
        pytest.param(document(namespaces=[{"mode": "Warn"}]), "spec.namespaces[0].selector", id="rule-without-selector"),
        pytest.param(document(namespaces=[{"selector": {"matchExpressions": [{"key": "t", "operator": "Near"}]}}]), "spec.namespaces[0].selector.matchExpressions[0].operator", id="bad-operator"),
        pytest.param(document(namespaces=[{"selector": {"matchExpressions": [{"key": "t", "operator": "In"}]}}]), "spec.namespaces[0].selector.matchExpressions[0].values", id="in-without-values"),
        pytest.param(document(namespaces=[{"selector": {"matchExpressions": [{"key": "t", "operator": "Exists", "values": ["x"]}]}}]), "spec.namespaces[0].selector.matchExpressions[0].values", id="exists-with-values"),
        pytest.param(document(namespaces=[{"selector": {"names": ["Not_A_Name"]}}]), "spec.namespaces[0].selector.names[0]", id="bad-namespace-name"),
        pytest.param({**document(), "apiVersion": "v1"}, "apiVersion", id="wrong-api-version"),
        pytest.param({**document(), "kind": "Policy"}, "kind", id="wrong-kind"),
        pytest.param(["a", "list"], "policy", id="not-an-object"),
        pytest.param(document(hosts={"partialWildcards": "Sometimes"}), "spec.hosts.partialWildcards", id="bad-partial-wildcards-action"),
        pytest.param(document(targets={"deny": []}), "spec.targets.deny", id="unknown-targets-field"),
        pytest.param(document(targets={"denied": ["169.254.0.1/16"]}), "spec.targets.denied[0]", id="a-cidr-with-host-bits"),
        pytest.param(document(targets={"denied": ["300.1.2.3"]}), "spec.targets.denied[0]", id="not-an-ip"),
        pytest.param(document(targets={"denied": ["fe80::/129"]}), "spec.targets.denied[0]", id="an-ipv6-prefix-too-long"),
        pytest.param(document(targets={"denied": ["bad_host.example"]}), "spec.targets.denied[0]", id="not-a-host-pattern"),
        pytest.param(document(targets={"denied": "169.254.0.0/16"}), "spec.targets.denied", id="denied-not-a-list"),
        pytest.param(document(targets={"minPrefixLength": {"ipv4": 33}}), "spec.targets.minPrefixLength.ipv4", id="an-ipv4-prefix-over-32"),
        pytest.param(document(targets={"minPrefixLength": {"ipv6": -1}}), "spec.targets.minPrefixLength.ipv6", id="a-negative-prefix"),
        pytest.param(document(targets={"minPrefixLength": {"ipv4": True}}), "spec.targets.minPrefixLength.ipv4", id="a-boolean-prefix"),
        pytest.param(document(targets={"minPrefixLength": {"ipv5": 8}}), "spec.targets.minPrefixLength.ipv5", id="an-unknown-ip-version"),
        pytest.param(document(targets={"action": "Block"}), "spec.targets.action", id="bad-targets-action"),
        pytest.param(document(namespaces=[{"selector": {}, "targets": {"action": "Block"}}]), "spec.namespaces[0].targets.action", id="bad-targets-action-per-namespace"),
    ],
)  # fmt: skip
def test_bad_policies_name_the_field(doc: Any, path: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(doc)
    assert any(error.startswith(path + ":") for error in caught.value.errors), caught.value.errors


def test_a_namespace_rule_may_set_its_own_mesh_default_export_to() -> None:
    policy = parse_policy(
        document(
            meshDefaultExportTo=["*"],
            namespaces=[{"selector": {"names": ["team-a"]}, "meshDefaultExportTo": ["."]}],
        )
    )
    assert policy.export_default_of("team-a") == (".",)
    assert policy.export_default_of("team-b") == ("*",)
    assert policy.export_defaults_vary


def test_a_copy_with_other_namespace_rules_answers_with_its_own_rules() -> None:
    """A copy made with dataclasses.replace shares nothing that remembers the old answers."""
    policy = parse_policy(
        document(namespaces=[{"selector": {"names": ["team-a"]}, "meshDefaultExportTo": ["."]}])
    )
    assert policy.export_default_of("team-a") == (".",)  # asked once, before the copy
    copy = dataclasses.replace(policy, namespace_rules=())
    assert copy.export_default_of("team-a") == ("*",)
    assert policy.export_default_of("team-a") == (".",)
    assert policy.with_generation(7).export_default_of("team-a") == (".",)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("spec: [unclosed", "not valid YAML at line 1", id="yaml-that-does-not-parse"),
        pytest.param("a: 1\n---\nb: 2\n", "exactly one YAML document, found 2", id="two-documents"),
    ],
)
def test_policy_text_errors(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        parse_policy_text(text)


def test_every_error_is_reported_at_once() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(document(mode="X", hosts={"wildcards": "Y"}, conflicts={"serviceEntry": "Z"}))
    assert len(caught.value.errors) == 3


LABELLED = {"team": "payments", "tier": "gold"}


@pytest.mark.parametrize(
    ("selector", "namespace", "labels", "matches"),
    [
        pytest.param({"names": ["payments"]}, "payments", {}, True, id="by-name"),
        pytest.param({"names": ["payments"]}, "billing", {}, False, id="by-name-other"),
        pytest.param({"matchLabels": {"team": "payments"}}, "x", LABELLED, True, id="by-label"),
        pytest.param({"matchLabels": {"team": "payments", "tier": "silver"}}, "x", LABELLED, False, id="all-labels-must-match"),
        pytest.param({"names": ["payments"], "matchLabels": {"team": "payments"}}, "payments", {}, False, id="names-and-labels-both-needed"),
        pytest.param({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold", "silver"]}]}, "x", LABELLED, True, id="in"),
        pytest.param({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gold"]}]}, "x", LABELLED, False, id="not-in"),
        pytest.param({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gold"]}]}, "x", {}, True, id="not-in-matches-a-missing-label"),
        pytest.param({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, "x", LABELLED, True, id="exists"),
        pytest.param({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, "x", LABELLED, False, id="does-not-exist"),
        pytest.param({}, "anything", {}, True, id="an-empty-selector-matches-all"),
    ],
)  # fmt: skip
def test_namespace_selectors(
    selector: dict[str, Any], namespace: str, labels: dict[str, str], matches: bool
) -> None:
    policy = make_policy(namespaces=[{"selector": selector, "mode": "Audit"}])
    rules = policy.for_namespace(namespace, frozenset(labels.items()))
    assert (rules.mode is Mode.AUDIT) is matches


def test_the_first_matching_rule_applies() -> None:
    policy = make_policy(
        namespaces=[
            {"selector": {"matchLabels": {"tier": "gold"}}, "mode": "Warn"},
            {"selector": {"matchLabels": {"team": "payments"}}, "mode": "Audit"},
        ]
    )
    assert policy.for_namespace("x", frozenset(LABELLED.items())).mode is Mode.WARN
    assert policy.for_namespace("x", frozenset({("team", "payments")})).mode is Mode.AUDIT
    assert policy.for_namespace("x", frozenset()).mode is Mode.ENFORCE


def test_a_namespace_rule_adds_lists_and_overrides_the_rest() -> None:
    policy = make_policy(
        hosts={"allowed": ["*.global.example"], "denied": ["bad.example"], "wildcards": "Allow"},
        exemptions={"users": ["admin"]},
        namespaces=[
            {
                "selector": {"names": ["team-x"]},
                "hosts": {"allowed": ["*.team-x.example"], "wildcards": "Deny"},
                "exemptions": {"groups": ["release"]},
                "conflicts": {"serviceEntry": "Warn"},
                "defaults": {"exportTo": ["."]},
                "audit": {"recordAllowed": True},
            }
        ],
    )
    rules = policy.for_namespace("team-x")
    assert rules.hosts.allowed == ("*.global.example", "*.team-x.example")
    assert rules.hosts.denied == ("bad.example",)
    assert rules.hosts.wildcards is Action.DENY
    assert rules.exemptions.users == frozenset({"admin"})
    assert rules.exemptions.groups == frozenset({"release"})
    assert rules.conflicts.service_entry is Action.WARN
    assert rules.conflicts.kubernetes_service is Action.DENY  # not named: kept
    assert rules.defaults.export_to == (".",)
    assert rules.defaults.location == "MESH_EXTERNAL"  # not named: kept
    assert rules.audit.record_allowed is True
    assert policy.for_namespace("other").hosts.allowed == ("*.global.example",)


def test_patterns_are_normalised() -> None:
    policy = parse_policy(document(hosts={"allowed": ["*.Example.COM."]}))
    assert policy.rules.hosts.allowed == ("*.example.com",)


@pytest.mark.parametrize(
    ("interval", "seconds"), [("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), (0, 0.0), (45, 45.0)]
)
def test_scan_intervals(interval: Any, seconds: float) -> None:
    assert parse_policy(document(scan={"interval": interval})).scan_interval_s == seconds


def test_the_digest_follows_the_text() -> None:
    a = parse_policy_text(yaml.safe_dump(document(mode="Warn")))
    b = parse_policy_text(yaml.safe_dump(document(mode="Audit")))
    assert a.digest != b.digest
    assert len(a.digest) == 64


def test_targets_are_read_and_a_namespace_rule_adds_to_them() -> None:
    policy = parse_policy(
        document(
            targets={
                "denied": ["203.0.113.7", "2001:db8::/32", "*.internal.example", "Vault.Example"],
                "minPrefixLength": {"ipv4": 16},
                "action": "Warn",
            },
            namespaces=[
                {
                    "selector": {"names": ["team-a"]},
                    "targets": {"denied": ["192.0.2.0/24"], "minPrefixLength": {"ipv6": 48}},
                }
            ],
        )
    )
    targets = policy.rules.targets
    assert [str(n) for n in targets.denied_networks] == ["203.0.113.7/32", "2001:db8::/32"]
    assert targets.denied_hosts == ("*.internal.example", "vault.example")
    assert (targets.min_prefix_ipv4, targets.min_prefix_ipv6, targets.action) == (
        16,
        32,
        Action.WARN,
    )
    team_a = policy.for_namespace("team-a").targets
    assert [str(n) for n in team_a.denied_networks] == [
        "203.0.113.7/32",
        "2001:db8::/32",
        "192.0.2.0/24",
    ]
    assert (team_a.min_prefix_ipv4, team_a.min_prefix_ipv6, team_a.action) == (16, 48, Action.WARN)


def test_the_readme_shows_the_built_in_policy_as_it_is() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    shown = [
        block
        for block in re.findall(r"```yaml\n(.*?)```", readme, re.S)
        if block.startswith("apiVersion: seguard.io/v1alpha1\nkind: ServiceEntryPolicy\n")
        and "\n  scan:" in block
    ]
    assert shown == [DEFAULT_POLICY_YAML]
    assert default_policy().namespace_rules == ()  # its payments rule is a comment, an example
