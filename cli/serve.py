"""`closedloop serve` and `closedloop demo`: the API on a port, and the demo that feeds it.

Both take their port before they touch any data, and hold it from then on (the socket is
handed to the server), so a second one on the same port is refused with how to choose
another before it has opened, let alone reset, a database.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import orjson

from closedloop.app.settings import variable
from closedloop.cli.common import (Refused, database_option, describe_url, dispatch_option, listen_options, option,
                                   open_engine, progress, progress_option, say, setting_option, settings_from,
                                   workload_options)
from closedloop.domain.facts import iso, to_ms

DEMO_URL = "sqlite:///data/demo.db"
DEMO_KEYS = (
    ("demo-producers", "producer", ["/"]),
    ("demo-operator", "operator", None),
    ("demo-analyst", "analyst", None),
    ("demo-auditor", "auditor", None),
    ("demo-admin", "admin", None),
)


# --- the port -----------------------------------------------------------------------------------
def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a refusal that says how to choose another port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # listening at once: a second process cannot bind the port from now on
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            other = _free_port(host, family)
            raise Refused(f"port {port} on {host} is taken (another demo or server?): choose another with "
                          f"--port {other} or {variable('port')}={other} "
                          f"/ 端口 {port} 已被占用，请用 --port 或 {variable('port')} 换一个端口") from None
        raise Refused(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another with --host/--port "
                      f"or {variable('host')}/{variable('port')} / 无法在 {host}:{port} 监听") from None
    return sock


def _free_port(host: str, family: int) -> int:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            return probe.getsockname()[1]
    except OSError:
        return 8001


def _server(engine, settings, sock: socket.socket):
    import uvicorn

    from closedloop.api.app import create_app

    host, port = sock.getsockname()[:2]
    # log_config=None: uvicorn's lines go through the handler `closedloop.app.logs` configured
    config = uvicorn.Config(create_app(engine, settings=settings), host=host, port=port, log_level="warning",
                            access_log=False, log_config=None)
    return uvicorn.Server(config)


# --- serve --------------------------------------------------------------------------------------
@click.command(short_help="serve the HTTP API, the dashboard and the metrics")
@database_option
@listen_options
@dispatch_option(unset="on")
@setting_option("log_format", type=click.Choice(["json", "text"]), unset="json", metavar=None,
                help="log lines as JSON objects or text")
@setting_option("log_level", metavar="LEVEL", unset="INFO", help="DEBUG, INFO, WARNING or ERROR")
@setting_option("follow", type=click.Choice(["background", "inline"]), unset="inline", metavar=None,
                help="background: a POST answers once its events are durable and a thread brings the views and "
                "reactors up (read your own write with ?min_position=); inline: once every view is current")
@option("--no-publish", is_flag=True, help=f"do not run the Kafka publisher even when {variable('kafka_bootstrap')} "
        "is set")
def serve(database_url, host, port, auto_dispatch, log_format, log_level, follow, no_publish) -> int:
    """Serve the HTTP API, the dashboard (at /), the API docs (at /docs) and the metrics (at
    /metrics); follow events other processes append, and raise alarms as deadlines pass."""
    from closedloop.app import logs

    settings = settings_from(database_url=database_url, host=host, port=port, auto_dispatch=auto_dispatch,
                             log_format=log_format, log_level=log_level, follow=follow)
    sock = listen(settings.host, settings.port)
    logs.configure(settings.log_format or "json", settings.log_level or "INFO")
    engine = open_engine(settings, auto_default=True)
    caught = engine.catch_up()
    say(f"closedloop: {engine.storage.describe()} — log head {engine.log.head()}, "
        f"{caught} event(s) brought into the views")
    say(f"closedloop: automatic dispatch {'on' if engine.network.dispatch.auto_dispatch else 'off'}, "
        f"part approval {'on' if engine.network.parts.auto_approve else 'off'}")
    if settings.follow == "background":
        # appends answer once durable; one thread follows the log (and ticks, and checkpoints)
        engine.follow_in_background()
        say("closedloop: views and reactors follow in the background: a POST answers once its events are "
            "durable; read your own write with ?min_position=<position>")
    say(f"closedloop: serving on http://{settings.host}:{settings.port} (the dashboard at /, API docs at /docs, "
        "metrics at /metrics)")
    if settings.auth and engine.keys.count() == 0:
        say("closedloop: no API keys exist yet, so every call will be refused: make one with\n"
            "  closedloop keys add NAME --role analyst   (roles: producer, operator, analyst, auditor, admin)")
    server = _server(engine, settings, sock)
    stop = threading.Event()
    publishing = None
    if settings.kafka_bootstrap and not no_publish:
        from closedloop.consumers import kafka as binding
        from closedloop.consumers.kafka_publisher import start_in_thread

        bootstrap = binding.bootstrap_servers(settings.kafka_bootstrap, settings=settings)
        say(f"closedloop: publishing feedback and loop alerts to Kafka at {','.join(bootstrap)}")
        publishing = start_in_thread(engine, bootstrap, stop)
    try:
        server.run(sockets=[sock])
    finally:
        stop.set()
        if publishing:
            publishing.join(timeout=15)
        engine.close()
        sock.close()
    return 0


# --- the demo's own database ----------------------------------------------------------------------
class DemoDatabase:
    """The demo's own SQLite file, reset at each start, but only when no other process has it:
    a lock file held while the demo runs keeps a second demo out, and SQLite itself is asked
    for an exclusive lock, which fails while any process (a `serve`, say) has the file open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._lock: int | None = None

    def claim(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise Refused(f"{self.path} is in use by another closedloop demo{f' (pid {holder})' if holder else ''}: "
                          "it was left alone; stop that demo, or give this one its own database with --database or "
                          f"{variable('database_url')} (and another port with --port) "
                          f"/ 演示数据库正被另一个演示使用，未作改动") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock = fd
        if self._open_elsewhere():
            self.release()
            raise Refused(f"{self.path} is open in another process (a serve?): it was left alone; stop that process, "
                          f"or give the demo another database with --database or {variable('database_url')} "
                          f"/ 演示数据库正被另一个进程打开，未作改动")

    def _open_elsewhere(self) -> bool:
        """Whether another process has the database open: in WAL mode every open connection
        holds a shared lock on the file, so an exclusive one cannot be had."""
        import sqlite3

        if not self.path.exists():
            return False
        conn = sqlite3.connect(self.path, timeout=0.2)
        try:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            conn.execute("BEGIN EXCLUSIVE")
            conn.rollback()
            return False
        except sqlite3.OperationalError as exc:
            return "locked" in str(exc) or "busy" in str(exc)
        except sqlite3.DatabaseError:
            return False  # not a database at all: nobody's, so the demo may replace it
        finally:
            conn.close()

    def reset(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor lets the lock go
            self._lock = None


# --- demo ---------------------------------------------------------------------------------------
def _post(url: str, body: bytes, content_type: str, key: str) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"content-type": content_type, "authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return orjson.loads(exc.read())


def _get(url: str, key: str) -> Any:
    request = urllib.request.Request(url, headers={"authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return orjson.loads(response.read())


@click.command(short_help="generate a realistic workload, ingest it over HTTP, report, serve")
@database_option(unset=f"{DEMO_URL}, started afresh")
@listen_options
@workload_options(days=5, calls=400)
@dispatch_option(unset="on")
@option("--no-serve", is_flag=True, help="report and exit instead of serving")
@progress_option
def demo(database_url, host, port, days, calls_per_day, outlets, regions, seed, auto_dispatch, no_serve,
         no_progress) -> int:
    """Generate a realistic workload, send it to the API as the producers would, report the loop,
    the three controls, the service network, feedback and settlement, then serve.

    Unless --database or CLOSEDLOOP_DATABASE_URL names another database (which it adds to),
    the demo keeps its data in data/demo.db and starts it afresh each time, but never while
    another process has it open.
    """
    settings = settings_from(database_url=database_url, host=host, port=port, auto_dispatch=auto_dispatch,
                             no_progress=no_progress)
    # the port first: a second demo on it stops here, before it touches any data
    sock = listen(settings.host, settings.port)
    own = None
    if settings.source("database_url") == "default":
        own = DemoDatabase(Path(DEMO_URL[len("sqlite:///"):]))
        own.claim()
        own.reset()
        settings = settings_from(database_url=DEMO_URL, host=host, port=port, auto_dispatch=auto_dispatch,
                                 no_progress=no_progress)
    try:
        return _demo(settings, sock, days, calls_per_day, outlets, regions, seed, no_serve)
    finally:
        sock.close()
        if own is not None:
            own.release()


def _demo(settings, sock: socket.socket, days: int, calls_per_day: int, outlets: int, regions: int, seed: int,
          no_serve: bool) -> int:
    from closedloop.app import logs
    from closedloop.simulation.workload import WorkloadSpec, generate

    logs.configure(settings.log_format or "text", settings.log_level or "WARNING")
    engine = open_engine(settings, auto_default=True)
    keys = {}
    for name, role, sources in DEMO_KEYS:
        if name not in {k["name"] for k in engine.keys.list()}:
            keys[role] = engine.keys.add(name, role, sources)
    server = _server(engine, settings, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://{settings.host}:{settings.port}"
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    else:
        engine.close()
        raise Refused(f"the API did not start on {base} / API 未能在 {base} 启动")
    say(f"closedloop demo: database {describe_url(settings.database_url)}")
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    spec = WorkloadSpec(seed=seed, days=days, calls_per_day=calls_per_day, outlets=outlets, regions=regions, end=end)
    say(f"closedloop demo: {days} days of calls ({calls_per_day}/day) across {outlets} "
        f"outlets in {regions} regions, sent to {base}/events/batch as the producers would")
    sent = accepted = rejected = 0
    batch: list[dict[str, Any]] = []
    bar = progress(settings, None, "demo events")

    def flush() -> None:
        nonlocal sent, accepted, rejected
        answer = _post(f"{base}/events/batch", orjson.dumps(batch), "application/cloudevents-batch+json",
                       keys["producer"])
        sent += len(batch)
        accepted += answer.get("accepted", 0)
        rejected += len(answer.get("rejected", []))
        bar.update(len(batch))
        batch.clear()

    for event in generate(spec):
        batch.append(event)
        if len(batch) >= 1000:
            flush()
    if batch:
        flush()
    bar.close()
    say(f"closedloop demo: {sent} events sent, {accepted} recorded, {rejected} rejected")
    since = iso(to_ms(end - timedelta(days=days + 1)))
    summary = _get(f"{base}/loop/summary", keys["analyst"])
    controls = _get(f"{base}/controls?from={since}", keys["analyst"])
    leaks = _get(f"{base}/loop/leaks?limit=5", keys["analyst"])
    _report(summary, controls, leaks)
    # the follow thread raises the alarms whose deadlines the stream has passed: let it catch up
    for _ in range(20):
        if not engine.tick():
            break
    _network_report(engine)
    _report_quality(_get(f"{base}/quality/feedback/summary", keys["analyst"]),
                    _get(f"{base}/settlement?lines=false&from={since}&to={iso(to_ms(end) + 1)}", keys["analyst"]))
    click.echo("\nAPI keys made for this demo (send as 'Authorization: Bearer <key>'; only their hashes are kept):")
    for role, secret in keys.items():
        click.echo(f"  {role:<9} {secret}")
    if no_serve:
        server.should_exit = True
        thread.join(timeout=10)
        engine.close()
        return 0
    say(f"\nThe dashboard: {base}/#key={keys['analyst']}\n(the link logs the page in with the analyst key; "
        "the part after # never reaches the server)")
    say(f"\nThe API is up at {base} — open {base}/docs, press Authorize and paste the analyst key; or\n"
        f"  curl -H 'Authorization: Bearer {keys['analyst']}' {base}/loop/summary\n"
        "Ctrl-C stops it.")
    try:
        while thread.is_alive():
            thread.join(timeout=1)
    except KeyboardInterrupt:
        server.should_exit = True
        thread.join(timeout=10)
    engine.close()
    return 0


def _report(summary: dict[str, Any], controls: dict[str, Any], leaks: dict[str, Any]) -> None:
    echo = click.echo
    echo(f"\nThe loop as of {summary['as_of']}: {summary['cases']} cases, "
         f"{summary['closed_loops']} with every step closed")
    echo(f"  {'step':<10} {'open':>7} {'leaked':>7}")
    for stage in ("recorded", "handled", "reviewed", "fed_back"):
        echo(f"  {stage:<10} {summary['open'][stage]:>7} {summary['leaks'][stage]:>7}")
    total = controls["total"]
    echo(f"\nThree controls, {total['services']} services from {controls['from']} (target < "
         f"{controls['target_ppm']:g} PPM each)")
    for measure in ("complaint", "dissatisfaction", "omission"):
        m = total[measure]
        verdict = "within target" if m["within_target"] else "OVER TARGET"
        rate = "n/a" if m["ppm"] is None else f"{m['ppm']:,.0f} PPM"
        echo(f"  {measure:<16} {m['count']:>6} services  {rate:>14}  {verdict}")
    if leaks["items"]:
        echo(f"\nOldest of {leaks['total']} leaks:")
        for item in leaks["items"]:
            who = item["case_id"] or f"call {item['call_id']}"
            echo(f"  {who:<16} {item['stage']:<9} due {item['due']}  owner {item['owner']}")


def _report_quality(feedback: dict[str, Any], settlement: dict[str, Any]) -> None:
    click.echo("\nFeedback to the departments (items; open; overdue):")
    for dept, counts in feedback["departments"].items():
        open_ = counts["awaiting_owner"] + counts["acting"] + counts["reopened"]
        click.echo(f"  {dept:<14} {counts['items']:>6} {open_:>6} {counts['overdue']:>6}")
    total = settlement["total"]
    click.echo(f"\nSettlement: {total['services']} completed and reviewed services, {len(settlement['statements'])} "
               f"outlets, net {total['net']} {settlement['currency']} after penalties "
               f"(closedloop statement --period YYYY-MM, or GET /settlement)")


def _network_report(engine) -> None:
    from closedloop.projections import alarms as alarms_view
    from closedloop.projections import outlets as outlets_view
    from closedloop.projections import stock as stock_view

    now = engine.clock()
    with engine.storage.reading() as tx:
        rows = tx.all(f"SELECT topic, COUNT(*) AS n FROM closedloop_events WHERE originator_id LIKE {tx.q} "
                      "AND topic IN ('case.dispatched', 'dispatch.alarmed', 'dispatch.held', 'part.approved', "
                      "'part.denied', 'part.held') GROUP BY topic", ["case:%"])
        by_engine = {r["topic"]: r["n"] for r in tx.all(
            "SELECT e.topic, COUNT(*) AS n FROM closedloop_events e JOIN closedloop_receipts r ON r.position = "
            f"e.{'rowid' if engine.storage.dialect == 'sqlite' else 'notification_id'} "
            f"WHERE r.source LIKE {tx.q} GROUP BY e.topic", ["/closedloop/engine/%"])}
    counts = {r["topic"]: r["n"] for r in rows}
    alarms = alarms_view.alarms(engine.storage, now, state="all", limit=1)["total"]
    open_alarms = alarms_view.alarms(engine.storage, now, limit=1)["total"]
    requests = stock_view.part_requests(engine.storage, now, state="all", limit=1)["total"]
    open_requests = stock_view.part_requests(engine.storage, now, limit=1)["total"]
    permits = {s: outlets_view.technicians(engine.storage, now, engine.network.permit, status=s, limit=1)["total"]
               for s in ("normal", "warning", "eliminated")}
    auto = "on" if engine.network.dispatch.auto_dispatch else "off"
    echo = click.echo
    echo(f"\nThe service network (automatic dispatch {auto}):")
    echo(f"  dispatches   {counts.get('case.dispatched', 0):>6}, of which by the engine "
         f"{by_engine.get('case.dispatched', 0)}; held for want of an outlet {by_engine.get('dispatch.held', 0)}")
    echo(f"  alarms       {alarms:>6}, open now {open_alarms}; escalated to the service center "
         f"{by_engine.get('case.transferred', 0)}")
    echo(f"  part requests{requests:>6}, open now {open_requests}; decided by the engine: approved "
         f"{by_engine.get('part.approved', 0)}, held {by_engine.get('part.held', 0)}, denied "
         f"{by_engine.get('part.denied', 0)}")
    echo(f"  permits      {permits['normal']:>6} normal, {permits['warning']} warning, {permits['eliminated']} "
         f"eliminated; {by_engine.get('permit.points_changed', 0)} point changes recorded")
