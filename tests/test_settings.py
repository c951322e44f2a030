"""One place for settings: every CLOSEDLOOP_* variable parsed one way, with one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from closedloop.app.settings import (
    FIELDS, SECRET_SHOWN, Settings, SettingsError, default_settings, describe, load_settings, variable,
)
from closedloop.domain.network import DispatchPolicy
from closedloop.domain.parts import PartsRules
from closedloop.domain.permit import PermitRules
from closedloop.domain.policy import HOUR, MINUTE, LoopPolicy
from closedloop.domain.quality import QualityPolicy

ROOT = Path(__file__).resolve().parent.parent
SWITCHES = [name for name, f in Settings.model_fields.items() if f.annotation in (bool, bool | None)]
ON = ["1", "true", "TRUE", "True", "on", "ON", "On", "yes", "YES", "Yes"]
OFF = ["0", "false", "FALSE", "False", "off", "OFF", "Off", "no", "NO", "No"]


# --- switches -----------------------------------------------------------------------------------
@pytest.mark.fast
@pytest.mark.parametrize("name", SWITCHES)
@pytest.mark.parametrize(("text", "expected"), [(t, True) for t in ON] + [(t, False) for t in OFF])
def test_every_switch_takes_every_spelling_of_on_and_off(name: str, text: str, expected: bool):
    # given a switch spelled any of the accepted ways, in any case
    env = {variable(name): text}
    # when the settings are loaded
    settings = load_settings(env=env)
    # then it means on or off, and the describe row says it came from the environment
    assert getattr(settings, name) is expected
    [row] = [r for r in describe(settings) if r.name == name]
    assert (row.value, row.source) == ("on" if expected else "off", "environment")


@pytest.mark.fast
def test_the_switches_are_the_ones_the_engine_reads():
    # the list above is not empty by accident: these are every on/off setting
    assert set(SWITCHES) == {"reactors", "auto_routing", "auto_penalties", "leak_alerts", "auto_dispatch",
                             "auto_approve_parts", "part_first_level_fallback", "auth", "no_progress", "debug"}


# --- one-line errors ------------------------------------------------------------------------------
@pytest.mark.fast
@pytest.mark.parametrize(("name", "text", "accepts"), [
    ("CLOSEDLOOP_PORT", "abc", "is not a port number (1-65535)"),
    ("CLOSEDLOOP_PORT", "70000", "is not a port number (1-65535)"),
    ("CLOSEDLOOP_PORT", "0", "is not a port number (1-65535)"),
    ("CLOSEDLOOP_HANDLE_WITHIN", "30x", "is not a duration such as 30m, 48h or 30d"),
    ("CLOSEDLOOP_REPEAT_WITHIN", "a month", "is not a duration such as 30m, 48h or 30d"),
    ("CLOSEDLOOP_AUTH", "nope", "is not on or off (1/0, true/false, on/off, yes/no)"),
    ("CLOSEDLOOP_AUTO_DISPATCH", "sometimes", "is not on or off (1/0, true/false, on/off, yes/no)"),
    ("CLOSEDLOOP_NO_PROGRESS", "2", "is not on or off"),
    ("CLOSEDLOOP_DATABASE_URL", "mysql://x", "is not a database URL: use sqlite:///path/to/file.db or postgresql://"),
    ("CLOSEDLOOP_DATABASE_URL", "sqlite:///", "is not a database URL"),
    ("CLOSEDLOOP_DATABASE_URL", "postgresql://127.0.0.1", "is not a database URL"),
    ("CLOSEDLOOP_MAX_BATCH_EVENTS", "many", "is not a whole number (at least 1)"),
    ("CLOSEDLOOP_WARNING_SHARE", "2", "is not a number from 0 to 1"),
    ("CLOSEDLOOP_RATE_LIMIT", "-3", "is not a number above 0"),
    ("CLOSEDLOOP_UTC_OFFSET", "Beijing", "is not a UTC offset"),
    ("CLOSEDLOOP_SQLITE_SYNCHRONOUS", "sometimes", "is not one of OFF, NORMAL, FULL, EXTRA"),
    ("CLOSEDLOOP_LOG_FORMAT", "xml", "is not one of json, text"),
    ("CLOSEDLOOP_CURRENCY", "yuan", "is not an ISO 4217 code"),
    ("CLOSEDLOOP_KAFKA_BOOTSTRAP", "localhost", "is not host:port"),
    ("CLOSEDLOOP_PRICES", "repair=lots", "is not a price list"),
    ("CLOSEDLOOP_ROUTE_CAUSES", "design=marketing", "is not cause=department routes"),
    ("CLOSEDLOOP_PERMIT_RULES", '{"warning_at": "six"}', "warning_at must be a whole number"),
])
def test_a_bad_value_is_one_line_naming_the_variable_the_value_and_what_it_accepts(name: str, text: str,
                                                                                   accepts: str):
    # given a value the setting cannot use
    # when the settings are loaded
    with pytest.raises(SettingsError) as err:
        load_settings(env={name: text})
    # then the error is one line: the variable, the value as given, what it accepts, in two languages
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{name}: ")
    assert text in message and accepts in message
    assert re.search(r"[\u4e00-\u9fff]", message), "the Chinese half of the message is missing"
    # and no pydantic error rides along to become a traceback
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert err.value.name == name.removeprefix("CLOSEDLOOP_").lower()


@pytest.mark.fast
def test_the_port_error_reads_exactly_as_documented():
    with pytest.raises(SettingsError) as err:
        load_settings(env={"CLOSEDLOOP_PORT": "abc"})
    assert str(err.value) == 'CLOSEDLOOP_PORT: "abc" is not a port number (1-65535) / 不是有效的端口号 (1-65535)'


@pytest.mark.fast
def test_rules_that_contradict_each_other_are_refused_naming_both_variables():
    with pytest.raises(SettingsError) as err:
        load_settings(env={"CLOSEDLOOP_PART_AUTO_QUANTITY": "20", "CLOSEDLOOP_PART_MAX_QUANTITY": "10"})
    assert "CLOSEDLOOP_PART_AUTO_QUANTITY" in str(err.value) and "CLOSEDLOOP_PART_MAX_QUANTITY" in str(err.value)


@pytest.mark.fast
@pytest.mark.parametrize("text", ["30m", "48h", "30d", "90s", "1.5h", "45"])
def test_durations_are_read_in_their_units(text: str):
    expected = {"30m": 30 * MINUTE, "48h": 48 * HOUR, "30d": 30 * 24 * HOUR, "90s": 90_000, "1.5h": 90 * MINUTE,
                "45": 45 * MINUTE}[text]
    assert load_settings(env={"CLOSEDLOOP_ACCEPT_WITHIN": text}).accept_within == expected


# --- where values come from -----------------------------------------------------------------------
@pytest.mark.fast
def test_flags_override_the_environment_and_a_flag_not_given_does_not():
    # given a port and a host in the environment
    env = {"CLOSEDLOOP_PORT": "8100", "CLOSEDLOOP_HOST": "0.0.0.0", "CLOSEDLOOP_HANDLE_WITHIN": "36h"}
    # when a command passes --port, and --host is not given (None)
    settings = load_settings(flags={"port": 9000, "host": None, "auto_dispatch": "off"}, env=env)
    # then the flag wins, the environment fills the rest, the defaults the remainder
    assert (settings.port, settings.host, settings.handle_within, settings.auto_dispatch) == (9000, "0.0.0.0",
                                                                                              36 * HOUR, False)
    sources = {r.name: r.source for r in describe(settings)}
    assert (sources["port"], sources["host"], sources["auto_dispatch"], sources["review_within"]) == (
        "flag", "environment", "flag", "default")


@pytest.mark.fast
def test_a_bad_flag_is_named_as_the_flag_and_an_unknown_one_is_refused():
    with pytest.raises(SettingsError) as err:
        load_settings(flags={"port": "x"}, env={"CLOSEDLOOP_PORT": "8100"})
    assert str(err.value).startswith('--port: "x" is not a port number')
    with pytest.raises(SettingsError) as err:
        load_settings(flags={"prot": 1}, env={})
    assert str(err.value).startswith("--prot: no such setting")


@pytest.mark.fast
def test_an_empty_variable_is_unset_except_where_empty_means_none():
    settings = load_settings(env={"CLOSEDLOOP_PORT": "", "CLOSEDLOOP_AUTO_DISPATCH": "", "CLOSEDLOOP_PENALTIES": "",
                                  "CLOSEDLOOP_ROUTE_INTENTS": ""})
    assert settings.port == 8000 and settings.auto_dispatch is None and settings.source("port") == "default"
    assert settings.quality_policy().penalties == {} and settings.loop_policy().intent_departments == {}


@pytest.mark.fast
def test_settings_made_directly_read_the_process_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CLOSEDLOOP_PORT", "8123")
    monkeypatch.setenv("CLOSEDLOOP_AUTH", "Off")
    assert (Settings().port, Settings().auth) == (8123, False)
    assert (load_settings().port, load_settings().source("auth")) == (8123, "environment")
    # the defaults, and a mapping given in place of the environment, ignore it
    assert default_settings().port == 8000 and load_settings(env={}).auth is True


@pytest.mark.fast
def test_describe_hides_secrets_and_names_every_variable_once():
    # given two secrets set, one of them by flag
    settings = load_settings(flags={"kafka_sasl_password": "hunter2"},
                             env={"CLOSEDLOOP_METRICS_KEY": "scrape-secret"})
    rows = {r.name: r for r in describe(settings)}
    # then their values are hidden, their sources shown
    assert (rows["metrics_key"].value, rows["metrics_key"].source) == (SECRET_SHOWN, "environment")
    assert (rows["kafka_sasl_password"].value, rows["kafka_sasl_password"].source) == (SECRET_SHOWN, "flag")
    assert not any("hunter2" in r.value or "scrape-secret" in r.value for r in rows.values())
    # and the secret is still there for whoever needs it
    assert settings.kafka_client_options()["sasl_plain_password"] == "hunter2"
    # every row: its variable, a description, the value as one writes it
    assert [r.variable for r in rows.values()] == [variable(n) for n in FIELDS]
    assert all(r.description for r in rows.values())
    assert (rows["repeat_within"].value, rows["feed_back_within"].value, rows["utc_offset"].value) == (
        "30d", "72h", "+00:00")
    assert rows["auto_dispatch"].value == "(unset)" and rows["metrics_key"].variable == "CLOSEDLOOP_METRICS_KEY"


@pytest.mark.fast
def test_every_shown_value_reads_back_as_the_same_setting():
    env = {"CLOSEDLOOP_UTC_OFFSET": "+08:00", "CLOSEDLOOP_HANDLE_WITHIN": "36h", "CLOSEDLOOP_RATE_LIMIT": "2.5",
           "CLOSEDLOOP_AUTO_DISPATCH": "yes", "CLOSEDLOOP_SQLITE_SYNCHRONOUS": "normal"}
    settings = load_settings(env=env)
    shown = {variable(r.name): r.value for r in describe(settings)
             if r.value not in ("(unset)", SECRET_SHOWN)}
    assert load_settings(env=shown).model_dump() == settings.model_dump()


# --- the policies ---------------------------------------------------------------------------------
@pytest.mark.fast
def test_the_defaults_build_the_domains_own_defaults():
    settings = default_settings()
    assert settings.loop_policy() == LoopPolicy()
    assert settings.quality_policy() == QualityPolicy()
    assert settings.dispatch_policy() == DispatchPolicy()
    assert settings.dispatch_policy(auto_default=True).auto_dispatch is True
    assert settings.permit_policy() == PermitRules()
    assert settings.parts_policy() == PartsRules()
    network = settings.network_config(auto_default=True)
    assert (network.dispatch.auto_dispatch, network.permit, network.parts) == (True, PermitRules(), PartsRules())


@pytest.mark.fast
def test_the_policies_follow_the_settings():
    settings = load_settings(env={"CLOSEDLOOP_AUTO_DISPATCH": "off", "CLOSEDLOOP_REPEAT_WITHIN": "14d",
                                  "CLOSEDLOOP_BACKFILL_LAG": "2h", "CLOSEDLOOP_PART_MAX_QUANTITY": "5",
                                  "CLOSEDLOOP_PERMIT_RULES": '{"warning_at": 5}', "CLOSEDLOOP_CURRENCY": "EUR"})
    dispatch = settings.dispatch_policy(auto_default=True)
    assert dispatch.auto_dispatch is False  # the variable, when set, beats the command's default
    assert (dispatch.repeat_within, dispatch.behind) == (14 * 24 * HOUR, 2 * HOUR)
    assert settings.permit_policy().repeat_within == 14 * 24 * HOUR and settings.permit_policy().warning_at == 5
    assert settings.parts_policy().max_quantity == 5 and settings.quality_policy().currency == "EUR"


@pytest.mark.fast
def test_permit_rules_may_live_in_a_file(tmp_path: Path):
    rules = tmp_path / "permit.json"
    rules.write_text('{"deductions": {"promise_broken": 4}}', encoding="utf-8")
    assert load_settings(env={"CLOSEDLOOP_PERMIT_RULES": str(rules)}).permit_policy().deductions["promise_broken"] == 4


# --- no other module reads the environment --------------------------------------------------------
@pytest.mark.fast
def test_the_domain_reads_no_environment():
    found = [f"{path.relative_to(ROOT)}:{n}" for path in sorted((ROOT / "domain").rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"os\.environ|getenv|CLOSEDLOOP_", line)]
    assert found == []


@pytest.mark.fast
def test_only_the_settings_read_closedloop_variables_outside_the_cli():
    # libpq's own PGUSER / PGPASSWORD are the one exception (the storage asks for them by name)
    found = []
    for layer in ("domain", "contract", "log", "projections", "reactors", "app", "consumers", "api"):
        for path in sorted((ROOT / layer).rglob("*.py")):
            if path == ROOT / "app" / "settings.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"os\.environ|getenv", line) and not re.search(r'"PG(USER|PASSWORD)"', line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert found == []


# --- the README's table is the settings' table ----------------------------------------------------
def _readme_rows() -> dict[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("| variable | default | meaning |")
    rows: dict[str, str] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        names = re.findall(r"`(CLOSEDLOOP_[A-Z_]+)`", cells[0])
        defaults = re.findall(r"`([^`]*)`", cells[1]) or [cells[1]]
        if len(defaults) == 1:
            defaults = defaults * len(names)
        assert len(defaults) == len(names), f"a default for each variable in {line!r}"
        for name, default in zip(names, defaults):
            assert name not in rows, f"{name} is in the table twice"
            rows[name] = default
    return rows


@pytest.mark.fast
def test_the_readme_table_lists_exactly_the_settings_with_their_defaults():
    rows = _readme_rows()
    # every variable once, and nothing else
    assert sorted(rows) == sorted(variable(n) for n in FIELDS)
    defaults = default_settings()
    for name in FIELDS:
        written = rows[variable(name)]
        if written == "unset":
            assert getattr(defaults, name) is None, f"{variable(name)} has a default but the README says unset"
        else:
            # the README's default, read as the environment would be, is the field's default
            assert getattr(load_settings(env={variable(name): written}), name) == getattr(defaults, name), (
                f"{variable(name)}: README says {written!r}")


# --- the composition roots take the settings --------------------------------------------------------
def test_the_engine_takes_its_switches_and_policies_from_the_settings(tmp_path: Path):
    from closedloop.app.engine import Engine
    from closedloop.reactors.leak_alerts import LeakAlerts
    from closedloop.reactors.penalties import PenaltyReactor
    from closedloop.reactors.routing import FeedbackRouter

    # given settings naming the database, a deadline and two switches off
    settings = load_settings(env={"CLOSEDLOOP_DATABASE_URL": f"sqlite:///{tmp_path}/settings.db",
                                  "CLOSEDLOOP_HANDLE_WITHIN": "24h", "CLOSEDLOOP_AUTO_ROUTING": "off",
                                  "CLOSEDLOOP_LEAK_ALERTS": "no", "CLOSEDLOOP_SQLITE_SYNCHRONOUS": "normal"})
    # when the engine opens with them (no URL given)
    engine = Engine.open(settings=settings)
    try:
        # then it uses them
        assert engine.storage.path == f"{tmp_path}/settings.db"
        assert engine.policy.handle_within == 24 * HOUR and engine.settings is settings
        kinds = {type(r) for r in engine.reactors}
        assert PenaltyReactor in kinds and FeedbackRouter not in kinds and LeakAlerts not in kinds
    finally:
        engine.close()
    # and reactors off leaves the process deciding nothing
    engine = Engine.open(settings=settings.model_copy(update={"reactors": False}))
    try:
        assert engine.reactors == []
    finally:
        engine.close()


def test_the_api_takes_its_limits_and_keys_from_the_settings(tmp_path: Path):
    from fastapi.testclient import TestClient

    from closedloop.api.app import create_app
    from closedloop.app.engine import Engine

    engine = Engine.open(f"sqlite:///{tmp_path}/api.db", settings=default_settings())
    try:
        settings = load_settings(env={"CLOSEDLOOP_AUTH": "off", "CLOSEDLOOP_MAX_BATCH_EVENTS": "2",
                                      "CLOSEDLOOP_METRICS_KEY": "scrape-secret"})
        client = TestClient(create_app(engine, follow_interval=None, settings=settings))
        # auth off: no key needed to read; a batch over the limit is refused
        assert client.get("/loop/summary").status_code != 401
        refused = client.post("/events/batch", json=[{}, {}, {}],
                              headers={"content-type": "application/cloudevents-batch+json"})
        assert refused.status_code == 413 and "limit of 2" in refused.json()["error"]
        # the metrics need the key
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"}).status_code == 200
    finally:
        engine.close()
