"""Each batch's lookups are planned on an index, so that ingesting stays as fast with a big
store as with an empty one. The statements checked are the ones the engine really runs (they
are recorded while it ingests), planned by the database itself: EXPLAIN QUERY PLAN on
SQLite, EXPLAIN on PostgreSQL."""

from __future__ import annotations

import re
from typing import Any, Iterator

import pytest

from closedloop.app.engine import Engine
from closedloop.app.settings import default_settings
from closedloop.domain.policy import LoopPolicy
from closedloop.log.storage import Storage, Tx
from closedloop.simulation.workload import WorkloadSpec, generate

from conftest import event
from stories import case

# rows put in the two tables before planning, so that PostgreSQL plans as on a real store
# (on a table of a few pages a sequential scan is the right plan)
ROWS = 20_000


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, list[Any]]]]:
    """Every statement run through a transaction while the test ingests, with its parameters."""
    seen: list[tuple[str, list[Any]]] = []
    for name in ("execute", "all", "one"):
        original = getattr(Tx, name)

        def wrapped(self: Tx, sql: str, params: Any = (), _original: Any = original) -> Any:
            seen.append((sql, list(params)))
            return _original(self, sql, params)

        monkeypatch.setattr(Tx, name, wrapped)
    yield seen


def plan(storage: Storage, sql: str, params: list[Any]) -> str:
    """The database's plan for a statement, as text."""
    with storage.reading() as tx:
        if storage.dialect == "sqlite":
            return "\n".join(r["detail"] for r in tx.all(f"EXPLAIN QUERY PLAN {sql}", params))
        rows = tx.all(f"EXPLAIN {sql}", params)
        return "\n".join(str(next(iter(r.values()))) for r in rows)


def statements(seen: list[tuple[str, list[Any]]], pattern: str) -> list[tuple[str, list[Any]]]:
    found = [(sql, params) for sql, params in seen if re.search(pattern, sql)]
    assert found, f"no statement matching {pattern!r} was run: the test no longer sees the lookup"
    return found


def fill(engine: Engine) -> None:
    """Many cases with their calls and many routed feedback ids, as a store holds after months."""
    items = [(f"case:S{i}", "case", f"S{i}", f"SC{i}", 1, 0, 0, None, "R01", "OUT-1", None, "refrigerator",
              "BCD-216", None, None, None, 0, "{}") for i in range(ROWS)]
    ids = [(f"SFB{i}", f"case:S{i}:manufacturing", "[]") for i in range(ROWS)]
    with engine.storage.writing() as tx:
        tx.insert_many("loop_items", ("item", "kind", "case_id", "call_id", "service", "started", "registered",
                                      "completed", "region", "outlet_id", "technician_id", "product_line", "model",
                                      "complained", "dissatisfied", "first_leak", "anomalies", "file"), items)
        tx.insert_many("feedback_ids", ("feedback_id", "item_key", "entries"), ids)


def uses_index(storage: Storage, text: str, table: str, index: str) -> bool:
    if storage.dialect == "sqlite":
        # SEARCH t USING [COVERING] INDEX i (col=?): found through the index, not read whole
        return re.search(rf"SEARCH {table} USING (COVERING )?INDEX {index} \(", text) is not None
    return index in text and f"Seq Scan on {table}" not in text


@pytest.mark.parametrize("statistics", [False, True], ids=["as-created", "analyzed"])
def test_a_batch_finds_cases_by_call_id_and_feedback_ids_by_item_through_an_index(
        database_url: str, recorded: list[tuple[str, list[Any]]], statistics: bool) -> None:
    engine = Engine.open(database_url, policy=LoopPolicy(), settings=default_settings())
    try:
        fill(engine)
        if statistics:
            engine.storage.refresh_statistics(["loop_items", "feedback_ids"])
        recorded.clear()
        events = case("CASE-1", "2026-10-30T08:00:00Z", cause="manufacturing") + [
            event("feedback.routed", "FB-1", "2026-10-31T10:00:00Z",
                  {"case_id": "CASE-1", "department": "manufacturing", "summary": "compressor"},
                  source="/quality/desk")]
        result = engine.submit(events)
        assert result.accepted == len(events), result.to_json()

        storage = engine.storage
        for sql, params in statements(recorded, r"FROM loop_items WHERE .*call_id"):
            text = plan(storage, sql, params)
            assert uses_index(storage, text, "loop_items", "loop_items_call"), f"{sql}\n{text}"
        for sql, params in statements(recorded, r"FROM feedback_ids WHERE .*item_key"):
            text = plan(storage, sql, params)
            assert uses_index(storage, text, "feedback_ids", "feedback_ids_item"), f"{sql}\n{text}"
        # what the call-id lookup found is still right: the case registered from the call
        with storage.reading() as tx:
            row = tx.one(f"SELECT call_id FROM loop_items WHERE item = {tx.q}", ["case:CASE-1"])
        assert row["call_id"] == "CALL-CASE-1"
    finally:
        engine.close()


# Tables a batch may read whole: they do not grow with the store.
READ_WHOLE = {
    "leak_dirty": "the items touched since the last tick, emptied by every tick",
    "prt_warehouses": "reference data: the warehouses",
    "closedloop_chain": "ORDER BY position DESC LIMIT 1 walks the primary key from its end, one row",
}


def test_no_statement_of_an_ingest_reads_a_growing_table_whole(tmp_path, recorded) -> None:
    """SQLite without statistics (as every store starts): each distinct statement the engine
    runs while ingesting a workload, dispatch and ticks included, planned once."""
    url = f"sqlite:///{tmp_path}/plans.db"
    settings = default_settings().model_copy(update={"auto_dispatch": True})
    engine = Engine.open(url, settings=settings)
    try:
        events = list(generate(WorkloadSpec(seed=5, days=2, calls_per_day=120, outlets=12, regions=3)))
        recorded.clear()  # what opening a store runs once (sealing the chain reads the log) is not a batch's
        for i in range(0, len(events), 500):
            engine.submit(events[i : i + 500], "file")
            engine.tick()
        distinct: dict[str, tuple[str, list[Any]]] = {}  # one of each, whatever its number of keys
        for sql, params in recorded:
            if re.match(r"\s*(SELECT|WITH|UPDATE|DELETE)", sql, re.I):
                distinct.setdefault(re.sub(r"\?(,\?)+", "?", sql), (sql, params))
        assert len(distinct) > 40, "the workload ran too little of the engine to judge"
        with engine.storage.reading() as tx:
            tables = {r["name"] for r in tx.all("SELECT name FROM sqlite_master WHERE type = 'table'")}
        scans, aside = [], []
        for sql, params in distinct.values():
            text = plan(engine.storage, sql, params)
            # SCAN t, or SCAN t USING [COVERING] INDEX i: every row of t, or of its index
            for table in re.findall(r"^SCAN (\w+)", text, re.M):
                if table in tables and table not in READ_WHOLE:
                    scans.append(f"{table}: {sql[:160]}\n{text}")
            # a lookup of a batch's keys (`col IN (...)`) must search by them, not by another
            # column beside them (`AND kind = 'case'` had SQLite read every case through `kind`)
            keys = set(re.findall(r"(?:\w+\.)?(\w+) IN \(\?", sql))
            searched = re.findall(r"^SEARCH \w+ USING .*\((.*)\)$", text, re.M)
            if keys and not any(f"{key}=" in cond for key in keys for cond in searched):
                aside.append(f"{sql[:160]}\n{text}")
        assert not scans, "\n\n".join(scans)
        assert not aside, "\n\n".join(aside)
    finally:
        engine.close()


def test_an_index_added_by_a_later_version_is_made_without_rebuilding_the_view(database_url: str) -> None:
    engine = Engine.open(database_url, policy=LoopPolicy(), settings=default_settings())
    try:
        engine.submit(case("CASE-1", "2026-10-30T08:00:00Z"))
        before = engine.projector.positions()["feedback"]
        assert before > 0
        with engine.storage.writing() as tx:
            tx.execute("DROP INDEX feedback_ids_item")  # a store made before the index was
            tx.execute("DROP INDEX prt_requests_waiting")
    finally:
        engine.close()
    again = Engine.open(database_url, policy=LoopPolicy(), settings=default_settings())
    try:
        # not rebuilt: the view stands where it stood
        assert again.projector.positions()["feedback"] == before
        for index, table in (("feedback_ids_item", "feedback_ids"), ("prt_requests_waiting", "prt_requests")):
            with again.storage.reading() as tx:
                if again.storage.dialect == "sqlite":
                    found = tx.one("SELECT name FROM sqlite_master WHERE type = 'index' AND name = ?", [index])
                else:
                    found = tx.one("SELECT indexname AS name FROM pg_indexes WHERE tablename = %s "
                                   "AND indexname = %s AND schemaname = current_schema()", [table, index])
            assert found is not None, index
    finally:
        again.close()


def test_a_rebuild_leaves_the_planner_statistics_of_the_full_views(database_url: str) -> None:
    engine = Engine.open(database_url, policy=LoopPolicy(), settings=default_settings())
    try:
        for n in range(1, 4):
            engine.submit(case(f"CASE-{n}", "2026-10-30T08:00:00Z"))
        engine.projector.rebuild()
        with engine.storage.reading() as tx:
            if engine.storage.dialect == "sqlite":
                # the primary key's entry: how many rows the table holds, then rows per key
                row = tx.one("SELECT stat FROM sqlite_stat1 WHERE tbl = 'loop_items' "
                             "AND idx = 'sqlite_autoindex_loop_items_1'")
                assert row is not None and row["stat"] == "3 1", row
            else:
                # pg_stats holds a table's columns once ANALYZE has read it (CREATE INDEX does not)
                row = tx.one("SELECT COUNT(*) AS n FROM pg_stats WHERE schemaname = current_schema() "
                             "AND tablename = 'loop_items'")
                assert row["n"] > 0, row
    finally:
        engine.close()


def test_the_planner_has_statistics_once_the_store_has_grown(database_url: str) -> None:
    """SQLite: `PRAGMA optimize` when a store that wrote closes. PostgreSQL: autovacuum's
    work, or, where it is off, the store's own ANALYZE each time the log has doubled."""
    engine = Engine.open(database_url, policy=LoopPolicy(), settings=default_settings())
    events = list(generate(WorkloadSpec(seed=3, days=1, calls_per_day=200, outlets=12, regions=3)))
    assert len(events) > 1000
    pg = engine.storage.dialect == "postgresql"
    try:
        if pg and engine.storage._analyze_at is None:  # type: ignore[attr-defined]
            with engine.storage.reading() as tx:
                assert tx.one("SHOW autovacuum")["autovacuum"] == "on"
            return  # the server keeps them
        for i in range(0, len(events), 500):
            engine.submit(events[i : i + 500])
        if pg:
            with engine.storage.reading() as tx:
                rows = tx.all("SELECT DISTINCT tablename FROM pg_stats WHERE schemaname = current_schema()")
            assert {"closedloop_events", "closedloop_receipts", "loop_items"} <= {r["tablename"] for r in rows}
            assert engine.storage._analyze_at >= 2 * 1000  # type: ignore[attr-defined]  # the next: twice as many
    finally:
        engine.close()
    if not pg:
        again = Engine.open(database_url, policy=LoopPolicy(), settings=default_settings())
        try:
            with again.storage.reading() as tx:
                rows = tx.all("SELECT DISTINCT tbl FROM sqlite_stat1")
            assert {"closedloop_events", "loop_items"} <= {r["tbl"] for r in rows}
        finally:
            again.close()
