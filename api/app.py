"""The HTTP API: producers append events, operators mind the quarantine, analysts ask the views.

Routes translate HTTP into engine calls and answers; the rules live in the domain. Each
area has its own router module; this one assembles them.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from closedloop.log import chain
from closedloop.app.access import RateLimiter
from closedloop.domain.policy import parse_duration
from closedloop.app.engine import Engine

from . import audit, dashboard, events, kafka, loop, network, observe, operations, quality
from .common import JSON
from .security import authenticate, require

log = logging.getLogger("closedloop.api")

# each router with the permission its routes need (see app/access.py for the roles)
ROUTERS = (
    (events.router, "append"),
    (loop.router, "read"),
    (operations.router, "quarantine"),
    (operations.health_router, None),
    (audit.router, "audit"),
    (kafka.router, "operate"),
    (quality.router, "read"),
    (network.router, "read"),
)


def _event_schemas() -> dict[str, Any]:
    from closedloop.contract.events import _ADAPTER

    return _ADAPTER.json_schema(ref_template="#/components/schemas/{model}")


def create_app(engine: Engine, follow_interval: float | None = 1.0, auth: bool | None = None,
               rate_per_second: float | None = None) -> FastAPI:
    """The API over one engine; `follow_interval` seconds between catching up on events
    that other processes (a Kafka consumer, a file import) appended to the same log.
    `auth` (default: on unless CLOSEDLOOP_AUTH=off) makes every call show an API key;
    `rate_per_second` (default: CLOSEDLOOP_RATE_LIMIT) caps each producer key without its own rate."""
    stop = threading.Event()
    checkpoint_every = parse_duration(os.environ.get("CLOSEDLOOP_CHECKPOINT_EVERY", "1h"))
    last_checkpoint = [0]

    def follow() -> None:
        while not stop.wait(follow_interval or 1.0):
            try:
                engine.catch_up()
                engine.tick()
                now = engine.clock()
                if checkpoint_every and now - last_checkpoint[0] >= checkpoint_every:
                    chain.take_checkpoint(engine.storage, now)
                    last_checkpoint[0] = now
            except Exception:  # keep following: the next round retries
                log.exception("catching up with the log failed")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        thread = None
        if follow_interval:
            thread = threading.Thread(target=follow, name="closedloop-follow", daemon=True)
            thread.start()
        yield
        stop.set()
        if thread:
            thread.join(timeout=5)

    app = FastAPI(
        title="closedloop",
        version="0.1.0",
        description=(
            "Event-sourced, closed-loop after-sales service engine. Producers send v1 contract "
            "events (CloudEvents 1.0); the engine checks the four nothing-missed for every case "
            "(recorded, handled, reviewed, fed back) and the three controls (complaint, "
            "dissatisfaction and omission rates under 10 PPM)."
        ),
        default_response_class=JSON,
        lifespan=lifespan,
        dependencies=[Depends(authenticate)],
    )
    app.state.engine = engine
    app.state.auth_required = auth if auth is not None else os.environ.get("CLOSEDLOOP_AUTH", "on").lower() != "off"
    rate = rate_per_second if rate_per_second is not None else os.environ.get("CLOSEDLOOP_RATE_LIMIT")
    app.state.default_rate = float(rate) if rate else None
    app.state.limiter = RateLimiter()

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        return JSON({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_parameters(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"][1:]) or str(err["loc"][0]), "message": err["msg"]}
            for err in exc.errors()
        ]
        words = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return JSON({"error": f"bad request: {words}", "errors": problems}, status_code=422)

    for router, permission in ROUTERS:
        app.include_router(router, dependencies=[Depends(require(permission))] if permission else [])

    observe.install(app, engine)
    dashboard.install(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes)
        contract = _event_schemas()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(contract.pop("$defs", {}))
        components["CloudEvent"] = contract
        components.setdefault("securitySchemes", {})["apiKey"] = {
            "type": "http", "scheme": "bearer",
            "description": "An API key made with `closedloop keys add` (the demo prints some)."}
        schema["security"] = [{"apiKey": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
