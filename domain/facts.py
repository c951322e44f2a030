"""Facts: the immutable events of the after-sales loop, as the engine stores them.

A fact is what a producer (or the engine itself) said happened in the world, once it has
passed the contract at the edge. It is kept apart from the CloudEvents envelope so that the
transport contract can grow without rewriting the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Mapping

# Each fact type belongs to the stream of one kind of entity, named by the event's subject.
# The stream is the unit of ordering and the "aggregate" whose history an auditor reads.
STREAM_KIND: dict[str, str] = {
    "outlet.registered": "outlet",
    "technician.registered": "technician",
    "technician.praised": "technician",
    "technician.promoted": "technician",
    "stock.received": "warehouse",
    "call.received": "call",
    "case.registered": "case",
    "case.amended": "case",
    "case.dispatched": "case",
    "dispatch.accepted": "case",
    "dispatch.declined": "case",
    "appointment.set": "case",
    "case.transferred": "case",
    "guidance.given": "case",
    "follow_up.made": "case",
    "part.requested": "case",
    "part.approved": "case",
    "part.denied": "case",
    "part.shipped": "case",
    "part.delivered": "case",
    "visit.arrived": "case",
    "unit.taken_in": "case",
    "service.completed": "case",
    "service.not_completed": "case",
    "case.cancelled": "case",
    "callback.made": "case",
    "complaint.filed": "case",
    "complaint.resolved": "case",
    "feedback.routed": "feedback",
    "feedback.acknowledged": "feedback",
    "feedback.closed": "feedback",
    # the engine's alerts, in a stream per case (or per call never recorded as a case)
    "loop.leaked": "alert",
    "units.shipped": "shipment",
    "penalty.charged": "penalty",
    "technician.retrained": "technician",
    "dispatch.alarmed": "case",
    "dispatch.held": "case",
    "part.held": "case",
    "permit.points_changed": "technician",
    "permit.status_changed": "technician",
    "permit.reviewed": "technician",
}

FACT_TYPES = frozenset(STREAM_KIND)


def stream_id(kind: str, subject: str) -> str:
    """The log's stream name for an entity: readable in an audit, stable forever."""
    return f"{kind}:{subject}"


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds (UTC): the one unit every deadline is computed in."""
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def iso(ms: int | None) -> str | None:
    """RFC 3339 in UTC with millisecond precision, the form every view answers in."""
    if ms is None:
        return None
    return from_ms(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Fact:
    """One thing that happened, with both clocks: when in the world, when recorded."""

    type: str
    subject: str
    source: str
    id: str
    time_ms: int
    data: Mapping[str, Any]
    recorded_ms: int | None = None
    # The fact's place in the one log, once it has one (the notification id).
    position: int | None = field(default=None, compare=False)

    @property
    def stream(self) -> str:
        return stream_id(STREAM_KIND[self.type], self.subject)

    @property
    def key(self) -> tuple[str, str]:
        """The idempotency key of the contract: a resend of the same key is a no-op."""
        return (self.source, self.id)


_new = object.__new__
_SET = tuple(Fact.__dict__[name].__set__ for name in (  # the slots' own setters
    "type", "subject", "source", "id", "time_ms", "data", "recorded_ms", "position"))


def stored_fact(type_: str, subject: str, source: str, id_: str, time_ms: int, data: Mapping[str, Any],
                recorded_ms: int | None, position: int | None) -> Fact:
    """A fact as read back from the log. A replay makes one per event of the log: setting the
    slots directly costs half of the frozen dataclass's __init__ (an object.__setattr__ call
    per field)."""
    fact = _new(Fact)
    s_type, s_subject, s_source, s_id, s_time, s_data, s_recorded, s_position = _SET
    s_type(fact, type_)
    s_subject(fact, subject)
    s_source(fact, source)
    s_id(fact, id_)
    s_time(fact, time_ms)
    s_data(fact, data)
    s_recorded(fact, recorded_ms)
    s_position(fact, position)
    return fact


def parse_ms(text: str) -> int:
    """RFC 3339 text (as producers send it) -> epoch milliseconds."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time without a UTC offset: {text!r}")
    return to_ms(moment)
