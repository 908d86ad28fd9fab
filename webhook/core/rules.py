"""``evaluate``: every rule an object goes through, in order (pure).

The rules themselves live by what they look at: a host on its own (``hostrules``), the registry
(``conflicts``), where the traffic goes (``targets``); ``context`` holds what they all read.
Each yields ``Finding`` values: a stable reason code (its row in ``findings.REASONS``), the
action the policy gives it (Deny, Warn; Allow means the rule is off and nothing is yielded), and
a message that names the other owner and the way out.
"""

from __future__ import annotations

from webhook.core.claims import Claim
from webhook.core.conflicts import registry_conflicts, short_name_service, too_many
from webhook.core.context import Context
from webhook.core.findings import Code, Finding, finding_of, quoted
from webhook.core.hostrules import (
    host_denied,
    host_not_allowed,
    partial_wildcard,
    reserved_cluster_domain,
    wildcard_not_allowed,
    wildcard_too_broad,
)
from webhook.core.policy import Action
from webhook.core.targets import may_reach_a_denied_name, target_findings


def invalid_findings(claim: Claim) -> list[Finding]:
    """Findings for an object whose shape or hosts are not valid."""
    findings = [
        finding_of(Code.INVALID_SPEC, "", Action.DENY, f"{problem}; fix the ServiceEntry")
        for problem in claim.problems
    ]
    for index, raw, reason in claim.invalid:
        shown = raw if isinstance(raw, str) else repr(raw)
        findings.append(
            finding_of(
                Code.INVALID_HOST,
                shown[:253],
                Action.DENY,
                f"spec.hosts[{index}] {quoted(raw)} {reason}; use a DNS name such as "
                'api.example.com or a wildcard such as "*.example.com"',
            )
        )
    return findings


def evaluate(claim: Claim, ctx: Context) -> list[Finding]:
    """All findings for an object: validity first, then each host through every rule, then
    where its traffic goes.

    Each rule checks for itself whether it applies; the tests below only skip calling a rule
    that cannot apply to this host, which keeps a clean request to a few microseconds.
    """
    findings = invalid_findings(claim) if claim.problems or claim.invalid else []
    if claim.problems:
        return findings
    host_rules = ctx.rules.hosts
    domain = ctx.cluster_domain
    examined = ctx.examined
    for host in claim.hosts:
        wildcard = host.startswith("*")
        if host_rules.denied:
            findings.extend(host_denied(host, ctx))
        if host_rules.allowed:
            findings.extend(host_not_allowed(host, ctx))
        if wildcard:
            findings.extend(wildcard_not_allowed(host, ctx))
            findings.extend(wildcard_too_broad(host, ctx))
            if host[1] != ".":
                findings.extend(partial_wildcard(host, ctx))
        # Reserved forms: the cluster domain, name.ns.svc and name.ns (see ``reserved_form``).
        if wildcard or host.endswith((domain, ".svc")) or host.count(".") == 1:
            findings.extend(reserved_cluster_domain(host, ctx))
        if "." not in host:
            findings.extend(short_name_service(host, ctx))
        matches = ctx.snapshot.matches(host, examined)
        first = next(matches, None)
        if first is not None:
            findings.extend(registry_conflicts(host, ctx, first, matches))
        elif examined.left < 0:  # a partial wildcard that examined too many names
            findings.append(too_many(host, ctx, examined=True))
    if claim.targets or (claim.resolves_hosts and may_reach_a_denied_name(claim.hosts, ctx)):
        findings.extend(target_findings(claim, ctx))
    return findings
