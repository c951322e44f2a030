"""What every router shares: the engine dependency, time parameters, JSON in and out."""

from __future__ import annotations

from datetime import UTC, datetime
from contextlib import contextmanager
from typing import Annotated, Any, Iterator

import orjson
from fastapi import Depends, HTTPException, Query, Request
from fastapi.responses import Response

from closedloop.domain.facts import to_ms
from closedloop.app.engine import Engine, Submitted
from closedloop.log.storage import Storage

import os

# a request larger than this is refused before it is read whole (CLOSEDLOOP_MAX_BODY_MB)
MAX_BODY_BYTES = int(float(os.environ.get("CLOSEDLOOP_MAX_BODY_MB", "64")) * 1024 * 1024)
MAX_BATCH_EVENTS = int(os.environ.get("CLOSEDLOOP_MAX_BATCH_EVENTS", "50000"))
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(get_engine)]

AsOf = Annotated[
    datetime | None,
    Query(description="The world as it stood at this moment (RFC 3339; no offset means UTC); default: now. "
          "Only events whose time is not after it count, and deadlines are judged at it."),
]
KnownAt = Annotated[
    datetime | None,
    Query(description="Only what the engine had recorded by this moment (audits: what did we know then)."),
]


class JSON(Response):
    """JSON rendered by orjson: the views answer with many small objects."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


@contextmanager
def views_known_at(engine: Engine, at: int, known_at: datetime | None) -> Iterator[Storage]:
    """The live views; or, for `known_at`, every view replayed from only what the engine had
    recorded by then (an audit's "what did we know"), in a scratch database."""
    if known_at is None:
        yield engine.storage
        return
    from closedloop.app.replay import scratch_views

    with scratch_views(engine.log, engine.policy, known_at=moment_ms(known_at, at), views=engine.views) as scratch:
        yield scratch


def moment_ms(moment: datetime | None, default: int) -> int:
    if moment is None:
        return default
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_ms(moment)


def submitted(result: Submitted, single: bool) -> Response:
    body = result.to_json()
    if result.rejected:
        first = result.rejected[0]
        body["error"] = first.describe() if single else (
            f"{len(result.rejected)} event(s) rejected and quarantined; the others were accepted")
        return JSON(body, status_code=422)
    return JSON(body, status_code=202 if result.accepted else 200)


def parse_json(raw: bytes) -> Any:
    if len(raw) > MAX_BODY_BYTES:
        raise HTTPException(413, f"body of {len(raw)} bytes is over the limit of {MAX_BODY_BYTES}")
    if not raw.strip():
        raise HTTPException(400, "the body is empty: send a CloudEvent as JSON")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"the body is not valid JSON: {exc}") from None


async def read_body(request: Request) -> bytes:
    """The body, read in chunks and refused as soon as it grows past the limit (a client
    that lies about its length, or sends chunked, cannot make a worker buffer gigabytes)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"body of {declared} bytes is over the limit of {MAX_BODY_BYTES}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPException(413, f"body is over the limit of {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
