"""The network's rules as pure functions: given these facts (or candidates), then this state
(or choice, or decision). No storage: the engine tests check the same rules end to end."""

from __future__ import annotations

import random

import pytest

from closedloop.contract.events import validate
from closedloop.domain.facts import Fact, parse_ms
from closedloop.domain.network import (
    Candidate,
    DispatchPolicy,
    Outlet,
    Staff,
    capacity_today,
    choose,
    dispatch_entry,
    next_deadline,
    pick_technician,
    walk_dispatch,
)
from closedloop.domain.parts import CaseForParts, PartsRules, Shelf, decide, part_entry, walk_request
from closedloop.domain.permit import PermitRules, permit_lite, violations
from closedloop.app.settings import load_settings

from conftest import event, registration

pytestmark = pytest.mark.fast

POLICY = DispatchPolicy()


def fact(type_: str, subject: str, time: str, data: dict, position: int, source: str = "/test") -> Fact:
    f = validate(event(type_, subject, time, data, source=source, id=f"{type_}-{position}"))
    assert isinstance(f, Fact), f
    return Fact(f.type, f.subject, f.source, f.id, f.time_ms, f.data, None, position)


def t(clock: str) -> str:
    return f"2026-10-30T{clock}:00Z"


def outlet(oid: str, tier: str = "authorized", capacity: int = 10) -> Outlet:
    return Outlet(oid, tier, capacity)


# --- choosing an outlet ---------------------------------------------------------------------
def test_no_covering_outlet_is_a_refusal_that_says_so():
    assert choose([], "R01", "tv", POLICY) == (None, "no outlet covers region R01 and product line tv")


def test_full_tried_and_unstaffed_outlets_are_left_out_with_counts():
    eliminated = (Staff("T1", "eliminated"),)
    cands = [Candidate(outlet("A", capacity=2), 2), Candidate(outlet("B"), 0, eliminated), Candidate(outlet("C"), 0)]
    choice, why = choose(cands, "R01", "tv", POLICY, avoid=["C"])
    assert choice is None
    assert why == ("none of the 3 outlet(s) covering region R01 and product line tv can take it: 1 full today, "
                   "1 with no technician allowed to work, 1 tried already")


def test_ordinary_jobs_go_to_the_least_used_repair_point_and_centers_come_last():
    cands = [Candidate(outlet("A", capacity=10), 5), Candidate(outlet("B", capacity=4), 1),
             Candidate(outlet("C", "center", 50), 0)]
    choice, _ = choose(cands, "R01", "tv", POLICY)
    assert choice.outlet_id == "B"  # 25% used beats 50%; the empty center is kept for hard cases
    assert [r["outlet_id"] for r in choice.ranking] == ["B", "A", "C"]
    only_center, _ = choose([Candidate(outlet("A", capacity=1), 1), cands[2]], "R01", "tv", POLICY)
    assert only_center.outlet_id == "C"


def test_repeat_repairs_and_hard_cases_go_to_the_highest_tier_with_room():
    cands = [Candidate(outlet("A"), 0), Candidate(outlet("S", "specialized"), 8), Candidate(outlet("C", "center", 2), 2)]
    choice, _ = choose(cands, "R01", "tv", POLICY, prefer_higher="repeat repair: CASE-1 completed ...")
    assert choice.outlet_id == "S"  # the center is full today
    assert choice.reasons[1] == "higher tier preferred (repeat repair: CASE-1 completed ...): specialized"


def test_permits_scale_an_outlets_capacity_today():
    staff = (Staff("T1"), Staff("T2", "warning"), Staff("T3", "eliminated"), Staff("T4"))
    assert capacity_today(Candidate(outlet("A", capacity=20), 0, staff), POLICY) == 12  # 20 x (1 + .5 + 0 + 1) / 4
    counted = Candidate(outlet("A", capacity=20), 0, counts=(("normal", 2), ("warning", 1), ("eliminated", 1)))
    assert capacity_today(counted, POLICY) == 12
    assert capacity_today(Candidate(outlet("A", capacity=20), 0), POLICY) == 20  # no staff known: its own figure


def test_a_warned_technician_gets_half_the_jobs_and_an_eliminated_one_none():
    staff = [Staff("T-normal"), Staff("T-warned", "warning"), Staff("T-out", "eliminated")]
    got = {s.technician_id: 0 for s in staff}
    for _ in range(9):
        who, _why = pick_technician(staff, POLICY)
        got[who] += 1
        next(s for s in staff if s.technician_id == who).jobs += 1
    assert got == {"T-normal": 6, "T-warned": 3, "T-out": 0}


# --- where a dispatch stands ------------------------------------------------------------------
def dispatch_file(*facts: Fact) -> list[list]:
    return [dispatch_entry(f) for f in facts]


REG = fact("case.registered", "CASE-1", t("08:00"), registration("CALL-1"), 1)
SYSTEM = fact("case.dispatched", "CASE-1", t("08:00"), {"outlet_id": "A", "by": "system"}, 2,
              "/closedloop/engine/dispatcher")
AGENT = fact("case.dispatched", "CASE-1", t("08:05"), {"outlet_id": "B", "by": "agent", "accept_by": t("09:00")}, 3)
ACCEPTED = fact("dispatch.accepted", "CASE-1", t("08:20"), {"outlet_id": "B", "technician_id": "T9"}, 4)


def test_a_later_dispatch_supersedes_an_unaccepted_one_and_frees_its_slot():
    s = walk_dispatch("CASE-1", dispatch_file(REG, SYSTEM, AGENT, ACCEPTED), POLICY)
    assert s.status == "accepted" and s.current.outlet_id == "B" and s.current.technician_id == "T9"
    assert [(a.outlet_id, a.how, a.holds) for a in s.assignments] == [("A", "superseded", False), ("B", None, True)]
    assert [h[1] for h in s.holds(POLICY)] == ["B"]


def test_the_walk_gives_the_same_state_whatever_order_the_facts_arrive_in():
    declined = fact("dispatch.declined", "CASE-1", t("08:10"), {"outlet_id": "A", "reason": "full"}, 5)
    alarm = fact("dispatch.alarmed", "CASE-1", t("09:00"),
                 {"outlet_id": "B", "dispatched_at": t("08:05"), "accept_by": t("09:00"), "level": 1}, 6)
    facts = [REG, SYSTEM, declined, AGENT, alarm, ACCEPTED]
    reference = walk_dispatch("CASE-1", dispatch_file(*facts), POLICY)
    rng = random.Random(4)
    for _ in range(10):
        shuffled = facts[:]
        rng.shuffle(shuffled)
        s = walk_dispatch("CASE-1", dispatch_file(*shuffled), POLICY)
        assert (s.status, s.assignments, s.tried, s.alarms) == (reference.status, reference.assignments,
                                                                reference.tried, reference.alarms)
    # accepted before the alarm was raised (recorded late): resolved at the moment it was raised
    assert (reference.alarms[0].resolved, reference.alarms[0].resolution) == (parse_ms(t("09:00")), "accepted")


def test_a_waiting_dispatch_is_due_for_an_alarm_then_an_escalation():
    s = walk_dispatch("CASE-1", dispatch_file(REG, AGENT), POLICY)
    assert next_deadline(s, POLICY) == (parse_ms(t("09:00")), "alarm")
    alarm = fact("dispatch.alarmed", "CASE-1", t("09:00"),
                 {"outlet_id": "B", "dispatched_at": t("08:05"), "accept_by": t("09:00"), "level": 1}, 9)
    s = walk_dispatch("CASE-1", dispatch_file(REG, AGENT, alarm), POLICY)
    assert next_deadline(s, POLICY) == (parse_ms(t("09:30")), "escalate")
    assert next_deadline(walk_dispatch("CASE-1", dispatch_file(REG, AGENT, ACCEPTED), POLICY), POLICY) is None


def test_dispatch_settings_come_from_the_environment_with_clear_errors():
    policy = load_settings(env={"CLOSEDLOOP_AUTO_DISPATCH": "on", "CLOSEDLOOP_ACCEPT_WITHIN": "45m",
                                "CLOSEDLOOP_UTC_OFFSET": "+08:00"}).dispatch_policy()
    assert policy.auto_dispatch and policy.accept_within == 45 * 60_000 and policy.utc_offset == 8 * 3_600_000
    assert policy.day_of(parse_ms("2026-10-30T17:00:00Z")) == parse_ms("2026-10-30T16:00:00Z")  # midnight in +08:00
    assert policy.fingerprint() == load_settings(env={"CLOSEDLOOP_ACCEPT_WITHIN": "45m",
                                                      "CLOSEDLOOP_UTC_OFFSET": "+08:00"}).dispatch_policy().fingerprint()
    for env, words in [({"CLOSEDLOOP_AUTO_DISPATCH": "maybe"}, "CLOSEDLOOP_AUTO_DISPATCH: .* is not on or off"),
                       ({"CLOSEDLOOP_WARNING_SHARE": "2"}, "from 0 to 1"),
                       ({"CLOSEDLOOP_UTC_OFFSET": "Beijing"}, "CLOSEDLOOP_UTC_OFFSET: .* is not a UTC offset"),
                       ({"CLOSEDLOOP_ESCALATE_AFTER": "soon"}, "CLOSEDLOOP_ESCALATE_AFTER: .* is not a duration")]:
        with pytest.raises(ValueError, match=words):
            load_settings(env=env)


# --- the permit's rules on a case's facts -------------------------------------------------------
def test_a_complaint_resolved_before_it_was_filed_in_the_log_still_counts_once_both_are_known():
    filed = fact("complaint.filed", "CASE-1", t("12:00"), {"complaint_id": "C1", "category": "overcharge",
                                                           "technician_id": "T1"}, 7)
    resolved = fact("complaint.resolved", "CASE-1", t("15:00"), {"complaint_id": "C1", "resolution": "refund",
                                                                 "accountable": "T1"}, 3)  # arrived first
    entries = [[f.time_ms, f.position, f.type, permit_lite(f)] for f in (resolved, filed)]
    [v] = violations(entries, PermitRules())
    assert (v.rule, v.technician_id, v.time) == ("overcharge", "T1", parse_ms(t("15:00")))


# --- spare parts ------------------------------------------------------------------------------
def request_file(*facts: Fact) -> list[list]:
    return [part_entry(f, f.position) for f in facts]


REQUESTED = fact("part.requested", "CASE-1", t("09:00"), {"request_id": "PR-1", "part_no": "P1", "quantity": 2,
                                                          "outlet_id": "A"}, 1)


def test_an_approval_elsewhere_moves_the_reservation_and_a_shipment_takes_it_off_the_shelf():
    a1 = fact("part.approved", "CASE-1", t("09:01"), {"request_id": "PR-1", "warehouse_id": "W2"}, 2)
    a2 = fact("part.approved", "CASE-1", t("09:30"), {"request_id": "PR-1", "warehouse_id": "W1"}, 3)
    shipped = fact("part.shipped", "CASE-1", t("11:00"), {"request_id": "PR-1", "warehouse_id": "W1"}, 4)
    r = walk_request("PR-1", "CASE-1", request_file(REQUESTED, a1, a2, shipped))
    assert r.status == "shipped" and r.reserved_at is None
    assert [(w, on, res) for _t, w, _p, on, res in r.moves] == [("W2", 0, 2), ("W2", 0, -2), ("W1", 0, 2),
                                                                 ("W1", 0, -2), ("W1", -2, 0)]


def test_part_rules_decide_in_order_quantity_case_outlet_region_stock():
    r = walk_request("PR-1", "CASE-1", request_file(REQUESTED))
    rules = PartsRules()
    open_case = CaseForParts(True, "R01", "A")
    regional = [Shelf("W2", 2, "R01", 10, 9), Shelf("W1", 1, "HQ", 50, 0)]
    assert decide(r, open_case, regional, rules)[:2] == ("approved", "W1")  # 1 left regionally, 2 needed
    assert decide(r, open_case, regional, PartsRules(first_level_fallback=False))[0] == "held"
    assert decide(r, CaseForParts(True, "R01", "B"), regional, rules)[0] == "denied"
    assert decide(r, CaseForParts(True, "R01", "A", closed="cancelled"), regional, rules)[2] == (
        "case CASE-1 is already cancelled: it needs no part")
    assert decide(r, None, regional, rules)[0] == "held"
