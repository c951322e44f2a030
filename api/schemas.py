"""What each route answers, as pydantic models: the OpenAPI document's response schemas.

The views build plain dicts; each route declares the model its answer has, and FastAPI
checks the answer against it and serialises it (in pydantic's core, straight to JSON).
Keys a view leaves out stay out (`known_at` only when asked for, `cases` only with
`cases=true`): every route is a `PublicRoute`, which answers with only the keys that were set.
Models allow extra keys, so a view that grows a field never loses it on the way out; the
tests hold the documents to every key the views answer with.

Names end in `Public` (the house style for transport schemas); errors have one shape,
`ErrorPublic`, whatever raised them.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Coroutine, Literal

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, JsonValue


class PublicRoute(APIRoute):
    """A route whose answer keeps to the keys the view gave: a model's optional field that a
    view did not set is left out, not sent as null."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["response_model_exclude_unset"] = True
        super().__init__(*args, **kwargs)


POSITION_HEADER_DOC = {"X-Closedloop-Position": {
    "description": "The log position the views reflected when this answer was read (every running view "
                   "has taken every event up to it); pass it, or a POST's `position`, as `min_position`",
    "schema": {"type": "integer"}}}


class ViewRoute(PublicRoute):
    """A route that reads the views: its answer carries `X-Closedloop-Position` (set by the
    `view_position` dependency of its router), and it may answer 503 when `min_position` is not
    reached in time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        responses = {**(kwargs.get("responses") or {})}
        status = kwargs.get("status_code") or 200
        ok = dict(responses.get(status, {}))
        ok["headers"] = {**ok.get("headers", {}), **POSITION_HEADER_DOC}
        responses[status] = ok
        for code, entry in errors(422, 503).items():
            responses.setdefault(code, entry)
        kwargs["responses"] = responses
        super().__init__(*args, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            response = await handler(request)
            position = getattr(request.state, "view_position", None)
            if position is not None and response.status_code < 400:
                response.headers["X-Closedloop-Position"] = str(position)
            return response

        return route


class Public(BaseModel):
    model_config = ConfigDict(extra="allow")


Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"},
                              examples=["2026-10-30T08:15:00.000Z"])]
Day = Annotated[str, Field(json_schema_extra={"format": "date"}, examples=["2026-10-01"])]
Money = Annotated[str, Field(description="An amount in the currency, two decimals", examples=["50.00"])]
Stage = Literal["recorded", "handled", "reviewed", "fed_back"]
StepStatus = Literal["not_due_yet", "open", "overdue", "done", "not_required"]
PermitStatus = Literal["normal", "warning", "eliminated"]
FeedbackStatus = Literal["awaiting_owner", "acting", "reopened", "acknowledged", "verified"]
Department = Literal["design", "manufacturing", "sales", "service"]
Tier = Literal["authorized", "specialized", "center"]
PartStatus = Literal["requested", "held", "approved", "denied", "shipped", "delivered"]


# --- errors ----------------------------------------------------------------------------------
class FieldErrorPublic(Public):
    """One thing wrong with a request or an event, and where."""

    field: str = Field(description="Where: a parameter's name, or a dotted path into the event "
                       "(`data.reached`); `(event)` for the event as a whole", examples=["data.reached"])
    message: str = Field(examples=["Input should be a valid boolean (got 'yes')"])


class ErrorPublic(Public):
    """Every error answer: what went wrong, in words an operator can act on."""

    error: str = Field(description="What went wrong and how to go on",
                       examples=["no case 'CASE-404' has been recorded"])
    errors: list[FieldErrorPublic] | None = Field(
        default=None, description="Only when parameters were not valid (422): each one and why")


_ERROR_TEXT = {
    400: "The body is not what this route reads: empty, not JSON, or the wrong kind of JSON",
    401: "No API key, or one that is not known or has been revoked",
    403: "The key's role may not do this (or, for a producer, send from that source)",
    404: "Nothing of that id is known (by `as_of`, where it applies)",
    409: "The quarantined event was already resubmitted or discarded",
    413: "The body or batch is over the limit, or larger than the key may ever send at once",
    415: "The content type is not one this route reads",
    422: "A parameter is not valid (`errors` names each one), or the parameters contradict each other",
    429: "The key is over its rate: `Retry-After` says when to come back",
    503: "The views did not reach `min_position` in time (CLOSEDLOOP_MIN_POSITION_WAIT): `Retry-After` says "
         "when to ask again",
}
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    405: {"Allow": {"description": "The methods the path answers to", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds until the key may send again", "schema": {"type": "integer"}}},
    503: {"Retry-After": {"description": "Seconds until the views are likely to have caught up",
                          "schema": {"type": "integer"}}},
}


def errors(*codes: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """The error answers a route can give, each an `ErrorPublic`; `described` (`e404="..."`)
    says what the code means on this route."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorPublic,
                                 "description": described.get(f"e{code}", _ERROR_TEXT[code])}
        if code in _ERROR_HEADERS:
            entry["headers"] = _ERROR_HEADERS[code]
        out[code] = entry
    return out


def csv_too(description: str = "The rows as CSV (`format=csv`, or `Accept: text/csv`)") -> dict[int | str, Any]:
    """A list route that also answers in CSV."""
    return {200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": description}}


# --- producers -------------------------------------------------------------------------------
class RejectionPublic(Public):
    """An event that was refused and put in quarantine, with every field that is wrong."""

    id: str | None = Field(description="The event's id, when it had one")
    source: str | None
    type: str | None
    index: int | None = Field(default=None, description="Its place in the batch (batches only)")
    errors: list[FieldErrorPublic]
    message: str = Field(examples=["event 'cb-9' from '/callcenter/qingdao' rejected: data.reached: ..."])
    quarantine_id: int = Field(description="Its id in the quarantine (`/quarantine/{qid}`)")


class SubmittedPublic(Public):
    """What a submission did, event by event."""

    accepted: int = Field(description="Events recorded now")
    duplicates: int = Field(description="Events recorded before (same source and id): a resend changes nothing")
    rejected: list[RejectionPublic]
    position: int | None = Field(description="The log's position of the last event recorded now")


class SubmissionRejectedPublic(SubmittedPublic):
    """A submission with events refused: the others were recorded; `error` sums it up."""

    error: str = Field(examples=["1 event(s) rejected and quarantined; the others were accepted"])


# --- the loop --------------------------------------------------------------------------------
class StepPublic(Public):
    """One of the four steps of a case's loop."""

    status: StepStatus
    opened: Timestamp | None
    due: Timestamp | None
    done: Timestamp | None
    owner: str | None = Field(description="Who must act while the step is open (`outlet:OUT-0042`, "
                              "`department:manufacturing`, ...)")
    waiting_for: str | None = Field(description="What the step waits on besides its owner (a spare part)")


class StepsPublic(Public):
    recorded: StepPublic
    handled: StepPublic
    reviewed: StepPublic
    fed_back: StepPublic


class CaseProfilePublic(Public):
    """The case's details that views group by; personal data stays in the timeline."""

    region: str | None = None
    model: str | None = None
    product_line: str | None = None
    production_batch: str | None = None
    plant: str | None = None
    purchase_date: str | None = None
    request: str | None = None
    promised_by: str | None = None
    fault_code: str | None = None
    cause: str | None = None


class AnomalyPublic(Public):
    time: Timestamp | None
    anomaly: str


class TimelineEventPublic(Public):
    """An event of the case, as recorded."""

    time: Timestamp | None
    recorded: Timestamp | None = Field(description="When the engine recorded it")
    type: str
    subject: str
    source: str
    id: str
    position: int | None
    data: dict[str, JsonValue] = Field(description="The event's data as the contract has it for its type; "
                                       "customers' personal data shows as `[redacted]` to keys not allowed it")


class CasePublic(Public):
    """Where a case stands at `as_of`: each step, its owner, and its timeline."""

    case_id: str
    as_of: Timestamp
    known_at: Timestamp | None
    owner: str | None = Field(description="Owner of the first open step; null when none is open")
    loop_closed: bool
    steps: StepsPublic
    profile: CaseProfilePublic
    outlet_id: str | None
    technician_id: str | None
    call_id: str | None
    awaiting_registration: bool
    anomalies: list[AnomalyPublic]
    timeline: list[TimelineEventPublic]


class StageCountsPublic(Public):
    recorded: int
    handled: int
    reviewed: int
    fed_back: int


class LoopSummaryPublic(Public):
    """Cases, and the steps open and overdue (leaked) at `as_of`."""

    as_of: Timestamp
    cases: int = Field(description="Cases registered by `as_of`")
    open: StageCountsPublic
    leaks: StageCountsPublic = Field(description="Steps open past their due time")
    leaked_total: int
    closed_loops: int = Field(description="Registered cases with no step open")
    known_at: Timestamp | None = Field(default=None, description="Only with `known_at`")


class LeakPublic(Public):
    case_id: str | None
    call_id: str | None
    stage: Stage
    due: Timestamp | None
    owner: str
    overdue_hours: float
    open_since: Timestamp | None
    region: str | None
    outlet_id: str | None
    waiting_for: str | None


class LeaksPublic(Public):
    as_of: Timestamp
    total: int
    limit: int
    offset: int
    items: list[LeakPublic]
    known_at: Timestamp | None = Field(default=None, description="Only with `known_at`")


# --- the three controls ------------------------------------------------------------------------
class RatePublic(Public):
    """One control in a window: how many, in parts per million of services, against the target."""

    count: int
    ppm: float | None = Field(description="null when there were no services")
    target_ppm: float
    within_target: bool | None
    cases: list[str] | None = Field(default=None, description="With `cases=true`: the case ids (or "
                                    "`call:<id>` for a call never registered) behind the count")


class ChangePublic(Public):
    ppm: float | None
    previous_ppm: float | None
    change_ppm: float | None


class ChangesPublic(Public):
    complaint: ChangePublic
    dissatisfaction: ChangePublic
    omission: ChangePublic


class RatesPublic(Public):
    services: int = Field(description="Services begun in the window")
    complaint: RatePublic
    dissatisfaction: RatePublic
    omission: RatePublic
    change: ChangesPublic | None = Field(default=None, description="With `compare` or `period`: the move "
                                         "from the window (or period) before")


class RatesGroupPublic(RatesPublic):
    """One group's rates: the key named by `by` holds the group."""

    region: str | None = None
    outlet: str | None = None
    product_line: str | None = None
    technician: str | None = None


class PreviousWindowPublic(Public):
    from_: Timestamp = Field(alias="from")
    to: Timestamp
    total: RatesPublic


class ControlPeriodPublic(Public):
    period: str = Field(examples=["2026-W44"])
    from_: Timestamp = Field(alias="from")
    to: Timestamp
    total: RatesPublic
    groups: list[RatesGroupPublic] | None = None


class ControlsPublic(Public):
    """Complaint, dissatisfaction and omission rates against the 10 PPM target."""

    from_: Timestamp = Field(alias="from")
    to: Timestamp
    as_of: Timestamp
    target_ppm: float
    total: RatesPublic
    by: Literal["region", "outlet", "product_line", "technician"] | None = None
    groups: list[RatesGroupPublic] | None = Field(default=None, description="With `by`: most services first")
    previous: PreviousWindowPublic | None = Field(default=None, description="With `compare` or `period`")
    period: Literal["day", "week", "month"] | None = None
    periods: list[ControlPeriodPublic] | None = Field(default=None, description="With `period`")
    known_at: Timestamp | None = Field(default=None, description="Only with `known_at`")


class ControlFiltersPublic(Public):
    region: str | None = None
    outlet: str | None = None
    product_line: str | None = None
    technician: str | None = None


class FirstLeakPublic(Public):
    stage: Stage
    item: str
    due: Timestamp | None
    owner: str


class ControlCasePublic(Public):
    case_id: str | None
    call_id: str | None
    asked: Timestamp | None = Field(description="When the customer first asked")
    region: str | None
    outlet_id: str | None
    product_line: str | None
    technician_id: str | None
    when: Timestamp | None = Field(description="When it counted: the complaint, the dissatisfied callback, the leak")
    leaked: FirstLeakPublic | None = Field(default=None, description="For an omission: the step that leaked first")


class ControlCasesPublic(Public):
    measure: Literal["complaint", "dissatisfaction", "omission"]
    from_: Timestamp = Field(alias="from")
    to: Timestamp
    as_of: Timestamp
    filters: ControlFiltersPublic
    total: int
    limit: int
    offset: int
    items: list[ControlCasePublic]


# --- operators ---------------------------------------------------------------------------------
class QuarantinedPublic(Public):
    """A rejected event, as it was received, with the reasons."""

    qid: int
    received: Timestamp | None
    channel: str = Field(examples=["http-batch"])
    source: str | None
    id: str | None
    type: str | None
    errors: list[FieldErrorPublic]
    status: Literal["open", "resubmitted", "discarded"]
    resolved: Timestamp | None
    resolution: str | None
    event: JsonValue = Field(description="The event as received: JSON, or its text when it was not JSON")


class QuarantinePublic(Public):
    total: int
    limit: int
    offset: int
    items: list[QuarantinedPublic]


class FollowerPublic(Public):
    """One view, reactor or publisher following the log; a failed one stopped on a stored fact."""

    kind: Literal["view", "reactor", "publisher"]
    name: str
    position: int = Field(description="The last position it has taken")
    lag: int = Field(description="Events in the log it has not taken yet")
    state: Literal["running", "failed"]
    error: str | None = Field(None, description="Why it stopped")
    failed_position: int | None = Field(None, description="The position of the fact it could not take")
    failed_fact: str | None = Field(None, description="The id of the fact it could not take")
    failed_at: Timestamp | None = Field(None, description="When it stopped")


class HealthPublic(Public):
    status: Literal["ok", "degraded"] = Field(
        description="`degraded`: some follower stopped on a failure (named in `stopped`); events are still taken")
    database: str = Field(examples=["sqlite"])
    log_head: int = Field(description="The log's last position")
    view_lag: dict[str, int] = Field(description="Per view, how many events it is behind the head")
    stopped: list[FollowerPublic] = Field(description="The followers stopped on a failure, with where and why")
    followers: list[FollowerPublic] = Field(description="Every view, reactor and publisher following the log")


class VerdictPublic(Public):
    """The hash chain walked end to end."""

    ok: bool
    checked: int
    head: int
    tip: str = Field(description="The chain's last hash")
    problem: str | None = Field(description="The first break: altered, removed, inserted or moved")
    position: int | None = Field(description="Where the first break is")
    checkpoints_checked: int


class CheckpointPublic(Public):
    position: int
    hash: str
    taken: Timestamp | None


class PartitionLagPublic(Public):
    topic: str
    partition: int
    position: int | None = Field(description="The next offset the consumers will read")
    end: int | None = Field(description="The broker's end offset (when the brokers are known)")
    lag: int | None
    member: str | None
    updated: Timestamp | None


class PublisherPublic(Public):
    position: int
    log_head: int
    behind: int
    routes: dict[str, str] = Field(description="Event type -> the topic it is published to")


class KafkaLagPublic(Public):
    topics: list[str]
    partitions: list[PartitionLagPublic]
    total_lag: int | None
    error: str | None = Field(default=None, description="When the brokers could not be asked")
    note: str | None = None
    publisher: PublisherPublic


# --- the service network ------------------------------------------------------------------------
class TodayPublic(Public):
    day: Timestamp | None
    load: int
    capacity: int
    left: int
    open_alarms: int


class PermitPublic(Public):
    status: PermitStatus
    balance: int


class StaffPublic(Public):
    technician_id: str
    name: str | None
    level: str | None
    permit: PermitPublic


class StaffCountsPublic(Public):
    normal: int
    warning: int
    eliminated: int


class OutletPublic(Public):
    outlet_id: str
    name: str | None
    tier: Tier
    regions: list[str]
    product_lines: list[str]
    daily_capacity: int
    registered: Timestamp | None
    today: TodayPublic
    technicians: StaffCountsPublic


class OutletsPublic(Public):
    as_of: Timestamp
    total: int
    limit: int
    offset: int
    items: list[OutletPublic]


class PartMovePublic(Public):
    time: Timestamp | None
    status: str
    warehouse_id: str | None
    reason: str | None
    by: Literal["engine", "producer"]


class PartRequestPublic(Public):
    request_id: str
    case_id: str
    outlet_id: str | None
    part_no: str | None
    quantity: int | None
    requested: Timestamp | None
    status: PartStatus
    warehouse_id: str | None
    reason: str | None
    decided_by: Literal["engine", "producer"] | None
    history: list[PartMovePublic]


class AlarmPublic(Public):
    case_id: str
    outlet_id: str
    level: int = Field(description="1: not accepted in time; 2: escalated")
    raised: Timestamp | None
    dispatched_at: Timestamp | None
    accept_by: Timestamp | None
    action: str | None
    reason: str | None
    state: Literal["open", "resolved"]
    resolved: Timestamp | None
    resolution: str | None
    open_minutes: float


class OutletDetailPublic(Public):
    outlet_id: str
    name: str | None
    tier: Tier
    regions: list[str]
    product_lines: list[str]
    daily_capacity: int
    registered: Timestamp | None
    today: TodayPublic
    technicians: list[StaffPublic]
    as_of: Timestamp
    open_part_requests: list[PartRequestPublic]
    open_alarms: list[AlarmPublic]


class TechnicianPublic(Public):
    technician_id: str
    outlet_id: str | None
    name: str | None
    level: str | None
    permit: PermitPublic


class TechniciansPublic(Public):
    as_of: Timestamp
    total: int
    limit: int
    offset: int
    items: list[TechnicianPublic]


class ThresholdsPublic(Public):
    start: int
    warning_at: int
    eliminated_at: int


class PermitDetailPublic(Public):
    status: PermitStatus
    balance: int
    status_since: Timestamp | None
    thresholds: ThresholdsPublic
    share_of_jobs: float = Field(description="The share of dispatched jobs a technician of this status gets")


class LedgerEntryPublic(Public):
    time: Timestamp | None
    change: str = Field(examples=["points_changed"])
    case_id: str | None
    rule: str | None
    points: int | None
    balance: int
    status: PermitStatus
    previous: str | None
    reason: str | None


class TechnicianDetailPublic(Public):
    technician_id: str
    as_of: Timestamp
    outlet_id: str | None
    name: str | None
    level: str | None
    registered: Timestamp | None
    permit: PermitDetailPublic
    jobs_today: int
    ledger: list[LedgerEntryPublic]


class StockPublic(Public):
    part_no: str
    on_hand: int
    reserved: int = Field(description="Reserved by approved part requests")
    available: int


class WarehousePublic(Public):
    warehouse_id: str
    level: int
    region: str
    stock: list[StockPublic]


class WarehousesPublic(Public):
    as_of: Timestamp
    total: int
    limit: int
    offset: int
    items: list[WarehousePublic]


class WarehouseDetailPublic(WarehousePublic):
    as_of: Timestamp


class PartRequestsPublic(Public):
    as_of: Timestamp
    state: str
    total: int
    limit: int
    offset: int
    by_outlet: dict[str, int] = Field(description="Outlet id -> how many requests of this state it has")
    items: list[PartRequestPublic]


class AlarmsPublic(Public):
    as_of: Timestamp
    state: Literal["open", "resolved", "all"]
    total: int
    limit: int
    offset: int
    items: list[AlarmPublic]


class PermitRulesPublic(Public):
    start_points: int
    max_points: int
    warning_at: int
    eliminated_at: int
    promise_grace: str = Field(examples=["2h"])
    repeat_within: str = Field(examples=["30d"])
    review_every: str = Field(examples=["30d"])
    deductions: dict[str, int] = Field(description="Rule -> points taken")
    additions: dict[str, int] = Field(description="Rule -> points given")


class NetworkRulesPublic(Public):
    auto_dispatch: bool
    accept_within_minutes: float
    escalate_after_minutes: float
    max_redispatches: int
    warning_share: float
    auto_approve_parts: bool
    permit: PermitRulesPublic


# --- feedback items -----------------------------------------------------------------------------
class ProductPublic(Public):
    model: str | None
    product_line: str | None
    production_batch: str | None
    plant: str | None


class FeedbackItemPublic(Public):
    """A department's feedback item, where it stood at `as_of`."""

    item: str = Field(examples=["case:CASE-1:manufacturing"])
    department: Department
    feedback_ids: list[str]
    case_id: str | None
    call_id: str | None
    routed: Timestamp | None
    routed_by: str | None
    origin: str | None = Field(examples=["cause:manufacturing"])
    summary: str | None
    product: ProductPublic
    fault_code: str | None
    status: FeedbackStatus
    owner: str | None
    due: Timestamp | None
    overdue: bool
    overdue_hours: float | None


class FeedbackItemsPublic(Public):
    as_of: Timestamp
    department: Department | None
    status: str | None
    total: int
    limit: int
    offset: int
    items: list[FeedbackItemPublic]


class FeedbackCountsPublic(Public):
    items: int
    overdue: int
    awaiting_owner: int
    acting: int
    reopened: int
    acknowledged: int
    verified: int


class FeedbackSummaryPublic(Public):
    as_of: Timestamp
    departments: dict[str, FeedbackCountsPublic] = Field(description="Department -> its counts")
    total: FeedbackCountsPublic


class FeedbackEntryPublic(Public):
    time: Timestamp | None
    feedback_id: str
    type: str = Field(examples=["feedback.acknowledged"])
    data: dict[str, JsonValue]


class FeedbackPhasePublic(Public):
    status: FeedbackStatus
    from_: Timestamp | None = Field(alias="from")
    until: Timestamp | None
    due: Timestamp | None
    owner: str | None


class FeedbackItemDetailPublic(FeedbackItemPublic):
    history: list[FeedbackEntryPublic]
    phases: list[FeedbackPhasePublic]
    anomalies: list[AnomalyPublic]


# --- defect analytics ---------------------------------------------------------------------------
class DefectFiltersPublic(Public):
    """Filters that list the cases behind a number (`/quality/defects/cases`)."""

    job: str | None = None
    model: str | None = None
    product_line: str | None = None
    production_batch: str | None = None
    plant: str | None = None
    fault_code: str | None = None
    cause: str | None = None
    region: str | None = None
    outlet_id: str | None = None
    technician_id: str | None = None
    months_in_service: int | Literal["unknown"] | None = None
    first_visit: bool | None = None
    repeat: bool | None = None
    part_no: str | None = None


Cases = Annotated[list[str] | None, Field(default=None, description="With `cases=true`: the case ids")]


class DefectWindowPublic(Public):
    from_: Timestamp = Field(alias="from")
    to: Timestamp
    as_of: Timestamp
    filters: DefectFiltersPublic
    total: int = Field(description="Completed services counted")


class ParetoRowPublic(Public):
    model: str | None = None
    product_line: str | None = None
    group_total: int | None = Field(default=None, description="With `per`: the group's services")
    fault_code: str | None = None
    cause: str | None = None
    rank: int
    count: int
    share: float | None
    cumulative_share: float | None
    filters: DefectFiltersPublic
    cases: Cases


class ParetoPublic(DefectWindowPublic):
    by: Literal["fault_code", "cause"]
    per: Literal["model", "product_line"] | None
    rows: list[ParetoRowPublic]


class BatchRowPublic(Public):
    model: str | None = None
    production_batch: str | None = None
    plant: str | None = None
    failures: int
    failures_in_shipped_batches: int
    shipped: int | None
    failure_rate_ppm: float | None
    filters: DefectFiltersPublic
    cases: Cases


class BatchesPublic(DefectWindowPublic):
    by: Literal["batch", "plant"]
    rows: list[BatchRowPublic]
    note: str


class MonthsRowPublic(Public):
    model: str | None = None
    product_line: str | None = None
    months_in_service: int | Literal["unknown"]
    failures: int
    share: float | None
    filters: DefectFiltersPublic
    cases: Cases


class MonthsInServicePublic(DefectWindowPublic):
    per: Literal["model", "product_line"] | None
    rows: list[MonthsRowPublic]


class RepeatRowPublic(Public):
    model: str | None = None
    product_line: str | None = None
    outlet_id: str | None = None
    technician_id: str | None = None
    repairs: int
    repeats: int
    repeat_rate: float | None
    filters: DefectFiltersPublic
    cases: Cases


class RepeatOfPublic(Public):
    earlier_case_id: str
    days_between: float


class RepeatCasePublic(RepeatOfPublic):
    case_id: str


class RepeatsPublic(DefectWindowPublic):
    per: Literal["model", "product_line", "outlet_id", "technician_id"]
    repeat_within_days: float
    repeats: int
    rows: list[RepeatRowPublic]
    repeat_cases: list[RepeatCasePublic]


class FirstVisitRowPublic(Public):
    model: str | None = None
    product_line: str | None = None
    outlet_id: str | None = None
    technician_id: str | None = None
    repairs: int
    first_visit_fixes: int
    first_visit_fix_rate: float | None
    not_fixed_first_visit: int
    filters: DefectFiltersPublic
    cases: Cases


class FirstVisitPublic(DefectWindowPublic):
    per: Literal["model", "product_line", "outlet_id", "technician_id"]
    first_visit_fix_rate: float | None
    rows: list[FirstVisitRowPublic]


class PartsRowPublic(Public):
    model: str | None
    part_no: str
    quantity: int
    services: int
    filters: DefectFiltersPublic
    cases: Cases


class PartsPublic(DefectWindowPublic):
    parts_used: int
    rows: list[PartsRowPublic]


class DefectCasePublic(Public):
    case_id: str
    completed: Timestamp | None
    region: str | None
    product_line: str | None
    model: str | None
    production_batch: str | None
    plant: str | None
    purchase_date: str | None
    job: str | None
    outlet_id: str | None
    technician_id: str | None
    fault_code: str | None
    cause: str | None
    first_visit: bool | None
    parts: list[str]
    months_in_service: int | None
    repeat_of: RepeatOfPublic | None = Field(default=None, description="With `repeat`: the repair it repeats")


class DefectCasesPublic(DefectWindowPublic):
    limit: int
    offset: int
    rows: list[DefectCasePublic]


# --- settlement -----------------------------------------------------------------------------------
class LinePenaltyPublic(Public):
    penalty_id: str
    complaint_id: str | None
    category: str | None
    charged: Timestamp | None
    amount_cents: int


class StatementLinePublic(Public):
    case_id: str
    kind: Literal["service", "penalty"] = Field(description="service: a reviewed case priced by its job; "
                                                "penalty: penalties on a case settled in another period")
    job: str | None
    technician_id: str | None
    done: Timestamp | None
    reviewed: Timestamp | None
    price_cents: int
    penalties: list[LinePenaltyPublic]
    penalty_cents: int
    net_cents: int
    net: Money


class StatementPublic(Public):
    outlet_id: str | None
    name: str | None = None
    tier: str | None = None
    services: int
    gross_cents: int
    penalty_cents: int
    net_cents: int
    gross: Money
    penalties: Money
    net: Money
    currency: str = Field(examples=["CNY"])
    lines: list[StatementLinePublic] | None = Field(default=None, description="Unless `lines=false`")


class SettlementTotalPublic(Public):
    services: int
    gross_cents: int
    penalty_cents: int
    net_cents: int
    net: Money


class SettlementPublic(Public):
    from_: Timestamp = Field(alias="from")
    to: Timestamp
    as_of: Timestamp
    currency: str
    statements: list[StatementPublic]
    total: SettlementTotalPublic


class OutletStatementPublic(StatementPublic):
    from_: Timestamp = Field(alias="from")
    to: Timestamp
    as_of: Timestamp


class OwnerLinePublic(Public):
    penalty_id: str
    case_id: str
    complaint_id: str | None
    category: str | None
    charged: Timestamp | None
    amount_cents: int
    paid_to_case: str = Field(description="The case whose customer is paid")


class OwnerPenaltiesPublic(Public):
    party: str = Field(description="Who pays: a technician, or the outlet's manager")
    name: str | None
    role: str
    outlet_id: str | None
    penalties: int
    amount_cents: int
    amount: Money
    lines: list[OwnerLinePublic]


class PaidToCustomerPublic(Public):
    case_id: str
    amount_cents: int
    amount: Money


class PenaltiesPublic(Public):
    from_: Timestamp = Field(alias="from")
    to: Timestamp
    as_of: Timestamp
    owners: list[OwnerPenaltiesPublic]
    total_cents: int
    total: Money
    paid_to_customers: list[PaidToCustomerPublic]


class RoutingPublic(Public):
    causes: dict[str, str] = Field(description="Cause -> the department a completion with it is routed to")
    intents: dict[str, str] = Field(description="Call intent -> the department it is routed to")


class PriceListPublic(Public):
    from_: Day | None = Field(alias="from", description="In force from this day (null: from the start)")
    prices: dict[str, Money] = Field(description="Job -> price")


class PenaltySharePublic(Public):
    employee: Money
    manager: Money


class QualityRulesPublic(Public):
    routing: RoutingPublic
    feed_back_within_hours: float
    currency: str
    prices: list[PriceListPublic]
    penalties: dict[str, PenaltySharePublic] = Field(description="Penalty category -> what the employee "
                                                     "and the manager each pay")
    repeat_within_days: float
