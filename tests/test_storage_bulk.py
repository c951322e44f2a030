"""Many rows at once: on PostgreSQL an executemany of INSERT ... VALUES is sent as one INSERT
that unnests a typed array per column, and a long IN (...) as = ANY(array). Given the same
rows and statements, a table ends the same as when the rows go one at a time."""

from __future__ import annotations

import pytest

from closedloop.log.storage import _any_arrays, _bulk_insert, open_storage

TABLE = "bulk_probe"
DDL = (f"CREATE TABLE {TABLE} (k TEXT PRIMARY KEY, n {{bigint}}, note TEXT, body {{blob}}, flag INTEGER, "
       "fixed TEXT)")


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


def test_many_rows_with_nulls_bytes_and_literals_land_as_given(storage):
    rows = [(f"k{i}", i * 10**12 if i % 3 else None, None if i % 4 == 0 else f"note, with 'quotes' {i}",
             bytes([i % 256]) * 3 if i % 5 else None, i % 2) for i in range(1500)]
    with storage.writing() as tx:
        tx.executemany(f"INSERT INTO {TABLE} (k, n, note, body, flag, fixed) VALUES (?,?,?,?,?,'same')", rows)
    assert rows_of(storage) == sorted(r + ("same",) for r in rows)


def test_an_upsert_whose_rows_share_a_key_goes_one_at_a_time_and_the_last_wins(storage):
    first = [("a", 1, "x", None, 0), ("b", 2, "y", None, 0)]
    again = [("a", 5, "x2", None, 1), ("c", 3, "z", None, 0), ("a", 7, "x3", None, 1)]
    sql = (f"INSERT INTO {TABLE} (k, n, note, body, flag) VALUES (?,?,?,?,?) "
           "ON CONFLICT (k) DO UPDATE SET n = excluded.n, note = excluded.note")
    with storage.writing() as tx:
        tx.executemany(sql, first)
        tx.executemany(sql, again)
    assert [(r[0], r[1], r[2]) for r in rows_of(storage)] == [("a", 7, "x3"), ("b", 2, "y"), ("c", 3, "z")]


def test_an_additive_upsert_adds_once_per_row(storage):
    sql = (f"INSERT INTO {TABLE} (k, n) VALUES (?,?) ON CONFLICT (k) DO UPDATE SET n = {TABLE}.n + excluded.n")
    with storage.writing() as tx:
        tx.executemany(sql, [("a", 1), ("b", 2)])
        tx.executemany(sql, [("a", 10), ("b", 20), ("c", 30)])
    assert [(r[0], r[1]) for r in rows_of(storage)] == [("a", 11), ("b", 22), ("c", 30)]


def test_long_in_lists_and_not_in_lists_select_the_same_rows(storage):
    with storage.writing() as tx:
        tx.executemany(f"INSERT INTO {TABLE} (k, n) VALUES (?,?)", [(f"k{i:03}", i) for i in range(500)])
    wanted = [f"k{i:03}" for i in range(0, 500, 7)]
    with storage.reading() as tx:
        got = tx.all(f"SELECT k FROM {TABLE} WHERE n >= ? AND k IN ({','.join('?' * len(wanted))}) "
                     f"AND k NOT IN (?, ?) ORDER BY k", [0, *wanted, "k000", "k007"])
    assert [r["k"] for r in got] == wanted[2:]


def test_what_is_not_a_plain_many_row_insert_is_left_alone():
    types = lambda table: {"k": "text", "n": "bigint"}  # noqa: E731
    assert _bulk_insert("UPDATE t SET n = ? WHERE k = ?", [(1, "a"), (2, "b")], types) is None
    assert _bulk_insert("INSERT INTO t (k, n) VALUES (?, ?)", [("a", 1)], types) is None  # one row
    assert _bulk_insert("INSERT INTO t (k, n) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET n = excluded.n",
                        [("a", 1), ("a", 2)], types) is None  # a key twice
    statement, params = _bulk_insert("INSERT INTO t (k, n) VALUES (?, ?)", [("a", 1), ("b", 2)], types)
    assert "unnest(%b::text[], %b::bigint[])" in statement and params == [["a", "b"], [1, 2]]
    assert _any_arrays("SELECT 1 WHERE a = ? AND b IN (?, ?, ?) LIMIT ?", [1, 2, 3, 4, 5]) == (
        "SELECT 1 WHERE a = %s AND b = ANY(%b) LIMIT %s", [1, [2, 3, 4], 5])


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
