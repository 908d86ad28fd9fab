"""The policy as a Kubernetes resource (shell): the ServiceEntryPolicy named ``default``, read
every two seconds, its status written back.

Each replica reads the objects, puts the one named ``default`` in force once it parses (a spec
that does not keeps the last good policy, as a file reload does), and reports in its own entry
of ``status.replicas`` which generation it read and which it serves. The replica holding the scan
Lease writes the conditions: ``Accepted`` (or why not) and ``Enforced`` (once every live replica
serves the generation), and refuses every other object with a condition that says only
``default`` is in force. Without the CRD the built-in policy is in force, and that is logged once.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from webhook import kube, logs
from webhook.audit import policy_rejected_record, timestamp
from webhook.core import policystatus
from webhook.core.policy import API_VERSION, KIND
from webhook.core.policyfile import PolicyError, default_policy, parse_policy
from webhook.core.policyschema import GROUP, IN_FORCE, PLURAL, VERSION
from webhook.periodic import Periodic
from webhook.runtime import Runtime

log = logging.getLogger("seguard.policy")

PATH = f"/apis/{GROUP}/{VERSION}/{PLURAL}"
WHAT = f"{PLURAL}.{GROUP}"
GRANT = f"list on {WHAT} and patch on {PLURAL}/status"
READ_EVERY_S = 2.0


class PolicyResource(Periodic):
    def __init__(
        self,
        transport: kube.Transport,
        runtime: Runtime,
        *,
        leading: Callable[[], bool],
        identity: str | None = None,
        every: float = READ_EVERY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(every=every, name="policy-resource", errors=(kube.ClusterError,), log=log)
        self.transport = transport
        self.runtime = runtime
        self.identity = identity or socket.gethostname()
        self._leading = leading
        self._clock = clock
        self._seen: tuple[str, int] | None = None  # (uid, generation) of the spec last read
        self._verdict: policystatus.Verdict | None = None
        self._serving = 0  # the generation of the object whose spec is in force; 0: built-in
        self._reported: tuple[policystatus.Report, float] | None = None
        self._crd_missing = False
        runtime.policy_synced = False

    # --- every replica --------------------------------------------------------------------

    def step(self) -> None:
        status, answer = self.transport.call(
            "GET", PATH, verb="list", what=WHAT, grant=GRANT, expected=(404,)
        )
        if status == 404:
            self._without_crd()
            return
        if self._crd_missing:
            self._crd_missing = False
            log.info(
                "the ServiceEntryPolicy CRD is installed: reading %s", IN_FORCE,
                extra=logs.fields("policy.resource.found"),
            )  # fmt: skip
        items = [item for item in answer.get("items") or [] if isinstance(item, dict)]
        current = next((item for item in items if _name(item) == IN_FORCE), None)
        self._read(current)
        self.runtime.policy_synced = True
        if current is not None:
            self._report(current)
        if self._leading():
            for item in items:
                self._write_conditions(item)

    def _without_crd(self) -> None:
        if not self._crd_missing:
            self._crd_missing = True
            log.warning(
                "the ServiceEntryPolicy CRD is not installed; the %s policy is in force "
                "(install deploy/base/crd.yaml, or give --policy)",
                "built-in" if self._serving == 0 else "last read",
                extra=logs.fields("policy.resource.missing"),
            )
        self.runtime.policy_synced = True

    def _read(self, obj: dict[str, Any] | None) -> None:
        if obj is None:
            if self._seen != ("", 0):
                self._seen = ("", 0)
                self._verdict = None
                if self._serving != 0 or self.runtime.policy is None:
                    self._apply(default_policy(), 0, f"built-in (no ServiceEntryPolicy {IN_FORCE})")
                log.info(
                    "no ServiceEntryPolicy named %s: the built-in policy is in force",
                    IN_FORCE,
                    extra=logs.fields("policy.resource.absent"),
                )
            return
        meta = _part(obj, "metadata")
        key = (str(meta.get("uid", "")), int(meta.get("generation") or 0))
        if key == self._seen:
            return
        self._seen = key
        generation = key[1]
        source = f"serviceentrypolicy/{IN_FORCE} generation {generation}"
        try:
            policy = parse_policy(
                # As the API server keeps it: its kind and version are the CRD's.
                {"apiVersion": API_VERSION, "kind": KIND, "spec": obj.get("spec")},
                source=source,
            )
        except PolicyError as exc:
            self._refuse(generation, source, "; ".join(exc.errors))
            return
        current = self.runtime.policy
        if current is not None and policy.cluster_domain != current.cluster_domain:
            self._refuse(
                generation,
                source,
                f"spec.clusterDomain changed from {current.cluster_domain} to "
                f"{policy.cluster_domain}; every Service name depends on it, so restart seguard "
                "to apply it",
            )
            return
        self._verdict = policystatus.Verdict(generation, None)
        self._apply(policy, generation, source)

    def _apply(self, policy: Any, generation: int, source: str) -> None:
        applied = self.runtime.set_policy(policy)
        self._serving = generation
        log.info(
            "policy %s in force: generation %d",
            source,
            applied.generation,
            extra=logs.fields(
                "policy.loaded", source=source, generation=applied.generation, object=generation
            ),
        )

    def _refuse(self, generation: int, source: str, error: str) -> None:
        self._verdict = policystatus.Verdict(generation, error)
        kept = self.runtime.policy_generation
        log.error(
            "%s refused, keeping generation %d: %s",
            source,
            kept,
            error,
            extra=logs.fields("policy.reload.refused", generation=kept, error=error),
        )
        self.runtime.reject_policy(error)
        self.runtime.audit.write(
            policy_rejected_record(source, error, policy_generation=kept, at=timestamp())
        )

    def _report(self, obj: dict[str, Any]) -> None:
        """This replica's own entry of status.replicas, when it changed or every 30 s."""
        verdict = self._verdict
        report = policystatus.Report(
            read=verdict.generation if verdict else 0,
            accepted=verdict is not None and verdict.error is None,
            serving=self._serving,
            seen=round(self._clock(), 3),
        )
        last = self._reported
        unchanged = last is not None and last[0][:3] == report[:3]
        if unchanged and last is not None and report.seen - last[1] < policystatus.REPORT_EVERY_S:
            return
        self._patch_status(_name(obj), {"replicas": {self.identity: report.as_status()}})
        self._reported = (report, report.seen)

    # --- the Lease holder -----------------------------------------------------------------

    def _write_conditions(self, obj: dict[str, Any]) -> None:
        name = _name(obj)
        generation = int(_part(obj, "metadata").get("generation") or 0)
        status = _part(obj, "status")
        raw = _part(status, "replicas")
        replicas = {
            pod: report
            for pod, report in ((str(p), policystatus.report_of(r)) for p, r in raw.items())
            if report is not None
        }
        if name == IN_FORCE and self._verdict is not None:
            # Count this replica as it is now, not as it last wrote itself down.
            mine = self._reported[0] if self._reported else None
            if mine is not None:
                replicas[self.identity] = mine
        now = self._clock()
        verdict = self._verdict if name == IN_FORCE else None
        wanted = policystatus.conditions(name, generation, verdict, replicas, now=now)
        gone = policystatus.gone(replicas, now=now) if name == IN_FORCE else []
        current = status.get("conditions")
        if (
            policystatus.same_conditions(wanted, current)
            and status.get("observedGeneration") == generation
            and not gone
        ):
            return
        patch: dict[str, Any] = {
            "observedGeneration": generation,
            "conditions": policystatus.with_transitions(wanted, current, at=timestamp()),
        }
        if gone:
            patch["replicas"] = dict.fromkeys(gone)
        self._patch_status(name, patch)

    def _patch_status(self, name: str, status: Mapping[str, Any]) -> None:
        self.transport.call(
            "PATCH",
            f"{PATH}/{name}/status",
            verb="patch",
            what=f"{PLURAL}/status {name}",
            grant=GRANT,
            body={"status": dict(status)},
            content_type="application/merge-patch+json",
            expected=(404,),  # deleted since it was listed: the next read sees it gone
        )


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("name", "")) if isinstance(meta, Mapping) else ""


def _part(obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``obj[key]`` when it is an object, else an empty one (a resource may lack its status)."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}
