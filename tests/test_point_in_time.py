"""Two clocks: the API's `as_of` (world time) and `known_at` (recorded time) agree with
`closedloop replay --as-of/--known-at` on a log that was backfilled late and out of order."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import orjson

from closedloop.domain.facts import iso, to_ms
from closedloop.app.engine import Engine, feed
from closedloop.simulation.workload import WorkloadSpec, generate

from conftest import client_for

END = datetime(2026, 11, 1, tzinfo=UTC)


def test_api_and_replay_agree_on_a_late_out_of_order_backfill(database_url: str, tmp_path):
    events = list(generate(WorkloadSpec(seed=8, days=4, calls_per_day=80, outlets=12, regions=3, end=END)))
    rng = random.Random(2)
    rng.shuffle(events)
    # recorded in three deliveries, the last two days after the world had moved on
    clock = [to_ms(END + timedelta(hours=1))]
    engine = Engine.open(database_url, clock=lambda: clock[0])
    deliveries = [events[: len(events) // 3], events[len(events) // 3 : 2 * len(events) // 3],
                  events[2 * len(events) // 3 :]]
    known = []
    for part in deliveries:
        feed(engine, part, batch_size=250)
        known.append(clock[0])
        clock[0] += 2 * 86_400_000
    api = client_for(engine, "auditor")
    env = {**os.environ, "CLOSEDLOOP_NO_PROGRESS": "1", "CLOSEDLOOP_DATABASE_URL": database_url}
    moments = [END - timedelta(days=3, hours=5), END - timedelta(days=1), END + timedelta(days=2)]
    for at in moments:
        for known_at in (None, known[0], known[1]):
            params = {"as_of": iso(to_ms(at))}
            args = ["replay", "--as-of", iso(to_ms(at))]
            if known_at is not None:
                params["known_at"] = iso(known_at)
                args += ["--known-at", iso(known_at)]
            answer = api.get("/loop/summary", params=params).json()
            replayed = subprocess.run([sys.executable, "-m", "closedloop.cli", *args], capture_output=True,
                                      text=True, env=env, timeout=120)
            assert replayed.returncode == 0, replayed.stderr
            replayed_summary = json.loads(replayed.stdout)
            for key in ("cases", "open", "leaks", "closed_loops"):
                assert answer[key] == replayed_summary[key], (at, known_at, key)
    # what was known after the first delivery is less than what is known now
    later = api.get("/loop/summary", params={"as_of": iso(to_ms(END + timedelta(days=2)))}).json()
    early = api.get("/loop/summary", params={"as_of": iso(to_ms(END + timedelta(days=2))),
                                             "known_at": iso(known[0])}).json()
    assert early["cases"] < later["cases"]
    leaks_then = api.get("/loop/leaks", params={"as_of": iso(to_ms(END)), "known_at": iso(known[0])}).json()
    assert leaks_then["known_at"] == iso(known[0])
    controls_then = api.get("/controls", params={"as_of": iso(to_ms(END)), "known_at": iso(known[1])})
    assert controls_then.status_code == 200
    # what was known after the second delivery is what an engine told only those two knows
    told_less = Engine.open(f"sqlite:///{tmp_path}/two-deliveries.db", clock=lambda: known[1])
    for part in deliveries[:2]:
        feed(told_less, part, batch_size=250)
    reference = client_for(told_less, "auditor").get("/controls", params={"as_of": iso(to_ms(END))}).json()
    answer = orjson.loads(controls_then.content)
    assert answer["known_at"] == iso(known[1]) and reference["total"]["services"] > 0
    assert {k: v for k, v in answer.items() if k != "known_at"} == reference
    told_less.close()
    engine.close()
