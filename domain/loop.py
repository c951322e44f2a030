"""The four nothing-missed: where a case stands in recorded, handled, reviewed, fed back.

A `CaseFile` gathers everything known about one customer problem: the call that reported it,
the case's own facts, complaint calls about it and the feedback items routed from it. It is
plain data, so a view can keep it and fold new facts in as they arrive, in any order.

`assess` walks the file in world-time order and says, for every step, over which intervals
of time the step was open, what it was due by and who owned it. An interval is a `Span`.
A step is *leaked* at time T when a span is open at T and its due time has passed at T.
Because the walk only ever looks backwards in world time, the spans computed from all
facts answer for any earlier T exactly as if only the facts up to T were known: that is
what makes `as_of` views and a replay up to T agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .facts import Fact, parse_ms
from .feedback import FeedbackItem
from .policy import LoopPolicy

STAGES = ("recorded", "handled", "reviewed", "fed_back")

# Details a case must carry to count as recorded; a blank one keeps it recorded-incomplete.
REQUIRED_DETAILS = (
    ("customer", "name"),
    ("customer", "phone"),
    ("customer", "address"),
    ("customer", "region"),
    ("product", "model"),
    ("product", "product_line"),
    ("fault", "description"),
)
# Details the views group and filter by.
PROFILE_DETAILS = {
    ("customer", "region"): "region",
    ("product", "model"): "model",
    ("product", "product_line"): "product_line",
    ("product", "production_batch"): "production_batch",
    ("product", "plant"): "plant",
    ("product", "purchase_date"): "purchase_date",
}
DISSATISFIED = frozenset({"dissatisfied", "very_dissatisfied"})


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


_REQUIRED_KEYS = {f"{g}.{n}" for g, n in REQUIRED_DETAILS}
# per group, each detail's (key, whether required, the profile's name for it): _details is
# run on every registration and amendment, so the lookups are made once here
_DETAIL_INDEX: dict[str, dict[str, tuple[str, bool, str | None]]] = {}
for _g, _n in set(REQUIRED_DETAILS) | set(PROFILE_DETAILS):
    _DETAIL_INDEX.setdefault(_g, {})[_n] = (f"{_g}.{_n}", (_g, _n) in REQUIRED_DETAILS, PROFILE_DETAILS.get((_g, _n)))


def _details(data: Mapping[str, Any]) -> dict[str, Any]:
    """What a registration or amendment says of the case, in the form the walk folds.

    `given` maps each required detail the fact mentions to whether it is filled in;
    `profile` holds the details views group by. Personal data (name, phone, address)
    stays in the log: the file keeps only whether it was given.
    """
    given: dict[str, bool] = {}
    profile: dict[str, Any] = {}
    for group in ("customer", "product", "fault"):
        part = data.get(group)
        if not isinstance(part, dict):
            continue
        index = _DETAIL_INDEX.get(group, {})
        for name, value in part.items():
            known = index.get(name)
            if known is None:
                continue
            key, required, prof = known
            blank = _blank(value)
            if required:
                given[key] = not blank
            if prof and not blank:
                profile[prof] = value
    for name in ("request", "promised_by"):
        if data.get(name) is not None:
            profile[name] = data[name]
    out: dict[str, Any] = {"given": given, "profile": profile}
    if "call_id" in data:
        out["call_id"] = data["call_id"]
    return out


def lite(fact: Fact) -> dict[str, Any]:
    """What the loop needs of a fact; personal data is left in the log."""
    data = fact.data
    t = fact.type
    if t in ("case.registered", "case.amended"):
        return _details(data)
    if t == "appointment.set":
        return {"at": parse_ms(data["at"]), "agreed": data["customer_agreed"]}
    if t == "guidance.given":
        return {
            "technician_id": data["technician_id"],
            "finding": data["finding"],
            "follow_up_due": parse_ms(data["follow_up_due"]) if data.get("follow_up_due") else None,
        }
    if t == "service.completed":
        return {
            "technician_id": data["technician_id"],
            "fault_code": data["fault_code"],
            "cause": data["cause"],
            "first_visit": data["first_visit"],
        }
    if t == "feedback.routed":
        out = {"department": data["department"]}
        if data.get("call_id"):
            out["call_id"] = data["call_id"]
        return out
    if t == "feedback.acknowledged":
        return {"owner": data["owner"], "due": parse_ms(data["due"]) if data.get("due") else None}
    # which of _KEEP a fact carries depends on its type and shape: found once per shape
    shape = (t, tuple(data))
    keys = _KEPT.get(shape)
    if keys is None:
        if len(_KEPT) > 4096:  # a producer inventing fields: the cache must not grow without end
            _KEPT.clear()
        keys = _KEPT[shape] = tuple(k for k in _KEEP if k in data)
    return {k: data[k] for k in keys}


_KEEP = (
    "outlet_id", "technician_id", "by", "reason", "working", "reached", "satisfaction",
    "complaint_id", "category", "accountable", "request_id", "part_no", "to_outlet_id",
    "to", "from_outlet_id", "next_step", "department", "owner", "verified", "agent_id",
)
# (type, the data's keys in order) -> the kept keys; producers send few shapes of each type
_KEPT: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}


@dataclass
class CaseFile:
    """Everything the loop knows about one case, in the order it arrived."""

    case_id: str
    # (call_id, time, intent, owner) of the call that reported the problem
    call: list[Any] | None = None
    # complaint or follow-up calls that name this case: call_id -> [time, intent, owner]
    related_calls: dict[str, list[Any]] = field(default_factory=dict)
    # [time, position, type, lite-data]
    facts: list[list[Any]] = field(default_factory=list)
    # feedback id -> list of [time, position, type, lite-data]
    feedback: dict[str, list[list[Any]]] = field(default_factory=dict)

    def add(self, fact: Fact) -> None:
        self.facts.append([fact.time_ms, fact.position or 0, fact.type, lite(fact)])

    def add_feedback(self, feedback_id: str, entries: Iterable[list[Any]]) -> None:
        self.feedback.setdefault(feedback_id, []).extend(entries)

    def to_json(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "call": self.call,
            "related_calls": self.related_calls,
            "facts": self.facts,
            "feedback": self.feedback,
        }

    @classmethod
    def from_json(cls, blob: dict[str, Any]) -> "CaseFile":
        return cls(
            case_id=blob["case_id"],
            call=blob.get("call"),
            related_calls=blob.get("related_calls") or {},
            facts=blob.get("facts") or [],
            feedback=blob.get("feedback") or {},
        )


@dataclass(frozen=True, slots=True)
class Span:
    """A step open from `opened` until `closed` (None: still open), due by `due`."""

    item: str  # "case:<id>" or "call:<id>"
    stage: str
    opened: int
    closed: int | None
    due: int
    owner: str
    outlet_id: str | None = None
    # what the step is waiting for, when not on its owner alone (a spare part on order)
    waiting_for: str | None = None


@dataclass
class StepState:
    stage: str
    status: str  # not_due_yet | open | overdue | done | not_required
    opened: int | None = None
    due: int | None = None
    done: int | None = None
    owner: str | None = None
    waiting_for: str | None = None


@dataclass
class Assessment:
    case_id: str
    spans: list[Span]
    profile: dict[str, Any]
    started: int | None  # when the customer first asked: the call, else the registration
    registered: int | None
    completed: int | None
    complained: int | None  # first complaint filed
    dissatisfied: int | None  # first reached callback that was not satisfied
    anomalies: list[dict[str, Any]]
    outlet_id: str | None
    technician_id: str | None
    steps: dict[str, StepState]
    # true when the fact that opens the case (its registration) has not arrived yet
    awaiting_registration: bool = False

    @property
    def first_leak(self) -> int | None:
        """When a step of this case first became overdue (None: never)."""
        dues = [s.due for s in self.spans if s.closed is None or s.due < s.closed]
        return min(dues) if dues else None


class _Walk:
    """The state of one case at a moment of its history."""

    def __init__(self, case_id: str, policy: LoopPolicy) -> None:
        self.case_id = case_id
        self.policy = policy
        self.call_t: int | None = None
        self.call_owner: str | None = None
        self.registered: int | None = None
        self.registered_by: str | None = None
        self.missing: set[str] = set()
        self.recorded: int | None = None
        self.profile: dict[str, Any] = {}
        self.outlet: str | None = None
        self.dispatched_to: str | None = None
        self.technician: str | None = None
        self.at_center = False
        self.appointment: int | None = None
        self.guidance_due: int | None = None
        self.handled: int | None = None
        self.handled_by: str | None = None
        self.completed: int | None = None
        self.cause: str | None = None
        self.cancelled: int | None = None
        self.reviewed: int | None = None
        self.fed_back: int | None = None
        self.feedback_department: str | None = None
        self.routed: dict[str, str] = {}  # feedback id -> department
        self.items: dict[str, FeedbackItem] = {}  # department -> its item about this case
        self.complained: int | None = None
        self.dissatisfied: int | None = None
        self.anomalies: list[dict[str, Any]] = []
        # open part requests: request id -> [part number, status]
        self.parts: dict[str, list[str]] = {}

    # --- the view of each step at this moment: None when it is not open -----------------
    def recorded_view(self) -> tuple[int, str, str | None] | None:
        start = self.call_t if self.call_t is not None else self.registered
        if start is None or self.recorded is not None:
            return None
        owner = self.call_owner or self.registered_by or "call-center"
        return (start + self.policy.record_within, owner, None)

    def handled_view(self) -> tuple[int, str, str | None, str | None] | None:
        if self.registered is None or self.handled is not None:
            return None
        p = self.policy
        if self.guidance_due is not None:
            due = self.guidance_due
        elif self.appointment is not None:
            due = self.appointment + p.appointment_grace
        else:
            due = self.registered + p.handle_within
        if self.at_center:
            owner = "center"
        elif self.outlet:
            owner = f"outlet:{self.outlet}"
        else:
            owner = "dispatch"
        return (due, owner, self.outlet, self.waiting_for())

    def waiting_for(self) -> str | None:
        """A case waiting for a spare part says so: it is why the case is not yet handled."""
        if not self.parts:
            return None
        request_id, (part_no, status) = min(self.parts.items())
        more = f" and {len(self.parts) - 1} more" if len(self.parts) > 1 else ""
        return f"part {part_no} (request {request_id}, {status}){more}"

    def reviewed_view(self) -> tuple[int, str, str | None] | None:
        if self.completed is None or self.reviewed is not None:
            return None
        return (self.completed + self.policy.review_within, "callback-desk", self.outlet)

    def fed_back_view(self) -> tuple[int, str, str | None] | None:
        if self.completed is None or self.feedback_department is None:
            return None
        item = self.items.get(self.feedback_department)
        if item is None:  # nobody has routed it to the department yet
            return (self.completed + self.policy.feed_back_within, "feedback-desk", self.outlet)
        owes = item.obligation(self.completed, self.policy.feed_back_within)
        return None if owes is None else (owes[0], owes[1], self.outlet)

    def other_feedback_views(self) -> dict[str, tuple[int, str, str | None]]:
        """Items the case's cause does not require (routed elsewhere, or from a call about
        the case) owe their answers all the same: each is a fed-back item of its own."""
        out = {}
        for dept, item in self.items.items():
            if dept == self.feedback_department:
                continue
            owes = item.obligation(item.routed, self.policy.feed_back_within)
            if owes is not None:
                out[f"feedback:{item.feedback_ids[0]}"] = (owes[0], owes[1], self.outlet)
        return out

    def views(self) -> tuple[Any, Any, Any, Any]:
        return (self.recorded_view(), self.handled_view(), self.reviewed_view(), self.fed_back_view())

    # --- folding facts ----------------------------------------------------------------------
    def flag(self, t: int, what: str) -> None:
        self.anomalies.append({"time": t, "anomaly": what})

    def details(self, t: int, d: dict[str, Any]) -> None:
        for key, present in d["given"].items():
            if present:
                self.missing.discard(key)
            else:
                self.missing.add(key)
        self.profile.update(d["profile"])
        if self.registered is not None and self.recorded is None and not self.missing:
            self.recorded = t

    def apply(self, t: int, kind: str, d: dict[str, Any]) -> None:  # noqa: C901 - one rule per fact type
        if kind == "case.registered":
            if self.registered is not None:
                self.flag(t, "registered again: treated as an amendment")
            else:
                self.registered = t
                self.missing = set(_REQUIRED_KEYS)
            self.details(t, d)
            return
        if kind == "case.amended":
            self.details(t, d)
            return
        if self.registered is None and kind not in ("complaint.filed", "complaint.resolved"):
            self.flag(t, f"{kind} before the case was registered")
        if kind == "case.dispatched":
            if self.handled is not None:
                self.flag(t, "dispatched after the case was handled")
            self.outlet = self.dispatched_to = d["outlet_id"]
            self.technician = None
            self.at_center = False
        elif kind == "dispatch.accepted":
            if self.dispatched_to and d["outlet_id"] != self.dispatched_to:
                self.flag(t, f"accepted by {d['outlet_id']} but dispatched to {self.dispatched_to}")
            self.outlet = d["outlet_id"]
            self.technician = d["technician_id"]
        elif kind == "dispatch.declined":
            if self.outlet == d["outlet_id"]:
                self.outlet = None
                self.technician = None
        elif kind == "case.transferred":
            if d.get("to") == "center" and not d.get("to_outlet_id"):
                self.at_center, self.outlet = True, None
            else:
                self.at_center, self.outlet = False, d.get("to_outlet_id")
            self.dispatched_to = self.outlet
            self.technician = None
            self.appointment = None
        elif kind == "appointment.set":
            # An appointment the customer did not agree to is not a promise to hold it to.
            if d["agreed"]:
                self.appointment = d["at"]
        elif kind == "guidance.given":
            self.technician = d["technician_id"]
            due = d.get("follow_up_due")
            self.guidance_due = due if due is not None else t + self.policy.follow_up_within
        elif kind == "follow_up.made":
            if self.guidance_due is None:
                self.flag(t, "follow-up call without a phone guidance to check")
            elif d["working"]:
                if self.handled is None:
                    self.handled, self.handled_by = t, "guidance"
                # the follow-up call that finds it working is this case's review
                if self.reviewed is None:
                    self.reviewed = t
                self.guidance_due = None
            else:
                # still not working: back to dispatch, on the ordinary deadline
                self.guidance_due = None
                self.outlet = self.dispatched_to = self.technician = None
        elif kind == "service.completed":
            if self.cancelled is not None:
                self.flag(t, "completed after the case was cancelled")
            if self.completed is not None:
                self.flag(t, "completed twice: the first completion counts")
                return
            self.completed = t
            self.technician = d["technician_id"]
            self.cause = d["cause"]
            self.profile["fault_code"] = d["fault_code"]
            self.profile["cause"] = d["cause"]
            self.feedback_department = self.policy.feedback_departments.get(d["cause"])
            self._update_fed_back()
            if self.handled is None:
                self.handled, self.handled_by = t, "completed"
        elif kind == "case.cancelled":
            if self.completed is not None:
                self.flag(t, "cancelled after it was completed")
            self.cancelled = t
            if self.handled is None:
                self.handled, self.handled_by = t, "cancelled"
        elif kind == "callback.made":
            if self.completed is None:
                if self.handled_by != "guidance":
                    self.flag(t, "callback made before the service was completed")
                return
            if d["reached"]:
                if self.reviewed is None:
                    self.reviewed = t
                if d.get("satisfaction") in DISSATISFIED and self.dissatisfied is None:
                    self.dissatisfied = t
        elif kind == "complaint.filed":
            if self.complained is None:
                self.complained = t
        elif kind == "part.requested":
            self.parts.setdefault(d["request_id"], [d.get("part_no") or "?", "requested"])
        elif kind in ("part.held", "part.approved", "part.shipped"):
            if d["request_id"] in self.parts:
                self.parts[d["request_id"]][1] = kind.split(".", 1)[1]
        elif kind in ("part.denied", "part.delivered"):
            self.parts.pop(d["request_id"], None)

    def feedback_fact(self, t: int, feedback_id: str, kind: str, d: dict[str, Any]) -> None:
        if kind == "feedback.routed":
            dept = d["department"]
            if feedback_id in self.routed:
                if self.routed[feedback_id] != dept:
                    self.flag(t, f"feedback {feedback_id} routed again, to {dept}: the first routing stands")
                return
            self.routed[feedback_id] = dept
            item = self.items.get(dept)
            if item is None:
                item = self.items[dept] = FeedbackItem(dept, t)
            # the engine's routing and a producer's of the same case to the same department are one item
            item.route(feedback_id)
        else:
            dept = self.routed.get(feedback_id)
            if dept is None:
                self.flag(t, f"feedback {feedback_id} {kind.split('.', 1)[1]} before it was routed")
                return
            anomaly = self.items[dept].fold(t, kind, d)
            if anomaly:
                self.flag(t, f"feedback {feedback_id}: {anomaly}")
        self._update_fed_back()

    def _update_fed_back(self) -> None:
        item = self.items.get(self.feedback_department) if self.feedback_department else None
        self.fed_back = item.done if item is not None else None


def assess(file: CaseFile, policy: LoopPolicy, upto: int | None = None, steps: bool = True) -> Assessment:
    """Walk the case's history in world time and derive where it stands.

    `upto` stops the walk at that moment: the case as the world stood then.
    """
    w = _Walk(file.case_id, policy)
    timeline: list[tuple[int, int, int, str, dict[str, Any], str | None]] = []
    if file.call:
        call_id, call_t, _intent, owner = file.call
        w.call_owner = owner or "call-center"
        timeline.append((call_t, -1, 0, "call", {}, None))
    for t, pos, kind, d in file.facts:
        timeline.append((t, pos, 1, kind, d, None))
    for fid, entries in file.feedback.items():
        for t, pos, kind, d in entries:
            timeline.append((t, pos, 1, kind, d, fid))
    timeline.sort(key=lambda e: (e[0], e[1], e[2]))

    item = f"case:{file.case_id}"
    spans: list[Span] = []
    current: list[Any] = [None, None, None, None]  # per stage: [opened, view]
    shown: tuple[Any, ...] = (None, None, None, None)  # per stage: the view of its open span
    others: dict[str, list[Any]] = {}  # feedback items the cause does not require: [opened, view]
    for t, _pos, _order, kind, d, feedback_id in timeline:
        if upto is not None and t > upto:
            break
        if kind == "call":
            w.call_t = t if w.call_t is None else min(w.call_t, t)
        elif feedback_id is not None:
            w.feedback_fact(t, feedback_id, kind, d)
        else:
            w.apply(t, kind, d)
        views = w.views()
        if views != shown:  # most facts change no step's view: one comparison, not four
            for i, view in enumerate(views):
                cur = current[i]
                if cur is not None and cur[1] == view:
                    continue
                if cur is not None:
                    opened, opened_view = cur
                    spans.append(Span(item, STAGES[i], opened, t, *opened_view))
                current[i] = [t, view] if view is not None else None
            shown = views
        if w.items or others:
            _follow_others(others, w.other_feedback_views(), t, spans)
    for i, cur in enumerate(current):
        if cur is not None:
            opened, opened_view = cur
            spans.append(Span(item, STAGES[i], opened, None, *opened_view))
    _follow_others(others, {}, None, spans)

    # A call that complains about this case is recorded by the first complaint filed after it.
    complaint_times = sorted(t for t, _p, k, _d in file.facts if k == "complaint.filed")
    for call_id, (call_t, intent, owner) in sorted(file.related_calls.items()):
        if intent != "complaint" or intent not in policy.record_intents:
            continue
        if upto is not None and call_t > upto:
            continue
        done = next((c for c in complaint_times if c >= call_t), None)
        spans.append(
            Span(f"call:{call_id}", "recorded", call_t, done, call_t + policy.record_within, owner or "call-center")
        )
    # Steps opened and closed by facts at one and the same moment were never open.
    spans = [s for s in spans if s.closed is None or s.closed > s.opened]

    return Assessment(
        case_id=file.case_id,
        spans=spans,
        profile=w.profile,
        started=w.call_t if w.call_t is not None else w.registered,
        registered=w.registered,
        completed=w.completed,
        complained=w.complained,
        dissatisfied=w.dissatisfied,
        anomalies=w.anomalies,
        outlet_id=w.outlet,
        technician_id=w.technician,
        steps=_step_states(w, spans, upto) if steps else {},
        awaiting_registration=w.registered is None,
    )


def _step_states(w: _Walk, spans: list[Span], upto: int | None) -> dict[str, StepState]:
    """Each step's standing at the end of the walk (at `upto`, or after the last fact)."""
    done_at = {"recorded": w.recorded, "handled": w.handled, "reviewed": w.reviewed, "fed_back": w.fed_back}
    required = {
        "recorded": w.call_t is not None or w.registered is not None,
        "handled": w.registered is not None,
        "reviewed": w.completed is not None or w.handled_by == "guidance",
        "fed_back": w.feedback_department is not None,
    }
    out: dict[str, StepState] = {}
    for stage in STAGES:
        own = [s for s in spans if s.stage == stage and s.item.startswith("case:")]
        first_open = own[0].opened if own else None
        if done_at[stage] is not None:
            out[stage] = StepState(stage, "done", first_open, own[-1].due if own else None, done_at[stage])
        elif own and own[-1].closed is None:
            last = own[-1]
            status = "overdue" if upto is not None and last.due <= upto else "open"
            out[stage] = StepState(stage, status, first_open, last.due, None, last.owner, last.waiting_for)
        elif stage == "handled" and w.cancelled is not None:
            out[stage] = StepState(stage, "done", first_open, None, w.cancelled)
        else:
            out[stage] = StepState(stage, "not_due_yet" if required[stage] else "not_required")
    return out


def _follow_others(current: dict[str, list[Any]], views: dict[str, Any], t: int | None, spans: list[Span]) -> None:
    """Close the spans of other feedback items whose view changed at t (all of them when t is None)."""
    for name in sorted(set(current) | set(views)):
        cur, view = current.get(name), views.get(name)
        if cur is not None and cur[1] == view:
            continue
        if cur is not None:
            opened, (due, owner, outlet) = cur
            spans.append(Span(name, "fed_back", opened, t, due, owner, outlet))
            del current[name]
        if view is not None:
            current[name] = [t, view]


def feedback_spans(feedback_id: str, entries: Iterable[list[Any]], policy: LoopPolicy) -> list[Span]:
    """A feedback item about no case (a suggestion or a purchase interest from a call) is
    open at the fed-back step on its own, by the same rules as a case's."""
    item: FeedbackItem | None = None
    name = f"feedback:{feedback_id}"
    spans: list[Span] = []
    current: list[Any] | None = None
    for t, _pos, kind, d in sorted(entries, key=lambda e: (e[0], e[1])):
        if kind == "feedback.routed":
            if item is None:
                item = FeedbackItem(d["department"], t, [feedback_id])
        elif item is not None:
            item.fold(t, kind, d)
        if item is None:
            continue
        view = item.obligation(item.routed, policy.feed_back_within)
        if current is not None and current[1] == view:
            continue
        if current is not None:
            spans.append(Span(name, "fed_back", current[0], t, current[1][0], current[1][1]))
        current = [t, view] if view is not None else None
    if current is not None:
        spans.append(Span(name, "fed_back", current[0], None, current[1][0], current[1][1]))
    return [s for s in spans if s.closed is None or s.closed > s.opened]


def call_spans(call_id: str, call_t: int, intent: str, owner: str | None, policy: LoopPolicy) -> list[Span]:
    """A call that asked for service and has no case yet is open at the recorded step."""
    if intent not in policy.record_intents:
        return []
    return [Span(f"call:{call_id}", "recorded", call_t, None, call_t + policy.record_within, owner or "call-center")]
