"""Producers' topics in: v1 contract events from Kafka, appended through the engine.

Exactly-once effect. The position is not Kafka's committed offset: the next offset of each
partition lives in `closedloop_kafka_offsets`, written in the same transaction as the
facts that batch appended and the quarantine entries of its poison messages
(`Engine.submit_facts(..., also=...)`). A crash anywhere (kill -9 mid-batch) either commits
the batch with its offsets or neither, and on start (and whenever partitions are assigned
to it) the consumer seeks to the stored offsets: nothing is lost and nothing is taken
twice. (Resends with the same (source, id) are no-ops in the log besides.)

Sharing partitions, two ways. With `group=NAME` the processes join a Kafka consumer group
and the brokers share the partitions out, and hand a dead member's partitions to the others
once the group's session timeout has passed. Kafka's committed offsets are not what a member
reads from: when partitions are assigned, each is sought to the offset stored in the
database (a rebalance listener), and a batch in hand when partitions are taken away is
dropped, never half-committed. After each database commit the offsets are also committed to
Kafka, best effort, only so that the group tools show the group's lag. Where group joins
are slow, `member=(k, n)` splits the partitions statically instead (p % n == k - 1),
assigned explicitly. Either way a partition belongs to one process at a time, so the
events of a case, keyed by case id, are appended in the order they were produced. Should
two processes hold the same partition (given it by mistake, or a member the group has
given up on that is still running), the stored offset is checked in each transaction: the
one that is behind rolls back, seeks to the stored offset and carries on.

Poison messages (not JSON, not CloudEvents, unknown type, invalid data, an id reused with
other content) never stop the consumer: each goes to the quarantine, with the channel
`kafka:<topic>/<partition>@<offset>`, and to the dead-letter topic with the reason in its
headers, before the offset that passes it commits (so a crash may send it to the
dead-letter topic twice, never zero times).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import orjson

from closedloop.contract.events import Rejection, to_cloudevent
from closedloop.app.engine import Engine
from closedloop.log.eventlog import Appended, now_ms
from closedloop.log.storage import Storage, Tx

from closedloop.contract import kafka as wire

from . import kafka as binding

log = logging.getLogger("closedloop.kafka")

OFFSETS_TABLE = "closedloop_kafka_offsets"


class StalePartitionError(RuntimeError):
    """Another process moved a partition on while this one was appending from it."""


def create_offsets_table(storage: Storage) -> None:
    storage.create([
        f"CREATE TABLE IF NOT EXISTS {OFFSETS_TABLE} (topic TEXT NOT NULL, part INTEGER NOT NULL, "
        "next_offset {bigint} NOT NULL, member TEXT NOT NULL, updated {bigint} NOT NULL, "
        "PRIMARY KEY (topic, part))"
    ])


def stored_offsets(storage: Storage, topics: Sequence[str] | None = None) -> list[dict[str, Any]]:
    create_offsets_table(storage)
    with storage.reading() as tx:
        rows = tx.all(f"SELECT topic, part, next_offset, member, updated FROM {OFFSETS_TABLE} ORDER BY topic, part")
    return [dict(topic=r["topic"], partition=r["part"], next_offset=r["next_offset"], member=r["member"],
                 updated=r["updated"]) for r in rows if topics is None or r["topic"] in topics]


def parse_member(text: str) -> tuple[int, int]:
    """'2/3' -> (2, 3): this process is the second of three sharing the topics' partitions."""
    k, sep, n = text.partition("/")
    if not sep or not k.strip().isdigit() or not n.strip().isdigit() or not 1 <= int(k) <= int(n):
        raise ValueError(f"member {text!r} is not k/n with 1 <= k <= n (e.g. 1/2)")
    return int(k), int(n)


@dataclass
class Consumed:
    """Running totals of one consumer process."""

    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    batches: int = 0
    dead_lettered: int = 0
    lag: dict[str, int] = field(default_factory=dict)


def parse_group(text: str) -> str:
    """A consumer group's name: what Kafka accepts as a group id, and no blanks around it."""
    name = text.strip()
    if not name or name != text or len(name) > 249 or any(c.isspace() or not c.isprintable() for c in name):
        raise ValueError(f"group {text!r} is not a consumer group name (one word: no spaces, at most 249 "
                         "characters) / 不是有效的消费组名称 (不含空格，最多 249 个字符)")
    return name


class KafkaIngest:
    """Reads contract events from topics into one engine, exactly once in effect.

    `group`: join this Kafka consumer group, which shares the topics' partitions among its
    members (`member` must then be (1, 1)); None: take the partitions `member` names."""

    def __init__(self, engine: Engine, bootstrap: Sequence[str], topics: Sequence[str],
                 member: tuple[int, int] = (1, 1), dlq_topic: str | None = binding.DEFAULT_DLQ_TOPIC,
                 batch_size: int = 10_000, poll_ms: int = 200, group: str | None = None,
                 session_timeout: float = 10.0) -> None:
        if not topics:
            raise ValueError("at least one topic to consume")
        if group is not None:
            group = parse_group(group)
            if tuple(member) != (1, 1):
                raise ValueError(f"a consumer group shares the partitions out itself: group {group!r} "
                                 f"goes with member 1/1, not {member[0]}/{member[1]} "
                                 "/ 使用消费组时由 Kafka 分配分区，成员编号只能是 1/1")
        self.engine = engine
        self.bootstrap = list(bootstrap)
        self.topics = list(dict.fromkeys(topics))
        self.member = member
        self.group = group
        self.member_name = f"{member[0]}/{member[1]}" if group is None else group  # a member id once joined
        self.dlq_topic = dlq_topic
        self.batch_size = batch_size
        self.poll_ms = poll_ms
        self.totals = Consumed()
        self._positions: dict[Any, int] = {}
        self._assigned: list[Any] = []
        self._subscribed = False
        self._joined = False      # holds what the group's last completed rebalance gave it
        self._rebalances = 0      # assignments given or taken away so far (group)
        create_offsets_table(engine.storage)
        from kafka import KafkaConsumer, KafkaProducer
        from kafka.errors import KafkaTimeoutError as NoBrokersAvailable

        options = engine.settings.kafka_client_options()
        if group is None:
            client_id = f"closedloop-consume-{self.member_name}"
            membership: dict[str, Any] = {"group_id": None}
        else:
            client_id = f"closedloop-consume-{socket.gethostname()}-{os.getpid()}"
            session_ms = max(int(session_timeout * 1000), 1000)
            # heartbeats go from the client's own thread, so a long batch does not look like a
            # dead member; a member that stops (kill -9) is given up after the session timeout
            membership = {"group_id": group, "session_timeout_ms": session_ms,
                          "heartbeat_interval_ms": max(min(3000, session_ms // 3), 100)}
        try:
            self.consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap, client_id=client_id,
                enable_auto_commit=False, auto_offset_reset="earliest",
                max_poll_records=batch_size, max_partition_fetch_bytes=8 * 1024 * 1024,
                fetch_max_bytes=64 * 1024 * 1024, **membership, **options,
            )
            self.producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5,
                                          client_id=client_id.replace("consume", "dlq", 1), **options) \
                if dlq_topic else None
        except NoBrokersAvailable as exc:
            raise binding.no_brokers(self.bootstrap, exc) from None

    # --- assignment --------------------------------------------------------------------------
    def assign(self, wait: float = 0.0) -> list[Any]:
        """Take this member's share of every topic's partitions, at the stored offsets.

        Topics that do not exist yet are waited for up to `wait` seconds (producers or the
        broker create them); what is still missing then is picked up by a later `assign`.
        In a group, this subscribes (once): the partitions come with the polls that follow,
        and the group's leader notices new partitions and topics itself."""
        from kafka import TopicPartition

        if self.group is not None and self._subscribed:
            return list(self._assigned)
        deadline = time.monotonic() + wait
        k, n = self.member
        while True:
            wanted = []
            missing = []
            for topic in self.topics:
                parts = self.consumer.partitions_for_topic(topic)
                if not parts:
                    missing.append(topic)
                    continue
                wanted += [TopicPartition(topic, p) for p in sorted(parts) if p % n == k - 1]
            if not missing or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if self.group is not None:
            self.consumer.subscribe(self.topics, listener=_rebalance_listener(self))
            self._subscribed = True
            return []
        if wanted != self._assigned:
            self.consumer.assign(wanted)
            self._assigned = wanted
            self._seek_stored(wanted)
        return wanted

    def _seek_stored(self, partitions: Sequence[Any]) -> None:
        stored = {(o["topic"], o["partition"]): o["next_offset"] for o in stored_offsets(self.engine.storage)}
        for tp in partitions:
            at = stored.get((tp.topic, tp.partition))
            if at is None:
                self.consumer.seek_to_beginning(tp)
                self._positions[tp] = -1  # nothing stored yet: the first batch creates the row
            else:
                self.consumer.seek(tp, at)
                self._positions[tp] = at

    def _reread(self) -> None:
        """Forget what was read and not committed: back to the stored offsets of what this
        process holds now."""
        held = self.consumer.assignment() or set()
        self._seek_stored(sorted(held, key=lambda tp: (tp.topic, tp.partition)))

    # The group's rebalance listener calls these, on kafka-python's own thread while this
    # one waits in `poll` (a rebalance happens only inside a poll, never during `handle`).
    def _revoked(self, partitions: Any) -> None:
        self._rebalances += 1
        self._joined = False  # until the rebalance completes: not "done" with nothing assigned
        gone = set(partitions)
        for tp in gone:
            self._positions.pop(tp, None)
        self._assigned = [tp for tp in self._assigned if tp not in gone]
        if gone:
            log.info("group %s: partitions %s taken away", self.group, _names(gone))

    def _given(self, partitions: Any) -> None:
        self._rebalances += 1
        self._assigned = sorted(partitions, key=lambda tp: (tp.topic, tp.partition))
        # Kafka's committed offsets are not the position: the database's are
        self._seek_stored(self._assigned)
        self._joined = True
        log.info("group %s: partitions %s given to %s", self.group, _names(self._assigned), self._member())

    def _member(self) -> str:
        """Who moves the stored offsets: k/n, or the group and this member's id in it."""
        if self.group is None:
            return self.member_name
        member_id = self.consumer.group_metadata().member_id
        self.member_name = f"{self.group}:{member_id}" if member_id else self.group
        return self.member_name

    # --- one batch ---------------------------------------------------------------------------
    def poll_once(self) -> int:
        """Poll once and append what came; returns how many messages were handled."""
        records = self.consumer.poll(timeout_ms=self.poll_ms, max_records=self.batch_size)
        if not records:
            return 0
        # (what the first poll brings is from after any rebalance it went through)
        rebalances = self._rebalances
        # one transaction per fetch is mostly overhead (commit, fsync, a view pass): take
        # what else the fetches have already brought, up to the batch size
        n = sum(len(m) for m in records.values())
        while n < self.batch_size:
            more = self.consumer.poll(timeout_ms=0, max_records=self.batch_size - n)
            if not more:
                break
            for tp, messages in more.items():
                records.setdefault(tp, []).extend(messages)
                n += len(messages)
        if self._rebalances != rebalances:
            # The group took partitions away (or gave others) while this batch was gathered:
            # it is dropped whole, nothing of it committed, and everything held is read again
            # from the stored offsets.
            log.info("group %s rebalanced while a batch of %d was read: dropped, reading again from the "
                     "stored offsets", self.group, n)
            self._reread()
            return 0
        return self.handle(records)

    def handle(self, records: dict[Any, list[Any]]) -> int:
        facts = []
        poison: list[tuple[Rejection, Any, Any]] = []  # (rejection, partition, message)
        where: dict[tuple[str, str], tuple[Any, Any]] = {}  # fact key -> (partition, message)
        for tp, messages in records.items():
            for m in messages:
                decoded = wire.decode_message(m.value, m.headers)
                if decoded.fact is not None:
                    facts.append(decoded.fact)
                    where[decoded.fact.key] = (tp, m)  # a conflict within a batch is the later one
                else:
                    poison.append((decoded.rejection, tp, m))
        expected = {tp: self._positions.get(tp, -1) for tp in records}
        moved = {tp: messages[-1].offset + 1 for tp, messages in records.items()}
        dead: list[tuple[Rejection, Any, Any, int]] = []
        member = self._member()

        def also(tx: Tx, appended: Appended) -> None:
            self._advance(tx, expected, moved, member)
            bad = list(poison)
            # An id reused with other content is poison too; kept here, in this transaction,
            # rather than by submit afterwards, so the offset never passes it unrecorded.
            for fact, original in appended.conflicts:
                tp, m = where[fact.key]
                bad.append((Rejection(
                    [{"field": "id", "message": f"this (source, id) was already recorded at position {original} "
                      "with different content; a resend must be identical"}],
                    fact.id, fact.source, fact.type, raw=to_cloudevent(fact)), tp, m))
            appended.conflicts.clear()
            if not bad:
                return
            qids = self.engine.quarantine.keep_in(
                tx, [r for r, _, _ in bad], [f"kafka:{tp.topic}/{tp.partition}@{m.offset}" for _, tp, m in bad])
            dead[:] = [(r, tp, m, q) for (r, tp, m), q in zip(bad, qids)]
            self._dead_letter(dead)

        try:
            result = self.engine.submit_facts(facts, [], channel=f"kafka:{','.join(self.topics)}", also=also)
        except StalePartitionError as exc:
            log.warning("%s; seeking to the stored offsets", exc)
            self._reread()
            return 0
        self._positions.update(moved)
        if self.group is not None:
            self._commit_to_kafka(moved)
        n = sum(len(m) for m in records.values())
        t = self.totals
        t.messages += n
        t.batches += 1
        t.accepted += result.accepted
        t.duplicates += result.duplicates
        t.quarantined += len(dead)
        t.dead_lettered += len(dead) if self.producer else 0
        return n

    def _advance(self, tx: Tx, expected: dict[Any, int], moved: dict[Any, int], member: str) -> None:
        stamp = now_ms()
        q = tx.q
        for tp, to in moved.items():
            was = expected[tp]
            if was < 0:
                # first batch of a partition: the row must not exist yet (another process that
                # started the partition at the same moment makes this one roll back)
                tx.execute(f"INSERT INTO {OFFSETS_TABLE} (topic, part, next_offset, member, updated) "
                           f"VALUES ({tx.marks(5)}) ON CONFLICT (topic, part) DO NOTHING",
                           [tp.topic, tp.partition, to, member, stamp])
                if tx.rowcount() != 1:
                    raise StalePartitionError(f"{tp.topic}/{tp.partition} was started by another consumer")
                continue
            tx.execute(f"UPDATE {OFFSETS_TABLE} SET next_offset = {q}, member = {q}, updated = {q} "
                       f"WHERE topic = {q} AND part = {q} AND next_offset = {q}",
                       [to, member, stamp, tp.topic, tp.partition, was])
            if tx.rowcount() != 1:
                raise StalePartitionError(f"{tp.topic}/{tp.partition} was moved on by another consumer")

    def _commit_to_kafka(self, moved: dict[Any, int]) -> None:
        """The group's committed offsets follow the stored ones, for the group tools' lag only:
        best effort, never read back (a rebalance in between makes it fail, harmlessly)."""
        from kafka import OffsetAndMetadata

        def done(offsets: Any, answer: Any) -> None:
            if isinstance(answer, Exception):
                log.debug("group %s: offsets not committed to Kafka (%s); the database has them",
                          self.group, answer)

        try:
            self.consumer.commit_async({tp: OffsetAndMetadata(to, "", -1) for tp, to in moved.items()},
                                       callback=done)
        except Exception as exc:  # noqa: BLE001 - the database holds the position; this is a courtesy
            log.debug("group %s: offsets not committed to Kafka (%s)", self.group, exc)

    def _dead_letter(self, dead: list[tuple[Rejection, Any, Any, int]]) -> None:
        if not self.producer or not dead:
            return
        futures = []
        for r, tp, m, qid in dead:
            headers = list(m.headers or []) + [
                (binding.DLQ_REASON, r.describe().encode()),
                (binding.DLQ_ERRORS, orjson.dumps(r.errors)),
                (binding.DLQ_TOPIC, tp.topic.encode()),
                (binding.DLQ_PARTITION, str(tp.partition).encode()),
                (binding.DLQ_OFFSET, str(m.offset).encode()),
                (binding.DLQ_QUARANTINE_ID, str(qid).encode()),
            ]
            futures.append(self.producer.send(self.dlq_topic, value=m.value, key=m.key, headers=headers))
        self.producer.flush()
        for f in futures:
            f.get(timeout=30)  # the broker refused it: the batch rolls back and is read again

    # --- running ---------------------------------------------------------------------------
    def lag(self) -> dict[str, int]:
        """Messages behind each partition's end, from the broker's last fetch answers."""
        out = {}
        for tp in self._assigned:
            hw = self.consumer.highwater(tp)
            pos = self._positions.get(tp, -1)
            if hw is not None:
                out[f"{tp.topic}/{tp.partition}"] = max(hw - max(pos, 0), 0)
        self.totals.lag = out
        return out

    def caught_up(self) -> bool:
        if not self._assigned:
            return False
        for tp in self._assigned:
            hw = self.consumer.highwater(tp)
            if hw is None or self._positions.get(tp, -1) < hw and hw > 0:
                return False
        return True

    def run(self, stop: threading.Event | None = None, until_idle: bool = False,
            progress: Callable[[int, Consumed], None] | None = None, refresh: float = 10.0,
            wait_for_topics: float = 30.0) -> Consumed:
        """Consume until `stop` is set (or, with `until_idle`, until every partition held is
        read to its end: in a group, once the group has given this member its share);
        new partitions and topics are picked up every `refresh` seconds."""
        stop = stop or threading.Event()
        # A predecessor killed between its append and its views' update left facts in the
        # log that the views have not seen: bring them in before reading more.
        self.engine.catch_up()
        self.assign(wait=wait_for_topics)
        last_refresh = time.monotonic()
        idle_polls = 0
        while not stop.is_set():
            n = self.poll_once()
            if progress:
                progress(n, self.totals)
            if n:
                idle_polls = 0
            else:
                idle_polls += 1
                # idle: a good moment for what other writers appended. Every idle poll, not just
                # the first: a member keeping a share of the views follows the other members'
                # appends, which go on while this one has nothing to read (a few cheap queries
                # when there is nothing new)
                self.engine.catch_up()
                # `highwater` is only known once a fetch has answered: a few empty polls
                # in a row with every partition read to it means there is nothing left.
                joined = self.group is None or self._joined
                if until_idle and joined and idle_polls >= 3 and (self.caught_up() or not self._assigned):
                    break
            if time.monotonic() - last_refresh > refresh:
                self.assign()
                last_refresh = time.monotonic()
        return self.totals

    def close(self) -> None:
        # in a group, closing leaves it: the others take this member's partitions at once
        self.consumer.close(autocommit=False)
        if self.producer:
            self.producer.close(timeout=10)


def _names(partitions: Any) -> str:
    ordered = sorted(partitions, key=lambda tp: (tp.topic, tp.partition))
    return ", ".join(f"{tp.topic}/{tp.partition}" for tp in ordered) or "none"


def _rebalance_listener(ingest: KafkaIngest) -> Any:
    """kafka-python's listener, handing the group's decisions to `ingest`."""
    from kafka import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked: Any) -> None:
            ingest._revoked(revoked)

        def on_partitions_assigned(self, assigned: Any) -> None:
            ingest._given(assigned)

        def on_partitions_lost(self, lost: Any) -> None:
            # the group gave up on this member: the batch in hand (if any) is dropped the same way
            ingest._revoked(lost)

    return Listener()


# --- lag, for the CLI and the API ---------------------------------------------------------------
def lag_report(storage: Storage, bootstrap: Sequence[str] | None, topics: Sequence[str] | None = None,
               timeout: float = 5.0, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Stored position per partition and, when brokers are given, how far behind their end;
    `options`: the clients' connection settings (None: `binding.client_options()`)."""
    from closedloop.domain.facts import iso

    rows = stored_offsets(storage)
    wanted = list(dict.fromkeys(topics or [r["topic"] for r in rows] or [binding.DEFAULT_TOPIC]))
    stored = {(r["topic"], r["partition"]): r for r in rows}
    ends: dict[tuple[str, int], int] = {}
    broker_error = None
    if bootstrap:
        try:
            ends = _broker_ends(bootstrap, wanted, timeout, options)
        except Exception as exc:  # noqa: BLE001 - the stored positions are still worth showing
            broker_error = f"could not ask the brokers {','.join(bootstrap)}: {exc}"
    keys = sorted(set(k for k in stored if k[0] in wanted) | set(ends))
    partitions = []
    for key in keys:
        row = stored.get(key)
        at = row["next_offset"] if row else 0
        end = ends.get(key)
        partitions.append({
            "topic": key[0], "partition": key[1], "position": row["next_offset"] if row else None,
            "end": end, "lag": None if end is None else max(end - at, 0),
            "member": row["member"] if row else None, "updated": iso(row["updated"]) if row else None,
        })
    known = [p["lag"] for p in partitions if p["lag"] is not None]
    out: dict[str, Any] = {"topics": wanted, "partitions": partitions,
                           "total_lag": sum(known) if bootstrap and not broker_error else None}
    if broker_error:
        out["error"] = broker_error
    elif not bootstrap:
        out["note"] = f"stored positions only: set {binding.BOOTSTRAP_ENV} to compare with the brokers' ends"
    return out


def _broker_ends(bootstrap: Sequence[str], topics: Sequence[str], timeout: float,
                 options: Mapping[str, Any] | None = None) -> dict[tuple[str, int], int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=list(bootstrap), group_id=None, enable_auto_commit=False,
                             client_id="closedloop-lag", request_timeout_ms=int(timeout * 1000) + 1000,
                             bootstrap_timeout_ms=int(timeout * 1000),
                             **(dict(options) if options is not None else binding.client_options()))
    try:
        tps = []
        for topic in topics:
            parts = consumer.partitions_for_topic(topic) or set()
            tps += [TopicPartition(topic, p) for p in sorted(parts)]
        ends = binding.end_offsets(consumer, tps, timeout)
        return {(tp.topic, tp.partition): end for tp, end in ends.items()}
    finally:
        consumer.close(autocommit=False)
