"""The loop's rules that tests/test_loop_rules.py leaves to the engine: calls that open no
case, feedback about no case, a feedback item's life, the marks the three controls count
and a case waiting for a part. No storage: given facts, when assessed, then these spans.
"""

from __future__ import annotations

from typing import Any

import pytest

from closedloop.contract.events import validate
from closedloop.domain.facts import Fact, parse_ms
from closedloop.domain.feedback import ACKNOWLEDGED, ACTING, AWAITING_OWNER, REOPENED, VERIFIED, FeedbackItem
from closedloop.domain.loop import CaseFile, Span, assess, call_spans, feedback_spans, lite
from closedloop.domain.policy import HOUR, LoopPolicy

from conftest import event, registration

pytestmark = pytest.mark.fast

POLICY = LoopPolicy()


def ms(text: str) -> int:
    return parse_ms(text)


def entry(type_: str, subject: str, time: str, data: dict[str, Any], position: int) -> list[Any]:
    f = validate(event(type_, subject, time, data))
    assert isinstance(f, Fact), f
    return [f.time_ms, position, f.type, lite(f)]


def case_file(*facts: tuple[str, str, dict[str, Any]]) -> CaseFile:
    file = CaseFile("CASE-1")
    file.call = ["CALL-1", ms("2026-10-30T08:00:00Z"), "repair", "agent:A7"]
    file.facts = [entry(t, "CASE-1", time, d, n) for n, (t, time, d) in enumerate(facts, start=1)]
    return file


REGISTERED = ("case.registered", "2026-10-30T08:10:00Z", registration("CALL-1"))


def completed(time: str, cause: str = "wear") -> tuple[str, str, dict[str, Any]]:
    return ("service.completed", time, {"technician_id": "TEC-1", "fault_code": "E1", "cause": cause,
                                        "first_visit": True})


def callback(time: str, satisfaction: str, reached: bool = True) -> tuple[str, str, dict[str, Any]]:
    return ("callback.made", time, {"agent_id": "CB-1", "reached": reached, "satisfaction": satisfaction})


# --- calls with no case yet -------------------------------------------------------------------------
def test_a_repair_call_with_no_case_is_open_at_recorded_for_30_minutes_owned_by_its_seat():
    called = ms("2026-10-30T08:00:00Z")
    assert call_spans("CALL-1", called, "repair", "agent:A7", POLICY) == [
        Span("call:CALL-1", "recorded", called, None, called + 30 * 60_000, "agent:A7")]


def test_a_call_with_no_seat_named_is_owned_by_the_call_center():
    [span] = call_spans("CALL-1", 0, "complaint", None, POLICY)
    assert span.owner == "call-center"


@pytest.mark.parametrize("intent", ["consultation", "suggestion", "purchase_interest", "follow_up"])
def test_a_call_that_asks_for_no_service_owes_no_case(intent: str):
    assert call_spans("CALL-1", 0, intent, "agent:A7", POLICY) == []


# --- feedback about no case --------------------------------------------------------------------------
def fb(type_: str, time: str, data: dict[str, Any], position: int) -> list[Any]:
    return entry(type_, "FB-1", time, data, position)


ROUTED = fb("feedback.routed", "2026-10-30T09:00:00Z", {"department": "design", "summary": "a quieter door",
                                                        "call_id": "CALL-7"}, 1)


def test_feedback_from_a_call_waits_72_hours_for_a_named_owner_of_its_department():
    routed = ms("2026-10-30T09:00:00Z")
    assert feedback_spans("FB-1", [ROUTED], POLICY) == [
        Span("feedback:FB-1", "fed_back", routed, None, routed + 72 * HOUR, "department:design")]


def test_an_acknowledgement_with_a_due_date_makes_the_owner_answer_by_that_date():
    acked = fb("feedback.acknowledged", "2026-10-31T09:00:00Z",
               {"owner": "Li Na", "corrective_action": "new hinge", "due": "2026-11-15T00:00:00Z"}, 2)
    waiting, acting = feedback_spans("FB-1", [ROUTED, acked], POLICY)
    assert (waiting.closed, waiting.owner) == (ms("2026-10-31T09:00:00Z"), "department:design")
    assert (acting.opened, acting.closed, acting.due, acting.owner) == (
        ms("2026-10-31T09:00:00Z"), None, ms("2026-11-15T00:00:00Z"), "Li Na")


def test_an_acknowledgement_without_a_due_date_meets_the_obligation():
    acked = fb("feedback.acknowledged", "2026-10-31T09:00:00Z", {"owner": "Li Na", "corrective_action": "noted"}, 2)
    [waiting] = feedback_spans("FB-1", [ROUTED, acked], POLICY)
    assert waiting.closed == ms("2026-10-31T09:00:00Z")


def test_a_closure_that_could_not_verify_the_action_reopens_the_item_to_its_owner():
    acked = fb("feedback.acknowledged", "2026-10-31T09:00:00Z",
               {"owner": "Li Na", "corrective_action": "new hinge", "due": "2026-11-15T00:00:00Z"}, 2)
    failed = fb("feedback.closed", "2026-11-16T09:00:00Z", {"verified": False}, 3)
    spans = feedback_spans("FB-1", [failed, acked, ROUTED], POLICY)  # in any order
    reopened = spans[-1]
    assert (reopened.opened, reopened.closed, reopened.due, reopened.owner) == (
        ms("2026-11-16T09:00:00Z"), None, ms("2026-11-16T09:00:00Z") + 72 * HOUR, "Li Na")


def test_answers_to_feedback_never_routed_open_nothing():
    acked = fb("feedback.acknowledged", "2026-10-31T09:00:00Z", {"owner": "Li Na", "corrective_action": "x"}, 2)
    assert feedback_spans("FB-1", [acked], POLICY) == []


# --- a feedback item's life ----------------------------------------------------------------------------
def test_a_feedback_item_goes_from_awaiting_an_owner_to_acting_to_reopened_to_verified():
    item = FeedbackItem("manufacturing", routed=0)
    assert item.phase == AWAITING_OWNER and item.obligation(100, 72) == (172, "department:manufacturing")
    assert item.fold(10, "feedback.acknowledged", {"owner": "Zhao Gang", "due": 500}) is None
    assert item.phase == ACTING and item.obligation(100, 72) == (500, "Zhao Gang")
    item.fold(600, "feedback.closed", {"verified": False})
    assert (item.phase, item.reopen_count, item.action_due) == (REOPENED, 1, None)
    assert item.obligation(100, 72) == (672, "Zhao Gang")
    item.fold(700, "feedback.closed", {"verified": True})
    assert (item.phase, item.done, item.closed) == (VERIFIED, 700, 700) and item.obligation(100, 72) is None


def test_an_acknowledgement_must_name_an_owner_and_a_closure_needs_one_first():
    item = FeedbackItem("design", routed=0)
    assert item.fold(5, "feedback.closed", {"verified": True}) == "feedback closed before a named owner acknowledged it"
    assert item.fold(6, "feedback.acknowledged", {"owner": "  "}) == "feedback acknowledged without a named owner"
    assert item.phase == AWAITING_OWNER
    assert item.fold(7, "feedback.acknowledged", {"owner": "Li Na"}) is None and item.phase == ACKNOWLEDGED


def test_routing_the_same_case_twice_to_one_department_is_one_item():
    item = FeedbackItem("design", routed=0, feedback_ids=["FB-1"])
    item.route("FB-2")
    item.route("FB-1")
    assert item.feedback_ids == ["FB-1", "FB-2"]


# --- what the three controls count -----------------------------------------------------------------------
def test_a_case_is_marked_by_its_first_complaint_and_its_first_dissatisfied_callback():
    file = case_file(REGISTERED, completed("2026-10-31T09:00:00Z"),
                     callback("2026-10-31T12:00:00Z", "satisfied", reached=False),
                     callback("2026-10-31T13:00:00Z", "very_dissatisfied"),
                     callback("2026-10-31T14:00:00Z", "dissatisfied"),
                     ("complaint.filed", "2026-11-01T08:00:00Z", {"complaint_id": "C1", "category": "attitude"}),
                     ("complaint.filed", "2026-11-02T08:00:00Z", {"complaint_id": "C2", "category": "other"}))
    a = assess(file, POLICY)
    assert (a.started, a.registered, a.completed) == (ms("2026-10-30T08:00:00Z"), ms("2026-10-30T08:10:00Z"),
                                                      ms("2026-10-31T09:00:00Z"))
    assert a.dissatisfied == ms("2026-10-31T13:00:00Z") and a.complained == ms("2026-11-01T08:00:00Z")


def test_an_unreached_callback_says_nothing_of_satisfaction():
    file = case_file(REGISTERED, completed("2026-10-31T09:00:00Z"),
                     callback("2026-10-31T12:00:00Z", "very_dissatisfied", reached=False))
    assert assess(file, POLICY).dissatisfied is None


def test_a_case_first_leaks_when_its_earliest_step_passes_due_while_open():
    in_time = case_file(REGISTERED, completed("2026-10-31T09:00:00Z"), callback("2026-10-31T12:00:00Z", "satisfied"))
    assert assess(in_time, POLICY).first_leak is None
    late_review = case_file(REGISTERED, completed("2026-10-31T09:00:00Z"),
                            callback("2026-11-02T12:00:00Z", "satisfied"))
    assert assess(late_review, POLICY).first_leak == ms("2026-11-01T09:00:00Z")  # completion + 24 h


# --- a case waiting for a part ------------------------------------------------------------------------------
def part(type_: str, time: str, request: str, **extra: Any) -> tuple[str, str, dict[str, Any]]:
    return (type_, time, {"request_id": request, **extra})


def test_a_case_waiting_for_parts_names_the_first_request_and_how_many_more():
    file = case_file(REGISTERED,
                     part("part.requested", "2026-10-30T09:00:00Z", "PR-2", part_no="P-SEAL", quantity=1,
                          outlet_id="OUT-1"),
                     part("part.requested", "2026-10-30T09:05:00Z", "PR-1", part_no="P-THERM", quantity=1,
                          outlet_id="OUT-1"),
                     part("part.held", "2026-10-30T09:06:00Z", "PR-1", reason="no stock"))
    a = assess(file, POLICY, upto=ms("2026-10-30T10:00:00Z"))
    assert a.steps["handled"].waiting_for == "part P-THERM (request PR-1, held) and 1 more"


def test_a_part_delivered_or_denied_is_no_longer_waited_for():
    file = case_file(REGISTERED,
                     part("part.requested", "2026-10-30T09:00:00Z", "PR-1", part_no="P-THERM", quantity=1,
                          outlet_id="OUT-1"),
                     part("part.shipped", "2026-10-30T11:00:00Z", "PR-1", warehouse_id="WH2-R01"),
                     part("part.delivered", "2026-10-30T15:00:00Z", "PR-1", warehouse_id="WH2-R01"))
    assert assess(file, POLICY, upto=ms("2026-10-30T12:00:00Z")).steps["handled"].waiting_for == \
        "part P-THERM (request PR-1, shipped)"
    assert assess(file, POLICY, upto=ms("2026-10-30T16:00:00Z")).steps["handled"].waiting_for is None


# --- the file a view keeps ---------------------------------------------------------------------------------
def test_a_case_file_kept_as_json_and_read_back_assesses_the_same():
    file = case_file(REGISTERED, completed("2026-10-31T09:00:00Z", cause="design"),
                     callback("2026-10-31T12:00:00Z", "satisfied"))
    file.related_calls["CALL-9"] = [ms("2026-11-02T08:00:00Z"), "complaint", "agent:A3"]
    file.add_feedback("FB-1", [entry("feedback.routed", "FB-1", "2026-10-31T10:00:00Z",
                                     {"case_id": "CASE-1", "department": "design", "summary": "seal"}, 9)])
    again = CaseFile.from_json(file.to_json())
    assert assess(again, POLICY) == assess(file, POLICY)
    assert {s.stage for s in assess(again, POLICY).spans if s.closed is None} == {"fed_back", "recorded"}
