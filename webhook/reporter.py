"""PolicyReports in the cluster (shell): after each scan, the replica holding the scan Lease
writes one ``wgpolicyk8s.io/v1alpha2`` PolicyReport per namespace with violations (replaced
whole, and not written again when nothing changed), and removes those of namespaces that are
clean. Only reports labelled as seguard's are touched. Without the PolicyReport CRD nothing is
written, and that is logged once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from webhook import kube, logs
from webhook.core import reports
from webhook.core.scan import Violation

log = logging.getLogger("seguard.reports")

GROUP_PATH = "/apis/wgpolicyk8s.io/v1alpha2"
WHAT = "policyreports.wgpolicyk8s.io"
GRANT = "list, create, update and delete on policyreports.wgpolicyk8s.io"


class PolicyReporter:
    def __init__(
        self, transport: kube.Transport, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.transport = transport
        self._clock = clock
        self._missing = False
        self.written = 0  # reports created or replaced, for the tests and the logs
        self.removed = 0

    def publish(self, violations: Iterable[Violation]) -> None:
        existing = self._existing()
        if existing is None:
            return
        wanted = reports.reports(violations, at_seconds=int(self._clock()))
        for namespace, report in wanted.items():
            current = existing.pop(namespace, None)
            if current is None:
                self._send("POST", f"{GROUP_PATH}/namespaces/{namespace}/policyreports", report)
            elif not reports.same_report(current, report):
                version = (current.get("metadata") or {}).get("resourceVersion")
                body = {**report, "metadata": {**report["metadata"], "resourceVersion": version}}
                self._send("PUT", self._path(namespace), body)
            else:
                continue
            self.written += 1
        for namespace in existing:  # clean now
            self.transport.call(
                "DELETE",
                self._path(namespace),
                verb="delete",
                what=f"{WHAT} {reports.NAME}",
                where=f"in namespace {namespace}",
                grant=GRANT,
                expected=(404,),
            )
            self.removed += 1

    def _path(self, namespace: str) -> str:
        return f"{GROUP_PATH}/namespaces/{namespace}/policyreports/{reports.NAME}"

    def _existing(self) -> dict[str, dict[str, Any]] | None:
        """seguard's reports, by namespace; None without the CRD."""
        key, value = reports.MANAGED_BY
        status, answer = self.transport.call(
            "GET",
            f"{GROUP_PATH}/policyreports",
            query=[("labelSelector", f"{key}={value}")],
            verb="list",
            what=WHAT,
            where="at the cluster scope",
            grant=GRANT,
            expected=(404,),
        )
        if status == 404:
            if not self._missing:
                self._missing = True
                log.warning(
                    "the PolicyReport CRD (wgpolicyk8s.io) is not installed: the scan's findings "
                    "go to the audit trail and Events only",
                    extra=logs.fields("reports.crd_missing"),
                )
            return None
        if self._missing:
            self._missing = False
            log.info(
                "the PolicyReport CRD is installed: writing reports",
                extra=logs.fields("reports.crd_found"),
            )
        found: dict[str, dict[str, Any]] = {}
        for item in answer.get("items") or []:
            meta = item.get("metadata") if isinstance(item, dict) else None
            if isinstance(meta, dict) and meta.get("name") == reports.NAME:
                found[str(meta.get("namespace", ""))] = item
        return found

    def _send(self, method: str, path: str, report: dict[str, Any]) -> None:
        namespace = report["metadata"]["namespace"]
        self.transport.call(
            method,
            path,
            verb="create" if method == "POST" else "update",
            what=WHAT,
            where=f"in namespace {namespace}",
            grant=GRANT,
            body=report,
        )
