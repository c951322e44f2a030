"""Many rows at once, and lists of values, through the transaction's explicit calls:
`insert_many` (SQLite: one executemany; PostgreSQL: one INSERT that unnests a typed array per
column) and `in_list` (SQLite: IN (?, ...); PostgreSQL: = ANY(array)). Given the same rows, a
table ends the same as when the rows go one at a time, on both databases; and a statement is
sent as it was written, never rewritten."""

from __future__ import annotations

import pytest

from closedloop.log.storage import open_storage

TABLE = "bulk_probe"
DDL = (f"CREATE TABLE {TABLE} (k TEXT PRIMARY KEY, n {{bigint}}, note TEXT, body {{blob}}, flag INTEGER, "
       "fixed TEXT)")
COLUMNS = ("k", "n", "note", "body", "flag", "fixed")


@pytest.fixture
def storage(database_url: str):
    s = open_storage(database_url)
    s.create([DDL])
    yield s
    s.close()


def rows_of(storage) -> list[tuple]:
    with storage.reading() as tx:
        return [(r["k"], r["n"], r["note"], bytes(r["body"]) if r["body"] is not None else None, r["flag"], r["fixed"])
                for r in tx.all(f"SELECT * FROM {TABLE} ORDER BY k")]


def test_many_rows_with_nulls_bytes_and_quotes_land_as_given(storage):
    rows = [(f"k{i}", i * 10**12 if i % 3 else None, None if i % 4 == 0 else f"note, with 'quotes' ? %s {i}",
             bytes([i % 256]) * 3 if i % 5 else None, i % 2, "same") for i in range(1500)]
    with storage.writing() as tx:
        tx.insert_many(TABLE, COLUMNS, rows)
    assert rows_of(storage) == sorted(rows)


def test_many_rows_go_as_one_statement_on_postgresql(storage):
    pg = storage.dialect == "postgresql"
    with storage.writing() as tx:
        tx.insert_many(TABLE, ("k", "n"), [(f"k{i}", i) for i in range(1500)])
        assert tx.rowcount() == 1500
        if pg:  # the last command's status: one INSERT of all the rows, not the last of 1500 INSERTs
            assert tx._cur.statusmessage == "INSERT 0 1500"  # noqa: SLF001 - the test looks at what was sent
        tx.insert_many(TABLE, ("k", "n"), [("a", 1), ("a", 2)], conflict=("k",), update=("n",))
        if pg:  # a key twice in one upsert: row by row
            assert tx._cur.statusmessage == "INSERT 0 1"  # noqa: SLF001
    assert len(rows_of(storage)) == 1501


def test_an_upsert_whose_rows_share_a_key_goes_one_at_a_time_and_the_last_wins(storage):
    first = [("a", 1, "x", None, 0), ("b", 2, "y", None, 0)]
    again = [("a", 5, "x2", None, 1), ("c", 3, "z", None, 0), ("a", 7, "x3", None, 1)]
    with storage.writing() as tx:
        for rows in (first, again):
            tx.insert_many(TABLE, COLUMNS[:5], rows, conflict=("k",), update=("n", "note"))
    assert [(r[0], r[1], r[2]) for r in rows_of(storage)] == [("a", 7, "x3"), ("b", 2, "y"), ("c", 3, "z")]


def test_an_additive_upsert_adds_once_per_row(storage):
    add = f"n = {TABLE}.n + excluded.n"
    with storage.writing() as tx:
        tx.insert_many(TABLE, ("k", "n"), [("a", 1), ("b", 2)], conflict=("k",), update=add)
        tx.insert_many(TABLE, ("k", "n"), [("a", 10), ("b", 20), ("c", 30)], conflict=("k",), update=add)
    assert [(r[0], r[1]) for r in rows_of(storage)] == [("a", 11), ("b", 22), ("c", 30)]


def test_do_nothing_keeps_the_first_row_of_a_key_even_within_one_call(storage):
    with storage.writing() as tx:
        tx.insert_many(TABLE, ("k", "n"), [("a", 1), ("b", 2)])
        tx.insert_many(TABLE, ("k", "n"), [("a", 9), ("c", 3), ("c", 4)], conflict=("k",))
        tx.insert_many(TABLE, ("k", "n"), [("b", 9), ("d", 5)], conflict=())  # any conflict
    assert [(r[0], r[1]) for r in rows_of(storage)] == [("a", 1), ("b", 2), ("c", 3), ("d", 5)]


def test_long_in_lists_and_not_in_lists_select_the_same_rows(storage):
    with storage.writing() as tx:
        tx.insert_many(TABLE, ("k", "n"), [(f"k{i:03}", i) for i in range(500)])
    wanted = [f"k{i:03}" for i in range(0, 500, 7)]
    with storage.reading() as tx:
        among, params = tx.in_list("k", wanted)
        not_among, not_params = tx.in_list("k", ["k000", "k007"], negate=True)
        got = tx.all(f"SELECT k FROM {TABLE} WHERE n >= {tx.q} AND {among} AND {not_among} ORDER BY k",
                     [0, *params, *not_params])
        numbers, number_params = tx.in_list("n", [3, 4, 10**12])
        by_number = tx.all(f"SELECT k FROM {TABLE} WHERE {numbers} ORDER BY k", number_params)
        nothing, none = tx.in_list("k", [])
        empty = tx.all(f"SELECT k FROM {TABLE} WHERE {nothing}", none)
    assert [r["k"] for r in got] == wanted[2:]
    assert [r["k"] for r in by_number] == ["k003", "k004"]
    assert empty == []


def test_a_statement_is_sent_as_written(storage):
    """A question mark inside a literal stays one: nothing rewrites placeholders afterwards."""
    with storage.writing() as tx:
        tx.insert_many(TABLE, ("k", "note"), [("a", "what?"), ("b", "why?")])
    with storage.reading() as tx:
        rows = tx.all(f"SELECT k, '?' AS mark FROM {TABLE} WHERE note = {tx.q} OR note = 'why?'", ["what?"])
    assert [(r["k"], r["mark"]) for r in rows] == [("a", "?"), ("b", "?")]


@pytest.mark.fast
def test_an_update_needs_the_key_it_updates_on():
    from closedloop.log.storage import Tx

    tx = Tx(None, pg=False)
    with pytest.raises(ValueError, match="conflict"):
        tx.insert_many(TABLE, ("k", "n"), [("a", 1)], update=("n",))
    assert (tx.q, tx.marks(3)) == ("?", "?,?,?")
    assert tx.in_list("k", ["a", "b"]) == ("k IN (?,?)", ["a", "b"])
    pg = Tx(None, pg=True)
    assert (pg.q, pg.marks(2)) == ("%s", "%s,%s")
    assert pg.in_list("k", ("a", "b"), negate=True) == ("k <> ALL(%b)", [["a", "b"]])


def test_stored_events_get_the_positions_they_are_read_back_at(storage):
    """The log's insert hands back each event's position in the order given; the hash chain,
    the receipts and the facts handed to the views all trust that order."""
    from eventsourcing.persistence import StoredEvent

    from closedloop.log.storage import EVENTS_TABLE

    # states with what a text encoding must escape: quotes, backslashes, braces, bytes > 127
    given = [StoredEvent(f"case-{i % 7}", i // 7 + 1, f"Type{i % 3}",
                         f'{{"n": {i}, "s": "a\\\\b \\"q\\" {{x}} ü"}}'.encode() + bytes([i % 256]))
             for i in range(700)]
    with storage.writing(append=True) as tx:
        positions = storage.insert_stored(tx, given)
    col = "rowid" if storage.dialect == "sqlite" else "notification_id"
    with storage.reading() as tx:
        rows = tx.all(f"SELECT {col} AS position, originator_id, originator_version, topic, state "
                      f"FROM {EVENTS_TABLE} ORDER BY {col}")
    assert len(positions) == len(given) == len(rows)
    assert positions == sorted(positions)
    at = {r["position"]: (r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])) for r in rows}
    assert [at[p] for p in positions] == [(e.originator_id, e.originator_version, e.topic, e.state) for e in given]
    # the library's public reads see the same log: its head, and the events of a stream
    assert storage.recorder.max_notification_id() == positions[-1]
    stream = storage.recorder.select_events("case-3")
    assert [(e.originator_version, e.state) for e in stream] == [
        (e.originator_version, e.state) for e in given if e.originator_id == "case-3"]
