"""The commands on the log and its views: ingest, generate, replay, status, statement,
verify, checkpoint and keys. Those that only read (status, statement, verify, replay,
checkpoint, keys list/revoke) find an existing database or say there is none."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import click
import orjson

from closedloop.cli.common import (Group, Moment, Number, Period, bootstrap_option, database_option, open_engine,
                                   open_read_storage, option, partitions_option, print_json, progress, progress_option,
                                   require_database, say, setting_option, settings_from, worker_count,
                                   workload_options)
from closedloop.domain.facts import iso, to_ms

ROLES = ["producer", "operator", "analyst", "auditor", "admin"]


# --- replay -------------------------------------------------------------------------------------
@click.command(short_help="rebuild every view from the log, or report the loop at a past moment")
@database_option
@option("--as-of", type=Moment(), default=None, show_default="now",
        help="the world as it stood then (event time); the live views are left alone")
@option("--known-at", type=Moment(), default=None, show_default="everything recorded",
        help="only what had been recorded by then")
@setting_option("replay_workers", "--workers", unset="one per core", metavar="N",
                help="processes folding views at once")
@progress_option
def replay(database_url, as_of, known_at, replay_workers, no_progress) -> int:
    """Drop every view and rebuild it from the log; or, with --as-of/--known-at, report the
    loop as it stood then, replayed apart from the live views."""
    from closedloop.app.replay import loop_as_of
    from closedloop.projections import leaks as leaks_view

    settings = settings_from(database_url=database_url, replay_workers=replay_workers, no_progress=no_progress)
    engine = open_engine(settings, must_exist="replay")
    try:
        head = engine.log.head()
        bar = progress(settings, head, "replay")
        if as_of is None and known_at is None:
            started = time.perf_counter()
            n = engine.projector.rebuild(bar.update, workers=worker_count(settings))
            bar.close()
            took = time.perf_counter() - started
            say(f"rebuilt every view from {n} events in {took:.1f} s ({n / max(took, 1e-9):,.0f} events/s)")
            print_json(leaks_view.summary(engine.storage, engine.clock()))
            return 0
        at = to_ms(as_of) if as_of else engine.clock()
        known = to_ms(known_at) if known_at else None
        out = loop_as_of(engine.log, engine.policy, at, known, bar.update)
        bar.close()
        out["known_at"] = iso(known)
        print_json(out)
        return 0
    finally:
        engine.close()


# --- ingest, generate ---------------------------------------------------------------------------
@click.command(short_help="append events from a JSON-lines or JSON-array file")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@database_option
@option("--batch", type=Number(1), default=2000, help="events per transaction")
@option("--defer-views", is_flag=True,
        help="a load of history: build the views once at the end (a parallel replay) instead of batch by batch; "
        "other readers see them empty until then")
@progress_option
def ingest(file, database_url, batch, defer_views, no_progress) -> int:
    """Append the events in FILE (JSON lines, or one JSON array): backfills, exports of another
    system. Exits 2 when some were rejected into the quarantine."""
    from closedloop.app.engine import feed
    from closedloop.consumers.files import read_events

    settings = settings_from(database_url=database_url, no_progress=no_progress)
    engine = open_engine(settings)
    try:
        engine.defer_views = defer_views
        bar = progress(settings, None, f"ingest {Path(file).name}")
        result = feed(engine, read_events(file), batch, channel=f"file:{Path(file).name}", progress=bar.update)
        bar.close()
        say(f"{result.accepted} recorded, {result.duplicates} already recorded, "
            f"{len(result.rejected)} rejected into the quarantine")
        if defer_views:
            bar = progress(settings, engine.log.head(), "build the views")
            started = time.perf_counter()
            n = engine.projector.rebuild(bar.update, workers=worker_count(settings))
            bar.close()
            say(f"views built from {n} events in {time.perf_counter() - started:.1f} s")
        for r in result.rejected[:10]:
            say(f"  {r.describe()}")
        return 0 if not result.rejected else 2
    finally:
        engine.close()


@click.command(short_help="write a synthetic workload as JSON lines, or send it to a Kafka topic")
@workload_options(days=3, calls=400)
@option("--end", type=Moment(), default=None, show_default="now", help="the last moment of the workload")
@option("-o", "--output", default=None, show_default="stdout, or none with --kafka-topic",
        help="a JSON-lines file, - for stdout")
@option("--kafka-topic", default=None, show_default="none",
        help="send each event as a message to this topic, keyed by its subject (created when missing)")
@bootstrap_option
@option("--mode", type=click.Choice(["structured", "binary"]), default="structured",
        help="CloudEvents content mode of the messages")
@partitions_option("partitions of the topic when it has to be created")
@progress_option
def generate(days, calls_per_day, outlets, regions, seed, end, output, kafka_topic, kafka_bootstrap, mode,
             kafka_partitions, no_progress) -> int:
    """Write a synthetic workload (calls, cases, visits, callbacks, feedback) as JSON lines,
    or produce it to a Kafka topic."""
    from closedloop.simulation.workload import WorkloadSpec, generate as events

    settings = settings_from(kafka_bootstrap=kafka_bootstrap, kafka_partitions=kafka_partitions,
                             no_progress=no_progress)
    spec = WorkloadSpec(seed=seed, days=days, calls_per_day=calls_per_day, outlets=outlets, regions=regions, end=end)
    output = output if output is not None else (None if kafka_topic else "-")
    if kafka_topic:
        return _generate_to_kafka(settings, spec, kafka_topic, mode, output)
    out = sys.stdout.buffer if output == "-" else open(output, "wb")
    n = 0
    bar = progress(settings, None, "generate") if output != "-" else None
    try:
        for event in events(spec):
            out.write(orjson.dumps(event) + b"\n")
            n += 1
            if bar is not None and n % 5000 == 0:
                bar.update(5000)
        out.flush()
    finally:
        if bar is not None:
            bar.update(n % 5000)
            bar.close()
        if out is not sys.stdout.buffer:
            out.close()
    say(f"{n} events written to {output}")
    return 0


def _generate_to_kafka(settings, spec, topic: str, mode: str, output: str | None) -> int:
    """The same events, in the same order, to a topic (and to `output` too when given)."""
    from closedloop.consumers import kafka as binding
    from closedloop.simulation.workload import generate as events

    bootstrap = binding.bootstrap_servers(settings.kafka_bootstrap, settings=settings)
    binding.ensure_topics(bootstrap, [topic], settings.kafka_partitions, settings.kafka_client_options())
    out = None if output is None else (sys.stdout.buffer if output == "-" else open(output, "wb"))

    def each():
        for event in events(spec):
            if out is not None:
                out.write(orjson.dumps(event) + b"\n")
            yield event

    bar = progress(settings, None, f"generate -> {topic}")
    started = time.perf_counter()
    try:
        n = binding.produce(bootstrap, topic, each(), mode=mode, progress=bar.update,
                             options=settings.kafka_client_options())
    finally:
        bar.close()
        if out is not None and out is not sys.stdout.buffer:
            out.close()
    took = time.perf_counter() - started
    say(f"{n} events sent to {topic} at {','.join(bootstrap)} ({mode} mode, keyed by subject; "
        f"{n / max(took, 1e-9):,.0f} events/s)" + (f" and written to {output}" if output else ""))
    return 0


# --- status, statement --------------------------------------------------------------------------
@click.command(short_help="the log's head, the views' lag, the loop now")
@database_option
def status(database_url) -> int:
    """The log's head, each view's lag, the open quarantine, the loop now and the open
    dispatch alarms, as JSON."""
    from closedloop.log.eventlog import EventLog, now_ms
    from closedloop.log.followers import status as followers_status
    from closedloop.log.quarantine import Quarantine
    from closedloop.log.storage import open_storage
    from closedloop.projections import alarms as alarms_view
    from closedloop.projections import leaks as leaks_view

    settings = settings_from(database_url=database_url)
    require_database(settings, "status")
    # the storage alone, not an engine: making one prepares the views, and would rebuild those
    # whose rules changed — which a command that only reads must not do
    storage = open_storage(settings.database_url, synchronous=settings.sqlite_synchronous)
    try:
        heads: list[int] = []
        log = EventLog(storage, recent_size=0)
        followers = followers_status(storage, lambda: heads.append(log.head()) or heads[-1])
        head = heads[-1]
        now = now_ms()
        print_json({"database": storage.describe(), "log_head": head,
                    "view_lag": {f.name: f.lag for f in followers if f.kind == "view"},
                    "quarantine_open": Quarantine(storage).list()["total"],
                    "loop": leaks_view.summary(storage, now),
                    "dispatch_alarms_open": alarms_view.alarms(storage, now, limit=1)["total"],
                    "followers_stopped": [f"{f.kind} {f.name} at position {f.failed_position}"
                                          for f in followers if f.state == "failed"]})
        return 0
    finally:
        storage.close()


@click.command(short_help="the settlement of the outlets for a period (one outlet's lines with --outlet)")
@option("--period", type=Period(), required=True, show_default="required",
        help="2026-10 (a month), 2026-W44 (a week), 2026-10-30 (a day) or 2026 (a year)")
@option("--outlet", default=None, show_default="every outlet", help="one outlet: its statement, line by line")
@option("--as-of", type=Moment(), default=None, show_default="now", help="as the world stood then")
@option("--csv", "as_csv", is_flag=True, help="the lines as CSV, for a spreadsheet")
@database_option
def statement(period, outlet, as_of, as_csv, database_url) -> int:
    """What each outlet is paid for the period: completed and reviewed services at the price
    list's prices, less the penalties charged to its people."""
    from closedloop.domain.quality import money, period_range
    from closedloop.projections.settlement import statements

    settings = settings_from(database_url=database_url)
    start, end = period_range(period)
    from closedloop.log.eventlog import now_ms

    storage = open_read_storage(settings, "statement")
    try:
        at = to_ms(as_of) if as_of else now_ms()
        out = statements(storage, settings.quality_policy(), start, end, at, outlet)
        if as_csv:
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(["outlet_id", "case_id", "kind", "job", "done", "reviewed", "price", "penalties", "net",
                             "currency"])
            for st in out["statements"]:
                for line in st["lines"]:
                    writer.writerow([st["outlet_id"], line["case_id"], line["kind"], line["job"], line["done"],
                                     line["reviewed"], money(line["price_cents"]), money(line["penalty_cents"]),
                                     line["net"], st["currency"]])
            return 0
        if outlet and not out["statements"]:
            say(f"closedloop statement: outlet {outlet} has no settled cases or penalties in {period}")
        if not outlet:
            for st in out["statements"]:
                st.pop("lines", None)
        out["period"] = period
        print_json(out)
        return 0
    finally:
        storage.close()


# --- the hash chain -----------------------------------------------------------------------------
@click.command(short_help="walk the log against its hash chain; exit 3 at the first tampered position")
@database_option
@option("--checkpoint", "checkpoints", multiple=True, type=click.Path(exists=True, dir_okay=False),
        show_default="none", help="a checkpoint file exported earlier (repeatable)")
@progress_option
def verify(database_url, checkpoints, no_progress) -> int:
    """Walk the log against its hash chain (and checkpoints exported earlier); exits 3 naming
    the first altered, removed, inserted or moved event."""
    from closedloop.log import chain
    from closedloop.log.eventlog import EventLog

    settings = settings_from(database_url=database_url, no_progress=no_progress)
    storage = open_read_storage(settings, "verify")
    try:
        against = []
        for path in checkpoints:
            loaded = json.loads(Path(path).read_text())
            against += loaded if isinstance(loaded, list) else [loaded]
        bar = progress(settings, EventLog(storage, recent_size=0).head(), "verify")
        verdict = chain.verify(storage, bar.update, against=against)
        bar.close()
        print_json(verdict.to_json())
        if verdict.ok:
            say(f"the log holds: {verdict.checked} events chained up to position {verdict.head}"
                + (f", and {len(against)} checkpoint(s) agree" if against else ""))
            return 0
        say(f"TAMPERING DETECTED: {verdict.problem}")
        return 3
    finally:
        storage.close()


@click.command(short_help="record the chain's tip (position, hash, time)")
@database_option
@option("--export", type=click.Path(dir_okay=False), default=None, show_default="none",
        help="write every checkpoint taken so far to this JSON file")
def checkpoint(database_url, export) -> int:
    """Record the hash chain's tip; --export writes every checkpoint for a third party to keep."""
    from closedloop.log import chain

    settings = settings_from(database_url=database_url)
    engine = open_engine(settings, must_exist="checkpoint")
    try:
        point = chain.take_checkpoint(engine.storage, engine.clock())
        point["taken"] = iso(point["taken"])
        if export:
            all_points = [dict(c, taken=iso(c["taken"])) for c in chain.checkpoints(engine.storage)]
            Path(export).write_text(json.dumps(all_points, indent=2))
            say(f"{len(all_points)} checkpoint(s) written to {export}: keep a copy where the "
                "operators of this database cannot change it")
        print_json(point)
        return 0
    finally:
        engine.close()


# --- keys ---------------------------------------------------------------------------------------
@click.group(cls=Group, short_help="make, list and revoke API keys")
@database_option
@click.pass_context
def keys(ctx: click.Context, database_url) -> None:
    """Make, list and revoke API keys (only their hashes are kept)."""
    ctx.obj = {"database_url": database_url}


def _keys_settings(ctx: click.Context, database_url):
    return settings_from(database_url=database_url or (ctx.obj or {}).get("database_url"))


@keys.command("add", short_help="make a key (shown once)")
@click.argument("name")
@option("--role", type=click.Choice(ROLES), default="analyst", help="what the key may do")
@option("--source", "sources", multiple=True, show_default="none",
        help="a source prefix a producer key may send as (repeatable)")
@option("--rate", type=Number(0.001, whole=False), default=None, show_default="the server's rate limit",
        help="events per second this key may send")
@database_option
@click.pass_context
def keys_add(ctx, name, role, sources, rate, database_url) -> int:
    """Make a key named NAME; it is printed once, and only its hash is kept."""
    engine = open_engine(_keys_settings(ctx, database_url))
    try:
        secret = engine.keys.add(name, role, list(sources) or None, rate)
        click.echo(secret)
        say(f"key {name!r} ({role}) made; this is the only time it is shown")
        return 0
    finally:
        engine.close()


@keys.command("list", short_help="every key, live and revoked (no secrets)")
@database_option
@click.pass_context
def keys_list(ctx, database_url) -> int:
    """Every key: name, role, sources, rate, when made and revoked."""
    from closedloop.app.access import KeyStore

    storage = open_read_storage(_keys_settings(ctx, database_url), "keys list")
    try:
        print_json([dict(k, created=iso(k["created"]), revoked=iso(k["revoked"])) for k in KeyStore(storage).list()])
        return 0
    finally:
        storage.close()


@keys.command("revoke", short_help="revoke a key by name")
@click.argument("name")
@database_option
@click.pass_context
def keys_revoke(ctx, name, database_url) -> int:
    """Revoke the live key named NAME."""
    engine = open_engine(_keys_settings(ctx, database_url), must_exist="keys revoke")
    try:
        if not engine.keys.revoke(name):
            say(f"no live key named {name!r} / 没有名为 {name!r} 的有效密钥")
            return 1
        say(f"key {name!r} revoked")
        return 0
    finally:
        engine.close()
