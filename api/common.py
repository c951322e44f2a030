"""What every router shares: the engine dependency, time parameters, JSON in and out."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from contextlib import contextmanager
from typing import Annotated, Any, Iterator

import orjson
from fastapi import Depends, HTTPException, Query, Request
from pydantic import BeforeValidator, WithJsonSchema
from fastapi.responses import JSONResponse, Response

from closedloop.domain.facts import to_ms
from closedloop.app.engine import Engine, Submitted
from closedloop.log.storage import Storage

# a request larger than this is refused before it is read whole; create_app sets the app's
# limits from the settings (CLOSEDLOOP_MAX_BODY_MB, CLOSEDLOOP_MAX_BATCH_EVENTS), these are the defaults
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_BATCH_EVENTS = 50_000
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(get_engine)]

# Every view answer says the log position it reflects; a reader who needs its own write (the
# `position` a POST answered) passes `min_position` and the answer waits for the views
POSITION_HEADER = "X-Closedloop-Position"
MAX_POSITION = 2**62
MinPosition = Annotated[int | None, Query(
    ge=0, le=MAX_POSITION,
    description="Answer only once the views reflect the log up to this position (the `position` a POST "
    "answered: read your own write). Waits at most CLOSEDLOOP_MIN_POSITION_WAIT (default 5s), then answers 503 "
    "with `Retry-After`; a position the log has not reached is refused with 422.")]


def view_position(request: Request, engine: EngineDep, min_position: MinPosition = None) -> int:
    """The position the views reflect, for the answer's `X-Closedloop-Position` header; with
    `min_position`, waits (bounded) until they reflect it."""
    if min_position is not None:
        head = engine.log.head()
        if min_position > head:
            raise HTTPException(422, f"min_position {min_position} is past the log's head ({head}): no event has "
                                "been recorded there / min_position 超过日志当前位置，该位置尚无事件")
        settings = getattr(request.app.state, "settings", None)
        wait_ms = settings.min_position_wait if settings is not None else 5000
        if not engine.wait_for(min_position, wait_ms / 1000):
            retry = max(1, round(wait_ms / 1000))
            raise HTTPException(
                503, f"the views have not reached position {min_position} within {wait_ms / 1000:g} s (they reflect "
                f"{engine.views_position()}); try again after Retry-After seconds, /health says how far behind "
                f"they are / 视图在 {wait_ms / 1000:g} 秒内未追上位置 {min_position}，请稍后重试", headers={"Retry-After": str(retry)})
    position = engine.views_position()
    request.state.view_position = position
    return position


# A moment as the routes take it: an RFC 3339 date-time, its offset optional (none means UTC),
# or a date (its midnight). Not a number: pydantic would read one as a Unix time.
MOMENT_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
                  r"([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?([Zz]|[+-][0-9]{2}:?[0-9]{2})?)?$")


def _moment(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(MOMENT_PATTERN, value):
        raise ValueError("not an RFC 3339 date-time (e.g. 2026-10-30T08:15:00Z) / 不是 RFC 3339 时间")
    return value


Moment = Annotated[datetime, BeforeValidator(_moment),
                   WithJsonSchema({"type": "string", "pattern": MOMENT_PATTERN, "examples": ["2026-10-30T08:15:00Z"]})]

AsOf = Annotated[
    Moment | None,
    Query(description="The world as it stood at this moment (RFC 3339; no offset means UTC; a date means "
          "its midnight); default: now. "
          "Only events whose time is not after it count, and deadlines are judged at it."),
]
# how far into a list a page may start: beyond any view's rows, and far from the 64-bit
# integers the databases hold (a larger offset was a server error)
MAX_OFFSET = 1_000_000_000
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="How many items to skip")]

KnownAt = Annotated[
    Moment | None,
    Query(description="Only what the engine had recorded by this moment (audits: what did we know then)."),
]


class JSON(JSONResponse):
    """JSON rendered by orjson: the views answer with many small objects. A JSONResponse, so
    that the OpenAPI document gives the routes' answers their JSON schemas."""

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


def body_limit(request: Request) -> int:
    return getattr(request.app.state, "max_body_bytes", MAX_BODY_BYTES)


def batch_limit(request: Request) -> int:
    return getattr(request.app.state, "max_batch_events", MAX_BATCH_EVENTS)


def parse_json(raw: bytes, limit: int | None = None) -> Any:
    """`raw` as JSON; over `limit` bytes (None: no limit here, `read_body` already held to it): 413."""
    if limit is not None and len(raw) > limit:
        raise HTTPException(413, f"body of {len(raw)} bytes is over the limit of {limit}")
    if not raw.strip():
        raise HTTPException(400, "the body is empty: send a CloudEvent as JSON")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"the body is not valid JSON: {exc}") from None


async def read_body(request: Request) -> bytes:
    """The body, read in chunks and refused as soon as it grows past the limit (a client
    that lies about its length, or sends chunked, cannot make a worker buffer gigabytes)."""
    limit = body_limit(request)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body of {declared} bytes is over the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
