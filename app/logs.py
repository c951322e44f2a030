"""Structured logs: one JSON object per line, carrying the event, case and source it concerns.

Operators search logs by what they hold in their hand: an event id a producer quotes, a
case id a supervisor reads out, a source that misbehaves. So every line about one event
names it with the same field names (`event_id`, `case_id`, `source`, `type`), and every
line written while answering a request carries that request's id, so a slow or failed call
can be followed through every line it wrote.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import uuid
from typing import Any, Mapping, TextIO

from pythonjsonlogger.json import JsonFormatter

from closedloop.domain.facts import STREAM_KIND

# Fields of the request being answered; a dict, so that work done in a thread pool for the
# request (whose context is a copy) adds to the same fields the access line reports.
_REQUEST: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("closedloop_request", default=None)

FORMATS = ("json", "text")


def fact_fields(type_: str | None, subject: str | None, source: str | None, event_id: str | None,
                data: Any = None) -> dict[str, Any]:
    """The fields naming one event: its id, source and type, and the case it concerns.

    The case is the subject of a case event, or the `case_id` a call, feedback item or engine
    decision names in its data."""
    case_id = None
    if type_ is not None and STREAM_KIND.get(type_) == "case":
        case_id = subject
    elif isinstance(data, Mapping) and isinstance(data.get("case_id"), str):
        case_id = data["case_id"]
    out = {"event_id": event_id, "case_id": case_id, "source": source, "type": type_}
    return {k: v for k, v in out.items() if v is not None}


def of_fact(fact: Any) -> dict[str, Any]:
    return fact_fields(fact.type, fact.subject, fact.source, fact.id, fact.data)


def of_raw(event: Any) -> dict[str, Any]:
    """The same fields for an event as received, which may be any shape at all."""
    if not isinstance(event, Mapping):
        return {}

    def text(name: str) -> str | None:
        value = event.get(name)
        return value if isinstance(value, str) else None

    return fact_fields(text("type"), text("subject"), text("source"), text("id"), event.get("data"))


def begin_request() -> tuple[dict[str, Any], contextvars.Token]:
    fields: dict[str, Any] = {"request_id": uuid.uuid4().hex[:16]}
    return fields, _REQUEST.set(fields)


def end_request(token: contextvars.Token) -> None:
    _REQUEST.reset(token)


def note(**fields: Any) -> None:
    """Add fields to the request being answered (they appear on its access line)."""
    current = _REQUEST.get()
    if current is not None:
        current.update({k: v for k, v in fields.items() if v is not None})


class _RequestFields(logging.Filter):
    """Puts the current request's id on every line written while answering it."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _REQUEST.get()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current["request_id"]
        return True


class _Text(logging.Formatter):
    """For a terminal: the message, then the same fields as `key=value`."""

    _standard = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = [f"{k}={v}" for k, v in vars(record).items() if k not in self._standard and not k.startswith("_")]
        return line + ("  " + " ".join(extra) if extra else "")


def formatter(fmt: str = "json") -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter("{levelname}{name}{message}", style="{", timestamp="time",
                             rename_fields={"levelname": "level", "name": "logger"}, json_ensure_ascii=False)
    if fmt == "text":
        return _Text("%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def configure(fmt: str | None = None, level: str | None = None, stream: TextIO | None = None) -> logging.Handler:
    """Send every logger's lines (ours, uvicorn's) to `stream` in `fmt`: json (the default,
    for log collectors) or text, at `level` (default INFO); the command passes the settings'
    CLOSEDLOOP_LOG_FORMAT and CLOSEDLOOP_LOG_LEVEL."""
    fmt = (fmt or "json").lower()
    level_name = (level or "INFO").upper()
    if not isinstance(logging.getLevelName(level_name), int):
        raise ValueError(f"log level must be one of DEBUG, INFO, WARNING, ERROR, not {level_name!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(_RequestFields())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_closedloop", False):
            root.removeHandler(old)
    handler._closedloop = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level_name)
    # uvicorn's own loggers write through ours, in the same format
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler


# --- what the engine took in ----------------------------------------------------------------
_intake = logging.getLogger("closedloop.intake")


def log_submission(channel: str, appended: Any, out: Any) -> None:
    """One line per rejected event (a warning: someone must act), one per event recorded or
    resent when a call brought one alone, and one per batch with its counts."""
    for rejection, qid in zip(out.rejected, out.quarantined):
        fields = of_raw(rejection.raw) | fact_fields(rejection.type, None, rejection.source, rejection.id)
        _intake.warning("event rejected and quarantined: %s", "; ".join(
            f"{e['field']}: {e['message']}" for e in rejection.errors),
            extra=fields | {"channel": channel, "quarantine_id": qid, "errors": rejection.errors})
    if len(appended.stored) + len(appended.duplicates) == 1:
        fact = (appended.stored or appended.duplicates)[0]
        fields = of_fact(fact)
        note(**fields)
        if appended.stored:
            _intake.info("event recorded", extra=fields | {"channel": channel, "position": fact.position})
        else:
            _intake.info("event already recorded: the resend changed nothing", extra=fields | {"channel": channel})
    elif appended.stored or appended.duplicates:
        _intake.info("batch recorded", extra={"channel": channel, "recorded": len(appended.stored),
                                              "duplicates": len(appended.duplicates), "rejected": len(out.rejected),
                                              "head": appended.head})
