"""The OpenAPI document says what the API does: every answer has its schema (errors too),
schemathesis finds no request that makes the server fail or answer off its schema, the
views answer with no key the document does not name, and /docs and /redoc work offline."""

from __future__ import annotations

import copy
import re
import tempfile
from html.parser import HTMLParser
from typing import Any

import jsonschema_rs
import orjson
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from closedloop.api.app import create_app
from closedloop.app.engine import Engine
from closedloop.reactors.network import NetworkConfig
from closedloop.simulation.workload import WorkloadSpec, generate

from conftest import event

BATCH = {"content-type": "application/cloudevents-batch+json"}
AT = "2026-11-01T00:00:00Z"  # the end of the workload: every view has something to say

# One engine on a SQLite file with a few days of the demo's workload (a network, cases in
# every scenario, automatic dispatch), a rejected event and a checkpoint; an admin key.
_tmp = tempfile.TemporaryDirectory(prefix="closedloop-openapi-")
_engine = Engine.open(f"sqlite:///{_tmp.name}/openapi.db", network=NetworkConfig().with_auto_dispatch(True))
_events = list(generate(WorkloadSpec(seed=11, days=3, calls_per_day=60, outlets=6, regions=3)))
for _i in range(0, len(_events), 1000):
    _engine.submit(_events[_i:_i + 1000])
_engine.submit([event("case.bogus", "CASE-X", "2026-10-30T08:10:00Z", {})])
_KEY = _engine.keys.add("openapi-admin", "admin")
_app = create_app(_engine, follow_interval=None, auth=True)
TestClient(_app, headers={"Authorization": f"Bearer {_KEY}"}).post("/audit/checkpoints")

schema = schemathesis.openapi.from_asgi("/openapi.json", _app, config=schemathesis.Config.from_dict({
    # the admin key, for either of the two declared ways of showing it
    "auth": {"openapi": {"bearer": {"bearer": _KEY}, "apiKey": {"api_key": _KEY}}},
    "checks": {
        # Valid by the schema is not always valid by the rules: a period whose `from` is not
        # before its `to`, a CloudEvent whose `time` is no date: the API says so with a 400/413/422.
        "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "409", "413",
                                                           "422", "429"]},
    },
    "operations": [
        # The coverage phase walks every field of every one of the contract's 41 event types
        # (a minute per route); examples and fuzzing still send valid and invalid events.
        {"include-path-regex": "^/events|/resubmit$", "phases": {"coverage": {"enabled": False}}},
        # A topic is any text: a "negative" boolean or number in the list arrives as a valid name.
        {"include-path": "/kafka/lag", "checks": {"negative_data_rejection": {"enabled": False}}},
    ],
}))


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(_app, headers={"Authorization": f"Bearer {_KEY}"})


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    return client.get("/openapi.json").json()


# --- schemathesis ------------------------------------------------------------------------------
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_request_makes_the_server_fail_or_answer_off_its_schema(case):
    """Every check: no server error, statuses, content types, headers and bodies as documented,
    invalid data refused, a missing key refused."""
    case.call_and_validate()


# --- what the document declares ------------------------------------------------------------------
def _operations(spec: dict[str, Any]):
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            yield method.upper(), path, op


def test_every_answer_has_a_schema_and_every_error_the_one_error_schema(spec: dict[str, Any]):
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    for method, path, op in _operations(spec):
        for status, response in op["responses"].items():
            content = response.get("content", {})
            assert "application/json" in content, (method, path, status)
            body = content["application/json"]["schema"]
            refs = [body.get("$ref")] + [s.get("$ref") for s in body.get("anyOf", [])]
            if body.get("type") == "array":
                refs = [body["items"].get("$ref")]
            names = {r.rsplit("/", 1)[-1] for r in refs if r}
            assert names and all(n.endswith("Public") for n in names), (method, path, status, body)
            if status.startswith(("4", "5")):
                assert names & {"ErrorPublic", "SubmissionRejectedPublic"}, (method, path, status, names)
        declared = set(op["responses"])
        assert "401" in declared, (method, path)
        if op.get("parameters"):
            assert "422" in declared, (method, path)


def test_every_group_of_routes_says_what_it_is_for(spec: dict[str, Any]):
    described = {t["name"]: t["description"] for t in spec["tags"]}
    for method, path, op in _operations(spec):
        assert op["tags"] and all(described.get(t) for t in op["tags"]), (method, path, op.get("tags"))
        assert op.get("description"), (method, path)  # the route's docstring


def test_lists_that_answer_csv_say_so(spec: dict[str, Any], client: TestClient):
    for path in ("/quality/feedback", "/quality/defects/pareto", "/settlement", "/penalties"):
        assert "text/csv" in spec["paths"][path]["get"]["responses"]["200"]["content"], path
        r = client.get(path, params={"format": "csv"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), path


def test_keys_are_declared_as_security_schemes_and_every_route_asks_for_one(spec: dict[str, Any]):
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": schemes["bearer"]["description"]}
    assert (schemes["apiKey"]["type"], schemes["apiKey"]["in"], schemes["apiKey"]["name"]) == \
        ("apiKey", "header", "X-API-Key")
    for method, path, op in _operations(spec):
        assert op["security"] == [{"bearer": []}, {"apiKey": []}], (method, path)
    # what a key may not do is a 403; /health is open to every key
    assert "403" in spec["paths"]["/loop/summary"]["get"]["responses"]
    assert "403" not in spec["paths"]["/health"]["get"]["responses"]


def test_either_declared_way_of_showing_a_key_is_let_in(client: TestClient):
    bare = TestClient(_app)
    assert bare.get("/health").status_code == 401
    assert bare.get("/health", headers={"X-API-Key": _KEY}).status_code == 200
    assert bare.get("/health", headers={"Authorization": f"Bearer {_KEY}"}).status_code == 200
    assert bare.get("/health", headers={"Authorization": f"Basic {_KEY}"}).status_code == 401


def test_without_authentication_the_document_asks_for_no_key(engine: Engine):
    spec = TestClient(create_app(engine, follow_interval=None, auth=False)).get("/openapi.json").json()
    assert "securitySchemes" not in spec["components"]
    for method, path, op in _operations(spec):
        assert "security" not in op and "401" not in op["responses"], (method, path)


def test_the_event_examples_are_events_the_engine_records(spec: dict[str, Any], engine: Engine):
    """The examples /docs offers to send are valid under the contract: a producer copying
    one gets a 202, not a quarantine."""
    outlet = TestClient(create_app(engine, follow_interval=None, auth=True),
                        headers={"Authorization": f"Bearer {engine.keys.add('example-producer', 'producer', ['/'])}"})
    for path in ("/events", "/events/batch"):
        content = spec["paths"][path]["post"]["requestBody"]["content"]
        for media_type, body in content.items():
            assert body["examples"], (path, media_type)
            for name, example in body["examples"].items():
                r = outlet.post(path, content=orjson.dumps(example["value"]), headers={"content-type": media_type})
                assert r.status_code in (200, 202), (path, media_type, name, r.text)
                assert not r.json()["rejected"], (path, media_type, name)


# --- answers as documented -----------------------------------------------------------------------
def _strict(node: Any) -> Any:
    """The schemas with no key beyond those they name (the models allow extras on the wire)."""
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if node.get("type") == "object" and "properties" in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def _requests(client: TestClient) -> list[tuple[str, dict[str, Any]]]:
    """At least one request for every GET route, and the parameters that add optional keys."""
    at = {"as_of": AT}
    first = lambda path, key: client.get(path, params=at).json()["items"][0][key]  # noqa: E731
    case_id = next(i["case_id"] for i in client.get("/loop/leaks", params=at | {"limit": 1000}).json()["items"]
                   if i["case_id"])
    feedback_id = first("/quality/feedback", "feedback_ids")[0]
    statement = client.get("/settlement", params=at | {"period": "2026-10"}).json()["statements"][0]["outlet_id"]
    qid = client.get("/quarantine").json()["items"][0]["qid"]
    known = {"known_at": "2100-01-01T00:00:00Z"}  # after everything was recorded: the replay path
    out = [
        (f"/cases/{case_id}", at), (f"/cases/{case_id}", at | known),
        ("/loop/summary", at), ("/loop/summary", at | known),
        ("/loop/leaks", at), ("/loop/leaks", at | known),
        ("/controls", at), ("/controls", at | known), ("/controls", at | {"by": "region", "cases": "true"}),
        ("/controls", at | {"by": "outlet", "period": "week", "compare": "true", "cases": "true"}),
        *[("/controls/cases", at | {"measure": m}) for m in ("complaint", "dissatisfaction", "omission")],
        ("/quarantine", {"status": "all"}), (f"/quarantine/{qid}", {}),
        ("/health", {}), ("/audit/verify", {}), ("/audit/checkpoints", {}), ("/kafka/lag", {}),
        ("/outlets", at), (f"/outlets/{first('/outlets', 'outlet_id')}", at),
        ("/technicians", at), (f"/technicians/{first('/technicians', 'technician_id')}", at),
        ("/warehouses", at), (f"/warehouses/{first('/warehouses', 'warehouse_id')}", at),
        ("/part-requests", at | {"state": "all"}), ("/alarms", at | {"state": "all"}), ("/network/rules", {}),
        ("/quality/feedback", at), ("/quality/feedback/summary", at), (f"/quality/feedback/{feedback_id}", at),
        ("/quality/defects/pareto", at | {"per": "model", "cases": "true"}),
        ("/quality/defects/pareto", at | {"by": "cause"}),
        ("/quality/defects/batches", at | {"cases": "true"}), ("/quality/defects/batches", at | {"by": "plant"}),
        ("/quality/defects/months-in-service", at | {"per": "product_line", "cases": "true"}),
        *[(f"/quality/defects/{q}", at | {"per": per, "cases": "true"}) for q in ("repeats", "first-visit")
          for per in ("model", "technician_id")],
        ("/quality/defects/parts", at | {"cases": "true"}),
        ("/quality/defects/cases", at | {"repeat": "true"}), ("/quality/defects/cases", at | {"first_visit": "false"}),
        ("/settlement", at | {"period": "2026-10"}), ("/settlement", at | {"period": "2026-10", "lines": "false"}),
        (f"/settlement/{statement}", at | {"period": "2026-10"}), ("/settlement/OUT-NONE", at | {"period": "2026-10"}),
        ("/penalties", at | {"period": "2026-10"}), ("/quality/rules", {}),
    ]
    return out


def test_every_view_answers_with_only_the_keys_its_schema_names(spec: dict[str, Any], client: TestClient):
    """The models let unknown keys through (a view that grows a field never loses it on the
    way out), so this holds the document to every key the views actually answer with."""
    components = _strict(spec["components"])
    routes = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p) for p in spec["paths"]]
    covered = set()
    for path, params in _requests(client):
        template = min((p for rx, p in routes if rx.match(path)), key=lambda p: p.count("{"))
        covered.add(template)
        r = client.get(path, params=params)
        assert r.status_code == 200, (path, params, r.text[:300])
        body_schema = spec["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        validator = jsonschema_rs.validator_for({**body_schema, "components": components})
        problems = [f"{'/'.join(map(str, e.instance_path))}: {e.message[:200]}" for e in validator.iter_errors(r.json())]
        assert not problems, (path, params, problems[:5])
    gets = {p for p, methods in spec["paths"].items() if "get" in methods}
    assert gets <= covered, f"no request tries {sorted(gets - covered)}"


def test_a_submission_answers_as_documented(spec: dict[str, Any], client: TestClient):
    components = _strict(spec["components"])
    good = event("call.received", "CALL-OA-1", "2026-10-30T08:00:00Z", {"phone": "1", "intent": "repair"})
    bad = event("callback.made", "CASE-OA", "2026-10-30T08:00:00Z", {"agent_id": "A", "reached": "yes"})
    for body, status in (([good], 202), ([good], 200), ([good, bad], 422)):
        r = client.post("/events/batch", content=orjson.dumps(body), headers=BATCH)
        assert r.status_code == status, r.text
        documented = spec["paths"]["/events/batch"]["post"]["responses"][str(status)]
        validator = jsonschema_rs.validator_for({**documented["content"]["application/json"]["schema"],
                                                 "components": components})
        assert validator.is_valid(r.json()), (status, r.json())


# --- errors in the product's format ----------------------------------------------------------------
def test_an_unknown_route_and_a_wrong_method_answer_in_the_error_format(client: TestClient):
    r = client.get("/no/such/route")
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert set(r.json()) == {"error"} and "GET /no/such/route" in r.json()["error"] and "/docs" in r.json()["error"]
    r = client.delete("/loop/summary")
    assert r.status_code == 405 and set(r.json()) == {"error"} and "DELETE" in r.json()["error"]
    assert r.headers["allow"] == "GET"
    r = client.get("/dashboard/no-such-file.js")
    assert r.status_code == 404 and set(r.json()) == {"error"}
    # a route's own 404 keeps its words
    assert client.get("/cases/CASE-NONE").json() == {"error": "no case 'CASE-NONE' has been recorded"}


def test_a_server_error_answers_in_the_error_format(engine: Engine, monkeypatch: pytest.MonkeyPatch):
    app = create_app(engine, follow_interval=None, auth=False)

    def broken() -> int:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(engine.log, "head", broken)
    r = TestClient(app, raise_server_exceptions=False).get("/health")
    assert r.status_code == 500 and set(r.json()) == {"error"} and "internal error" in r.json()["error"]
    assert "on fire" not in r.text  # the log says why, not the caller


# --- the documentation pages work offline ---------------------------------------------------------
class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.urls.append(found["src"] or "")
        if tag == "link" and found.get("href"):
            self.urls.append(found["href"] or "")


@pytest.mark.parametrize(("page", "needs"), [("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")),
                                             ("/redoc", ("redoc.standalone.js",))])
def test_the_documentation_pages_load_everything_from_the_app_itself(page: str, needs: tuple[str, ...]):
    anonymous = TestClient(_app)  # the pages hold no data: no key needed
    r = anonymous.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "http://" not in r.text and "https://" not in r.text, "the page would reach out to the internet"
    assets = _Assets()
    assets.feed(r.text)
    assert all(any(url.endswith(name) for url in assets.urls) for name in needs), assets.urls
    for url in assets.urls:
        assert url.startswith("/"), url
        got = anonymous.get(url)
        assert got.status_code == 200 and len(got.content) > 0, url
        kind = "css" if url.endswith(".css") else "javascript" if url.endswith(".js") else "image"
        assert kind in got.headers["content-type"], (url, got.headers["content-type"])
    assert "/openapi.json" in r.text


def test_the_swagger_page_takes_a_key_for_its_calls(spec: dict[str, Any]):
    """"Authorize" offers what the document declares: a bearer key or an X-API-Key header."""
    page = TestClient(_app).get("/docs").text
    assert "validatorUrl" in page  # set to null: no badge fetched from the public validator
    assert {"bearer", "apiKey"} <= set(spec["components"]["securitySchemes"])
    assert TestClient(_app).get("/docs/oauth2-redirect").status_code == 200


def test_the_strict_copy_of_the_document_catches_an_undocumented_key(spec: dict[str, Any]):
    """The check above can fail: an answer with a key its schema does not name is refused."""
    components = _strict(copy.deepcopy(spec["components"]))
    validator = jsonschema_rs.validator_for({"$ref": "#/components/schemas/HealthPublic", "components": components})
    answer = {"status": "ok", "database": "sqlite", "log_head": 1, "view_lag": {"loop": 0}, "stopped": [],
              "followers": [{"kind": "view", "name": "loop", "position": 1, "lag": 0, "state": "running"}]}
    assert validator.is_valid(answer)
    assert not validator.is_valid(answer | {"surprise": 1})
