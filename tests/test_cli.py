"""The `closedloop` command as a newcomer runs it: a real server on loopback, real files.

The quick checks go through click's CliRunner, in this process; what only a real process
shows (a closed pipe, two demos on one port, a served database) runs the command itself."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from importlib.metadata import version
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from closedloop.cli.main import cli

EXE = [sys.executable, "-m", "closedloop.cli"]
CHINESE = re.compile(r"[\u4e00-\u9fff]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: list[str], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(EXE + args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "CLOSEDLOOP_NO_PROGRESS": "1", **env})


def invoke(args: list[str], **env: str):
    return CliRunner().invoke(cli, args, env=env or None)


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {lines}"
    return lines[0]


def every_command(group: click.Group = cli, path: str = "closedloop"):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from every_command(command, f"{path} {name}")
        yield f"{path} {name}", command


# --- the quick ones: CliRunner, no database -----------------------------------------------------
@pytest.mark.fast
def test_version_is_the_installed_one():
    done = invoke(["--version"])
    assert done.exit_code == 0
    assert done.stdout.strip() == f"closedloop {version('closedloop')}"


@pytest.mark.fast
def test_the_top_level_help_lists_every_command_and_shows_examples():
    done = invoke(["--help"])
    assert done.exit_code == 0
    assert "Examples:" in done.stdout
    assert "closedloop demo --no-serve --port 8001" in done.stdout
    for name in ("serve", "demo", "replay", "ingest", "generate", "verify", "checkpoint", "keys", "statement",
                 "status", "consume", "kafka-lag", "publish", "config"):
        assert re.search(rf"^\s+{re.escape(name)}\s", done.stdout, re.M), name


@pytest.mark.fast
def test_every_option_has_help_text_and_shows_its_default():
    missing = []
    for path, command in every_command():
        for param in command.params:
            if not isinstance(param, click.Option) or param.name == "help":
                continue
            if not (param.help or "").strip():
                missing.append(f"{path} {param.opts[0]}: no help")
            if not param.show_default:
                missing.append(f"{path} {param.opts[0]}: default not shown")
    assert not missing, "\n".join(missing)
    # and help shows it: a default that the environment may override says so
    shown = " ".join(invoke(["serve", "--help"]).stdout.split())
    assert "$CLOSEDLOOP_PORT, else 8000" in shown
    assert "$CLOSEDLOOP_DATABASE_URL, else sqlite:///data/closedloop.db" in shown
    assert "sqlite:///data/demo.db" in " ".join(invoke(["demo", "--help"]).stdout.split())


@pytest.mark.fast
@pytest.mark.parametrize("args, env, says", [
    (["demo", "--port", "abc"], {}, '"abc" is not a port number'),
    (["serve", "--port", "70000"], {}, '"70000" is not a port number'),
    (["serve"], {"CLOSEDLOOP_PORT": "eighty"}, "CLOSEDLOOP_PORT"),
    (["status"], {"CLOSEDLOOP_HANDLE_WITHIN": "30x"}, '"30x" is not a duration'),
    (["status", "--database", "mysql://nowhere/db"], {}, "is not a database URL"),
    (["status"], {"CLOSEDLOOP_DATABASE_URL": "mysql://nowhere/db"}, "CLOSEDLOOP_DATABASE_URL"),
    (["generate", "--days", "1"], {"CLOSEDLOOP_NO_PROGRESS": "maybe"}, '"maybe" is not on or off'),
    (["serve"], {"CLOSEDLOOP_AUTH": "nope"}, "CLOSEDLOOP_AUTH"),
    (["replay", "--as-of", "yesterday"], {}, "'yesterday' is not a date-time"),
    (["statement", "--period", "October"], {}, "not a period"),
    (["consume", "--member", "3/2"], {}, "is not k/n"),
    (["generate", "--days", "0"], {}, "'0' is not a whole number"),
    (["keys", "add"], {}, "Missing argument 'NAME'"),
    (["status", "--no-such-flag"], {}, "No such option"),
])
def test_a_bad_value_is_one_line_in_english_and_chinese_and_exit_2(args, env, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = invoke(args, **env)
    assert done.exit_code == 2, (done.stdout, done.stderr)
    line = one_line(done.stderr)
    assert says in line and "Traceback" not in line
    assert line.startswith("closedloop ")
    assert CHINESE.search(line), line
    assert done.stdout == ""
    assert not (tmp_path / "data").exists()  # nothing was opened, let alone made


@pytest.mark.fast
def test_config_says_where_each_value_came_from_and_hides_secrets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = invoke(["config", "--json", "--host", "0.0.0.0", "--database", "postgresql://app:hunter2@db:5432/prod"],
                  CLOSEDLOOP_PORT="9001", CLOSEDLOOP_KAFKA_SASL_PASSWORD="s3cret")
    assert done.exit_code == 0, done.stderr
    rows = {r["variable"]: r for r in json.loads(done.stdout)}
    assert (rows["CLOSEDLOOP_PORT"]["value"], rows["CLOSEDLOOP_PORT"]["source"]) == ("9001", "environment")
    assert (rows["CLOSEDLOOP_HOST"]["value"], rows["CLOSEDLOOP_HOST"]["source"]) == ("0.0.0.0", "flag")
    assert (rows["CLOSEDLOOP_HANDLE_WITHIN"]["value"], rows["CLOSEDLOOP_HANDLE_WITHIN"]["source"]) == ("48h", "default")
    assert rows["CLOSEDLOOP_KAFKA_SASL_PASSWORD"]["value"] == "********"
    assert rows["CLOSEDLOOP_DATABASE_URL"]["value"] == "postgresql://app:***@db:5432/prod"
    assert all(r["description"] for r in rows.values())
    assert "s3cret" not in done.stdout and "hunter2" not in done.stdout
    table = invoke(["config"], CLOSEDLOOP_PORT="9001")
    assert table.exit_code == 0
    assert re.search(r"^CLOSEDLOOP_PORT\s+9001\s+environment\s", table.stdout, re.M)
    assert not (tmp_path / "data").exists()  # config reads no database


@pytest.mark.fast
@pytest.mark.parametrize("env, flags, shown", [
    ({}, [], True),
    ({"CLOSEDLOOP_NO_PROGRESS": "off"}, [], True),
    ({"CLOSEDLOOP_NO_PROGRESS": "1"}, [], False),
    ({"CLOSEDLOOP_NO_PROGRESS": "true"}, [], False),
    ({"CLOSEDLOOP_NO_PROGRESS": "YES"}, [], False),
    ({"CLOSEDLOOP_NO_PROGRESS": "On"}, [], False),
    ({"CLOSEDLOOP_NO_PROGRESS": "0"}, ["--no-progress"], False),
])
def test_progress_bars_show_unless_no_progress_says_otherwise(env, flags, shown, tmp_path):
    out = tmp_path / "w.jsonl"
    done = invoke(["generate", "--days", "1", "--calls-per-day", "20", "-o", str(out), *flags], **env)
    assert done.exit_code == 0, done.stderr
    assert ("generate:" in done.stderr) is shown, done.stderr
    assert f"events written to {out}" in done.stderr


# --- the database: never made by a command that only reads ---------------------------------------
READ_ONLY = [["status"], ["verify"], ["statement", "--period", "2026-10"], ["replay"],
             ["replay", "--as-of", "2026-10-31T00:00:00Z"], ["checkpoint"], ["keys", "list"],
             ["keys", "revoke", "ops"], ["kafka-lag"], ["consume", "--status"]]


def _schema_exists(url: str) -> bool:
    import psycopg

    schema = url.split("schema=")[1]
    with psycopg.connect(url.split("?")[0]) as conn:
        return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone() is not None


def test_a_command_that_only_reads_never_makes_a_database(database_url: str, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in READ_ONLY:
        done = invoke([*args, "--database", database_url])
        assert done.exit_code == 1, (args, done.stdout, done.stderr)
        line = one_line(done.stderr)
        assert "no closedloop database at" in line and CHINESE.search(line), line
        assert "Traceback" not in line
    if database_url.startswith("sqlite"):
        assert not (tmp_path / "closedloop.db").exists()
    else:
        assert not _schema_exists(database_url)
    # a command that writes makes it; then the same reads answer
    assert invoke(["keys", "add", "ops", "--database", database_url]).exit_code == 0
    status = invoke(["status", "--database", database_url])
    assert status.exit_code == 0, status.stderr
    assert json.loads(status.stdout)["log_head"] == 0


# --- a real process -------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path):
    proc = subprocess.Popen(EXE + ["generate", "--days", "5", "--calls-per-day", "400"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = proc.stdout.readline()
        proc.stdout.close()  # `| head -1`
        assert json.loads(first)["specversion"] == "1.0"
        proc.wait(timeout=60)
        stderr = proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode in (0, 141), (proc.returncode, stderr)
    assert stderr == ""


def test_demo_ingests_over_http_and_reports_the_loop_and_controls(tmp_path: Path):
    done = run(["demo", "--no-serve", "--port", str(free_port()), "--days", "3", "--calls-per-day", "100"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "0 rejected" in done.stderr
    assert "API keys made for this demo" in done.stdout and "clk_" in done.stdout
    for words in ("The loop as of", "recorded", "handled", "reviewed", "fed_back", "Three controls",
                  "complaint", "dissatisfaction", "omission"):
        assert words in done.stdout, words
    assert (tmp_path / "data" / "demo.db").exists()


def test_demo_keeps_its_data_where_the_settings_say(tmp_path: Path):
    mine = tmp_path / "mine.db"
    done = run(["demo", "--no-serve", "--port", str(free_port()), "--days", "1", "--calls-per-day", "40"], tmp_path,
               CLOSEDLOOP_DATABASE_URL=f"sqlite:///{mine}")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "data").exists()
    assert _events(mine) > 100


def _wait_for(path: Path, words: str, proc: subprocess.Popen, seconds: float = 90) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if words in text:
            return text
        if proc.poll() is not None:
            pytest.fail(f"the process ended ({proc.returncode}): {text}")
        time.sleep(0.2)
    pytest.fail(f"no {words!r} within {seconds} s: {path.read_text(errors='replace')}")


def _events(db: Path) -> int:
    # closing(): a connection left open would itself count as another process holding the file
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT COUNT(*) FROM closedloop_events").fetchone()[0]


@pytest.mark.timeout(300)
def test_a_second_demo_leaves_the_first_ones_port_and_database_alone(tmp_path: Path):
    port = free_port()
    db = tmp_path / "data" / "demo.db"
    out, err = tmp_path / "first.out", tmp_path / "first.err"
    env = {**os.environ, "CLOSEDLOOP_NO_PROGRESS": "1"}
    first = subprocess.Popen(EXE + ["demo", "--port", str(port), "--days", "1", "--calls-per-day", "40"],
                             cwd=tmp_path, env=env, stdout=out.open("w"), stderr=err.open("w"))
    try:
        _wait_for(err, "The API is up", first)
        analyst = re.search(r"^\s+analyst\s+(\S+)", out.read_text(), re.M).group(1)

        def cases() -> int:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/loop/summary",
                                             headers={"Authorization": f"Bearer {analyst}"})
            with urllib.request.urlopen(request, timeout=10) as r:
                return json.loads(r.read())["cases"]

        before = (db.stat().st_ino, _events(db), cases())
        assert before[1] > 100 and before[2] > 0

        # the same port: refused before it touches anything, with how to choose another
        other_db = tmp_path / "other.db"
        for extra in ([], ["--database", f"sqlite:///{other_db}"]):
            second = run(["demo", "--no-serve", "--port", str(port), "--days", "1", "--calls-per-day", "40", *extra],
                         tmp_path, timeout=60)
            assert second.returncode == 1, second.stderr
            line = one_line(second.stderr)
            assert f"port {port}" in line and "--port" in line and "CLOSEDLOOP_PORT" in line and CHINESE.search(line)
        assert not other_db.exists()

        # another port, but the first demo's database: refused, and the database left alone
        third = run(["demo", "--no-serve", "--port", str(free_port()), "--days", "1", "--calls-per-day", "40"],
                    tmp_path, timeout=60)
        assert third.returncode == 1, third.stderr
        line = one_line(third.stderr)
        assert "in use by another closedloop demo" in line and "--database" in line and CHINESE.search(line)

        assert first.poll() is None  # still serving
        assert (db.stat().st_ino, _events(db), cases()) == before
    finally:
        first.terminate()
        first.wait(timeout=20)


@pytest.mark.timeout(300)
def test_the_demo_does_not_reset_a_database_another_process_has_open(tmp_path: Path):
    made = run(["demo", "--no-serve", "--port", str(free_port()), "--days", "1", "--calls-per-day", "40"], tmp_path)
    assert made.returncode == 0, made.stderr
    db = tmp_path / "data" / "demo.db"
    held = _events(db)
    err = tmp_path / "serve.err"
    serving = subprocess.Popen(EXE + ["serve", "--port", str(free_port()), "--database", "sqlite:///data/demo.db"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err.open("w"))
    try:
        _wait_for(err, "serving on", serving)
        again = run(["demo", "--no-serve", "--port", str(free_port()), "--days", "1", "--calls-per-day", "40"],
                    tmp_path, timeout=60)
        assert again.returncode == 1, again.stderr
        line = one_line(again.stderr)
        assert "open in another process" in line and CHINESE.search(line), line
        assert _events(db) == held
    finally:
        serving.terminate()
        serving.wait(timeout=20)
    # once nobody has it open, the demo starts afresh again
    fresh = run(["demo", "--no-serve", "--port", str(free_port()), "--days", "1", "--calls-per-day", "40"], tmp_path)
    assert fresh.returncode == 0, fresh.stderr


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

    def rows(name: str) -> list:
        with sqlite3.connect(tmp_path / f"{name}.db") as conn:
            return [sorted(map(repr, conn.execute(f"SELECT * FROM {t}"))) for t in ("loop_items", "loop_spans")]

    assert rows("deferred") == rows("batch-by-batch")


@pytest.mark.timeout(120)
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
        # a second server on the same port says so in one line, before it opens anything
        again = run(["serve", "--port", str(port), "--database", f"sqlite:///{tmp_path}/t.db"], tmp_path, timeout=60)
        assert again.returncode == 1
        assert f"port {port}" in one_line(again.stderr)
        assert not (tmp_path / "t.db").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_bad_database_url_is_explained_not_a_traceback(tmp_path: Path):
    r = run(["status"], tmp_path, CLOSEDLOOP_DATABASE_URL="mysql://nowhere/db")
    assert r.returncode == 2
    assert "is not a database URL" in one_line(r.stderr) and "Traceback" not in r.stderr


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


def test_status_only_reads_even_when_a_views_rules_changed(tmp_path: Path):
    from closedloop.app.engine import Engine
    from closedloop.log.followers import FOLLOWERS_TABLE

    from conftest import event, registration

    url = f"sqlite:///{tmp_path}/status.db"
    engine = Engine.open(url)
    engine.submit([event("case.registered", f"CASE-{i}", "2026-10-30T08:10:00Z", registration(f"CALL-{i}"))
                   for i in (1, 2)])
    engine.close()
    # given a loop view built by other rules (as after an upgrade): the next engine would rebuild it
    with closing(sqlite3.connect(f"{tmp_path}/status.db")) as db, db:
        db.execute(f"UPDATE {FOLLOWERS_TABLE} SET fingerprint = 'older rules' WHERE kind = 'view' AND name = 'loop'")
    # when the operator asks for the status
    done = invoke(["status", "--database", url])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["loop"]["cases"] == 2
    # then nothing was rebuilt or rewritten: the view keeps its rows and its recorded rules
    with closing(sqlite3.connect(f"{tmp_path}/status.db")) as db:
        assert db.execute(f"SELECT fingerprint FROM {FOLLOWERS_TABLE} WHERE kind = 'view' AND name = 'loop'"
                          ).fetchone() == ("older rules",)
        assert db.execute("SELECT COUNT(*) FROM loop_items WHERE kind = 'case'").fetchone() == (2,)
