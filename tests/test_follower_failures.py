"""One failure stops only itself: a view or reactor that fails on a stored fact stops there alone,
keeping the error, the fact's id and its position; appends and every other follower go on, and
after a fix it resumes where it stopped."""

from __future__ import annotations

from typing import Sequence

from closedloop.app.engine import Engine
from closedloop.domain.facts import Fact
from closedloop.domain.policy import LoopPolicy
from closedloop.log.storage import Tx
from closedloop.projections.leaks import summary

from conftest import event, registration


class Fragile:
    """A view that records the cases it saw, and cannot take the case named `poison` until fixed."""

    name = "fragile"

    def __init__(self, poison: str) -> None:
        self.poison = poison
        self.fixed = False

    def fingerprint(self) -> str:
        return "fragile-1"

    def tables(self) -> list[str]:
        return ["fragile_seen"]

    def create_statements(self) -> list[str]:
        return ["CREATE TABLE fragile_seen (subject TEXT NOT NULL, position {bigint} NOT NULL)"]

    def apply(self, tx: Tx, facts: Sequence[Fact]) -> None:
        for f in facts:
            if f.subject == self.poison and not self.fixed:
                raise ValueError(f"cannot take {f.subject}")
            tx.execute(f"INSERT INTO fragile_seen (subject, position) VALUES ({tx.q}, {tx.q})", [f.subject, f.position])


def registered(*cases: str) -> list[dict]:
    return [event("case.registered", c, "2026-10-30T08:10:00Z", registration(f"CALL-{c}"), id=f"reg-{c}")
            for c in cases]


def seen(engine: Engine) -> list[str]:
    with engine.storage.reading() as tx:
        return [r["subject"] for r in tx.all("SELECT subject FROM fragile_seen ORDER BY position")]


def state_of(engine: Engine, kind: str, name: str):
    return next(f for f in engine.followers() if f.kind == kind and f.name == name)


def test_a_view_failing_on_a_fact_stops_alone_there_and_resumes_after_a_fix(database_url: str):
    fragile = Fragile(poison="CASE-BAD")
    engine = Engine.open(database_url, policy=LoopPolicy(), reactors=[], extra_views=[fragile])
    try:
        # given two good cases and a bad one between them, in one batch
        taken = engine.submit(registered("CASE-1", "CASE-BAD", "CASE-2"))
        # then the producer is told all three were taken
        assert (taken.accepted, taken.rejected) == (3, [])
        # and the fragile view stopped at the fact before the bad one, with why and where
        bad = state_of(engine, "view", "fragile")
        assert bad.state == "failed" and bad.position == 1
        assert bad.failed_position == 2 and bad.failed_fact == "reg-CASE-BAD"
        assert "cannot take CASE-BAD" in bad.error
        assert seen(engine) == ["CASE-1"]
        # while every other view took all three
        loop = state_of(engine, "view", engine.loop.name)
        assert loop.state == "running" and loop.position == 3 and loop.lag == 0
        assert summary(engine.storage, engine.clock())["cases"] == 3

        # when more events come, they are taken and the other views go on; the stopped one waits
        assert engine.submit(registered("CASE-3")).accepted == 1
        assert summary(engine.storage, engine.clock())["cases"] == 4
        waiting = state_of(engine, "view", "fragile")
        assert (waiting.state, waiting.position, waiting.lag) == ("failed", 1, 3)
        assert seen(engine) == ["CASE-1"]

        # when the fault is fixed and the view resumed, it takes everything from where it stopped
        fragile.fixed = True
        assert engine.resume("fragile") == 1
        again = state_of(engine, "view", "fragile")
        assert (again.state, again.position, again.error, again.failed_fact) == ("running", 4, None, None)
        assert seen(engine) == ["CASE-1", "CASE-BAD", "CASE-2", "CASE-3"]
    finally:
        engine.close()


class Touchy:
    """A reactor that answers each registration with nothing, and cannot take `poison`."""

    name = "touchy"

    def __init__(self, poison: str) -> None:
        self.poison = poison

    def fingerprint(self) -> str:
        return "touchy-1"

    def tables(self) -> list[str]:
        return []

    def create_statements(self) -> list[str]:
        return []

    def react(self, tx: Tx, facts: Sequence[Fact]) -> list[Fact]:
        if any(f.subject == self.poison for f in facts):
            raise RuntimeError(f"touchy about {self.poison}")
        return []

    def due(self, tx: Tx, now: int) -> list[Fact]:
        return []


def test_a_reactor_failing_on_a_fact_stops_alone_and_the_views_and_appends_go_on(database_url: str):
    touchy = Touchy(poison="CASE-BAD")
    engine = Engine.open(database_url, policy=LoopPolicy(), reactors=[touchy])
    try:
        assert engine.submit(registered("CASE-1")).accepted == 1
        assert engine.submit(registered("CASE-BAD", "CASE-2")).accepted == 2
        stopped = state_of(engine, "reactor", "touchy")
        assert (stopped.state, stopped.position, stopped.failed_position, stopped.failed_fact) == \
            ("failed", 1, 2, "reg-CASE-BAD")
        assert "touchy about CASE-BAD" in stopped.error
        # the views took every fact, the stopped reactor's included
        assert summary(engine.storage, engine.clock())["cases"] == 3
        # and the passing of time asks nothing of a stopped reactor
        assert engine.tick() == 0
        assert state_of(engine, "reactor", "touchy").state == "failed"
    finally:
        engine.close()


def test_an_outlet_whose_capacity_no_database_column_holds_stops_only_what_reads_it(database_url: str):
    # the fact that once made every later POST answer 500 and stopped every view
    engine = Engine.open(database_url, policy=LoopPolicy())
    try:
        outlet = event("outlet.registered", "OUT-HUGE", "2026-10-30T08:00:00Z",
                       {"name": "Huge", "tier": "center", "regions": ["R01"], "product_lines": ["refrigerator"],
                        "daily_capacity": 2 ** 63}, source="/hq/network", id="huge-outlet")
        taken = engine.submit([outlet])
        if taken.rejected:
            # the contract may refuse it at the door (bounded numbers): then it never reaches a follower
            assert any("daily_capacity" in str(r.to_json()) for r in taken.rejected)
            return
        # accepted: the followers that cannot hold it stopped, named; intake and the loop go on
        failed = [f for f in engine.followers() if f.state == "failed"]
        assert failed and all(f.failed_fact == "huge-outlet" for f in failed)
        assert engine.submit(registered("CASE-1", "CASE-2")).accepted == 2
        assert summary(engine.storage, engine.clock())["cases"] == 2
        assert state_of(engine, "view", engine.loop.name).state == "running"
    finally:
        engine.close()


def test_the_followers_command_names_what_stopped_where_and_resumes_it(tmp_path):
    from click.testing import CliRunner

    from closedloop.cli.main import cli

    url = f"sqlite:///{tmp_path}/followers.db"
    fragile = Fragile(poison="CASE-BAD")
    engine = Engine.open(url, policy=LoopPolicy(), reactors=[], extra_views=[fragile])
    try:
        engine.submit(registered("CASE-1", "CASE-BAD", "CASE-2"))
    finally:
        engine.close()
    runner = CliRunner()

    listed = runner.invoke(cli, ["followers", "--json", "--database", url])
    assert listed.exit_code == 3, listed.output  # a follower is stopped: monitors see it
    import json

    rows = {(r["kind"], r["name"]): r for r in json.loads(listed.stdout)}
    assert rows[("view", "fragile")] | {"failed_at": None, "error": None} == {
        "kind": "view", "name": "fragile", "position": 1, "lag": 2, "state": "failed", "error": None,
        "failed_position": 2, "failed_fact": "reg-CASE-BAD", "failed_at": None}
    assert "cannot take CASE-BAD" in rows[("view", "fragile")]["error"]
    assert rows[("view", "loop")]["state"] == "running" and rows[("view", "loop")]["lag"] == 0

    table = runner.invoke(cli, ["followers", "--database", url])
    assert "view       fragile" in table.stdout and "failed at position 2 (event reg-CASE-BAD)" in table.stdout

    assert runner.invoke(cli, ["followers", "resume", "nothing-such", "--database", url]).exit_code == 1
    resumed = runner.invoke(cli, ["followers", "resume", "fragile", "--kind", "view", "--database", url])
    assert resumed.exit_code == 0, resumed.output
    after = runner.invoke(cli, ["followers", "--json", "--database", url])
    assert after.exit_code == 0
    assert {r["name"]: r["state"] for r in json.loads(after.stdout)}["fragile"] == "running"


def test_health_and_metrics_say_degraded_and_name_the_stopped_follower(tmp_path):
    from fastapi.testclient import TestClient

    from closedloop.api.app import create_app

    fragile = Fragile(poison="CASE-BAD")
    engine = Engine.open(f"sqlite:///{tmp_path}/health.db", policy=LoopPolicy(), reactors=[], extra_views=[fragile])
    try:
        client = TestClient(create_app(engine, follow_interval=None, auth=False))
        assert client.get("/health").json()["status"] == "ok"
        answer = client.post("/events/batch", content=__import__("json").dumps(registered("CASE-1", "CASE-BAD")),
                             headers={"content-type": "application/cloudevents-batch+json"})
        # the producer's events are taken whatever a follower makes of them
        assert answer.status_code == 202 and answer.json()["accepted"] == 2
        health = client.get("/health")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "degraded"
        [stopped] = body["stopped"]
        assert (stopped["kind"], stopped["name"], stopped["position"], stopped["failed_position"],
                stopped["failed_fact"]) == ("view", "fragile", 1, 2, "reg-CASE-BAD")
        assert "cannot take CASE-BAD" in stopped["error"]
        from datetime import UTC, datetime, timedelta

        assert abs(datetime.fromisoformat(stopped["failed_at"]) - datetime.now(UTC)) < timedelta(minutes=5)
        metrics = client.get("/metrics").text
        assert 'closedloop_follower_failed{kind="view",name="fragile"} 1.0' in metrics
        assert 'closedloop_follower_failed{kind="view",name="loop"} 0.0' in metrics
        assert 'closedloop_follower_lag_events{kind="view",name="fragile"} 1.0' in metrics
        # after a fix and a resume, healthy again
        fragile.fixed = True
        engine.resume("fragile")
        assert client.get("/health").json()["status"] == "ok"
    finally:
        engine.close()
