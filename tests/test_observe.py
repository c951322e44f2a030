"""Operations visibility, on both databases: Prometheus metrics at /metrics and JSON log
lines that name the event, case and source they concern."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from closedloop.app import logs
from closedloop.api import metrics
from closedloop.app.engine import Engine
from closedloop.simulation.workload import WorkloadSpec, generate

from conftest import client_for, event
from test_ingest import STORY

BATCH = "application/cloudevents-batch+json"
STRUCTURED = "application/cloudevents+json"
BAD = event("callback.made", "CASE-9", "2026-10-31T12:00:00Z", {"agent_id": "CB-1", "reached": "yes"},
            source="/callback/desk-4", id="cb-bad")


def scrape(client) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_events_ingested_rejected_and_resent_are_counted_by_type_and_source(engine: Engine):
    with client_for(engine) as c:
        c.post("/events/batch", content=orjson.dumps(STORY), headers={"content-type": BATCH})
        c.post("/events", content=orjson.dumps(STORY[0]), headers={"content-type": STRUCTURED})
        c.post("/events", content=orjson.dumps(BAD), headers={"content-type": STRUCTURED})
        c.post("/events", content=orjson.dumps(dict(BAD, id="typo-1", type="callback.mde")),
               headers={"content-type": STRUCTURED})
        m = scrape(c)
    ingested = {k[1]: v for k, v in m.items() if k[0] == "closedloop_events_ingested_total"}
    assert sum(ingested.values()) == len(STORY)
    assert value(m, "closedloop_events_ingested_total", type="call.received", source="/callcenter/qingdao") == 1
    assert value(m, "closedloop_events_ingested_total", type="service.completed", source="/outlet/OUT-1") == 1
    assert value(m, "closedloop_events_duplicate_total", type="call.received", source="/callcenter/qingdao") == 1
    assert value(m, "closedloop_events_rejected_total", type="callback.made", source="/callback/desk-4") == 1
    # a type outside the contract is one label, whatever was sent
    assert value(m, "closedloop_events_rejected_total", type="(unknown)", source="/callback/desk-4") == 1
    assert value(m, "closedloop_quarantine_open") == 2
    assert value(m, "closedloop_log_head") == engine.log.head() >= len(STORY)  # with the engine's own decisions


def test_open_steps_and_leaks_per_stage_are_the_loop_summarys(engine: Engine):
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    engine.submit(list(generate(WorkloadSpec(seed=3, days=3, calls_per_day=40, outlets=5, regions=2, end=end))))
    with client_for(engine, "analyst") as c:
        m = scrape(c)
        summary = c.get("/loop/summary").json()
    assert summary["leaked_total"] > 0
    for stage in summary["open"]:
        assert value(m, "closedloop_loop_open_steps", stage=stage) == summary["open"][stage]
        assert value(m, "closedloop_loop_leaks_open", stage=stage) == summary["leaks"][stage]
    assert value(m, "closedloop_loop_cases") == summary["cases"]
    assert value(m, "closedloop_loop_closed_loops") == summary["closed_loops"]


def test_projection_lag_counts_the_events_another_process_appended_that_the_views_have_not_applied(
        engine: Engine, database_url: str):
    with client_for(engine) as c:
        assert value(scrape(c), "closedloop_projection_lag_events", view="loop") == 0
        writer = Engine.open(database_url, project_on_submit=False)
        try:
            writer.submit(STORY)
        finally:
            writer.close()
        assert value(scrape(c), "closedloop_projection_lag_events", view="loop") == len(STORY)
        engine.catch_up()
        assert value(scrape(c), "closedloop_projection_lag_events", view="loop") == 0


def test_request_latency_is_a_histogram_per_route_template_not_per_path(engine: Engine):
    engine.submit(STORY)
    with client_for(engine) as c:
        c.get("/cases/CASE-1")
        c.get("/cases/CASE-1")
        c.get("/cases/NO-SUCH-CASE")
        m = scrape(c)
    assert value(m, "closedloop_http_request_duration_seconds_count", method="GET", route="/cases/{case_id}",
                 status="200") == 2
    assert value(m, "closedloop_http_request_duration_seconds_count", method="GET", route="/cases/{case_id}",
                 status="404") == 1
    assert value(m, "closedloop_http_request_duration_seconds_bucket", method="GET", route="/cases/{case_id}",
                 status="200", le="+Inf") == 2
    assert not any("CASE-1" in str(labels) for _, labels in m)


def test_metrics_are_open_by_default_and_need_the_metrics_key_when_one_is_set(engine: Engine, monkeypatch):
    from fastapi.testclient import TestClient

    from closedloop.api.app import create_app

    assert TestClient(create_app(engine, follow_interval=None)).get("/metrics").status_code == 200
    monkeypatch.setenv("CLOSEDLOOP_METRICS_KEY", "scrape-secret")
    anonymous = TestClient(create_app(engine, follow_interval=None))
    refused = anonymous.get("/metrics")
    assert refused.status_code == 401 and "CLOSEDLOOP_METRICS_KEY" in refused.json()["error"]
    assert anonymous.get("/metrics", headers={"Authorization": "Bearer scrape-secret"}).status_code == 200
    analyst = engine.keys.add("metrics-analyst", "analyst")
    operator = engine.keys.add("metrics-operator", "operator")
    assert anonymous.get("/metrics", headers={"Authorization": f"Bearer {analyst}"}).status_code == 401
    assert anonymous.get("/metrics", headers={"Authorization": f"Bearer {operator}"}).status_code == 200


def test_a_failing_reading_is_reported_and_the_others_still_answer(engine: Engine, monkeypatch):
    def broken(engine):
        raise RuntimeError("the table is gone")

    monkeypatch.setattr(metrics, "READINGS", [*metrics.READINGS, broken])
    with client_for(engine) as c:
        m = scrape(c)
    assert value(m, "closedloop_metrics_reading_ok", reading="broken") == 0
    assert value(m, "closedloop_metrics_reading_ok", reading="loop_now") == 1
    assert value(m, "closedloop_log_head") == 0


@pytest.mark.fast
def test_a_consumer_lag_report_becomes_position_and_lag_per_partition():
    report = {"partitions": [
        {"topic": "closedloop.events", "partition": 0, "position": 120, "end": 150, "lag": 30},
        {"topic": "closedloop.events", "partition": 1, "position": 80, "end": None, "lag": None},
    ]}
    families = {f.name: f for f in metrics.consumer_families(report)}
    lag = {tuple(s.labels.values()): s.value for s in families["closedloop_consumer_lag_messages"].samples}
    position = {tuple(s.labels.values()): s.value for s in families["closedloop_consumer_position"].samples}
    assert lag == {("closedloop.events", "0"): 30}
    assert position == {("closedloop.events", "0"): 120, ("closedloop.events", "1"): 80}


@pytest.mark.fast
def test_sources_are_labelled_by_producer_and_fold_past_the_limit():
    label = metrics.SourceLabels(depth=2, limit=2)
    assert label("/callcenter/qingdao/seat-117") == "/callcenter/qingdao"
    assert label("/outlet/OUT-0042") == "/outlet/OUT-0042"
    assert label("/outlet/OUT-0043") == "/outlet/*"
    assert label("/callcenter/qingdao/seat-9") == "/callcenter/qingdao"
    assert label(None) == "(none)"
    with pytest.raises(ValueError):
        metrics.SourceLabels(depth=0)


@pytest.fixture
def log_lines():
    stream = io.StringIO()
    handler = logs.configure("json", "INFO", stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logging.getLogger().removeHandler(handler)


def test_every_log_line_about_an_event_names_the_event_its_case_and_its_source(engine: Engine, log_lines):
    with client_for(engine) as c:
        c.post("/events/batch", content=orjson.dumps(STORY[:2]), headers={"content-type": BATCH})
        c.post("/events", content=orjson.dumps(STORY[2]), headers={"content-type": STRUCTURED})
        c.post("/events", content=orjson.dumps(BAD), headers={"content-type": STRUCTURED})
        c.get("/cases/CASE-1")
    lines = log_lines()
    rejected = next(line for line in lines if line["message"].startswith("event rejected"))
    assert rejected["level"] == "WARNING"
    assert (rejected["event_id"], rejected["case_id"], rejected["source"]) == ("cb-bad", "CASE-9", "/callback/desk-4")
    assert rejected["quarantine_id"] >= 1 and "data.reached" in rejected["message"]
    recorded = next(line for line in lines if line["message"] == "event recorded")
    assert (recorded["event_id"], recorded["case_id"], recorded["source"]) == (STORY[2]["id"], "CASE-1", "/outlet/OUT-1")
    access = [line for line in lines if line["logger"] == "closedloop.access"]
    single = next(line for line in access if line["status"] == 202 and line["path"] == "/events")
    assert single["event_id"] == STORY[2]["id"] and single["case_id"] == "CASE-1"
    assert single["request_id"] == recorded["request_id"]
    case = next(line for line in access if line["path"] == "/cases/CASE-1")
    assert case["case_id"] == "CASE-1" and case["route"] == "/cases/{case_id}" and case["duration_ms"] >= 0
    batch = next(line for line in lines if line["message"] == "batch recorded")
    assert batch["recorded"] == 2
    # the key's name is logged, never the key
    assert all("clk_" not in json.dumps(line) for line in lines)
