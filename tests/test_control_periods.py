"""The three controls over time and down to the cases: by day, week or month, by region,
outlet, product line or technician, each against the period before, each count listing
the services behind it."""

from __future__ import annotations

from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from conftest import client_for
from closedloop.api.app import create_app
from closedloop.app.engine import Engine

from stories import case, complaint

# Week 41 (5-11 Oct): CASE-1 fine, CASE-2 complained about (TEC-2).
# Week 42 (12-18 Oct): CASE-3 dissatisfied (TEC-1), CASE-4 never reviewed: an omission (TEC-2), CASE-5 fine.
STORY = (
    case("CASE-1", "2026-10-06T08:00:00Z", customer="CU-1")
    + case("CASE-2", "2026-10-07T08:00:00Z", tech="TEC-2", customer="CU-2")
    + complaint("CASE-2", "2026-10-09T08:00:00Z", "attitude", accountable="TEC-2")
    + case("CASE-3", "2026-10-13T08:00:00Z", satisfaction="very_dissatisfied", customer="CU-3")
    + case("CASE-4", "2026-10-14T08:00:00Z", tech="TEC-2", reviewed_after=None, customer="CU-4")
    + case("CASE-5", "2026-10-15T08:00:00Z", customer="CU-5")
)
WINDOW = {"from": "2026-10-05T00:00:00Z", "to": "2026-10-19T00:00:00Z", "as_of": "2026-11-01T00:00:00Z"}


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    engine.submit(STORY)
    with client_for(engine, "admin") as c:
        yield c


def controls(client: TestClient, **params) -> dict:
    r = client.get("/controls", params=WINDOW | params)
    assert r.status_code == 200, r.text
    return r.json()


def counts(rates: dict) -> tuple:
    return (rates["services"],) + tuple(rates[m]["count"] for m in ("complaint", "dissatisfaction", "omission"))


def test_weekly_periods_with_the_move_from_the_week_before(client: TestClient):
    c = controls(client, period="week")
    assert counts(c["total"]) == (5, 1, 1, 1)
    assert [(p["period"], counts(p["total"])) for p in c["periods"]] == [("2026-W41", (2, 1, 0, 0)),
                                                                         ("2026-W42", (3, 0, 1, 1))]
    w42 = c["periods"][1]["total"]["change"]
    assert w42["complaint"] == {"ppm": 0.0, "previous_ppm": 500000.0, "change_ppm": -500000.0}
    assert w42["omission"]["change_ppm"] == pytest.approx(333333.3)
    assert c["periods"][0]["total"]["change"]["complaint"]["previous_ppm"] is None  # nothing in week 40
    assert sum(p["total"]["services"] for p in c["periods"]) == c["total"]["services"]


def test_by_technician_each_rate_with_the_services_behind_it(client: TestClient):
    c = controls(client, by="technician", cases="true")
    groups = {g["technician"]: g for g in c["groups"]}
    assert counts(groups["TEC-1"]) == (3, 0, 1, 0) and counts(groups["TEC-2"]) == (2, 1, 0, 1)
    assert groups["TEC-2"]["complaint"]["cases"] == ["CASE-2"] and groups["TEC-2"]["omission"]["cases"] == ["CASE-4"]
    assert c["total"]["dissatisfaction"]["cases"] == ["CASE-3"]
    for measure in ("complaint", "dissatisfaction", "omission"):
        assert len(c["total"][measure]["cases"]) == c["total"][measure]["count"]


def test_periods_by_group_list_their_cases_and_compare_with_the_same_group(client: TestClient):
    c = controls(client, period="week", by="technician", cases="true")
    w42 = {g["technician"]: g for g in c["periods"][1]["groups"]}
    assert w42["TEC-2"]["omission"]["cases"] == ["CASE-4"]
    assert w42["TEC-2"]["change"]["complaint"] == {"ppm": 0.0, "previous_ppm": 1000000.0, "change_ppm": -1000000.0}


def test_compare_gives_the_window_of_the_same_length_before(client: TestClient):
    c = controls(client, **{"from": "2026-10-12T00:00:00Z", "compare": "true"})
    assert c["previous"]["from"] == "2026-10-05T00:00:00.000Z" and c["previous"]["total"]["services"] == 2
    assert c["total"]["change"]["complaint"] == {"ppm": 0.0, "previous_ppm": 500000.0, "change_ppm": -500000.0}


def test_the_cases_behind_an_omission_name_the_step_that_leaked(client: TestClient):
    r = client.get("/controls/cases", params=WINDOW | {"measure": "omission"}).json()
    assert r["total"] == 1
    [item] = r["items"]
    assert item["case_id"] == "CASE-4" and item["technician_id"] == "TEC-2"
    assert item["leaked"]["stage"] == "reviewed" and item["leaked"]["owner"] == "callback-desk"
    r = client.get("/controls/cases", params=WINDOW | {"measure": "complaint", "technician": "TEC-1"}).json()
    assert r["total"] == 0
    assert client.get("/controls/cases", params=WINDOW | {"measure": "joy"}).status_code == 422


def test_monthly_and_daily_periods(client: TestClient):
    month = controls(client, period="month")
    assert [(p["period"], p["from"], p["to"]) for p in month["periods"]] == [
        ("2026-10", "2026-10-05T00:00:00.000Z", "2026-10-19T00:00:00.000Z")]
    days = controls(client, period="day")["periods"]
    assert len(days) == 14 and sum(d["total"]["services"] for d in days) == 5
