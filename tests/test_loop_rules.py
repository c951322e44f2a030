"""The four nothing-missed, as rules: given facts of a case, when assessed at a moment,
then each step is done, open or overdue, with its owner."""

from __future__ import annotations

import random

import pytest

from closedloop.contract.events import validate
from closedloop.domain.facts import Fact, parse_ms
from closedloop.domain.loop import CaseFile, assess, lite
from closedloop.domain.policy import LoopPolicy, parse_duration
from closedloop.app.settings import load_settings

from conftest import event, registration

pytestmark = pytest.mark.fast

POLICY = LoopPolicy()
CALL_AT = "2026-10-30T08:00:00Z"


def fact(type_: str, subject: str, time: str, data: dict, position: int) -> Fact:
    f = validate(event(type_, subject, time, data))
    assert isinstance(f, Fact), f
    return Fact(f.type, f.subject, f.source, f.id, f.time_ms, f.data, None, position)


def given(*facts: tuple[str, str, dict], call_at: str | None = CALL_AT, intent: str = "repair") -> CaseFile:
    """A case file for CASE-1 holding these (type, time, data) facts, in the order given."""
    file = CaseFile("CASE-1")
    if call_at:
        file.call = ["CALL-1", parse_ms(call_at), intent, "agent-7"]
    for position, (type_, time, data) in enumerate(facts, start=1):
        if type_.startswith("feedback."):
            f = fact(type_, "FB-1", time, data, position)
            file.add_feedback("FB-1", [[f.time_ms, position, f.type, lite(f)]])
        else:
            file.add(fact(type_, "CASE-1", time, data, position))
    return file


def steps_at(file: CaseFile, moment: str) -> dict[str, str]:
    a = assess(file, POLICY, upto=parse_ms(moment))
    return {stage: st.status for stage, st in a.steps.items()}


def leaked_at(file: CaseFile, moment: str) -> set[str]:
    """Stages leaked at a moment, judged from the spans as the views do."""
    t = parse_ms(moment)
    return {s.stage for s in assess(file, POLICY).spans
            if s.opened <= t and (s.closed is None or s.closed > t) and s.due <= t}


REGISTERED = ("case.registered", "2026-10-30T08:10:00Z", registration("CALL-1"))
COMPLETED_DESIGN = ("service.completed", "2026-10-31T09:00:00Z",
                    {"technician_id": "TEC-1", "fault_code": "E1", "cause": "design", "first_visit": True})
COMPLETED_WEAR = ("service.completed", "2026-10-31T09:00:00Z",
                  {"technician_id": "TEC-1", "fault_code": "E1", "cause": "wear", "first_visit": True})
REACHED = ("callback.made", "2026-10-31T12:00:00Z", {"agent_id": "CB-1", "reached": True,
                                                     "satisfaction": "satisfied"})


def test_a_call_without_a_case_leaks_at_recorded_after_30_minutes():
    file = given()
    assert leaked_at(file, "2026-10-30T08:29:00Z") == set()
    assert leaked_at(file, "2026-10-30T08:30:00Z") == {"recorded"}
    assert steps_at(file, "2026-10-30T08:31:00Z")["recorded"] == "overdue"


def test_a_case_registered_in_time_is_recorded():
    file = given(REGISTERED)
    assert steps_at(file, "2026-10-30T09:00:00Z")["recorded"] == "done"
    assert leaked_at(file, "2026-10-30T09:00:00Z") == set()


def test_a_case_missing_the_address_stays_recorded_incomplete_until_amended():
    file = given(("case.registered", "2026-10-30T08:10:00Z", registration("CALL-1", address="")))
    assert leaked_at(file, "2026-10-30T08:45:00Z") == {"recorded"}
    file = given(("case.registered", "2026-10-30T08:10:00Z", registration("CALL-1", address=None)),
                 ("case.amended", "2026-10-30T09:00:00Z", {"customer": {"address": "2 Haier Road"}}))
    assert leaked_at(file, "2026-10-30T08:45:00Z") == {"recorded"}
    assert leaked_at(file, "2026-10-30T09:00:00Z") == set()
    assert steps_at(file, "2026-10-30T09:30:00Z")["recorded"] == "done"


def test_a_case_not_completed_within_48_hours_leaks_at_handled_owned_by_its_outlet():
    file = given(REGISTERED, ("case.dispatched", "2026-10-30T08:20:00Z", {"outlet_id": "OUT-1", "by": "agent"}))
    assert leaked_at(file, "2026-11-01T08:09:00Z") == set()
    assert leaked_at(file, "2026-11-01T08:10:00Z") == {"handled"}
    a = assess(file, POLICY, upto=parse_ms("2026-11-01T09:00:00Z"))
    assert a.steps["handled"].owner == "outlet:OUT-1"


def test_an_agreed_appointment_replaces_the_48_hours():
    appointment = ("appointment.set", "2026-10-30T09:00:00Z", {"at": "2026-11-03T10:00:00Z", "customer_agreed": True})
    file = given(REGISTERED, appointment)
    assert leaked_at(file, "2026-11-02T00:00:00Z") == set()
    grace_end = parse_ms("2026-11-03T10:00:00Z") + POLICY.appointment_grace
    a = assess(file, POLICY)
    assert [s.due for s in a.spans if s.stage == "handled"][-1] == grace_end


def test_an_appointment_the_customer_did_not_agree_to_is_no_promise():
    appointment = ("appointment.set", "2026-10-30T09:00:00Z", {"at": "2026-11-05T10:00:00Z", "customer_agreed": False})
    file = given(REGISTERED, appointment)
    assert leaked_at(file, "2026-11-01T08:10:00Z") == {"handled"}


def test_phone_guidance_needs_a_working_follow_up_within_2_hours():
    guided = ("guidance.given", "2026-10-30T09:00:00Z", {"technician_id": "TEC-1", "finding": "misuse"})
    file = given(REGISTERED, guided)
    assert leaked_at(file, "2026-10-30T10:59:00Z") == set()
    assert leaked_at(file, "2026-10-30T11:00:00Z") == {"handled"}
    file = given(REGISTERED, guided, ("follow_up.made", "2026-10-30T10:30:00Z", {"working": True}))
    steps = steps_at(file, "2026-11-10T00:00:00Z")
    assert steps["handled"] == "done" and steps["reviewed"] == "done"
    assert leaked_at(file, "2026-11-10T00:00:00Z") == set()


def test_a_follow_up_that_finds_it_still_broken_sends_the_case_back_to_dispatch():
    file = given(REGISTERED,
                 ("guidance.given", "2026-10-30T09:00:00Z", {"technician_id": "TEC-1", "finding": "misreport"}),
                 ("follow_up.made", "2026-10-30T10:30:00Z", {"working": False}))
    assert steps_at(file, "2026-10-30T12:00:00Z")["handled"] == "open"
    assert leaked_at(file, "2026-11-01T08:10:00Z") == {"handled"}


def test_a_completed_case_needs_a_reached_callback_within_24_hours():
    unreached = ("callback.made", "2026-10-31T10:00:00Z", {"agent_id": "CB-1", "reached": False})
    file = given(REGISTERED, COMPLETED_WEAR, unreached)
    assert leaked_at(file, "2026-11-01T08:59:00Z") == set()
    assert leaked_at(file, "2026-11-01T09:00:00Z") == {"reviewed"}
    file = given(REGISTERED, COMPLETED_WEAR, unreached, REACHED)
    assert steps_at(file, "2026-11-10T00:00:00Z")["reviewed"] == "done"
    assert steps_at(file, "2026-11-10T00:00:00Z")["fed_back"] == "not_required"


def test_a_design_fault_must_be_acknowledged_by_design_within_72_hours():
    routed = ("feedback.routed", "2026-10-31T10:00:00Z",
              {"case_id": "CASE-1", "department": "design", "summary": "door seal"})
    acked = ("feedback.acknowledged", "2026-11-01T10:00:00Z", {"owner": "Li Na", "corrective_action": "new seal"})
    file = given(REGISTERED, COMPLETED_DESIGN, REACHED, routed)
    assert leaked_at(file, "2026-11-03T08:59:00Z") == set()
    assert leaked_at(file, "2026-11-03T09:00:00Z") == {"fed_back"}
    assert assess(file, POLICY, upto=parse_ms("2026-11-03T09:00:00Z")).steps["fed_back"].owner == "department:design"
    file = given(REGISTERED, COMPLETED_DESIGN, REACHED, routed, acked)
    assert steps_at(file, "2026-11-10T00:00:00Z")["fed_back"] == "done"


def test_feedback_acknowledged_by_the_wrong_department_does_not_close_the_loop():
    routed = ("feedback.routed", "2026-10-31T10:00:00Z", {"case_id": "CASE-1", "department": "sales", "summary": "x"})
    acked = ("feedback.acknowledged", "2026-11-01T10:00:00Z", {"owner": "Zhao", "corrective_action": "y"})
    file = given(REGISTERED, COMPLETED_DESIGN, REACHED, routed, acked)
    assert leaked_at(file, "2026-11-04T00:00:00Z") == {"fed_back"}


def test_facts_arriving_in_any_order_give_the_same_standing():
    facts = [REGISTERED, ("case.dispatched", "2026-10-30T08:20:00Z", {"outlet_id": "OUT-1", "by": "agent"}),
             ("dispatch.accepted", "2026-10-30T08:40:00Z", {"outlet_id": "OUT-1", "technician_id": "TEC-1"}),
             COMPLETED_DESIGN, REACHED,
             ("feedback.routed", "2026-10-31T10:00:00Z", {"case_id": "CASE-1", "department": "design", "summary": "x"}),
             ("feedback.acknowledged", "2026-11-05T10:00:00Z", {"owner": "Li", "corrective_action": "y"})]
    reference = assess(given(*facts), POLICY).spans
    rng = random.Random(3)
    for _ in range(10):
        shuffled = facts[:]
        rng.shuffle(shuffled)
        # positions follow arrival; world time decides the walk
        assert sorted(assess(given(*shuffled), POLICY).spans, key=repr) == sorted(reference, key=repr)


def test_contradictions_are_flagged_not_dropped():
    file = given(REGISTERED, ("case.cancelled", "2026-10-30T09:00:00Z", {"reason": "customer fixed it"}),
                 COMPLETED_WEAR)
    a = assess(file, POLICY)
    assert any("completed after the case was cancelled" in x["anomaly"] for x in a.anomalies)
    file = given(REGISTERED, ("case.dispatched", "2026-10-30T08:20:00Z", {"outlet_id": "OUT-1", "by": "agent"}),
                 ("dispatch.accepted", "2026-10-30T08:40:00Z", {"outlet_id": "OUT-2", "technician_id": "TEC-9"}))
    assert any("accepted by OUT-2 but dispatched to OUT-1" in x["anomaly"] for x in assess(file, POLICY).anomalies)


def test_a_complaint_call_about_a_case_is_recorded_by_a_complaint_filed_on_it():
    file = given(REGISTERED, COMPLETED_WEAR, REACHED)
    file.related_calls["CALL-9"] = [parse_ms("2026-11-02T08:00:00Z"), "complaint", "agent-3"]
    assert leaked_at(file, "2026-11-02T08:30:00Z") == {"recorded"}
    file.add(fact("complaint.filed", "CASE-1", "2026-11-02T08:20:00Z",
                  {"complaint_id": "CMP-1", "category": "attitude"}, 99))
    assert leaked_at(file, "2026-11-02T08:30:00Z") == set()
    assert assess(file, POLICY).complained == parse_ms("2026-11-02T08:20:00Z")


def test_deadlines_are_configuration():
    policy = load_settings(env={"CLOSEDLOOP_HANDLE_WITHIN": "24h", "CLOSEDLOOP_RECORD_WITHIN": "15m"}).loop_policy()
    assert policy.handle_within == parse_duration("1d") and policy.record_within == 15 * 60_000
    assert policy.fingerprint() != LoopPolicy().fingerprint()
