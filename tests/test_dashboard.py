"""The dashboard, driven in a real browser (Debian's chromium through playwright) against a
real server fed with demo data: each page shows the API's numbers, a chart bar leads to the
cases behind it, `as_of` and `known_at` look at the past. A screenshot of each page is
saved under tests/artifacts/."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from closedloop.app.engine import Engine, feed
from closedloop.simulation.workload import WorkloadSpec, generate

from conftest import IN_CI, event, registration

CHROMIUM = os.environ.get("CLOSEDLOOP_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ZONE = "Asia/Shanghai"  # the browser's zone differs from the server's UTC on purpose


def _browser_problem() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not (shutil.which(CHROMIUM) or os.access(CHROMIUM, os.X_OK)):
        return f"no chromium at {CHROMIUM} (make test installs Debian's chromium)"
    return None


_PROBLEM = _browser_problem()
if _PROBLEM:
    if IN_CI:
        raise RuntimeError(f"the dashboard's browser tests must run under CI=true: {_PROBLEM}")
    pytest.skip(_PROBLEM, allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402


# --- a served engine with demo data ----------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, app) -> None:
        import uvicorn

        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def without_router(app, router):
    """The app with one router's routes taken out, as a server without them would be: an
    included router is one entry of the app's routes in newer FastAPI, its routes in older."""
    paths = {route.path for route in router.routes}
    app.router.routes[:] = [r for r in app.router.routes
                            if getattr(r, "original_router", None) is not router and getattr(r, "path", None) not in paths]
    return app


class Demo:
    """One engine with the default views and reactors, fed six days of demo calls, served
    twice: whole, with its follow thread catching up and letting deadlines pass as the real
    server does; and with the service network's routes taken out."""

    def __init__(self, tmp: Path) -> None:
        from closedloop.api import network
        from closedloop.api.app import create_app

        # the demo's last day ends in the afternoon of its call center (06:00 UTC is 14:00 in
        # China), whatever the hour the tests run: at night its newest jobs are hours old and
        # none is left waiting for acceptance, and the alarm views would have nothing to show
        now = datetime.now(UTC).replace(microsecond=0)
        afternoon = now.replace(hour=6, minute=0, second=0)
        self.end = afternoon if afternoon <= now - timedelta(minutes=5) else afternoon - timedelta(days=1)
        self.events = list(generate(WorkloadSpec(seed=11, days=6, calls_per_day=50, outlets=8, regions=3, end=self.end)))
        self.engine = Engine.open(f"sqlite:///{tmp}/dashboard.db")
        feed(self.engine, self.events)
        # the call center is live: its newest call this minute. The demo's last dispatch can be
        # hours old at night in its call center's time, and a stream whose newest fact is over an
        # hour old is taken for a backfill: the engine would wait before alarming.
        now = datetime.now(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
        feed(self.engine, [event("case.registered", "CASE-NOW", now, registration("CALL-NOW"), id="now-reg")])
        self.engine.tick()  # the deadlines already passed: alarms, escalations
        self.analyst = self.engine.keys.add("dash-analyst", "analyst")
        self.auditor = self.engine.keys.add("dash-auditor", "auditor")
        self.producer = self.engine.keys.add("dash-producer", "producer", ["/"])
        self.api = Served(create_app(self.engine, follow_interval=0.5))
        self.without_network = Served(without_router(create_app(self.engine, follow_interval=None), network.router))

    def get(self, path: str, key: str | None = None, **params: Any) -> Any:
        answer = httpx.get(self.api.base + path, params={k: v for k, v in params.items() if v is not None},
                           headers={"Authorization": f"Bearer {key or self.analyst}"}, timeout=60)
        answer.raise_for_status()
        return answer.json()

    def send(self, events: list[dict[str, Any]]) -> None:
        answer = httpx.post(self.api.base + "/events/batch", content=json.dumps(events), timeout=60,
                            headers={"Authorization": f"Bearer {self.producer}",
                                     "content-type": "application/cloudevents-batch+json"})
        answer.raise_for_status()
        assert not answer.json()["rejected"], answer.text

    def close(self) -> None:
        self.api.stop()
        self.without_network.stop()
        self.engine.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    d = Demo(tmp_path_factory.mktemp("dashboard"))
    yield d
    d.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, timezone_id=ZONE)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    context.close()
    assert not errors, f"the page raised: {errors}"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def login(page: Page, base: str, key: str, route: str = "/overview") -> None:
    page.goto(f"{base}/#key={key}")
    page.wait_for_selector(".page[data-page=overview]")
    if route != "/overview":
        page.goto(f"{base}/#{route}")


def number(text: str) -> int:
    return int(text.replace(",", "").strip())


def js_ppm(ppm: float) -> str:
    """A PPM figure as the page writes it (grouped thousands, at most one decimal)."""
    text = f"{ppm:,.1f}"
    return (text[:-2] if text.endswith(".0") else text) + " PPM"


TITLES = {"recorded": "Recorded", "handled": "Handled", "reviewed": "Reviewed", "fed_back": "Fed back"}


def cards(page: Page) -> dict[str, tuple[int, int]]:
    out = {}
    for stage in ("recorded", "handled", "reviewed", "fed_back"):
        card = page.locator(f"[data-testid=step-{stage}]")
        out[stage] = (number(card.locator("[data-testid=open]").inner_text()),
                      number(card.locator("[data-testid=overdue]").inner_text()))
    return out


# --- the tests ----------------------------------------------------------------------------------
def test_a_key_in_the_link_logs_the_page_in_and_leaves_the_address_bar(demo: Demo, page: Page):
    login(page, demo.api.base, demo.analyst)
    assert "key=" not in page.url and page.url.endswith("#/overview")
    assert page.evaluate("sessionStorage.getItem('closedloop.key')") == demo.analyst


def test_without_a_key_the_page_asks_for_one_and_refuses_a_wrong_one(demo: Demo, page: Page):
    page.goto(demo.api.base + "/")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#key-input", "clk_not-a-key")
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_contain_text("not known")
    shot(page, "login")
    page.fill("#key-input", demo.analyst)
    page.click("#login-form button")
    expect(page.locator(".page[data-page=overview]")).to_be_visible()


def test_static_files_need_no_key_and_data_calls_do(demo: Demo):
    assert httpx.get(demo.api.base + "/dashboard/app.js").status_code == 200
    assert httpx.get(demo.api.base + "/").headers["content-type"].startswith("text/html")
    assert httpx.get(demo.api.base + "/loop/summary").status_code == 401


def test_the_overview_shows_each_steps_open_and_overdue_counts_and_the_leaks_as_the_api_does(demo: Demo, page: Page):
    login(page, demo.api.base, demo.analyst)
    summary = demo.get("/loop/summary")
    leaks = demo.get("/loop/leaks", limit=50)
    assert summary["leaked_total"] > 0, "the demo plants leaks at every step"
    assert cards(page) == {s: (summary["open"][s], summary["leaks"][s]) for s in summary["open"]}
    assert number(page.locator("[data-testid=cases]").inner_text()) == summary["cases"]
    assert number(page.locator("[data-testid=leaked-total]").inner_text()) == summary["leaked_total"]
    expect(page.locator("[data-testid=leak-total]")).to_contain_text(f"{leaks['total']} overdue")
    shown = page.locator("[data-testid=leak]")
    expect(shown).to_have_count(len(leaks["items"]))
    assert [shown.nth(i).get_attribute("data-case") for i in range(shown.count())] == \
        [i["case_id"] or "" for i in leaks["items"]]
    shot(page, "overview")


def test_a_bar_of_overdue_steps_leads_to_its_cases_and_a_case_to_its_timeline(demo: Demo, page: Page):
    login(page, demo.api.base, demo.analyst)
    summary = demo.get("/loop/summary")
    stage = max(("handled", "reviewed", "fed_back"), key=lambda s: summary["leaks"][s])
    bars = page.locator("[data-testid=bar]")
    expect(bars).to_have_count(4)
    bar = page.locator(f"[data-testid=bar][data-label='{TITLES[stage]}']")
    assert int(bar.get_attribute("data-value")) == summary["leaks"][stage]
    bar.click()
    expected = demo.get("/loop/leaks", stage=stage, limit=50)
    rows = page.locator(f"[data-testid=leak][data-stage={stage}]")
    expect(rows).to_have_count(len(expected["items"]))
    expect(page.locator("[data-testid=leak]")).to_have_count(len(expected["items"]))
    assert f"stage={stage}" in page.url
    shot(page, "overview-leaks-by-stage")

    case_id = expected["items"][0]["case_id"]
    page.locator(f"[data-testid=leak][data-case='{case_id}'] a").first.click()
    found = demo.get(f"/cases/{case_id}")
    expect(page.locator("[data-testid=timeline-event]")).to_have_count(len(found["timeline"]))
    for s, step in found["steps"].items():
        assert page.locator(f"[data-testid=case-step-{s}]").get_attribute("data-status") == step["status"]
    assert page.locator(f"[data-testid=case-step-{stage}]").get_attribute("data-status") == "overdue"
    expect(page.locator("main h1")).to_contain_text(case_id)
    shot(page, "case")


def test_filters_narrow_the_leaks_by_region_as_the_api_does(demo: Demo, page: Page):
    items = demo.get("/loop/leaks", limit=1000)["items"]
    region = next(i["region"] for i in items if i["region"])
    login(page, demo.api.base, demo.analyst)
    page.fill("[data-testid=leak-filters] input[name=region]", region)
    page.click("[data-testid=leak-filters] button")
    expected = demo.get("/loop/leaks", region=region, limit=50)
    expect(page.locator("[data-testid=leak-total]")).to_contain_text(f"{expected['total']} overdue")
    expect(page.locator("[data-testid=leak]")).to_have_count(len(expected["items"]))


def test_as_of_picked_in_the_header_shows_the_world_of_that_moment(demo: Demo, page: Page):
    login(page, demo.api.base, demo.analyst)
    # the browser's wall clock is Shanghai's: the picker's local time is that zone's
    past = (demo.end - timedelta(days=2)).replace(second=0)
    local = past.astimezone(__import__("zoneinfo").ZoneInfo(ZONE)).strftime("%Y-%m-%dT%H:%M")
    page.fill("#as-of", local)
    page.dispatch_event("#as-of", "change")
    summary = demo.get("/loop/summary", as_of=past.isoformat())
    live = demo.get("/loop/summary")
    assert summary["cases"] < live["cases"]
    expect(page.locator("[data-testid=cases]")).to_have_text(f"{summary['cases']:,}")
    assert cards(page) == {s: (summary["open"][s], summary["leaks"][s]) for s in summary["open"]}
    assert "as_of=" in page.url
    expect(page.locator("#moment-note")).to_contain_text("The world as it stood at")
    shot(page, "overview-as-of")


def test_known_at_shows_what_the_engine_knew_then(demo: Demo, page: Page):
    # everything was recorded just now: a moment before that knew nothing
    before = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    login(page, demo.api.base, demo.auditor, f"/overview?known_at={before}")
    expected = demo.get("/loop/summary", key=demo.auditor, known_at=before)
    assert expected["cases"] == 0
    expect(page.locator("[data-testid=cases]")).to_have_text("0")
    expect(page.locator("#moment-note")).to_contain_text("as known by the engine at")


def test_the_three_controls_per_day_are_the_apis_numbers_against_the_10_ppm_line(demo: Demo, page: Page):
    login(page, demo.api.base, demo.analyst, "/controls?periods=7")
    rows = page.locator("[data-testid=period-row]")
    expect(rows).to_have_count(7)
    expect(page.locator("[data-testid=target-line]")).to_have_count(3)
    assert page.locator("[data-testid=target-line]").first.get_attribute("data-value") == "10"
    seen_services = 0
    for i in range(7):
        row = rows.nth(i)
        start = datetime.fromisoformat(row.get_attribute("data-from").replace("Z", "+00:00"))
        answer = demo.get("/controls", **{"from": start.isoformat(), "to": (start + timedelta(days=1)).isoformat()})
        total = answer["total"]
        assert number(row.locator("[data-testid=services]").inner_text()) == total["services"]
        seen_services += total["services"]
        for measure in ("complaint", "dissatisfaction", "omission"):
            text = row.locator(f"[data-testid={measure}]").inner_text()
            assert number(text.split("·")[0]) == total[measure]["count"], (measure, text)
            if total[measure]["ppm"] is not None:
                assert js_ppm(total[measure]["ppm"]) in text, (measure, text)
    assert seen_services > 0
    # a point per day per measure with services, each carrying its PPM
    points = page.locator("[data-testid=control-complaint] [data-testid=point]")
    assert points.count() == sum(1 for i in range(7) if number(rows.nth(i).locator("[data-testid=services]").inner_text()))
    shot(page, "controls")


def test_the_controls_by_region_list_every_region_as_the_api_groups_them(demo: Demo, page: Page):
    login(page, demo.api.base, demo.analyst, "/controls?by=region&periods=7")
    groups = page.locator("[data-testid=group-row]")
    expect(page.locator("[data-testid=period-row]")).to_have_count(7)
    first = page.locator("[data-testid=period-row]").first.get_attribute("data-from")
    answer = demo.get("/controls", by="region", **{"from": first})
    expect(groups).to_have_count(len(answer["groups"]))
    assert [groups.nth(i).get_attribute("data-group") for i in range(groups.count())] == \
        [g["region"] or "" for g in answer["groups"]]
    assert {g["region"] for g in answer["groups"]} >= {"R01", "R02", "R03"}
    shot(page, "controls-by-region")


def test_every_page_is_in_the_menu_of_the_real_server(demo: Demo, page: Page):
    login(page, demo.api.base, demo.analyst)
    assert page.locator("nav a").all_inner_texts() == ["Loop", "Three controls", "Defects", "Network"]


def test_a_page_whose_routes_are_not_on_the_server_is_hidden(demo: Demo, page: Page):
    assert "/alarms" not in httpx.get(demo.without_network.base + "/openapi.json").json()["paths"]
    assert httpx.get(demo.without_network.base + "/alarms", headers={"Authorization": f"Bearer {demo.analyst}"}).status_code == 404
    login(page, demo.without_network.base, demo.analyst)
    assert page.locator("nav a").all_inner_texts() == ["Loop", "Three controls", "Defects"]
    page.goto(demo.without_network.base + "/#/network")
    expect(page.locator("main h1")).to_have_text("Not on this server")


def test_the_defect_pareto_shows_the_apis_counts_and_a_bar_leads_to_its_cases(demo: Demo, page: Page):
    login(page, demo.api.base, demo.analyst)
    page.click("nav a[data-page=quality]")
    chart = page.locator("[data-testid=pareto-fault_code] [data-testid=bar]")
    pareto = demo.get("/quality/defects/pareto", by="fault_code")
    assert pareto["total"] > 0 and len(pareto["rows"]) > 1
    expect(chart).to_have_count(min(len(pareto["rows"]), 20))
    assert [(chart.nth(i).get_attribute("data-label"), int(chart.nth(i).get_attribute("data-value")))
            for i in range(chart.count())] == [(r["fault_code"], r["count"]) for r in pareto["rows"][:20]]
    causes = page.locator("[data-testid=pareto-cause] [data-testid=bar]")
    by_cause = demo.get("/quality/defects/pareto", by="cause")["rows"]
    assert [(causes.nth(i).get_attribute("data-label"), int(causes.nth(i).get_attribute("data-value")))
            for i in range(causes.count())] == [(r["cause"], r["count"]) for r in by_cause]
    plants = page.locator("[data-testid=plants] [data-testid=bar]")
    by_plant = demo.get("/quality/defects/batches", by="plant")["rows"]
    assert [(plants.nth(i).get_attribute("data-label"), int(plants.nth(i).get_attribute("data-value")))
            for i in range(plants.count())] == [(r["plant"], r["failures"]) for r in by_plant]
    expect(page.locator(".lead")).to_contain_text(f"{pareto['total']:,} completed services")
    shot(page, "defects")
    top = pareto["rows"][0]
    chart.first.click()
    cases = demo.get("/quality/defects/cases", **top["filters"])
    assert cases["total"] == top["count"]
    expect(page.locator("[data-testid=case-row]")).to_have_count(min(cases["total"], 100))
    expect(page.locator("[data-testid=case-list-total]")).to_contain_text(f"{cases['total']} completed services")
    assert [r.get_attribute("data-case") for r in page.locator("[data-testid=case-row]").all()] == \
        [r["case_id"] for r in cases["rows"]]
    shot(page, "defect-cases")
    page.locator("[data-testid=case-row] a").first.click()
    expect(page.locator(".page[data-page=case] h1")).to_contain_text(cases["rows"][0]["case_id"])


def test_failures_by_batch_lead_to_the_batchs_cases(demo: Demo, page: Page):
    login(page, demo.api.base, demo.analyst, "/quality")
    batches = demo.get("/quality/defects/batches", by="batch")["rows"]
    bars = page.locator("[data-testid=batches] [data-testid=bar]")
    expect(bars).to_have_count(min(len(batches), 15))
    assert [int(b.get_attribute("data-value")) for b in bars.all()] == [r["failures"] for r in batches[:15]]
    top = batches[0]
    bars.first.click()
    expect(page.locator("[data-testid=case-row]")).to_have_count(top["failures"])
    assert f"production_batch={top['production_batch']}" in page.url and "job=repair" in page.url
    cases = demo.get("/quality/defects/cases", **top["filters"])
    assert cases["total"] == top["failures"]
    assert sorted(r.get_attribute("data-case") for r in page.locator("[data-testid=case-row]").all()) == \
        sorted(r["case_id"] for r in cases["rows"])


def outlet_bars(page: Page) -> dict[str, int]:
    bars = page.locator("[data-testid=outlet-section] [data-testid=bar]")
    return {b.get_attribute("data-label").split(" ")[0]: int(b.get_attribute("data-value")) for b in bars.all()}


def test_the_network_page_shows_the_apis_alarms_outlet_load_and_technicians_on_warning(demo: Demo, page: Page):
    # a fixed moment, in the past (the server's follow thread has judged its deadlines): nothing
    # changes while the test looks. The demo's last minute, not now: "today's load" is the
    # network day holding the moment, and between midnight and the demo's end (06:00 UTC) the
    # day holding now has no jobs yet
    moment = (demo.end + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    login(page, demo.api.base, demo.analyst, f"/network?as_of={moment}")
    alarms = demo.get("/alarms", state="all", limit=50, as_of=moment)
    still_open = demo.get("/alarms", state="open", as_of=moment)
    outlets = demo.get("/outlets", limit=1000, as_of=moment)["items"]
    technicians = {t["technician_id"]: t for status in ("eliminated", "warning")
                   for t in demo.get("/technicians", status=status, as_of=moment)["items"]}
    assert alarms["total"] > 0, "the demo has jobs not accepted in time"
    assert technicians, "the demo's upheld complaints and repeat visits cost permit points"

    rows = page.locator("[data-testid=alarm]")
    expect(rows).to_have_count(len(alarms["items"]))
    assert [(r.get_attribute("data-case"), r.get_attribute("data-level"), r.get_attribute("data-state"))
            for r in rows.all()] == [(a["case_id"], str(a["level"]), a["state"]) for a in alarms["items"]]
    expect(page.locator("[data-testid=open-alarms]")).to_have_text(str(still_open["total"]))
    expect(page.locator("[data-testid=alarm-total]")).to_have_text(str(alarms["total"]))
    expect(page.locator("[data-testid=alarm-section] h2")).to_contain_text("up to")

    # load: today's jobs against today's capacity, in percent
    expect(page.locator("[data-testid=outlet-section] [data-testid=bar]")).to_have_count(len(outlets))
    expected = {o["outlet_id"]: round(100 * o["today"]["load"] / o["today"]["capacity"]) if o["today"]["capacity"] else 0
                for o in outlets}
    assert outlet_bars(page) == expected
    assert any(expected.values()), "the demo's outlets took jobs that day"
    shown = page.locator("[data-testid=technician]")
    expect(shown).to_have_count(len(technicians))
    for row in shown.all():
        t = technicians[row.get_attribute("data-id")]
        assert row.get_attribute("data-status") == t["permit"]["status"]
        assert number(row.locator("[data-testid=points]").inner_text()) == t["permit"]["balance"]
    statuses = [row.get_attribute("data-status") for row in shown.all()]
    assert statuses == sorted(statuses), "eliminated first, then warning"
    shot(page, "network")

    busiest = max(outlets, key=lambda o: (o["today"]["load"] / o["today"]["capacity"] if o["today"]["capacity"] else 0,
                                          o["today"]["load"]))
    page.locator("[data-testid=outlet-section] [data-testid=bar]").first.click()
    expect(page.locator(".page[data-page=overview]")).to_be_visible()
    assert f"outlet_id={busiest['outlet_id']}" in page.url
    expected_leaks = demo.get("/loop/leaks", outlet_id=busiest["outlet_id"], limit=50, as_of=moment)
    expect(page.locator("[data-testid=leak]")).to_have_count(len(expected_leaks["items"]))


def test_live_the_network_page_shows_a_new_alarm_as_it_happens(demo: Demo, page: Page):
    page.clock.install()  # the page's own timers run when the test says: no waiting out the 10 s
    login(page, demo.api.base, demo.analyst, "/network")
    expect(page.locator("[data-testid=alarm-section] h2")).to_contain_text("refreshed every 10 s")
    before = demo.get("/alarms", state="open")["total"]
    expect(page.locator("[data-testid=open-alarms]")).to_have_text(str(before))
    expect(page.locator("[data-testid=alarm][data-case=CASE-LIVE-1]")).to_have_count(0)

    # a seat dispatches a job an hour ago; the outlet let its hour to accept pass
    outlet = demo.get("/outlets")["items"][0]
    now = datetime.now(UTC).replace(microsecond=0)
    stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    demo.send([
        event("case.registered", "CASE-LIVE-1", stamp(now - timedelta(minutes=62)),
              registration("CALL-LIVE-1", region=outlet["regions"][0], product_line=outlet["product_lines"][0]),
              id="live-reg-1"),
        event("case.dispatched", "CASE-LIVE-1", stamp(now - timedelta(minutes=61)),
              {"outlet_id": outlet["outlet_id"], "by": "agent", "accept_by": stamp(now - timedelta(minutes=1))},
              id="live-dispatch-1"),
    ])
    deadline = time.monotonic() + 30  # the follow thread ticks every half second; a loaded machine
    while demo.get("/alarms", case_id="CASE-LIVE-1")["total"] == 0:  # the server's follow thread ticks
        assert time.monotonic() < deadline, "the engine raised no alarm"
        time.sleep(0.1)
    expect(page.locator("[data-testid=alarm][data-case=CASE-LIVE-1]")).to_have_count(0)  # not before the refresh
    page.clock.run_for(10_500)
    row = page.locator("[data-testid=alarm][data-case=CASE-LIVE-1]")
    expect(row).to_have_count(1)
    assert (row.get_attribute("data-level"), row.get_attribute("data-state")) == ("1", "open")
    expect(page.locator("[data-testid=open-alarms]")).to_have_text(str(demo.get("/alarms", state="open")["total"]))
    assert page.locator("[data-testid=alarm]").first.get_attribute("data-case") == "CASE-LIVE-1"  # newest first
    shot(page, "network-live")
