"""Kafka as an operator runs it: the commands, and the lag on the API."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import orjson
import pytest

from closedloop.consumers import kafka as binding
from closedloop.app.engine import Engine

from conftest import client_for
from test_cli import run
from test_kafka_consume import consume, new_topic, produce, read_topic, story

pytestmark = pytest.mark.kafka


def test_the_api_shows_lag_per_partition_and_the_publishers_position(
        database_url: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch):
    topic = new_topic(kafka_bootstrap, 2)
    engine = Engine.open(database_url)
    produce(kafka_bootstrap, topic, story("CASE-1", "CALL-1"))
    monkeypatch.setenv(binding.BOOTSTRAP_ENV, kafka_bootstrap)
    with client_for(engine, "operator") as client:
        before = client.get("/kafka/lag", params={"topic": topic})
        assert before.status_code == 200
        assert before.json()["total_lag"] == 6
        consume(engine, kafka_bootstrap, [topic])
        after = client.get("/kafka/lag", params={"topic": topic}).json()
        assert after["total_lag"] == 0 and sum(p["position"] or 0 for p in after["partitions"]) == 6
        assert after["publisher"] == {"position": 0, "log_head": 6, "behind": 6, "routes": after["publisher"]["routes"]}
    monkeypatch.setenv(binding.BOOTSTRAP_ENV, "127.0.0.1:1")  # brokers away: positions still shown
    with client_for(engine, "operator") as client:  # the API reads its settings when it is made
        away = client.get("/kafka/lag", params={"topic": topic}).json()
        assert "could not ask the brokers" in away["error"] and away["total_lag"] is None
        assert sum(p["position"] or 0 for p in away["partitions"]) == 6
    engine.close()


def test_consume_publish_and_kafka_lag_commands(kafka_bootstrap: str, tmp_path: Path):
    url = f"sqlite:///{tmp_path}/ops.db"
    topic = new_topic(kafka_bootstrap, 2)
    alerts, prefix = f"alerts-{uuid.uuid4().hex[:8]}", f"fb-{uuid.uuid4().hex[:8]}."
    routed = story("CASE-1", "CALL-1") + [
        {**story("CASE-1", "CALL-1")[0], "id": "fb-1", "type": "feedback.routed", "subject": "FB-1",
         "source": "/quality/router",
         "data": {"case_id": "CASE-1", "department": "design", "summary": "door hinge"}}]
    produce(kafka_bootstrap, topic, routed)
    env = {"CLOSEDLOOP_DATABASE_URL": url, binding.BOOTSTRAP_ENV: kafka_bootstrap,
           "CLOSEDLOOP_KAFKA_ALERTS_TOPIC": alerts, "CLOSEDLOOP_KAFKA_FEEDBACK_PREFIX": prefix,
           "CLOSEDLOOP_LEAK_ALERTS": "0"}
    consumed = run(["consume", "--topic", topic, "--until-idle"], tmp_path, **env)
    assert consumed.returncode == 0, consumed.stderr
    assert "7 message(s) read: 7 recorded, 0 already recorded, 0 quarantined" in consumed.stderr
    published = run(["publish", "--until-idle"], tmp_path, **env)
    assert published.returncode == 0, published.stderr
    assert f"1 to {prefix}design" in published.stderr
    [message] = read_topic(kafka_bootstrap, f"{prefix}design", 1)
    assert orjson.loads(message.value)["id"] == "fb-1"
    lag = run(["kafka-lag", "--topic", topic], tmp_path, **env)
    report = json.loads(lag.stdout)
    assert report["total_lag"] == 0 and report["publisher"]["behind"] == 0
    assert json.loads(run(["consume", "--status", "--topic", topic], tmp_path, **env).stdout) == report


def test_kafka_commands_without_brokers_say_how_to_give_them(tmp_path: Path):
    r = run(["consume"], tmp_path, CLOSEDLOOP_KAFKA_BOOTSTRAP="")
    assert r.returncode == 1 and "CLOSEDLOOP_KAFKA_BOOTSTRAP" in r.stderr and "Traceback" not in r.stderr
    r = run(["consume", "--bootstrap", "localhost"], tmp_path)
    assert r.returncode == 2 and "is not host:port" in r.stderr and "Traceback" not in r.stderr
    r = run(["consume", "--bootstrap", "localhost:9092", "--member", "3/2"], tmp_path)
    assert r.returncode == 2 and "'3/2' is not k/n" in r.stderr and "Traceback" not in r.stderr
