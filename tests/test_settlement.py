"""Settlement: the network is paid by verified results. Given completed cases, reviews and
complaints, when an outlet's statement is drawn up for a period, then every line is a case
completed and reviewed, priced by its job, minus the penalties of its people, to the cent."""

from __future__ import annotations

import csv
import io
import random
from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from closedloop.api.app import create_app
from closedloop.domain.facts import parse_ms
from closedloop.domain.quality import QualityPolicy, parse_prices
from closedloop.app.engine import Engine, feed
from closedloop.projections.settlement import statements
from closedloop.app.settings import load_settings

from conftest import client_for, event
from stories import at, case, complaint, outlet, technician

OCT = (parse_ms("2026-10-01T00:00:00Z"), parse_ms("2026-11-01T00:00:00Z"))
NOV = (parse_ms("2026-11-01T00:00:00Z"), parse_ms("2026-12-01T00:00:00Z"))
LATER = parse_ms("2026-12-15T00:00:00Z")


def guided(case_id: str, start: str, working: bool = True) -> list[dict]:
    story = case(case_id, start, completed_after=None, customer=f"CU-{case_id}")
    return story + [
        event("guidance.given", case_id, at(start, 1), {"technician_id": "TEC-1", "finding": "misuse"},
              source="/outlet/OUT-1"),
        event("follow_up.made", case_id, at(start, 2.5), {"working": working, "agent_id": "CB-1"},
              source="/callback/desk-1"),
    ]


STORY = (
    [outlet("OUT-1"), technician("TEC-1", "OUT-1"), outlet("OUT-2", tier="center"), technician("TEC-2", "OUT-2")]
    # reviewed in October: settles in October
    + case("CASE-1", "2026-10-09T08:00:00Z", customer="CU-1")
    # completed 31 October, reviewed 1 November: settles in November
    + case("CASE-2", "2026-10-30T20:00:00Z", completed_after=24, reviewed_after=6, customer="CU-2")
    # completed, never reviewed: does not settle
    + case("CASE-3", "2026-10-12T08:00:00Z", reviewed_after=None, customer="CU-3")
    # guided by phone, found working by the follow-up
    + guided("CASE-4", "2026-10-14T08:00:00Z")
    # an installation by the service center
    + case("CASE-5", "2026-10-15T08:00:00Z", request="install", outlet_id="OUT-2", tech="TEC-2", customer="CU-5")
    # complaints: one on a case settled in October, one on the case that settles in November
    + complaint("CASE-1", "2026-10-11T09:00:00Z", "promise_broken", accountable="TEC-1")
    + complaint("CASE-2", "2026-10-31T20:30:00Z", "attitude", accountable="TEC-1", resolved_after=2)
)


def october(engine: Engine, quality: QualityPolicy | None = None, outlet_id: str | None = None) -> dict:
    return statements(engine.storage, quality or engine.quality, *OCT, LATER, outlet_id)


def lines(statement: dict) -> list[tuple]:
    return [(l["case_id"], l["kind"], l["job"], l["price_cents"], l["penalty_cents"], l["net_cents"])
            for l in statement["lines"]]


def test_a_statement_lists_completed_and_reviewed_cases_priced_by_job_minus_penalties(engine: Engine):
    engine.submit(STORY)
    s = october(engine)
    by_outlet = {st["outlet_id"]: st for st in s["statements"]}
    assert lines(by_outlet["OUT-1"]) == [
        ("CASE-1", "service", "repair", 5000, 1000, 4000),
        ("CASE-4", "service", "guidance", 1000, 0, 1000),
        ("CASE-2", "penalty", None, 0, 1000, -1000),  # charged in October; the case itself settles in November
    ]
    assert (by_outlet["OUT-1"]["gross"], by_outlet["OUT-1"]["penalties"], by_outlet["OUT-1"]["net"]) == (
        "60.00", "20.00", "40.00")
    assert lines(by_outlet["OUT-2"]) == [("CASE-5", "service", "install", 4000, 0, 4000)]
    assert s["total"] == {"services": 3, "gross_cents": 10000, "penalty_cents": 2000, "net_cents": 8000, "net": "80.00"}
    line = by_outlet["OUT-1"]["lines"][0]
    assert line["penalties"][0]["penalty_id"] == "PEN-CMP-CASE-1" and line["reviewed"] == "2026-10-10T07:00:00.000Z"


def test_a_case_not_yet_reviewed_does_not_settle_and_settles_once_it_is(engine: Engine):
    engine.submit(STORY)
    november = statements(engine.storage, engine.quality, *NOV, LATER)
    assert [l["case_id"] for st in november["statements"] for l in st["lines"]] == ["CASE-2"]
    assert "CASE-3" not in str(october(engine)) and "CASE-3" not in str(november)
    engine.submit([event("callback.made", "CASE-3", "2026-11-03T10:00:00Z",
                         {"agent_id": "CB-1", "reached": True, "satisfaction": "satisfied"}, source="/callback/desk-1")])
    november = statements(engine.storage, engine.quality, *NOV, LATER)
    assert [l["case_id"] for st in november["statements"] for l in st["lines"]] == ["CASE-2", "CASE-3"]
    assert lines(october(engine)["statements"][0])[0][0] == "CASE-1"  # October did not change


def test_a_statement_as_of_a_moment_before_the_review_leaves_the_case_out(engine: Engine):
    engine.submit(STORY)
    early = statements(engine.storage, engine.quality, *OCT, parse_ms("2026-10-10T06:00:00Z"))
    assert early["statements"] == []  # CASE-1 was reviewed at 07:00


def test_prices_depend_on_the_outlets_tier_and_the_price_list_in_force(engine: Engine):
    engine.submit(STORY)
    quality = QualityPolicy(prices=parse_prices("repair=50, install@center=65.50; from 2026-10-14: guidance=12"))
    s = october(engine, quality)
    assert [(l["case_id"], l["price_cents"]) for st in s["statements"] for l in st["lines"]] == [
        ("CASE-1", 5000), ("CASE-4", 1200), ("CASE-2", 0), ("CASE-5", 6550)]


def test_statements_are_reproducible_by_replay_to_the_cent(engine: Engine, tmp_path):
    engine.submit(STORY)
    live = october(engine), statements(engine.storage, engine.quality, *NOV, LATER)
    engine.projector.rebuild()
    assert (october(engine), statements(engine.storage, engine.quality, *NOV, LATER)) == live
    shuffled = STORY[:]
    random.Random(4).shuffle(shuffled)
    backfilled = Engine.open(f"sqlite:///{tmp_path}/backfill.db")
    feed(backfilled, shuffled, batch_size=3)
    assert (october(backfilled), statements(backfilled.storage, backfilled.quality, *NOV, LATER)) == live
    backfilled.close()


@pytest.mark.parametrize(("text", "words"), [("repair=50.123", "more than two decimals"), ("polish=5", "jobs"),
                                             ("repair=5; guidance=1", "from YYYY-MM-DD"),
                                             ("repair@palace=5", "tiers")])
@pytest.mark.fast
def test_a_bad_price_list_is_refused_with_the_reason(text: str, words: str):
    with pytest.raises(ValueError) as err:
        load_settings(env={"CLOSEDLOOP_PRICES": text})
    assert words in str(err.value) and str(err.value).startswith("CLOSEDLOOP_PRICES: ")


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    engine.submit(STORY)
    with client_for(engine, "admin") as c:
        yield c


def test_the_settlement_routes_answer_per_period_and_outlet_in_json_and_csv(client: TestClient):
    params = {"period": "2026-10", "as_of": "2026-12-15T00:00:00Z"}
    all_ = client.get("/settlement", params=params | {"lines": "false"}).json()
    assert [(s["outlet_id"], s["net"]) for s in all_["statements"]] == [("OUT-1", "40.00"), ("OUT-2", "40.00")]
    assert "lines" not in all_["statements"][0]
    one = client.get("/settlement/OUT-1", params=params).json()
    assert one["outlet_id"] == "OUT-1" and [l["case_id"] for l in one["lines"]] == ["CASE-1", "CASE-4", "CASE-2"]
    empty = client.get("/settlement/OUT-9", params=params).json()
    assert empty["lines"] == [] and empty["net"] == "0.00"
    r = client.get("/settlement", params=params | {"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["outlet_id"], x["case_id"], x["net_cents"]) for x in rows] == [
        ("OUT-1", "CASE-1", "4000"), ("OUT-1", "CASE-4", "1000"), ("OUT-1", "CASE-2", "-1000"),
        ("OUT-2", "CASE-5", "4000")]
    pen = client.get("/penalties", params=params).json()
    assert [(o["party"], o["amount"], o["penalties"]) for o in pen["owners"]] == [
        ("TEC-1", "10.00", 2), ("manager:OUT-1", "10.00", 2)]
    assert client.get("/settlement", params={"period": "October"}).status_code == 422
    assert client.get("/settlement", params={"from": "2026-10-01T00:00:00Z"}).status_code == 422
    rules = client.get("/quality/rules").json()
    assert rules["prices"][0]["prices"]["repair"] == "50.00" and rules["routing"]["intents"]["purchase_interest"] == "sales"
