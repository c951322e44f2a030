"""Operators: the quarantine of rejected events, and the engine's health."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from .common import EngineDep, Offset, parse_json, read_body, submitted
from .schemas import (ErrorPublic, HealthPublic, PublicRoute, QuarantinedPublic, QuarantinePublic,
                      SubmissionRejectedPublic, SubmittedPublic, errors)

# quarantine ids are 64-bit in both databases
QuarantineId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The quarantine id of a rejected event")]

router = APIRouter(route_class=PublicRoute)  # the quarantine: operators
health_router = APIRouter(route_class=PublicRoute)  # any key
_NO_SUCH = "No quarantined event of that id"


@router.get("/quarantine", tags=["operators"], response_model=QuarantinePublic, responses=errors(422))
def list_quarantine(
    engine: EngineDep,
    status: Literal["open", "resubmitted", "discarded", "all"] = "open",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Rejected events, with the reasons, as they were received."""
    return engine.quarantine.list(None if status == "all" else status, limit, offset)


@router.get("/quarantine/{qid}", tags=["operators"], response_model=QuarantinedPublic,
            responses=errors(404, 422, e404=_NO_SUCH))
def get_quarantined(engine: EngineDep, qid: QuarantineId) -> dict[str, Any]:
    """One rejected event, as it was received, with the reasons."""
    entry = engine.quarantine.get(qid)
    if entry is None:
        raise HTTPException(404, f"no quarantined event {qid}")
    return entry


@router.post("/quarantine/{qid}/resubmit", tags=["operators"], status_code=202, response_model=SubmittedPublic,
             responses={
                 200: {"model": SubmittedPublic, "description": "It had been recorded before: nothing new"},
                 422: {"model": SubmissionRejectedPublic | ErrorPublic,  # type: ignore[dict-item]
                       "description": "Still not valid (it stays in the quarantine), or the id is not a number"},
                 **errors(400, 404, 409, 413, e404=_NO_SUCH)},
             openapi_extra={"requestBody": {"required": False, "content": {
                 "application/json": {"schema": {"$ref": "#/components/schemas/CloudEvent"}}},
                 "description": "The corrected event; leave empty to re-submit it as it was."}})
async def resubmit(engine: EngineDep, qid: QuarantineId, request: Request) -> Response:
    """Re-submit a quarantined event, corrected or as it was."""
    body = await read_body(request)
    corrected = parse_json(body) if body.strip() else None
    try:
        result = await run_in_threadpool(engine.resubmit, qid, corrected)
    except KeyError:
        raise HTTPException(404, f"no quarantined event {qid}") from None
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
    return submitted(result, single=True)


@router.post("/quarantine/{qid}/discard", tags=["operators"], response_model=QuarantinedPublic,
             responses=errors(404, 409, 422, e404=_NO_SUCH))
def discard(engine: EngineDep, qid: QuarantineId,
            reason: Annotated[str, Query(min_length=1, max_length=2000, description="Why it is discarded")],
            ) -> dict[str, Any]:
    """Close a quarantined event without recording it (the reason is kept)."""
    entry = engine.quarantine.get(qid)
    if entry is None:
        raise HTTPException(404, f"no quarantined event {qid}")
    if entry["status"] != "open":
        raise HTTPException(409, f"quarantined event {qid} is already {entry['status']}")
    engine.quarantine.resolve(qid, "discarded", reason)
    return engine.quarantine.get(qid)


@health_router.get("/health", tags=["operations"], response_model=HealthPublic)
def health(engine: EngineDep) -> dict[str, Any]:
    """The log's head, how far each view is behind it, and what stopped on a failure: `degraded`
    names each follower (view, reactor, publisher) that stopped on a stored fact, with the
    fact's position and id and the error, while the intake of events goes on."""
    followers = [_follower(f) for f in engine.followers()]
    stopped = [f for f in followers if f["state"] == "failed"]
    return {"status": "degraded" if stopped else "ok", "database": engine.storage.dialect,
            "log_head": engine.log.head(), "view_lag": engine.projector.lag(), "stopped": stopped,
            "followers": followers}


def _follower(f: Any) -> dict[str, Any]:
    from datetime import UTC, datetime

    out = f.to_json()
    if out["failed_at"] is not None:
        out["failed_at"] = datetime.fromtimestamp(out["failed_at"] / 1000, UTC).isoformat(timespec="milliseconds")
    return out
