"""The v1 event contract at the edge: CloudEvents 1.0 envelopes, validated with pydantic.

Everything a producer sends passes through `validate`, whichever way it came (HTTP
structured or binary mode, a batch, Kafka, a file). A valid event becomes a domain `Fact`;
an invalid one becomes a `Rejection` that names the event and every field that is wrong.
The stored fact keeps the producer's data as sent (optional and extra fields included), so
the contract can grow without rewriting the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)

from closedloop.domain.facts import FACT_TYPES, Fact, to_ms

SPECVERSION = "1.0"


def _rfc3339(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("not an RFC 3339 date-time (e.g. 2026-10-30T08:15:00Z)") from None
    if moment.tzinfo is None:
        raise ValueError("date-time needs a UTC offset or Z (e.g. 2026-10-30T08:15:00Z)")
    return text


def _date(text: str) -> str:
    try:
        datetime.strptime(text[:10], "%Y-%m-%d")
    except ValueError:
        raise ValueError("not a date (YYYY-MM-DD)") from None
    return text


Id = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=10_000)]
Time = Annotated[str, AfterValidator(_rfc3339)]
Day = Annotated[str, AfterValidator(_date)]
# Registration details may be blank: the call center records what it has, and the loop
# counts the case as recorded-incomplete until it is amended.
Detail = Annotated[str, StringConstraints(max_length=1_000)] | None


class Data(BaseModel):
    """Fields of an event's data; producers may add fields of their own."""

    model_config = ConfigDict(extra="allow", strict=True)


# --- network (reference data) ------------------------------------------------------------
class OutletRegistered(Data):
    name: Text
    tier: Literal["authorized", "specialized", "center"]
    regions: list[Id]
    product_lines: list[Id]
    daily_capacity: Annotated[int, Field(ge=0)]


class TechnicianRegistered(Data):
    outlet_id: Id
    name: Text
    level: Literal["junior", "intermediate", "senior"]


class StockReceived(Data):
    level: Literal[1, 2, 3]
    region: Id
    part_no: Id
    quantity: int


# --- a case, from call to closed loop ----------------------------------------------------
Intent = Literal[
    "repair", "install", "maintenance", "consultation", "complaint", "suggestion",
    "purchase_interest", "follow_up",
]


class CallReceived(Data):
    phone: Text
    intent: Intent
    customer_id: Id | None = None
    case_id: Id | None = None
    summary: Text | None = None
    agent_id: Id | None = None


class Customer(Data):
    id: Detail
    name: Detail
    phone: Detail
    address: Detail
    region: Detail


class Product(Data):
    model: Detail
    product_line: Detail
    serial: Detail = None
    purchase_date: Day | None = None
    production_batch: Detail = None
    plant: Detail = None


class Fault(Data):
    description: Detail


Request = Literal["repair", "install", "maintenance"]


class CaseRegistered(Data):
    call_id: Id
    customer: Customer
    product: Product
    fault: Fault
    request: Request | None = None
    promised_by: Time | None = None


class PartialCustomer(Data):
    id: Detail = None
    name: Detail = None
    phone: Detail = None
    address: Detail = None
    region: Detail = None


class PartialProduct(Data):
    model: Detail = None
    product_line: Detail = None
    serial: Detail = None
    purchase_date: Day | None = None
    production_batch: Detail = None
    plant: Detail = None


class PartialFault(Data):
    description: Detail = None


class CaseAmended(Data):
    call_id: Id | None = None
    customer: PartialCustomer | None = None
    product: PartialProduct | None = None
    fault: PartialFault | None = None
    request: Request | None = None
    promised_by: Time | None = None

    @model_validator(mode="after")
    def _says_something(self) -> "CaseAmended":
        if not (self.model_fields_set or self.model_extra):
            raise ValueError("an amendment must correct at least one field of the registration")
        return self


class DispatchCandidate(Data):
    outlet_id: Id
    tier: Literal["authorized", "specialized", "center"]
    load: Annotated[int, Field(ge=0)]
    capacity: Annotated[int, Field(ge=0)]


class CaseDispatched(Data):
    outlet_id: Id
    by: Literal["system", "agent"]
    accept_by: Time | None = None
    # what the engine adds when it dispatches by itself: whom, and why, most decisive first
    technician_id: Id | None = None
    reasons: list[Text] | None = None
    candidates: list[DispatchCandidate] | None = None


class DispatchAccepted(Data):
    outlet_id: Id
    technician_id: Id


class DispatchDeclined(Data):
    outlet_id: Id
    reason: Text


class AppointmentSet(Data):
    at: Time
    customer_agreed: bool
    reason: Text | None = None


class CaseTransferred(Data):
    from_outlet_id: Id
    to_outlet_id: Id | None = None
    to: Literal["center"] | None = None
    reason: Text

    @model_validator(mode="after")
    def _goes_somewhere(self) -> "CaseTransferred":
        if not self.to_outlet_id and self.to != "center":
            raise ValueError("a transfer needs to_outlet_id, or to = 'center'")
        return self


class GuidanceGiven(Data):
    technician_id: Id
    finding: Literal["misreport", "misuse"]
    follow_up_due: Time | None = None


class FollowUpMade(Data):
    working: bool
    agent_id: Id | None = None


class PartRequested(Data):
    request_id: Id
    part_no: Id
    quantity: Annotated[int, Field(ge=1)]
    outlet_id: Id


class PartApproved(Data):
    request_id: Id
    warehouse_id: Id | None = None


class PartDenied(Data):
    request_id: Id
    reason: Text
    warehouse_id: Id | None = None


class PartMoved(Data):
    request_id: Id
    warehouse_id: Id


class VisitArrived(Data):
    technician_id: Id


class UnitTakenIn(Data):
    technician_id: Id
    loaner_provided: bool


class Charge(Data):
    amount: Annotated[int | float, Field(ge=0)]
    currency: Id


class FiveOnes(Data):
    permit: bool | None = None
    shoe_covers: bool | None = None
    pad_cloth: bool | None = None
    rag: bool | None = None
    gift: bool | None = None


class ServiceCompleted(Data):
    technician_id: Id
    fault_code: Id
    cause: Literal["design", "manufacturing", "installation", "transport", "usage", "wear", "unknown"]
    first_visit: bool
    parts_used: list[Id] | None = None
    charge: Charge | None = None
    five_ones: FiveOnes | None = None


class ServiceNotCompleted(Data):
    technician_id: Id
    reason: Text
    next_step: Text


class CaseCancelled(Data):
    reason: Text


class CallbackMade(Data):
    agent_id: Id
    reached: bool
    satisfaction: Literal["very_satisfied", "satisfied", "neutral", "dissatisfied", "very_dissatisfied"] | None = None
    charge_confirmed: bool | None = None
    comment: Text | None = None

    @model_validator(mode="after")
    def _satisfaction_when_reached(self) -> "CallbackMade":
        if self.reached and self.satisfaction is None:
            raise ValueError("satisfaction is required when the customer was reached")
        return self


class ComplaintFiled(Data):
    complaint_id: Id
    category: Literal[
        "promise_broken", "non_standard_service", "overcharge", "not_fixed_first_visit",
        "repeat_repair", "attitude", "other",
    ]
    technician_id: Id | None = None
    outlet_id: Id | None = None
    detail: Text | None = None


class ComplaintResolved(Data):
    complaint_id: Id
    resolution: Text
    accountable: Id


class FeedbackRouted(Data):
    # v1 requires case_id; a suggestion or purchase interest from a call that opened no
    # case names its call instead (docs/EVENTS.md)
    case_id: Id | None = None
    department: Literal["design", "manufacturing", "sales", "service"]
    summary: Text
    product: Any = None
    fault_code: Id | None = None
    call_id: Id | None = None

    @model_validator(mode="after")
    def _names_its_origin(self) -> "FeedbackRouted":
        if not self.case_id and not self.call_id:
            raise ValueError("feedback needs the case_id it is about (or, from a call that opened no case, its call_id)")
        return self


class FeedbackAcknowledged(Data):
    owner: Id
    corrective_action: Text
    due: Time | None = None


class FeedbackClosed(Data):
    verified: bool
    note: Text | None = None


class TechnicianPraised(Data):
    case_id: Id
    kind: Literal["delight", "improvement"]


class TechnicianPromoted(Data):
    level: Literal["junior", "intermediate", "senior"]
    exam_passed_at: Time


class LoopLeaked(Data):
    """The engine's alert: a step of the loop passed its due time while still open."""

    stage: Literal["recorded", "handled", "reviewed", "fed_back"]
    due: Time
    owner: Id
    case_id: Id | None = None
    call_id: Id | None = None
    outlet_id: Id | None = None
    region: Id | None = None


def _period(text: str) -> str:
    from closedloop.domain.quality import period_range

    period_range(text)
    return text


Period = Annotated[str, AfterValidator(_period)]


class UnitsShipped(Data):
    """Reference data: how many units of a model, batch and plant were shipped in a period."""

    model: Id
    production_batch: Id
    plant: Id
    quantity: Annotated[int, Field(ge=0)]
    period: Period
    product_line: Id | None = None


class PenaltyShare(Data):
    party: Id
    role: Literal["employee", "manager"]
    amount_cents: Annotated[int, Field(ge=0)]
    name: Text | None = None


class Payee(Data):
    case_id: Id
    customer_id: Id | None = None


class PenaltyCharged(Data):
    """A penalty charged to the people who answer for a complaint, paid to its customer."""

    case_id: Id
    complaint_id: Id
    category: Id
    outlet_id: Id | None = None
    accountable: Id
    shares: Annotated[list[PenaltyShare], Field(min_length=1)]
    total_cents: Annotated[int, Field(ge=0)]
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)]
    payee: Payee

    @model_validator(mode="after")
    def _adds_up(self) -> "PenaltyCharged":
        if sum(s.amount_cents for s in self.shares) != self.total_cents:
            raise ValueError("total_cents must be the sum of the shares' amount_cents")
        return self


# --- service network operations: what the engine decides, and the retraining that undoes it
PermitStatus = Literal["normal", "warning", "eliminated"]


class TechnicianRetrained(Data):
    exam_passed_at: Time
    center_id: Id | None = None


class DispatchAlarmed(Data):
    outlet_id: Id
    dispatched_at: Time
    accept_by: Time
    level: Literal[1, 2]
    reason: Text | None = None
    # level 2 says what the escalation did: another outlet, or the service center
    action: Literal["page", "redispatch", "to_center"] | None = None


class DispatchHeld(Data):
    reason: Text
    region: Detail = None
    product_line: Detail = None
    retry_at: Time | None = None


class PartHeld(Data):
    request_id: Id
    reason: Text
    warehouse_id: Id | None = None


class PermitPointsChanged(Data):
    rule: Id
    points: int
    balance: int
    status: PermitStatus
    reason: Text
    case_id: Id | None = None


class PermitStatusChanged(Data):
    previous: PermitStatus
    status: PermitStatus
    balance: int
    rule: Id
    reason: Text
    case_id: Id | None = None


class PermitReviewed(Data):
    period_start: Time
    period_end: Time
    balance_before: int
    balance: int
    status: PermitStatus


DATA_MODELS: dict[str, type[Data]] = {
    "outlet.registered": OutletRegistered,
    "technician.registered": TechnicianRegistered,
    "technician.praised": TechnicianPraised,
    "technician.promoted": TechnicianPromoted,
    "stock.received": StockReceived,
    "call.received": CallReceived,
    "case.registered": CaseRegistered,
    "case.amended": CaseAmended,
    "case.dispatched": CaseDispatched,
    "dispatch.accepted": DispatchAccepted,
    "dispatch.declined": DispatchDeclined,
    "appointment.set": AppointmentSet,
    "case.transferred": CaseTransferred,
    "guidance.given": GuidanceGiven,
    "follow_up.made": FollowUpMade,
    "part.requested": PartRequested,
    "part.approved": PartApproved,
    "part.denied": PartDenied,
    "part.shipped": PartMoved,
    "part.delivered": PartMoved,
    "visit.arrived": VisitArrived,
    "unit.taken_in": UnitTakenIn,
    "service.completed": ServiceCompleted,
    "service.not_completed": ServiceNotCompleted,
    "case.cancelled": CaseCancelled,
    "callback.made": CallbackMade,
    "complaint.filed": ComplaintFiled,
    "complaint.resolved": ComplaintResolved,
    "feedback.routed": FeedbackRouted,
    "feedback.acknowledged": FeedbackAcknowledged,
    "feedback.closed": FeedbackClosed,
    "loop.leaked": LoopLeaked,
    "units.shipped": UnitsShipped,
    "penalty.charged": PenaltyCharged,
    "technician.retrained": TechnicianRetrained,
    "dispatch.alarmed": DispatchAlarmed,
    "dispatch.held": DispatchHeld,
    "part.held": PartHeld,
    "permit.points_changed": PermitPointsChanged,
    "permit.status_changed": PermitStatusChanged,
    "permit.reviewed": PermitReviewed,
}
assert set(DATA_MODELS) == FACT_TYPES, set(DATA_MODELS) ^ FACT_TYPES


class Envelope(BaseModel):
    """CloudEvents 1.0 context attributes; extension attributes are allowed and kept."""

    model_config = ConfigDict(extra="allow", strict=True)
    specversion: Literal["1.0"]
    id: Id
    source: Id
    type: str
    time: Time
    subject: Id
    datacontenttype: str | None = None
    dataschema: str | None = None


def _envelope_for(type_name: str, data_model: type[Data]) -> type[Envelope]:
    name = "".join(part.title() for part in type_name.replace("_", ".").split(".")) + "Event"
    return create_model(name, __base__=Envelope, type=(Literal[type_name], ...), data=(data_model, ...))


EVENT_MODELS = {t: _envelope_for(t, m) for t, m in DATA_MODELS.items()}
_ADAPTER: TypeAdapter[Any] = TypeAdapter(
    Annotated[Union[tuple(EVENT_MODELS.values())], Field(discriminator="type")]  # type: ignore[misc]
)


@dataclass(frozen=True)
class Rejection:
    """Why an event was refused, field by field, in words an operator can act on."""

    errors: list[dict[str, str]]
    id: str | None = None
    source: str | None = None
    type: str | None = None
    index: int | None = None
    raw: Any = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        what = f"event {self.id!r} from {self.source!r}" if self.id else "event"
        if self.index is not None:
            what += f" (batch item {self.index})"
        problems = "; ".join(f"{e['field']}: {e['message']}" for e in self.errors)
        return f"{what} rejected: {problems}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "source": self.source, "type": self.type}
        if self.index is not None:
            out["index"] = self.index
        out["errors"] = self.errors
        out["message"] = self.describe()
        return out


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        kind = err["type"]
        if kind == "union_tag_invalid":
            tag = err.get("ctx", {}).get("tag")
            errors.append({"field": "type", "message": f"unknown event type {tag!r}; the contract has: "
                           + ", ".join(sorted(DATA_MODELS))})
            continue
        if kind == "union_tag_not_found":
            errors.append({"field": "type", "message": "required attribute is missing"})
            continue
        if loc and loc[0] in EVENT_MODELS:  # the discriminator tag, not a field
            loc = loc[1:]
        path = ".".join(str(p) for p in loc) or "(event)"
        message = err["msg"]
        if kind == "missing":
            message = "required field is missing"
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        elif kind.endswith("_type") or kind == "literal_error":
            message = f"{message} (got {err.get('input')!r})"
        errors.append({"field": path, "message": message})
    return errors


MAX_DEPTH = 32


def _too_deep(value: Any, limit: int) -> bool:
    """Deeper than any event needs: refused before it can exhaust the encoder's recursion."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if type(node) is dict else node
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
    return False


def validate(obj: Any, *, index: int | None = None) -> Fact | Rejection:
    """One CloudEvent (a decoded JSON object) -> a Fact, or a Rejection saying why not."""
    if not isinstance(obj, dict):
        return Rejection([{"field": "(event)", "message": f"expected a JSON object, got {type(obj).__name__}"}],
                         index=index, raw=obj)
    ident = obj.get("id") if isinstance(obj.get("id"), str) else None
    source = obj.get("source") if isinstance(obj.get("source"), str) else None
    kind = obj.get("type") if isinstance(obj.get("type"), str) else None
    data = obj.get("data")
    if (type(data) is dict or type(data) is list) and _too_deep(data, MAX_DEPTH):
        return Rejection([{"field": "data", "message": f"nested deeper than {MAX_DEPTH} levels"}],
                         ident, source, kind, index, raw=_shallow(obj))
    try:
        event = _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        return Rejection(_field_errors(exc), ident, source, kind, index, raw=obj)
    return Fact(
        type=event.type,
        subject=event.subject,
        source=event.source,
        id=event.id,
        time_ms=to_ms(datetime.fromisoformat(event.time)),
        data=obj["data"],
    )


def _shallow(obj: dict[str, Any]) -> dict[str, Any]:
    """What the quarantine keeps of an event too deep to store whole: its envelope."""
    return {k: v for k, v in obj.items() if k != "data"} | {"data": "(too deeply nested to keep)"}


def from_binary(headers: dict[str, str], data: Any) -> dict[str, Any]:
    """HTTP/Kafka binary content mode: context in ce-/ce_ headers, the body is the data."""
    event: dict[str, Any] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith(("ce-", "ce_")):
            event[lower[3:]] = value
        elif lower == "content-type":
            event["datacontenttype"] = value
    event["data"] = data
    return event


def to_cloudevent(fact: Fact) -> dict[str, Any]:
    """A stored fact as the structured CloudEvent a producer would have sent."""
    from closedloop.domain.facts import iso

    return {
        "specversion": SPECVERSION,
        "id": fact.id,
        "source": fact.source,
        "type": fact.type,
        "time": iso(fact.time_ms),
        "subject": fact.subject,
        "datacontenttype": "application/json",
        "data": dict(fact.data),
    }
