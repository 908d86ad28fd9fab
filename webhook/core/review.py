"""The whole decision for one request: ``validate`` and ``mutate`` (pure).

Both take a parsed ``AdmissionRequest``, the current ``Policy`` and registry ``Snapshot`` (None
when there is none yet) and return a ``Verdict``: a value the shell turns into a response, an
audit record and metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from webhook.core import admission, claims, context, rules
from webhook.core.defaults import apply_defaults
from webhook.core.findings import ALWAYS_DENY, Code, Finding, finding_of, summary
from webhook.core.outcomes import ALLOWED, AUDITED, DENIED, EXEMPTED, WARNED
from webhook.core.policy import Action, Mode, Policy, Rules
from webhook.core.registry import Snapshot

# A dry-run ServiceEntry with this annotation is the safe rollout's probe: the validating
# webhook denies it with RolloutProbe, which proves the API server calls us and heeds the answer.
PROBE_ANNOTATION = "seguard.io/rollout-probe"


def outcome_of(finding: Finding, mode: Mode, exempt: bool) -> str:
    """What becomes of one finding, in a namespace of ``mode``, for a requester who is
    ``exempt`` or not: the one rule admission (``decide``) and the scan (``denying``) share.
    Invalid objects are denied whatever the mode or exemption."""
    if finding.code in ALWAYS_DENY:
        return DENIED
    if exempt:
        return EXEMPTED
    if mode is Mode.AUDIT:
        return AUDITED
    if finding.action is Action.DENY and mode is Mode.ENFORCE:
        return DENIED
    return WARNED


class Verdict(NamedTuple):
    allowed: bool
    result: str  # one of RESULTS
    mode: Mode | None = None
    findings: tuple[Finding, ...] = ()
    outcomes: tuple[str, ...] = ()  # per finding: one of OUTCOMES
    warnings: tuple[str, ...] = ()
    message: str = ""
    code: int = 403
    exemption: str | None = None
    patch: Sequence[Mapping[str, Any]] = ()
    defaulted: tuple[str, ...] = ()
    record_allowed: bool = False  # the namespace's audit.recordAllowed (validate only)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(str(f.code) for f in self.findings))

    def audit_annotations(self) -> dict[str, str]:
        # Keys are prefixed with the webhook's name by the API server: no "/", 63 characters or
        # fewer.
        annotations = {"decision": self.result}
        if self.findings:
            annotations["reasons"] = ",".join(self.codes)
        if self.defaulted:
            annotations["defaulted"] = ",".join(self.defaulted)
        return annotations

    def to_response(self, uid: str) -> dict[str, Any]:
        return admission.response(
            uid,
            allowed=self.allowed,
            message=self.message,
            code=self.code,
            warnings=self.warnings,
            audit_annotations=self.audit_annotations(),
            patch=self.patch,
        )


def _skip() -> Verdict:
    """Nothing judged (a DELETE, not a ServiceEntry...): allowed, with nothing to record."""
    return Verdict(allowed=True, result=ALLOWED)


def unavailable(what: str) -> Verdict:
    finding = finding_of(
        Code.POLICY_UNAVAILABLE,
        "",
        Action.DENY,
        f"seguard has no valid {what} yet, so it cannot judge this request; "
        "retry shortly, or ask the cluster admin to check the webhook's logs",
    )
    return decide([finding], Mode.ENFORCE, None)


def internal_error(error: str) -> Verdict:
    """The fail-closed answer. Built by hand: it must not depend on the code that just failed."""
    finding = Finding(
        Code.INTERNAL_ERROR,
        "",
        Action.DENY,
        f"seguard failed while judging this request ({error}); it was denied to stay safe. "
        "Retry, and report it to the cluster admin if it persists [InternalError]",
    )
    return Verdict(
        allowed=False,
        result=DENIED,
        mode=Mode.ENFORCE,
        findings=(finding,),
        outcomes=(DENIED,),
        message=finding.message,
        code=500,
    )


_NO_HOSTS: frozenset[str] = frozenset()


def _not_judged(req: admission.AdmissionRequest) -> str | None:
    """Why a request is allowed without looking at it, or None when it must be judged.

    Only an UPDATE that leaves the spec as it was is let through unjudged: it changes nothing
    in the registry (labels, annotations, finalizers going from an object being deleted), and
    must never be blocked. An object being deleted is judged like any other when its spec
    changes: a finalizer nobody removes would otherwise let any host onto it."""
    if req.operation not in ("CREATE", "UPDATE"):
        return f"{req.operation} is always allowed"
    if (
        req.operation == "UPDATE"
        and req.old_object is not None
        and req.object is not None
        and req.object.get("spec") == req.old_object.get("spec")
    ):
        return "the spec did not change"
    return None


def _age(req: admission.AdmissionRequest, snapshot: Snapshot) -> context.Age | None:
    """Where the object stands among the owners of its hosts. A CREATE is the youngest (None:
    judged against every owner). An UPDATE keeps its creationTimestamp: the stored object's
    (oldObject), else the registry's copy's. Never the one in the object, which the requester
    writes: with neither, the object counts as the youngest."""
    if req.operation != "UPDATE":
        return None
    created = _created(req.old_object)
    if created is None:
        known = snapshot.get(claims.SERVICE_ENTRY, req.namespace, req.name)
        if known is None:
            return None
        created = known.created_s
    return context.age_of(created, req.namespace, req.name)


def _before(req: admission.AdmissionRequest, snapshot: Snapshot) -> claims.Claim | None:
    """What an UPDATE's object held before: the stored object's hosts (oldObject), else the
    registry's copy (``seguard check``)."""
    if req.old_object is not None:
        return claims.service_entry_claim(req.old_object, namespace=req.namespace)
    return snapshot.get(claims.SERVICE_ENTRY, req.namespace, req.name)


def _created(obj: Mapping[str, Any] | None) -> int | None:
    meta = obj.get("metadata") if obj is not None else None
    created = meta.get("creationTimestamp") if isinstance(meta, dict) else None
    return claims.timestamp_seconds(created)


def exemption_of(req: admission.AdmissionRequest, namespace_rules: Rules) -> str | None:
    exempt = namespace_rules.exemptions
    if req.namespace in exempt.namespaces:
        return f"namespace {req.namespace}"
    if req.user and req.user in exempt.users:
        return f"user {req.user}"
    for group in req.groups:
        if group in exempt.groups:
            return f"group {group}"
    return None


def decide(findings: list[Finding], mode: Mode, exemption: str | None) -> Verdict:
    """Apply the mode and any exemption to the findings' actions."""
    if not findings:  # a clean request, nearly all of them: nothing to weigh
        return Verdict(allowed=True, result=ALLOWED, mode=mode)
    outcomes: list[str] = []
    warnings: list[str] = []
    denials: list[str] = []
    exempt = exemption is not None
    for finding in findings:
        outcome = outcome_of(finding, mode, exempt)
        outcomes.append(outcome)
        if outcome == DENIED:
            denials.append(finding.message)
        elif outcome == WARNED or (outcome == EXEMPTED and mode is not Mode.AUDIT):
            prefix = f"exempt ({exemption}): " if outcome == EXEMPTED else ""
            warnings.append(prefix + summary(finding))
    if denials:
        result = DENIED
    elif WARNED in outcomes:
        result = WARNED
    else:
        result = ALLOWED
    return Verdict(
        allowed=not denials,
        result=result,
        mode=mode,
        findings=tuple(findings),
        outcomes=tuple(outcomes),
        warnings=tuple(warnings),
        message=admission.fit_message(denials) if denials else "",
        exemption=exemption if findings else None,
    )


def _claim(
    req: admission.AdmissionRequest, policy: Policy, snapshot: Snapshot
) -> tuple[Rules, claims.Claim]:
    """The namespace's rules and what the object claims."""
    namespace_rules = policy.for_namespace(req.namespace, snapshot.labels_of(req.namespace))
    obj: Mapping[str, Any] = req.object or {}
    return namespace_rules, claims.service_entry_claim(obj, namespace=req.namespace)


def _is_probe(req: admission.AdmissionRequest) -> bool:
    if not req.dry_run:
        return False
    meta = (req.object or {}).get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    return isinstance(annotations, dict) and PROBE_ANNOTATION in annotations


class Judge(Protocol):
    """What decides a review: ``validate`` and ``mutate``."""

    def __call__(
        self, req: admission.AdmissionRequest, *, policy: Policy | None, snapshot: Snapshot | None
    ) -> Verdict: ...


def validate(
    req: admission.AdmissionRequest, *, policy: Policy | None, snapshot: Snapshot | None
) -> Verdict:
    if _not_judged(req) is not None:
        return _skip()
    if _is_probe(req):
        probe = finding_of(
            Code.ROLLOUT_PROBE,
            "",
            Action.DENY,
            "seguard's rollout probe, denied on purpose: the validating webhook is called and "
            "heeded",
        )
        return decide([probe], Mode.ENFORCE, None)
    if policy is None:
        return unavailable("policy")
    if snapshot is None:
        return unavailable("registry")
    namespace_rules, claim = _claim(req, policy, snapshot)
    age = _age(req, snapshot)
    if age is None:  # a CREATE: the youngest, judged against every owner
        skip, newcomers = None, _NO_HOSTS
    else:
        skip = context.younger_than(age)
        before = _before(req, snapshot)
        newcomers = context.newcomer_hosts(claim, before, namespace_rules.mesh_default_export_to)
    ctx = context.context_for(
        claim,
        name=req.name,
        rules=namespace_rules,
        snapshot=snapshot,
        skip=skip,
        policy=policy,
        newcomers=newcomers,
    )
    findings = rules.evaluate(claim, ctx)
    exemption = exemption_of(req, namespace_rules) if findings else None  # unused when clean
    verdict = decide(findings, namespace_rules.mode, exemption)
    if namespace_rules.audit.record_allowed:
        return verdict._replace(record_allowed=True)
    return verdict


def mutate(
    req: admission.AdmissionRequest, *, policy: Policy | None, snapshot: Snapshot | None
) -> Verdict:
    if _not_judged(req) is not None:
        return _skip()
    if policy is None:
        return unavailable("policy")
    if snapshot is None:
        return unavailable("registry")
    namespace_rules, claim = _claim(req, policy, snapshot)  # no registry lookups: defaults only
    invalid = rules.invalid_findings(claim)
    if invalid:
        return decide(invalid, namespace_rules.mode, None)
    assert req.object is not None  # _not_judged let only CREATE and UPDATE through
    defaulting = apply_defaults(req.object, namespace_rules.defaults)
    warnings = [w for w in (defaulting.warning,) if w] + list(defaulting.notes)
    return Verdict(
        allowed=True,
        result=ALLOWED,
        mode=namespace_rules.mode,
        warnings=tuple(warnings),
        patch=defaulting.patch,
        defaulted=defaulting.defaulted,
    )
