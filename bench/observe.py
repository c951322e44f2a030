"""What watching the engine costs: ingest with the metrics and JSON logs on, against the same
ingest with neither (the baseline, measured in the same run); and a /metrics scrape against
the one query a scrape cannot avoid (the loop summary now).

    python bench/observe.py [--days N] [--calls-per-day N]
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest

from closedloop.app import logs
from closedloop.app.engine import Engine, feed
from closedloop.api.metrics import Metrics
from closedloop.projections import leaks as leaks_view
from closedloop.simulation.workload import WorkloadSpec, generate


def ingest(events: list, watched: bool, directory: str) -> tuple[float, Engine]:
    engine = Engine.open(f"sqlite:///{directory}/{'watched' if watched else 'bare'}.db")
    if watched:
        Metrics(engine)
    else:
        engine.watchers.clear()
    started = time.perf_counter()
    feed(engine, events, batch_size=1000)
    return len(events) / (time.perf_counter() - started), engine


def median_ms(fn, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--calls-per-day", type=int, default=500)
    args = parser.parse_args()
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    events = list(generate(WorkloadSpec(days=args.days, calls_per_day=args.calls_per_day, end=end)))
    # the JSON logs go where serve sends them, a stream; here one that is thrown away
    logs.configure("json", "INFO", io.StringIO())
    with tempfile.TemporaryDirectory() as directory:
        bare_rate, bare = ingest(events, False, directory)
        watched_rate, watched = ingest(events, True, directory)
        metrics = next(w.__self__ for w in watched.watchers if hasattr(w, "__self__"))
        summary_ms = median_ms(lambda: leaks_view.summary(watched.storage, watched.clock()))
        scrape_ms = median_ms(lambda: generate_latest(metrics.registry))
        cases = leaks_view.summary(watched.storage, watched.clock())["cases"]
        bare.close()
        watched.close()
    logging.getLogger().handlers.clear()
    print(f"{len(events):,} events, {cases:,} cases, SQLite, batches of 1,000")
    print(f"  ingest, no metrics or logs (baseline)   {bare_rate:>10,.0f} events/s")
    print(f"  ingest, metrics and JSON logs            {watched_rate:>10,.0f} events/s  "
          f"({(watched_rate / bare_rate - 1) * 100:+.1f}%)")
    print(f"  loop summary query alone (baseline)      {summary_ms:>10.1f} ms")
    print(f"  whole /metrics scrape                    {scrape_ms:>10.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
