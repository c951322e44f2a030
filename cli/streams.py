"""The Kafka commands: consume contract events into the log, publish feedback and alerts
out of it, and show each partition's lag."""

from __future__ import annotations

import threading
import time

import click

from closedloop.cli.common import (Member, Number, bootstrap_option, database_option, open_engine, option,
                                   partitions_option, print_json, progress, progress_option, say, setting_option,
                                   settings_from)

DEFAULT_TOPIC = "closedloop.events"
DEFAULT_DLQ_TOPIC = "closedloop.events.dlq"


def _lag(settings, topics, command: str) -> int:
    from closedloop.consumers import kafka as binding
    from closedloop.consumers.kafka_consumer import lag_report
    from closedloop.consumers.kafka_publisher import publisher_status

    bootstrap = (binding.bootstrap_servers(settings.kafka_bootstrap, settings=settings)
                 if settings.kafka_bootstrap else None)
    engine = open_engine(settings, must_exist=command)
    try:
        report = lag_report(engine.storage, bootstrap, list(topics) or None,
                            options=settings.kafka_client_options())
        report["publisher"] = publisher_status(engine)
        print_json(report)
        return 0 if "error" not in report else 1
    finally:
        engine.close()


@click.command(short_help="append contract events from Kafka topics (exactly once in effect)")
@database_option
@bootstrap_option
@option("--topic", "topics", multiple=True, show_default=DEFAULT_TOPIC, help="a topic to read (repeatable)")
@setting_option("kafka_group", "--group", metavar="NAME", unset="no group: --member",
                help="join this Kafka consumer group: its members share the partitions, and a member that dies has "
                "its partitions taken over by the others after the session timeout (goes with --member 1/1)")
@option("--session-timeout", type=Number(1, whole=False), default=10, metavar="SECONDS",
        help="with --group: how long the group waits for a silent member before giving its partitions to the others")
@option("--member", type=Member(), default="1/1", help="k/n: this process takes the partitions p with p % n == k-1 "
        "(1/1: all); without a group")
@option("--followers", type=click.Choice(["any", "share", "all"]), default="any",
        help="any: every member keeps every view and reactor current, passing over those another member is "
        "working on at the moment (PostgreSQL), so whoever is free does the next piece; share: member k of n "
        "keeps only its share of them (split by weight); all: every member keeps every view and reactor, "
        "queueing for each other")
@option("--dlq-topic", default=DEFAULT_DLQ_TOPIC, help="where poison messages go")
@option("--no-dlq", is_flag=True, help="quarantine poison messages only")
@option("--batch", type=Number(1), default=10_000, help="messages per transaction at most")
@option("--until-idle", is_flag=True, help="stop once every partition this process holds is read to its end (in a "
        "group: once the group has given it its share)")
@option("--status", "show_status", is_flag=True, help="print each partition's position and lag, and exit")
@progress_option
def consume(database_url, kafka_bootstrap, kafka_group, session_timeout, topics, member, followers, dlq_topic, no_dlq,
            batch, until_idle, show_status, no_progress) -> int:
    """Append contract events from Kafka topics, exactly once in effect: a message's offset is
    stored in the same transaction as its events; poison messages are quarantined and sent to
    the dead-letter topic. Several processes share the partitions as one consumer group
    (--group) or by a fixed split (--member k/n)."""
    import signal

    from closedloop.consumers import kafka as binding
    from closedloop.consumers.kafka_consumer import KafkaIngest, parse_group

    settings = settings_from(database_url=database_url, kafka_bootstrap=kafka_bootstrap, kafka_group=kafka_group,
                             no_progress=no_progress)
    if show_status:
        return _lag(settings, topics, "consume --status")
    group = settings.kafka_group
    if group is not None:
        try:
            group = parse_group(group)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        if member != (1, 1):
            raise click.UsageError(f"--group and --member {member[0]}/{member[1]} together: the group shares the "
                                   "partitions out itself; use one or the other "
                                   "/ --group 与 --member 不能同时使用：分区由消费组分配")
        if followers == "share":
            raise click.UsageError("--followers share splits the views by --member k/n, which a group has not; "
                                   "use --followers any or all / 消费组没有 k/n 编号，请用 --followers any 或 all")
    bootstrap = binding.bootstrap_servers(settings.kafka_bootstrap, settings=settings)
    topics = list(topics) or [binding.DEFAULT_TOPIC]
    from closedloop.app import logs

    # warnings (a batch rolled back for a partition another process moved on) to stderr; at
    # CLOSEDLOOP_LOG_LEVEL=INFO also the partitions the group gives and takes away
    logs.configure(settings.log_format or "text", settings.log_level or "WARNING")
    engine = open_engine(settings, share=member if followers == "share" else (1, 1))
    if followers == "any":
        engine.skip_busy()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ingest = KafkaIngest(engine, bootstrap, topics, member=member, dlq_topic=None if no_dlq else dlq_topic,
                         batch_size=batch, group=group, session_timeout=session_timeout)
    shown_member = f"group {group}" if group is not None else f"member {member[0]}/{member[1]}"
    bar = progress(settings, None, f"consume {','.join(topics)} [{shown_member}]")
    shown = [0.0]

    def progressed(n: int, totals) -> None:
        bar.update(n)
        if time.monotonic() - shown[0] > 1:
            shown[0] = time.monotonic()
            lag = ingest.lag()
            bar.set_postfix(lag=sum(lag.values()), quarantined=totals.quarantined, refresh=False)

    say(f"closedloop consume: {engine.storage.describe()} <- {','.join(bootstrap)} topics {','.join(topics)}, "
        f"{shown_member}; keeps views {', '.join(v.name for v in engine.views) or 'none'} and reactors "
        f"{', '.join(r.name for r in engine.reactors) or 'none'} current")
    started = time.perf_counter()
    try:
        totals = ingest.run(stop, until_idle=until_idle, progress=progressed)
    except KeyboardInterrupt:
        totals = ingest.totals
    finally:
        bar.close()
        ingest.close()
        engine.close()
    took = time.perf_counter() - started
    say(f"{totals.messages} message(s) read: {totals.accepted} recorded, {totals.duplicates} already recorded, "
        f"{totals.quarantined} quarantined" + (f" and sent to {dlq_topic}" if not no_dlq else "")
        + f"; {took:.1f} s ({totals.messages / max(took, 1e-9):,.0f} messages/s)")
    return 0


@click.command("kafka-lag", short_help="each partition's stored position and lag, and the publisher's position")
@database_option
@bootstrap_option
@option("--topic", "topics", multiple=True, show_default="every topic consumed", help="a topic (repeatable)")
def kafka_lag(database_url, kafka_bootstrap, topics) -> int:
    """Each partition's stored position, the broker's end and the lag; the publisher's position."""
    settings = settings_from(database_url=database_url, kafka_bootstrap=kafka_bootstrap)
    return _lag(settings, topics, "kafka-lag")


@click.command(short_help="publish feedback to department topics and loop alerts to the alerts topic")
@database_option
@bootstrap_option
@option("--mode", type=click.Choice(["structured", "binary"]), default="structured",
        help="CloudEvents content mode of the messages")
@partitions_option("partitions of topics the publisher creates")
@option("--from-now", is_flag=True, help="on the first start, skip what the log already holds")
@option("--no-tick", is_flag=True, help="do not decide leak alerts here (another process, e.g. serve, does)")
@option("--until-idle", is_flag=True, help="stop once the log is published to its head")
@progress_option
def publish(database_url, kafka_bootstrap, mode, kafka_partitions, from_now, no_tick, until_idle, no_progress) -> int:
    """Publish routed feedback to each department's topic and loop alerts to the alerts topic,
    from a stored position, so that nothing is published twice or skipped."""
    import signal

    from closedloop.consumers import kafka as binding
    from closedloop.consumers.kafka_publisher import KafkaPublisher

    settings = settings_from(database_url=database_url, kafka_bootstrap=kafka_bootstrap,
                             kafka_partitions=kafka_partitions, no_progress=no_progress)
    bootstrap = binding.bootstrap_servers(settings.kafka_bootstrap, settings=settings)
    engine = open_engine(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        publisher = KafkaPublisher(engine, bootstrap, mode=mode, partitions=settings.kafka_partitions)
        if from_now and publisher.start_at_head():
            say("closedloop publish: first start, history skipped: publishing from the log's head")
        bar = progress(settings, None, "publish")
        say(f"closedloop publish: {engine.storage.describe()} -> {','.join(bootstrap)} "
            f"({', '.join(publisher.topics.all())})")
        try:
            totals = publisher.run(stop, tick=not no_tick, until_idle=until_idle,
                                   progress=lambda n, _t: bar.update(n))
        except KeyboardInterrupt:
            totals = publisher.totals
        finally:
            bar.close()
            publisher.close()
        say(f"{totals.messages} message(s) published: "
            + (", ".join(f"{n} to {t}" for t, n in sorted(totals.by_topic.items())) or "nothing new"))
        return 0
    finally:
        engine.close()
