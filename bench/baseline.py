"""The baseline: a bare ASGI app that answers every request with one fixed AdmissionReview,
served by uvicorn with exactly the TLS, HTTP and keep-alive settings of `seguard serve`.

    python bench/baseline.py --cert-dir DIR --port PORT
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from webhook import server, tls

ANSWER = (
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":'
    b'{"uid":"00000000-0000-4000-8000-000000000000","allowed":true,'
    b'"auditAnnotations":{"decision":"allowed"}}}'
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the body, as a real handler must
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, default=0)
    args = parser.parse_args()
    listeners = server.Listeners(
        webhook=server.bind("127.0.0.1", args.port), ops=server.bind("127.0.0.1", args.metrics_port)
    )
    web = server.WebhookServer(
        webhook_app=app,  # type: ignore[arg-type]
        ops_app=FastAPI(),
        listeners=listeners,
        ssl_context=tls.server_context(args.cert_dir),
    )
    server.run(web.serve)


if __name__ == "__main__":
    main()
