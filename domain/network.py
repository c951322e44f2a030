"""The service network and dispatch: which outlet gets a job, and where a dispatch stands.

Pure rules over plain data (no I/O, no clock), shared by the engine's dispatcher (which
decides) and the network view (which answers questions):

- `DispatchPolicy`: the deadlines and shares of electronic dispatch, from configuration.
- `walk_dispatch`: a case's dispatch history, walked in world time, gives where the job is
  (waiting for acceptance, accepted, back at dispatch, at the service center, closed), every
  assignment with when it was accepted or released, and every alarm with when it was
  resolved. Facts may arrive in any order; the walk, like the loop's, orders them by world
  time, so the answer does not depend on arrival.
- `choose`: the outlet for a job among those covering the customer's region and product
  line with capacity left that day, with the ranked reasons for the choice.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

from .facts import Fact, iso, parse_ms
from .policy import HOUR, MINUTE

DAY = 24 * HOUR
TIERS = ("authorized", "specialized", "center")
TIER_RANK = {tier: rank for rank, tier in enumerate(TIERS)}
PERMIT_STATUSES = ("normal", "warning", "eliminated")

_OFFSET = re.compile(r"^\s*(?:UTC|Z|([+-])(\d{1,2}):?(\d{2})?)\s*$", re.IGNORECASE)


def parse_offset(text: str) -> int:
    """'+08:00', '-05:30', 'UTC' -> milliseconds east of UTC."""
    match = _OFFSET.match(text)
    if not match:
        raise ValueError(f"not a UTC offset: {text!r} (try +08:00 or UTC)")
    sign, hours, minutes = match.groups()
    if sign is None:
        return 0
    value = int(hours) * HOUR + int(minutes or 0) * MINUTE
    if value > 14 * HOUR:
        raise ValueError(f"not a UTC offset: {text!r} (at most ±14:00)")
    return value if sign == "+" else -value


@dataclass(frozen=True)
class DispatchPolicy:
    """Electronic dispatch, as configuration."""

    # the engine picks the outlet for a registered case, and re-dispatches declined ones
    auto_dispatch: bool = False
    # a dispatch that names no `accept_by` must be accepted this soon
    accept_within: int = 30 * MINUTE
    # not accepted this long after its deadline: escalated to the next outlet or the center
    escalate_after: int = 30 * MINUTE
    # escalations to another outlet before the service center takes the case
    max_redispatches: int = 2
    # a technician on a warning permit gets this share of a normal one's jobs
    warning_share: float = 0.5
    # the same product back with a fault this soon after a completion is a repeat repair
    repeat_within: int = 30 * DAY
    # capacity is per local day of the network: its offset from UTC
    utc_offset: int = 0
    # a stream whose newest fact was recorded this much after it happened is history being
    # sent late: its deadlines are judged by the stream's time, not the wall clock
    behind: int = HOUR

    def fingerprint(self) -> str:
        """What the dispatcher's state depends on. The on/off switch is not part of it: turning
        automatic dispatch on or off changes what is decided next, not what is known."""
        blob = {k: v for k, v in asdict(self).items() if k != "auto_dispatch"}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]

    def day_of(self, t: int) -> int:
        """The start (epoch ms) of the network's local day holding `t`."""
        return (t + self.utc_offset) // DAY * DAY - self.utc_offset

    def share(self, status: str) -> float:
        if status == "eliminated":
            return 0.0
        if status == "warning":
            return self.warning_share
        return 1.0


# --- a case's dispatch history ---------------------------------------------------------------
DISPATCH_FACTS = frozenset({
    "case.registered", "case.amended", "case.dispatched", "dispatch.accepted", "dispatch.declined",
    "case.transferred", "guidance.given", "follow_up.made", "service.not_completed",
    "service.completed", "case.cancelled", "dispatch.alarmed", "dispatch.held",
})


def fact_key(fact: Fact) -> str:
    return f"{fact.source}|{fact.id}"


def dispatch_lite(fact: Fact) -> dict[str, Any]:
    """What the dispatch walk needs of a fact."""
    d, t = fact.data, fact.type
    if t in ("case.registered", "case.amended"):
        out: dict[str, Any] = {}
        customer, product = d.get("customer"), d.get("product")
        if isinstance(customer, dict) and "region" in customer:
            out["region"] = customer["region"] or None
        if isinstance(product, dict):
            if "product_line" in product:
                out["product_line"] = product["product_line"] or None
            if "serial" in product:
                out["serial"] = product["serial"] or None
        return out
    if t == "case.dispatched":
        out = {"outlet_id": d["outlet_id"], "by": d["by"],
               "accept_by": parse_ms(d["accept_by"]) if d.get("accept_by") else None}
        if d.get("technician_id"):
            out["technician_id"] = d["technician_id"]
        return out
    if t in ("dispatch.accepted", "dispatch.declined"):
        return {k: d[k] for k in ("outlet_id", "technician_id") if k in d}
    if t == "case.transferred":
        return {k: d.get(k) for k in ("from_outlet_id", "to_outlet_id", "to")}
    if t == "follow_up.made":
        return {"working": d["working"]}
    if t == "dispatch.alarmed":
        return {"outlet_id": d["outlet_id"], "level": d["level"], "dispatched_at": parse_ms(d["dispatched_at"]),
                "accept_by": parse_ms(d["accept_by"]), "action": d.get("action"), "reason": d.get("reason")}
    if t == "dispatch.held":
        return {"reason": d["reason"], "retry_at": parse_ms(d["retry_at"]) if d.get("retry_at") else None}
    return {}


def dispatch_entry(fact: Fact, position: int | None = None) -> list[Any]:
    """[time, position, type, lite data, key]: one line of a case's dispatch file."""
    pos = fact.position if position is None else position
    return [fact.time_ms, pos if pos is not None else UNPOSITIONED, fact.type, dispatch_lite(fact), fact_key(fact)]


# A decision folded in before the log gave it a position sorts after everything at its time.
UNPOSITIONED = 2**62


@dataclass
class Assignment:
    """One outlet holding (or having held) the job."""

    key: str
    outlet_id: str
    by: str  # system | agent | transfer | outlet (accepted without a dispatch)
    time: int
    accept_by: int
    technician_id: str | None = None
    accepted: int | None = None
    released: int | None = None
    how: str | None = None  # declined | superseded | escalated | transferred | back_to_dispatch
    level: int = 0  # highest alarm raised on it

    @property
    def holds(self) -> bool:
        """Does it take a slot of the outlet's day? Yes, unless it was let go unaccepted."""
        return self.accepted is not None or self.released is None


@dataclass
class Alarm:
    key: str
    outlet_id: str
    level: int
    time: int
    dispatched_at: int
    accept_by: int
    action: str | None
    reason: str | None
    resolved: int | None = None
    resolution: str | None = None


@dataclass
class DispatchState:
    case_id: str
    registered: int | None = None
    region: str | None = None
    product_line: str | None = None
    serial: str | None = None
    assignments: list[Assignment] = field(default_factory=list)
    current: Assignment | None = None
    status: str = "unregistered"  # unregistered | unassigned | waiting | accepted | at_center | guided | closed
    since: int | None = None  # when the job last came back to dispatch (or was first registered)
    tried: list[str] = field(default_factory=list)
    hard: list[str] = field(default_factory=list)
    held: tuple[str, int | None, int] | None = None  # (reason, retry_at, time) while unassigned
    alarms: list[Alarm] = field(default_factory=list)
    escalations: int = 0
    closed: int | None = None
    closed_how: str | None = None

    def holds(self, policy: DispatchPolicy) -> list[list[Any]]:
        """[key, outlet, day, technician] of every assignment that takes a slot."""
        return [[a.key, a.outlet_id, policy.day_of(a.time), a.technician_id] for a in self.assignments if a.holds]


def walk_dispatch(case_id: str, entries: Iterable[Sequence[Any]], policy: DispatchPolicy) -> DispatchState:
    """Where the case's job stands after these facts, walked in world time."""
    walk = DispatchWalk(case_id, policy)
    for entry in sorted(entries, key=_walk_order):
        walk.step(entry)
    return walk.state()


def _walk_order(e: Sequence[Any]) -> tuple[int, int]:
    return (e[0], e[1])


class DispatchWalk:
    """`walk_dispatch` one entry at a time: a fold that sees a case's entries in walk order
    (world time, then position) can step on from where it was instead of walking again."""

    __slots__ = ("s", "policy", "at_center", "guided", "alarmed", "last")

    def __init__(self, case_id: str, policy: DispatchPolicy) -> None:
        self.s = DispatchState(case_id)
        self.policy = policy
        self.at_center = False
        self.guided = False
        self.alarmed: list[tuple[Alarm, Assignment | None]] = []
        self.last: tuple[int, int] | None = None  # the walk order of the last entry stepped

    def follows(self, entry: Sequence[Any]) -> bool:
        """Would `entry`, added last, come last in the walk's order?"""
        return self.last is None or (entry[0], entry[1]) >= self.last

    def step(self, entry: Sequence[Any]) -> None:
        t, _pos, kind, d, key = entry
        self.last = (t, _pos)
        s = self.s
        policy = self.policy

        def release(t: int, how: str) -> None:
            if s.current is not None:
                if s.current.released is None:
                    s.current.released, s.current.how = t, how
                s.current = None

        if kind == "case.registered" or kind == "case.amended":
            if kind == "case.registered" and s.registered is None:
                s.registered = t
                if s.since is None:
                    s.since = t
            if "region" in d:
                s.region = d["region"]
            if "product_line" in d:
                s.product_line = d["product_line"]
            if "serial" in d:
                s.serial = d["serial"]
        elif kind == "case.dispatched":
            release(t, "escalated" if s.current is not None and s.current.level >= 2 else "superseded")
            s.current = Assignment(key, d["outlet_id"], d["by"], t, d.get("accept_by") or t + policy.accept_within,
                                   d.get("technician_id"))
            s.assignments.append(s.current)
            self.at_center = self.guided = False
            s.held = None
        elif kind == "dispatch.accepted":
            if s.current is not None and s.current.outlet_id == d["outlet_id"]:
                if s.current.accepted is None:
                    s.current.accepted = t
                s.current.technician_id = d.get("technician_id") or s.current.technician_id
            else:
                # the outlet took the job without (or against) a dispatch: it holds it now
                release(t, "superseded")
                s.current = Assignment(key, d["outlet_id"], "outlet", t, t, d.get("technician_id"), accepted=t)
                s.assignments.append(s.current)
                self.at_center = False
            s.held = None
        elif kind == "dispatch.declined":
            if d["outlet_id"] not in s.tried:
                s.tried.append(d["outlet_id"])
            if s.current is not None and s.current.outlet_id == d["outlet_id"]:
                release(t, "declined")
                s.since = t
        elif kind == "case.transferred":
            if d.get("from_outlet_id") and d["from_outlet_id"] not in s.tried:
                s.tried.append(d["from_outlet_id"])
            release(t, "transferred")
            if d.get("to_outlet_id"):
                s.current = Assignment(key, d["to_outlet_id"], "transfer", t, t + policy.accept_within)
                s.assignments.append(s.current)
                self.at_center = False
            else:
                self.at_center = True
            self.guided = False
            s.held = None
        elif kind == "guidance.given":
            self.guided = True
            if s.current is not None and s.current.accepted is None:
                s.current.accepted = t
        elif kind == "follow_up.made":
            if self.guided:
                self.guided = False
                if d["working"]:
                    if s.closed is None:
                        s.closed, s.closed_how = t, "guided"
                else:
                    s.hard.append("the follow-up call found it still not working after phone guidance")
                    release(t, "back_to_dispatch")
                    s.since = t
        elif kind == "service.not_completed":
            s.hard.append("a visit did not complete the repair")
        elif kind in ("service.completed", "case.cancelled"):
            if s.closed is None:
                s.closed, s.closed_how = t, "completed" if kind == "service.completed" else "cancelled"
        elif kind == "dispatch.alarmed":
            target = next((a for a in reversed(s.assignments)
                           if a.outlet_id == d["outlet_id"] and a.time == d["dispatched_at"]), s.current)
            if target is not None:
                target.level = max(target.level, d["level"])
            if d["level"] >= 2:
                s.escalations += 1
                if d["outlet_id"] not in s.tried:
                    s.tried.append(d["outlet_id"])
            alarm = Alarm(key, d["outlet_id"], d["level"], t, d["dispatched_at"], d["accept_by"],
                          d.get("action"), d.get("reason"))
            s.alarms.append(alarm)
            self.alarmed.append((alarm, target))
        elif kind == "dispatch.held":
            if s.current is None:
                s.held = (d["reason"], d.get("retry_at"), t)

    def state(self) -> DispatchState:
        """Where the job stands after the entries stepped so far. The same object each time,
        brought up to date: a caller that steps on must not keep an earlier answer."""
        s = self.s
        if s.closed is not None:
            s.status = "closed"
        elif self.at_center:
            s.status = "at_center"
        elif self.guided:
            s.status = "guided"
        elif s.current is not None:
            s.status = "accepted" if s.current.accepted is not None else "waiting"
        elif s.registered is None:
            s.status = "unregistered"
        else:
            s.status = "unassigned"
        for alarm, target in self.alarmed:
            ends = []
            if target is not None:
                if target.accepted is not None:
                    ends.append((target.accepted, "accepted"))
                if target.released is not None:
                    ends.append((target.released, target.how or "released"))
            if s.closed is not None:
                ends.append((s.closed, s.closed_how or "closed"))
            if ends:
                when, how = min(ends)
                # settled before the alarm was raised: the fact that settled it was recorded late
                alarm.resolved, alarm.resolution = max(when, alarm.time), how
        return s


def needs_dispatch(state: DispatchState) -> bool:
    return state.status == "unassigned"


def next_deadline(state: DispatchState, policy: DispatchPolicy) -> tuple[int, str] | None:
    """The next moment the passing of time decides something for this case, and what."""
    a = state.current
    if state.status != "waiting" or a is None:
        return None
    if a.level == 0:
        return (a.accept_by, "alarm")
    if a.level == 1:
        return (a.accept_by + policy.escalate_after, "escalate")
    return None


# --- choosing an outlet ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Outlet:
    outlet_id: str
    tier: str
    daily_capacity: int
    regions: tuple[str, ...] = ()
    product_lines: tuple[str, ...] = ()


@dataclass(slots=True)
class Staff:
    technician_id: str
    status: str = "normal"
    jobs: int = 0


@dataclass(frozen=True, slots=True)
class Candidate:
    outlet: Outlet
    load: int  # jobs it holds today
    staff: tuple[Staff, ...] = ()  # none known: the outlet's own capacity figure stands
    # technicians per permit status, when the staff themselves are not at hand
    counts: tuple[tuple[str, int], ...] | None = None

    def statuses(self) -> list[tuple[str, int]]:
        if self.counts is not None:
            return [(status, n) for status, n in self.counts if n]
        found: dict[str, int] = {}
        for s in self.staff:
            found[s.status] = found.get(s.status, 0) + 1
        return list(found.items())


@dataclass(frozen=True)
class Choice:
    outlet_id: str
    tier: str
    technician_id: str | None
    reasons: list[str]
    ranking: list[dict[str, Any]]  # the candidates with room, best first: outlet_id, tier, load, capacity


def capacity_today(c: Candidate, policy: DispatchPolicy) -> int:
    """The outlet's daily capacity, scaled by the share of work its technicians' permits allow."""
    statuses = c.statuses()
    total = sum(n for _, n in statuses)
    if not total:
        return c.outlet.daily_capacity
    share = sum(policy.share(status) * n for status, n in statuses) / total
    return math.floor(c.outlet.daily_capacity * share + 1e-9)


def pick_technician(staff: Sequence[Staff], policy: DispatchPolicy) -> tuple[str | None, str]:
    """The technician who gets the job: the fewest jobs for the share of work their permit allows."""
    if not staff:
        return None, "no technician registered at the outlet: it assigns the job itself"
    eligible = [s for s in staff if policy.share(s.status) > 0]
    if not eligible:
        return None, "every technician's permit is eliminated"
    best = min(eligible, key=lambda s: (s.jobs / policy.share(s.status), s.jobs, s.technician_id))
    why = f"technician {best.technician_id} named: {best.status} permit, {best.jobs} job(s) so far"
    if best.status == "warning":
        why += f", at a {policy.warning_share:.0%} share on a warning permit"
    out = len(staff) - len(eligible)
    if out:
        why += f"; {out} technician(s) with an eliminated permit get no work"
    warned = sum(1 for s in eligible if s.status == "warning")
    if warned and best.status != "warning":
        why += f"; {warned} on a warning permit at a {policy.warning_share:.0%} share"
    return best.technician_id, why


def choose(candidates: Iterable[Candidate], region: str, product_line: str, policy: DispatchPolicy,
           prefer_higher: str | None = None, avoid: Iterable[str] = (),
           staff_of: Callable[[str], Sequence[Staff]] | None = None) -> tuple[Choice | None, str]:
    """Pick the outlet for a job: (choice, "") or (None, why no outlet can take it).

    Candidates are the outlets covering the region and product line. Those already tried, full
    for the day, or with no technician allowed to work are left out. For a repeat repair or a
    hard case (`prefer_higher` says why) the higher tier comes first; otherwise service
    centers, kept for training and hard cases, come after the repair points. Then the least
    loaded relative to its capacity today, then the one with most room, then by id.
    `staff_of` gives the chosen outlet's technicians when the candidates carry only counts.
    """
    avoid = set(avoid)
    pool = list(candidates)
    if not pool:
        return None, f"no outlet covers region {region} and product line {product_line}"
    tried = full = unstaffed = 0
    room: list[tuple[Candidate, int]] = []
    for c in pool:
        if c.outlet.outlet_id in avoid:
            tried += 1
            continue
        cap = capacity_today(c, policy)
        if c.statuses() and cap == 0 and c.outlet.daily_capacity > 0:
            unstaffed += 1
        elif c.load >= cap:
            full += 1
        else:
            room.append((c, cap))
    if not room:
        parts = []
        if full:
            parts.append(f"{full} full today")
        if unstaffed:
            parts.append(f"{unstaffed} with no technician allowed to work")
        if tried:
            parts.append(f"{tried} tried already")
        return None, (f"none of the {len(pool)} outlet(s) covering region {region} and product line "
                      f"{product_line} can take it: " + ", ".join(parts))

    def key(item: tuple[Candidate, int]) -> tuple[Any, ...]:
        c, cap = item
        tier = -TIER_RANK.get(c.outlet.tier, 0) if prefer_higher else int(c.outlet.tier == "center")
        return (tier, c.load / cap, -(cap - c.load), c.outlet.outlet_id)

    room.sort(key=key)
    best, cap = room[0]
    o = best.outlet
    reasons = [f"covers region {region} and product line {product_line}"]
    if prefer_higher:
        reasons.append(f"higher tier preferred ({prefer_higher}): {o.tier}")
    elif o.tier == "center" and len(room) > 1:
        reasons.append("service center: no repair point with room")
    used = round(100 * best.load / cap)
    line = f"capacity left today: {cap - best.load} of {cap} ({used}% used)"
    if cap < o.daily_capacity:
        line += f"; {o.daily_capacity} reduced by technicians' permits"
    reasons.append(line)
    if len(room) > 1:
        runner = room[1][0]
        reasons.append(f"ranked 1 of {len(room)} with room; next {runner.outlet.outlet_id} "
                       f"({runner.outlet.tier}, {runner.load} of {room[1][1]} used)")
    else:
        reasons.append("the only outlet with room")
    skipped = [f"{n} {what}" for n, what in ((tried, "tried already"), (full, "full today"),
                                             (unstaffed, "with no technician allowed to work")) if n]
    if skipped:
        reasons.append("left out: " + ", ".join(skipped))
    technician, why = pick_technician(staff_of(o.outlet_id) if staff_of else best.staff, policy)
    reasons.append(why)
    ranking = [{"outlet_id": c.outlet.outlet_id, "tier": c.outlet.tier, "load": c.load, "capacity": k}
               for c, k in room[:5]]
    return Choice(o.outlet_id, o.tier, technician, reasons, ranking), ""


def higher_tier_reason(state: DispatchState, repeat_of: Sequence[Any] | None) -> str | None:
    """Why this job should go to a higher tier, if it should: a repeat repair or a hard case."""
    if repeat_of:
        return f"repeat repair: {repeat_of[0]} completed {iso(repeat_of[1])} on the same product"
    if state.hard:
        return f"hard case: {state.hard[-1]}"
    return None
