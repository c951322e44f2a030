"""Fixtures: every storage test runs on a real SQLite file and on the real PostgreSQL."""

from __future__ import annotations

import itertools
import os
import uuid
from typing import Any, Callable, Iterator

import pytest

from closedloop.domain.policy import LoopPolicy
from closedloop.app.engine import Engine

PG_URL = os.environ.get("CLOSEDLOOP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _postgres_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_URL.split("?")[0], connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return str(exc)


_PG_PROBLEM = _postgres_available()

# The engine reads its switches from CLOSEDLOOP_* variables; one left in a shell
# (CLOSEDLOOP_REACTORS=off) would change what every test sees. Only the test rig's own
# settings (CLOSEDLOOP_TEST_*: the PostgreSQL URL, the Kafka bootstrap, chromium) pass.
_RIG = "CLOSEDLOOP_TEST_"


def _engine_settings() -> list[str]:
    return [name for name in os.environ if name.startswith("CLOSEDLOOP_") and not name.startswith(_RIG)]


@pytest.fixture(scope="session", autouse=True)
def _no_engine_settings_for_the_session() -> Iterator[None]:
    """Before any session fixture starts a server or a broker: none of the shell's settings."""
    with pytest.MonkeyPatch.context() as mp:
        for name in _engine_settings():
            mp.delenv(name)
        yield


@pytest.fixture(autouse=True)
def _no_engine_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without engine settings, whatever a test before it left behind;
    a test sets what it needs with `monkeypatch.setenv`."""
    for name in _engine_settings():
        monkeypatch.delenv(name)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A fresh, empty database of each kind: a file for SQLite, a schema for PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/closedloop.db"
        return
    if _PG_PROBLEM:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI=true but is not reachable at {PG_URL}: {_PG_PROBLEM}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {_PG_PROBLEM}")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}schema={schema}"
    with psycopg.connect(PG_URL.split("?")[0], autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    e = Engine.open(database_url, policy=LoopPolicy())
    yield e
    e.close()


_ids = itertools.count(1)


def event(type_: str, subject: str, time: str, data: dict[str, Any], source: str = "/callcenter/qingdao/seat-1",
          id: str | None = None) -> dict[str, Any]:
    """A structured-mode CloudEvent as a producer sends it."""
    return {
        "specversion": "1.0",
        "id": id or f"ev-{next(_ids)}",
        "source": source,
        "type": type_,
        "time": time,
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    }


def registration(call_id: str, region: str = "R01", address: str | None = "1 Haier Road",
                 product_line: str = "refrigerator", model: str = "BCD-216") -> dict[str, Any]:
    return {
        "call_id": call_id,
        "customer": {"id": "CU-1", "name": "Wang Li", "phone": "13800000000", "address": address,
                     "region": region},
        "product": {"model": model, "product_line": product_line, "production_batch": "B2026-07-A",
                    "plant": "PLANT-QD1"},
        "fault": {"description": "not cooling"},
        "request": "repair",
    }


@pytest.fixture
def ev() -> Callable[..., dict[str, Any]]:
    return event


def client_for(engine: Engine, role: str = "admin", sources: tuple[str, ...] = ("/",), **app_options: Any):
    """An HTTP client of the engine's API holding a fresh key of `role`."""
    from fastapi.testclient import TestClient

    from closedloop.api.app import create_app

    secret = engine.keys.add(f"{role}-{next(_ids)}", role, list(sources) if role == "producer" else None)
    app = create_app(engine, follow_interval=None, auth=True, **app_options)
    return TestClient(app, headers={"Authorization": f"Bearer {secret}"})


from kafka_broker import kafka_bootstrap  # noqa: E402,F401 - the session's Kafka broker fixture
