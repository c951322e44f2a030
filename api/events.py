"""Producers: append contract events, one by one or in batches."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from closedloop.contract.events import from_binary
from closedloop.app.engine import Engine

from .common import BATCH, MAX_BATCH_EVENTS, STRUCTURED, EngineDep, parse_json, read_body, submitted
from .security import check_rate, check_sources

router = APIRouter(tags=["producers"])

_EVENT = {"$ref": "#/components/schemas/CloudEvent"}
_EVENTS = {"type": "array", "items": _EVENT}
EVENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {STRUCTURED: {"schema": _EVENT}, "application/json": {"schema": _EVENT},
                    BATCH: {"schema": _EVENTS}},
        "description": "A structured-mode CloudEvent; or, in binary mode, the event's data with its "
        "context attributes in ce-* headers; or a batch (application/cloudevents-batch+json).",
    }
}
BATCH_BODY = {"requestBody": {"required": True, "content": {BATCH: {"schema": _EVENTS},
                                                            "application/json": {"schema": _EVENTS}}}}


@router.post("/events", openapi_extra=EVENT_BODY,
             responses={202: {"description": "recorded"}, 200: {"description": "a resend: nothing new"},
                        422: {"description": "rejected and quarantined; the body names the field"}})
async def post_event(request: Request, engine: EngineDep) -> Any:
    """Append one event (structured or binary content mode) or a batch."""
    body = await read_body(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == BATCH:
        return await post_batch_body(request, engine, body)
    if "ce-specversion" in request.headers:
        data = parse_json(body) if body.strip() else None
        event = from_binary(dict(request.headers), data)
        _admit(request, [event])
        return submitted(await run_in_threadpool(engine.submit, [event], "http-binary"), single=True)
    if content_type and content_type not in (STRUCTURED, "application/json"):
        raise HTTPException(415, f"content type {content_type!r} is not accepted: send {STRUCTURED}, "
                            f"{BATCH}, or binary mode with ce-* headers")
    event = parse_json(body)
    if isinstance(event, list):
        raise HTTPException(400, f"a JSON array is a batch: send it as {BATCH} or to /events/batch")
    _admit(request, [event])
    return submitted(await run_in_threadpool(engine.submit, [event], "http"), single=True)


@router.post("/events/batch", openapi_extra=BATCH_BODY,
             responses={202: {"description": "recorded"},
                        422: {"description": "some events rejected and quarantined; the rest recorded"}})
async def post_batch(request: Request, engine: EngineDep) -> Any:
    """Append a batch of events (application/cloudevents-batch+json), thousands per request."""
    return await post_batch_body(request, engine, await read_body(request))


async def post_batch_body(request: Request, engine: Engine, raw: bytes) -> Response:
    events = parse_json(raw)
    if not isinstance(events, list):
        raise HTTPException(400, "a batch is a JSON array of CloudEvents")
    if len(events) > MAX_BATCH_EVENTS:
        raise HTTPException(413, f"a batch of {len(events)} events is over the limit of {MAX_BATCH_EVENTS}: "
                            "split it")
    _admit(request, events)
    return submitted(await run_in_threadpool(engine.submit, events, "http-batch"), single=False)


def _admit(request: Request, events: list) -> None:
    """The caller's key may send these events, from these sources, at this rate."""
    principal = request.state.principal
    check_sources(principal, events)
    check_rate(request, principal, len(events))
