"""The HTTP API: producers append events, operators mind the quarantine, analysts ask the views.

Routes translate HTTP into engine calls and answers; the rules live in the domain. Each
area has its own router module; this one assembles them.
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from closedloop.log import chain
from closedloop.app.access import RateLimiter
from closedloop.app.engine import Engine
from closedloop.app.settings import Settings, load_settings

from . import audit, dashboard, docs, events, kafka, loop, network, observe, operations, quality
from .common import JSON
from .schemas import errors
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


# what each group of routes is for, in the order /docs lists them
TAGS = [
    {"name": "producers", "description": "Append v1 contract events (CloudEvents 1.0): one, or thousands per "
     "request. A rejected event is quarantined, never lost; a resend of a recorded one changes nothing."},
    {"name": "loop", "description": "Where each case stands at the four steps (recorded, handled, reviewed, "
     "fed back), who owns the next move, and what leaked: at any moment (`as_of`), as known at any moment "
     "(`known_at`)."},
    {"name": "controls", "description": "Complaint, dissatisfaction and omission rates in PPM against the "
     "10 PPM target, by group and period, down to the cases behind each count."},
    {"name": "operators", "description": "The quarantine of rejected events: read, correct and resubmit, "
     "or discard with a reason."},
    {"name": "operations", "description": "The engine's health and how far the Kafka consumers and publisher "
     "are behind."},
    {"name": "audit", "description": "The log's hash chain, verified end to end, and its checkpoints."},
    {"name": "feedback", "description": "Design, manufacturing, sales and service: their feedback items, "
     "owners and due dates."},
    {"name": "defects", "description": "Defect analytics of completed services; every number lists the "
     "cases behind it. Lists answer in CSV too."},
    {"name": "settlement", "description": "Outlets' statements, the penalties named owners pay, the rules "
     "in force."},
    {"name": "network", "description": "Outlets, technicians and their permits, warehouses and stock, "
     "part requests, dispatch alarms, and the rules the engine applies by itself."},
]


def _event_schemas() -> dict[str, Any]:
    from closedloop.contract.events import _ADAPTER

    return _ADAPTER.json_schema(ref_template="#/components/schemas/{model}")


def create_app(engine: Engine, follow_interval: float | None = 1.0, auth: bool | None = None,
               rate_per_second: float | None = None, settings: Settings | None = None) -> FastAPI:
    """The API over one engine; `follow_interval` seconds between catching up on events
    that other processes (a Kafka consumer, a file import) appended to the same log.
    `settings` (None: `load_settings()`, the CLOSEDLOOP_* environment) gives the limits, the
    checkpoint interval, the metrics key and labels, the Kafka brokers; `auth` (default: the
    settings' CLOSEDLOOP_AUTH) makes every call show an API key; `rate_per_second` (default:
    CLOSEDLOOP_RATE_LIMIT) caps each producer key without its own rate."""
    settings = settings or load_settings()
    stop = threading.Event()
    checkpoint_every = settings.checkpoint_every
    last_checkpoint = [0]

    def checkpoint() -> None:
        now = engine.clock()
        if checkpoint_every and now - last_checkpoint[0] >= checkpoint_every:
            chain.take_checkpoint(engine.storage, now)
            last_checkpoint[0] = now

    def follow() -> None:
        while not stop.wait(follow_interval or 1.0):
            try:
                engine.catch_up()
                engine.tick()
                checkpoint()
            except Exception:  # keep following: the next round retries
                log.exception("catching up with the log failed")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        thread = None
        background = engine.follower
        if background is not None:
            # serve mode: the engine's follower already follows the log and ticks; one thread
            # doing the following, the checkpoint rides on it
            if follow_interval:
                background.hooks.append(checkpoint)
        elif follow_interval:
            thread = threading.Thread(target=follow, name="closedloop-follow", daemon=True)
            thread.start()
        yield
        stop.set()
        if thread:
            thread.join(timeout=5)
        if background is not None and checkpoint in background.hooks:
            background.hooks.remove(checkpoint)

    app = FastAPI(
        title="closedloop",
        version="0.1.0",
        description=(
            "Event-sourced, closed-loop after-sales service engine. Producers send v1 contract "
            "events (CloudEvents 1.0); the engine checks the four nothing-missed for every case "
            "(recorded, handled, reviewed, fed back) and the three controls (complaint, "
            "dissatisfaction and omission rates under 10 PPM)."
        ),
        openapi_tags=TAGS,
        default_response_class=JSON,
        lifespan=lifespan,
        docs_url=None,  # served from the package instead: docs.install
        redoc_url=None,
        dependencies=[Depends(authenticate)],
    )
    app.state.engine = engine
    app.state.settings = settings
    app.state.auth_required = auth if auth is not None else settings.auth
    rate = rate_per_second if rate_per_second is not None else settings.rate_limit
    app.state.default_rate = float(rate) if rate else None
    app.state.max_body_bytes = int(settings.max_body_mb * 1024 * 1024)
    app.state.max_batch_events = settings.max_batch_events
    app.state.limiter = RateLimiter()

    # Starlette's exception, not only FastAPI's: an unknown path (404) or method (405) is
    # answered in the same shape as every other error
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = exc.headers
        if exc.status_code == 405 and type(exc) is StarletteHTTPException:
            headers = {**(headers or {}), "Allow": _allowed(request)}
        return JSON({"error": _words(request, exc)}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> Response:
        # the server logs it with its traceback; the caller gets the error's usual shape
        return JSON({"error": "internal error: the server could not answer, its log says why / "
                     "服务器内部错误，原因见服务器日志"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def _bad_parameters(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"][1:]) or str(err["loc"][0]), "message": err["msg"]}
            for err in exc.errors()
        ]
        words = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return JSON({"error": f"bad request: {words}", "errors": problems}, status_code=422)

    for router, permission in ROUTERS:
        app.include_router(router, dependencies=[Depends(require(permission))] if permission else [],
                           responses=errors(401, 403) if permission else errors(401))

    observe.install(app, engine, settings)
    dashboard.install(app)
    docs.install(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes, tags=app.openapi_tags)
        contract = _event_schemas()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(contract.pop("$defs", {}))
        components["CloudEvent"] = contract
        if not app.state.auth_required:  # CLOSEDLOOP_AUTH=off: no route asks for a key
            for operation in (op for path in schema["paths"].values() for op in path.values()):
                operation.pop("security", None)
                operation["responses"].pop("401", None)
            schema["components"].pop("securitySchemes", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


_UNKNOWN = {
    404: "no route {method} {path}: the API's routes are listed at /docs / 没有此路由，API 的全部路由见 /docs",
    405: "{path} does not answer {method}: see its Allow header, or /docs / 该路径不支持 {method} 方法，见 Allow 响应头或 /docs",
}


def _allowed(request: Request) -> str:
    """Every method the path answers to: Starlette names only those of the first route that
    matched the path (GET of /audit/checkpoints, not its POST)."""
    routes = [r for router, _ in ROUTERS for r in router.routes] + list(request.app.routes)
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.path_regex.match(request.url.path):
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


def _words(request: Request, exc: StarletteHTTPException) -> Any:
    """The exception's own words; Starlette's bare "Not Found" and "Method Not Allowed" (no route
    matched) say which path and method, and where the routes are listed."""
    bare = type(exc) is StarletteHTTPException and exc.detail in ("Not Found", "Method Not Allowed")
    if bare and exc.status_code in _UNKNOWN:
        return _UNKNOWN[exc.status_code].format(method=request.method, path=request.url.path)
    return exc.detail
