"""Defect analytics: given completed services, when a quality engineer asks, then the Pareto,
batch, months-in-service, repeat, first-visit and parts views count them, and every number
drills down to exactly the cases behind it."""

from __future__ import annotations

import csv
import io
from typing import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from closedloop.api.app import create_app
from closedloop.domain.facts import parse_ms
from closedloop.app.engine import Engine
from closedloop.projections import defects

from conftest import client_for, event
from stories import case

OCTOBER = {"from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z", "as_of": "2026-11-05T00:00:00Z"}


def shipped(model: str, batch: str, plant: str, quantity: int, period: str = "2026-06") -> dict:
    return event("units.shipped", f"SHIP-{model}-{batch}-{plant}", "2026-07-01T00:00:00Z",
                 {"model": model, "production_batch": batch, "plant": plant, "quantity": quantity, "period": period},
                 source="/hq/shipping")


SERVICES = (
    case("CASE-1", "2026-10-09T08:00:00Z", fault_code="E1", cause="manufacturing", serial="S1", purchased="2026-03-15",
         parts=["RF-THERM-01"])
    + case("CASE-2", "2026-10-09T09:00:00Z", fault_code="E1", cause="wear", serial="S2", purchased="2026-08-01",
           first_visit=False, parts=["RF-THERM-01", "RF-SEAL-05"], customer="CU-2")
    + case("CASE-3", "2026-10-24T08:00:00Z", fault_code="E5", cause="design", serial="S1", purchased="2026-03-15",
           batch="B2026-06-B")
    + case("CASE-4", "2026-10-12T08:00:00Z", model="XQG70", line="washer", fault_code="E2", cause="wear",
           batch="B2026-04-A", plant="PLANT-QD2", purchased=None, serial="W1", customer="CU-4")
    + case("CASE-5", "2026-10-15T08:00:00Z", request="install", fault_code="NONE", cause="unknown", purchased="2026-10-14",
           serial="S5", customer="CU-5")
    + case("CASE-6", "2026-11-02T08:00:00Z", fault_code="E1", cause="wear", serial="S6", customer="CU-6")
    + case("CASE-7", "2026-10-30T08:00:00Z", fault_code="E9", cause="wear", serial="S7", customer="CU-7",
           completed_after=None)
    + [shipped("BCD-216", "B2026-05-A", "PLANT-QD1", 4000, "2026-05"), shipped("BCD-216", "B2026-06-B", "PLANT-QD1", 1000)]
)


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    engine.submit(SERVICES)
    with client_for(engine, "admin") as c:
        yield c


def get(client: TestClient, path: str, **params) -> dict:
    r = client.get(path, params=OCTOBER | params)
    assert r.status_code == 200, r.text
    return r.json()


def drill(client: TestClient, row: dict) -> list[str]:
    listed = get(client, "/quality/defects/cases", limit=1000, **{k: str(v).lower() if isinstance(v, bool) else v
                                                                  for k, v in row["filters"].items()})
    return [r["case_id"] for r in listed["rows"]]


def test_a_pareto_of_fault_codes_counts_the_completed_services_of_the_period_largest_first(client: TestClient):
    p = get(client, "/quality/defects/pareto", cases="true")
    assert p["total"] == 5  # CASE-6 completed in November, CASE-7 not completed
    assert [(r["fault_code"], r["count"], r["cumulative_share"]) for r in p["rows"]] == [
        ("E1", 2, 0.4), ("E2", 1, 0.6), ("E5", 1, 0.8), ("NONE", 1, 1.0)]
    assert p["rows"][0]["cases"] == ["CASE-1", "CASE-2"]
    for row in p["rows"]:
        assert drill(client, row) == row["cases"]


def test_a_pareto_of_causes_per_product_line(client: TestClient):
    p = get(client, "/quality/defects/pareto", by="cause", per="product_line", job="repair")
    assert [(r["product_line"], r["cause"], r["count"], r["group_total"]) for r in p["rows"]] == [
        ("refrigerator", "design", 1, 3), ("refrigerator", "manufacturing", 1, 3), ("refrigerator", "wear", 1, 3),
        ("washer", "wear", 1, 1)]
    assert drill(client, p["rows"][2]) == ["CASE-2"]


def test_failures_by_batch_and_plant_with_rates_where_shipments_are_known(client: TestClient):
    b = get(client, "/quality/defects/batches", cases="true")
    rows = {(r["model"], r["production_batch"], r["plant"]): r for r in b["rows"]}
    first = rows[("BCD-216", "B2026-05-A", "PLANT-QD1")]
    assert (first["failures"], first["shipped"], first["failure_rate_ppm"]) == (2, 4000, 500.0)
    assert rows[("BCD-216", "B2026-06-B", "PLANT-QD1")]["failure_rate_ppm"] == 1000.0
    assert rows[("XQG70", "B2026-04-A", "PLANT-QD2")]["shipped"] is None
    assert sum(r["failures"] for r in b["rows"]) == b["total"] == 4  # repairs only: the install is no failure
    plants = get(client, "/quality/defects/batches", by="plant", sort="rate")["rows"]
    assert [(r["plant"], r["failures"], r["shipped"], r["failure_rate_ppm"]) for r in plants] == [
        ("PLANT-QD1", 3, 5000, 600.0), ("PLANT-QD2", 1, None, None)]
    for row in b["rows"]:
        assert drill(client, row) == row["cases"]


def test_failures_by_months_in_service_from_the_purchase_date(client: TestClient):
    m = get(client, "/quality/defects/months-in-service", cases="true")
    assert [(r["months_in_service"], r["failures"], r["cases"]) for r in m["rows"]] == [
        (2, 1, ["CASE-2"]), (6, 1, ["CASE-1"]), (7, 1, ["CASE-3"]), ("unknown", 1, ["CASE-4"])]
    for row in m["rows"]:
        assert drill(client, row) == row["cases"]


def test_a_repair_of_the_same_unit_within_the_window_is_a_repeat(client: TestClient):
    r = get(client, "/quality/defects/repeats", cases="true")
    assert r["repeats"] == 1
    assert r["repeat_cases"] == [{"case_id": "CASE-3", "earlier_case_id": "CASE-1", "days_between": 15.0}]
    [row] = [x for x in r["rows"] if x["repeats"]]
    assert (row["model"], row["repairs"], row["repeat_rate"], row["cases"]) == ("BCD-216", 3, 0.3333, ["CASE-3"])
    assert drill(client, row) == ["CASE-3"]


def test_first_visit_fix_rate_per_technician_lists_the_repairs_that_needed_more(client: TestClient):
    f = get(client, "/quality/defects/first-visit", per="technician_id", cases="true")
    assert f["first_visit_fix_rate"] == 0.75
    [row] = f["rows"]
    assert (row["technician_id"], row["repairs"], row["first_visit_fixes"], row["cases"]) == ("TEC-1", 4, 3, ["CASE-2"])
    assert drill(client, row) == ["CASE-2"]


def test_parts_used_per_model(client: TestClient):
    p = get(client, "/quality/defects/parts", cases="true")
    assert [(r["model"], r["part_no"], r["quantity"], r["cases"]) for r in p["rows"]] == [
        ("BCD-216", "RF-THERM-01", 2, ["CASE-1", "CASE-2"]), ("BCD-216", "RF-SEAL-05", 1, ["CASE-2"])]
    assert drill(client, p["rows"][1]) == ["CASE-2"]


def test_a_view_as_of_a_moment_counts_only_what_was_completed_by_then(client: TestClient):
    p = get(client, "/quality/defects/pareto", as_of="2026-10-12T00:00:00Z")
    assert p["total"] == 2 and [r["fault_code"] for r in p["rows"]] == ["E1"]


def as_cell(value) -> str:
    """A JSON value as the CSV export writes it: a list space-separated, nothing empty."""
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def assert_csv_is_the_json(csv_text: str, json_rows: list[dict]) -> None:
    """Row for row and column for column, the CSV says what the JSON says (its nested
    objects, the drill-down filters, aside)."""
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert len(rows) == len(json_rows)
    for got, want in zip(rows, json_rows):
        expected = {k: as_cell(v) for k, v in want.items() if not isinstance(v, dict)}
        assert {k: got[k] for k in expected} == expected
        assert all(got[k] == "" for k in got.keys() - expected.keys())  # columns only other rows have


def test_every_view_exports_csv(client: TestClient):
    r = client.get("/quality/defects/pareto", params=OCTOBER | {"format": "csv", "cases": "true"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows[0]["fault_code"] == "E1" and rows[0]["count"] == "2" and rows[0]["cases"] == "CASE-1 CASE-2"
    assert_csv_is_the_json(r.text, get(client, "/quality/defects/pareto", cases="true")["rows"])
    r = client.get("/quality/defects/batches", params=OCTOBER, headers={"accept": "text/csv"})
    assert r.headers["content-type"].startswith("text/csv") and "failure_rate_ppm" in r.text.splitlines()[0]
    assert_csv_is_the_json(r.text, get(client, "/quality/defects/batches")["rows"])
    for path in ("months-in-service", "repeats", "first-visit", "parts", "cases"):
        r = client.get(f"/quality/defects/{path}", params=OCTOBER | {"format": "csv", "cases": "true"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), path
        json_rows = get(client, f"/quality/defects/{path}", cases="true")["rows"]
        assert json_rows, path  # something to compare
        assert_csv_is_the_json(r.text, json_rows)


def test_no_customer_personal_data_reaches_the_analytics(client: TestClient):
    bodies = [get(client, f"/quality/defects/{path}", cases="true")
              for path in ("pareto", "batches", "months-in-service", "repeats", "first-visit", "parts", "cases")]
    text = orjson.dumps(bodies).decode()
    for personal in ("Wang Li", "13800000000", "1 Haier Road", "CU-1", "S1"):
        assert personal not in text, personal


def test_bad_questions_get_a_clear_422(client: TestClient):
    assert client.get("/quality/defects/pareto", params={"by": "colour"}).status_code == 422
    r = client.get("/quality/defects/pareto", params={"period": "2026-13"})
    assert r.status_code == 422 and "2026-13" in r.json()["error"]
    r = client.get("/quality/defects/pareto", params={"period": "2026-10", "from": "2026-10-01T00:00:00Z"})
    assert r.status_code == 422 and "either period or from/to" in r.json()["error"]
    assert client.get("/quality/defects/cases", params={"months_in_service": "six"}).status_code == 422


def test_a_units_shipped_event_is_checked_like_any_other(engine: Engine):
    bad = shipped("BCD-216", "B1", "P1", -5, period="last spring")
    result = engine.submit([bad])
    fields = {e["field"] for e in result.rejected[0].errors}
    assert fields == {"data.quantity", "data.period"}


def test_the_period_parameter_names_a_month_week_or_day(client: TestClient):
    month = client.get("/quality/defects/pareto", params={"period": "2026-10", "as_of": OCTOBER["as_of"]}).json()
    assert month["total"] == 5 and month["from"] == "2026-10-01T00:00:00.000Z"
    week = client.get("/quality/defects/pareto", params={"period": "2026-W41", "as_of": OCTOBER["as_of"]}).json()
    assert (week["from"], week["to"], week["total"]) == ("2026-10-05T00:00:00.000Z", "2026-10-12T00:00:00.000Z", 2)


def test_defects_query_functions_refuse_unknown_groupings(engine: Engine):
    period = defects.Period(parse_ms("2026-10-01T00:00:00Z"), parse_ms("2026-11-01T00:00:00Z"),
                            parse_ms("2026-11-05T00:00:00Z"))
    with pytest.raises(ValueError):
        defects.pareto(engine.storage, period, per="colour")
