"""The CloudEvents Kafka protocol binding: a message's value and headers to a CloudEvent and back.

A Kafka message carries one CloudEvent, in one of the binding's two content modes:
- binary: the context attributes are headers named `ce_<attribute>` (UTF-8 values), the
  `content-type` header is the event's `datacontenttype`, and the message value is the data;
- structured: the `content-type` header is `application/cloudevents+json` and the value is
  the whole event as JSON (a message with neither `ce_` headers nor a content type is read
  as structured when its value is a JSON object, since many producers leave the header out).
The binding defines no batch mode: one message, one event.

The message key is the partitioning key (the case id, so that one case's events stay in
order on one partition); it is not part of the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import orjson

from closedloop.contract.events import Rejection, from_binary, validate
from closedloop.domain.facts import Fact

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


# --- decoding: a message -> a CloudEvent -> a Fact, or the reason it is poison -----------------
@dataclass(frozen=True, slots=True)
class Decoded:
    """One message read: the fact it carries, or the rejection saying why it is poison."""

    fact: Fact | None
    rejection: Rejection | None


def _header_text(headers: Sequence[tuple[str, bytes | None]]) -> tuple[dict[str, str], list[str]]:
    out: dict[str, str] = {}
    bad: list[str] = []
    for name, value in headers or ():
        if value is None:
            continue
        try:
            out[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(name)
    return out, bad


def _poison(message: str, raw: Any, field: str = "(message)") -> Decoded:
    return Decoded(None, Rejection([{"field": field, "message": message}], raw=raw))


def _text(value: bytes | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", errors="replace")


def _is_json(content_type: str) -> bool:
    return content_type in ("", "application/json", "text/json") or content_type.endswith("+json")


def decode_message(value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> Decoded:
    """The binding's two content modes -> a validated fact, or a rejection naming the problem."""
    text_headers, bad = _header_text(headers)
    lowered = {k.lower(): v for k, v in text_headers.items()}
    content_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    if "ce_specversion" in lowered:  # binary mode
        if bad:
            return _poison(f"header(s) {', '.join(bad)} are not UTF-8 text", _text(value))
        # only ce_ attributes and the content type are the event's; other headers are transport
        own = {k: v for k, v in text_headers.items() if k.lower().startswith("ce_") or k.lower() == "content-type"}
        data: Any = None
        if value is not None and value.strip():
            if not _is_json(content_type):
                return _decided(from_binary(own, _text(value)), f"data of content type {content_type!r} is not "
                                "accepted: the contract's data is a JSON object (application/json)",
                                "datacontenttype")
            try:
                data = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                return _decided(from_binary(own, _text(value)), f"the message value is not JSON: {exc}", "data")
        return _validated(from_binary(own, data))
    if content_type == BATCH:
        return _poison("a batch (application/cloudevents-batch+json) is not defined by the Kafka binding: "
                       "send one event per message", _text(value), "content-type")
    if content_type and content_type != STRUCTURED and not _is_json(content_type):
        return _poison(f"content type {content_type!r} is neither a structured CloudEvent ({STRUCTURED}) "
                       "nor binary mode (no ce_specversion header)", _text(value), "content-type")
    if value is None or not value.strip():
        return _poison("the message is empty: expected a CloudEvent", "")
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return _poison(f"the message is not JSON ({exc}) and has no ce_specversion header (binary mode)",
                       _text(value))
    if not isinstance(event, dict):
        return _poison(f"the message is JSON but not an object (got {type(event).__name__}): expected a "
                       "structured CloudEvent", event)
    if "specversion" not in event and not content_type == STRUCTURED:
        return _poison("not a CloudEvent: no specversion in the JSON and no ce_specversion header", event,
                       "specversion")
    return _validated(event)


def _validated(event: dict[str, Any]) -> Decoded:
    outcome = validate(event)
    if isinstance(outcome, Fact):
        return Decoded(outcome, None)
    return Decoded(None, outcome)


def _decided(event: dict[str, Any], message: str, field: str) -> Decoded:
    ident = event.get("id") if isinstance(event.get("id"), str) else None
    source = event.get("source") if isinstance(event.get("source"), str) else None
    kind = event.get("type") if isinstance(event.get("type"), str) else None
    return Decoded(None, Rejection([{"field": field, "message": message}], ident, source, kind, raw=event))


# --- encoding: what producers (and the publisher) put on a topic -----------------------------
def encode_structured(event: dict[str, Any]) -> tuple[bytes, list[tuple[str, bytes]]]:
    return orjson.dumps(event), [("content-type", STRUCTURED.encode())]


def encode_binary(event: dict[str, Any]) -> tuple[bytes, list[tuple[str, bytes]]]:
    headers: list[tuple[str, bytes]] = []
    for name, value in event.items():
        if name in ("data", "datacontenttype"):
            continue
        headers.append((f"ce_{name}", (value if isinstance(value, str) else orjson.dumps(value).decode()).encode()))
    headers.append(("content-type", (event.get("datacontenttype") or "application/json").encode()))
    return orjson.dumps(event.get("data")), headers


def encode(event: dict[str, Any], mode: str = "structured") -> tuple[bytes, list[tuple[str, bytes]]]:
    if mode == "binary":
        return encode_binary(event)
    if mode == "structured":
        return encode_structured(event)
    raise ValueError(f"content mode {mode!r} is not one of: structured, binary")


# --- the broker's end of each partition --------------------------------------------------------
