"""Several processes keeping the same views and reactors (consumers with `--followers any`):
one that finds a view or reactor being worked on by another passes over it and does the rest,
and whoever is free next carries it on. And the log's memory of the facts it just appended
holds committed facts only."""

from __future__ import annotations

import threading

import psycopg
import pytest

from closedloop.app.engine import Engine
from closedloop.log.followers import FOLLOWERS_TABLE
from test_process import DispatchEverythingToOneOutlet, dispatches

from conftest import event, registration


def registered(n: int, start: int = 1) -> list[dict]:
    return [event("case.registered", f"CASE-{i}", "2026-10-30T08:10:00Z", registration(f"CALL-{i}"))
            for i in range(start, start + n)]


def schema_of(url: str) -> str:
    return url.split("schema=")[1]


class Holding:
    """Another process in the middle of work on one position row (its transaction holds the
    row's lock), until `release`."""

    def __init__(self, url: str, kind: str, name: str) -> None:
        self.conn = psycopg.connect(url.split("?")[0])
        self.conn.execute(f'SET search_path TO "{schema_of(url)}"')
        row = self.conn.execute(f"SELECT position FROM {FOLLOWERS_TABLE} WHERE kind = %s AND name = %s FOR UPDATE",
                                [kind, name]).fetchone()
        assert row is not None, f"no position row for the {kind} {name}"

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def finishes(work, within: float = 20.0):
    """Run `work` in a thread; its result, or None if it was still waiting after `within` s."""
    out: list = []
    thread = threading.Thread(target=lambda: out.append(work()), daemon=True)
    thread.start()
    thread.join(within)
    return out[0] if out else None


# passing over busy work is PostgreSQL's SKIP LOCKED; SQLite has one writer at a time
on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pytest.fixture
def pg_url(database_url: str) -> str:
    return database_url


@on_postgres
def test_a_view_busy_in_another_process_is_passed_over_and_carried_on_later(pg_url: str):
    # given: a member keeping every view, and another process in the middle of folding the loop view
    member = Engine.open(pg_url, reactors=[])
    member.skip_busy()
    busy = Holding(pg_url, "view", member.loop.name)
    try:
        # when: the member appends
        submitted = finishes(lambda: member.submit(registered(3)))
        # then: it did not wait; every other view took the facts, the loop view was left as it was
        assert submitted is not None, "the member waited for the busy view instead of passing over it"
        assert submitted.accepted == 3
        positions = member.projector.positions()
        head = member.log.head()
        assert positions[member.loop.name] == 0
        assert all(p == head for name, p in positions.items() if name != member.loop.name)
    finally:
        busy.release()
    # and when the other process is done, the member's next turn carries the loop view on
    member.catch_up()
    assert member.projector.positions()[member.loop.name] == member.log.head()
    with member.storage.reading() as tx:
        cases = [r["case_id"] for r in tx.all("SELECT DISTINCT case_id FROM loop_items ORDER BY case_id")]
    assert cases == ["CASE-1", "CASE-2", "CASE-3"]
    member.close()


@on_postgres
def test_a_reactor_busy_in_another_process_is_passed_over_and_decides_once_later(pg_url: str):
    member = Engine.open(pg_url, reactors=[DispatchEverythingToOneOutlet()])
    member.skip_busy()
    busy = Holding(pg_url, "reactor", "toy-dispatch")
    try:
        submitted = finishes(lambda: member.submit(registered(2)))
        assert submitted is not None, "the member waited for the busy reactor instead of passing over it"
        assert dispatches(member, "CASE-1") == []  # not decided while another process holds the reactor
    finally:
        busy.release()
    member.catch_up()
    member.catch_up()
    assert [d.type for d in dispatches(member, "CASE-1")] == ["case.dispatched"]
    assert [d.type for d in dispatches(member, "CASE-2")] == ["case.dispatched"]
    member.close()


@on_postgres
def test_two_members_passing_over_each_other_leave_every_view_as_one_process_would(pg_url: str):
    # given: two members keeping everything, appending in turns from two threads (as two processes)
    a, b = Engine.open(pg_url), Engine.open(pg_url)
    a.skip_busy()
    b.skip_busy()
    batches = [registered(40, start=1 + 40 * i) for i in range(6)]
    threads = [threading.Thread(target=lambda m=m, mine=batches[k::2]: [m.submit(x) for x in mine])
               for k, m in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a.catch_up()
    b.catch_up()
    # then: every view is at the head, and holds what a single process folding the log holds
    head = a.log.head()
    assert set(a.projector.positions().values()) == {head}
    query = ("SELECT item, kind, case_id, outlet_id, completed, first_leak FROM loop_items ORDER BY item")
    with a.storage.reading() as tx:
        kept = tx.all(query)
        spans = tx.all("SELECT item, stage, opened, closed, owner FROM loop_spans ORDER BY item, stage, opened")
    log = a.log
    assert len({r["case_id"] for r in kept}) == 240
    # the same log folded again from the start by one process (a rebuild) gives the same rows
    a.projector.rebuild()
    with a.storage.reading() as tx:
        assert tx.all(query) == kept
        assert tx.all("SELECT item, stage, opened, closed, owner FROM loop_spans ORDER BY item, stage, opened") == spans
    assert log.head() == head
    a.close()
    b.close()


def test_facts_of_a_rolled_back_append_are_not_remembered(database_url: str):
    # given: an append rolled back after its facts were inserted (SQLite hands their positions out again)
    engine = Engine.open(database_url, reactors=[])

    def fail(tx, appended):
        raise RuntimeError("the consumer's offsets moved on")

    with pytest.raises(RuntimeError):
        engine.submit(registered(3), also=fail)
    # when: fewer facts are appended here, one more by another process, and the log read back
    engine.submit(registered(2, start=10))
    other = Engine.open(database_url, reactors=[])
    other.submit(registered(1, start=20))
    other.close()
    facts = engine.log.read(0, 10)
    # then: the log holds what committed, at the positions it committed at
    assert [f.subject for f in facts] == ["CASE-10", "CASE-11", "CASE-20"]
    fresh_reader = Engine.open(database_url, reactors=[])  # nothing remembered: decoded from the rows
    assert [(f.position, f.subject, f.data) for f in fresh_reader.log.read(0, 10)] == \
        [(f.position, f.subject, f.data) for f in facts]
    fresh_reader.close()
    engine.close()
