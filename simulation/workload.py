"""A synthetic after-sales workload: the v1 contract events a manufacturer's producers send.

`closedloop demo`, the tests and the benchmarks need traffic that looks like the real
thing: call-center seats taking calls, outlet programs accepting jobs and closing them,
warehouses shipping parts, the callback desk reviewing results, department owners
answering feedback. It has to be reproducible (same seed, same events), cheap enough for
millions of events, and honest about what it planted, so a test can tell a leak the engine
should find from one it should not.

How it is built: every call first becomes a plan (`_Plan`) that fixes everything that
decides what the case *is*: its scenario, outlets, technicians, cause, parts and the time
of every step. Rendering a plan into events only adds texture (names, phones, wording)
from a separate random stream. `scenarios` reads the same plans, so it cannot disagree
with `case_events`.

The timings respect the loop's deadlines (`closedloop.domain.policy.LoopPolicy` defaults):
a service call is registered with full details within 30 minutes, a case is completed by
its appointment plus 2 hours (48 hours when none is set), a phone guidance is checked
within 2 hours, a completion is reviewed by a reached callback within 24 hours and a fed
back cause is acknowledged within 72 hours of completion. Only the planted `leak_*`
scenarios break one, and only where the deadline has clearly passed before `end`.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Iterator, NamedTuple

__all__ = [
    "WorkloadSpec", "network_events", "case_events", "generate", "scenarios",
    "SCENARIOS", "LEAK_SCENARIOS", "AMENDABLE_FIELDS", "FEEDBACK_DEPARTMENTS", "DEFAULT_END", "LATE_SHARE",
]

MINUTE = 60
HOUR = 3600
DAY = 86400

DEFAULT_END = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass(frozen=True)
class WorkloadSpec:
    """How much traffic, over which days, from how big a service network."""

    seed: int = 7
    days: int = 3  # days of calls, ending at `end`
    calls_per_day: int = 400
    outlets: int = 40
    regions: int = 8
    end: datetime | None = None  # tz-aware; None = DEFAULT_END
    # months of production, before the reference data is set up, whose shipped quantities are sent
    shipment_months: int = 12

    def __post_init__(self) -> None:
        if self.days < 1 or self.calls_per_day < 0 or self.outlets < 1 or self.regions < 1:
            raise ValueError("a workload needs days >= 1, calls_per_day >= 0, outlets >= 1, regions >= 1")
        if self.shipment_months < 0:
            raise ValueError("shipment_months must be >= 0")
        if self.end is not None and self.end.tzinfo is None:
            raise ValueError("end must be timezone-aware (UTC)")


# --- the scenarios a case can be planted with ----------------------------------------------
LEAK_SCENARIOS = ("leak_recorded", "leak_handled", "leak_reviewed", "leak_fed_back")
SCENARIOS = (
    "completed_ok",
    "guided_by_phone",
    "guided_not_working",
    "not_completed_redispatched",
    "declined_redispatched",
    "dissatisfied",
    "callback_unreached_then_reached",
    "complaint",
    "cancelled",
    "incomplete_then_amended",
    *LEAK_SCENARIOS,
)
# Per mille of service calls (repair, install, maintenance); completed_ok takes the rest.
# Far above the sources' 10 PPM targets on purpose: a three-day demo must show every path.
_SHARES = {
    "guided_by_phone": 50,
    "guided_not_working": 15,
    "not_completed_redispatched": 30,
    "declined_redispatched": 30,
    "dissatisfied": 20,
    "callback_unreached_then_reached": 40,
    "complaint": 15,
    "cancelled": 30,
    "incomplete_then_amended": 30,
    "leak_recorded": 5,
    "leak_handled": 5,
    "leak_reviewed": 5,
    "leak_fed_back": 5,
}
# Phone guidance only answers a fault report, and only a repair can have a design or
# manufacturing cause; the brief for a never-recorded call is a repair call.
_REPAIR_ONLY = {"guided_by_phone", "guided_not_working", "leak_fed_back", "leak_recorded"}

# Which details a registration may leave blank for a later amendment to fill in: these are
# among the details the loop needs for a case to count as recorded.
AMENDABLE_FIELDS = (("customer", "address"), ("product", "model"))

_SERVICE_INTENTS = ("repair", "install", "maintenance")
_INTENTS = ("repair", "install", "maintenance", "consultation", "suggestion", "purchase_interest", "follow_up")
_INTENT_WEIGHTS = (55, 14, 7, 12, 2, 5, 5)
# Calls per hour of the day, relative: a call center's daily curve.
_HOUR_WEIGHTS = (1, 0.5, 0.3, 0.3, 0.3, 0.5, 1, 3, 6, 8, 9, 9, 8, 8, 9, 9, 8, 7, 6, 5, 4, 3, 2, 1.5)

_CAUSES = ("wear", "usage", "manufacturing", "installation", "design", "transport", "unknown")
_CAUSE_WEIGHTS = (30, 15, 15, 10, 7, 5, 18)
# Cause of a completed service -> department that must answer for it (the loop's policy).
FEEDBACK_DEPARTMENTS = {"design": "design", "manufacturing": "manufacturing",
                        "installation": "service", "transport": "service"}
_COMPLAINTS = ("promise_broken", "non_standard_service", "overcharge", "not_fixed_first_visit",
               "repeat_repair", "attitude", "other")
_COMPLAINT_WEIGHTS = (20, 15, 15, 15, 10, 15, 10)
_LEVELS = ("junior", "intermediate", "senior")


# --- the product catalog ----------------------------------------------------------------------
class _Fault(NamedTuple):
    description: str
    code: str
    part: str | None


class _Line(NamedTuple):
    code: str
    label: str
    weight: int
    models: tuple[str, ...]
    plants: tuple[str, ...]
    faults: tuple[_Fault, ...]


_CATALOG: dict[str, _Line] = {
    "refrigerator": _Line("RF", "refrigerator", 30,
        ("BCD-216SDN", "BCD-258WDPM", "BCD-470WDPG", "BCD-535WGHSS"), ("PLANT-QD1", "PLANT-HF1"), (
            _Fault("Not cooling; the compressor runs all the time", "E1", "RF-THERM-01"),
            _Fault("Freezer compartment frosts up within a few days", "E5", "RF-DEFH-02"),
            _Fault("Loud knocking noise when the compressor starts", "F1", "RF-COMP-03"),
            _Fault("Water collects under the crisper drawers", "E0", None),
            _Fault("Display shows an error and the inside light flickers", "F3", "RF-MB-04"),
            _Fault("Door does not close properly; the seal is loose", "D1", "RF-SEAL-05"),
        )),
    "washer": _Line("WM", "washer", 25,
        ("XQG70-1279", "XQB75-M1268", "EG8012B29W", "XQG100-HBD14"), ("PLANT-QD2", "PLANT-WX1"), (
            _Fault("Drum does not spin; error on the display", "E2", "WM-MOTOR-01"),
            _Fault("Water does not drain at the end of the cycle", "E21", "WM-PUMP-02"),
            _Fault("Leaks water from the door while washing", "F5", "WM-GASK-03"),
            _Fault("Shakes violently during the spin cycle", "F7", None),
            _Fault("Door will not unlock after the program ends", "E3", "WM-LOCK-04"),
        )),
    "air_conditioner": _Line("AC", "air conditioner", 25,
        ("KFR-26GW", "KFR-35GW", "KFR-50LW", "KFR-72LW"), ("PLANT-QD3", "PLANT-WH1"), (
            _Fault("Blows air but does not cool", "E4", "AC-CAP-01"),
            _Fault("Indoor unit drips water down the wall", "F2", None),
            _Fault("Outdoor unit makes a rattling noise", "F9", "AC-FAN-02"),
            _Fault("Remote control has no effect; display shows E6", "E6", "AC-RX-03"),
            _Fault("Heating mode blows cold air", "E8", "AC-VALVE-04"),
        )),
    "water_heater": _Line("WH", "water heater", 12,
        ("ES60H-D1", "ES80H-Q3", "JSQ20-10", "JSQ25-13"), ("PLANT-QD4",), (
            _Fault("No hot water; the heating light stays off", "E1", "WH-ELEM-01"),
            _Fault("Leakage protector trips when heating", "E3", "WH-ELCB-02"),
            _Fault("Water only lukewarm at the highest setting", "E4", "WH-TSEN-03"),
            _Fault("Drips from the safety valve", "F1", "WH-VALVE-04"),
        )),
    "tv": _Line("TV", "TV", 8,
        ("LE32B310", "LE42A30", "LU55X81", "LU65C51"), ("PLANT-HF2",), (
            _Fault("No picture but the sound works", "F3", "TV-LED-01"),
            _Fault("Does not power on; the standby light blinks", "E1", "TV-PSU-02"),
            _Fault("Vertical lines across the screen", "F6", "TV-TCON-03"),
            _Fault("Does not respond to the remote control", "E9", None),
        )),
}
_LINES = tuple(_CATALOG)
_LINE_CUM = tuple(accumulate(line.weight for line in _CATALOG.values()))
_PARTS = {name: tuple(f.part for f in line.faults if f.part) for name, line in _CATALOG.items()}

# 34 cities, as many as the sources' call centers.
_CITIES = ("Qingdao", "Beijing", "Shanghai", "Guangzhou", "Wuhan", "Chengdu", "Xi'an", "Shenyang",
           "Hangzhou", "Nanjing", "Tianjin", "Chongqing", "Harbin", "Jinan", "Zhengzhou", "Changsha",
           "Kunming", "Hefei", "Fuzhou", "Nanning", "Urumqi", "Lanzhou", "Taiyuan", "Shijiazhuang",
           "Nanchang", "Guiyang", "Hohhot", "Dalian", "Xiamen", "Shenzhen", "Suzhou", "Ningbo",
           "Yantai", "Weifang")
_DISTRICTS = ("East", "West", "North", "South", "Central", "Riverside", "Lakeside", "Hi-Tech Zone",
              "Old Town", "Harbour", "University Town", "New District")
_SURNAMES = ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun",
             "Ma", "Zhu", "Hu", "Guo", "He", "Lin", "Gao", "Luo")
_GIVEN = ("Wei", "Fang", "Na", "Min", "Jing", "Li", "Qiang", "Lei", "Jun", "Yang", "Yong", "Yan",
          "Jie", "Tao", "Ming", "Chao", "Xiuying", "Hua", "Ping", "Gang", "Hui", "Xin", "Yu", "Bo")
_STREETS = ("Renmin Road", "Zhongshan Road", "Jiefang Road", "Xinhua Street", "Heping Road",
            "Jianshe Road", "Changjiang Road", "Huanghe Road", "Yan'an Road", "Xianggang Road",
            "Binhai Avenue", "Wenhua Street")
_TIER_LABEL = {"authorized": "Authorized Repair Point", "specialized": "Specialized Repair Dept.",
               "center": "Service Center"}

_HQ_NETWORK = "/hq/network"
_HQ_FEEDBACK = "/hq/feedback"
_HQ_QUALITY = "/hq/service-quality"
_HQ_SHIPPING = "/hq/shipping"

# Calls the engine routes as feedback by their intent (the loop policy's defaults), and
# answered by the department like any other item: its id is the engine's, from the call.
CALL_FEEDBACK = {"suggestion": "design", "purchase_interest": "sales"}
# A small share of repairs is of a unit repaired earlier (same customer, same serial).
REPEAT_SHARE = 0.04
_REPEAT_WINDOW = 80 * DAY


# --- time ------------------------------------------------------------------------------------
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_PREFIX: dict[int, str] = {}


def _day_prefix(day: int) -> str:
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = _DAY_PREFIX[day] = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")
    return prefix


def _rfc3339(ts: int) -> str:
    """Epoch seconds -> '2026-10-30T08:15:00Z'; strftime is too slow for millions of events."""
    day, sec = divmod(ts, DAY)
    hour, sec = divmod(sec, HOUR)
    minute, sec = divmod(sec, MINUTE)
    return f"{_day_prefix(day)}{hour:02d}:{minute:02d}:{sec:02d}Z"


def _date(ts: int) -> str:
    return _day_prefix(ts // DAY)[:-1]


def _end_ts(spec: WorkloadSpec) -> int:
    return int((spec.end or DEFAULT_END).timestamp())


def _slot(rng: random.Random, t: int, lead_min: int, lead_max: int) -> int:
    """An appointment the customer can agree to: on the half hour, 08:00-19:30."""
    s = t + rng.randint(lead_min, lead_max)
    s = -(-s // 1800) * 1800
    midnight = s - s % DAY
    sec = s - midnight
    if sec < 8 * HOUR:
        s = midnight + 8 * HOUR + 1800 * rng.randint(0, 3)
    elif sec > 19 * HOUR + 1800:
        s = midnight + DAY + 8 * HOUR + 1800 * rng.randint(0, 3)
    return s


def _office_hours(rng: random.Random, t: int) -> int:
    """The callback desk phones customers 08:00-21:00, not at night."""
    sec = t % DAY
    if sec < 8 * HOUR:
        return t - sec + 8 * HOUR + rng.randint(0, HOUR)
    if sec >= 21 * HOUR:
        return t - sec + DAY + 8 * HOUR + rng.randint(0, HOUR)
    return t


# --- the service network ----------------------------------------------------------------------
class _Outlet(NamedTuple):
    id: str
    name: str
    tier: str
    home: str
    regions: list[str]
    lines: list[str]
    capacity: int
    technicians: list[tuple[str, str, str]]  # (id, name, level)


class _Network:
    """Outlets, technicians and warehouses: fixed by the seed, shared by every plan."""

    def __init__(self, spec: WorkloadSpec) -> None:
        rng = random.Random(f"closedloop.workload:{spec.seed}:network")
        self.regions = [f"R{i:02d}" for i in range(1, spec.regions + 1)]
        self.city = {
            r: _CITIES[i % len(_CITIES)] + (f"-{i // len(_CITIES) + 1}" if i >= len(_CITIES) else "")
            for i, r in enumerate(self.regions)
        }
        self.outlets = self._outlets(rng, spec)
        self.by_id = {o.id: o for o in self.outlets}
        self._cover()
        self.candidates: dict[tuple[str, str], tuple[list[_Outlet], list[int]]] = {}
        for region in self.regions:
            for line in _LINES:
                serving = [o for o in self.outlets if region in o.regions and line in o.lines]
                self.candidates[(region, line)] = (serving, list(accumulate(o.capacity for o in serving)))
        self._technicians(rng)
        self.warehouses, self.stock = self._warehouses(rng)

    def _outlets(self, rng: random.Random, spec: WorkloadSpec) -> list[_Outlet]:
        n, regions = spec.outlets, self.regions
        centers = min(len(regions), max(1, n // 5))  # about one per region
        specialized = max(0, round((n - centers) * 0.12))
        tiers = ["center"] * centers + ["specialized"] * specialized + ["authorized"] * (n - centers - specialized)
        outlets = []
        for i, tier in enumerate(tiers):
            home = regions[i % len(regions)]
            hi = regions.index(home)
            reach = 1 if tier == "authorized" and rng.random() < 0.5 else rng.randint(1, 3)
            covered = [regions[(hi + k) % len(regions)] for k in range(min(reach, len(regions)))]
            if tier == "center":
                lines = rng.sample(_LINES, 3)
            else:
                lines, wanted = [], rng.choice((1, 1, 2, 2, 2, 3))
                while len(lines) < wanted:
                    line = rng.choices(_LINES, cum_weights=_LINE_CUM)[0]
                    if line not in lines:
                        lines.append(line)
            capacity = rng.randint(35, 60) if tier == "center" else rng.randint(10, 45)
            name = f"{self.city[home]} {rng.choice(_DISTRICTS)} {_TIER_LABEL[tier]}"
            outlets.append(_Outlet(f"OUT-{i + 1:04d}", name, tier, home, covered, lines, capacity, []))
        return outlets

    def _cover(self) -> None:
        """Every region x product line must have an outlet, or calls there could not be served."""
        for region in self.regions:
            for line in _LINES:
                if any(region in o.regions and line in o.lines for o in self.outlets):
                    continue
                home = [o for o in self.outlets if o.home == region]
                pick = (
                    next((o for o in sorted(home, key=lambda o: len(o.lines)) if len(o.lines) < 3), None)
                    or next((o for o in self.outlets if line in o.lines and len(o.regions) < 3), None)
                    or next((o for o in self.outlets if len(o.lines) < 3 and len(o.regions) < 3), None)
                    or (home[0] if home else self.outlets[0])
                )
                if line not in pick.lines:
                    pick.lines.append(line)
                if region not in pick.regions:
                    pick.regions.append(region)

    def _technicians(self, rng: random.Random) -> None:
        seq = 0
        for o in self.outlets:
            weights = (10, 40, 50) if o.tier == "center" else (45, 35, 20)
            for _ in range(rng.randint(2, 6)):
                seq += 1
                name = f"{rng.choice(_SURNAMES)} {rng.choice(_GIVEN)}"
                o.technicians.append((f"TEC-{seq:05d}", name, rng.choices(_LEVELS, weights)[0]))

    def _warehouses(self, rng: random.Random) -> tuple[list[tuple[str, int, str]], dict[str, set[str]]]:
        """One first-level warehouse, one second-level per region, a couple of third-level ones."""
        all_parts = [p for parts in _PARTS.values() for p in parts]
        houses = [("WH1-01", 1, self.regions[0])]
        houses += [(f"WH2-{r}", 2, r) for r in self.regions]
        houses += [(f"WH3-{r}-01", 3, r) for r in self.regions[:2]]
        stock: dict[str, set[str]] = {}
        for wid, level, _region in houses:
            share = {1: 1.0, 2: 0.7, 3: 0.3}[level]
            stock[wid] = {p for p in all_parts if level == 1 or rng.random() < share}
        return houses, stock

    def outlet_for(self, rng: random.Random, region: str, line: str, avoid: str | None = None) -> _Outlet:
        """Dispatch favours bigger outlets; a second dispatch goes to another one when it can."""
        serving, cum = self.candidates[(region, line)]
        if avoid is not None:
            others = [o for o in serving if o.id != avoid]
            if not others:
                others = [o for o in self.outlets if region in o.regions and o.id != avoid]
            if not others:
                others = [o for o in self.outlets if o.id != avoid] or serving
            return rng.choice(others)
        return rng.choices(serving, cum_weights=cum)[0]

    def warehouse_for(self, region: str, part: str) -> str:
        regional = f"WH2-{region}"
        return regional if part in self.stock.get(regional, ()) else "WH1-01"


def network_events(spec: WorkloadSpec) -> list[dict]:
    """The reference data the engine needs before the first call: outlets, technicians, stock."""
    net = _Network(spec)
    rng = random.Random(f"closedloop.workload:{spec.seed}:stock")
    start = _end_ts(spec) - spec.days * DAY
    t0 = start - start % DAY - 60 * DAY + 9 * HOUR  # set up two months before the first call
    out = []
    managers = random.Random(f"closedloop.workload:{spec.seed}:managers")
    for i, o in enumerate(net.outlets):
        out.append(_envelope(f"REG-{o.id}", _HQ_NETWORK, "outlet.registered", t0 + i * MINUTE, o.id, {
            "name": o.name, "tier": o.tier, "regions": list(o.regions), "product_lines": list(o.lines),
            "daily_capacity": o.capacity,
            "manager": f"{managers.choice(_SURNAMES)} {managers.choice(_GIVEN)}",
        }))
    t = t0 + DAY
    for o in net.outlets:
        for tid, name, level in o.technicians:
            t += 30
            out.append(_envelope(f"REG-{tid}", f"/outlet/{o.id}", "technician.registered", t, tid,
                                 {"outlet_id": o.id, "name": name, "level": level}))
    t = t0 + 2 * DAY
    for wid, level, region in net.warehouses:
        for k, part in enumerate(sorted(net.stock[wid])):
            t += MINUTE
            quantity = rng.randint(200, 1000) if level == 1 else rng.randint(20, 120) if level == 2 else rng.randint(5, 30)
            out.append(_envelope(f"RCV-{wid}-{k + 1:04d}", f"/warehouse/{wid}", "stock.received", t, wid,
                                 {"level": level, "region": region, "part_no": part, "quantity": quantity}))
    out += _shipments(spec, t0 + 3 * DAY)
    return out


def _shipments(spec: WorkloadSpec, at: int) -> list[dict]:
    """Units shipped per model, production batch and plant, for the production months that
    had ended when the reference data was loaded (the shipping history, imported at `at`)."""
    rng = random.Random(f"closedloop.workload:{spec.seed}:shipments")
    made = datetime.fromtimestamp(at, UTC).replace(day=1, hour=0, minute=0, second=0)
    months = []
    for _ in range(spec.shipment_months):
        made = (made - timedelta(days=1)).replace(day=1)
        months.append((made.year, made.month))
    out = []
    n = 0
    for line in _CATALOG.values():
        for model in line.models:
            for plant in line.plants:
                for year, month in sorted(months):
                    for letter in "ABCD":
                        n += 1
                        batch = f"B{year}-{month:02d}-{letter}"
                        out.append(_envelope(
                            f"SHIP-{n:06d}", _HQ_SHIPPING, "units.shipped", at + n, f"SHIP-{model}-{batch}-{plant}", {
                                "model": model, "production_batch": batch, "plant": plant,
                                "product_line": next(k for k, v in _CATALOG.items() if v is line),
                                "quantity": rng.randrange(20, 80) * 100, "period": f"{year}-{month:02d}"}))
    return out


def _envelope(event_id: str, source: str, type_: str, ts: int, subject: str, data: dict) -> dict:
    return {"specversion": "1.0", "id": event_id, "source": source, "type": type_, "time": _rfc3339(ts),
            "subject": subject, "datacontenttype": "application/json", "data": data}


# --- the plan of one call ----------------------------------------------------------------------
class _Plan:
    """Everything that decides what one call becomes, fixed before any event is rendered."""

    __slots__ = (
        "key", "scenario", "intent", "call_ts", "region", "line", "seat", "agent", "desk",
        "call_id", "case_id", "ref_case", "attempts", "fault", "cause", "part", "warehouse",
        "part_path", "taken_in", "satisfaction", "praised", "redispatch", "stall", "unreached",
        "routed", "complaint", "finding", "missing", "cancel_after_accept", "feedback_id",
        "request_id", "complaint_id", "complaint_call_id", "cancel_call_id", "steps",
    )

    def __init__(self, intent: str, call_ts: int, scenario: str | None) -> None:
        self.intent = intent
        self.call_ts = call_ts
        self.scenario = scenario
        self.key = self.call_id = self.case_id = self.ref_case = None
        self.attempts: list[tuple[str, str]] = []
        self.fault = 0
        self.cause = self.part = self.warehouse = self.part_path = None
        self.taken_in = self.praised = self.routed = self.cancel_after_accept = False
        self.satisfaction = self.redispatch = self.stall = self.complaint = self.finding = self.missing = None
        self.unreached = 0
        self.feedback_id = self.request_id = self.complaint_id = self.complaint_call_id = None
        self.cancel_call_id = None
        self.steps: list[tuple[int, str, object]] = []

    @property
    def has_case(self) -> bool:
        return self.scenario is not None and self.scenario != "leak_recorded"

    def when(self, kind: str) -> int | None:
        """The time of the last step of a kind: what a deadline is measured from."""
        found = None
        for ts, k, _ in self.steps:
            if k == kind:
                found = ts
        return found


def _plans(spec: WorkloadSpec, net: _Network | None = None) -> Iterator[_Plan]:
    """Every call of the workload as a plan, day by day, in call order, ids given in that order."""
    net = net or _Network(spec)
    rng = random.Random(f"closedloop.workload:{spec.seed}:plans")
    answers = random.Random(f"closedloop.workload:{spec.seed}:call-feedback")
    end = _end_ts(spec)
    start = end - spec.days * DAY
    hour_cum = list(accumulate(_HOUR_WEIGHTS))
    counters = {"CALL": 0, "CASE": 0, "FB": 0, "PR": 0, "CMP": 0}
    recent: deque[tuple[int, str]] = deque(maxlen=500)

    def next_id(prefix: str) -> str:
        counters[prefix] += 1
        return f"{prefix}-{counters[prefix]:08d}"

    for day in range(spec.days):
        day_start = start + day * DAY
        n = spec.calls_per_day
        hours = rng.choices(range(24), cum_weights=hour_cum, k=n)
        times = sorted(day_start + h * HOUR + rng.randrange(HOUR) for h in hours)
        # Day one plants every scenario at least once, so a short demo shows every path.
        showcase = {}
        if day == 0:
            showcase = dict(zip(rng.sample(range(n), min(n, len(SCENARIOS))), rng.sample(SCENARIOS, len(SCENARIOS))))
        plans = [_plan_call(rng, net, ts, end, showcase.get(i)) for i, ts in enumerate(times)]
        plans.sort(key=lambda p: p.call_ts)
        for p in plans:
            p.call_id = next_id("CALL")
            if p.has_case:
                p.key = p.case_id = next_id("CASE")
                if p.routed:
                    p.feedback_id = next_id("FB")
                if p.part_path:
                    p.request_id = next_id("PR")
                if p.scenario == "complaint":
                    p.complaint_call_id = next_id("CALL")
                    p.complaint_id = next_id("CMP")
                if p.scenario == "cancelled":
                    p.cancel_call_id = next_id("CALL")
                recent.append((p.call_ts, p.case_id))
            else:
                p.key = p.call_id
                if p.intent == "follow_up" and recent and rng.random() < 0.7:
                    asked_at, case_id = recent[rng.randrange(len(recent))]
                    if asked_at < p.call_ts - HOUR:  # a customer chasing a case registered earlier
                        p.ref_case = case_id
                if p.intent in CALL_FEEDBACK:
                    # the department names an owner well within 72 h, and verifies the action later
                    ack = p.call_ts + answers.randint(2 * HOUR, 60 * HOUR)
                    p.steps.append((ack, "call_feedback_acknowledged", None))
                    p.steps.append((ack + answers.randint(2 * DAY, 10 * DAY), "call_feedback_closed", None))
            yield p


def _plan_call(rng: random.Random, net: _Network, ts: int, end: int, forced: str | None) -> _Plan:
    intent = "repair" if forced else rng.choices(_INTENTS, weights=_INTENT_WEIGHTS)[0]
    region = net.regions[rng.randrange(len(net.regions))]
    line = rng.choices(_LINES, cum_weights=_LINE_CUM)[0]
    if intent not in _SERVICE_INTENTS:
        p = _Plan(intent, ts, None)
        _place(rng, net, p, region, line)
        p.steps = [(ts, "call", None)]
        return p
    scenario = forced or _draw_scenario(rng, intent)
    p = _build(rng, net, ts, intent, scenario, region, line)
    if _schedule_within(rng, p, end, showcase=forced is not None):
        return p
    # A leak drawn where its deadline cannot have passed by `end` would be an ordinary open
    # case, not a leak: plant an ordinary case instead.
    p = _build(rng, net, ts, intent, "completed_ok", region, line)
    _schedule_within(rng, p, end, showcase=False)
    return p


def _draw_scenario(rng: random.Random, intent: str) -> str:
    roll = rng.randrange(1000)
    for name, share in _SHARES.items():
        if roll < share:
            return "completed_ok" if intent != "repair" and name in _REPAIR_ONLY else name
        roll -= share
    return "completed_ok"


def _place(rng: random.Random, net: _Network, p: _Plan, region: str, line: str) -> None:
    """The customer's call reaches the call center of their region."""
    p.region, p.line = region, line
    seat = rng.randint(1, 120 if net.city[region] == "Qingdao" else 40)
    slug = net.city[region].lower().replace("'", "").replace(" ", "-")
    p.seat = f"/callcenter/{slug}/seat-{seat}"
    p.agent = f"AGT-{slug[:3].upper()}{seat:03d}"
    p.desk = rng.randint(1, 6)


def _build(rng: random.Random, net: _Network, ts: int, intent: str, scenario: str, region: str,
           line: str) -> _Plan:
    """The choices that make the case what its scenario says: who, what broke, what follows."""
    p = _Plan(intent, ts, scenario)
    _place(rng, net, p, region, line)
    first = net.outlet_for(rng, region, line)
    p.attempts.append((first.id, rng.choice(first.technicians)[0]))
    if scenario in ("declined_redispatched", "not_completed_redispatched"):
        second = net.outlet_for(rng, region, line, avoid=first.id)
        p.attempts.append((second.id, rng.choice(second.technicians)[0]))
    faults = _CATALOG[line].faults
    if intent == "repair":
        p.fault = rng.randrange(len(faults))
        if scenario == "leak_fed_back":
            p.cause = rng.choice(("design", "manufacturing"))
        else:
            p.cause = rng.choices(_CAUSES, weights=_CAUSE_WEIGHTS)[0]
    elif intent == "install":
        p.cause = "transport" if rng.random() < 0.05 else "unknown"
    else:
        p.cause = "wear"
    part = faults[p.fault].part if intent == "repair" else None
    if (part and p.cause != "usage" and rng.random() < 0.45
            and scenario not in ("guided_by_phone", "not_completed_redispatched", "cancelled", "leak_handled")):
        p.part = part
        p.part_path = "ahead" if rng.random() < 0.6 else "at_visit"
        # the second-level warehouse of the customer's region ships, as the engine's approval rules say
        p.warehouse = net.warehouse_for(p.region, part)
    p.taken_in = (scenario == "completed_ok" and intent == "repair" and line in ("tv", "washer")
                  and not p.part and rng.random() < 0.1)
    if scenario == "dissatisfied":
        p.satisfaction = rng.choice(("dissatisfied", "dissatisfied", "very_dissatisfied"))
    elif scenario == "complaint":
        p.satisfaction = rng.choice(("satisfied", "neutral"))
    elif scenario in ("completed_ok", "callback_unreached_then_reached", "leak_fed_back"):
        p.satisfaction = "very_satisfied" if rng.random() < 0.45 else "satisfied"
    else:
        p.satisfaction = rng.choice(("very_satisfied", "satisfied", "satisfied", "neutral"))
    p.praised = p.satisfaction == "very_satisfied" and rng.random() < 0.08
    p.redispatch = rng.choice(("transfer_outlet", "transfer_center", "redispatch"))
    p.stall = rng.choice(("dispatched", "accepted", "appointed"))
    p.unreached = rng.randint(0, 2)
    p.routed = p.cause in FEEDBACK_DEPARTMENTS and (scenario != "leak_fed_back" or rng.random() < 0.5)
    p.complaint = rng.choices(_COMPLAINTS, weights=_COMPLAINT_WEIGHTS)[0]
    p.finding = rng.choice(("misreport", "misuse"))
    p.missing = rng.choice(AMENDABLE_FIELDS)
    p.cancel_after_accept = rng.random() < 0.5
    return p


# Deadlines of the loop (LoopPolicy defaults) a planted leak must have clearly missed by `end`.
_CLEAR_MARGIN = 6 * HOUR
_HANDLE_BUDGET = 44 * HOUR  # registration -> completion, kept under the 48 h deadline


def _schedule_within(rng: random.Random, p: _Plan, end: int, showcase: bool) -> bool:
    """Schedule the plan so its scenario holds at `end`: ordinary cases keep every deadline,
    leaks miss theirs by a clear margin. A showcase plan is moved earlier until it fits."""
    for attempt in range(10):
        p.steps = _schedule(rng, p, hurry=showcase or attempt > 0)
        if p.scenario not in LEAK_SCENARIOS:
            done, registered = p.when("completed"), p.when("registered")
            if done is not None and done - registered > _HANDLE_BUDGET:
                if attempt >= 2:
                    p.part_path = "ahead" if p.part_path else None
                    p.taken_in = False
                continue
        gap = _gap(p, end, showcase)
        if gap <= 0:
            return True
        if not showcase:
            return False
        p.call_ts -= gap + rng.randint(10 * MINUTE, 2 * HOUR)
    return showcase


def _gap(p: _Plan, end: int, showcase: bool) -> int:
    """Seconds by which the plan misses what its scenario needs at `end` (<= 0: it holds)."""
    sc = p.scenario
    if sc == "leak_recorded":
        return p.call_ts - (end - 24 * HOUR)
    if sc == "leak_handled":
        return p.when("registered") - (end - 48 * HOUR - _CLEAR_MARGIN)
    if sc == "leak_reviewed":
        return p.when("completed") - (end - 24 * HOUR - _CLEAR_MARGIN)
    if sc == "leak_fed_back":
        latest = max(p.when("completed"), p.when("feedback_routed") or 0)
        return latest - (end - 72 * HOUR - _CLEAR_MARGIN)
    if showcase:  # the scenario's telling events must have happened by `end`
        telling = [ts for ts, kind, _ in p.steps if kind not in ("feedback_closed", "complaint_resolved", "praised")]
        return max(telling) - (end - HOUR)
    return 0


def _schedule(rng: random.Random, p: _Plan, hurry: bool) -> list[tuple[int, str, object]]:
    """The plan's steps as (time, kind, argument); every ordinary step keeps its deadline."""
    sc = p.scenario
    steps: list[tuple[int, str, object]] = [(p.call_ts, "call", None)]
    if sc == "leak_recorded":
        return steps
    add = steps.append
    t = p.call_ts + rng.randint(2 * MINUTE, 8 * MINUTE)
    add((t, "registered", None))
    if sc == "incomplete_then_amended":  # recorded needs full details within 30 min of the call
        t = p.call_ts + rng.randint(12 * MINUTE, 28 * MINUTE)
        add((t, "amended", None))
    t += rng.randint(MINUTE, 10 * MINUTE)
    add((t, "dispatched", 0))
    attempt = 0
    if sc == "declined_redispatched":
        t += rng.randint(5 * MINUTE, 30 * MINUTE)
        add((t, "declined", 0))
        t += rng.randint(3 * MINUTE, 15 * MINUTE)
        attempt = 1
        add((t, "dispatched", 1))
    if sc == "leak_handled" and p.stall == "dispatched":
        return steps
    if sc == "cancelled" and not p.cancel_after_accept:
        return _cancellation(rng, steps, t)
    t += rng.randint(3 * MINUTE, 45 * MINUTE)
    add((t, "accepted", attempt))
    if sc == "cancelled":
        return _cancellation(rng, steps, t)
    if sc == "leak_handled":
        if p.stall == "appointed":
            t_set = t + rng.randint(5 * MINUTE, 60 * MINUTE)
            add((t_set, "appointment_set", (attempt, _slot(rng, t_set, 90 * MINUTE, 16 * HOUR), None)))
        return steps
    if sc in ("guided_by_phone", "guided_not_working"):
        t += rng.randint(10 * MINUTE, 40 * MINUTE)
        add((t, "guided", attempt))
        t += rng.randint(60 * MINUTE, 115 * MINUTE)  # the follow-up is due 2 h after the guidance
        add((t, "followed_up", sc == "guided_by_phone"))
        if sc == "guided_by_phone":
            return steps
        t += rng.randint(5 * MINUTE, 30 * MINUTE)
        add((t, "dispatched", attempt))
        t += rng.randint(3 * MINUTE, 30 * MINUTE)
        add((t, "accepted", attempt))
    done, attempt, first_visit = _visits(rng, p, steps, t, attempt, hurry)
    add((done, "completed", (attempt, first_visit)))
    _review(rng, p, steps, done, attempt)
    if p.routed:
        routed = done + rng.randint(30 * MINUTE, 4 * HOUR)
        add((routed, "feedback_routed", None))
        if sc != "leak_fed_back":  # acknowledged within 72 h of the completion
            ack = routed + rng.randint(2 * HOUR, (12 if hurry else 60) * HOUR)
            add((ack, "feedback_acknowledged", None))
            add((ack + rng.randint(2 * DAY, 10 * DAY), "feedback_closed", None))
    if sc == "complaint":
        call = _office_hours(rng, done + rng.randint(4 * HOUR, 30 * HOUR))
        add((call, "complaint_call", None))
        filed = call + rng.randint(3 * MINUTE, 10 * MINUTE)  # a complaint is recorded within 30 min too
        add((filed, "complaint_filed", None))
        add((filed + rng.randint(4 * HOUR, 48 * HOUR), "complaint_resolved", None))
    return steps


def _cancellation(rng: random.Random, steps: list, t: int) -> list:
    """The customer calls back to cancel before anyone has come."""
    t = _office_hours(rng, t + rng.randint(30 * MINUTE, 5 * HOUR))
    steps.append((t, "cancel_call", None))
    steps.append((t + rng.randint(2 * MINUTE, 6 * MINUTE), "cancelled", None))
    return steps


def _visits(rng: random.Random, p: _Plan, steps: list, t: int, attempt: int,
            hurry: bool) -> tuple[int, int, bool]:
    """Appointments, visits and parts up to the completion, each visit ending by its
    appointment plus the 2 h grace; returns (completion time, attempt, first_visit)."""
    add = steps.append
    lead = (HOUR, 3 * HOUR) if hurry else (90 * MINUTE, 16 * HOUR)
    if p.part_path == "ahead":  # the engineer orders the part on receiving the job
        requested = t + rng.randint(10 * MINUTE, 30 * MINUTE)
        delivered = _parts(rng, steps, requested, attempt, hurry)
        t_set = requested + rng.randint(5 * MINUTE, 20 * MINUTE)
        at = _slot(rng, delivered, max(lead[0], HOUR), lead[1])
    else:
        t_set = t + rng.randint(5 * MINUTE, 60 * MINUTE)
        at = _slot(rng, t_set, *lead)
    add((t_set, "appointment_set", (attempt, at, None)))
    arrived = at - rng.randint(0, 20 * MINUTE)
    add((arrived, "arrived", attempt))
    if p.scenario == "not_completed_redispatched":
        # quick enough that the next appointment is set before this one's grace runs out
        t = arrived + rng.randint(20 * MINUTE, 45 * MINUTE)
        add((t, "not_completed", attempt))
        nxt = attempt + 1
        t += rng.randint(10 * MINUTE, 25 * MINUTE)
        if p.redispatch == "transfer_outlet":
            add((t, "transferred", (attempt, nxt)))
        elif p.redispatch == "transfer_center":
            add((t, "transferred", (attempt, None)))
            t += rng.randint(5 * MINUTE, 20 * MINUTE)
            add((t, "dispatched", nxt))
        else:
            add((t, "dispatched", nxt))
        t += rng.randint(5 * MINUTE, 20 * MINUTE)
        add((t, "accepted", nxt))
        t_set = t + rng.randint(5 * MINUTE, 15 * MINUTE)
        at = _slot(rng, t_set, HOUR, 3 * HOUR)
        add((t_set, "appointment_set", (nxt, at, None)))
        arrived = at - rng.randint(0, 20 * MINUTE)
        add((arrived, "arrived", nxt))
        return arrived + rng.randint(30 * MINUTE, 100 * MINUTE), nxt, False
    if p.part_path == "at_visit":  # diagnosed on site: order the part, come back
        requested = arrived + rng.randint(15 * MINUTE, 40 * MINUTE)
        delivered = _parts(rng, steps, requested, attempt, hurry)
        t_set = requested + rng.randint(5 * MINUTE, 20 * MINUTE)
        at = _slot(rng, delivered, HOUR, 3 * HOUR)
        add((t_set, "appointment_set", (attempt, at, "part on order")))
        arrived = at - rng.randint(0, 20 * MINUTE)
        add((arrived, "arrived", attempt))
        return arrived + rng.randint(20 * MINUTE, 90 * MINUTE), attempt, False
    if p.taken_in:  # repaired in the workshop; the customer keeps a loaner meanwhile
        t = arrived + rng.randint(20 * MINUTE, 40 * MINUTE)
        add((t, "taken_in", attempt))
        t_set = t + rng.randint(5 * MINUTE, 30 * MINUTE)
        at = _slot(rng, t_set, 4 * HOUR, 20 * HOUR)
        add((t_set, "appointment_set", (attempt, at, "unit returned after workshop repair")))
        arrived = at - rng.randint(0, 20 * MINUTE)
        add((arrived, "arrived", attempt))
        return arrived + rng.randint(15 * MINUTE, 45 * MINUTE), attempt, False
    return arrived + rng.randint(20 * MINUTE, 100 * MINUTE), attempt, True


def _parts(rng: random.Random, steps: list, t: int, attempt: int, hurry: bool) -> int:
    """Spare parts by order, end to end; returns when the part reached the outlet."""
    steps.append((t, "part_requested", attempt))
    t += rng.randint(2 * MINUTE, 30 * MINUTE)
    steps.append((t, "part_approved", None))
    t += rng.randint(30 * MINUTE, HOUR) if hurry else rng.randint(HOUR, 3 * HOUR)
    steps.append((t, "part_shipped", None))
    t += rng.randint(HOUR, 3 * HOUR) if hurry else rng.randint(2 * HOUR, 8 * HOUR)
    steps.append((t, "part_delivered", attempt))
    return t


def _review(rng: random.Random, p: _Plan, steps: list, done: int, attempt: int) -> None:
    """The callback desk reviews every result, reaching the customer within 24 h."""
    sc = p.scenario
    add = steps.append
    if sc == "leak_reviewed":
        t = done
        for _ in range(p.unreached):  # tried, never reached, never tried again
            t = min(_office_hours(rng, t + rng.randint(HOUR, 6 * HOUR)), done + 23 * HOUR)
            add((t, "callback", None))
        return
    if sc == "callback_unreached_then_reached":
        first = _office_hours(rng, done + rng.randint(HOUR, 6 * HOUR))
        add((first, "callback", None))
        t = min(_office_hours(rng, first + rng.randint(2 * HOUR, 8 * HOUR)), done + 23 * HOUR)
    else:
        t = min(_office_hours(rng, done + rng.randint(HOUR, 10 * HOUR)), done + 23 * HOUR)
    add((t, "callback", p.satisfaction))
    if p.praised:
        add((t + rng.randint(HOUR, 20 * HOUR), "praised", attempt))


# --- rendering a plan into events -------------------------------------------------------------
class _Texture:
    """What a call center would know about the customer and the product: words, not decisions."""

    __slots__ = ("customer_id", "known", "phone", "customer", "product", "fault", "fault_code",
                 "in_warranty", "batch", "plant", "model")

    def __init__(self, rng: random.Random, net: _Network, p: _Plan) -> None:
        self.customer_id = f"CUS-{rng.randrange(1, 40_000_000):08d}"
        self.known = rng.random() < 0.8  # 40 million customers have a file in the call center
        self.phone = f"1{rng.choice('35789')}{rng.randrange(10 ** 9):09d}"
        if not p.has_case:
            return
        line = _CATALOG[p.line]
        city = net.city[p.region]
        self.customer = {
            "id": self.customer_id,
            "name": f"{rng.choice(_SURNAMES)} {rng.choice(_GIVEN)}",
            "phone": self.phone,
            "address": f"{rng.randint(1, 399)} {rng.choice(_STREETS)}, Bldg {rng.randint(1, 30)}, "
                       f"Unit {rng.randint(1, 6)}-{rng.randint(1, 28)}{rng.randint(1, 4):02d}, {city}",
            "region": p.region,
        }
        age = {"install": rng.randint(1, 20), "maintenance": rng.randint(365, 8 * 365)}.get(
            p.intent, rng.randint(20, 6 * 365))
        bought = p.call_ts - age * DAY
        made = datetime.fromtimestamp(bought - rng.randint(30, 200) * DAY, UTC)
        self.model = rng.choice(line.models)
        self.batch = f"B{made.year}-{made.month:02d}-{'ABCD'[rng.randrange(4)]}"
        self.plant = rng.choice(line.plants)
        self.product = {
            "model": self.model,
            "product_line": p.line,
            "serial": f"{line.code}{made.year % 100:02d}{made.month:02d}{rng.randrange(10 ** 7):07d}",
            "purchase_date": _date(bought),
            "production_batch": self.batch,
            "plant": self.plant,
        }
        self.in_warranty = age <= 3 * 365
        if p.intent == "repair":
            fault = line.faults[p.fault]
            self.fault, self.fault_code = fault.description, fault.code
        elif p.intent == "install":
            self.fault = f"New {line.label} delivered; the customer asks for installation"
            self.fault_code = "DMG" if p.cause == "transport" else "NONE"
        else:
            self.fault = f"The customer asks for cleaning and a check-up of the {line.label}"
            self.fault_code = "NONE"

    _UNIT = ("customer_id", "known", "phone", "customer", "product", "in_warranty", "batch", "plant", "model")

    def unit(self) -> dict:
        """Who owns which unit: what a repeat repair of the same unit has in common with the first."""
        return {name: getattr(self, name) for name in self._UNIT}

    def adopt(self, unit: dict) -> None:
        for name, value in unit.items():
            setattr(self, name, dict(value) if isinstance(value, dict) else value)


_SUMMARIES = {
    "consultation": ("Asks how long the warranty lasts", "Asks how to set the energy-saving mode",
                     "Asks where to buy a replacement water filter", "Asks how to descale the water heater",
                     "Asks for the user manual of a model"),
    "suggestion": ("Suggests evening appointment slots", "Suggests a longer drain hose in the box",
                   "Suggests clearer icons on the control panel"),
    "purchase_interest": ("Interested in a larger refrigerator", "Asks about trading in an old washer",
                          "Wants a quote for air conditioners for a new flat"),
    "follow_up": ("Asks when the technician will arrive", "Asks about the status of a repair"),
}
_DECLINE_REASONS = ("Daily capacity reached", "No technician free before the promised time",
                    "Model outside this outlet's authorization", "Address outside the service area")
_NOT_COMPLETED = {
    "transfer_outlet": ("Sealed-system work cannot be done on site", "transfer to a specialized outlet"),
    "transfer_center": ("Fault never seen before; needs the service center's diagnosis", "hand back to the center"),
    "redispatch": ("Main board fault needs a senior technician", "redispatch to another outlet"),
}
_CANCEL_REASONS = ("The fault went away after a restart", "Customer bought a new unit",
                   "Customer moved away", "Registered twice by mistake")
_COMPLAINT_DETAIL = {
    "promise_broken": "Technician came two hours after the agreed time without calling",
    "non_standard_service": "No shoe covers and the floor was left dirty",
    "overcharge": "Charged for a part the customer believes is under warranty",
    "not_fixed_first_visit": "Needed a second visit for the same fault",
    "repeat_repair": "Same fault came back within a week",
    "attitude": "Technician was impatient and rude",
    "other": "Unhappy with how long the whole repair took",
}
_PERSONAL = {"promise_broken", "non_standard_service", "overcharge", "attitude"}
_OWNERS = {
    "design": ("Liu Yang", "Chen Jing", "Zhou Tao"),
    "manufacturing": ("Zhao Gang", "Sun Li", "Ma Chao"),
    "service": ("Huang Min", "Guo Hui", "Lin Ping"),
    "sales": ("Xu Lei", "He Yan", "Gao Jun"),
}
_ACTIONS = {
    "design": "Engineering change for {model}: redesign the failing assembly; release in the next revision",
    "manufacturing": "Audit batch {batch} at {plant}; add an end-of-line check for fault {code}",
    "installation": "Retrain installers in {region} on this model's mounting and drainage",
    "transport": "Carrier to add corner protection; inspect handling at the regional warehouse",
    "suggestion": "Product planning to weigh the suggestion for the next model revision",
    "purchase_interest": "Regional sales to call the customer back with an offer within a week",
}
_ADVICE = {
    "misreport": "Explained the normal operating noise and temperature cycle; nothing is broken",
    "misuse": "Walked the customer through the correct settings and loading",
}
_COMMENTS = {
    "very_satisfied": "Technician was punctual and tidy", "satisfied": "Fixed, thank you",
    "neutral": "Took longer than expected", "dissatisfied": "Had to wait a long time",
    "very_dissatisfied": "Still noisy and nobody explained why",
}


def _render(p: _Plan, x: _Texture, ts: int, kind: str, arg) -> tuple[str, str, str, dict]:
    """One step -> (source, type, subject, data): who says it and what they say."""
    if kind == "call":
        data = {"phone": x.phone, "intent": p.intent}
        if x.known:
            data["customer_id"] = x.customer_id
        if p.ref_case:
            data["case_id"] = p.ref_case
        summaries = _SUMMARIES.get(p.intent)
        data["summary"] = summaries[ts % len(summaries)] if summaries else (
            f"{_CATALOG[p.line].label.capitalize()}: {x.fault}" if p.has_case
            else f"Reports a fault with the {_CATALOG[p.line].label}")
        data["agent_id"] = p.agent
        return p.seat, "call.received", p.call_id, data
    case = p.case_id
    if kind == "registered":
        customer, product = x.customer, x.product
        if p.scenario == "incomplete_then_amended":
            group, name = p.missing
            if group == "customer":
                customer = {**customer, name: None}
            else:
                product = {**product, name: None}
        return p.seat, "case.registered", case, {
            "call_id": p.call_id, "customer": customer, "product": product,
            "fault": {"description": x.fault}, "request": p.intent, "promised_by": _rfc3339(ts + 48 * HOUR),
        }
    if kind == "amended":
        group = p.missing[0]
        return p.seat, "case.amended", case, {group: dict(x.customer if group == "customer" else x.product)}
    if kind == "dispatched":
        return p.seat, "case.dispatched", case, {
            "outlet_id": p.attempts[arg][0], "by": "agent", "accept_by": _rfc3339(ts + HOUR)}
    if kind == "declined":
        outlet = p.attempts[arg][0]
        return f"/outlet/{outlet}", "dispatch.declined", case, {
            "outlet_id": outlet, "reason": _DECLINE_REASONS[ts % len(_DECLINE_REASONS)]}
    if kind == "accepted":
        outlet, tech = p.attempts[arg]
        return f"/outlet/{outlet}", "dispatch.accepted", case, {"outlet_id": outlet, "technician_id": tech}
    if kind == "appointment_set":
        attempt, at, reason = arg
        data = {"at": _rfc3339(at), "customer_agreed": True}
        if reason:
            data["reason"] = reason
        return f"/outlet/{p.attempts[attempt][0]}", "appointment.set", case, data
    if kind == "arrived":
        outlet, tech = p.attempts[arg]
        return f"/outlet/{outlet}", "visit.arrived", case, {"technician_id": tech}
    if kind == "guided":
        outlet, tech = p.attempts[arg]
        return f"/outlet/{outlet}", "guidance.given", case, {
            "technician_id": tech, "finding": p.finding, "follow_up_due": _rfc3339(ts + 2 * HOUR),
            "advice": _ADVICE[p.finding]}
    if kind == "followed_up":
        return f"/callback/desk-{p.desk}", "follow_up.made", case, {
            "working": arg, "agent_id": f"CB-{p.desk}{ts % 20 + 1:02d}"}
    if kind == "part_requested":
        outlet = p.attempts[arg][0]
        return f"/outlet/{outlet}", "part.requested", case, {
            "request_id": p.request_id, "part_no": p.part, "quantity": 1, "outlet_id": outlet}
    if kind in ("part_approved", "part_shipped"):
        return f"/warehouse/{p.warehouse}", "part." + kind[5:], case, {
            "request_id": p.request_id, "warehouse_id": p.warehouse}
    if kind == "part_delivered":
        return f"/outlet/{p.attempts[arg][0]}", "part.delivered", case, {
            "request_id": p.request_id, "warehouse_id": p.warehouse}
    if kind == "taken_in":
        outlet, tech = p.attempts[arg]
        return f"/outlet/{outlet}", "unit.taken_in", case, {"technician_id": tech, "loaner_provided": True}
    if kind == "not_completed":
        outlet, tech = p.attempts[arg]
        reason, next_step = _NOT_COMPLETED[p.redispatch]
        return f"/outlet/{outlet}", "service.not_completed", case, {
            "technician_id": tech, "reason": reason, "next_step": next_step}
    if kind == "transferred":
        src, dst = arg
        data = {"from_outlet_id": p.attempts[src][0]}
        if dst is None:
            data["to"] = "center"
        else:
            data["to_outlet_id"] = p.attempts[dst][0]
        data["reason"] = _NOT_COMPLETED[p.redispatch][0]
        return f"/outlet/{p.attempts[src][0]}", "case.transferred", case, data
    if kind == "completed":
        attempt, first_visit = arg
        outlet, tech = p.attempts[attempt]
        free = x.in_warranty and p.cause != "usage" or p.cause in FEEDBACK_DEPARTMENTS or p.intent == "install"
        if p.scenario == "complaint" and p.complaint == "overcharge":
            free = False
        amount = 0 if free else 50 + (ts % 16) * 10 + (120 if p.part else 0)
        five = {"permit": True, "shoe_covers": True, "pad_cloth": True, "rag": True, "gift": True}
        if p.scenario == "complaint" and p.complaint == "non_standard_service":
            five["shoe_covers"] = five["rag"] = False
        data = {"technician_id": tech, "fault_code": x.fault_code, "cause": p.cause, "first_visit": first_visit,
                "parts_used": [p.part] if p.part else [], "charge": {"amount": amount, "currency": "CNY"},
                "five_ones": five}
        return f"/outlet/{outlet}", "service.completed", case, data
    if kind == "callback":
        data = {"agent_id": f"CB-{p.desk}{ts % 20 + 1:02d}", "reached": arg is not None}
        if arg is not None:
            data["satisfaction"] = arg
            data["charge_confirmed"] = True
            data["comment"] = _COMMENTS[arg]
        return f"/callback/desk-{p.desk}", "callback.made", case, data
    if kind == "praised":
        return _HQ_QUALITY, "technician.praised", p.attempts[arg][1], {"case_id": case, "kind": "delight"}
    if kind == "feedback_routed":
        dept = FEEDBACK_DEPARTMENTS[p.cause]
        return _HQ_FEEDBACK, "feedback.routed", p.feedback_id, {
            "case_id": case, "department": dept,
            "summary": f"{_CATALOG[p.line].label.capitalize()} {x.model}: {x.fault} (cause: {p.cause})",
            "product": {"model": x.model, "product_line": p.line, "production_batch": x.batch, "plant": x.plant},
            "fault_code": x.fault_code}
    if kind == "feedback_acknowledged":
        dept = FEEDBACK_DEPARTMENTS[p.cause]
        owners = _OWNERS[dept]
        action = _ACTIONS[p.cause].format(model=x.model, batch=x.batch, plant=x.plant, code=x.fault_code,
                                          region=p.region)
        return f"/quality/{dept}", "feedback.acknowledged", p.feedback_id, {
            "owner": f"{owners[ts % len(owners)]} ({dept})", "corrective_action": action,
            "due": _rfc3339(ts + 21 * DAY)}
    if kind == "feedback_closed":
        dept = FEEDBACK_DEPARTMENTS[p.cause]
        return f"/quality/{dept}", "feedback.closed", p.feedback_id, {
            "verified": True, "note": "Corrective action verified on new production"}
    if kind == "call_feedback_acknowledged":
        dept = CALL_FEEDBACK[p.intent]
        owners = _OWNERS[dept]
        return f"/quality/{dept}", "feedback.acknowledged", f"FB-{p.call_id}-{dept}", {
            "owner": f"{owners[ts % len(owners)]} ({dept})", "corrective_action": _ACTIONS[p.intent],
            "due": _rfc3339(ts + 21 * DAY)}
    if kind == "call_feedback_closed":
        dept = CALL_FEEDBACK[p.intent]
        return f"/quality/{dept}", "feedback.closed", f"FB-{p.call_id}-{dept}", {
            "verified": True, "note": "Done and checked with the customer"}
    if kind == "complaint_call":
        return p.seat, "call.received", p.complaint_call_id, {
            "phone": x.phone, "intent": "complaint", "customer_id": x.customer_id, "case_id": case,
            "summary": _COMPLAINT_DETAIL[p.complaint], "agent_id": p.agent}
    if kind == "complaint_filed":
        outlet, tech = p.attempts[-1]
        return p.seat, "complaint.filed", case, {
            "complaint_id": p.complaint_id, "category": p.complaint, "technician_id": tech,
            "outlet_id": outlet, "detail": _COMPLAINT_DETAIL[p.complaint]}
    if kind == "complaint_resolved":
        outlet, tech = p.attempts[-1]
        return _HQ_QUALITY, "complaint.resolved", case, {
            "complaint_id": p.complaint_id,
            "resolution": "Apologised in person, refunded the charge where due, permit points deducted",
            "accountable": tech if p.complaint in _PERSONAL else outlet}
    if kind == "cancel_call":
        return p.seat, "call.received", p.cancel_call_id, {
            "phone": x.phone, "intent": "follow_up", "customer_id": x.customer_id, "case_id": case,
            "summary": "Asks to cancel the service request", "agent_id": p.agent}
    if kind == "cancelled":
        return p.seat, "case.cancelled", case, {"reason": _CANCEL_REASONS[ts % len(_CANCEL_REASONS)]}
    raise AssertionError(f"no renderer for step {kind!r}")


# --- delivery ---------------------------------------------------------------------------------
LATE_SHARE = 0.02  # events delivered after later ones: outlets sync late, Kafka lags


def _late_by(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.6:
        return rng.randint(2 * MINUTE, 30 * MINUTE)
    if roll < 0.9:
        return rng.randint(30 * MINUTE, 6 * HOUR)
    return rng.randint(6 * HOUR, DAY)


def case_events(spec: WorkloadSpec) -> Iterator[dict]:
    """Every call and what follows from it, as producers would deliver them: in time order,
    except a small share that arrives late. No event is later than `end`."""
    net = _Network(spec)
    end = _end_ts(spec)
    texture_rng = random.Random(f"closedloop.workload:{spec.seed}:texture")
    repeat_rng = random.Random(f"closedloop.workload:{spec.seed}:repeats")
    repeat_pool: dict[tuple[str, str], deque] = {}
    late_rng = random.Random(f"closedloop.workload:{spec.seed}:delivery")
    pending: list[tuple[int, int, dict]] = []  # by world time
    held: list[tuple[int, int, dict]] = []  # late ones, by when they finally arrive
    seq = 0
    heappush, heappop, rand = heapq.heappush, heapq.heappop, late_rng.random

    def release(upto: int) -> Iterator[dict]:
        nonlocal seq
        while pending and pending[0][0] < upto:
            ts, _, event = heappop(pending)
            while held and held[0][0] <= ts:
                yield heappop(held)[2]
            if rand() < LATE_SHARE:
                seq += 1
                heappush(held, (ts + _late_by(late_rng), seq, event))
            else:
                yield event

    for p in _plans(spec, net):
        yield from release(p.call_ts)  # nothing planned later can happen before this call
        x = _Texture(texture_rng, net, p)
        if p.has_case and p.intent == "repair":
            pool = repeat_pool.setdefault((p.region, p.line), deque(maxlen=200))
            if pool and repeat_rng.random() < REPEAT_SHARE:
                earlier = [u for t, u in pool if p.call_ts - _REPEAT_WINDOW <= t < p.call_ts]
                if earlier:
                    x.adopt(repeat_rng.choice(earlier))
            done = p.when("completed")
            if done is not None:
                pool.append((done, x.unit()))
        key = p.key
        for n, (ts, kind, arg) in enumerate(p.steps):
            if ts > end:
                continue
            source, type_, subject, data = _render(p, x, ts, kind, arg)
            seq += 1
            heappush(pending, (ts, seq, {
                "specversion": "1.0", "id": f"{key}-{n:02d}", "source": source, "type": type_,
                "time": _rfc3339(ts), "subject": subject, "datacontenttype": "application/json", "data": data,
            }))
    yield from release(end + 1)
    while held:
        yield heappop(held)[2]


def generate(spec: WorkloadSpec | None = None) -> Iterator[dict]:
    """The whole workload: the network first, then the calls and cases."""
    spec = spec or WorkloadSpec()
    yield from network_events(spec)
    yield from case_events(spec)


def scenarios(spec: WorkloadSpec) -> dict[str, str]:
    """What was planted: case id (call id for a call never registered) -> scenario name.
    Calls that need no case (consultation, suggestion, ...) are not listed."""
    return {p.key: p.scenario for p in _plans(spec) if p.scenario is not None}
