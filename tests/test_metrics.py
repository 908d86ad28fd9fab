"""The metrics (metrics.py): what is counted, and with which labels."""

from __future__ import annotations

from tests.factories import make_policy, make_request, make_service_entry, make_snapshot
from webhook.app import create_app
from webhook.audit import AuditLog
from webhook.runtime import Runtime


def test_findings_and_denials_are_counted_with_bounded_namespace_labels() -> None:
    """Decisions counted by code and outcome, denials by namespace: the first 100 namespaces
    get a label of their own, the rest share _other."""
    runtime = Runtime(audit=AuditLog([]))
    runtime.set_policy(make_policy())
    runtime.set_snapshot(make_snapshot(make_service_entry("stripe", "team-a", ["api.stripe.com"])))
    endpoint = create_app(runtime).fast_routes["/validate"]  # type: ignore[attr-defined]
    for i in range(105):
        request = make_request(make_service_entry("copy", f"ns-{i}", ["api.stripe.com"]))
        endpoint.decide(request)
    endpoint.decide(make_request(make_service_entry("ok", "ns-0", ["free.example.com"])))
    text = runtime.metrics.render().decode()
    assert (
        'seguard_admission_findings_total{code="ConflictServiceEntry",outcome="denied",'
        'webhook="validate"} 105.0'
    ) in text
    assert 'seguard_admission_denials_by_namespace_total{namespace="ns-0"} 1.0' in text
    assert 'seguard_admission_denials_by_namespace_total{namespace="ns-99"} 1.0' in text
    assert 'namespace="ns-100"' not in text
    assert 'seguard_admission_denials_by_namespace_total{namespace="_other"} 5.0' in text
