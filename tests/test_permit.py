"""The technicians' permit, kept by the engine like a driving license, on both databases.

Given a case's events, when they are submitted, then the technician's stream holds the
points changes, each naming the case and the rule, and status changes at the thresholds."""

from __future__ import annotations

import pytest

from closedloop.domain.permit import PermitRules, PermitRulesError
from closedloop.reactors.network import NetworkConfig
from closedloop.app.settings import SettingsError, load_settings, permit_rules_text

from conftest import event
from network_fixtures import at, decisions, ms, network_engine, register

OUTLET = "/outlet/OUT-S"


def accepted(case_id: str, time: str, technician: str = "TEC-S1") -> dict:
    return event("dispatch.accepted", case_id, time, {"outlet_id": "OUT-S", "technician_id": technician}, source=OUTLET)


def completed(case_id: str, time: str, technician: str = "TEC-S1", first_visit: bool = True, **extra) -> dict:
    data = {"technician_id": technician, "fault_code": "E1", "cause": "wear", "first_visit": first_visit, **extra}
    return event("service.completed", case_id, time, data, source=OUTLET)


def appointment(case_id: str, time: str, when: str, agreed: bool = True) -> dict:
    return event("appointment.set", case_id, time, {"at": when, "customer_agreed": agreed}, source=OUTLET)


def ledger(engine, technician: str = "TEC-S1") -> list[tuple]:
    return [(f.data.get("case_id"), f.data["rule"], f.data["points"], f.data["balance"], f.data["status"])
            for f in decisions(engine, f"technician:{technician}", "permit.points_changed")]


@pytest.fixture
def engine(database_url):
    e = network_engine(database_url, auto=False)
    yield e
    e.close()


def test_completing_after_the_agreed_appointment_is_a_broken_promise(engine):
    engine.submit([register("CASE-1", at("08:10")), accepted("CASE-1", at("08:20")),
                   appointment("CASE-1", at("08:30"), at("10:00")), completed("CASE-1", at("12:30"))])
    assert ledger(engine) == [("CASE-1", "promise_broken", -3, 9, "normal")]
    [change] = decisions(engine, "technician:TEC-S1")
    assert change.time_ms == ms(at("12:30"))
    assert change.data["reason"].startswith("completed 2.5 h after the appointment agreed for 2026-10-30T10:00:00")


def test_completing_within_the_grace_keeps_the_promise(engine):
    engine.submit([register("CASE-1", at("08:10")), accepted("CASE-1", at("08:20")),
                   appointment("CASE-1", at("08:30"), at("10:00")), completed("CASE-1", at("11:45"))])
    assert ledger(engine) == []


def test_moving_an_appointment_without_the_customers_agreement_breaks_the_promise(engine):
    engine.submit([register("CASE-1", at("08:10")), accepted("CASE-1", at("08:20")),
                   appointment("CASE-1", at("08:30"), at("10:00")),
                   appointment("CASE-1", at("09:30"), at("16:00"), agreed=False)])
    [entry] = ledger(engine)
    assert entry[:3] == ("CASE-1", "promise_broken", -3)
    assert "moved to 2026-10-30T16:00:00.000Z without the customer's agreement" in \
        decisions(engine, "technician:TEC-S1")[0].data["reason"]


def test_a_missing_item_of_the_five_ones_costs_a_point_each(engine):
    five = {"permit": True, "shoe_covers": False, "pad_cloth": True, "rag": False, "gift": True}
    engine.submit([register("CASE-1", at("08:10")), accepted("CASE-1", at("08:20")),
                   completed("CASE-1", at("11:00"), five_ones=five)])
    assert ledger(engine) == [("CASE-1", "non_standard_service", -2, 10, "normal")]
    assert decisions(engine, "technician:TEC-S1")[0].data["reason"].endswith("shoe covers, rag")


def test_not_fixed_on_the_first_visit_is_charged_to_the_technician_who_came_first(engine):
    engine.submit([register("CASE-1", at("08:10")), accepted("CASE-1", at("08:20")),
                   event("visit.arrived", "CASE-1", at("10:00"), {"technician_id": "TEC-S1"}, source=OUTLET),
                   event("visit.arrived", "CASE-1", at("15:00"), {"technician_id": "TEC-C1"}, source="/outlet/OUT-C"),
                   completed("CASE-1", at("16:00"), technician="TEC-C1", first_visit=False)])
    assert ledger(engine) == [("CASE-1", "not_fixed_first_visit", -2, 10, "normal")]
    assert ledger(engine, "TEC-C1") == []


def test_an_overcharge_complaint_deducts_only_when_upheld_against_the_technician(engine):
    story = [register("CASE-1", at("08:10")), accepted("CASE-1", at("08:20")), completed("CASE-1", at("11:00")),
             event("complaint.filed", "CASE-1", at("09:00", "2026-10-31"),
                   {"complaint_id": "CMP-1", "category": "overcharge", "technician_id": "TEC-S1"}),
             event("complaint.filed", "CASE-1", at("09:05", "2026-10-31"),
                   {"complaint_id": "CMP-2", "category": "overcharge", "technician_id": "TEC-S1"})]
    engine.submit(story)
    assert ledger(engine) == []
    engine.submit([event("complaint.resolved", "CASE-1", at("12:00", "2026-10-31"),
                         {"complaint_id": "CMP-2", "resolution": "price list error", "accountable": "OUT-S"},
                         source="/hq/service-quality")])
    assert ledger(engine) == []  # the outlet answers for it, not the technician
    engine.submit([event("complaint.resolved", "CASE-1", at("12:00", "2026-10-31"),
                         {"complaint_id": "CMP-1", "resolution": "refunded", "accountable": "TEC-S1"},
                         source="/hq/service-quality")])
    assert ledger(engine) == [("CASE-1", "overcharge", -3, 9, "normal")]


def test_the_same_product_back_within_30_days_is_a_repeat_repair_of_the_earlier_technician(engine):
    engine.submit([register("CASE-1", at("08:10", "2026-10-01"), serial="RF2607123"),
                   accepted("CASE-1", at("08:20", "2026-10-01")), completed("CASE-1", at("11:00", "2026-10-01")),
                   register("CASE-2", at("08:10", "2026-10-20"), serial="RF2607123"),
                   register("CASE-3", at("08:10", "2026-12-01"), serial="RF2607123")])
    assert ledger(engine) == [("CASE-2", "repeat_repair", -3, 9, "normal")]
    assert "18.9 days after CASE-1 was completed" in decisions(engine, "technician:TEC-S1")[0].data["reason"]


def test_praise_adds_points_up_to_the_maximum(engine):
    engine.submit([register("CASE-1", at("08:10")), accepted("CASE-1", at("08:20")),
                   completed("CASE-1", at("11:00"), first_visit=False),
                   event("technician.praised", "TEC-S1", at("09:00", "2026-10-31"),
                         {"case_id": "CASE-1", "kind": "delight"}, source="/hq/service-quality"),
                   event("technician.praised", "TEC-S1", at("09:00", "2026-11-01"),
                         {"case_id": "CASE-9", "kind": "improvement"}, source="/hq/service-quality"),
                   event("technician.praised", "TEC-S1", at("09:00", "2026-11-02"),
                         {"case_id": "CASE-8", "kind": "improvement"}, source="/hq/service-quality")])
    assert ledger(engine) == [("CASE-1", "not_fixed_first_visit", -2, 10, "normal"),
                              ("CASE-1", "delight", 1, 11, "normal"), ("CASE-9", "improvement", 1, 12, "normal"),
                              ("CASE-8", "improvement", 0, 12, "normal")]
    assert decisions(engine, "technician:TEC-S1")[-1].data["reason"].endswith("(capped at 12 points)")


def broken_promise_case(n: int) -> list[dict]:
    case = f"CASE-{n}"
    day = f"2026-10-{n:02d}"
    return [register(case, at("08:10", day)), accepted(case, at("08:20", day)),
            appointment(case, at("08:30", day), at("10:00", day)), completed(case, at("14:00", day))]


def test_thresholds_move_the_permit_to_warning_then_eliminated_until_retrained(engine):
    engine.submit(broken_promise_case(1) + broken_promise_case(2))  # 12 - 3 - 3 = 6: warning
    statuses = [(f.data["previous"], f.data["status"], f.data["case_id"], f.data["rule"])
                for f in decisions(engine, "technician:TEC-S1", "permit.status_changed")]
    assert statuses == [("normal", "warning", "CASE-2", "promise_broken")]
    engine.submit(broken_promise_case(3) + broken_promise_case(4))  # 3, then 0: eliminated
    assert ledger(engine)[-1] == ("CASE-4", "promise_broken", -3, 0, "eliminated")
    engine.submit([event("technician.praised", "TEC-S1", at("09:00", "2026-10-05"),
                         {"case_id": "CASE-4", "kind": "delight"}, source="/hq/service-quality")])
    assert ledger(engine)[-1] == ("CASE-4", "delight", 1, 1, "eliminated")  # praise does not reinstate
    engine.submit([event("technician.retrained", "TEC-S1", at("17:00", "2026-10-20"),
                         {"exam_passed_at": at("16:00", "2026-10-20"), "center_id": "OUT-C"}, source="/center/OUT-C")])
    last = decisions(engine, "technician:TEC-S1", "permit.status_changed")[-1]
    assert (last.data["previous"], last.data["status"], last.data["balance"], last.data["rule"]) == (
        "eliminated", "normal", 12, "retrained")


def test_an_eliminated_technician_gets_no_work_from_the_dispatcher(database_url):
    engine = network_engine(database_url, auto=True)
    for n in (1, 2, 3, 4):
        engine.submit([register(f"CASE-{n}", at("08:10", f"2026-10-{n:02d}")),
                       *broken_promise_case(n)[1:]])
    engine.submit([register(f"CASE-{n}", at(f"09:{n:02d}", "2026-10-05")) for n in range(10, 16)])
    named = [f.data.get("technician_id") for n in range(10, 16) for f in decisions(engine, f"case:CASE-{n}")]
    assert "TEC-S1" not in named and len(named) == 6
    engine.close()


def test_the_same_violation_shown_twice_is_deducted_once(engine):
    five = {"permit": True, "shoe_covers": False, "pad_cloth": True, "rag": True, "gift": True}
    engine.submit([register("CASE-1", at("08:10")), accepted("CASE-1", at("08:20")),
                   completed("CASE-1", at("11:00"), five_ones=five),
                   event("complaint.filed", "CASE-1", at("09:00", "2026-10-31"),
                         {"complaint_id": "CMP-1", "category": "non_standard_service", "technician_id": "TEC-S1"}),
                   event("complaint.resolved", "CASE-1", at("12:00", "2026-10-31"),
                         {"complaint_id": "CMP-1", "resolution": "apologised", "accountable": "TEC-S1"})])
    engine.submit([completed("CASE-1", at("11:00"), five_ones=five)])  # a resend changes nothing
    assert ledger(engine) == [("CASE-1", "non_standard_service", -1, 11, "normal")]


def test_the_yearly_review_starts_a_new_period_with_full_points(database_url):
    now = [ms("2026-10-02T15:00:00Z")]  # the cases are sent as they happen
    engine = network_engine(database_url, clock=now, auto=False)
    engine.submit(broken_promise_case(1) + broken_promise_case(2))
    assert engine.tick() == 0
    now[0] = ms("2027-09-03T00:00:00Z")  # a year after the technicians were registered on 2026-09-02
    engine.tick()
    [review] = decisions(engine, "technician:TEC-S1", "permit.reviewed")
    assert review.data == {"period_start": "2026-09-02T09:00:00.000Z", "period_end": "2027-09-02T09:00:00.000Z",
                           "balance_before": 6, "balance": 12, "status": "normal"}
    back = decisions(engine, "technician:TEC-S1", "permit.status_changed")[-1]
    assert (back.data["previous"], back.data["status"], back.data["rule"]) == ("warning", "normal", "yearly_review")
    assert len(decisions(engine, "technician:TEC-A1", "permit.reviewed")) == 1
    assert engine.tick() == 0
    engine.close()


@pytest.mark.fast
def test_permit_rules_are_configuration_with_clear_errors():
    rules = load_settings(env={"CLOSEDLOOP_PERMIT_RULES": '{"deductions": {"promise_broken": 4}, "warning_at": 4}'}).permit_policy()
    assert rules.deductions["promise_broken"] == 4 and rules.deductions["overcharge"] == 3 and rules.warning_at == 4
    assert rules.fingerprint() != PermitRules().fingerprint()
    for bad, words in [('{"deductions": {"lateness": 2}}', "deductions.lateness is not a rule"),
                       ('{"warning_at": "six"}', "warning_at must be a whole number"),
                       ('{"warning_at": 0}', "eliminated_at < warning_at"),
                       ("{not json", "not valid JSON"), ("/no/such/rules.json", "no file")]:
        with pytest.raises(SettingsError, match=words) as err:
            load_settings(env={"CLOSEDLOOP_PERMIT_RULES": bad})
        assert str(err.value).startswith("CLOSEDLOOP_PERMIT_RULES: ")
        with pytest.raises(PermitRulesError, match=words):
            permit_rules_text(bad)


def test_changed_point_values_apply_to_what_happens_next_not_to_the_ledger_already_kept(database_url):
    engine = network_engine(database_url, auto=False)
    engine.submit(broken_promise_case(1))
    engine.close()
    stricter = NetworkConfig(permit=PermitRules.from_mapping({"deductions": {"promise_broken": 5}}))
    engine = network_engine(database_url, auto=False, config=stricter)
    engine.submit(broken_promise_case(2))
    assert ledger(engine) == [("CASE-1", "promise_broken", -3, 9, "normal"),
                              ("CASE-2", "promise_broken", -5, 4, "warning")]
    engine.close()
