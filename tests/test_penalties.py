"""Accountability for complaints: a late or poor repair, or a bad attitude, costs the named
owner and their manager a fixed amount each, paid to the customer who complained."""

from __future__ import annotations

import pytest

from closedloop.domain.facts import parse_ms
from closedloop.domain.quality import parse_money
from closedloop.app.engine import Engine
from closedloop.projections.settlement import penalties_by_owner
from closedloop.app.settings import load_settings

from conftest import event
from stories import case, complaint, outlet, technician

NETWORK = [outlet("OUT-1", manager="Director Sun"), technician("TEC-1", "OUT-1", name="Zhang Wei")]
OCTOBER = (parse_ms("2026-10-01T00:00:00Z"), parse_ms("2026-11-01T00:00:00Z"))


def charged(engine: Engine) -> list:
    return [f for batch in engine.log.follow(0) for f in batch if f.type == "penalty.charged"]


def test_a_late_repair_costs_the_technician_and_the_outlet_manager_five_yuan_each_paid_to_the_customer(engine: Engine):
    engine.submit(NETWORK + case("CASE-1", "2026-10-10T08:00:00Z", customer="CU-42")
                  + complaint("CASE-1", "2026-10-12T09:00:00Z", "promise_broken", accountable="TEC-1"))
    [penalty] = charged(engine)
    assert penalty.source == "/closedloop/engine/penalties" and penalty.subject == "PEN-CMP-CASE-1"
    assert penalty.time_ms == parse_ms("2026-10-12T13:00:00Z")  # when the complaint was resolved
    d = penalty.data
    assert d["shares"] == [
        {"party": "TEC-1", "role": "employee", "amount_cents": 500, "name": "Zhang Wei"},
        {"party": "manager:OUT-1", "role": "manager", "amount_cents": 500, "name": "Director Sun"}]
    assert (d["total_cents"], d["currency"], d["outlet_id"]) == (1000, "CNY", "OUT-1")
    assert d["payee"] == {"case_id": "CASE-1", "customer_id": "CU-42"}
    by_owner = penalties_by_owner(engine.storage, *OCTOBER, parse_ms("2026-11-05T00:00:00Z"))
    assert [(o["party"], o["amount"]) for o in by_owner["owners"]] == [("TEC-1", "5.00"), ("manager:OUT-1", "5.00")]
    assert by_owner["total"] == "10.00"
    assert by_owner["paid_to_customers"] == [{"case_id": "CASE-1", "amount_cents": 1000, "amount": "10.00"}]


def test_an_outlet_named_accountable_pays_the_employee_share_itself(engine: Engine):
    engine.submit(NETWORK + case("CASE-1", "2026-10-10T08:00:00Z")
                  + complaint("CASE-1", "2026-10-12T09:00:00Z", "not_fixed_first_visit", accountable="OUT-1"))
    [penalty] = charged(engine)
    assert [(s["party"], s["role"]) for s in penalty.data["shares"]] == [("OUT-1", "employee"),
                                                                         ("manager:OUT-1", "manager")]


def test_a_complaint_the_rules_do_not_price_costs_nothing(engine: Engine):
    engine.submit(NETWORK + case("CASE-1", "2026-10-10T08:00:00Z")
                  + complaint("CASE-1", "2026-10-12T09:00:00Z", "overcharge", accountable="TEC-1"))
    assert charged(engine) == []


def test_a_resolution_that_arrives_before_its_filing_is_charged_once_when_both_are_known(engine: Engine):
    filed, resolved = complaint("CASE-1", "2026-10-12T09:00:00Z", "attitude", accountable="TEC-1")
    engine.submit(NETWORK + case("CASE-1", "2026-10-10T08:00:00Z") + [resolved])
    assert charged(engine) == []
    engine.submit([filed])
    engine.submit([filed, resolved])
    assert len(charged(engine)) == 1


def test_penalty_rules_are_configuration(database_url: str):
    quality = load_settings(env={"CLOSEDLOOP_PENALTIES": "overcharge=20+10.50", "CLOSEDLOOP_CURRENCY": "CNY"}).quality_policy()
    assert quality.penalties == {"overcharge": (2000, 1050)}
    engine = Engine.open(database_url, quality=quality)
    engine.submit(NETWORK + case("CASE-1", "2026-10-10T08:00:00Z")
                  + complaint("CASE-1", "2026-10-12T09:00:00Z", "overcharge", accountable="TEC-1")
                  + case("CASE-2", "2026-10-10T08:00:00Z")
                  + complaint("CASE-2", "2026-10-12T09:00:00Z", "promise_broken", accountable="TEC-1"))
    [penalty] = charged(engine)
    assert penalty.data["case_id"] == "CASE-1" and penalty.data["total_cents"] == 3050
    engine.close()
    assert load_settings(env={"CLOSEDLOOP_PENALTIES": ""}).quality_policy().penalties == {}


def test_changed_rules_charge_new_complaints_and_leave_what_was_charged(database_url: str):
    engine = Engine.open(database_url)
    engine.submit(NETWORK + case("CASE-1", "2026-10-10T08:00:00Z")
                  + complaint("CASE-1", "2026-10-12T09:00:00Z", "attitude", accountable="TEC-1"))
    engine.close()
    engine = Engine.open(database_url, quality=load_settings(env={"CLOSEDLOOP_PENALTIES": "attitude=1+1"}).quality_policy())
    engine.catch_up()
    engine.submit(case("CASE-2", "2026-10-20T08:00:00Z")
                  + complaint("CASE-2", "2026-10-22T09:00:00Z", "attitude", accountable="TEC-1"))
    assert [p.data["total_cents"] for p in charged(engine)] == [1000, 200]
    engine.close()


@pytest.mark.parametrize(("text", "words"), [("attitude=5", None), ("attitude=5.001+1", "more than two decimals"),
                                             ("rudeness=5+5", "categories"), ("attitude=-5+5", "not an amount")])
@pytest.mark.fast
def test_penalty_amounts_are_read_to_the_cent_or_refused(text: str, words: str | None):
    if words is None:
        assert load_settings(env={"CLOSEDLOOP_PENALTIES": text}).quality_policy().penalties == {"attitude": (500, 0)}
        return
    with pytest.raises(ValueError) as err:
        load_settings(env={"CLOSEDLOOP_PENALTIES": text})
    assert words in str(err.value) and str(err.value).startswith("CLOSEDLOOP_PENALTIES")
    assert parse_money("0.10") == 10


def test_a_producer_can_send_a_penalty_and_it_must_add_up(engine: Engine):
    good = {"case_id": "CASE-1", "complaint_id": "CMP-9", "category": "other", "accountable": "TEC-1",
            "shares": [{"party": "TEC-1", "role": "employee", "amount_cents": 300}], "total_cents": 300,
            "currency": "CNY", "payee": {"case_id": "CASE-1"}}
    result = engine.submit([event("penalty.charged", "PEN-9", "2026-10-12T09:00:00Z", good, source="/hq/service-quality"),
                            event("penalty.charged", "PEN-10", "2026-10-12T09:00:00Z", good | {"total_cents": 301},
                                  source="/hq/service-quality")])
    assert result.accepted == 1 and "total_cents must be the sum" in result.rejected[0].describe()


def test_a_penalty_waits_for_the_people_it_names_and_at_most_a_day(database_url: str):
    now = [parse_ms("2026-10-12T14:00:00Z")]
    engine = Engine.open(database_url, clock=lambda: now[0])
    engine.submit(case("CASE-1", "2026-10-10T08:00:00Z")
                  + complaint("CASE-1", "2026-10-12T09:00:00Z", "attitude", accountable="TEC-9"))
    assert charged(engine) == [] and engine.tick() == 0  # TEC-9 and the outlet are not known yet
    now[0] = parse_ms("2026-10-13T13:00:00Z")  # a day after the resolution
    assert engine.tick() == 1 and engine.tick() == 0
    [penalty] = charged(engine)
    assert [(s["party"], s.get("name")) for s in penalty.data["shares"]] == [("TEC-9", None), ("manager:OUT-1", None)]
    assert penalty.time_ms == parse_ms("2026-10-12T13:00:00Z")
    engine.close()


def test_a_waiting_penalty_is_decided_as_soon_as_the_people_are_registered(engine: Engine):
    engine.submit(case("CASE-1", "2026-10-10T08:00:00Z")
                  + complaint("CASE-1", "2026-10-12T09:00:00Z", "attitude", accountable="TEC-1"))
    assert charged(engine) == []
    engine.submit(NETWORK)
    [penalty] = charged(engine)
    assert penalty.data["shares"][1]["name"] == "Director Sun"
