"""Automatic dispatch at the sources' network size: decisions per second.

The network of the sources (around 2002): 13,085 outlets over 2,000 counties, about five
technicians each; 36 service centers, about 380 specialized repair departments, the rest
authorized repair points; five product lines.

1. Baselines, measured in this run on the same registrations:
   - raw: a plain Python loop over an in-memory dict of candidates per (region, product
     line): skip the full ones, take the least loaded, count it. No rules beyond that, no
     storage, no log.
   - rules in memory: the engine's own choice (`closedloop.domain.network.choose`: tiers,
     permits' shares, ranked reasons, the technician) over in-memory candidates, no storage.
2. The engine: the network registered through `Engine.submit`; then registrations submitted
   in batches, each answered by the dispatcher with `case.dispatched` (or `dispatch.held`)
   facts appended to the log with the dispatcher's state, in the same transaction, and
   projected into the views. Also one registration per submit (as single HTTP posts would).
3. Alarms: the clock moved past every acceptance deadline (nobody accepts in this run);
   ticks raise the alarms and escalate, a bounded number of deadlines per tick, until
   every case has reached the service center.

Usage: python bench/dispatch.py [--cases 20000] [--batch 1000] [--database URL]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from closedloop.domain.facts import parse_ms
from closedloop.domain.network import Candidate, DispatchPolicy, Outlet, Staff, choose
from closedloop.app.engine import Engine
from closedloop.app.settings import load_settings

OUTLETS, REGIONS, CENTERS, SPECIALIZED = 13_085, 2_000, 36, 380
LINES = ("refrigerator", "washer", "air_conditioner", "water_heater", "tv")
DAY = "2026-10-30"


def envelope(type_: str, subject: str, time: str, data: dict, source: str, id_: str) -> dict:
    return {"specversion": "1.0", "id": id_, "source": source, "type": type_, "time": time, "subject": subject,
            "datacontenttype": "application/json", "data": data}


def network(rng: random.Random) -> tuple[list[dict], dict]:
    """The network as contract events, and the same as plain data for the baselines."""
    regions = [f"C{i:04d}" for i in range(REGIONS)]
    events, plain = [], {"outlets": {}, "staff": defaultdict(list), "cover": defaultdict(list)}
    tec = 0
    for i in range(OUTLETS):
        tier = "center" if i < CENTERS else "specialized" if i < CENTERS + SPECIALIZED else "authorized"
        home = i % REGIONS
        reach = 3 if tier != "authorized" else rng.choice((1, 1, 2, 3))
        covered = [regions[(home + k) % REGIONS] for k in range(reach)]
        lines = list(LINES) if tier == "center" else rng.sample(LINES, rng.choice((1, 2, 2, 3)))
        capacity = rng.randint(35, 60) if tier == "center" else rng.randint(10, 45)
        oid = f"OUT-{i + 1:05d}"
        events.append(envelope("outlet.registered", oid, "2026-09-01T09:00:00Z",
                               {"name": oid, "tier": tier, "regions": covered, "product_lines": lines,
                                "daily_capacity": capacity}, "/hq/network", f"REG-{oid}"))
        plain["outlets"][oid] = Outlet(oid, tier, capacity, tuple(covered), tuple(lines))
        for r in covered:
            for line in lines:
                plain["cover"][(r, line)].append(oid)
        for _ in range(rng.randint(2, 8)):
            tec += 1
            tid = f"TEC-{tec:06d}"
            events.append(envelope("technician.registered", tid, "2026-09-02T09:00:00Z",
                                   {"outlet_id": oid, "name": tid, "level": "intermediate"}, f"/outlet/{oid}",
                                   f"REG-{tid}"))
            plain["staff"][oid].append(tid)
    plain["regions"] = regions
    return events, plain


def registrations(rng: random.Random, plain: dict, n: int) -> list[dict]:
    out = []
    covered = [pair for pair, outlets in plain["cover"].items() if outlets]
    for i in range(n):
        region, line = rng.choice(covered)
        sec = 6 * 3600 + i * (16 * 3600) // max(n, 1)
        time = f"{DAY}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}Z"
        cid = f"CASE-{i + 1:08d}"
        out.append(envelope("case.registered", cid, time, {
            "call_id": f"CALL-{i + 1:08d}",
            "customer": {"id": f"CU-{i}", "name": "Wang Li", "phone": "13800000000", "address": "1 Haier Road",
                         "region": region},
            "product": {"model": "BCD-216", "product_line": line}, "fault": {"description": "not cooling"},
            "request": "repair"}, "/callcenter/qingdao/seat-1", f"reg-{cid}"))
    return out


def raw_baseline(plain: dict, cases: list[dict]) -> float:
    """The plain candidate filtering loop: no rules beyond room and load, no storage."""
    load: dict[str, int] = defaultdict(int)
    outlets = plain["outlets"]
    started = time.perf_counter()
    for e in cases:
        d = e["data"]
        best, best_ratio = None, 2.0
        for oid in plain["cover"][(d["customer"]["region"], d["product"]["product_line"])]:
            o = outlets[oid]
            if load[oid] < o.daily_capacity:
                ratio = load[oid] / o.daily_capacity
                if ratio < best_ratio:
                    best, best_ratio = oid, ratio
        if best is not None:
            load[best] += 1
    return len(cases) / (time.perf_counter() - started)


def rules_in_memory(plain: dict, cases: list[dict]) -> float:
    """The engine's dispatch rules over in-memory candidates: no storage, no log."""
    policy = DispatchPolicy(auto_dispatch=True)
    load: dict[str, int] = defaultdict(int)
    staff = {oid: [Staff(t) for t in techs] for oid, techs in plain["staff"].items()}
    outlets = plain["outlets"]
    started = time.perf_counter()
    for e in cases:
        d = e["data"]
        region, line = d["customer"]["region"], d["product"]["product_line"]
        cands = [Candidate(outlets[o], load[o], tuple(staff[o])) for o in plain["cover"][(region, line)]]
        choice, _why = choose(cands, region, line, policy)
        if choice is not None:
            load[choice.outlet_id] += 1
            for s in staff[choice.outlet_id]:
                if s.technician_id == choice.technician_id:
                    s.jobs += 1
    return len(cases) / (time.perf_counter() - started)


def decided(engine: Engine, types: tuple[str, ...]) -> int:
    with engine.storage.reading() as tx:
        among, params = tx.in_list("topic", types)
        return tx.one(f"SELECT COUNT(*) AS n FROM closedloop_events WHERE {among}", params)["n"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--singles", type=int, default=300, help="registrations sent one per submit")
    parser.add_argument("--database", default=None, help="default: a SQLite file in a temporary directory")
    args = parser.parse_args()

    rng = random.Random(2002)
    print("building the network of the sources ...", file=sys.stderr)
    net_events, plain = network(rng)
    cases = registrations(rng, plain, args.cases + args.singles)
    bulk, singles = cases[: args.cases], cases[args.cases :]
    technicians = sum(len(t) for t in plain["staff"].values())

    raw = raw_baseline(plain, bulk)
    rules = rules_in_memory(plain, bulk)

    with tempfile.TemporaryDirectory(prefix="closedloop-dispatch-") as tmp:
        url = args.database or f"sqlite:///{Path(tmp) / 'dispatch.db'}"
        clock = [parse_ms(f"{DAY}T23:00:00Z")]
        engine = Engine.open(url, network=load_settings().network_config(auto_default=True), clock=lambda: clock[0])
        try:
            print(f"registering {len(net_events):,} outlets and technicians ...", file=sys.stderr)
            started = time.perf_counter()
            for i in range(0, len(net_events), 5000):
                result = engine.submit(net_events[i : i + 5000])
                assert not result.rejected, result.rejected[0].describe()
            setup = time.perf_counter() - started

            print(f"dispatching {len(bulk):,} registrations in batches of {args.batch} ...", file=sys.stderr)
            types = ("case.dispatched", "dispatch.held")
            before = decided(engine, types)
            started = time.perf_counter()
            for i in range(0, len(bulk), args.batch):
                engine.submit(bulk[i : i + args.batch])
            took = time.perf_counter() - started
            made = decided(engine, types) - before
            held = decided(engine, ("dispatch.held",))

            print(f"dispatching {len(singles):,} registrations one per submit ...", file=sys.stderr)
            before_singles = decided(engine, types)
            latencies = []
            for e in singles:
                t0 = time.perf_counter()
                engine.submit([e])
                latencies.append(time.perf_counter() - t0)
            singles_made = decided(engine, types) - before_singles

            print("moving the clock past every acceptance deadline: ticking until nothing is due ...", file=sys.stderr)
            clock[0] = parse_ms(f"{DAY}T23:59:00Z")
            started = time.perf_counter()
            alarms = ticks = 0
            while decided_now := engine.tick():
                alarms += decided_now
                ticks += 1
            tick_took = time.perf_counter() - started
        finally:
            engine.close()

    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000
    engine_rate = made / took
    print()
    print(f"closedloop dispatch benchmark — {OUTLETS:,} outlets over {REGIONS:,} counties, {technicians:,} technicians, "
          f"{len(LINES)} product lines; {engine.storage.dialect}")
    print(f"  raw loop, in memory (baseline)        {raw:>12,.0f} decisions/s")
    print(f"  dispatch rules, in memory             {rules:>12,.0f} decisions/s   ratio to raw {rules / raw:.2f}")
    print(f"  engine, batches of {args.batch:<5}              {engine_rate:>12,.0f} decisions/s   "
          f"ratio to raw {engine_rate / raw:.3f}   ({made:,} decisions, {held:,} held; logged, state and views "
          "current)")
    print(f"  engine, one registration per submit   {singles_made / sum(latencies):>12,.0f} decisions/s   "
          f"p50 {p50:.1f} ms   p99 {p99:.1f} ms")
    print(f"  alarms and escalations, by tick       {alarms / max(tick_took, 1e-9):>12,.0f} decisions/s   "
          f"({alarms:,} in {ticks} ticks, {tick_took:.1f} s)")
    print(f"  network registered through the engine in {setup:.1f} s ({len(net_events) / setup:,.0f} events/s)")


if __name__ == "__main__":
    main()
