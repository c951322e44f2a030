"""Leaks as they occur: the engine says `loop.leaked` when a step of the loop passes its due
time while still open, once per item, step and due time.

The loop view (`loop_spans`) says which steps are open and when each is due, but it is
rewritten case by case and spans millions of closed steps; asking it every second which
steps have just become overdue would not scale. So the reactor keeps its own small table,
`leak_watch`: the steps that are open now. Following the log it only notes which items its
facts touch (`leak_dirty`); when time is asked about (`due(now)`, by which moment the engine
has brought the views up to date) it refreshes those items from the view, then looks only
at its own table. Reading the view at `due` rather than when facts arrive keeps the reactor
right whatever order the engine runs reactors and views in. A step that arrives already overdue (a backfill, a late outlet sync)
is alerted at the next look, not lost; a step closed before its due time never is.

The alert's time is the due time (when, in the world, the step leaked); its id is derived
from item, step and due time, so deciding it twice records it once, even after the
reactor's state is rebuilt.
"""

from __future__ import annotations

from typing import Any, Sequence

from closedloop.domain.facts import Fact, iso
from closedloop.domain.policy import LoopPolicy
from closedloop.reactors.process import engine_fact
from closedloop.projections.loop import FEEDBACK, SPANS
from closedloop.log.storage import Tx

WATCH = "leak_watch"
DIRTY = "leak_dirty"
VERSION = "leak-alerts-2"
_REFERENCE = ("outlet.registered", "technician.registered", "technician.praised", "technician.promoted",
              "stock.received")


class LeakAlerts:
    name = "leak-alerts"
    # its cost beside the views' (loop view 6): consumers sharing the followers split by it
    weight = 0.6

    def __init__(self, policy: LoopPolicy) -> None:
        self.policy = policy

    def fingerprint(self) -> str:
        # new deadlines rebuild the view's spans, so the watch is rebuilt with them
        return f"{VERSION}/{self.policy.fingerprint()}"

    def tables(self) -> list[str]:
        return [WATCH, DIRTY]

    def create_statements(self) -> list[str]:
        return [
            f"CREATE TABLE {WATCH} (item TEXT NOT NULL, stage TEXT NOT NULL, due {{bigint}} NOT NULL, "
            "owner TEXT NOT NULL, case_id TEXT, call_id TEXT, outlet_id TEXT, region TEXT, "
            "alerted INTEGER NOT NULL, PRIMARY KEY (item, stage, due))",
            f"CREATE INDEX {WATCH}_pending ON {WATCH} (alerted, due)",
            f"CREATE TABLE {DIRTY} (item TEXT PRIMARY KEY)",
        ]

    # --- following the log: which steps are open --------------------------------------------
    def react(self, tx: Tx, facts: Sequence[Fact]) -> list[Fact]:
        cases: set[str] = set()
        calls: set[str] = set()
        feedback: set[str] = set()
        for f in facts:
            kind = f.type
            if kind in _REFERENCE or kind == "loop.leaked":
                continue
            if kind == "call.received":
                calls.add(f.subject)
                if f.data.get("case_id"):
                    cases.add(f.data["case_id"])
            elif kind.startswith("feedback."):
                feedback.add(f.subject)
                if kind == "feedback.routed" and f.data.get("case_id"):
                    cases.add(f.data["case_id"])
            else:
                cases.add(f.subject)
                if kind == "case.registered":
                    calls.add(f.data["call_id"])
        for chunk in _chunks(sorted(feedback)):
            among, params = tx.in_list("feedback_id", chunk)
            rows = tx.all(f"SELECT case_id FROM {FEEDBACK} WHERE {among} AND case_id IS NOT NULL", params)
            cases.update(r["case_id"] for r in rows)
        # feedback about no case (from a call) is an item of its own in the loop view
        items = ([f"case:{c}" for c in sorted(cases)] + [f"call:{c}" for c in sorted(calls)]
                 + [f"feedback:{f}" for f in sorted(feedback)])
        tx.insert_many(DIRTY, ("item",), [(i,) for i in items], conflict=("item",))
        return []  # what is open decides nothing yet; the passing of its due time does

    def _refresh(self, tx: Tx, items: list[str]) -> None:
        among, params = tx.in_list("item", items)
        # by item alone (the primary key): `AND alerted = 1` took the (alerted, due) index, every alert ever
        alerted = {(r["item"], r["stage"], r["due"]) for r in tx.all(
            f"SELECT item, stage, due, alerted FROM {WATCH} WHERE {among}", params) if r["alerted"] == 1}
        open_now = tx.all(
            f"SELECT item, stage, due, owner, case_id, call_id, outlet_id, region FROM {SPANS} "
            f"WHERE {among} AND closed IS NULL", params)
        tx.execute(f"DELETE FROM {WATCH} WHERE {among}", params)
        tx.insert_many(
            WATCH, ("item", "stage", "due", "owner", "case_id", "call_id", "outlet_id", "region", "alerted"),
            [(r["item"], r["stage"], r["due"], r["owner"], r["case_id"], r["call_id"], r["outlet_id"],
              r["region"], 1 if (r["item"], r["stage"], r["due"]) in alerted else 0) for r in open_now],
            conflict=("item", "stage", "due"))

    # --- time passing: which open steps are now overdue -----------------------------------
    def due(self, tx: Tx, now: int) -> list[Fact]:
        dirty = [r["item"] for r in tx.all(f"SELECT item FROM {DIRTY}")]
        for chunk in _chunks(dirty):
            self._refresh(tx, chunk)
        tx.execute(f"DELETE FROM {DIRTY}")
        rows = tx.all(f"SELECT item, stage, due, owner, case_id, call_id, outlet_id, region FROM {WATCH} "
                      f"WHERE alerted = 0 AND due <= {tx.q} ORDER BY due, item, stage", [now])
        if not rows:
            return []
        tx.execute(f"UPDATE {WATCH} SET alerted = 1 WHERE alerted = 0 AND due <= {tx.q}", [now])
        return [self._alert(r) for r in rows]

    def _alert(self, r: Any) -> Fact:
        subject = r["case_id"] or r["call_id"] or r["item"]
        data = {"stage": r["stage"], "due": iso(r["due"]), "owner": r["owner"], "case_id": r["case_id"],
                "call_id": r["call_id"], "outlet_id": r["outlet_id"], "region": r["region"]}
        return engine_fact("loop.leaked", subject, r["due"], data, self.name,
                           f"leak:{r['item']}:{r['stage']}:{r['due']}")


def _chunks(keys: Sequence[str], size: int = 400):
    for i in range(0, len(keys), size):
        yield list(keys[i : i + size])
