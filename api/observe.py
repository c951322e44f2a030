"""Operators: `GET /metrics` for Prometheus, and a timed, logged line for every request.

Monitoring conventionally scrapes metrics without the API's keys on a closed network, so
`/metrics` is open unless CLOSEDLOOP_METRICS_KEY is set; then the scraper shows that
secret (`Authorization: Bearer ...`, Prometheus' `authorization: credentials`) or an API
key whose role may operate the engine.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from closedloop.app import logs
from closedloop.app.engine import Engine
from closedloop.api.metrics import Metrics, SourceLabels
from closedloop.app.settings import Settings, default_settings

from .common import JSON

access_log = logging.getLogger("closedloop.access")

# routes polled by machines every few seconds: their lines only at DEBUG
_QUIET = ("/metrics", "/health", "/dashboard", "/favicon.ico")


class ObservedRequests:
    """Times each request into the latency histogram (labelled by route template, never by
    raw path, so ids do not become series) and writes its access line with the path
    parameters (a case id) and the event a single-event call recorded."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]
        fields, token = logs.begin_request()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                # the request id on the response too, so a caller can quote it
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"x-request-id", fields["request_id"].encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "(unmatched)"
            self.metrics.observe_request(scope["method"], template, status[0], seconds)
            principal = (scope.get("state") or {}).get("principal")
            line: dict[str, Any] = {
                "method": scope["method"], "path": scope["path"], "route": template, "status": status[0],
                "duration_ms": round(seconds * 1000, 2), "client": (scope.get("client") or ("", 0))[0],
                "key": getattr(principal, "name", None),
                **{k: v for k, v in (scope.get("path_params") or {}).items() if isinstance(v, (str, int))},
                **fields,
            }
            quiet = scope["path"].startswith(_QUIET) or scope["path"] == "/"
            level = logging.DEBUG if quiet and status[0] < 400 else logging.INFO
            access_log.log(level, "%s %s %s", scope["method"], scope["path"], status[0],
                           extra={k: v for k, v in line.items() if v is not None})
            logs.end_request(token)


def install(app: FastAPI, engine: Engine, settings: Settings | None = None) -> Metrics:
    settings = settings or default_settings()
    metrics = Metrics(engine, SourceLabels(settings.metrics_source_depth, settings.metrics_max_sources))
    app.state.metrics = metrics
    app.add_middleware(ObservedRequests, metrics=metrics)
    required = settings.metrics_key.get_secret_value() if settings.metrics_key else None

    async def scrape(request: Request) -> Response:
        if required and not _scraper_allowed(request, required):
            return JSON({"error": "metrics need a key here: send 'Authorization: Bearer <CLOSEDLOOP_METRICS_KEY>' "
                         "or an API key whose role may operate the engine"}, status_code=401,
                        headers={"WWW-Authenticate": "Bearer"})
        body = await run_in_threadpool(generate_latest, metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.add_route("/metrics", scrape, methods=["GET"], include_in_schema=False)
    return metrics


def _scraper_allowed(request: Request, required: str) -> bool:
    header = request.headers.get("authorization", "")
    secret = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    if not secret:
        return False
    if hmac.compare_digest(secret.encode(), required.encode()):
        return True
    principal = request.app.state.engine.keys.authenticate(secret)
    return principal is not None and principal.may("operate")
