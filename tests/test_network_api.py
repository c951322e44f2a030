"""The service network through the HTTP API, on both databases: producers send the network,
cases and parts as events; the engine dispatches, alarms, approves and keeps permits; the
API answers where everything stands, now and at any earlier moment."""

from __future__ import annotations

from typing import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from closedloop.api.app import create_app

from conftest import client_for, event
from network_fixtures import NETWORK, at, ms, network_engine, register

BATCH = "application/cloudevents-batch+json"
OUTLET_S = "/outlet/OUT-S"
STOCK = [event("stock.received", "WH2-R01", "2026-10-01T09:00:00Z",
               {"level": 2, "region": "R01", "part_no": "RF-THERM-01", "quantity": 4}, source="/warehouse/WH2-R01"),
         event("stock.received", "WH1-01", "2026-10-01T09:00:00Z",
               {"level": 1, "region": "R01", "part_no": "RF-SEAL-05", "quantity": 40}, source="/warehouse/WH1-01")]


class Clock:
    def __init__(self, moment: str) -> None:
        self.now = [ms(moment)]

    def set(self, moment: str) -> None:
        self.now[0] = ms(moment)


@pytest.fixture
def clock() -> Clock:
    return Clock(at("08:00"))


@pytest.fixture
def client(database_url: str, clock: Clock) -> Iterator[TestClient]:
    engine = network_engine(database_url, clock=clock.now, network=[])
    with client_for(engine, "admin") as c:
        c.engine = engine  # type: ignore[attr-defined]
        yield c
    engine.close()


def send(client: TestClient, events: list[dict]) -> dict:
    r = client.post("/events/batch", content=orjson.dumps(events), headers={"content-type": BATCH})
    assert r.status_code in (200, 202), r.text
    return r.json()


def get(client: TestClient, path: str, **params) -> dict:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_outlets_show_their_coverage_and_todays_load_and_capacity(client: TestClient):
    send(client, NETWORK)
    send(client, [register("CASE-1", at("08:10")), register("CASE-2", at("08:20"))])
    page = get(client, "/outlets", region="R01", product_line="refrigerator", as_of=at("09:00"))
    assert page["total"] == 4
    loads = {o["outlet_id"]: (o["today"]["load"], o["today"]["capacity"]) for o in page["items"]}
    assert loads == {"OUT-A": (0, 2), "OUT-B": (1, 3), "OUT-C": (0, 10), "OUT-S": (1, 5)}
    assert get(client, "/outlets", region="R02")["total"] == 1
    assert get(client, "/outlets", tier="specialized")["items"][0]["product_lines"] == ["refrigerator", "washer"]
    # as of the morning, before anything was dispatched, and the next day, when loads start again
    assert all(o["today"]["load"] == 0 for o in get(client, "/outlets", as_of=at("08:05"))["items"])
    assert all(o["today"]["load"] == 0 for o in get(client, "/outlets", as_of=at("09:00", "2026-10-31"))["items"])
    one = get(client, "/outlets/OUT-S", as_of=at("09:00"))
    assert one["tier"] == "specialized" and one["today"]["left"] == 4
    assert [t["technician_id"] for t in one["technicians"]] == ["TEC-S1"]
    assert client.get("/outlets/OUT-404").status_code == 404
    assert client.get("/outlets", params={"tier": "franchise"}).status_code == 422


def test_the_case_view_shows_who_dispatched_it_and_why(client: TestClient):
    send(client, NETWORK + [register("CASE-1", at("08:10"))])
    case = get(client, "/cases/CASE-1", as_of=at("09:00"))
    [dispatch] = [e for e in case["timeline"] if e["type"] == "case.dispatched"]
    assert dispatch["source"] == "/closedloop/engine/dispatcher" and dispatch["data"]["by"] == "system"
    assert dispatch["data"]["reasons"][0] == "covers region R01 and product line refrigerator"
    assert case["outlet_id"] == "OUT-S" and case["steps"]["handled"]["owner"] == "outlet:OUT-S"


def test_alarms_are_listed_open_until_the_job_is_taken(client: TestClient, clock: Clock):
    send(client, NETWORK + [register("CASE-1", at("08:10")), register("CASE-2", at("08:20"))])
    send(client, [event("dispatch.accepted", "CASE-2", at("08:30"), {"outlet_id": "OUT-B", "technician_id": "TEC-B1"},
                        source="/outlet/OUT-B")])
    clock.set(at("08:50"))
    client.engine.tick()  # what the API's follow thread does every second
    alarms = get(client, "/alarms", as_of=at("08:50"))
    assert alarms["total"] == 1
    [alarm] = alarms["items"]
    assert (alarm["case_id"], alarm["outlet_id"], alarm["level"], alarm["state"]) == ("CASE-1", "OUT-S", 1, "open")
    assert alarm["raised"] == "2026-10-30T08:40:00.000Z" and alarm["accept_by"] == "2026-10-30T08:40:00.000Z"
    assert get(client, "/alarms", outlet_id="OUT-B", as_of=at("08:50"))["total"] == 0
    assert get(client, "/outlets/OUT-S", as_of=at("08:50"))["today"]["open_alarms"] == 1
    send(client, [event("dispatch.accepted", "CASE-1", at("08:55"), {"outlet_id": "OUT-S", "technician_id": "TEC-S1"},
                        source=OUTLET_S)])
    assert get(client, "/alarms", as_of=at("09:00"))["total"] == 0
    [resolved] = get(client, "/alarms", state="resolved", as_of=at("09:00"))["items"]
    assert resolved["resolution"] == "accepted" and resolved["open_minutes"] == 15.0
    assert get(client, "/alarms", as_of=at("08:50"))["total"] == 1  # as it stood then
    clock.set(at("12:00"))
    assert client.engine.tick() == 0  # accepted: no escalation


def test_part_requests_and_stock_per_warehouse(client: TestClient):
    send(client, NETWORK + STOCK + [register("CASE-1", at("08:10"))])
    send(client, [event("dispatch.accepted", "CASE-1", at("08:20"), {"outlet_id": "OUT-S", "technician_id": "TEC-S1"},
                        source=OUTLET_S),
                  event("part.requested", "CASE-1", at("09:00"), {"request_id": "PR-1", "part_no": "RF-THERM-01",
                                                                 "quantity": 3, "outlet_id": "OUT-S"}, source=OUTLET_S),
                  event("part.requested", "CASE-1", at("09:05"), {"request_id": "PR-2", "part_no": "RF-THERM-01",
                                                                 "quantity": 2, "outlet_id": "OUT-S"}, source=OUTLET_S)])
    requests = get(client, "/part-requests", outlet_id="OUT-S", as_of=at("10:00"))
    assert requests["by_outlet"] == {"OUT-S": 2}
    status = {r["request_id"]: (r["status"], r["warehouse_id"], r["decided_by"]) for r in requests["items"]}
    assert status == {"PR-1": ("approved", "WH2-R01", "engine"), "PR-2": ("held", None, "engine")}
    wh = get(client, "/warehouses/WH2-R01", as_of=at("10:00"))
    assert wh["stock"] == [{"part_no": "RF-THERM-01", "on_hand": 4, "reserved": 3, "available": 1}]
    assert get(client, "/warehouses/WH2-R01", as_of=at("08:00"))["stock"][0]["reserved"] == 0
    assert [w["warehouse_id"] for w in get(client, "/warehouses", level=1)["items"]] == ["WH1-01"]
    # the case is waiting for its parts: the reason it is not handled yet
    handled = get(client, "/cases/CASE-1", as_of=at("10:00"))["steps"]["handled"]
    assert handled["waiting_for"] == "part RF-THERM-01 (request PR-1, approved) and 1 more"
    leaks = get(client, "/loop/leaks", as_of="2026-11-02T00:00:00Z")
    assert leaks["items"][0]["waiting_for"].startswith("part RF-THERM-01 (request PR-1")
    send(client, [event("part.shipped", "CASE-1", at("11:00"), {"request_id": "PR-1", "warehouse_id": "WH2-R01"},
                        source="/warehouse/WH2-R01"),
                  event("part.delivered", "CASE-1", at("14:00"), {"request_id": "PR-1", "warehouse_id": "WH2-R01"},
                        source=OUTLET_S)])
    assert get(client, "/warehouses/WH2-R01", as_of=at("15:00"))["stock"][0] == {
        "part_no": "RF-THERM-01", "on_hand": 1, "reserved": 0, "available": 1}
    assert [r["request_id"] for r in get(client, "/part-requests", as_of=at("15:00"))["items"]] == ["PR-2"]
    assert get(client, "/part-requests", state="delivered", as_of=at("15:00"))["items"][0]["request_id"] == "PR-1"
    assert get(client, "/outlets/OUT-S", as_of=at("15:00"))["open_part_requests"][0]["request_id"] == "PR-2"
    assert client.get("/warehouses/WH9").status_code == 404


def test_a_technicians_permit_shows_its_ledger_and_status(client: TestClient):
    send(client, NETWORK)
    for n in (1, 2):
        day = f"2026-10-{n:02d}"
        send(client, [register(f"CASE-{n}", at("08:10", day)),
                      event("dispatch.accepted", f"CASE-{n}", at("08:20", day),
                            {"outlet_id": "OUT-S", "technician_id": "TEC-S1"}, source=OUTLET_S),
                      event("appointment.set", f"CASE-{n}", at("08:30", day),
                            {"at": at("10:00", day), "customer_agreed": True}, source=OUTLET_S),
                      event("service.completed", f"CASE-{n}", at("14:00", day),
                            {"technician_id": "TEC-S1", "fault_code": "E1", "cause": "wear", "first_visit": True},
                            source=OUTLET_S)])
    permit = get(client, "/technicians/TEC-S1", as_of="2026-10-03T00:00:00Z")
    assert permit["outlet_id"] == "OUT-S" and permit["level"] == "intermediate"
    assert permit["permit"]["status"] == "warning" and permit["permit"]["balance"] == 6
    assert permit["permit"]["share_of_jobs"] == 0.5
    assert [(e["change"], e["case_id"], e["rule"], e["points"], e["balance"]) for e in permit["ledger"]] == [
        ("points_changed", "CASE-1", "promise_broken", -3, 9),
        ("points_changed", "CASE-2", "promise_broken", -3, 6),
        ("status_changed", "CASE-2", "promise_broken", None, 6)]
    assert permit["ledger"][2]["previous"] == "normal" and permit["ledger"][2]["status"] == "warning"
    earlier = get(client, "/technicians/TEC-S1", as_of="2026-10-01T23:00:00Z")
    assert earlier["permit"] == earlier["permit"] | {"status": "normal", "balance": 9}
    warned = get(client, "/technicians", status="warning", as_of="2026-10-03T00:00:00Z")
    assert [t["technician_id"] for t in warned["items"]] == ["TEC-S1"]
    assert get(client, "/technicians", outlet_id="OUT-A")["total"] == 2
    assert get(client, "/outlets/OUT-S", as_of="2026-10-03T00:00:00Z")["today"]["capacity"] == 2  # 5 at half share
    assert client.get("/technicians/TEC-404").status_code == 404
    assert client.get("/technicians", params={"status": "suspended"}).status_code == 422


def test_the_rules_and_every_route_are_documented(client: TestClient):
    rules = get(client, "/network/rules")
    assert rules["auto_dispatch"] is True and rules["accept_within_minutes"] == 30
    assert rules["permit"]["deductions"]["promise_broken"] == 3
    spec = client.get("/openapi.json").json()
    for path in ("/outlets", "/outlets/{outlet_id}", "/technicians", "/technicians/{technician_id}", "/warehouses",
                 "/warehouses/{warehouse_id}", "/part-requests", "/alarms", "/network/rules"):
        assert path in spec["paths"], path
    bad = client.get("/alarms", params={"as_of": "yesterday"})
    assert bad.status_code == 422 and "as_of" in bad.json()["error"]
