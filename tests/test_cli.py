"""The `closedloop` command as a newcomer runs it: a real server on loopback, real files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

EXE = [sys.executable, "-m", "closedloop.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(EXE + args, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CLOSEDLOOP_NO_PROGRESS": "1", **env})


def test_demo_ingests_over_http_and_reports_the_loop_and_controls(tmp_path: Path):
    done = run(["demo", "--no-serve", "--port", str(free_port()), "--days", "3", "--calls-per-day", "100"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "0 rejected" in done.stderr
    assert "API keys made for this demo" in done.stdout and "clk_" in done.stdout
    for words in ("The loop as of", "recorded", "handled", "reviewed", "fed_back", "Three controls",
                  "complaint", "dissatisfaction", "omission"):
        assert words in done.stdout, words
    assert (tmp_path / "data" / "demo.db").exists()


def test_generate_ingest_replay_and_status_on_one_database(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/ops.db"
    events = tmp_path / "events.jsonl"
    gen = run(["generate", "--days", "2", "--calls-per-day", "60", "--end", "2026-11-01T00:00:00Z",
               "-o", str(events)], tmp_path)
    assert gen.returncode == 0, gen.stderr
    with events.open("a") as fh:
        fh.write("this line is not json\n")
    ingest = run(["ingest", str(events)], tmp_path, CLOSEDLOOP_DATABASE_URL=url)
    assert ingest.returncode == 2  # one line rejected: said so, and kept
    assert "1 rejected into the quarantine" in ingest.stderr
    status = json.loads(run(["status"], tmp_path, CLOSEDLOOP_DATABASE_URL=url).stdout)
    assert status["quarantine_open"] == 1 and set(status["view_lag"].values()) == {0}  # every view current
    live = status["loop"]
    replay = run(["replay"], tmp_path, CLOSEDLOOP_DATABASE_URL=url)
    assert replay.returncode == 0, replay.stderr
    assert "events/s" in replay.stderr
    rebuilt = json.loads(replay.stdout)
    assert {k: v for k, v in rebuilt.items() if k != "as_of"} == {k: v for k, v in live.items() if k != "as_of"}
    past = run(["replay", "--as-of", "2026-10-31T12:00:00Z"], tmp_path, CLOSEDLOOP_DATABASE_URL=url)
    assert past.returncode == 0, past.stderr
    assert json.loads(past.stdout)["as_of"] == "2026-10-31T12:00:00.000Z"


def test_a_load_of_history_with_the_views_deferred_ends_with_the_same_views(tmp_path: Path):
    events = tmp_path / "events.jsonl"
    gen = run(["generate", "--days", "3", "--calls-per-day", "80", "--end", "2026-11-01T00:00:00Z",
               "-o", str(events)], tmp_path)
    assert gen.returncode == 0, gen.stderr
    statuses = []
    for name, extra in (("batch-by-batch", []), ("deferred", ["--defer-views"])):
        url = f"sqlite:///{tmp_path}/{name}.db"
        done = run(["ingest", str(events), "--batch", "500", *extra], tmp_path, CLOSEDLOOP_DATABASE_URL=url,
                   CLOSEDLOOP_REPLAY_WORKERS="2")
        assert done.returncode == 0, done.stderr
        status = json.loads(run(["status"], tmp_path, CLOSEDLOOP_DATABASE_URL=url).stdout)
        assert set(status["view_lag"].values()) == {0}
        statuses.append(status)
    assert "views built from" in done.stderr
    assert statuses[0]["loop"]["cases"] > 100
    assert ({k: v for k, v in statuses[1]["loop"].items() if k != "as_of"}
            == {k: v for k, v in statuses[0]["loop"].items() if k != "as_of"})
    import sqlite3

    def rows(name: str) -> list:
        with sqlite3.connect(tmp_path / f"{name}.db") as conn:
            return [sorted(map(repr, conn.execute(f"SELECT * FROM {t}"))) for t in ("loop_items", "loop_spans")]

    assert rows("deferred") == rows("batch-by-batch")


def test_serve_answers_on_the_port_it_is_given(tmp_path: Path):
    port = free_port()
    db = f"sqlite:///{tmp_path}/s.db"
    key = run(["keys", "add", "ops", "--role", "operator", "--database", db], tmp_path)
    assert key.returncode == 0, key.stderr
    secret = key.stdout.strip()
    proc = subprocess.Popen(EXE + ["serve", "--port", str(port), "--database", db],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/health",
                                                 headers={"Authorization": f"Bearer {secret}"})
                with urllib.request.urlopen(request, timeout=1) as r:
                    assert json.loads(r.read())["status"] == "ok"
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the server did not answer")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_bad_database_url_is_explained_not_a_traceback(tmp_path: Path):
    r = run(["status"], tmp_path, CLOSEDLOOP_DATABASE_URL="mysql://nowhere/db")
    assert r.returncode == 1
    assert "is not understood" in r.stderr and "Traceback" not in r.stderr


def test_statement_prints_the_settlement_of_a_period_and_one_outlets_lines_as_csv(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/settle.db"
    events = tmp_path / "events.jsonl"
    assert run(["generate", "--days", "3", "--calls-per-day", "60", "--end", "2026-11-01T00:00:00Z",
                "-o", str(events)], tmp_path).returncode == 0
    assert run(["ingest", str(events)], tmp_path, CLOSEDLOOP_DATABASE_URL=url).returncode == 0
    done = run(["statement", "--period", "2026-10", "--as-of", "2026-11-05T00:00:00Z"], tmp_path,
               CLOSEDLOOP_DATABASE_URL=url)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["period"] == "2026-10" and out["total"]["services"] > 0
    busiest = max(out["statements"], key=lambda s: s["services"])
    lines = run(["statement", "--period", "2026-10", "--as-of", "2026-11-05T00:00:00Z", "--outlet",
                 busiest["outlet_id"], "--csv"], tmp_path, CLOSEDLOOP_DATABASE_URL=url).stdout.splitlines()
    assert lines[0].startswith("outlet_id,case_id,kind,job")
    assert sum(1 for line in lines[1:] if ",service," in line) == busiest["services"]
    bad = run(["statement", "--period", "October"], tmp_path, CLOSEDLOOP_DATABASE_URL=url)
    assert bad.returncode == 2 and "not a period" in bad.stderr and "Traceback" not in bad.stderr
