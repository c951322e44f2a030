"""Quality-loop benchmark: how fast the departments' questions are answered on a month of data.

1. Generates a month of traffic (at least 200,000 contract events by default) and feeds it
   to the engine on a SQLite file, with the feedback routing and penalty reactors on, as a
   producer would (batches of 2,000); reports events/s.
2. Times each question a user asks of the month (median of 5): Pareto, failures by batch,
   months in service, repeats, first-visit fix, parts, the three controls by week and
   technician with the cases behind them, the settlement of every outlet, penalties by
   owner, the departments' feedback summary.
3. Next to each, a raw baseline measured in the same run: one plain SQL scan of the rows
   the question reads (`sqlite3`, no engine code), the floor any answer pays.

Usage: python bench/quality.py [--events 200000]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable

from closedloop.domain.facts import parse_ms
from closedloop.app.engine import Engine, feed
from closedloop.projections import controls, defects
from closedloop.projections import feedback as feedback_view
from closedloop.projections import settlement
from closedloop.simulation.workload import WorkloadSpec, generate

EVENTS_PER_CALL = 7.0
START, END, AT = "2026-10-02T00:00:00Z", "2026-11-01T00:00:00Z", "2026-11-08T00:00:00Z"


def median_ms(fn: Callable[[], Any], runs: int = 5) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    days = 30
    spec = WorkloadSpec(seed=99, days=days, calls_per_day=int(args.events / EVENTS_PER_CALL / days) + 50,
                        outlets=400, regions=34, end=datetime(2026, 11, 1, tzinfo=UTC))
    print("generating ...", file=sys.stderr)
    events = list(generate(spec))
    with tempfile.TemporaryDirectory(prefix="closedloop-quality-bench-") as tmp:
        db = Path(tmp) / "quality.db"
        engine = Engine.open(f"sqlite:///{db}")
        print(f"feeding {len(events):,} events ...", file=sys.stderr)
        t = time.perf_counter()
        result = feed(engine, events, batch_size=2000)
        took = time.perf_counter() - t
        decided = engine.log.head() - result.accepted
        start, end, at = parse_ms(START), parse_ms(END), parse_ms(AT)
        period = defects.Period(start, end, at)
        s, q = engine.storage, engine.quality
        raw = sqlite3.connect(db)

        def scan(sql: str, params: tuple = ()) -> Callable[[], Any]:
            return lambda: raw.execute(sql, params).fetchall()

        services = scan("SELECT case_id, model, product_line, production_batch, plant, purchase_date, fault_code, "
                        "cause, first_visit, parts, unit, job, outlet_id, technician_id FROM quality_services "
                        "WHERE completed >= ? AND completed < ? AND completed <= ?", (start, end, at))
        items = scan("SELECT item, started, technician_id, complained, dissatisfied, first_leak FROM loop_items "
                     "WHERE service = 1 AND started >= ? AND started < ? AND started <= ?", (start, end, at))
        settled = scan("SELECT s.case_id, s.job, s.outlet_id, o.tier FROM quality_services s LEFT JOIN quality_outlets o "
                       "ON o.outlet_id = s.outlet_id WHERE s.reviewed >= ? AND s.reviewed < ?", (start, end))
        shares = scan("SELECT * FROM quality_penalty_shares s JOIN quality_penalties p ON p.penalty_id = s.penalty_id "
                      "WHERE p.time >= ? AND p.time < ?", (start, end))
        phases = scan("SELECT i.department, p.phase FROM feedback_items i JOIN feedback_phases p ON "
                      "p.item_key = i.item_key WHERE p.opened <= ? AND (p.closed IS NULL OR p.closed > ?)", (at, at))
        questions = [
            ("Pareto of fault codes per product line", lambda: defects.pareto(s, period, per="product_line"), services),
            ("failures by batch, with rates", lambda: defects.failures_by_batch(s, period), services),
            ("failures by months in service", lambda: defects.failures_by_months_in_service(s, period), services),
            ("repeat repairs per model", lambda: defects.repeat_repairs(s, period, q), services),
            ("first-visit fix per technician", lambda: defects.first_visit_fix(s, period, per="technician_id"), services),
            ("parts by model", lambda: defects.parts_by_model(s, period), services),
            ("controls by week and technician, cases", lambda: controls.controls(
                s, start, end, at, "technician", period="week", cases=True, compare=True), items),
            ("settlement of every outlet, lines", lambda: settlement.statements(s, q, start, end, at), settled),
            ("penalties by owner", lambda: settlement.penalties_by_owner(s, start, end, at), shares),
            ("feedback summary per department", lambda: feedback_view.summary(s, at), phases),
        ]
        print()
        print(f"closedloop quality benchmark — {len(events):,} events ({decided:,} engine decisions), "
              f"SQLite file; questions over {START[:10]} .. {END[:10]}")
        print(f"  feed (validate, append, react, project)  {result.accepted / took:>10,.0f} events/s")
        print(f"  {'question':<42} {'median':>9} {'raw scan':>9} {'ratio':>6}  rows")
        for name, ask, baseline in questions:
            ms, _ = median_ms(ask)
            base_ms, rows = median_ms(baseline)
            print(f"  {name:<42} {ms:>7.1f}ms {base_ms:>7.1f}ms {ms / max(base_ms, 1e-3):>6.1f}  {len(rows):,}")
        raw.close()
        engine.close()


if __name__ == "__main__":
    main()
