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


def _engine(args: argparse.Namespace, auto_dispatch: bool = False):
    """The engine; automatic dispatch as the flag, else the environment, else `auto_dispatch` says."""
    from closedloop.engine import Engine
    from closedloop.network import NetworkConfig

    network = NetworkConfig.from_env(auto_dispatch=auto_dispatch)
    if getattr(args, "auto_dispatch", None) is not None:
        network = network.with_auto_dispatch(args.auto_dispatch)
    return Engine.open(args.database, network=network)


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


# --- serve ---------------------------------------------------------------------------------
def _serve(engine, host: str, port: int, ready: threading.Event | None = None):
    import uvicorn

    from closedloop.api.app import create_app

    config = uvicorn.Config(create_app(engine), host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    return server


def cmd_serve(args: argparse.Namespace) -> int:
    engine = _engine(args, auto_dispatch=True)
    caught = engine.catch_up()
    print(f"closedloop: {engine.storage.describe()} — log head {engine.log.head()}, "
          f"{caught} event(s) brought into the views", file=sys.stderr)
    print(f"closedloop: automatic dispatch {'on' if engine.network.dispatch.auto_dispatch else 'off'}, "
          f"part approval {'on' if engine.network.parts.auto_approve else 'off'}", file=sys.stderr)
    print(f"closedloop: serving on http://{args.host}:{args.port} (API docs at /docs)", file=sys.stderr)
    server = _serve(engine, args.host, args.port)
    try:
        server.run()
    finally:
        engine.close()
    return 0


# --- demo ----------------------------------------------------------------------------------
def _post(url: str, body: bytes, content_type: str) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"content-type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return orjson.loads(exc.read())


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:
        return orjson.loads(response.read())


def cmd_demo(args: argparse.Namespace) -> int:
    from closedloop.workload import WorkloadSpec, generate

    url = args.database or "sqlite:///data/demo.db"
    if url.startswith("sqlite:///") and not args.database:
        for suffix in ("", "-wal", "-shm"):
            Path(f"data/demo.db{suffix}").unlink(missing_ok=True)
    args.database = url
    engine = _engine(args, auto_dispatch=True)
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
        answer = _post(f"{base}/events/batch", orjson.dumps(batch), "application/cloudevents-batch+json")
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
    summary = _get(f"{base}/loop/summary")
    controls = _get(f"{base}/controls?from={iso(to_ms(end - timedelta(days=args.days + 1)))}")
    leaks = _get(f"{base}/loop/leaks?limit=5")
    _report(summary, controls, leaks)
    # the follow thread raises the alarms whose deadlines the stream has passed: let it catch up
    for _ in range(20):
        if not engine.tick():
            break
    _network_report(engine)
    if args.no_serve:
        server.should_exit = True
        thread.join(timeout=10)
        engine.close()
        return 0
    print(f"\nThe API is up at {base} — try {base}/docs, {base}/loop/summary, {base}/loop/leaks, "
          f"{base}/controls?by=region. Ctrl-C stops it.", file=sys.stderr)
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
    from closedloop.engine import Engine
    from closedloop.projections import leaks as leaks_view
    from closedloop.replay import loop_as_of

    engine: Engine = _engine(args)
    try:
        head = engine.log.head()
        bar = _progress(head, "replay")
        if args.as_of is None and args.known_at is None:
            started = time.perf_counter()
            n = engine.projector.rebuild(bar.update)
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
    from closedloop.engine import feed

    engine = _engine(args)
    try:
        bar = _progress(None, f"ingest {Path(args.file).name}")
        result = feed(engine, read_events(args.file), args.batch, channel=f"file:{Path(args.file).name}",
                      progress=bar.update)
        bar.close()
        print(f"{result.accepted} recorded, {result.duplicates} already recorded, "
              f"{len(result.rejected)} rejected into the quarantine", file=sys.stderr)
        for r in result.rejected[:10]:
            print(f"  {r.describe()}", file=sys.stderr)
        return 0 if not result.rejected else 2
    finally:
        engine.close()


def cmd_generate(args: argparse.Namespace) -> int:
    from closedloop.workload import WorkloadSpec, generate

    spec = WorkloadSpec(seed=args.seed, days=args.days, calls_per_day=args.calls_per_day,
                        outlets=args.outlets, regions=args.regions, end=args.end)
    out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")
    n = 0
    try:
        for event in generate(spec):
            out.write(orjson.dumps(event) + b"\n")
            n += 1
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    print(f"{n} events written to {args.output}", file=sys.stderr)
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

    p = sub.add_parser("serve", parents=[common], help="serve the HTTP API")
    net(p)
    dispatching(p)
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
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("ingest", parents=[common], help="append events from a JSON-lines or JSON-array file")
    p.add_argument("file")
    p.add_argument("--batch", type=int, default=2000)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("generate", help="write a synthetic workload as JSON lines")
    workload(p, days=3, calls=400)
    p.add_argument("--end", type=_moment, default=None, help="the last moment of the workload")
    p.add_argument("-o", "--output", default="-")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("status", parents=[common], help="the log's head, the views' lag, the loop now")
    p.set_defaults(func=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the user's language, not a traceback
        from closedloop.storage import ConfigurationError

        if isinstance(exc, ConfigurationError) or os.environ.get("CLOSEDLOOP_DEBUG") != "1":
            print(f"closedloop {args.command}: {exc}", file=sys.stderr)
            if not isinstance(exc, ConfigurationError):
                print("(set CLOSEDLOOP_DEBUG=1 for the full traceback)", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
