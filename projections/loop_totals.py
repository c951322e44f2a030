"""Running totals of the loop view, so that "now" is answered without counting a million rows.

Kept by the loop view in the batch's own transaction, by difference: `Totals.before` reads
what the rows a flush is about to rewrite contributed, `Totals.after` what they contribute
once rewritten, and the difference is added to the tables. The rows a flush rewrites are
those of the items it names (stale call and feedback items, and dirty cases) and every span
of the cases concerned, so the two readings cover exactly the rows deleted and inserted.

- `loop_open_totals`: spans still open (closed IS NULL), by stage, region, outlet and owner;
  the summary and the leaks' totals start from them and correct for the few spans that
  opened or closed after the moment asked about.
- `loop_counts`' row `totals_stale` (1 while a rebuild folds the view without keeping the
  totals): `settle` counts them afresh from the rows, in SQL, and clears it. A rebuild
  reads and writes every row once; keeping the totals by difference batch by batch would
  read them all again.
- `loop_counts`: `open_cases` (cases with a step still open) and `open_unregistered` (of
  those, the ones whose registration is not known).
- `loop_control_days`: services by day begun, per grouping (`dim`: '' for the whole, or a
  column of `GROUPS`), with how many have each control's mark at all; the controls answer
  whole days from them and read the items of the days cut by the window.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterable

from closedloop.log.storage import Tx

OPEN_TOTALS = "loop_open_totals"
CONTROL_DAYS = "loop_control_days"
DAY_MS = 86_400_000
# NULL may not stand in a key that rows are upserted on; this stands for it there
NONE = "~none~"
# (dim, column) of each grouping of the controls, '' being the whole
DIMS = (("", None), ("region", "region"), ("outlet", "outlet_id"), ("product_line", "product_line"),
        ("technician", "technician_id"))
MARKS = ("complained", "dissatisfied", "first_leak")


def create_statements() -> list[str]:
    return [
        f"CREATE TABLE {OPEN_TOTALS} (stage TEXT NOT NULL, region TEXT NOT NULL, outlet_id TEXT NOT NULL, "
        "owner TEXT NOT NULL, n {bigint} NOT NULL, PRIMARY KEY (stage, region, outlet_id, owner))",
        f"CREATE TABLE {CONTROL_DAYS} (dim TEXT NOT NULL, day {{bigint}} NOT NULL, grp TEXT NOT NULL, "
        "services {bigint} NOT NULL, complained {bigint} NOT NULL, dissatisfied {bigint} NOT NULL, "
        "first_leak {bigint} NOT NULL, PRIMARY KEY (dim, day, grp))",
    ]


def index_statements() -> list[str]:
    return [
        # what opened after the moment asked about, to take it off the totals
        "CREATE INDEX loop_spans_open_opened ON loop_spans (opened) WHERE closed IS NULL",
        # the leaks' pages, in their order, one index per filter
        "CREATE INDEX loop_spans_open_stage ON loop_spans (stage, due, item) WHERE closed IS NULL",
        "CREATE INDEX loop_spans_open_region ON loop_spans (region, due, item, stage) WHERE closed IS NULL",
        "CREATE INDEX loop_spans_open_outlet ON loop_spans (outlet_id, due, item, stage) WHERE closed IS NULL",
        "CREATE INDEX loop_spans_open_owner ON loop_spans (owner, due, item, stage) WHERE closed IS NULL",
        # a control's mark after the moment asked about, to take it off the days' totals
        # (covering what the correction groups by: few items have a mark, so they stay small)
        *(f"CREATE INDEX loop_items_{m} ON loop_items ({m}, started, service, region, outlet_id, product_line, "
          f"technician_id) WHERE {m} IS NOT NULL" for m in MARKS),
    ]


STALE = "totals_stale"


def mark_stale(tx: Tx, counts: str) -> None:
    """The totals stop being kept from this batch on (in its transaction): a rebuild's."""
    tx.execute(f"UPDATE {counts} SET n = 1 WHERE name = {tx.q} AND n = 0", [STALE])


def settle(tx: Tx, spans: str, items: str, counts: str) -> bool:
    """When the totals were left to a rebuild's end, count them afresh from the view's rows
    (`recount`'s queries, GROUP BY in the database, written straight into the tables). True
    when it counted."""
    row = tx.one(f"SELECT n FROM {counts} WHERE name = {tx.q}", [STALE])
    if row is None or not row["n"]:
        return False
    tx.execute(f"DELETE FROM {OPEN_TOTALS}")
    tx.execute(f"INSERT INTO {OPEN_TOTALS} (stage, region, outlet_id, owner, n) {_open_spans(spans)}")
    tx.execute(f"DELETE FROM {CONTROL_DAYS}")
    for dim, col in DIMS:
        tx.execute(f"INSERT INTO {CONTROL_DAYS} (dim, day, grp, services, complained, dissatisfied, first_leak) "
                   f"{_services_by_day(items, dim, col)}")
    tx.execute(f"UPDATE {counts} SET n = ({_open_cases(spans)}) WHERE name = 'open_cases'")
    tx.execute(f"UPDATE {counts} SET n = ({_open_unregistered(spans, items)}) WHERE name = 'open_unregistered'")
    tx.execute(f"UPDATE {counts} SET n = 0 WHERE name = {tx.q}", [STALE])
    return True


def key(value: Any) -> str:
    return NONE if value is None else value


def unkey(value: str) -> Any:
    return None if value == NONE else value


def _chunks(tx: Tx, column: str, keys: Iterable[str], size: int = 400):
    """`column` among `keys`, `size` at a time: (condition, parameters)."""
    keys = sorted(keys)
    for i in range(0, len(keys), size):
        yield tx.in_list(column, keys[i : i + size])


class _Reading:
    def __init__(self) -> None:
        self.open: Counter = Counter()
        self.open_cases: set[str] = set()
        self.registered: dict[str, bool] = {}  # case id -> registered, for cases with an item
        self.days: dict[tuple[str, int, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])


class Totals:
    def __init__(self, tx: Tx, spans: str, items: str, counts: str) -> None:
        self.tx, self.spans, self.items, self.counts = tx, spans, items, counts
        self.item_keys: set[str] = set()
        self.case_ids: set[str] = set()
        self.old: _Reading | None = None

    def before(self, item_keys: Iterable[str], case_ids: Iterable[str]) -> None:
        self.item_keys = set(item_keys)
        self.case_ids = set(case_ids)
        # a stale item's spans may belong to a case the batch did not touch: all of its spans count
        for among, params in _chunks(self.tx, "item", self.item_keys):
            for r in self.tx.all(f"SELECT DISTINCT case_id FROM {self.spans} WHERE {among} "
                                 "AND case_id IS NOT NULL", params):
                self.case_ids.add(r["case_id"])
        self.old = self._read()

    def _read(self) -> _Reading:
        out = _Reading()
        tx = self.tx
        cols = "item, case_id, stage, region, outlet_id, owner"
        for among, params in _chunks(tx, "item", self.item_keys):
            for r in tx.all(f"SELECT {cols} FROM {self.spans} WHERE closed IS NULL AND {among}", params):
                self._span(out, r)
        for among, params in _chunks(tx, "case_id", self.case_ids):
            for r in tx.all(f"SELECT {cols} FROM {self.spans} WHERE closed IS NULL AND {among}", params):
                if r["item"] not in self.item_keys:
                    self._span(out, r)
        names = self.item_keys | {f"case:{c}" for c in self.case_ids}
        cols = "item, kind, case_id, service, started, registered, " + ", ".join(
            c for _, c in DIMS if c) + ", " + ", ".join(MARKS)
        for among, params in _chunks(tx, "item", names):
            for r in tx.all(f"SELECT {cols} FROM {self.items} WHERE {among}", params):
                if r["kind"] == "case":
                    out.registered[r["case_id"]] = r["registered"] is not None
                if r["service"] == 1 and r["started"] is not None:
                    day = r["started"] // DAY_MS
                    marked = [1, *(0 if r[m] is None else 1 for m in MARKS)]
                    for dim, col in DIMS:
                        acc = out.days[(dim, day, key(r[col]) if col else NONE)]
                        for i, v in enumerate(marked):
                            acc[i] += v
        return out

    @staticmethod
    def _span(out: _Reading, r: Any) -> None:
        out.open[(r["stage"], key(r["region"]), key(r["outlet_id"]), key(r["owner"]))] += 1
        if r["case_id"] is not None:
            out.open_cases.add(r["case_id"])

    def after(self) -> None:
        old, new = self.old, self._read()
        assert old is not None
        tx = self.tx
        opened = Counter(new.open)
        opened.subtract(old.open)
        changed = [(n, *k) for k, n in sorted(opened.items()) if n]
        if changed:
            tx.insert_many(OPEN_TOTALS, ("n", "stage", "region", "outlet_id", "owner"), changed,
                           conflict=("stage", "region", "outlet_id", "owner"), update=f"n = {OPEN_TOTALS}.n + excluded.n")
            q = tx.q
            tx.executemany(f"DELETE FROM {OPEN_TOTALS} WHERE stage = {q} AND region = {q} AND outlet_id = {q} "
                           f"AND owner = {q} AND n = 0", [k for _, *k in changed])
        cases = len(new.open_cases) - len(old.open_cases)
        unregistered = (sum(1 for c in new.open_cases if new.registered.get(c) is False)
                        - sum(1 for c in old.open_cases if old.registered.get(c) is False))
        for name, n in (("open_cases", cases), ("open_unregistered", unregistered)):
            if n:
                tx.execute(f"UPDATE {self.counts} SET n = n + {tx.q} WHERE name = {tx.q}", [n, name])
        rows = []
        for k in sorted(set(old.days) | set(new.days)):
            a, b = old.days.get(k, [0, 0, 0, 0]), new.days.get(k, [0, 0, 0, 0])
            delta = [y - x for x, y in zip(a, b)]
            if any(delta):
                rows.append((*k, *delta))
        if rows:
            measures = ("services", "complained", "dissatisfied", "first_leak")
            tx.insert_many(CONTROL_DAYS, ("dim", "day", "grp", *measures), rows, conflict=("dim", "day", "grp"),
                           update=", ".join(f"{m} = {CONTROL_DAYS}.{m} + excluded.{m}" for m in measures))
            q = tx.q
            tx.executemany(f"DELETE FROM {CONTROL_DAYS} WHERE dim = {q} AND day = {q} AND grp = {q} AND services = 0 "
                           "AND complained = 0 AND dissatisfied = 0 AND first_leak = 0", [r[:3] for r in rows])


# The totals as counted from the view's rows, in the tables' columns and keys (NULL as NONE).
def _open_spans(spans: str) -> str:
    return (f"SELECT stage, COALESCE(region, '{NONE}') AS region, COALESCE(outlet_id, '{NONE}') AS outlet_id, "
            f"owner, COUNT(*) AS n FROM {spans} WHERE closed IS NULL "
            f"GROUP BY stage, COALESCE(region, '{NONE}'), COALESCE(outlet_id, '{NONE}'), owner")


def _services_by_day(items: str, dim: str, col: str | None) -> str:
    grp = f"COALESCE({col}, '{NONE}')" if col else f"'{NONE}'"
    marks = ", ".join(f"COUNT({m}) AS {m}" for m in MARKS)
    return (f"SELECT '{dim}' AS dim, started / {DAY_MS} AS day, {grp} AS grp, COUNT(*) AS services, {marks} "
            f"FROM {items} WHERE service = 1 AND started IS NOT NULL "
            f"GROUP BY started / {DAY_MS}{', ' + grp if col else ''}")


def _open_cases(spans: str) -> str:
    return f"SELECT COUNT(DISTINCT case_id) AS n FROM {spans} WHERE closed IS NULL AND case_id IS NOT NULL"


def _open_unregistered(spans: str, items: str) -> str:
    return (f"SELECT COUNT(DISTINCT s.case_id) AS n FROM {spans} s JOIN {items} i ON i.item = 'case:' || s.case_id "
            "WHERE s.closed IS NULL AND i.registered IS NULL")


def recount(tx: Tx, spans: str = "loop_spans", items: str = "loop_items") -> dict[str, Any]:
    """The totals counted afresh from the view's rows: what the running totals must equal."""
    open_ = {(r["stage"], r["region"], r["outlet_id"], r["owner"]): int(r["n"]) for r in tx.all(_open_spans(spans))}
    days: dict[tuple[str, int, str], tuple[int, ...]] = {}
    for dim, col in DIMS:
        for r in tx.all(_services_by_day(items, dim, col)):
            days[(dim, int(r["day"]), r["grp"])] = (int(r["services"]), *(int(r[m]) for m in MARKS))
    return {"open": open_, "open_cases": int(tx.one(_open_cases(spans))["n"]),
            "open_unregistered": int(tx.one(_open_unregistered(spans, items))["n"]), "days": days}


def kept(tx: Tx, counts: str = "loop_counts") -> dict[str, Any]:
    """The running totals as kept, in `recount`'s shape."""
    n = {r["name"]: int(r["n"]) for r in tx.all(f"SELECT name, n FROM {counts}")}
    return {
        "open": {(r["stage"], r["region"], r["outlet_id"], r["owner"]): int(r["n"])
                 for r in tx.all(f"SELECT * FROM {OPEN_TOTALS}")},
        "open_cases": n["open_cases"], "open_unregistered": n["open_unregistered"],
        "days": {(r["dim"], int(r["day"]), r["grp"]): (int(r["services"]), *(int(r[m]) for m in MARKS))
                 for r in tx.all(f"SELECT * FROM {CONTROL_DAYS}")},
    }
