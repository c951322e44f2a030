"""The API under a fuzzer: schemathesis generates requests from the OpenAPI schema (valid and
not), and no answer may be a server error. Bounded examples, so it runs with the suite."""

from __future__ import annotations

import tempfile

import schemathesis
from hypothesis import HealthCheck, settings

from closedloop.api.app import create_app
from closedloop.app.engine import Engine

from conftest import event, registration

_tmp = tempfile.mkdtemp(prefix="closedloop-fuzz-")
_engine = Engine.open(f"sqlite:///{_tmp}/fuzz.db")
_engine.submit([event("call.received", "CALL-1", "2026-10-30T08:00:00Z", {"phone": "1", "intent": "repair"}),
                event("case.registered", "CASE-1", "2026-10-30T08:10:00Z", registration("CALL-1")),
                event("case.bogus", "CASE-1", "2026-10-30T08:10:00Z", {})])
_key = _engine.keys.add("fuzzer", "admin")
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_engine, follow_interval=None, auth=True))


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_request_makes_the_server_fail(case):
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {_key}"}
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:500])
