"""The HTTP API, on both databases: producers append, operators mind the quarantine,
analysts ask where each case stands, what leaked, and the three controls."""

from __future__ import annotations

from typing import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from closedloop.app.engine import Engine

from conftest import client_for, event, registration
from test_ingest import ACKED, CALL, CALLBACK, DONE, REG, ROUTED, STORY

BATCH = "application/cloudevents-batch+json"
STRUCTURED = "application/cloudevents+json"


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with client_for(engine, "admin") as c:
        yield c


def post(client: TestClient, path: str, body, content_type: str = STRUCTURED, **headers):
    return client.post(path, content=orjson.dumps(body), headers={"content-type": content_type, **headers})


def test_one_structured_event_is_recorded(client: TestClient):
    r = post(client, "/events", CALL)
    assert r.status_code == 202
    assert r.json()["accepted"] == 1 and r.json()["position"] == 1


def test_a_resend_is_answered_200_and_records_nothing(client: TestClient):
    post(client, "/events", CALL)
    r = post(client, "/events", CALL)
    assert r.status_code == 200 and r.json() == {"accepted": 0, "duplicates": 1, "rejected": [], "position": None}


def test_binary_content_mode(client: TestClient):
    headers = {"ce-specversion": "1.0", "ce-id": "bin-1", "ce-source": "/outlet/OUT-1", "ce-type": "visit.arrived",
               "ce-time": "2026-10-30T10:00:00Z", "ce-subject": "CASE-1"}
    r = post(client, "/events", {"technician_id": "TEC-1"}, "application/json", **headers)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 1 and r.json()["position"] == 1
    assert client.get("/health").json()["log_head"] == 1
    # what is stored is what was sent: the headers became the envelope, the body the data
    [stored] = client.get("/cases/CASE-1", params={"as_of": "2026-10-30T12:00:00Z"}).json()["timeline"]
    assert {k: stored[k] for k in ("id", "source", "type", "time", "subject", "data", "position")} == {
        "id": "bin-1", "source": "/outlet/OUT-1", "type": "visit.arrived", "time": "2026-10-30T10:00:00.000Z",
        "subject": "CASE-1", "data": {"technician_id": "TEC-1"}, "position": 1}
    # and it is the same event as its structured form: sent that way, it is a resend
    structured = event("visit.arrived", "CASE-1", "2026-10-30T10:00:00Z", {"technician_id": "TEC-1"},
                       source="/outlet/OUT-1", id="bin-1")
    assert post(client, "/events", structured).json() == {"accepted": 0, "duplicates": 1, "rejected": [],
                                                          "position": None}


def test_a_batch_is_recorded_in_one_request(client: TestClient):
    r = post(client, "/events/batch", STORY, BATCH)
    assert r.status_code == 202 and r.json()["accepted"] == 6
    r = post(client, "/events", STORY, BATCH)  # the batch content type on /events works too
    assert r.status_code == 200 and r.json()["duplicates"] == 6


def test_an_invalid_event_gets_a_422_naming_the_event_and_field_and_is_quarantined(client: TestClient):
    bad = event("callback.made", "CASE-1", "2026-10-31T12:00:00Z", {"agent_id": "CB-1", "reached": "yes"},
                id="cb-bad")
    r = post(client, "/events", bad)
    assert r.status_code == 422
    body = r.json()
    assert "cb-bad" in body["error"] and "data.reached" in body["error"]
    [rejected] = body["rejected"]
    q = client.get("/quarantine").json()
    assert q["total"] == 1 and q["items"][0]["qid"] == rejected["quarantine_id"]
    assert q["items"][0]["event"] == bad


def test_a_batch_with_bad_events_records_the_good_ones_and_says_which_failed(client: TestClient):
    bad = dict(REG, type="case.misfiled")
    r = post(client, "/events/batch", [CALL, bad, DONE], BATCH)
    assert r.status_code == 422
    body = r.json()
    assert body["accepted"] == 2 and body["rejected"][0]["index"] == 1
    assert body["rejected"][0]["errors"][0]["field"] == "type"


def test_an_operator_corrects_and_resubmits_a_quarantined_event(client: TestClient):
    bad = dict(DONE, data=dict(DONE["data"], cause="gremlins"))
    qid = post(client, "/events", bad).json()["rejected"][0]["quarantine_id"]
    assert client.post(f"/quarantine/{qid}/resubmit").status_code == 422  # still wrong as it was
    r = client.post(f"/quarantine/{qid}/resubmit", content=orjson.dumps(DONE),
                    headers={"content-type": "application/json"})
    assert r.status_code == 202
    assert client.get(f"/quarantine/{qid}").json()["status"] == "resubmitted"
    assert client.post(f"/quarantine/{qid}/resubmit").status_code == 409


def test_an_operator_can_discard_with_a_reason(client: TestClient):
    qid = post(client, "/events", {"specversion": "1.0"}).json()["rejected"][0]["quarantine_id"]
    r = client.post(f"/quarantine/{qid}/discard", params={"reason": "test traffic"})
    assert r.status_code == 200 and r.json()["status"] == "discarded"
    assert client.get("/quarantine").json()["total"] == 0
    assert client.get("/quarantine", params={"status": "all"}).json()["total"] == 1


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [(b"{not json", STRUCTURED, 400), (b"", STRUCTURED, 400), (b"[1]", STRUCTURED, 400),
     (b"<xml/>", "text/xml", 415), (b'{"a": 1}', BATCH, 400)],
)
def test_malformed_bodies_get_a_clear_4xx(client: TestClient, body: bytes, content_type: str, status: int):
    r = client.post("/events", content=body, headers={"content-type": content_type})
    assert r.status_code == status and r.json()["error"]


def test_the_case_view_shows_timeline_steps_and_owner(client: TestClient):
    post(client, "/events/batch", [CALL, REG, DONE, CALLBACK], BATCH)
    r = client.get("/cases/CASE-1", params={"as_of": "2026-11-05T00:00:00Z"})
    assert r.status_code == 200
    case = r.json()
    # the manufacturing cause is routed by the engine at the completion
    assert [e["type"] for e in case["timeline"]] == ["call.received", "case.registered", "service.completed",
                                                     "feedback.routed", "callback.made"]
    assert case["timeline"][3]["source"] == "/closedloop/engine/feedback-routing"
    assert {s: v["status"] for s, v in case["steps"].items()} == {
        "recorded": "done", "handled": "done", "reviewed": "done", "fed_back": "overdue"}
    assert case["owner"] == "department:manufacturing" and case["loop_closed"] is False
    earlier = client.get("/cases/CASE-1", params={"as_of": "2026-10-30T09:00:00Z"}).json()
    assert [e["type"] for e in earlier["timeline"]] == ["call.received", "case.registered"]
    assert earlier["steps"]["handled"]["status"] == "open" and earlier["owner"] == "dispatch"
    assert client.get("/cases/CASE-404").status_code == 404


def test_summary_and_leaks_answer_for_any_moment(client: TestClient):
    post(client, "/events/batch", [CALL, REG, DONE, CALLBACK, ROUTED], BATCH)
    s = client.get("/loop/summary", params={"as_of": "2026-11-05T00:00:00Z"}).json()
    assert s["cases"] == 1 and s["leaks"] == {"recorded": 0, "handled": 0, "reviewed": 0, "fed_back": 1}
    before = client.get("/loop/summary", params={"as_of": "2026-10-30T07:00:00Z"}).json()
    assert before["cases"] == 0 and before["leaks"]["fed_back"] == 0
    leaks = client.get("/loop/leaks", params={"as_of": "2026-11-05T00:00:00Z", "stage": "fed_back"}).json()
    assert leaks["total"] == 1
    [item] = leaks["items"]
    assert item["case_id"] == "CASE-1" and item["owner"] == "department:manufacturing"
    assert item["due"] == "2026-11-03T09:00:00.000Z"
    assert client.get("/loop/leaks", params={"as_of": "2026-11-05T00:00:00Z", "region": "R99"}).json()["total"] == 0
    post(client, "/events", ACKED)
    assert client.get("/loop/summary", params={"as_of": "2026-11-05T00:00:00Z"}).json()["leaked_total"] == 0


def test_leaks_are_paginated(client: TestClient):
    calls = [event("call.received", f"CALL-{i}", "2026-10-30T08:00:00Z", {"phone": "1", "intent": "repair"})
             for i in range(25)]
    post(client, "/events/batch", calls, BATCH)
    pages = [client.get("/loop/leaks", params={"as_of": "2026-10-31T00:00:00Z", "limit": 10, "offset": o}).json()
             for o in (0, 10, 20)]
    assert [len(p["items"]) for p in pages] == [10, 10, 5] and pages[0]["total"] == 25
    assert len({i["call_id"] for p in pages for i in p["items"]}) == 25


def test_controls_give_ppm_with_the_counts_behind_them(client: TestClient):
    post(client, "/events/batch", STORY, BATCH)
    other_call = event("call.received", "CALL-2", "2026-10-30T09:00:00Z", {"phone": "1", "intent": "install"})
    other = event("case.registered", "CASE-2", "2026-10-30T09:05:00Z", registration("CALL-2", region="R02"))
    post(client, "/events/batch", [other_call, other], BATCH)
    params = {"from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z", "as_of": "2026-11-10T00:00:00Z"}
    c = client.get("/controls", params=params).json()
    assert c["total"]["services"] == 2
    assert c["total"]["dissatisfaction"] == {"count": 1, "ppm": 500000.0, "target_ppm": 10.0, "within_target": False}
    assert c["total"]["omission"]["count"] == 1  # CASE-2 was never handled
    assert c["total"]["complaint"]["count"] == 0 and c["total"]["complaint"]["within_target"] is True
    by = client.get("/controls", params=params | {"by": "region"}).json()
    assert {g["region"]: g["services"] for g in by["groups"]} == {"R01": 1, "R02": 1}
    assert client.get("/controls", params=params | {"by": "colour"}).status_code == 422


def test_the_openapi_page_documents_every_route_and_the_event_contract(client: TestClient):
    spec = client.get("/openapi.json").json()
    for path in ("/events", "/events/batch", "/cases/{case_id}", "/loop/summary", "/loop/leaks", "/controls",
                 "/quarantine"):
        assert path in spec["paths"], path
    assert "CloudEvent" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_invalid_utf8_and_absurd_nesting_get_a_400(client: TestClient):
    r = client.post("/events", content=b'{"id": "\xff\xfe"}', headers={"content-type": STRUCTURED})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = client.post("/events/batch", content=b"[" * 5000 + b"]" * 5000, headers={"content-type": BATCH})
    assert r.status_code == 400


def test_a_batch_over_the_limit_is_refused_before_anything_is_recorded(client: TestClient, monkeypatch):
    # the app's limit, as create_app set it from CLOSEDLOOP_MAX_BATCH_EVENTS
    monkeypatch.setattr(client.app.state, "max_batch_events", 10)
    r = post(client, "/events/batch", [CALL] * 11, BATCH)
    assert r.status_code == 413 and "split it" in r.json()["error"]
    assert client.get("/health").json()["log_head"] == 0


def test_a_body_over_the_limit_is_refused(client: TestClient, monkeypatch):
    # the app's limit, as create_app set it from CLOSEDLOOP_MAX_BODY_MB
    monkeypatch.setattr(client.app.state, "max_body_bytes", 1000)
    r = post(client, "/events/batch", [CALL] * 20, BATCH)
    assert r.status_code == 413
