"""The HTTP API: producers append events, operators mind the quarantine, analysts ask the views.

Routes translate HTTP into engine calls and answers; the rules live in the domain.
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from closedloop.contract import from_binary
from closedloop.domain.facts import to_ms
from closedloop.domain.loop import STAGES
from closedloop.engine import Engine, Submitted
from closedloop.projections import controls as controls_view
from closedloop.projections import leaks as leaks_view
from closedloop.projections.standing import case_standing

log = logging.getLogger("closedloop.api")

MAX_BODY_BYTES = 64 * 1024 * 1024
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"

def _event_schemas() -> dict[str, Any]:
    from closedloop.contract import _ADAPTER

    return _ADAPTER.json_schema(ref_template="#/components/schemas/{model}")


AsOf = Annotated[
    datetime | None,
    Query(description="The world as it stood at this moment (RFC 3339); default: now. "
          "Only events whose time is not after it count, and deadlines are judged at it."),
]


class JSON(Response):
    """JSON rendered by orjson: the views answer with many small objects."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def _ms(moment: datetime | None, default: int) -> int:
    if moment is None:
        return default
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_ms(moment)


def _submitted(result: Submitted, single: bool) -> Response:
    body = result.to_json()
    if result.rejected:
        first = result.rejected[0]
        body["error"] = first.describe() if single else (
            f"{len(result.rejected)} event(s) rejected and quarantined; the others were accepted")
        return JSON(body, status_code=422)
    return JSON(body, status_code=202 if result.accepted else 200)


def _parse_json(raw: bytes) -> Any:
    if len(raw) > MAX_BODY_BYTES:
        raise HTTPException(413, f"body of {len(raw)} bytes is over the limit of {MAX_BODY_BYTES}")
    if not raw.strip():
        raise HTTPException(400, "the body is empty: send a CloudEvent as JSON")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"the body is not valid JSON: {exc}") from None


def create_app(engine: Engine, follow_interval: float | None = 1.0) -> FastAPI:
    """The API over one engine; `follow_interval` seconds between catching up on events
    that other processes (a Kafka consumer, a file import) appended to the same log."""
    stop = threading.Event()

    def follow() -> None:
        while not stop.wait(follow_interval or 1.0):
            try:
                engine.catch_up()
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
    )
    app.state.engine = engine

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        return JSON({"error": exc.detail}, status_code=exc.status_code)

    event_body = {
        "requestBody": {
            "required": True,
            "content": {
                STRUCTURED: {"schema": {"$ref": "#/components/schemas/CloudEvent"}},
                "application/json": {"schema": {"$ref": "#/components/schemas/CloudEvent"}},
                BATCH: {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/CloudEvent"}}},
            },
            "description": "A structured-mode CloudEvent; or, in binary mode, the event's data with "
            "its context attributes in ce-* headers; or a batch (application/cloudevents-batch+json).",
        }
    }
    batch_body = {
        "requestBody": {
            "required": True,
            "content": {
                BATCH: {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/CloudEvent"}}},
                "application/json": {"schema": {"type": "array",
                                                "items": {"$ref": "#/components/schemas/CloudEvent"}}},
            },
        }
    }

    @app.post("/events", tags=["producers"], openapi_extra=event_body,
              responses={202: {"description": "recorded"}, 200: {"description": "a resend: nothing new"},
                         422: {"description": "rejected and quarantined; the body names the field"}})
    async def post_event(request: Request) -> Any:
        """Append one event (structured or binary content mode) or a batch."""
        request_body = await _body(request)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == BATCH:
            return await _post_batch(engine, request_body)
        if "ce-specversion" in request.headers:
            data = _parse_json(request_body) if request_body.strip() else None
            event = from_binary(dict(request.headers), data)
            event.pop("datacontenttype", None) if content_type == "application/json" else None
            return _submitted(await run_in_threadpool(engine.submit, [event], "http-binary"), single=True)
        if content_type and content_type not in (STRUCTURED, "application/json"):
            raise HTTPException(415, f"content type {content_type!r} is not accepted: send {STRUCTURED}, "
                                f"{BATCH}, or binary mode with ce-* headers")
        event = _parse_json(request_body)
        if isinstance(event, list):
            raise HTTPException(400, f"a JSON array is a batch: send it as {BATCH} or to /events/batch")
        return _submitted(await run_in_threadpool(engine.submit, [event], "http"), single=True)

    @app.post("/events/batch", tags=["producers"], openapi_extra=batch_body,
              responses={202: {"description": "recorded"},
                         422: {"description": "some events rejected and quarantined; the rest recorded"}})
    async def post_batch(request: Request) -> Any:
        """Append a batch of events (application/cloudevents-batch+json), thousands per request."""
        return await _post_batch(engine, await _body(request))

    @app.get("/cases/{case_id}", tags=["loop"])
    def get_case(case_id: Annotated[str, Path(min_length=1)], as_of: AsOf = None,
                 known_at: Annotated[datetime | None, Query(
                     description="Only what the engine had recorded by this moment (audits).")] = None) -> Any:
        """The case's timeline and where it stands at each of the four steps, with its owner."""
        now = engine.clock()
        known = _ms(known_at, now) if known_at else None
        found = case_standing(engine.log, engine.policy, case_id, _ms(as_of, now), known)
        if found is None:
            raise HTTPException(404, f"no case {case_id!r} has been recorded")
        return found

    @app.get("/loop/summary", tags=["loop"])
    def loop_summary(as_of: AsOf = None) -> Any:
        """How many cases there are, and how many are open and overdue (leaked) at each step."""
        return leaks_view.summary(engine.storage, _ms(as_of, engine.clock()))

    @app.get("/loop/leaks", tags=["loop"])
    def loop_leaks(
        as_of: AsOf = None,
        stage: Annotated[Literal["recorded", "handled", "reviewed", "fed_back"] | None, Query()] = None,
        region: str | None = None,
        outlet_id: str | None = None,
        owner: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Any:
        """Steps overdue at the moment asked about: which case, which step, due when, owned by whom."""
        flt = leaks_view.LeakFilter(stage, region, outlet_id, owner)
        return leaks_view.leaks(engine.storage, _ms(as_of, engine.clock()), flt, limit, offset)

    @app.get("/controls", tags=["controls"])
    def get_controls(
        from_: Annotated[datetime | None, Query(alias="from", description="Start of the period (default: "
                                                "30 days before `to`)")] = None,
        to: Annotated[datetime | None, Query(description="End of the period, exclusive (default: as_of)")] = None,
        as_of: AsOf = None,
        by: Literal["region", "outlet", "product_line"] | None = None,
    ) -> Any:
        """Complaint, dissatisfaction and omission rates in PPM against the 10 PPM target."""
        at = _ms(as_of, engine.clock())
        end = _ms(to, at)
        start = _ms(from_, end - 30 * 24 * 3_600_000)
        if start >= end:
            raise HTTPException(422, "from must be before to")
        return controls_view.controls(engine.storage, start, end, at, by)

    @app.get("/quarantine", tags=["operators"])
    def list_quarantine(
        status: Literal["open", "resubmitted", "discarded", "all"] = "open",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Any:
        """Rejected events, with the reasons, as they were received."""
        return engine.quarantine.list(None if status == "all" else status, limit, offset)

    @app.get("/quarantine/{qid}", tags=["operators"])
    def get_quarantined(qid: int) -> Any:
        entry = engine.quarantine.get(qid)
        if entry is None:
            raise HTTPException(404, f"no quarantined event {qid}")
        return entry

    @app.post("/quarantine/{qid}/resubmit", tags=["operators"],
              openapi_extra={"requestBody": {"required": False, "content": {
                  "application/json": {"schema": {"$ref": "#/components/schemas/CloudEvent"}}},
                  "description": "The corrected event; leave empty to re-submit it as it was."}})
    async def resubmit(qid: int, request: Request) -> Any:
        """Re-submit a quarantined event, corrected or as it was."""
        request_body = await _body(request)
        corrected = _parse_json(request_body) if request_body.strip() else None
        try:
            result = await run_in_threadpool(engine.resubmit, qid, corrected)
        except KeyError:
            raise HTTPException(404, f"no quarantined event {qid}") from None
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        return _submitted(result, single=True)

    @app.post("/quarantine/{qid}/discard", tags=["operators"])
    def discard(qid: int, reason: Annotated[str, Query(min_length=1, description="Why it is discarded")]) -> Any:
        """Close a quarantined event without recording it (the reason is kept)."""
        entry = engine.quarantine.get(qid)
        if entry is None:
            raise HTTPException(404, f"no quarantined event {qid}")
        if entry["status"] != "open":
            raise HTTPException(409, f"quarantined event {qid} is already {entry['status']}")
        engine.quarantine.resolve(qid, "discarded", reason)
        return engine.quarantine.get(qid)

    @app.get("/health", tags=["operations"])
    def health() -> Any:
        """The log's head and how far each view is behind it."""
        return {"status": "ok", "database": engine.storage.dialect, "log_head": engine.log.head(),
                "view_lag": engine.projector.lag()}

    @app.get("/", include_in_schema=False)
    def root() -> Any:
        return RedirectResponse("/docs")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes)
        events = _event_schemas()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(events.pop("$defs", {}))
        components["CloudEvent"] = events
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"body of {declared} bytes is over the limit of {MAX_BODY_BYTES}")
    return await request.body()


async def _post_batch(engine: Engine, raw: bytes) -> Response:
    events = _parse_json(raw)
    if not isinstance(events, list):
        raise HTTPException(400, "a batch is a JSON array of CloudEvents")
    return _submitted(await run_in_threadpool(engine.submit, events, "http-batch"), single=False)
