"""Safe rollout, after Istio's own pattern (shell).

The manifests register both webhooks with ``failurePolicy: Ignore``, so a webhook that is not
running yet (or has a bad CA bundle) cannot block anyone. Once the server is ready, this loop
proves that the API server really calls the validating webhook and heeds its answer: it makes a
dry-run create of a probe ServiceEntry, which the webhook denies on purpose (``RolloutProbe``).
When the denial comes back for that reason, it switches validation to ``failurePolicy: Fail``.
It also puts the CA bundle back when something (GitOps, a stale manifest) overwrites it.

The mutating webhook stays at ``Ignore``: defaults are a convenience, the CRD's own rules still
apply to an undefaulted object, and validation, which is what guards the registry, fails closed.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook import logs
from webhook.core.review import PROBE_ANNOTATION
from webhook.kube import ClusterError, Transport
from webhook.periodic import Periodic

log = logging.getLogger("seguard.rollout")

ADMISSION = "/apis/admissionregistration.k8s.io/v1"
PROBE_HOST = "rollout-probe.seguard.invalid"
PROBE_CODE = "[RolloutProbe]"
# Often enough to put a CA bundle back soon after GitOps overwrites it, rare enough to cost the
# API server nothing.
CHECK_EVERY_S = 30.0


@dataclass
class RolloutState:
    enforcing: bool = False
    last_probe: str = ""
    ca_repairs: int = 0


class RolloutManager(Periodic):
    def __init__(
        self,
        transport: Transport,
        *,
        name: str,
        ca_file: Path | None,
        probe_namespace: str,
        is_ready: Callable[[], bool] = lambda: True,
        every: float = CHECK_EVERY_S,
    ) -> None:
        super().__init__(every=every, name="rollout", errors=(ClusterError,), log=log)
        self.transport = transport
        self.name = name
        self.ca_file = ca_file
        self.probe_namespace = probe_namespace
        self.is_ready = is_ready
        self.state = RolloutState()

    def _path(self, kind: str) -> str:
        return f"{ADMISSION}/{kind}webhookconfigurations/{self.name}"

    def _get(self, kind: str) -> dict[str, Any]:
        _, body = self.transport.call(
            "GET",
            self._path(kind),
            verb="get",
            what=f"{kind}webhookconfigurations {self.name}",
            grant=f"get and patch on {kind}webhookconfigurations {self.name}",
        )
        return body

    def _patch(self, kind: str, ops: list[dict[str, Any]]) -> None:
        self.transport.call(
            "PATCH",
            self._path(kind),
            verb="patch",
            what=f"{kind}webhookconfigurations {self.name}",
            body=ops,
            content_type="application/json-patch+json",
        )

    @property
    def ca_bundle(self) -> str | None:
        """Our CA, base64 as caBundle holds it; read each time, as the mounted Secret changes."""
        if self.ca_file is None or not self.ca_file.exists():
            return None
        return base64.b64encode(self.ca_file.read_bytes()).decode()

    def ensure_ca(self) -> int:
        """Put our CA bundle back into every webhook of both configurations. Returns how many
        webhooks were repaired."""
        bundle = self.ca_bundle
        if bundle is None:
            return 0
        repaired = 0
        for kind in ("mutating", "validating"):
            config = self._get(kind)
            ops: list[dict[str, Any]] = []
            for i, hook in enumerate(config.get("webhooks") or []):
                client = hook.get("clientConfig") or {}
                if client.get("caBundle") != bundle:
                    # The test makes the patch fail, rather than hit the wrong webhook, if the
                    # list changed since we read it.
                    ops.append({"op": "test", "path": f"/webhooks/{i}/name", "value": hook["name"]})
                    ops.append(
                        {
                            "op": "add",
                            "path": f"/webhooks/{i}/clientConfig/caBundle",
                            "value": bundle,
                        }
                    )
            if ops:
                self._patch(kind, ops)
                repaired += len(ops) // 2
                log.warning(
                    "put the CA bundle back into %d webhook(s) of %swebhookconfiguration %s",
                    len(ops) // 2,
                    kind,
                    self.name,
                    extra=logs.fields("rollout.ca_bundle.repaired", configuration=self.name),
                )
        self.state.ca_repairs += repaired
        return repaired

    def probe(self) -> tuple[bool, str]:
        """Dry-run create the probe. True when our validating webhook denied it, as it must."""
        obj = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {
                "name": "seguard-rollout-probe",
                "namespace": self.probe_namespace,
                "annotations": {PROBE_ANNOTATION: "true"},
            },
            "spec": {
                "hosts": [PROBE_HOST],
                "ports": [{"name": "tls", "number": 443, "protocol": "TLS"}],
            },
        }
        status, body = self.transport.request(
            "POST",
            f"/apis/networking.istio.io/v1/namespaces/{self.probe_namespace}/serviceentries",
            query=[("dryRun", "All")],
            body=obj,
        )
        message = str(body.get("message", ""))
        if PROBE_CODE in message:
            return True, message
        if 200 <= status < 300:
            return False, "the probe was admitted: the validating webhook is not called yet"
        return False, f"the probe failed with HTTP {status}: {message}"

    def enforce(self) -> bool:
        """Switch every validating webhook to failurePolicy Fail. True if anything changed."""
        config = self._get("validating")
        ops = [
            {"op": "replace", "path": f"/webhooks/{i}/failurePolicy", "value": "Fail"}
            for i, hook in enumerate(config.get("webhooks") or [])
            if hook.get("failurePolicy") != "Fail"
        ]
        if ops:
            self._patch("validating", ops)
            log.info(
                "validation now fails closed: failurePolicy Fail on "
                "validatingwebhookconfiguration %s",
                self.name,
                extra=logs.fields("rollout.fail_closed", configuration=self.name),
            )
        return bool(ops)

    def step(self) -> None:
        self.ensure_ca()
        config = self._get("validating")
        if all(h.get("failurePolicy") == "Fail" for h in config.get("webhooks") or []):
            self.state.enforcing = True
            return
        if not self.is_ready():
            return
        ok, detail = self.probe()
        self.state.last_probe = detail
        if ok:
            self.enforce()
            self.state.enforcing = True
        else:
            log.info(
                "rollout probe: %s; validation stays at failurePolicy Ignore for now",
                detail,
                extra=logs.fields("rollout.probe.failed", detail=detail),
            )
