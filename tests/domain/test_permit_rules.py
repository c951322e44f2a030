"""The work permit's rules, read as the business states them, with no storage and no engine.

Given a case's facts (or a permit's balance), when the rules read them (or a change, a review
or a retraining comes), then these violations (or ledger entries, or this error).

The permit keeper (reactors/permit_keeper.py) turns each violation into
`Permit.change(rules, rule, -deductions[rule] * units, ...)`, once per technician, case and
rule; that bookkeeping needs its tables and is tested on both databases in tests/test_permit.py.
Here: `violations`, `repeat_violation`, `Permit` and `PermitRules`, the pure rules it calls.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from closedloop.contract.events import validate
from closedloop.domain.facts import Fact, parse_ms
from closedloop.domain.permit import (
    DAY,
    HOUR,
    Permit,
    PermitRules,
    PermitRulesError,
    Violation,
    permit_lite,
    repeat_violation,
    violations,
)

from conftest import event, registration

pytestmark = pytest.mark.fast

RULES = PermitRules()
OUTLET = "/outlet/OUT-S"


def at(clock: str, day: str = "2026-10-30") -> str:
    return f"{day}T{clock}:00Z"


class Case:
    """A case told fact by fact, as the permit rules read it: (time, position, type, lite, key)."""

    def __init__(self) -> None:
        self.entries: list[list[Any]] = []

    def _add(self, type_: str, time: str, data: dict[str, Any], source: str = OUTLET) -> "Case":
        n = len(self.entries) + 1
        fact = validate(event(type_, "CASE-1", time, data, source=source, id=f"e{n}"))
        assert isinstance(fact, Fact), fact
        self.entries.append([fact.time_ms, n, fact.type, permit_lite(fact), f"{source}|e{n}"])
        return self

    def registered(self, time: str = at("08:10"), serial: str | None = None) -> "Case":
        data = registration("CALL-1")
        if serial:
            data["product"]["serial"] = serial
        return self._add("case.registered", time, data, source="/callcenter/qingdao/seat-1")

    def dispatched(self, time: str, outlet: str = "OUT-S") -> "Case":
        return self._add("case.dispatched", time, {"outlet_id": outlet, "by": "agent"}, source="/hq/dispatch")

    def transferred(self, time: str, to: str = "OUT-C") -> "Case":
        return self._add("case.transferred", time, {"from_outlet_id": "OUT-S", "to_outlet_id": to,
                                                    "reason": "needs a senior"})

    def accepted(self, time: str, technician: str = "TEC-S1") -> "Case":
        return self._add("dispatch.accepted", time, {"outlet_id": "OUT-S", "technician_id": technician})

    def appointment(self, time: str, when: str, agreed: bool = True) -> "Case":
        return self._add("appointment.set", time, {"at": when, "customer_agreed": agreed})

    def arrived(self, time: str, technician: str) -> "Case":
        return self._add("visit.arrived", time, {"technician_id": technician})

    def completed(self, time: str, technician: str = "TEC-S1", first_visit: bool = True,
                  five_ones: dict[str, bool] | None = None) -> "Case":
        data: dict[str, Any] = {"technician_id": technician, "fault_code": "E1", "cause": "wear",
                                "first_visit": first_visit}
        if five_ones is not None:
            data["five_ones"] = five_ones
        return self._add("service.completed", time, data)

    def complaint_filed(self, time: str, category: str, technician: str | None = None,
                        complaint_id: str = "CMP-1") -> "Case":
        data: dict[str, Any] = {"complaint_id": complaint_id, "category": category}
        if technician:
            data["technician_id"] = technician
        return self._add("complaint.filed", time, data, source="/callcenter/qingdao/seat-1")

    def complaint_resolved(self, time: str, accountable: str, complaint_id: str = "CMP-1") -> "Case":
        return self._add("complaint.resolved", time, {"complaint_id": complaint_id, "resolution": "refunded",
                                                      "accountable": accountable}, source="/hq/service-quality")

    def broken(self, rules: PermitRules = RULES) -> list[tuple[str, str, int]]:
        """(rule, technician, units) of each violation the rules find."""
        return [(v.rule, v.technician_id, v.units) for v in violations(self.entries, rules)]


def accepted_by_tec_s1() -> Case:
    return Case().registered().accepted(at("08:20"))


# --- a broken promise ---------------------------------------------------------------------------
def test_completing_more_than_two_hours_after_the_agreed_appointment_breaks_the_promise():
    case = accepted_by_tec_s1().appointment(at("08:30"), at("10:00")).completed(at("12:01"))
    [v] = violations(case.entries, RULES)
    assert (v.rule, v.technician_id, v.time, v.units) == ("promise_broken", "TEC-S1", parse_ms(at("12:01")), 1)
    assert v.reason == ("completed 2.0 h after the appointment agreed for 2026-10-30T10:00:00.000Z "
                        "(allowed: 2.0 h)")
    assert v.cause == case.entries[-1][4]  # the completion showed it


def test_completing_exactly_at_the_end_of_the_grace_keeps_the_promise():
    case = accepted_by_tec_s1().appointment(at("08:30"), at("10:00")).completed(at("12:00"))
    assert case.broken() == []


def test_a_longer_grace_in_the_rules_forgives_a_later_completion():
    case = accepted_by_tec_s1().appointment(at("08:30"), at("10:00")).completed(at("12:30"))
    assert case.broken() == [("promise_broken", "TEC-S1", 1)]
    assert case.broken(PermitRules.from_mapping({"promise_grace": "3h"})) == []


def test_moving_an_agreed_appointment_without_the_customers_agreement_breaks_the_promise():
    case = accepted_by_tec_s1().appointment(at("08:30"), at("10:00")) \
        .appointment(at("09:30"), at("16:00"), agreed=False)
    [v] = violations(case.entries, RULES)
    assert (v.rule, v.technician_id) == ("promise_broken", "TEC-S1")
    assert v.reason == ("the appointment agreed for 2026-10-30T10:00:00.000Z was moved to "
                        "2026-10-30T16:00:00.000Z without the customer's agreement")


def test_moving_an_appointment_with_the_customers_agreement_makes_the_new_time_the_promise():
    case = accepted_by_tec_s1().appointment(at("08:30"), at("10:00")) \
        .appointment(at("09:30"), at("16:00")).completed(at("17:00"))
    assert case.broken() == []


def test_an_appointment_the_customer_never_agreed_to_is_no_promise_to_break():
    case = accepted_by_tec_s1().appointment(at("08:30"), at("10:00"), agreed=False).completed(at("18:00"))
    assert case.broken() == []


def test_after_a_transfer_the_first_outlets_appointment_binds_no_one():
    case = accepted_by_tec_s1().appointment(at("08:30"), at("10:00")).transferred(at("09:00")) \
        .completed(at("18:00"), technician="TEC-C1")
    assert case.broken() == []


# --- the five ones of a standard service ----------------------------------------------------------
def test_each_missing_item_of_the_five_ones_is_one_unit_of_non_standard_service():
    five = {"permit": True, "shoe_covers": False, "pad_cloth": True, "rag": False, "gift": False}
    [v] = violations(accepted_by_tec_s1().completed(at("11:00"), five_ones=five).entries, RULES)
    assert (v.rule, v.technician_id, v.units) == ("non_standard_service", "TEC-S1", 3)
    assert v.reason == "non-standard service, missing of the five ones: shoe covers, rag, small gift"


def test_five_ones_not_reported_or_not_reported_missing_are_no_violation():
    assert accepted_by_tec_s1().completed(at("11:00")).broken() == []
    assert accepted_by_tec_s1().completed(at("11:00"), five_ones={"permit": True, "rag": True}).broken() == []


# --- fixed on the first visit ---------------------------------------------------------------------
def test_not_fixed_on_the_first_visit_is_charged_to_the_technician_who_came_first():
    case = accepted_by_tec_s1().arrived(at("10:00"), "TEC-S1").arrived(at("15:00"), "TEC-C1") \
        .completed(at("16:00"), technician="TEC-C1", first_visit=False)
    [v] = violations(case.entries, RULES)
    assert (v.rule, v.technician_id, v.reason) == ("not_fixed_first_visit", "TEC-S1",
                                                   "not fixed on the first visit (completed by TEC-C1)")


def test_with_no_visit_recorded_the_technician_who_completed_answers_for_a_second_visit():
    case = accepted_by_tec_s1().completed(at("16:00"), first_visit=False)
    assert case.broken() == [("not_fixed_first_visit", "TEC-S1", 1)]


# --- complaints ------------------------------------------------------------------------------------
def test_a_complaint_upheld_against_the_technician_is_a_violation_of_its_category():
    case = accepted_by_tec_s1().completed(at("11:00")) \
        .complaint_filed(at("09:00", "2026-10-31"), "overcharge", technician="TEC-S1") \
        .complaint_resolved(at("12:00", "2026-10-31"), accountable="TEC-S1")
    [v] = violations(case.entries, RULES)
    assert (v.rule, v.technician_id, v.time) == ("overcharge", "TEC-S1", parse_ms(at("12:00", "2026-10-31")))
    assert v.reason == "complaint CMP-1 (overcharge) upheld against the technician: refunded"


def test_a_complaint_the_outlet_answers_for_costs_the_technician_no_points():
    case = accepted_by_tec_s1().completed(at("11:00")) \
        .complaint_filed(at("09:00", "2026-10-31"), "overcharge", technician="TEC-S1") \
        .complaint_resolved(at("12:00", "2026-10-31"), accountable="OUT-S")
    assert case.broken() == []


def test_a_complaint_naming_no_technician_is_held_against_the_one_who_completed_the_job():
    case = accepted_by_tec_s1().completed(at("11:00")) \
        .complaint_filed(at("09:00", "2026-10-31"), "attitude") \
        .complaint_resolved(at("12:00", "2026-10-31"), accountable="TEC-S1")
    assert case.broken() == [("attitude", "TEC-S1", 1)]


def test_a_resolution_of_a_complaint_never_filed_is_ignored():
    case = accepted_by_tec_s1().completed(at("11:00")) \
        .complaint_resolved(at("12:00", "2026-10-31"), accountable="TEC-S1", complaint_id="CMP-404")
    assert case.broken() == []


def test_a_filed_complaint_counts_nothing_until_it_is_resolved():
    case = accepted_by_tec_s1().completed(at("11:00")) \
        .complaint_filed(at("09:00", "2026-10-31"), "attitude", technician="TEC-S1")
    assert case.broken() == []


# --- the walk ---------------------------------------------------------------------------------------
def test_the_rules_find_the_same_violations_whatever_order_the_facts_arrive_in():
    case = accepted_by_tec_s1().appointment(at("08:30"), at("10:00")).arrived(at("10:30"), "TEC-S1") \
        .completed(at("13:00"), first_visit=False, five_ones={"gift": False}) \
        .complaint_filed(at("09:00", "2026-10-31"), "attitude", technician="TEC-S1") \
        .complaint_resolved(at("12:00", "2026-10-31"), accountable="TEC-S1")
    expected = violations(case.entries, RULES)
    assert sorted(v.rule for v in expected) == ["attitude", "non_standard_service", "not_fixed_first_visit",
                                                "promise_broken"]
    rng = random.Random(7)
    for _ in range(20):
        shuffled = [list(e) for e in case.entries]
        rng.shuffle(shuffled)
        # positions follow arrival; world time decides the walk
        for position, e in enumerate(shuffled, start=1):
            e[1] = position
        assert violations(shuffled, RULES) == expected


# --- a repeat repair ---------------------------------------------------------------------------------
COMPLETED = parse_ms(at("11:00", "2026-10-01"))


def test_the_same_product_back_within_30_days_is_a_repeat_repair_of_the_earlier_technician():
    back = parse_ms(at("08:10", "2026-10-20"))
    v = repeat_violation("RF2607123", "CASE-1", COMPLETED, "TEC-S1", back, RULES)
    assert v == Violation("repeat_repair", "TEC-S1", back,
                          "product RF2607123 back with a fault 18.9 days after CASE-1 was completed")


def test_a_product_back_exactly_30_days_later_is_still_a_repeat_and_a_moment_later_is_not():
    assert repeat_violation("S", "CASE-1", COMPLETED, "TEC-S1", COMPLETED + 30 * DAY, RULES) is not None
    assert repeat_violation("S", "CASE-1", COMPLETED, "TEC-S1", COMPLETED + 30 * DAY + 1, RULES) is None


def test_a_registration_older_than_the_completion_is_no_repeat():
    assert repeat_violation("S", "CASE-1", COMPLETED, "TEC-S1", COMPLETED - HOUR, RULES) is None


def test_the_repeat_window_is_configuration():
    rules = PermitRules.from_mapping({"repeat_within": "7d"})
    assert rules.repeat_within == 7 * DAY
    assert repeat_violation("S", "CASE-1", COMPLETED, "TEC-S1", COMPLETED + 6 * DAY, rules) is not None
    assert repeat_violation("S", "CASE-1", COMPLETED, "TEC-S1", COMPLETED + 8 * DAY, rules) is None


# --- the points ledger ---------------------------------------------------------------------------------
def fresh_permit() -> Permit:
    return Permit.issue("TEC-S1", RULES, parse_ms(at("09:00", "2026-09-02")))


def permit_at(balance: int, status: str = "normal") -> Permit:
    return Permit("TEC-S1", balance, status, parse_ms(at("09:00", "2026-09-02")))


def test_a_new_permit_starts_normal_with_twelve_points():
    p = fresh_permit()
    assert (p.balance, p.status, p.period_start) == (12, "normal", parse_ms(at("09:00", "2026-09-02")))


def test_a_deduction_is_one_ledger_entry_naming_the_case_the_rule_and_the_balance():
    p = fresh_permit()
    entries = p.change(RULES, "promise_broken", -3, "late", "CASE-1")
    assert entries == [("permit.points_changed", {"rule": "promise_broken", "points": -3, "balance": 9,
                                                  "status": "normal", "reason": "late", "case_id": "CASE-1"})]
    assert (p.balance, p.status) == (9, "normal")


def test_falling_to_six_points_puts_the_permit_on_warning():
    p = permit_at(9)
    entries = p.change(RULES, "promise_broken", -3, "late", "CASE-2")
    assert [t for t, _ in entries] == ["permit.points_changed", "permit.status_changed"]
    assert entries[1][1] == {"previous": "normal", "status": "warning", "balance": 6, "rule": "promise_broken",
                             "reason": "balance 6 is at or below 6: warned, fewer dispatched jobs",
                             "case_id": "CASE-2"}
    assert p.status == "warning"


def test_falling_to_zero_or_below_eliminates_the_permit_and_the_balance_may_go_negative():
    p = permit_at(2, "warning")
    entries = p.change(RULES, "repeat_repair", -3, "back in a week", "CASE-3")
    assert entries[0][1]["balance"] == -1 and entries[0][1]["status"] == "eliminated"
    assert entries[1][1]["reason"] == "balance -1 is at or below 0: no jobs until retrained"
    assert (entries[1][1]["previous"], entries[1][1]["status"]) == ("warning", "eliminated")


def test_a_deduction_that_stays_in_the_same_band_changes_no_status():
    p = permit_at(5, "warning")
    assert [t for t, _ in p.change(RULES, "attitude", -2, "rude", "CASE-4")] == ["permit.points_changed"]


def test_praise_adds_points_but_never_above_the_maximum():
    p = permit_at(11)
    [(_, first)] = p.change(RULES, "delight", 2, "customer delight", "CASE-5")
    assert (first["points"], first["balance"], first["reason"]) == (1, 12, "customer delight (capped at 12 points)")
    [(_, second)] = p.change(RULES, "improvement", 1, "a small improvement", None)
    assert (second["points"], second["balance"]) == (0, 12)
    assert "case_id" not in second


def test_praise_that_lifts_a_warned_permit_above_six_puts_it_back_to_normal():
    p = permit_at(6, "warning")
    entries = p.change(RULES, "delight", 1, "customer delight", "CASE-6")
    assert entries[1][1]["reason"] == "balance 7 is above 6: back to normal"
    assert p.status == "normal"


def test_praise_does_not_reinstate_an_eliminated_permit():
    p = permit_at(0, "eliminated")
    entries = p.change(RULES, "delight", 1, "customer delight", "CASE-7")
    assert entries == [("permit.points_changed", {"rule": "delight", "points": 1, "balance": 1,
                                                  "status": "eliminated", "reason": "customer delight",
                                                  "case_id": "CASE-7"})]


def test_the_yearly_review_restores_full_points_and_lifts_a_warning():
    p = permit_at(4, "warning")
    review_at = parse_ms(at("09:00", "2027-09-02"))
    entries = p.review(RULES, review_at)
    assert entries[0] == ("permit.reviewed", {"period_start": "2026-09-02T09:00:00.000Z",
                                              "period_end": "2027-09-02T09:00:00.000Z", "balance_before": 4,
                                              "balance": 12, "status": "normal"})
    assert entries[1][0] == "permit.status_changed"
    assert (entries[1][1]["previous"], entries[1][1]["status"], entries[1][1]["rule"]) == (
        "warning", "normal", "yearly_review")
    assert (p.balance, p.status, p.period_start) == (12, "normal", review_at)


def test_the_yearly_review_leaves_an_eliminated_permit_eliminated_with_its_balance():
    p = permit_at(-2, "eliminated")
    entries = p.review(RULES, parse_ms(at("09:00", "2027-09-02")))
    assert [t for t, _ in entries] == ["permit.reviewed"]
    assert (entries[0][1]["balance"], entries[0][1]["status"]) == (-2, "eliminated")
    assert (p.balance, p.status) == (-2, "eliminated")


def test_retraining_reissues_an_eliminated_permit_with_full_points():
    p = permit_at(-1, "eliminated")
    passed = parse_ms(at("16:00", "2026-10-20"))
    [(kind, data)] = p.retrain(RULES, passed, "OUT-C")
    assert kind == "permit.status_changed"
    assert data == {"previous": "eliminated", "status": "normal", "balance": 12, "rule": "retrained",
                    "reason": "retrained and passed the exam at OUT-C: permit reissued with 12 points"}
    assert (p.balance, p.status, p.period_start) == (12, "normal", passed)


def test_retraining_a_technician_whose_permit_stands_changes_nothing():
    p = permit_at(5, "warning")
    assert p.retrain(RULES, parse_ms(at("16:00", "2026-10-20")), "OUT-C") == []
    assert (p.balance, p.status) == (5, "warning")


# --- the rules as configuration ---------------------------------------------------------------------
def test_point_values_and_thresholds_are_configuration_merged_over_the_defaults():
    rules = PermitRules.from_mapping({"deductions": {"promise_broken": 4}, "warning_at": 4, "start_points": 10,
                                      "max_points": 15})
    assert rules.deductions["promise_broken"] == 4 and rules.deductions["overcharge"] == 3
    assert (rules.warning_at, rules.start_points, rules.max_points) == (4, 10, 15)
    assert rules.fingerprint() != RULES.fingerprint()
    assert PermitRules.from_mapping({}).fingerprint() == RULES.fingerprint()
    assert rules.status_for(5, "normal") == "normal" and rules.status_for(4, "normal") == "warning"


def test_the_rules_describe_their_durations_in_hours_or_days():
    rules = PermitRules.from_mapping({"additions": {"delight": 2}, "review_every": "180d"})
    assert rules.additions == {"delight": 2, "improvement": 1} and rules.review_every == 180 * DAY
    described = rules.describe()
    assert (described["review_every"], described["promise_grace"], described["repeat_within"]) == ("180d", "2h", "30d")


@pytest.mark.parametrize(("given", "words"), [
    ('{"deductions": {"lateness": 2}}', "deductions.lateness is not a rule"),
    ('{"additions": {"delight": -1}}', "additions.delight must be points >= 0"),
    ('{"deductions": {"attitude": true}}', "deductions.attitude must be points >= 0"),
    ('{"warning_at": "six"}', "warning_at must be a whole number"),
    ('{"warning_at": 0}', "eliminated_at < warning_at < start_points <= max_points"),
    ('{"start_points": 13}', "start_points <= max_points"),
    ('{"promise_grace": "soon"}', "promise_grace: not a duration"),
    ('{"colour": "red"}', "unknown setting 'colour'"),
    ('["promise_broken"]', "must be a JSON object"),
])
def test_permit_rules_that_cannot_be_used_are_refused_saying_why(given: str, words: str):
    with pytest.raises(PermitRulesError, match=words):
        PermitRules.from_mapping(json.loads(given))
