"""The `closedloop` command: serve the API, run the demo, replay the log, import events."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

import orjson

from closedloop.domain.facts import iso, to_ms


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date-time; try 2026-10-30T08:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _progress(total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ev", unit_scale=True, file=sys.stderr,
                disable=os.environ.get("CLOSEDLOOP_NO_PROGRESS") == "1")


def _engine(args: argparse.Namespace, auto_dispatch: bool = False, share: tuple[int, int] = (1, 1)):
    """The engine; automatic dispatch as the flag, else the environment, else `auto_dispatch` says."""
    from closedloop.app.engine import Engine
    from closedloop.reactors.network import NetworkConfig

    network = NetworkConfig.from_env(auto_dispatch=auto_dispatch)
    if getattr(args, "auto_dispatch", None) is not None:
        network = network.with_auto_dispatch(args.auto_dispatch)
    return Engine.open(args.database, network=network, share=share)


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


# --- serve ---------------------------------------------------------------------------------
def _serve(engine, host: str, port: int):
    import uvicorn

    from closedloop.api.app import create_app

    # log_config=None: uvicorn's lines go through the handler `closedloop.app.logs` configured
    config = uvicorn.Config(create_app(engine), host=host, port=port, log_level="warning", access_log=False,
                            log_config=None)
    return uvicorn.Server(config)


def cmd_serve(args: argparse.Namespace) -> int:
    from closedloop.app import logs

    logs.configure(args.log_format, args.log_level)
    engine = _engine(args, auto_dispatch=True)
    caught = engine.catch_up()
    print(f"closedloop: {engine.storage.describe()} — log head {engine.log.head()}, "
          f"{caught} event(s) brought into the views", file=sys.stderr)
    print(f"closedloop: automatic dispatch {'on' if engine.network.dispatch.auto_dispatch else 'off'}, "
          f"part approval {'on' if engine.network.parts.auto_approve else 'off'}", file=sys.stderr)
    print(f"closedloop: serving on http://{args.host}:{args.port} (the dashboard at /, API docs at /docs, "
          "metrics at /metrics)", file=sys.stderr)
    if os.environ.get("CLOSEDLOOP_AUTH", "on").lower() != "off" and engine.keys.count() == 0:
        print("closedloop: no API keys exist yet, so every call will be refused: make one with\n"
              "  closedloop keys add NAME --role analyst   (roles: producer, operator, analyst, auditor, admin)",
              file=sys.stderr)
    server = _serve(engine, args.host, args.port)
    stop = threading.Event()
    publishing = _start_publisher(engine, args, stop)
    try:
        server.run()
    finally:
        stop.set()
        if publishing:
            publishing.join(timeout=15)
        engine.close()
    return 0


def _start_publisher(engine, args: argparse.Namespace, stop: threading.Event):
    """With CLOSEDLOOP_KAFKA_BOOTSTRAP set, serve publishes feedback and alerts too."""
    from closedloop.consumers import kafka as binding

    if getattr(args, "no_publish", False) or not os.environ.get(binding.BOOTSTRAP_ENV):
        return None
    from closedloop.consumers.kafka_publisher import start_in_thread

    bootstrap = binding.bootstrap_servers()
    print(f"closedloop: publishing feedback and loop alerts to Kafka at {','.join(bootstrap)}", file=sys.stderr)
    return start_in_thread(engine, bootstrap, stop)


# --- demo ----------------------------------------------------------------------------------
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


DEMO_KEYS = (
    ("demo-producers", "producer", ["/"]),
    ("demo-operator", "operator", None),
    ("demo-analyst", "analyst", None),
    ("demo-auditor", "auditor", None),
    ("demo-admin", "admin", None),
)


def cmd_demo(args: argparse.Namespace) -> int:
    from closedloop.simulation.workload import WorkloadSpec, generate

    url = args.database or "sqlite:///data/demo.db"
    if url.startswith("sqlite:///") and not args.database:
        for suffix in ("", "-wal", "-shm"):
            Path(f"data/demo.db{suffix}").unlink(missing_ok=True)
    from closedloop.app import logs

    logs.configure(os.environ.get("CLOSEDLOOP_LOG_FORMAT", "text"), os.environ.get("CLOSEDLOOP_LOG_LEVEL", "WARNING"))
    args.database = url
    engine = _engine(args, auto_dispatch=True)
    keys = {}
    for name, role, sources in DEMO_KEYS:
        if name not in {k["name"] for k in engine.keys.list()}:
            keys[role] = engine.keys.add(name, role, sources)
    server = _serve(engine, args.host, args.port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://{args.host}:{args.port}"
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    else:
        print(f"closedloop demo: the API did not start on {base}", file=sys.stderr)
        return 1
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    spec = WorkloadSpec(seed=args.seed, days=args.days, calls_per_day=args.calls_per_day,
                        outlets=args.outlets, regions=args.regions, end=end)
    print(f"closedloop demo: {args.days} days of calls ({args.calls_per_day}/day) across {args.outlets} "
          f"outlets in {args.regions} regions, sent to {base}/events/batch as the producers would",
          file=sys.stderr)
    sent = accepted = rejected = 0
    batch: list[dict[str, Any]] = []
    bar = _progress(None, "demo events")

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
    print(f"closedloop demo: {sent} events sent, {accepted} recorded, {rejected} rejected", file=sys.stderr)
    summary = _get(f"{base}/loop/summary", keys["analyst"])
    controls = _get(f"{base}/controls?from={iso(to_ms(end - timedelta(days=args.days + 1)))}", keys["analyst"])
    leaks = _get(f"{base}/loop/leaks?limit=5", keys["analyst"])
    _report(summary, controls, leaks)
    # the follow thread raises the alarms whose deadlines the stream has passed: let it catch up
    for _ in range(20):
        if not engine.tick():
            break
    _network_report(engine)
    _report_quality(_get(f"{base}/quality/feedback/summary", keys["analyst"]),
                    _get(f"{base}/settlement?lines=false&from={iso(to_ms(end - timedelta(days=args.days + 1)))}"
                         f"&to={iso(to_ms(end) + 1)}", keys["analyst"]))
    print("\nAPI keys made for this demo (send as 'Authorization: Bearer <key>'; only their hashes are kept):")
    for role, secret in keys.items():
        print(f"  {role:<9} {secret}")
    if args.no_serve:
        server.should_exit = True
        thread.join(timeout=10)
        engine.close()
        return 0
    print(f"\nThe dashboard: {base}/#key={keys['analyst']}\n(the link logs the page in with the analyst key; "
          "the part after # never reaches the server)", file=sys.stderr)
    print(f"\nThe API is up at {base} — open {base}/docs, press Authorize and paste the analyst key; or\n"
          f"  curl -H 'Authorization: Bearer {keys['analyst']}' {base}/loop/summary\n"
          "Ctrl-C stops it.", file=sys.stderr)
    try:
        while thread.is_alive():
            thread.join(timeout=1)
    except KeyboardInterrupt:
        server.should_exit = True
        thread.join(timeout=10)
    engine.close()
    return 0


def _report(summary: dict[str, Any], controls: dict[str, Any], leaks: dict[str, Any]) -> None:
    print(f"\nThe loop as of {summary['as_of']}: {summary['cases']} cases, "
          f"{summary['closed_loops']} with every step closed")
    print(f"  {'step':<10} {'open':>7} {'leaked':>7}")
    for stage in ("recorded", "handled", "reviewed", "fed_back"):
        print(f"  {stage:<10} {summary['open'][stage]:>7} {summary['leaks'][stage]:>7}")
    total = controls["total"]
    print(f"\nThree controls, {total['services']} services from {controls['from']} (target < "
          f"{controls['target_ppm']:g} PPM each)")
    for measure in ("complaint", "dissatisfaction", "omission"):
        m = total[measure]
        verdict = "within target" if m["within_target"] else "OVER TARGET"
        rate = "n/a" if m["ppm"] is None else f"{m['ppm']:,.0f} PPM"
        print(f"  {measure:<16} {m['count']:>6} services  {rate:>14}  {verdict}")
    if leaks["items"]:
        print(f"\nOldest of {leaks['total']} leaks:")
        for item in leaks["items"]:
            who = item["case_id"] or f"call {item['call_id']}"
            print(f"  {who:<16} {item['stage']:<9} due {item['due']}  owner {item['owner']}")


def _report_quality(feedback: dict[str, Any], settlement: dict[str, Any]) -> None:
    print("\nFeedback to the departments (items; open; overdue):")
    for dept, counts in feedback["departments"].items():
        open_ = counts["awaiting_owner"] + counts["acting"] + counts["reopened"]
        print(f"  {dept:<14} {counts['items']:>6} {open_:>6} {counts['overdue']:>6}")
    total = settlement["total"]
    print(f"\nSettlement: {total['services']} completed and reviewed services, {len(settlement['statements'])} "
          f"outlets, net {total['net']} {settlement['currency']} after penalties "
          f"(closedloop statement --period YYYY-MM, or GET /settlement)")
def _network_report(engine) -> None:
    from closedloop.projections import alarms as alarms_view
    from closedloop.projections import outlets as outlets_view
    from closedloop.projections import stock as stock_view

    now = engine.clock()
    with engine.storage.reading() as tx:
        rows = tx.all("SELECT topic, COUNT(*) AS n FROM closedloop_events WHERE originator_id LIKE 'case:%' "
                      "AND topic IN ('case.dispatched', 'dispatch.alarmed', 'dispatch.held', 'part.approved', "
                      "'part.denied', 'part.held') GROUP BY topic")
        by_engine = {r["topic"]: r["n"] for r in tx.all(
            "SELECT e.topic, COUNT(*) AS n FROM closedloop_events e JOIN closedloop_receipts r ON r.position = "
            f"e.{'rowid' if engine.storage.dialect == 'sqlite' else 'notification_id'} "
            "WHERE r.source LIKE '/closedloop/engine/%' GROUP BY e.topic")}
    counts = {r["topic"]: r["n"] for r in rows}
    alarms = alarms_view.alarms(engine.storage, now, state="all", limit=1)["total"]
    open_alarms = alarms_view.alarms(engine.storage, now, limit=1)["total"]
    requests = stock_view.part_requests(engine.storage, now, state="all", limit=1)["total"]
    open_requests = stock_view.part_requests(engine.storage, now, limit=1)["total"]
    permits = {s: outlets_view.technicians(engine.storage, now, engine.network.permit, status=s, limit=1)["total"]
               for s in ("normal", "warning", "eliminated")}
    auto = "on" if engine.network.dispatch.auto_dispatch else "off"
    print(f"\nThe service network (automatic dispatch {auto}):")
    print(f"  dispatches   {counts.get('case.dispatched', 0):>6}, of which by the engine "
          f"{by_engine.get('case.dispatched', 0)}; held for want of an outlet {by_engine.get('dispatch.held', 0)}")
    print(f"  alarms       {alarms:>6}, open now {open_alarms}; escalated to the service center "
          f"{by_engine.get('case.transferred', 0)}")
    print(f"  part requests{requests:>6}, open now {open_requests}; decided by the engine: approved "
          f"{by_engine.get('part.approved', 0)}, held {by_engine.get('part.held', 0)}, denied "
          f"{by_engine.get('part.denied', 0)}")
    print(f"  permits      {permits['normal']:>6} normal, {permits['warning']} warning, {permits['eliminated']} "
          f"eliminated; {by_engine.get('permit.points_changed', 0)} point changes recorded")


# --- replay --------------------------------------------------------------------------------
def cmd_replay(args: argparse.Namespace) -> int:
    from closedloop.app.engine import Engine
    from closedloop.projections import leaks as leaks_view
    from closedloop.app.replay import loop_as_of

    engine: Engine = _engine(args)
    try:
        head = engine.log.head()
        bar = _progress(head, "replay")
        if args.as_of is None and args.known_at is None:
            started = time.perf_counter()
            from closedloop.projections.rebuild import default_workers

            workers = args.workers if args.workers is not None else default_workers()
            n = engine.projector.rebuild(bar.update, workers=max(1, workers))
            bar.close()
            took = time.perf_counter() - started
            print(f"rebuilt every view from {n} events in {took:.1f} s ({n / max(took, 1e-9):,.0f} events/s)",
                  file=sys.stderr)
            _print(leaks_view.summary(engine.storage, engine.clock()))
            return 0
        at = to_ms(args.as_of) if args.as_of else engine.clock()
        known = to_ms(args.known_at) if args.known_at else None
        out = loop_as_of(engine.log, engine.policy, at, known, bar.update)
        bar.close()
        out["known_at"] = iso(known)
        _print(out)
        return 0
    finally:
        engine.close()


# --- ingest, generate, status ----------------------------------------------------------
def cmd_ingest(args: argparse.Namespace) -> int:
    from closedloop.consumers.files import read_events
    from closedloop.app.engine import feed

    engine = _engine(args)
    try:
        engine.defer_views = args.defer_views
        bar = _progress(None, f"ingest {Path(args.file).name}")
        result = feed(engine, read_events(args.file), args.batch, channel=f"file:{Path(args.file).name}",
                      progress=bar.update)
        bar.close()
        print(f"{result.accepted} recorded, {result.duplicates} already recorded, "
              f"{len(result.rejected)} rejected into the quarantine", file=sys.stderr)
        if args.defer_views:
            from closedloop.projections.rebuild import default_workers

            bar = _progress(engine.log.head(), "build the views")
            started = time.perf_counter()
            n = engine.projector.rebuild(bar.update, workers=default_workers())
            bar.close()
            print(f"views built from {n} events in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        for r in result.rejected[:10]:
            print(f"  {r.describe()}", file=sys.stderr)
        return 0 if not result.rejected else 2
    finally:
        engine.close()


def cmd_generate(args: argparse.Namespace) -> int:
    from closedloop.simulation.workload import WorkloadSpec, generate

    spec = WorkloadSpec(seed=args.seed, days=args.days, calls_per_day=args.calls_per_day,
                        outlets=args.outlets, regions=args.regions, end=args.end)
    output = args.output if args.output is not None else (None if args.kafka_topic else "-")
    if args.kafka_topic:
        return _generate_to_kafka(args, spec, output)
    out = sys.stdout.buffer if output == "-" else open(output, "wb")
    n = 0
    bar = _progress(None, "generate") if output != "-" else None
    try:
        for event in generate(spec):
            out.write(orjson.dumps(event) + b"\n")
            n += 1
            if bar is not None and n % 5000 == 0:
                bar.update(5000)
    finally:
        if bar is not None:
            bar.update(n % 5000)
            bar.close()
        if out is not sys.stdout.buffer:
            out.close()
    print(f"{n} events written to {output}", file=sys.stderr)
    return 0


def _generate_to_kafka(args: argparse.Namespace, spec, output: str | None) -> int:
    """The same events, in the same order, to a topic (and to `output` too when given)."""
    from closedloop.consumers import kafka as binding
    from closedloop.simulation.workload import generate

    bootstrap = binding.bootstrap_servers(args.bootstrap)
    binding.ensure_topics(bootstrap, [args.kafka_topic], binding.topic_partitions(args.partitions))
    out = None if output is None else (sys.stdout.buffer if output == "-" else open(output, "wb"))

    def events():
        for event in generate(spec):
            if out is not None:
                out.write(orjson.dumps(event) + b"\n")
            yield event

    bar = _progress(None, f"generate -> {args.kafka_topic}")
    started = time.perf_counter()
    try:
        n = binding.produce(bootstrap, args.kafka_topic, events(), mode=args.mode, progress=bar.update)
    finally:
        bar.close()
        if out is not None and out is not sys.stdout.buffer:
            out.close()
    took = time.perf_counter() - started
    print(f"{n} events sent to {args.kafka_topic} at {','.join(bootstrap)} ({args.mode} mode, keyed by subject; "
          f"{n / max(took, 1e-9):,.0f} events/s)" + (f" and written to {output}" if output else ""), file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from closedloop.projections import leaks as leaks_view

    engine = _engine(args)
    try:
        from closedloop.projections import alarms as alarms_view

        _print({"database": engine.storage.describe(), "log_head": engine.log.head(),
                "view_lag": engine.projector.lag(), "quarantine_open": engine.quarantine.list()["total"],
                "loop": leaks_view.summary(engine.storage, engine.clock()),
                "dispatch_alarms_open": alarms_view.alarms(engine.storage, engine.clock(), limit=1)["total"]})
        return 0
    finally:
        engine.close()


def cmd_verify(args: argparse.Namespace) -> int:
    from closedloop.log import chain

    engine = _engine(args)
    try:
        against = []
        for path in args.checkpoint or []:
            loaded = json.loads(Path(path).read_text())
            against += loaded if isinstance(loaded, list) else [loaded]
        bar = _progress(engine.log.head(), "verify")
        verdict = chain.verify(engine.storage, bar.update, against=against)
        bar.close()
        _print(verdict.to_json())
        if verdict.ok:
            print(f"the log holds: {verdict.checked} events chained up to position {verdict.head}"
                  + (f", and {len(against)} checkpoint(s) agree" if against else ""), file=sys.stderr)
            return 0
        print(f"TAMPERING DETECTED: {verdict.problem}", file=sys.stderr)
        return 3
    finally:
        engine.close()


def cmd_checkpoint(args: argparse.Namespace) -> int:
    from closedloop.log import chain

    engine = _engine(args)
    try:
        point = chain.take_checkpoint(engine.storage, engine.clock())
        point["taken"] = iso(point["taken"])
        if args.export:
            all_points = [dict(c, taken=iso(c["taken"])) for c in chain.checkpoints(engine.storage)]
            Path(args.export).write_text(json.dumps(all_points, indent=2))
            print(f"{len(all_points)} checkpoint(s) written to {args.export}: keep a copy where the "
                  "operators of this database cannot change it", file=sys.stderr)
        _print(point)
        return 0
    finally:
        engine.close()


def cmd_keys(args: argparse.Namespace) -> int:
    engine = _engine(args)
    try:
        if args.action == "add":
            if not args.name:
                raise ValueError("name the key: closedloop keys add NAME --role ROLE")
            secret = engine.keys.add(args.name, args.role, args.source, args.rate)
            print(secret)
            print(f"key {args.name!r} ({args.role}) made; this is the only time it is shown", file=sys.stderr)
        elif args.action == "revoke":
            if not engine.keys.revoke(args.name):
                print(f"no live key named {args.name!r}", file=sys.stderr)
                return 1
            print(f"key {args.name!r} revoked", file=sys.stderr)
        else:
            _print([dict(k, created=iso(k["created"]), revoked=iso(k["revoked"])) for k in engine.keys.list()])
        return 0
    finally:
        engine.close()


# --- kafka: consume, publish, lag ----------------------------------------------------------
def _consume_status(args: argparse.Namespace) -> int:
    from closedloop.consumers import kafka as binding
    from closedloop.consumers.kafka_consumer import lag_report
    from closedloop.consumers.kafka_publisher import publisher_status

    bootstrap = binding.bootstrap_servers(args.bootstrap) if (args.bootstrap or
                                                              os.environ.get(binding.BOOTSTRAP_ENV)) else None
    engine = _engine(args)
    try:
        report = lag_report(engine.storage, bootstrap, args.topic or None)
        report["publisher"] = publisher_status(engine)
        _print(report)
        return 0 if "error" not in report else 1
    finally:
        engine.close()


def cmd_consume(args: argparse.Namespace) -> int:
    import signal

    from closedloop.consumers import kafka as binding
    from closedloop.consumers.kafka_consumer import KafkaIngest, parse_member

    if args.status:
        return _consume_status(args)
    bootstrap = binding.bootstrap_servers(args.bootstrap)
    try:
        member = parse_member(args.member)
    except ValueError as exc:
        raise SystemExit(f"closedloop consume: {exc}") from None
    topics = args.topic or [binding.DEFAULT_TOPIC]
    engine = _engine(args, share=member if args.followers == "share" else (1, 1))
    if args.followers == "any":
        engine.skip_busy()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ingest = KafkaIngest(engine, bootstrap, topics, member=member,
                         dlq_topic=None if args.no_dlq else args.dlq_topic, batch_size=args.batch)
    bar = _progress(None, f"consume {','.join(topics)} [{args.member}]")
    shown = [0.0]

    def progress(n: int, totals) -> None:
        bar.update(n)
        if time.monotonic() - shown[0] > 1:
            shown[0] = time.monotonic()
            lag = ingest.lag()
            bar.set_postfix(lag=sum(lag.values()), quarantined=totals.quarantined, refresh=False)

    print(f"closedloop consume: {engine.storage.describe()} <- {','.join(bootstrap)} topics {','.join(topics)}, "
          f"member {args.member}; keeps views {', '.join(v.name for v in engine.views) or 'none'} and reactors "
          f"{', '.join(r.name for r in engine.reactors) or 'none'} current", file=sys.stderr)
    started = time.perf_counter()
    try:
        totals = ingest.run(stop, until_idle=args.until_idle, progress=progress)
    except KeyboardInterrupt:
        totals = ingest.totals
    finally:
        bar.close()
        ingest.close()
        engine.close()
    took = time.perf_counter() - started
    print(f"{totals.messages} message(s) read: {totals.accepted} recorded, {totals.duplicates} already recorded, "
          f"{totals.quarantined} quarantined" + (f" and sent to {args.dlq_topic}" if not args.no_dlq else "")
          + f"; {took:.1f} s ({totals.messages / max(took, 1e-9):,.0f} messages/s)", file=sys.stderr)
    return 0


def cmd_kafka_lag(args: argparse.Namespace) -> int:
    return _consume_status(args)


def cmd_publish(args: argparse.Namespace) -> int:
    import signal

    from closedloop.consumers import kafka as binding
    from closedloop.consumers.kafka_publisher import KafkaPublisher

    bootstrap = binding.bootstrap_servers(args.bootstrap)
    engine = _engine(args)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        publisher = KafkaPublisher(engine, bootstrap, mode=args.mode,
                                   partitions=binding.topic_partitions(args.partitions))
        if args.from_now and publisher.start_at_head():
            print("closedloop publish: first start, history skipped: publishing from the log's head",
                  file=sys.stderr)
        bar = _progress(None, "publish")
        print(f"closedloop publish: {engine.storage.describe()} -> {','.join(bootstrap)} "
              f"({', '.join(publisher.topics.all())})", file=sys.stderr)
        try:
            totals = publisher.run(stop, tick=not args.no_tick, until_idle=args.until_idle,
                                   progress=lambda n, _t: bar.update(n))
        except KeyboardInterrupt:
            totals = publisher.totals
        finally:
            bar.close()
            publisher.close()
        print(f"{totals.messages} message(s) published: "
              + (", ".join(f"{n} to {t}" for t, n in sorted(totals.by_topic.items())) or "nothing new"),
              file=sys.stderr)
        return 0
    finally:
        engine.close()


def cmd_statement(args: argparse.Namespace) -> int:
    from closedloop.domain.quality import money, period_range
    from closedloop.projections.settlement import statements

    try:
        start, end = period_range(args.period)
    except ValueError as exc:
        print(f"closedloop statement: {exc}", file=sys.stderr)
        return 2
    engine = _engine(args)
    try:
        at = to_ms(args.as_of) if args.as_of else engine.clock()
        out = statements(engine.storage, engine.quality, start, end, at, args.outlet)
        if args.csv:
            import csv

            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(["outlet_id", "case_id", "kind", "job", "done", "reviewed", "price", "penalties", "net",
                             "currency"])
            for st in out["statements"]:
                for line in st["lines"]:
                    writer.writerow([st["outlet_id"], line["case_id"], line["kind"], line["job"], line["done"],
                                     line["reviewed"], money(line["price_cents"]), money(line["penalty_cents"]),
                                     line["net"], st["currency"]])
            return 0
        if args.outlet and not out["statements"]:
            print(f"closedloop statement: outlet {args.outlet} has no settled cases or penalties in {args.period}",
                  file=sys.stderr)
        if not args.outlet:
            for st in out["statements"]:
                st.pop("lines", None)
        out["period"] = args.period
        _print(out)
        return 0
    finally:
        engine.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="closedloop", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database", default=None,
                        help="where the log and views live (default: $CLOSEDLOOP_DATABASE_URL, "
                        "else sqlite:///data/closedloop.db; the demo uses sqlite:///data/demo.db)")
    sub = parser.add_subparsers(dest="command", required=True)

    def net(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default=os.environ.get("CLOSEDLOOP_HOST", "127.0.0.1"))
        p.add_argument("--port", type=int, default=int(os.environ.get("CLOSEDLOOP_PORT", "8000")))

    def workload(p: argparse.ArgumentParser, days: int, calls: int) -> None:
        p.add_argument("--days", type=int, default=days)
        p.add_argument("--calls-per-day", type=int, default=calls)
        p.add_argument("--outlets", type=int, default=40)
        p.add_argument("--regions", type=int, default=8)
        p.add_argument("--seed", type=int, default=7)

    def dispatching(p: argparse.ArgumentParser) -> None:
        p.add_argument("--auto-dispatch", action=argparse.BooleanOptionalAction, default=None,
                       help="the engine picks outlets for registered cases, re-dispatches declined ones and "
                       "escalates unaccepted ones to the next outlet (default: on, or $CLOSEDLOOP_AUTO_DISPATCH)")

    p = sub.add_parser("serve", parents=[common], help="serve the HTTP API, the dashboard and the metrics")
    net(p)
    dispatching(p)
    p.add_argument("--log-format", choices=["json", "text"], default=None,
                   help="log lines as JSON objects (default; $CLOSEDLOOP_LOG_FORMAT) or text")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO (default; $CLOSEDLOOP_LOG_LEVEL), WARNING, ERROR")
    p.add_argument("--no-publish", action="store_true",
                   help="do not run the Kafka publisher even when CLOSEDLOOP_KAFKA_BOOTSTRAP is set")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", parents=[common], help="generate a realistic workload, ingest it over HTTP, report, serve")
    net(p)
    workload(p, days=5, calls=400)
    dispatching(p)
    p.add_argument("--no-serve", action="store_true", help="report and exit instead of serving")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("replay", parents=[common], help="rebuild every view from the log, or report the loop at a past moment")
    p.add_argument("--as-of", type=_moment, default=None, help="the world as it stood then (event time)")
    p.add_argument("--known-at", type=_moment, default=None, help="only what had been recorded by then")
    p.add_argument("--workers", type=int, default=None,
                   help="processes folding views at once (default: CLOSEDLOOP_REPLAY_WORKERS, else one per core)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("ingest", parents=[common], help="append events from a JSON-lines or JSON-array file")
    p.add_argument("file")
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--defer-views", action="store_true",
                   help="a load of history: build the views once at the end (a parallel replay) instead of "
                   "batch by batch; other readers see them empty until then")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("generate", help="write a synthetic workload as JSON lines, or send it to a Kafka topic")
    workload(p, days=3, calls=400)
    p.add_argument("--end", type=_moment, default=None, help="the last moment of the workload")
    p.add_argument("-o", "--output", default=None,
                   help="a JSON-lines file, - for stdout (default: stdout, or none with --kafka-topic)")
    p.add_argument("--kafka-topic", default=None,
                   help="send each event as a message to this topic, keyed by its subject (created when missing)")
    p.add_argument("--bootstrap", default=None,
                   help="Kafka brokers host:port[,host:port] (default: $CLOSEDLOOP_KAFKA_BOOTSTRAP)")
    p.add_argument("--mode", choices=["structured", "binary"], default="structured",
                   help="CloudEvents content mode of the messages")
    p.add_argument("--partitions", default=os.environ.get("CLOSEDLOOP_KAFKA_PARTITIONS", "3"),
                   help="partitions of the topic when it has to be created")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("verify", parents=[common],
                       help="walk the log against its hash chain; exit 3 at the first tampered position")
    p.add_argument("--checkpoint", action="append", help="a checkpoint file exported earlier (repeatable)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("checkpoint", parents=[common], help="record the chain's tip (position, hash, time)")
    p.add_argument("--export", help="write every checkpoint taken so far to this JSON file")
    p.set_defaults(func=cmd_checkpoint)

    p = sub.add_parser("keys", parents=[common], help="make, list and revoke API keys")
    p.add_argument("action", choices=["add", "list", "revoke"])
    p.add_argument("name", nargs="?")
    p.add_argument("--role", default="analyst", choices=["producer", "operator", "analyst", "auditor", "admin"])
    p.add_argument("--source", action="append", help="a source prefix a producer key may send as (repeatable)")
    p.add_argument("--rate", type=float, default=None, help="events per second this key may send")
    p.set_defaults(func=cmd_keys)
    p = sub.add_parser("statement", parents=[common],
                       help="the settlement of the outlets for a period (one outlet's lines with --outlet)")
    p.add_argument("--period", required=True, help="2026-10 (a month), 2026-W44, 2026-10-30 or 2026")
    p.add_argument("--outlet", default=None, help="one outlet: its statement, line by line")
    p.add_argument("--as-of", type=_moment, default=None, help="as the world stood then (default: now)")
    p.add_argument("--csv", action="store_true", help="the lines as CSV, for a spreadsheet")
    p.set_defaults(func=cmd_statement)

    p = sub.add_parser("status", parents=[common], help="the log's head, the views' lag, the loop now")
    p.set_defaults(func=cmd_status)

    kafka = argparse.ArgumentParser(add_help=False)
    kafka.add_argument("--bootstrap", default=None,
                       help="Kafka brokers host:port[,host:port] (default: $CLOSEDLOOP_KAFKA_BOOTSTRAP)")

    p = sub.add_parser("consume", parents=[common, kafka],
                       help="append contract events from Kafka topics (exactly once in effect)")
    p.add_argument("--topic", action="append", default=None,
                   help="a topic to read (repeatable; default closedloop.events)")
    p.add_argument("--member", default="1/1",
                   help="k/n: this process takes the partitions p with p %% n == k-1 (default 1/1: all)")
    p.add_argument("--followers", choices=["any", "share", "all"], default="any",
                   help="any (default): every member keeps every view and reactor current, passing over those "
                   "another member is working on at the moment (PostgreSQL), so whoever is free does the next "
                   "piece; share: member k of n keeps only its share of them (split by weight); all: every "
                   "member keeps every view and reactor, queueing for each other")
    p.add_argument("--dlq-topic", default="closedloop.events.dlq", help="where poison messages go")
    p.add_argument("--no-dlq", action="store_true", help="quarantine poison messages only")
    p.add_argument("--batch", type=int, default=10_000, help="messages per transaction at most")
    p.add_argument("--until-idle", action="store_true", help="stop once every partition is read to its end")
    p.add_argument("--status", action="store_true", help="print each partition's position and lag, and exit")
    p.set_defaults(func=cmd_consume)

    p = sub.add_parser("kafka-lag", parents=[common, kafka],
                       help="each partition's stored position and lag, and the publisher's position")
    p.add_argument("--topic", action="append", default=None)
    p.set_defaults(func=cmd_kafka_lag)

    p = sub.add_parser("publish", parents=[common, kafka],
                       help="publish feedback to department topics and loop alerts to the alerts topic")
    p.add_argument("--mode", choices=["structured", "binary"], default="structured",
                   help="CloudEvents content mode of the messages")
    p.add_argument("--partitions", default=os.environ.get("CLOSEDLOOP_KAFKA_PARTITIONS", "3"),
                   help="partitions of topics the publisher creates")
    p.add_argument("--from-now", action="store_true",
                   help="on the first start, skip what the log already holds")
    p.add_argument("--no-tick", action="store_true",
                   help="do not decide leak alerts here (another process, e.g. serve, does)")
    p.add_argument("--until-idle", action="store_true", help="stop once the log is published to its head")
    p.set_defaults(func=cmd_publish)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the user's language, not a traceback
        from closedloop.log.storage import ConfigurationError

        if isinstance(exc, ConfigurationError) or os.environ.get("CLOSEDLOOP_DEBUG") != "1":
            print(f"closedloop {args.command}: {exc}", file=sys.stderr)
            if not isinstance(exc, ConfigurationError):
                print("(set CLOSEDLOOP_DEBUG=1 for the full traceback)", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
