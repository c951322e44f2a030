"""Serve mode: a POST answers once its events are durable, with their positions, without
waiting for the views; a reader who needs its own write passes `min_position` and the view
waits for it (bounded, then 503 with Retry-After); every view answer says the position it
reflects; the background follower survives its own errors."""

from __future__ import annotations

import threading
import time
from typing import Sequence

import orjson
import pytest
from fastapi.testclient import TestClient

from closedloop.api.app import create_app
from closedloop.app.engine import Engine
from closedloop.app.settings import load_settings
from closedloop.domain.facts import Fact
from closedloop.log.storage import Tx

from conftest import event, registration

BATCH = {"content-type": "application/cloudevents-batch+json"}
POSITION = "X-Closedloop-Position"


class Slow:
    """A test view that sleeps on every batch until `gate` opens (a deliberately slow view)."""

    name = "slow"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.applied = 0

    def fingerprint(self) -> str:
        return "slow-1"

    def tables(self) -> list[str]:
        return ["slow_seen"]

    def create_statements(self) -> list[str]:
        return ["CREATE TABLE slow_seen (position {bigint} NOT NULL)"]

    def apply(self, tx: Tx, facts: Sequence[Fact]) -> None:
        self.entered.set()
        while not self.gate.wait(0.01):
            time.sleep(0.01)  # sleeps until the test lets it go on
        for f in facts:
            tx.execute(f"INSERT INTO slow_seen (position) VALUES ({tx.q})", [f.position])
        self.applied += len(facts)


def registered(*cases: str) -> list[dict]:
    return [event("case.registered", c, "2026-10-30T08:10:00Z", registration(f"CALL-{c}"), id=f"reg-{c}")
            for c in cases]


@pytest.fixture
def served(database_url: str):
    """An engine in serve mode with the slow view, behind the API (TestClient: the app's
    lifespan runs, as under uvicorn)."""
    slow = Slow()
    engine = Engine.open(database_url, extra_views=[slow], settings=load_settings(env={}))
    engine.follow_in_background(poll=0.02, tick_every=0.2)
    app = create_app(engine, auth=False, settings=load_settings(env={"CLOSEDLOOP_MIN_POSITION_WAIT": "300ms"}))
    with TestClient(app) as client:
        try:
            yield engine, slow, client
        finally:
            slow.gate.set()
            engine.close()


def test_a_batch_is_answered_once_durable_before_the_views_and_read_back_with_min_position(served):
    engine, slow, client = served
    # when a producer posts a batch while a view is slow
    answer = client.post("/events/batch", content=orjson.dumps(registered("CASE-1", "CASE-2", "CASE-3")),
                         headers=BATCH)
    # then the answer says the events are recorded, with the position of the last one
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["accepted"] == 3 and body["rejected"] == []
    head = body["position"]
    assert head == engine.log.head() and head >= 3
    # and it came back before the slow view applied them (inline, the POST waits for every view)
    assert slow.applied == 0
    assert slow.entered.wait(5), "the background follower never started folding the batch"
    assert slow.applied == 0
    with engine.storage.reading() as tx:
        assert tx.one("SELECT count(*) AS n FROM slow_seen")["n"] == 0

    # when the view goes on, a reader asking for the write's position sees it
    slow.gate.set()
    read = client.get("/loop/summary", params={"min_position": head})
    assert read.status_code == 200, read.text
    assert read.json()["cases"] == 3
    assert int(read.headers[POSITION]) >= head
    assert slow.applied == 3
    # every view route says the position it reflects, with or without min_position
    for path in ("/loop/leaks", "/outlets", "/quality/feedback", "/network/rules"):
        other = client.get(path)
        assert other.status_code == 200, (path, other.text)
        assert int(other.headers[POSITION]) >= head, path
    # within moments the reactors (whose decisions are events too) and the views are all current
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        health = client.get("/health").json()
        if set(health["view_lag"].values()) == {0} and all(f["lag"] == 0 for f in health["followers"]):
            break
        time.sleep(0.02)
    else:
        pytest.fail(f"views and reactors never caught up: {health}")


def test_a_view_that_cannot_reach_min_position_in_time_answers_503_with_retry_after(served):
    engine, slow, client = served
    answer = client.post("/events/batch", content=orjson.dumps(registered("CASE-7")), headers=BATCH)
    assert answer.status_code == 202, answer.text
    head = answer.json()["position"]
    assert slow.entered.wait(5)
    # the slow view is held: the views cannot reach the write's position in 300 ms
    started = time.monotonic()
    read = client.get("/loop/summary", params={"min_position": head})
    waited = time.monotonic() - started
    assert read.status_code == 503, read.text
    assert int(read.headers["Retry-After"]) >= 1
    assert "min_position" not in read.json() and str(head) in read.json()["error"]
    assert 0.25 <= waited < 5, waited
    assert engine.wait_for(head, 0.05) is False
    # a position the log has not reached is refused at once
    ahead = client.get("/loop/summary", params={"min_position": head + 1000})
    assert ahead.status_code == 422 and "head" in ahead.json()["error"]
    # once the view goes on, the same read answers
    slow.gate.set()
    again = client.get("/loop/summary", params={"min_position": head})
    assert again.status_code == 200 and again.json()["cases"] == 1
    assert int(again.headers[POSITION]) >= head


def test_an_error_in_a_round_does_not_stop_the_background_follower(database_url: str):
    engine = Engine.open(database_url, settings=load_settings(env={}))
    follower = engine.follow_in_background(poll=0.02, tick_every=0.2)
    follower.backoff = 0.05
    real = engine.projector.catch_up
    failures = []

    def fails_once(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise RuntimeError("the database went away for a moment")
        return real(*args, **kwargs)

    engine.projector.catch_up = fails_once  # type: ignore[method-assign]
    try:
        head = engine.submit(registered("CASE-9")).head
        # the round failed once, the thread logged it, backed off and went on
        assert engine.wait_for(head, 10), "the views never caught up after the follower's error"
        assert failures == [1] and follower.errors >= 1
        assert "went away" in (follower.last_error or "")
        assert follower.alive
        # and it goes on following what comes next
        later = engine.submit(registered("CASE-10")).head
        assert engine.wait_for(later, 10)
        assert follower.alive
    finally:
        engine.close()
    assert not follower.alive


def test_the_openapi_document_declares_min_position_the_header_and_503(tmp_path):
    engine = Engine.open(f"sqlite:///{tmp_path}/doc.db", settings=load_settings(env={}))
    try:
        spec = create_app(engine, follow_interval=None, auth=False).openapi()
    finally:
        engine.close()
    for path in ("/loop/summary", "/outlets", "/quality/defects/pareto", "/cases/{case_id}"):
        operation = spec["paths"][path]["get"]
        assert "min_position" in {p["name"] for p in operation["parameters"]}, path
        assert POSITION in operation["responses"]["200"]["headers"], path
        assert "Retry-After" in operation["responses"]["503"]["headers"], path
        assert operation["responses"]["503"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/ErrorPublic"), path
    # a CSV list keeps its CSV answer beside the header
    assert "text/csv" in spec["paths"]["/quality/defects/pareto"]["get"]["responses"]["200"]["content"]
