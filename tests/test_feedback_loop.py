"""Feedback with accountability: every result the departments must hear about is routed by
rule, answered by a named owner with a corrective action due by a date, and closed only
when the action is verified; what is not answered in time leaks at the fed-back step."""

from __future__ import annotations

import csv
import io

import orjson
import pytest

from closedloop.domain.facts import parse_ms
from closedloop.domain.loop import assess
from closedloop.domain.policy import parse_routes
from closedloop.app.engine import Engine
from closedloop.projections import feedback as feedback_view
from closedloop.projections import leaks as leaks_view

from conftest import client_for, event
from stories import case
from closedloop.domain.loop import lite
from closedloop.app.settings import load_settings
from test_loop_rules import POLICY, REACHED, REGISTERED, fact, given, leaked_at, steps_at

COMPLETED_MANUFACTURING = ("service.completed", "2026-10-31T09:00:00Z",
                           {"technician_id": "TEC-1", "fault_code": "E1", "cause": "manufacturing", "first_visit": True})
ROUTED = ("feedback.routed", "2026-10-31T10:00:00Z",
          {"case_id": "CASE-1", "department": "manufacturing", "summary": "compressor"})


def acked(time: str, due: str | None = None, owner: str = "Zhao Gang") -> tuple[str, str, dict]:
    data = {"owner": owner, "corrective_action": "audit batch B2026-05-A"}
    if due:
        data["due"] = due
    return ("feedback.acknowledged", time, data)


def closed(time: str, verified: bool) -> tuple[str, str, dict]:
    return ("feedback.closed", time, {"verified": verified, "note": "checked on the line"})


# --- the lifecycle, as the loop walks it ----------------------------------------------------
@pytest.mark.fast
def test_an_acknowledgement_with_a_due_date_keeps_the_step_open_until_the_action_is_verified():
    file = given(REGISTERED, COMPLETED_MANUFACTURING, REACHED, ROUTED,
                 acked("2026-11-01T10:00:00Z", due="2026-11-20T00:00:00Z"),
                 closed("2026-11-10T00:00:00Z", verified=True))
    assert steps_at(file, "2026-11-05T00:00:00Z")["fed_back"] == "open"
    assert assess(file, POLICY, upto=parse_ms("2026-11-05T00:00:00Z")).steps["fed_back"].owner == "Zhao Gang"
    assert steps_at(file, "2026-11-10T00:00:00Z")["fed_back"] == "done"
    assert leaked_at(file, "2026-11-30T00:00:00Z") == set()


@pytest.mark.fast
def test_an_action_not_verified_by_its_due_date_leaks_at_fed_back_owned_by_the_named_owner():
    file = given(REGISTERED, COMPLETED_MANUFACTURING, REACHED, ROUTED,
                 acked("2026-11-01T10:00:00Z", due="2026-11-20T00:00:00Z"))
    assert leaked_at(file, "2026-11-19T23:59:00Z") == set()
    assert leaked_at(file, "2026-11-20T00:00:00Z") == {"fed_back"}
    step = assess(file, POLICY, upto=parse_ms("2026-11-21T00:00:00Z")).steps["fed_back"]
    assert (step.status, step.owner, step.due) == ("overdue", "Zhao Gang", parse_ms("2026-11-20T00:00:00Z"))


@pytest.mark.fast
def test_a_closure_that_cannot_verify_the_action_reopens_the_step_until_acknowledged_again():
    file = given(REGISTERED, COMPLETED_MANUFACTURING, REACHED, ROUTED,
                 acked("2026-11-01T10:00:00Z", due="2026-11-20T00:00:00Z"),
                 closed("2026-11-10T00:00:00Z", verified=False))
    assert steps_at(file, "2026-11-11T00:00:00Z")["fed_back"] == "open"
    # reopened: the owner has the loop's 72 hours to answer with a new action
    assert leaked_at(file, "2026-11-12T23:59:00Z") == set()
    assert leaked_at(file, "2026-11-13T00:00:00Z") == {"fed_back"}
    file = given(REGISTERED, COMPLETED_MANUFACTURING, REACHED, ROUTED,
                 acked("2026-11-01T10:00:00Z", due="2026-11-20T00:00:00Z"),
                 closed("2026-11-10T00:00:00Z", verified=False),
                 acked("2026-11-11T00:00:00Z", due="2026-12-01T00:00:00Z", owner="Sun Li"),
                 closed("2026-11-25T00:00:00Z", verified=True))
    assert leaked_at(file, "2026-11-13T00:00:00Z") == set()
    assert assess(file, POLICY, upto=parse_ms("2026-11-20T00:00:00Z")).steps["fed_back"].owner == "Sun Li"
    assert steps_at(file, "2026-11-25T00:00:00Z")["fed_back"] == "done"


@pytest.mark.fast
def test_an_acknowledgement_without_a_due_date_closes_the_step_as_before():
    file = given(REGISTERED, COMPLETED_MANUFACTURING, REACHED, ROUTED, acked("2026-11-01T10:00:00Z"))
    assert steps_at(file, "2026-11-02T00:00:00Z")["fed_back"] == "done"


@pytest.mark.fast
def test_a_closure_before_a_named_owner_is_flagged_and_closes_nothing():
    file = given(REGISTERED, COMPLETED_MANUFACTURING, REACHED, ROUTED, closed("2026-11-01T00:00:00Z", verified=True))
    a = assess(file, POLICY)
    assert any("closed before a named owner" in x["anomaly"] for x in a.anomalies)
    assert leaked_at(file, "2026-11-03T09:00:00Z") == {"fed_back"}


@pytest.mark.fast
def test_feedback_routed_to_another_department_is_an_item_of_its_own_that_leaks_unanswered():
    routed_sales = ("feedback.routed", "2026-10-31T10:00:00Z",
                    {"case_id": "CASE-1", "department": "sales", "summary": "wants a bigger one"})
    file = given(REGISTERED, COMPLETED_MANUFACTURING, REACHED, ROUTED, acked("2026-11-01T10:00:00Z"))
    other = fact(*routed_sales[:1], "FB-2", *routed_sales[1:], position=90)
    file.add_feedback("FB-2", [[other.time_ms, 90, other.type, lite(other)]])
    spans = [s for s in assess(file, POLICY).spans if s.item.startswith("feedback:")]
    assert [(s.stage, s.owner, s.due) for s in spans] == [
        ("fed_back", "department:sales", parse_ms("2026-10-31T10:00:00Z") + POLICY.feed_back_within)]
    assert steps_at(file, "2026-11-10T00:00:00Z")["fed_back"] == "done"  # the case's own step is answered


# --- routing, decided by the engine ------------------------------------------------------------
def routed_of(engine: Engine, feedback_id: str) -> list:
    return engine.log.stream(f"feedback:{feedback_id}")


def test_the_engine_routes_a_manufacturing_cause_with_model_batch_and_plant(engine: Engine):
    engine.submit(case("CASE-1", "2026-10-30T08:00:00Z", cause="manufacturing", batch="B2026-05-C",
                       plant="PLANT-HF1", model="BCD-470"))
    [routed] = routed_of(engine, "FB-CASE-1-manufacturing")
    assert routed.source == "/closedloop/engine/feedback-routing"
    assert routed.time_ms == parse_ms("2026-10-31T04:00:00Z")  # at the completion
    assert routed.data["product"] == {"model": "BCD-470", "product_line": "refrigerator",
                                      "production_batch": "B2026-05-C", "plant": "PLANT-HF1"}
    assert routed.data["case_id"] == "CASE-1" and routed.data["fault_code"] == "E1"
    assert "Wang Li" not in str(routed.data) and "1380" not in str(routed.data)
    engine.submit(case("CASE-1", "2026-10-30T08:00:00Z", cause="manufacturing", batch="B2026-05-C",
                       plant="PLANT-HF1", model="BCD-470"))  # a resend decides nothing again
    assert len(routed_of(engine, "FB-CASE-1-manufacturing")) == 1


@pytest.mark.parametrize(("cause", "department"), [("design", "design"), ("installation", "service"),
                                                    ("transport", "service"), ("wear", None), ("usage", None)])
def test_each_cause_is_routed_to_the_department_the_rules_name(engine: Engine, cause: str, department: str | None):
    engine.submit(case("CASE-1", "2026-10-30T08:00:00Z", cause=cause))
    items = feedback_view.items(engine.storage, parse_ms("2026-11-05T00:00:00Z"))["items"]
    assert [i["department"] for i in items] == ([department] if department else [])


def test_a_producer_routing_first_stops_the_engine_routing_the_same_case_and_department(engine: Engine):
    story = case("CASE-1", "2026-10-30T08:00:00Z", cause="design", completed_after=20)
    producer = event("feedback.routed", "FB-77", "2026-10-31T03:00:00Z",
                     {"case_id": "CASE-1", "department": "design", "summary": "hinge"}, source="/hq/feedback")
    engine.submit(story[:4] + [producer] + story[4:])
    assert routed_of(engine, "FB-CASE-1-design") == []
    [item] = feedback_view.items(engine.storage, parse_ms("2026-11-05T00:00:00Z"))["items"]
    assert item["feedback_ids"] == ["FB-77"]


def test_a_producer_routing_after_the_engine_is_the_same_item_and_its_answer_closes_it(engine: Engine):
    engine.submit(case("CASE-1", "2026-10-30T08:00:00Z", cause="design"))
    engine.submit([event("feedback.routed", "FB-77", "2026-10-31T06:00:00Z",
                         {"case_id": "CASE-1", "department": "design", "summary": "hinge"}, source="/hq/feedback"),
                   event("feedback.acknowledged", "FB-77", "2026-11-01T06:00:00Z",
                         {"owner": "Liu Yang", "corrective_action": "new hinge", "due": "2026-11-20T00:00:00Z"},
                         source="/quality/design")])
    [item] = feedback_view.items(engine.storage, parse_ms("2026-11-05T00:00:00Z"))["items"]
    assert item["feedback_ids"] == ["FB-CASE-1-design", "FB-77"]
    assert (item["status"], item["owner"], item["due"]) == ("acting", "Liu Yang", "2026-11-20T00:00:00.000Z")
    assert leaks_view.summary(engine.storage, parse_ms("2026-11-05T00:00:00Z"))["leaks"]["fed_back"] == 0


def test_the_engine_routing_waits_for_the_registration_when_the_completion_comes_first(engine: Engine):
    story = case("CASE-1", "2026-10-30T08:00:00Z", cause="manufacturing")
    engine.submit([story[4]])  # the completion, synced before the call center's registration
    assert routed_of(engine, "FB-CASE-1-manufacturing") == []
    engine.submit(story[:4])
    [routed] = routed_of(engine, "FB-CASE-1-manufacturing")
    assert routed.time_ms == parse_ms(story[4]["time"]) and routed.data["product"]["plant"] == "PLANT-QD1"


@pytest.mark.parametrize(("intent", "department"), [("suggestion", "design"), ("purchase_interest", "sales")])
def test_a_suggestion_or_purchase_interest_call_is_routed_and_leaks_unanswered(engine: Engine, intent: str,
                                                                                department: str):
    engine.submit([event("call.received", "CALL-9", "2026-10-30T08:00:00Z",
                         {"phone": "1", "intent": intent, "summary": "evening appointments, please"})])
    [routed] = routed_of(engine, f"FB-CALL-9-{department}")
    assert routed.data["call_id"] == "CALL-9" and "case_id" not in routed.data
    assert routed.data["summary"] == "evening appointments, please"
    leaks = leaks_view.leaks(engine.storage, parse_ms("2026-11-02T08:00:00Z"), leaks_view.LeakFilter(stage="fed_back"))
    assert [(i["call_id"], i["owner"]) for i in leaks["items"]] == [("CALL-9", f"department:{department}")]
    engine.submit([event("feedback.acknowledged", f"FB-CALL-9-{department}", "2026-10-31T08:00:00Z",
                         {"owner": "He Yan", "corrective_action": "call back"}, source=f"/quality/{department}")])
    assert leaks_view.leaks(engine.storage, parse_ms("2026-11-02T08:00:00Z"),
                            leaks_view.LeakFilter(stage="fed_back"))["total"] == 0


def test_routing_rules_are_configuration(database_url: str):
    policy = load_settings(env={"CLOSEDLOOP_ROUTE_CAUSES": "design=design, installation=design",
                                "CLOSEDLOOP_ROUTE_INTENTS": ""}).loop_policy()
    assert policy.feedback_departments == {"design": "design", "installation": "design"}
    engine = Engine.open(database_url, policy=policy)
    engine.submit(case("CASE-1", "2026-10-30T08:00:00Z", cause="installation")
                  + case("CASE-2", "2026-10-30T08:00:00Z", cause="manufacturing")
                  + [event("call.received", "CALL-9", "2026-10-30T08:00:00Z", {"phone": "1", "intent": "suggestion"})])
    items = feedback_view.items(engine.storage, parse_ms("2026-11-05T00:00:00Z"))["items"]
    assert [(i["case_id"], i["department"]) for i in items] == [("CASE-1", "design")]
    engine.close()


@pytest.mark.fast
@pytest.mark.parametrize("text", ["design", "design=marketing", "gremlins=design", "=design"])
def test_a_bad_routing_rule_is_refused_with_the_reason(text: str):
    with pytest.raises(ValueError) as err:
        load_settings(env={"CLOSEDLOOP_ROUTE_CAUSES": text})
    assert str(err.value).startswith("CLOSEDLOOP_ROUTE_CAUSES: ")
    assert parse_routes("", ("design",)) == {}


def test_routing_can_be_switched_off(database_url: str, monkeypatch):
    monkeypatch.setenv("CLOSEDLOOP_AUTO_ROUTING", "off")
    engine = Engine.open(database_url)
    engine.submit(case("CASE-1", "2026-10-30T08:00:00Z", cause="design"))
    assert routed_of(engine, "FB-CASE-1-design") == []
    # the step still waits for the feedback desk to route it
    assert leaks_view.leaks(engine.storage, parse_ms("2026-11-05T00:00:00Z"),
                            leaks_view.LeakFilter(stage="fed_back"))["items"][0]["owner"] == "feedback-desk"
    engine.close()


# --- the departments' view ---------------------------------------------------------------------
def test_each_department_sees_its_items_where_they_stood_at_any_moment(engine: Engine):
    engine.submit(case("CASE-1", "2026-10-30T08:00:00Z", cause="manufacturing")
                  + case("CASE-2", "2026-10-30T09:00:00Z", cause="design"))
    engine.submit([event("feedback.acknowledged", "FB-CASE-1-manufacturing", "2026-11-01T00:00:00Z",
                         {"owner": "Zhao Gang", "corrective_action": "audit", "due": "2026-11-10T00:00:00Z"},
                         source="/quality/manufacturing"),
                   event("feedback.closed", "FB-CASE-1-manufacturing", "2026-11-08T00:00:00Z",
                         {"verified": False, "note": "still failing"}, source="/quality/manufacturing")])

    def standing(moment: str, **kw) -> list[tuple]:
        listed = feedback_view.items(engine.storage, parse_ms(moment), **kw)["items"]
        return [(i["case_id"], i["department"], i["status"], i["owner"], i["overdue"]) for i in listed]

    assert standing("2026-10-31T00:00:00Z") == []
    assert standing("2026-11-02T00:00:00Z") == [
        ("CASE-1", "manufacturing", "acting", "Zhao Gang", False),
        ("CASE-2", "design", "awaiting_owner", "department:design", False)]
    assert standing("2026-11-09T00:00:00Z", department="manufacturing") == [
        ("CASE-1", "manufacturing", "reopened", "Zhao Gang", False)]
    assert standing("2026-11-09T00:00:00Z", status="overdue") == [
        ("CASE-2", "design", "awaiting_owner", "department:design", True)]
    summary = feedback_view.summary(engine.storage, parse_ms("2026-11-12T00:00:00Z"))
    assert summary["departments"]["manufacturing"] | {} == {
        "items": 1, "overdue": 1, "awaiting_owner": 0, "acting": 0, "reopened": 1, "acknowledged": 0, "verified": 0}
    assert summary["total"]["items"] == 2 and summary["total"]["overdue"] == 2
    one = feedback_view.item(engine.storage, "FB-CASE-1-manufacturing", parse_ms("2026-11-12T00:00:00Z"))
    assert [p["status"] for p in one["phases"]] == ["awaiting_owner", "acting", "reopened"]
    assert [h["type"] for h in one["history"]] == ["feedback.routed", "feedback.acknowledged", "feedback.closed"]


def test_a_department_exports_its_items_as_csv(engine: Engine):
    from fastapi.testclient import TestClient

    from closedloop.api.app import create_app

    engine.submit(case("CASE-1", "2026-10-30T08:00:00Z", cause="manufacturing", batch="B2026-05-C"))
    with client_for(engine, "admin") as client:
        r = client.get("/quality/feedback", params={"department": "manufacturing", "format": "csv",
                                                    "as_of": "2026-11-05T00:00:00Z"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        header, row = r.text.splitlines()[:2]
        assert "feedback_ids" in header and "product_production_batch" in header
        assert "FB-CASE-1-manufacturing" in row and "B2026-05-C" in row and "[" not in row
        # the CSV says what the JSON of the same question says, item for item: the product's
        # details as product_* columns, a list space-separated, an object as JSON
        same = client.get("/quality/feedback", params={"department": "manufacturing",
                                                       "as_of": "2026-11-05T00:00:00Z"}).json()["items"]
        assert len(same) == 1

        def cell(value) -> str:
            if value is None:
                return ""
            if isinstance(value, list):
                return " ".join(map(str, value))
            return orjson.dumps(value).decode() if isinstance(value, dict) else str(value)

        expected = [{k: cell(v) for k, v in item.items() if k != "product"}
                    | {f"product_{k}": cell(v) for k, v in item["product"].items()} for item in same]
        assert list(csv.DictReader(io.StringIO(r.text))) == expected
        one = client.get("/quality/feedback/FB-CASE-1-manufacturing", params={"as_of": "2026-11-05T00:00:00Z"})
        assert one.status_code == 200 and one.json()["status"] == "awaiting_owner"
        assert client.get("/quality/feedback/FB-NOPE").status_code == 404
        assert client.get("/quality/feedback", params={"status": "lost"}).status_code == 422
