"""The FastAPI apps: the webhook (HTTPS) and the operations endpoints (plain HTTP) (shell).

``/validate`` and ``/mutate`` are raw ASGI endpoints mounted in the FastAPI router: the body is
read once, its size and type checked before parsing, parsed once with orjson, judged by the pure
core and answered with orjson. No request model, no per-request validation beyond what the
decision reads: FastAPI with a pydantic model serves about a fifth of the requests per second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.routing import Route

from webhook import logs
from webhook.aio import Deadlines
from webhook.audit import (
    DROPPED,
    AdmissionRecord,
    admission_record,
    failure_record,
    should_record,
    timestamp,
)
from webhook.core import admission, review
from webhook.core.outcomes import DENIED
from webhook.core.review import Judge
from webhook.metrics import CONTENT_TYPE
from webhook.runtime import Runtime

log = logging.getLogger("seguard.app")
# Denials for want of an audit record come by the thousand while a sink is stalled: each is
# counted (seguard_audit_stalled_records_total), and logged at most once a minute.
UNRECORDED_LOG_EVERY_S = 60.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]


def _denial(
    req: admission.AdmissionRequest, code: int, reason: str, message: str
) -> dict[str, Any]:
    """A denial built without the decision's code (what broke may be there)."""
    return {
        "apiVersion": admission.API_VERSION,
        "kind": "AdmissionReview",
        "response": {
            "uid": req.uid,
            "allowed": False,
            "status": {"code": code, "reason": reason, "message": message},
        },
    }


class AdmissionEndpoint:
    """POST /validate or /mutate: an AdmissionReview in, an AdmissionReview out."""

    def __init__(
        self,
        runtime: Runtime,
        webhook: str,
        *,
        on_denied: Callable[[admission.AdmissionRequest, review.Verdict], None] | None = None,
        judge: Judge,
    ) -> None:
        self.runtime = runtime
        self.webhook = webhook
        # Told of each real (not dry-run) denial: the Kubernetes Events. Must never block.
        self.on_verdict = on_denied
        self.judge = judge
        self._stats = runtime.metrics.admission
        self._unrecorded_logged = -UNRECORDED_LOG_EVERY_S
        self._body_deadlines = Deadlines(runtime.body_deadline_s)

    def _fields(self, event: str, req: admission.AdmissionRequest) -> dict[str, object]:
        """The fields of a log line about one request."""
        return logs.fields(event, webhook=self.webhook, namespace=req.namespace, name=req.name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status, body, result = await self.answer(scope, receive)
        headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        if self.runtime.draining:
            # Shutting down: finish this answer, and ask the API server to reconnect elsewhere.
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self._stats.observe(self.webhook, result, time.perf_counter() - started)

    def _refuse(self, status: int, reason: str, message: str) -> tuple[int, bytes, None]:
        self.runtime.metrics.rejected_bodies.labels(self.webhook, reason).inc()
        log.warning(
            "%s: refused a request with %d: %s",
            self.webhook,
            status,
            message,
            extra=logs.fields("admission.refused", webhook=self.webhook, status=status),
        )
        return status, orjson.dumps({"error": message}), None

    async def answer(self, scope: Scope, receive: Receive) -> tuple[int, bytes, str | None]:
        """The status and body of the response, and the decision's result (None if refused)."""
        limit = self.runtime.max_body
        content_type = b""
        length = -1
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = int(value) if value.isdigit() else -1
        media = content_type.split(b";", 1)[0].strip().lower()
        if media != b"application/json":
            return self._refuse(
                415,
                "content_type",
                f"Content-Type must be application/json, not {media.decode(errors='replace')!r}",
            )
        if length > limit:
            return self._refuse(
                413, "too_large", f"body of {length} bytes is over the {limit}-byte limit"
            )
        body = await self._body(receive, limit)
        if isinstance(body, tuple):
            return body  # a refusal
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return self._refuse(400, "malformed", f"body is not JSON: {exc}")
        try:
            repeats = admission.repeats_a_key(body, parsed)
        except admission.MalformedReview as exc:
            return self._refuse(400, "malformed", str(exc))
        if repeats:
            # Two readers of such a body may see two different reviews; the API server never
            # sends one.
            return self._refuse(400, "malformed", "body repeats a key within one JSON object")
        try:
            req = admission.parse_review(parsed)
        except Exception as exc:  # MalformedReview, or a shape nobody foresaw: a 400, never a 500
            if not isinstance(exc, admission.MalformedReview):
                log.exception(
                    "%s: could not read a review",
                    self.webhook,
                    extra=logs.fields("admission.unreadable", webhook=self.webhook),
                )
            return self._refuse(
                400, "malformed", f"not an admission.k8s.io/v1 AdmissionReview: {exc}"
            )
        answer, record, result = self.decide(req)
        if record is not None:
            # Durable before the response leaves: a denial the caller saw is never missing. A
            # stalled sink holds it at most the audit deadline (the record is then written
            # late); with the queue full the record cannot be kept, and an allow fails closed.
            written = await self.runtime.audit.write_async(record)
            if written == DROPPED and result != DENIED:
                answer, result = self._unrecorded(req), DENIED
        return 200, orjson.dumps(answer), result

    def _unrecorded(self, req: admission.AdmissionRequest) -> dict[str, Any]:
        now = time.monotonic()
        if now - self._unrecorded_logged > UNRECORDED_LOG_EVERY_S:  # counted in the metrics
            self._unrecorded_logged = now
            log.error(
                "%s: denied %s/%s, and others like it this minute: its audit record could not "
                "be kept (the audit sinks are stalled)",
                self.webhook,
                req.namespace,
                req.name,
                extra=self._fields("audit.unavailable", req),
            )
        return _denial(
            req,
            503,
            "AuditUnavailable",
            "seguard could not record this decision in its audit trail (the audit sinks are "
            "stalled); it was denied to stay safe, try again [AuditUnavailable]",
        )

    async def _body(self, receive: Receive, limit: int) -> bytes | tuple[int, bytes, None]:
        """The whole body, or the refusal to answer with (too large, too slow, gone)."""
        chunks: list[bytes] = []
        size = 0
        more = True
        # A client that trickles its body cannot hold a request open: the API server gives up
        # on us after at most 30 s anyway. (One sweep for all requests: asyncio.timeout costs
        # 5 µs here, a timer of our own 2 µs.)
        task = asyncio.current_task()
        deadlines = self._body_deadlines
        deadlines.seconds = wait = self.runtime.body_deadline_s
        if task is not None:
            deadlines.begin(task)
        expired = False
        try:
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return self._refuse(
                        400, "disconnected", "client went away before the body ended"
                    )
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    return self._refuse(413, "too_large", f"body is over the {limit}-byte limit")
                chunks.append(chunk)
                more = message.get("more_body", False)
        except asyncio.CancelledError:
            expired = task is not None and deadlines.end(task)
            if not expired or task is None:
                raise
            if task.uncancel() > 0:
                raise  # cancelled by someone else as well (a shutdown): that one must go on
            return self._refuse(408, "too_slow", f"the body did not arrive within {wait:g} s")
        finally:
            # The sweep runs between task steps, and this task only yields inside receive(): a
            # cancellation of ours always lands in the loop above, never after it.
            if task is not None and not expired:
                deadlines.end(task)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def decide(
        self, req: admission.AdmissionRequest
    ) -> tuple[dict[str, Any], AdmissionRecord | None, str]:
        """The answer, the audit record to write before it is sent (or None), and the result.

        Whatever fails in here, the answer is a denial: a bug never turns into an allow."""
        try:
            return self._decide(req)
        except Exception as exc:
            log.exception(
                "%s: internal error answering %s/%s",
                self.webhook,
                req.namespace,
                req.name,
                extra=self._fields("admission.internal_error", req),
            )
            self.runtime.metrics.internal_errors.labels(self.webhook).inc()
            message = (
                f"seguard failed while answering this request ({type(exc).__name__}); it was "
                "denied to stay safe [InternalError]"
            )
            answer = _denial(req, 500, "InternalError", message)
            policy = self.runtime.policy
            record = failure_record(
                req,
                message,
                webhook=self.webhook,
                policy_generation=policy.generation if policy else 0,
                at=timestamp(),
            )
            return answer, record, DENIED

    def _decide(
        self, req: admission.AdmissionRequest
    ) -> tuple[dict[str, Any], AdmissionRecord | None, str]:
        runtime = self.runtime
        policy = runtime.policy  # read once: a reload may swap it while we work
        try:
            verdict = self.judge(req, policy=policy, snapshot=runtime.snapshot)
        except Exception as exc:
            # Fail closed: a bug must never turn into an allow.
            log.exception(
                "%s: internal error judging %s/%s",
                self.webhook,
                req.namespace,
                req.name,
                extra=self._fields("admission.internal_error", req),
            )
            runtime.metrics.internal_errors.labels(self.webhook).inc()
            verdict = review.internal_error(type(exc).__name__)
        record = None
        if should_record(verdict):
            record = admission_record(
                req,
                verdict,
                webhook=self.webhook,
                policy_generation=policy.generation if policy else 0,
                at=timestamp(),
            )
        stats = self._stats
        for finding, outcome in zip(verdict.findings, verdict.outcomes, strict=True):
            stats.finding(self.webhook, str(finding.code), outcome)
        if verdict.result == DENIED:
            stats.denial(runtime.namespace_label(req.namespace))
        if self.on_verdict is not None and not verdict.allowed and not req.dry_run:
            self.on_verdict(req, verdict)
        return verdict.to_response(req.uid), record, verdict.result


class WebhookApp(FastAPI):
    """FastAPI, with POST /validate and /mutate answered before its middleware stack.

    Starlette's error and exception middleware, FastAPI's body-limit and telemetry layers and the
    router cost more than the whole decision. The admission endpoints do not need them: they
    check the body themselves and never raise (an error inside is a fail-closed answer). Every
    other request, GET /validate included, goes through FastAPI as usual.
    """

    fast_routes: dict[str, AdmissionEndpoint]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.fast_routes.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


# What answers each admission endpoint: the decisions of the core.
JUDGES: Mapping[str, Judge] = {"validate": review.validate, "mutate": review.mutate}


def create_app(
    runtime: Runtime,
    *,
    on_denied: Callable[[admission.AdmissionRequest, review.Verdict], None] | None = None,
    judges: Mapping[str, Judge] = JUDGES,
) -> FastAPI:
    """The HTTPS app: POST /validate and POST /mutate, each answered by its judge."""
    app = WebhookApp(
        title="ServiceEntry Guard webhook",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.fast_routes = {
        f"/{name}": AdmissionEndpoint(runtime, name, on_denied=on_denied, judge=judge)
        for name, judge in judges.items()
    }
    for path, endpoint in app.fast_routes.items():
        # Also in the router, so that other methods get their 405.
        app.router.routes.append(Route(path, endpoint, methods=["POST"]))
    app.state.runtime = runtime
    return app


def create_ops_app(runtime: Runtime) -> FastAPI:
    """The plain-HTTP app: /healthz, /readyz and /metrics."""
    app = FastAPI(
        title="ServiceEntry Guard operations",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b"ok\n", media_type="text/plain")

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        ready, details = runtime.readiness()
        return JSONResponse({"ready": ready, **details}, status_code=200 if ready else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        runtime.readiness()  # refresh the ready gauge
        return Response(runtime.metrics.render(), media_type=CONTENT_TYPE)

    app.state.runtime = runtime
    return app
