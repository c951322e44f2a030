"""Tamper evidence: an event altered, removed, inserted or moved in the database itself is
caught at its position, on SQLite and PostgreSQL; checkpoints catch a rewritten chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from closedloop.log import chain
from closedloop.app.engine import Engine
from closedloop.log.storage import EVENTS_TABLE

from conftest import event, registration
from test_ingest import STORY


@pytest.fixture
def sealed(engine: Engine) -> Engine:
    engine.submit(STORY)
    engine.submit([event("case.registered", f"CASE-{i}", "2026-10-30T09:00:00Z", registration(f"CALL-{i}"))
                   for i in range(2, 12)])
    assert chain.verify(engine.storage).ok
    return engine


def pos_col(engine: Engine) -> str:
    return "rowid" if engine.storage.dialect == "sqlite" else "notification_id"


def tamper(engine: Engine, sql: str, params: list) -> None:
    with engine.storage.writing() as tx:
        tx.execute(sql.replace("POS", pos_col(engine)), params)


def test_an_untouched_log_verifies(sealed: Engine):
    verdict = chain.verify(sealed.storage)
    events = sum(len(batch) for batch in sealed.log.follow(0))
    assert verdict.ok and verdict.checked == events >= 16 and verdict.head == sealed.log.head()


def test_an_altered_event_is_caught_at_its_position(sealed: Engine):
    row = _row(sealed, 3)  # the completion: its cause decides who must act on it
    forged = row["state"].replace(b'"manufacturing"', b'"usage"')
    assert forged != row["state"]
    tamper(sealed, f"UPDATE {EVENTS_TABLE} SET state = {sealed.storage.q} WHERE POS = 3", [forged])
    verdict = chain.verify(sealed.storage)
    assert not verdict.ok and verdict.position == 3 and "altered" in verdict.problem


def test_a_removed_event_is_caught(sealed: Engine):
    tamper(sealed, f"DELETE FROM {EVENTS_TABLE} WHERE POS = 7", [])
    verdict = chain.verify(sealed.storage)
    assert not verdict.ok and verdict.position == 7 and "removed" in verdict.problem


def test_an_inserted_event_is_caught(sealed: Engine):
    row = _row(sealed, 3)
    q = sealed.storage.q
    tamper(sealed, f"INSERT INTO {EVENTS_TABLE} (POS, originator_id, originator_version, topic, state) "
           f"VALUES (1000, {q}, 99, {q}, {q})", [row["originator_id"], row["topic"], row["state"]])
    verdict = chain.verify(sealed.storage)
    assert not verdict.ok and verdict.position == 1000 and "inserted" in verdict.problem


def test_reordered_events_are_caught(sealed: Engine):
    a, b = _row(sealed, 8), _row(sealed, 9)
    tamper(sealed, f"UPDATE {EVENTS_TABLE} SET state = {sealed.storage.q} WHERE POS = 8", [b["state"]])
    tamper(sealed, f"UPDATE {EVENTS_TABLE} SET state = {sealed.storage.q} WHERE POS = 9", [a["state"]])
    verdict = chain.verify(sealed.storage)
    assert not verdict.ok and verdict.position == 8


def test_a_rewritten_chain_is_caught_by_an_exported_checkpoint(sealed: Engine):
    point = chain.take_checkpoint(sealed.storage, sealed.clock())
    forged = _row(sealed, 2)["state"].replace(b"Wang Li", b"Wang Lu")
    tamper(sealed, f"UPDATE {EVENTS_TABLE} SET state = {sealed.storage.q} WHERE POS = 2", [forged])
    with sealed.storage.writing() as tx:  # the forger rewrites the whole chain to match
        tx.execute(f"DELETE FROM {chain.CHAIN_TABLE}")
    chain.seal_unchained(sealed.storage)
    assert chain.verify(sealed.storage).ok  # consistent with itself...
    verdict = chain.verify(sealed.storage, against=[point])
    assert not verdict.ok and "rewritten since a checkpoint" in verdict.problem  # ...but not with the checkpoint


def test_verify_command_exits_non_zero_on_tampering(sealed: Engine, database_url: str, tmp_path):
    env = {**os.environ, "CLOSEDLOOP_NO_PROGRESS": "1", "CLOSEDLOOP_DATABASE_URL": database_url}
    export = tmp_path / "checkpoints.json"
    cp = subprocess.run([sys.executable, "-m", "closedloop.cli", "checkpoint", "--export", str(export)],
                        capture_output=True, text=True, env=env)
    assert cp.returncode == 0, cp.stderr
    ok = subprocess.run([sys.executable, "-m", "closedloop.cli", "verify", "--checkpoint", str(export)],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
    tamper(sealed, f"UPDATE {EVENTS_TABLE} SET topic = 'case.cancelled' WHERE POS = 5", [])
    bad = subprocess.run([sys.executable, "-m", "closedloop.cli", "verify"], capture_output=True, text=True, env=env)
    assert bad.returncode == 3 and "TAMPERING DETECTED" in bad.stderr and json.loads(bad.stdout)["position"] == 5


def _row(engine: Engine, position: int) -> dict:
    with engine.storage.reading() as tx:
        row = tx.one(f"SELECT originator_id, originator_version, topic, state FROM {EVENTS_TABLE} "
                     f"WHERE {pos_col(engine)} = {tx.q}", [position])
    return {**dict(row), "state": bytes(row["state"])}


def test_auditors_verify_and_take_checkpoints_through_the_api(sealed: Engine):
    from conftest import client_for

    auditor = client_for(sealed, "auditor")
    taken = auditor.post("/audit/checkpoints")
    assert taken.status_code == 201 and taken.json()["position"] == sealed.log.head()
    assert auditor.get("/audit/verify").json()["ok"] is True
    assert [c["position"] for c in auditor.get("/audit/checkpoints").json()] == [sealed.log.head()]
    tamper(sealed, f"UPDATE {EVENTS_TABLE} SET state = {sealed.storage.q} WHERE POS = 1", [b"{}"])
    verdict = auditor.get("/audit/verify").json()
    assert verdict["ok"] is False and verdict["position"] == 1
    assert client_for(sealed, "analyst").get("/audit/verify").status_code == 403
