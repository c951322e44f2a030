"""Where is each case in the loop, and what has leaked: the four nothing-missed view.

Rows:
- `loop_items`: one per case, and one per call that asked for service and has no case yet;
  the case's file (what the loop knows of it) and its profile for grouping and filtering.
- `loop_spans`: the intervals over which a step of an item was open, with due time and
  owner (see `closedloop.domain.loop`). "Leaked at T" is a range query over them, so any
  `as_of` is answered from the same rows.
- `loop_calls` and `loop_feedback`: links that let facts meet whatever order they arrive in
  (a registration before its call, an acknowledgement before its routing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import orjson

from closedloop.domain.facts import STREAM_KIND, Fact
from closedloop.domain.loop import Assessment, CaseFile, Span, assess, call_spans, feedback_spans, lite
from closedloop.domain.policy import LoopPolicy
from closedloop.log.storage import Tx

from . import loop_totals

SCHEMA_VERSION = "loop-11"

ITEMS = "loop_items"
SPANS = "loop_spans"
CALLS = "loop_calls"
FEEDBACK = "loop_feedback"
COUNTS = "loop_counts"

_ITEM_COLUMNS = (
    "item", "kind", "case_id", "call_id", "service", "started", "registered", "completed",
    "region", "outlet_id", "technician_id", "product_line", "model", "complained",
    "dissatisfied", "first_leak", "anomalies", "file",
)
# Facts about the network (outlets, technicians and their permits, warehouses): not a case's.
_NOT_CASES = frozenset(t for t, kind in STREAM_KIND.items() if kind in ("outlet", "technician", "warehouse"))
_SPAN_COLUMNS = ("item", "case_id", "call_id", "stage", "opened", "closed", "due", "owner", "outlet_id", "region",
                 "waiting_for")


@dataclass
class _Call:
    call_id: str
    time: int
    intent: str
    owner: str | None
    named_case: str | None  # a complaint or follow-up that names an existing case
    case_id: str | None  # the case registered from this call


class LoopView:
    # what folding it costs beside the other views (about 1): a parallel rebuild balances on it
    weight = 6.0
    name = "loop"
    # set by a rebuild on the copy of the view it folds with: the running totals are counted
    # once at the end (`settle`) instead of kept batch by batch
    rebuilding = False

    def __init__(self, policy: LoopPolicy) -> None:
        self.policy = policy

    def fingerprint(self) -> str:
        return f"{SCHEMA_VERSION}/{self.policy.fingerprint()}"

    def tables(self) -> list[str]:
        return [ITEMS, SPANS, CALLS, FEEDBACK, COUNTS, loop_totals.OPEN_TOTALS, loop_totals.CONTROL_DAYS]

    def create_statements(self) -> list[str]:
        return [
            f"CREATE TABLE {ITEMS} (item TEXT PRIMARY KEY, kind TEXT NOT NULL, case_id TEXT, call_id TEXT, "
            "service INTEGER NOT NULL, started {bigint}, registered {bigint}, completed {bigint}, region TEXT, "
            "outlet_id TEXT, technician_id TEXT, product_line TEXT, model TEXT, complained {bigint}, "
            "dissatisfied {bigint}, first_leak {bigint}, anomalies INTEGER NOT NULL, file TEXT)",
            f"CREATE INDEX {ITEMS}_call ON {ITEMS} (call_id)",
            f"CREATE TABLE {SPANS} (item TEXT NOT NULL, case_id TEXT, call_id TEXT, stage TEXT NOT NULL, "
            "opened {bigint} NOT NULL, closed {bigint}, due {bigint} NOT NULL, owner TEXT NOT NULL, "
            "outlet_id TEXT, region TEXT, waiting_for TEXT)",
            f"CREATE INDEX {SPANS}_case ON {SPANS} (case_id)",
            f"CREATE INDEX {SPANS}_item ON {SPANS} (item)",
            f"CREATE TABLE {CALLS} (call_id TEXT PRIMARY KEY, time {{bigint}} NOT NULL, intent TEXT NOT NULL, "
            "owner TEXT, named_case TEXT, case_id TEXT)",
            f"CREATE TABLE {FEEDBACK} (feedback_id TEXT PRIMARY KEY, case_id TEXT, entries TEXT NOT NULL)",
            # running totals, so that "how many cases" does not count a million rows
            f"CREATE TABLE {COUNTS} (name TEXT PRIMARY KEY, n {{bigint}} NOT NULL)",
            f"INSERT INTO {COUNTS} (name, n) VALUES ('registered_cases', 0)",
            f"INSERT INTO {COUNTS} (name, n) VALUES ('open_cases', 0)",
            f"INSERT INTO {COUNTS} (name, n) VALUES ('open_unregistered', 0)",
            f"INSERT INTO {COUNTS} (name, n) VALUES ('{loop_totals.STALE}', 0)",
            *loop_totals.create_statements(),
        ]

    def index_statements(self) -> list[str]:
        """Indexes that serve the questions, not the folding: a rebuild makes them last."""
        return [
            # covering the controls' scan of a period, so it reads the index alone
            f"CREATE INDEX {ITEMS}_started ON {ITEMS} (service, started, region, outlet_id, product_line, "
            "complained, dissatisfied, first_leak)",
            f"CREATE INDEX {ITEMS}_registered ON {ITEMS} (kind, registered)",
            # "now" asks about open steps: a small index of the spans still open, by due time,
            # and one by closing time for the few closed after the moment asked about
            f"CREATE INDEX {SPANS}_open ON {SPANS} (due, item, stage, opened) WHERE closed IS NULL",
            # not the open ones: a query about open spans must take one of the partial indexes
            f"CREATE INDEX {SPANS}_closed ON {SPANS} (closed) WHERE closed IS NOT NULL",
            *loop_totals.index_statements(),
        ]

    # --- folding a batch -------------------------------------------------------------------
    def apply(self, tx: Tx, facts: Sequence[Fact]) -> None:
        # the engine's alerts (loop.leaked) are about the loop, not steps of it
        facts = [f for f in facts if STREAM_KIND.get(f.type) != "alert"]
        if self.rebuilding:
            loop_totals.mark_stale(tx, COUNTS)
        else:
            # a rebuild that stopped before its end left them uncounted
            self.settle(tx)
        batch = _Batch(tx, self.policy, keep_totals=not self.rebuilding)
        batch.prefetch(facts)
        for fact in facts:
            batch.fold(fact)
        batch.flush()

    def settle(self, tx: Tx) -> None:
        """Count the running totals afresh if a rebuild left them to its end."""
        loop_totals.settle(tx, SPANS, ITEMS, COUNTS)


class _Batch:
    """The part of the view one batch touches, loaded once and written back once."""

    def __init__(self, tx: Tx, policy: LoopPolicy, keep_totals: bool = True) -> None:
        self.tx = tx
        self.policy = policy
        self.keep_totals = keep_totals
        self.files: dict[str, CaseFile | None] = {}
        self.calls: dict[str, _Call | None] = {}
        self.feedback: dict[str, tuple[str | None, list[list[Any]]] | None] = {}
        self.dirty_cases: set[str] = set()
        self.dirty_calls: set[str] = set()
        self.dirty_feedback: set[str] = set()
        self.orphans_resolved: set[str] = set()
        # call id -> the case registered from it, for calls that arrive after their case
        self.waiting: dict[str, str] = {}
        self.was_registered: set[str] = set()
        self.stored_cases: set[str] = set()

    # --- loading, lazily and in bulk ---------------------------------------------------
    def prefetch(self, facts: Sequence[Fact]) -> None:
        case_ids, call_ids, fb_ids = set(), set(), set()
        for f in facts:
            kind = f.type
            if kind == "call.received":
                call_ids.add(f.subject)
                if f.data.get("case_id"):
                    case_ids.add(f.data["case_id"])
            elif kind.startswith("feedback."):
                fb_ids.add(f.subject)
                if kind == "feedback.routed" and f.data.get("case_id"):
                    case_ids.add(f.data["case_id"])
            elif kind in _NOT_CASES:
                continue
            else:
                case_ids.add(f.subject)
                if kind == "case.registered":
                    call_ids.add(f.data["call_id"])
        self._load_calls(call_ids)
        self._load_feedback(fb_ids)
        # Cases registered from these calls. Only the call id in the WHERE, so that both databases
        # take the call-id index: with `kind = 'case'` beside it, SQLite (no statistics) took the
        # (kind, registered) index and read every case's row, its whole file included, each batch.
        # An item of the call itself (kind 'call') comes back too and is skipped here.
        for among, params in self._chunks("call_id", call_ids):
            for row in self.tx.all(f"SELECT case_id, call_id, kind FROM {ITEMS} WHERE {among}", params):
                if row["kind"] == "case":
                    self.waiting.setdefault(row["call_id"], row["case_id"])
        case_ids |= {c.case_id for c in self.calls.values() if c and c.case_id}
        case_ids |= {fb[0] for fb in self.feedback.values() if fb and fb[0]}
        self._load_files(case_ids)

    def _chunks(self, column: str, keys: set[str]):
        """`column` among `keys`, 400 at a time: (condition, parameters)."""
        keys_list = sorted(k for k in keys if k is not None)
        for i in range(0, len(keys_list), 400):
            yield self.tx.in_list(column, keys_list[i : i + 400])

    def _load_files(self, case_ids: set[str]) -> None:
        need = {c for c in case_ids if c not in self.files}
        for among, params in self._chunks("item", {f"case:{c}" for c in need if c is not None}):
            for row in self.tx.all(f"SELECT case_id, file, registered FROM {ITEMS} WHERE {among}", params):
                self.files[row["case_id"]] = CaseFile.from_json(orjson.loads(row["file"]))
                self.stored_cases.add(row["case_id"])
                if row["registered"] is not None:
                    self.was_registered.add(row["case_id"])
        for c in need:
            self.files.setdefault(c, None)

    def _load_calls(self, call_ids: set[str]) -> None:
        need = {c for c in call_ids if c not in self.calls}
        for among, params in self._chunks("call_id", need):
            for row in self.tx.all(f"SELECT * FROM {CALLS} WHERE {among}", params):
                self.calls[row["call_id"]] = _Call(row["call_id"], row["time"], row["intent"], row["owner"],
                                                   row["named_case"], row["case_id"])
        for c in need:
            self.calls.setdefault(c, None)

    def _load_feedback(self, fb_ids: set[str]) -> None:
        need = {f for f in fb_ids if f not in self.feedback}
        for among, params in self._chunks("feedback_id", need):
            for row in self.tx.all(f"SELECT * FROM {FEEDBACK} WHERE {among}", params):
                self.feedback[row["feedback_id"]] = (row["case_id"], orjson.loads(row["entries"]))
        for f in need:
            self.feedback.setdefault(f, None)

    def file(self, case_id: str) -> CaseFile:
        if case_id not in self.files:
            self._load_files({case_id})
        found = self.files.get(case_id)
        if found is None:
            found = self.files[case_id] = CaseFile(case_id)
        self.dirty_cases.add(case_id)
        return found

    def call(self, call_id: str) -> _Call | None:
        if call_id not in self.calls:
            self._load_calls({call_id})
        return self.calls.get(call_id)

    # --- folding ---------------------------------------------------------------------------
    def fold(self, fact: Fact) -> None:
        kind = fact.type
        if kind == "call.received":
            self._call_received(fact)
        elif kind.startswith("feedback."):
            self._feedback(fact)
        elif kind in _NOT_CASES:
            return
        else:
            file = self.file(fact.subject)
            file.add(fact)
            if kind == "case.registered":
                call_id = fact.data["call_id"]
                self.waiting.setdefault(call_id, fact.subject)
                self._link(call_id, fact.subject)

    def _call_received(self, fact: Fact) -> None:
        d = fact.data
        # the seat that took the call answers for recording it
        owner = f"agent:{d['agent_id']}" if d.get("agent_id") else fact.source
        existing = self.call(fact.subject)
        if existing is not None:
            return  # the same call reported twice by two systems: the first report stands
        call = _Call(fact.subject, fact.time_ms, d["intent"], owner, d.get("case_id"), None)
        self.calls[fact.subject] = call
        self.dirty_calls.add(fact.subject)
        if call.named_case:
            file = self.file(call.named_case)
            file.related_calls[call.call_id] = [call.time, call.intent, owner]
        # A registration may have arrived first and be waiting for its call.
        waiting = self.waiting.get(fact.subject)
        if waiting:
            self._link(fact.subject, waiting)

    def _link(self, call_id: str, case_id: str) -> None:
        call = self.call(call_id)
        if call is None:
            return  # the call has not arrived yet; it links itself when it does
        if call.case_id and call.case_id != case_id:
            return  # one call, two cases: the first registration keeps the call
        file = self.file(case_id)
        if call.named_case == case_id:
            return
        file.call = [call.call_id, call.time, call.intent, call.owner]
        if call.case_id != case_id:
            call.case_id = case_id
            self.dirty_calls.add(call_id)
        self.orphans_resolved.add(call_id)

    def _feedback(self, fact: Fact) -> None:
        fid = fact.subject
        if fid not in self.feedback:
            self._load_feedback({fid})
        case_id, entries = self.feedback.get(fid) or (None, [])
        entries = entries + [[fact.time_ms, fact.position or 0, fact.type, lite(fact)]]
        if fact.type == "feedback.routed" and case_id is None:
            case_id = fact.data.get("case_id")
        self.feedback[fid] = (case_id, entries)
        self.dirty_feedback.add(fid)
        if case_id:
            self.file(case_id).feedback[fid] = entries

    # --- writing back ------------------------------------------------------------------------
    def flush(self) -> None:
        tx = self.tx
        if self.dirty_calls:
            tx.insert_many(
                CALLS, ("call_id", "time", "intent", "owner", "named_case", "case_id"),
                [(c.call_id, c.time, c.intent, c.owner, c.named_case, c.case_id)
                 for c in (self.calls[k] for k in sorted(self.dirty_calls)) if c is not None],
                conflict=("call_id",), update=("case_id",))
        if self.dirty_feedback:
            tx.insert_many(
                FEEDBACK, ("feedback_id", "case_id", "entries"),
                [(fid, self.feedback[fid][0], orjson.dumps(self.feedback[fid][1]).decode())
                 for fid in sorted(self.dirty_feedback)],
                conflict=("feedback_id",), update=("case_id", "entries"))
        items: list[tuple[Any, ...]] = []
        spans: list[tuple[Any, ...]] = []
        stale_items: list[str] = [f"call:{c}" for c in self.orphans_resolved]
        # Calls still waiting for their case are items of their own, open at "recorded".
        for call_id in sorted(self.dirty_calls - self.orphans_resolved):
            call = self.calls[call_id]
            if call is None or call.case_id or call.named_case:
                continue
            own = call_spans(call.call_id, call.time, call.intent, call.owner, self.policy)
            if not own:
                continue
            items.append((f"call:{call_id}", "call", None, call_id, 1, call.time, None, None, None, None, None,
                          None, None, None, None, own[0].due, 0, None))
            spans.extend(_span_row(s, None, call_id, None) for s in own)
            stale_items.append(f"call:{call_id}")
        # Feedback about no case (from a call) is a fed-back item of its own.
        for fid in sorted(self.dirty_feedback):
            fb_case, entries = self.feedback[fid]  # type: ignore[misc]
            if fb_case is not None:
                continue
            routed = next((e for e in entries if e[2] == "feedback.routed"), None)
            if routed is None:
                continue
            stale_items.append(f"feedback:{fid}")
            spans.extend(_span_row(s, None, routed[3].get("call_id"), None)
                         for s in feedback_spans(fid, entries, self.policy))
        case_ids = sorted(self.dirty_cases)
        newly_registered = 0
        for case_id in case_ids:
            file = self.files[case_id]
            assert file is not None
            a = assess(file, self.policy, steps=False)
            if a.registered is not None and case_id not in self.was_registered:
                newly_registered += 1
            items.append(_item_row(file, a))
            region = a.profile.get("region")
            spans.extend(_span_row(s, case_id, _call_of(s, file), region) for s in a.spans)
        totals = loop_totals.Totals(tx, SPANS, ITEMS, COUNTS) if self.keep_totals else None
        if totals:
            totals.before(stale_items, case_ids)
        if newly_registered:
            tx.execute(f"UPDATE {COUNTS} SET n = n + {tx.q} WHERE name = 'registered_cases'", [newly_registered])
        # `stale_items` are "call:" and "feedback:" keys, never a case's: the item key alone (its
        # primary key) says which rows go; `AND kind = 'call'` made SQLite take the kind index
        for chunk in _chunked(stale_items):
            among, params = tx.in_list("item", chunk)
            tx.execute(f"DELETE FROM {SPANS} WHERE {among}", params)
            tx.execute(f"DELETE FROM {ITEMS} WHERE {among}", params)
        # a case first seen in this batch has no spans to replace
        for chunk in _chunked([c for c in case_ids if c in self.stored_cases]):
            among, params = tx.in_list("case_id", chunk)
            tx.execute(f"DELETE FROM {SPANS} WHERE {among}", params)
        tx.insert_many(ITEMS, _ITEM_COLUMNS, items, conflict=("item",), update=_ITEM_COLUMNS[1:])
        tx.insert_many(SPANS, _SPAN_COLUMNS, spans)
        if totals:
            totals.after()


def _chunked(keys: Sequence[str], size: int = 400):
    keys = list(keys)
    for i in range(0, len(keys), size):
        yield keys[i : i + size]


def _call_of(span: Span, file: CaseFile) -> str | None:
    if span.item.startswith("call:"):
        return span.item[5:]
    return file.call[0] if file.call else None


def _span_row(s: Span, case_id: str | None, call_id: str | None, region: str | None) -> tuple[Any, ...]:
    return (s.item, case_id, call_id, s.stage, s.opened, s.closed, s.due, s.owner, s.outlet_id, region, s.waiting_for)


def _item_row(file: CaseFile, a: Assessment) -> tuple[Any, ...]:
    p = a.profile
    return (
        f"case:{file.case_id}", "case", file.case_id, file.call[0] if file.call else _registered_call(file),
        1 if a.registered is not None else 0, a.started if a.registered is not None else None,
        a.registered, a.completed, p.get("region"), a.outlet_id, a.technician_id, p.get("product_line"),
        p.get("model"), a.complained, a.dissatisfied, a.first_leak, len(a.anomalies),
        orjson.dumps(file.to_json()).decode(),
    )


def _registered_call(file: CaseFile) -> str | None:
    for f in file.facts:
        if f[2] == "case.registered":
            return f[3].get("call_id")
    return None

