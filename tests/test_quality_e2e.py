"""End to end through the API, on SQLite and PostgreSQL: a generated month of after-sales
traffic is sent as producers send it, and every quality view's totals agree with each
other and with the events themselves."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime

import orjson
import pytest
from fastapi.testclient import TestClient

from conftest import client_for
from closedloop.api.app import create_app
from closedloop.domain.facts import parse_ms
from closedloop.app.engine import Engine
from closedloop.simulation.workload import WorkloadSpec, generate

END = datetime(2026, 11, 1, tzinfo=UTC)
SPEC = WorkloadSpec(seed=17, days=30, calls_per_day=40, outlets=14, regions=4, end=END)
WINDOW = {"from": "2026-10-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}
AS_OF = "2026-11-08T00:00:00Z"
BATCH = "application/cloudevents-batch+json"


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return list(generate(SPEC))


def settleable(events: list[dict], at: int) -> set[str]:
    """From the events alone: cases completed (or guided by phone and found working) and reviewed by `at`."""
    by_case: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        if e["subject"].startswith("CASE-"):
            by_case[e["subject"]].append(e)
    out = set()
    for case_id, story in by_case.items():
        story.sort(key=lambda e: e["time"])
        completed = guided = None
        for e in story:
            t = parse_ms(e["time"])
            if t > at:
                break
            if e["type"] == "guidance.given" and completed is None:
                guided = guided or t
            elif e["type"] == "follow_up.made" and guided and completed is None and e["data"]["working"]:
                out.add(case_id)
                break
            elif e["type"] == "service.completed" and completed is None:
                completed = t
            elif e["type"] == "callback.made" and completed is not None and e["data"]["reached"]:
                out.add(case_id)
                break
    return out


def test_a_generated_month_through_the_api_gives_views_whose_totals_agree(engine: Engine, events: list[dict]):
    with client_for(engine, "admin") as client:
        for i in range(0, len(events), 1000):
            r = client.post("/events/batch", content=orjson.dumps(events[i : i + 1000]), headers={"content-type": BATCH})
            assert r.status_code == 202 and not r.json()["rejected"], r.text

        def get(path: str, **params) -> dict:
            r = client.get(path, params={"as_of": AS_OF} | params)
            assert r.status_code == 200, (path, r.text)
            return r.json()

        at = parse_ms(AS_OF)
        start, end = parse_ms(WINDOW["from"]), parse_ms(WINDOW["to"])
        completions: dict[str, dict] = {}  # the first completion of each case
        for e in sorted(events, key=lambda e: e["time"]):
            if e["type"] == "service.completed":
                completions.setdefault(e["subject"], e)
        in_window = {c: e for c, e in completions.items() if start <= parse_ms(e["time"]) < end}
        repairs = {c for c, e in in_window.items()
                   if next(x for x in events if x["type"] == "case.registered" and x["subject"] == c)
                   ["data"].get("request", "repair") == "repair"}

        # --- settlement: every case completed and reviewed is in exactly one statement line
        whole = get("/settlement", **{"from": "2026-09-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"})
        lines = [l for st in whole["statements"] for l in st["lines"] if l["kind"] == "service"]
        assert Counter(l["case_id"] for l in lines).most_common(1)[0][1] == 1
        assert {l["case_id"] for l in lines} == settleable(events, at)
        months = [get("/settlement", period=p) for p in ("2026-09", "2026-10", "2026-11")]
        assert sum(m["total"]["net_cents"] for m in months) == whole["total"]["net_cents"]
        assert sum(m["total"]["services"] for m in months) == whole["total"]["services"] == len(lines)
        assert all(l["price_cents"] > 0 for l in lines)
        penalties = get("/penalties", **{"from": "2026-09-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"})
        assert penalties["total_cents"] == whole["total"]["penalty_cents"] > 0

        # --- feedback: every routed feedback is in exactly one department's view
        routed = [f for batch in engine.log.follow(0) for f in batch if f.type == "feedback.routed"]
        assert any(f.source.startswith("/closedloop/engine") for f in routed)
        assert any(not f.source.startswith("/closedloop/engine") for f in routed)
        owner_of: dict[str, list[str]] = defaultdict(list)
        for dept in ("design", "manufacturing", "sales", "service"):
            view = get("/quality/feedback", department=dept, limit=5000)
            assert view["total"] == len(view["items"])
            for item in view["items"]:
                assert item["department"] == dept
                for fid in item["feedback_ids"]:
                    owner_of[fid].append(dept)
        assert sorted(owner_of) == sorted(f.subject for f in routed)
        assert all(len(depts) == 1 for depts in owner_of.values())
        summary = get("/quality/feedback/summary")
        assert summary["total"]["items"] == sum(len(get("/quality/feedback", department=d, limit=5000)["items"])
                                                for d in summary["departments"])
        # overdue items are the loop's leaks at the fed-back step, one for one
        assert summary["total"]["overdue"] == get("/loop/summary")["leaks"]["fed_back"] > 0

        # --- defect analytics: the totals of every view are the completed services of the period
        pareto = get("/quality/defects/pareto", **WINDOW)
        assert pareto["total"] == len(in_window) == sum(r["count"] for r in pareto["rows"])
        per_line = get("/quality/defects/pareto", **WINDOW, per="product_line", by="cause")
        assert sum(r["count"] for r in per_line["rows"]) == len(in_window)
        assert sum({r["product_line"]: r["group_total"] for r in per_line["rows"]}.values()) == len(in_window)
        batches = get("/quality/defects/batches", **WINDOW)
        plants = get("/quality/defects/batches", **WINDOW, by="plant")
        months_in_service = get("/quality/defects/months-in-service", **WINDOW)
        first_visit = get("/quality/defects/first-visit", **WINDOW, per="outlet_id")
        repeats = get("/quality/defects/repeats", **WINDOW)
        for view, key in ((batches, "failures"), (plants, "failures"), (months_in_service, "failures"),
                          (first_visit, "repairs"), (repeats, "repairs")):
            assert view["total"] == sum(r[key] for r in view["rows"]) == len(repairs)
        assert get("/quality/defects/pareto", **WINDOW, job="repair")["total"] == len(repairs)
        assert any(r["failure_rate_ppm"] for r in batches["rows"]) and repeats["repeats"] > 0
        parts = get("/quality/defects/parts", **WINDOW)
        assert parts["parts_used"] == sum(r["quantity"] for r in parts["rows"]) == sum(
            len(e["data"].get("parts_used") or []) for e in in_window.values())
        # each number drills down to exactly the cases behind it
        for view, path, key in ((pareto, "pareto", "count"), (batches, "batches", "failures"),
                                (first_visit, "first-visit", "not_fixed_first_visit"), (repeats, "repeats", "repeats")):
            row = max(view["rows"], key=lambda r: r[key])
            filters = {k: str(v).lower() if isinstance(v, bool) else v for k, v in row["filters"].items()}
            assert get("/quality/defects/cases", **WINDOW, **filters, limit=5000)["total"] == row[key], path

        # --- the three controls: periods, groups and cases add up to the total
        c = get("/controls", **WINDOW, period="week", by="technician", cases="true", compare="true")
        total = c["total"]
        assert sum(p["total"]["services"] for p in c["periods"]) == total["services"]
        assert sum(g["services"] for g in c["groups"]) == total["services"]
        for measure in ("complaint", "dissatisfaction", "omission"):
            assert len(total[measure]["cases"]) == total[measure]["count"]
            assert sum(p["total"][measure]["count"] for p in c["periods"]) == total[measure]["count"]
            assert sum(g[measure]["count"] for g in c["groups"]) == total[measure]["count"]
            drill = get("/controls/cases", **WINDOW, measure=measure, limit=5000)
            assert drill["total"] == total[measure]["count"]
        assert total["complaint"]["count"] > 0 and total["omission"]["count"] > 0

        # --- replay: the views rebuilt from the log answer the same, to the cent
        engine.projector.rebuild()
        assert get("/settlement", **{"from": "2026-09-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}) == whole
        assert get("/quality/defects/pareto", **WINDOW) == pareto
        assert get("/quality/feedback/summary") == summary
