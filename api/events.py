"""Producers: append contract events, one by one or in batches."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from closedloop.contract.events import from_binary
from closedloop.app.engine import Engine

from .common import BATCH, STRUCTURED, EngineDep, batch_limit, parse_json, read_body, submitted
from .schemas import PublicRoute, SubmissionRejectedPublic, SubmittedPublic, errors
from .security import check_rate, check_sources

router = APIRouter(tags=["producers"], route_class=PublicRoute)

# what a producer sends: a call taken by the call center, then the case it registers
CALL_EXAMPLE = {
    "specversion": "1.0", "id": "call-20261030-0001", "source": "/callcenter/qingdao/seat-12",
    "type": "call.received", "time": "2026-10-30T08:00:00Z", "subject": "CALL-0001",
    "datacontenttype": "application/json",
    "data": {"phone": "13800000000", "intent": "repair", "agent_id": "A7", "summary": "fridge not cooling"},
}
CASE_EXAMPLE = {
    "specversion": "1.0", "id": "case-20261030-0001", "source": "/callcenter/qingdao/seat-12",
    "type": "case.registered", "time": "2026-10-30T08:10:00Z", "subject": "CASE-0001",
    "datacontenttype": "application/json",
    "data": {"call_id": "CALL-0001",
             "customer": {"id": "CU-88", "name": "Wang Li", "phone": "13800000000", "address": "1 Haier Road",
                          "region": "R01"},
             "product": {"model": "BCD-216", "product_line": "refrigerator", "serial": "SN-0001",
                         "purchase_date": "2025-06-01", "production_batch": "B2025-05-A", "plant": "qingdao"},
             "fault": {"description": "not cooling"}, "request": "repair",
             "promised_by": "2026-10-31T18:00:00Z"},
}
_ONE = {"call": {"summary": "A call taken by the call center", "value": CALL_EXAMPLE},
        "case": {"summary": "The case registered for it", "value": CASE_EXAMPLE}}
_MANY = {"story": {"summary": "A call and its case in one request", "value": [CALL_EXAMPLE, CASE_EXAMPLE]}}
_EVENT = {"$ref": "#/components/schemas/CloudEvent"}
_EVENTS = {"type": "array", "items": _EVENT}
EVENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {STRUCTURED: {"schema": _EVENT, "examples": _ONE},
                    "application/json": {"schema": _EVENT, "examples": _ONE},
                    BATCH: {"schema": _EVENTS, "examples": _MANY}},
        "description": "A structured-mode CloudEvent; or, in binary mode, the event's data with its "
        "context attributes in ce-* headers; or a batch (application/cloudevents-batch+json).",
    }
}
BATCH_BODY = {"requestBody": {"required": True, "content": {BATCH: {"schema": _EVENTS, "examples": _MANY},
                                                            "application/json": {"schema": _EVENTS,
                                                                                 "examples": _MANY}}}}
_RECORDED = {"recorded": {"summary": "Recorded", "value": {"accepted": 1, "duplicates": 0, "rejected": [],
                                                           "position": 42}}}
_RESENT = {"resent": {"summary": "Sent before: nothing new",
                      "value": {"accepted": 0, "duplicates": 1, "rejected": [], "position": None}}}
_REFUSED = {"refused": {"summary": "Refused and quarantined", "value": {
    "accepted": 0, "duplicates": 0, "position": None,
    "error": "event 'cb-9' from '/callback/desk-1' rejected: data.reached: Input should be a valid boolean "
             "(got 'yes')",
    "rejected": [{"id": "cb-9", "source": "/callback/desk-1", "type": "callback.made",
                  "errors": [{"field": "data.reached", "message": "Input should be a valid boolean (got 'yes')"}],
                  "message": "event 'cb-9' from '/callback/desk-1' rejected: data.reached: Input should be a "
                             "valid boolean (got 'yes')", "quarantine_id": 7}]}}}


def _answers(recorded: str, refused: str, *codes: int) -> dict[int | str, dict]:
    return {
        202: {"model": SubmittedPublic, "description": recorded,
              "content": {"application/json": {"examples": _RECORDED}}},
        200: {"model": SubmittedPublic, "description": "Every event was sent before: nothing new is recorded",
              "content": {"application/json": {"examples": _RESENT}}},
        422: {"model": SubmissionRejectedPublic, "description": refused,
              "content": {"application/json": {"examples": _REFUSED}}},
        **errors(*codes, e403="The key may not append, or not from an event's source (the first stranger is named)"),
    }


@router.post("/events", openapi_extra=EVENT_BODY, status_code=202, response_model=SubmittedPublic,
             responses=_answers("Recorded", "Rejected and quarantined; `error` names the event and the field",
                                400, 403, 413, 415, 429))
async def post_event(request: Request, engine: EngineDep) -> Response:
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


@router.post("/events/batch", openapi_extra=BATCH_BODY, status_code=202, response_model=SubmittedPublic,
             responses=_answers("Recorded", "Some events rejected and quarantined; the rest recorded",
                                400, 403, 413, 429))
async def post_batch(request: Request, engine: EngineDep) -> Response:
    """Append a batch of events (application/cloudevents-batch+json), thousands per request."""
    return await post_batch_body(request, engine, await read_body(request))


async def post_batch_body(request: Request, engine: Engine, raw: bytes) -> Response:
    events = parse_json(raw)
    if not isinstance(events, list):
        raise HTTPException(400, "a batch is a JSON array of CloudEvents")
    if len(events) > batch_limit(request):
        raise HTTPException(413, f"a batch of {len(events)} events is over the limit of {batch_limit(request)}: "
                            "split it")
    _admit(request, events)
    return submitted(await run_in_threadpool(engine.submit, events, "http-batch"), single=False)


def _admit(request: Request, events: list) -> None:
    """The caller's key may send these events, from these sources, at this rate."""
    principal = request.state.principal
    check_sources(principal, events)
    check_rate(request, principal, len(events))
