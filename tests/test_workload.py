"""The synthetic workload: contract-shaped, reproducible, and honest about what it planted."""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta, timezone

import pytest

from closedloop.simulation.workload import (
    AMENDABLE_FIELDS,
    DEFAULT_END,
    SCENARIOS,
    WorkloadSpec,
    case_events,
    generate,
    network_events,
    scenarios,
)

pytestmark = pytest.mark.fast

# --- the v1 contract (EVENTS.md), written down as data ------------------------------------
REQUIRED = {
    "outlet.registered": ("name", "tier", "regions", "product_lines", "daily_capacity"),
    "technician.registered": ("outlet_id", "name", "level"),
    "stock.received": ("level", "region", "part_no", "quantity"),
    "call.received": ("phone", "intent"),
    "case.registered": ("call_id", "customer", "product", "fault"),
    "case.amended": (),
    "case.dispatched": ("outlet_id", "by"),
    "dispatch.accepted": ("outlet_id", "technician_id"),
    "dispatch.declined": ("outlet_id", "reason"),
    "appointment.set": ("at", "customer_agreed"),
    "case.transferred": ("from_outlet_id", "reason"),
    "guidance.given": ("technician_id", "finding"),
    "follow_up.made": ("working",),
    "part.requested": ("request_id", "part_no", "quantity", "outlet_id"),
    "part.approved": ("request_id",),
    "part.denied": ("request_id", "reason"),
    "part.shipped": ("request_id", "warehouse_id"),
    "part.delivered": ("request_id", "warehouse_id"),
    "visit.arrived": ("technician_id",),
    "unit.taken_in": ("technician_id", "loaner_provided"),
    "service.completed": ("technician_id", "fault_code", "cause", "first_visit"),
    "service.not_completed": ("technician_id", "reason", "next_step"),
    "case.cancelled": ("reason",),
    "callback.made": ("agent_id", "reached"),
    "complaint.filed": ("complaint_id", "category"),
    "complaint.resolved": ("complaint_id", "resolution", "accountable"),
    "feedback.routed": ("case_id", "department", "summary"),
    "feedback.acknowledged": ("owner", "corrective_action"),
    "feedback.closed": ("verified",),
    "technician.praised": ("case_id", "kind"),
    "technician.promoted": ("level", "exam_passed_at"),
    "units.shipped": ("model", "production_batch", "plant", "quantity", "period"),
}
NESTED_REQUIRED = {
    ("case.registered", "customer"): ("id", "name", "phone", "address", "region"),
    ("case.registered", "product"): ("model", "product_line"),
    ("case.registered", "fault"): ("description",),
}
ENUMS = {
    ("outlet.registered", "tier"): {"authorized", "specialized", "center"},
    ("technician.registered", "level"): {"junior", "intermediate", "senior"},
    ("stock.received", "level"): {1, 2, 3},
    ("call.received", "intent"): {"repair", "install", "maintenance", "consultation", "complaint",
                                  "suggestion", "purchase_interest", "follow_up"},
    ("case.registered", "request"): {"repair", "install", "maintenance"},
    ("case.dispatched", "by"): {"system", "agent"},
    ("case.transferred", "to"): {"center"},
    ("guidance.given", "finding"): {"misreport", "misuse"},
    ("service.completed", "cause"): {"design", "manufacturing", "installation", "transport", "usage",
                                     "wear", "unknown"},
    ("callback.made", "satisfaction"): {"very_satisfied", "satisfied", "neutral", "dissatisfied",
                                        "very_dissatisfied"},
    ("complaint.filed", "category"): {"promise_broken", "non_standard_service", "overcharge",
                                      "not_fixed_first_visit", "repeat_repair", "attitude", "other"},
    ("feedback.routed", "department"): {"design", "manufacturing", "sales", "service"},
    ("technician.praised", "kind"): {"delight", "improvement"},
}
BOOLS = {
    ("appointment.set", "customer_agreed"), ("follow_up.made", "working"), ("unit.taken_in", "loaner_provided"),
    ("service.completed", "first_visit"), ("callback.made", "reached"), ("feedback.closed", "verified"),
}
DEPARTMENT_FOR = {"design": "design", "manufacturing": "manufacturing", "installation": "service",
                  "transport": "service"}
# The loop's deadlines (LoopPolicy defaults), in seconds.
RECORD_WITHIN, HANDLE_WITHIN, GRACE, REVIEW_WITHIN, FEED_BACK_WITHIN = 1800, 48 * 3600, 7200, 24 * 3600, 72 * 3600
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
ENVELOPE = ("specversion", "id", "source", "type", "time", "subject", "datacontenttype", "data")


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


class Workload:
    """One generated workload, indexed the way the assertions ask about it."""

    def __init__(self, spec: WorkloadSpec) -> None:
        self.spec = spec
        self.end = int((spec.end or DEFAULT_END).timestamp())
        self.events = list(generate(spec))
        self.planted = scenarios(spec)
        self.by_case: dict[str, list[dict]] = defaultdict(list)
        self.calls: dict[str, dict] = {}
        feedback_case: dict[str, str] = {}
        for e in self.events:
            if e["type"] == "feedback.routed":
                feedback_case[e["subject"]] = e["data"]["case_id"]
        for e in self.events:
            if e["type"] == "call.received":
                self.calls[e["subject"]] = e
            elif e["type"].startswith("feedback."):
                self.by_case[feedback_case.get(e["subject"], "?")].append(e)
            elif e["subject"].startswith("CASE-"):
                self.by_case[e["subject"]].append(e)
        for case in self.by_case.values():
            case.sort(key=lambda e: e["time"])
        self.registered_calls = {e["data"]["call_id"]: e["subject"] for e in self.events
                                 if e["type"] == "case.registered"}
        # service calls in the last minutes whose registration would fall after `end`
        self.cut_calls = [c for c in self.calls.values() if c["subject"] not in self.registered_calls
                          and c["data"]["intent"] in ("repair", "install", "maintenance")
                          and ts(c["time"]) > self.end - 600]

    def of(self, case_id: str, type_: str) -> list[dict]:
        return [e for e in self.by_case.get(case_id, []) if e["type"] == type_]

    def first(self, case_id: str, type_: str) -> int | None:
        found = self.of(case_id, type_)
        return ts(found[0]["time"]) if found else None

    def call_of(self, case_id: str) -> dict:
        return self.calls[self.of(case_id, "case.registered")[0]["data"]["call_id"]]


@pytest.fixture(scope="module")
def default() -> Workload:
    return Workload(WorkloadSpec())


@pytest.fixture(scope="module")
def week() -> Workload:
    return Workload(WorkloadSpec(seed=11, days=7, calls_per_day=250, outlets=25, regions=6))


@pytest.fixture(scope="module", params=["default", "week"])
def workload(request, default, week) -> Workload:
    return {"default": default, "week": week}[request.param]


# --- reproducible ------------------------------------------------------------------------
def test_the_same_seed_gives_the_same_events_and_another_seed_others(default):
    assert list(generate(WorkloadSpec())) == default.events
    other = list(generate(WorkloadSpec(seed=8)))
    assert other != default.events
    assert [e["time"] for e in other[-500:]] != [e["time"] for e in default.events[-500:]]


def test_scenarios_are_reproducible_and_name_known_scenarios(default):
    assert scenarios(WorkloadSpec()) == default.planted
    assert set(default.planted.values()) <= set(SCENARIOS)


def test_case_events_stream_instead_of_building_a_list():
    stream = case_events(WorkloadSpec(days=365, calls_per_day=2000))
    started = time.perf_counter()
    first = next(stream)
    assert time.perf_counter() - started < 5
    assert first["type"] == "call.received"


# --- the contract ------------------------------------------------------------------------
def test_ids_are_unique_per_source(workload):
    keys = Counter((e["source"], e["id"]) for e in workload.events)
    assert [k for k, n in keys.items() if n > 1] == []


def test_every_event_is_a_structured_cloudevent_with_the_required_data(workload):
    for e in workload.events:
        assert tuple(e) == ENVELOPE, e
        assert e["specversion"] == "1.0" and e["datacontenttype"] == "application/json"
        assert all(isinstance(e[k], str) and e[k] for k in ENVELOPE[1:7]), e
        assert e["type"] in REQUIRED, e
        data = e["data"]
        missing = [f for f in REQUIRED[e["type"]] if data.get(f) is None]
        assert missing == [], (e, missing)
        for (type_, group), fields in NESTED_REQUIRED.items():
            if e["type"] == type_:
                assert set(fields) <= set(data[group]), (e, group)


def test_registration_details_are_given_unless_planted_blank_for_an_amendment(workload):
    for e in workload.events:
        if e["type"] != "case.registered":
            continue
        blanks = [(g, f) for (t, g), fields in NESTED_REQUIRED.items() if t == e["type"]
                  for f in fields if e["data"][g][f] in (None, "")]
        if workload.planted[e["subject"]] == "incomplete_then_amended":
            assert len(blanks) == 1 and blanks[0] in AMENDABLE_FIELDS, e
        else:
            assert blanks == [], e


def test_enumerations_and_flags_use_the_contract_values(workload):
    for e in workload.events:
        for (type_, name), allowed in ENUMS.items():
            if e["type"] == type_ and name in e["data"]:
                assert e["data"][name] in allowed, e
        for type_, name in BOOLS:
            if e["type"] == type_:
                assert isinstance(e["data"][name], bool), e
        if e["type"] == "callback.made" and e["data"]["reached"]:
            assert "satisfaction" in e["data"], e
        if e["type"] == "case.transferred":
            assert e["data"].get("to_outlet_id") or e["data"].get("to") == "center", e
        if e["type"] in ("outlet.registered", "stock.received"):
            assert isinstance(e["data"]["daily_capacity" if e["type"] == "outlet.registered" else "quantity"], int)


def test_ids_and_sources_follow_the_naming_scheme(default):
    patterns = {
        "outlet.registered": r"OUT-\d{4}", "technician.registered": r"TEC-\d{5}",
        "stock.received": r"WH1-\d{2}|WH2-R\d{2}|WH3-R\d{2}-\d{2}", "call.received": r"CALL-\d{8}",
        "case.registered": r"CASE-\d{8}", "feedback.routed": r"FB-\d{8}",
    }
    for e in default.events:
        if e["type"] in patterns:
            assert re.fullmatch(patterns[e["type"]], e["subject"]), e
        if e["type"] == "complaint.filed":
            assert re.fullmatch(r"CMP-\d{8}", e["data"]["complaint_id"]), e
        if e["type"] == "part.requested":
            assert re.fullmatch(r"PR-\d{8}", e["data"]["request_id"]), e
        assert re.fullmatch(r"/(callcenter/[a-z-]+/seat-\d+|outlet/OUT-\d{4}|warehouse/WH[123]-[R\d-]+"
                            r"|callback/desk-\d|quality/[a-z]+|hq/[a-z-]+)", e["source"]), e


def test_producers_speak_for_their_own_steps(default):
    sources = {
        "call.received": "/callcenter/", "case.registered": "/callcenter/", "case.dispatched": "/callcenter/",
        "dispatch.accepted": "/outlet/", "appointment.set": "/outlet/", "visit.arrived": "/outlet/",
        "part.requested": "/outlet/", "service.completed": "/outlet/", "part.approved": "/warehouse/",
        "part.shipped": "/warehouse/", "callback.made": "/callback/", "feedback.acknowledged": "/quality/",
        "feedback.closed": "/quality/",
    }
    for e in default.events:
        if e["type"] in sources:
            assert e["source"].startswith(sources[e["type"]]), e
        if e["type"] in ("dispatch.accepted", "part.requested", "dispatch.declined"):
            assert e["source"] == f"/outlet/{e['data']['outlet_id']}", e
        if e["type"] == "feedback.acknowledged":
            assert e["source"].startswith("/quality/")


# --- time --------------------------------------------------------------------------------
def test_times_are_utc_rfc3339_and_none_is_after_end(workload):
    for e in workload.events:
        assert TIME_RE.match(e["time"]), e
        assert ts(e["time"]) <= workload.end, e


def test_end_can_be_chosen_and_must_be_timezone_aware():
    end = datetime(2025, 3, 1, 12, tzinfo=timezone(timedelta(hours=8)))
    spec = WorkloadSpec(days=2, calls_per_day=100, end=end)
    events = list(generate(spec))
    assert max(ts(e["time"]) for e in events) <= end.timestamp()
    calls = [ts(e["time"]) for e in events if e["type"] == "call.received"]
    assert max(calls) > end.timestamp() - 86400
    with pytest.raises(ValueError):
        WorkloadSpec(end=datetime(2026, 1, 1))


def test_calls_spread_over_the_days_with_more_in_daytime(default):
    calls = [e for e in default.events if e["type"] == "call.received"]
    by_day = Counter(e["time"][:10] for e in calls)
    assert len(by_day) >= 3
    hours = Counter(int(e["time"][11:13]) for e in calls)
    assert sum(hours[h] for h in range(9, 17)) > 4 * sum(hours[h] for h in range(0, 6))


def test_a_small_share_arrives_out_of_order_with_truthful_times(week):
    cases = [e for e in week.events if e["type"] not in ("outlet.registered", "technician.registered",
                                                           "stock.received")]
    latest, late = "", 0
    for e in cases:
        late += e["time"] < latest
        latest = max(latest, e["time"])
    assert 0.005 < late / len(cases) < 0.05
    for case_id, scenario in week.planted.items():
        if scenario != "leak_recorded":
            assert ts(week.call_of(case_id)["time"]) <= week.first(case_id, "case.registered")


# --- the network -------------------------------------------------------------------------
def test_every_region_and_product_line_is_served(workload):
    outlets = [e for e in workload.events if e["type"] == "outlet.registered"]
    assert len(outlets) == workload.spec.outlets
    regions = {f"R{i:02d}" for i in range(1, workload.spec.regions + 1)}
    lines = {line for o in outlets for line in o["data"]["product_lines"]}
    assert lines == {"refrigerator", "washer", "air_conditioner", "water_heater", "tv"}
    covered = {(r, line) for o in outlets for r in o["data"]["regions"] for line in o["data"]["product_lines"]}
    assert {(r, line) for r in regions for line in lines} <= covered


def test_the_network_has_the_sources_shape(default):
    outlets = [e["data"] for e in default.events if e["type"] == "outlet.registered"]
    tiers = Counter(o["tier"] for o in outlets)
    assert tiers["authorized"] > tiers["specialized"] > 0
    assert tiers["center"] == default.spec.regions
    assert all(10 <= o["daily_capacity"] <= 60 for o in outlets)
    assert all(1 <= len(o["regions"]) <= 3 and 1 <= len(o["product_lines"]) <= 3 for o in outlets)
    staff = Counter(e["data"]["outlet_id"] for e in default.events if e["type"] == "technician.registered")
    assert set(staff) == {e["subject"] for e in default.events if e["type"] == "outlet.registered"}
    assert all(2 <= n <= 6 for n in staff.values())
    levels = Counter(e["data"]["level"] for e in default.events if e["type"] == "technician.registered")
    assert set(levels) == {"junior", "intermediate", "senior"}
    houses = {(e["subject"], e["data"]["level"]) for e in default.events if e["type"] == "stock.received"}
    assert Counter(level for _, level in houses) == {1: 1, 2: default.spec.regions, 3: 2}


def test_cases_go_to_outlets_that_serve_them_and_their_own_technicians(default):
    outlets = {e["subject"]: e["data"] for e in default.events if e["type"] == "outlet.registered"}
    works_at = {e["subject"]: e["data"]["outlet_id"] for e in default.events if e["type"] == "technician.registered"}
    first_call = min(ts(e["time"]) for e in default.events if e["type"] == "call.received")
    assert max(ts(e["time"]) for e in default.events if e["type"] in
               ("outlet.registered", "technician.registered", "stock.received")) < first_call
    for case_id, events in default.by_case.items():
        registered = default.of(case_id, "case.registered")
        if not registered or not default.of(case_id, "case.dispatched"):
            continue  # cut off by `end` before it was dispatched
        region = registered[0]["data"]["customer"]["region"]
        line = registered[0]["data"]["product"]["product_line"]
        first = default.of(case_id, "case.dispatched")[0]["data"]["outlet_id"]
        assert region in outlets[first]["regions"] and line in outlets[first]["product_lines"]
        for e in events:
            if e["type"] in ("dispatch.accepted", "visit.arrived", "service.completed", "guidance.given"):
                tech = e["data"]["technician_id"]
                assert works_at[tech] == e["source"].removeprefix("/outlet/"), e


def test_feedback_goes_to_the_department_that_owns_the_cause(workload):
    for case_id, events in workload.by_case.items():
        if case_id == "?":  # answers to the engine's routing of calls (suggestions, purchase interest)
            continue
        causes = [e["data"]["cause"] for e in events if e["type"] == "service.completed"]
        for e in events:
            if e["type"] == "feedback.routed":
                assert e["data"]["department"] == DEPARTMENT_FOR[causes[0]], e
            if e["type"] == "feedback.acknowledged":
                assert e["source"] == f"/quality/{DEPARTMENT_FOR[causes[0]]}", e


# --- what was planted --------------------------------------------------------------------
def test_every_scenario_is_planted_in_the_default_workload(default):
    assert set(default.planted.values()) == set(SCENARIOS)


def test_most_cases_close_the_loop_cleanly(week):
    shares = Counter(week.planted.values())
    assert shares["completed_ok"] / sum(shares.values()) > 0.6


def test_calls_that_need_no_case_get_none_and_only_leak_recorded_service_calls_go_unrecorded(workload):
    for call_id, call in workload.calls.items():
        intent = call["data"]["intent"]
        if intent in ("consultation", "suggestion", "purchase_interest", "follow_up", "complaint"):
            assert call_id not in workload.registered_calls
            assert call_id not in workload.planted
        elif call_id not in workload.registered_calls:
            assert workload.planted.get(call_id) == "leak_recorded" or ts(call["time"]) > workload.end - 600, call
    for key, scenario in workload.planted.items():
        assert key.startswith("CALL-" if scenario == "leak_recorded" else "CASE-")
        if scenario == "leak_recorded":
            assert workload.calls[key]["data"]["intent"] == "repair"
            assert key not in workload.registered_calls
            assert ts(workload.calls[key]["time"]) + RECORD_WITHIN <= workload.end


def test_complaint_and_follow_up_calls_name_an_earlier_case(workload):
    for call in workload.calls.values():
        case_id = call["data"].get("case_id")
        if call["data"]["intent"] == "complaint":
            assert case_id is not None
        if case_id:
            assert workload.first(case_id, "case.registered") <= ts(call["time"])


def evidence(w: Workload, case_id: str) -> dict:
    """What the events say happened to a case, in the words of the scenarios."""
    types = Counter(e["type"] for e in w.by_case[case_id])
    callbacks = w.of(case_id, "callback.made")
    reached = [c for c in callbacks if c["data"]["reached"]]
    return {"types": types, "callbacks": callbacks, "reached": reached,
            "completed": w.first(case_id, "service.completed")}


def test_each_scenario_shows_in_its_cases_events(workload):
    w, end = workload, workload.end
    for case_id, scenario in w.planted.items():
        if scenario == "leak_recorded":
            continue
        ev = evidence(w, case_id)
        types, reached, completed = ev["types"], ev["reached"], ev["completed"]
        if not types["case.registered"]:  # called in the last minutes: cut before registration
            assert not w.by_case.get(case_id) and w.cut_calls, case_id
            continue
        assert types["case.registered"] == 1
        if completed is not None and scenario not in ("leak_reviewed",):
            if completed + REVIEW_WITHIN <= end:
                assert reached, (case_id, scenario)
        if scenario == "completed_ok":
            assert all(c["data"]["satisfaction"] in ("satisfied", "very_satisfied") for c in reached)
            assert not types["complaint.filed"] and not types["case.cancelled"]
        elif scenario == "guided_by_phone":
            assert not types["visit.arrived"] and not types["service.completed"]
            if types["follow_up.made"]:
                guided = w.first(case_id, "guidance.given")
                follow = w.of(case_id, "follow_up.made")[0]
                assert follow["data"]["working"] is True
                assert ts(follow["time"]) - guided <= 2 * 3600
        elif scenario == "guided_not_working":
            follow = w.of(case_id, "follow_up.made")
            if follow:
                assert follow[0]["data"]["working"] is False
            if completed:
                assert types["case.dispatched"] == 2 and completed > ts(follow[0]["time"])
        elif scenario == "not_completed_redispatched":
            if completed:
                assert types["service.not_completed"] == 1
                assert types["case.transferred"] + types["case.dispatched"] >= 2
                accepted = {e["data"]["outlet_id"] for e in w.of(case_id, "dispatch.accepted")}
                assert len(accepted) == min(2, w.spec.outlets)
        elif scenario == "declined_redispatched":
            declined = w.of(case_id, "dispatch.declined")
            outlets = [e["data"]["outlet_id"] for e in w.of(case_id, "case.dispatched")]
            if completed:
                assert declined and len(outlets) == 2, case_id
                assert outlets[0] == declined[0]["data"]["outlet_id"]
                assert outlets[1] != outlets[0] or w.spec.outlets == 1
        elif scenario == "dissatisfied":
            assert all(c["data"]["satisfaction"] in ("dissatisfied", "very_dissatisfied") for c in reached)
        elif scenario == "callback_unreached_then_reached":
            if reached:
                assert not ev["callbacks"][0]["data"]["reached"]
                assert ts(reached[0]["time"]) - completed <= REVIEW_WITHIN
        elif scenario == "complaint":
            filed = w.of(case_id, "complaint.filed")
            if filed:
                assert completed < ts(filed[0]["time"])
                calls = [c for c in w.calls.values() if c["data"].get("case_id") == case_id
                         and c["data"]["intent"] == "complaint"]
                assert len(calls) == 1 and 0 <= ts(filed[0]["time"]) - ts(calls[0]["time"]) <= RECORD_WITHIN
            for resolved in w.of(case_id, "complaint.resolved"):
                assert resolved["data"]["complaint_id"] == filed[0]["data"]["complaint_id"]
                assert resolved["data"]["accountable"]
        elif scenario == "cancelled":
            assert not types["service.completed"] and not types["visit.arrived"]
        elif scenario == "incomplete_then_amended":
            amended = w.of(case_id, "case.amended")
            call_time = ts(w.call_of(case_id)["time"])
            if call_time + RECORD_WITHIN <= end:
                assert len(amended) == 1 and ts(amended[0]["time"]) - call_time <= RECORD_WITHIN
                (group, fields), = amended[0]["data"].items()
                assert all(v not in (None, "") for v in fields.values())
        elif scenario == "leak_handled":
            registered = w.first(case_id, "case.registered")
            assert types["case.dispatched"] and not completed and not types["case.cancelled"]
            assert registered + HANDLE_WITHIN < end
        elif scenario == "leak_reviewed":
            assert completed is not None and completed + REVIEW_WITHIN < end
            assert reached == []
        elif scenario == "leak_fed_back":
            cause = w.of(case_id, "service.completed")[0]["data"]["cause"]
            assert cause in ("design", "manufacturing")
            assert completed + FEED_BACK_WITHIN < end
            assert not types["feedback.acknowledged"]


def test_a_showcase_of_every_scenario_plays_out_in_full_by_end(default):
    """A newcomer's three-day demo must show each path, not just its first steps."""
    seen = defaultdict(list)
    for case_id, scenario in default.planted.items():
        seen[scenario].append(evidence(default, case_id)["types"] if scenario != "leak_recorded" else Counter())
    full = {
        "completed_ok": "callback.made", "guided_by_phone": "follow_up.made", "guided_not_working": "callback.made",
        "not_completed_redispatched": "callback.made", "declined_redispatched": "callback.made",
        "dissatisfied": "callback.made", "callback_unreached_then_reached": "callback.made",
        "complaint": "complaint.filed", "cancelled": "case.cancelled", "incomplete_then_amended": "case.amended",
        "leak_handled": "case.dispatched", "leak_reviewed": "service.completed", "leak_fed_back": "service.completed",
    }
    for scenario, last_step in full.items():
        assert any(types[last_step] for types in seen[scenario]), scenario


def test_ordinary_cases_keep_every_deadline_of_the_loop(workload):
    """Only planted leaks may leak: everything else is done before its deadline, or the
    deadline is still ahead at `end` (a case cut off by the end of the data)."""
    w, end = workload, workload.end
    for case_id, scenario in w.planted.items():
        if scenario.startswith("leak_") or not w.of(case_id, "case.registered"):
            continue
        call = ts(w.call_of(case_id)["time"])
        registered = w.first(case_id, "case.registered")
        amended = w.first(case_id, "case.amended")
        recorded = amended if scenario == "incomplete_then_amended" else registered
        assert (recorded or end + 1) - call <= RECORD_WITHIN or call + RECORD_WITHIN > end, case_id

        closed = w.first(case_id, "service.completed") or w.first(case_id, "case.cancelled")
        follow = [e for e in w.of(case_id, "follow_up.made") if e["data"]["working"]]
        if follow:
            closed = ts(follow[0]["time"])
        appointments = [ts(e["data"]["at"]) for e in w.of(case_id, "appointment.set")
                        if closed is None or ts(e["time"]) <= closed]
        due = (appointments[-1] + GRACE) if appointments else registered + HANDLE_WITHIN
        guided = w.first(case_id, "guidance.given")
        if guided is not None and w.first(case_id, "service.completed") is None and scenario == "guided_by_phone":
            due = guided + 2 * 3600
        assert (closed or end + 1) <= due or due > end, (case_id, scenario)

        completed = w.first(case_id, "service.completed")
        if completed is not None:
            reached = [ts(e["time"]) for e in w.of(case_id, "callback.made") if e["data"]["reached"]]
            assert (reached and reached[0] - completed <= REVIEW_WITHIN) or completed + REVIEW_WITHIN > end
            cause = w.of(case_id, "service.completed")[0]["data"]["cause"]
            if cause in DEPARTMENT_FOR:
                acked = w.first(case_id, "feedback.acknowledged")
                assert (acked and acked - completed <= FEED_BACK_WITHIN) or completed + FEED_BACK_WITHIN > end


# --- speed -------------------------------------------------------------------------------
def test_a_hundred_thousand_events_generate_in_seconds():
    spec = WorkloadSpec(seed=3, days=10, calls_per_day=1400, outlets=200, regions=20)
    started = time.perf_counter()
    n = 0
    for _ in generate(spec):
        n += 1
        if n == 100_000:
            break
    elapsed = time.perf_counter() - started
    print(f"\nworkload: {n:,} events in {elapsed:.2f} s = {n / elapsed:,.0f} events/s")
    assert n == 100_000
    assert elapsed < 30  # the budget is ~10 s; only a badly overloaded machine comes near this
