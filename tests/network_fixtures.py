"""A small service network and helpers to read the engine's decisions, for the network tests.

One region (R01) with four outlets for refrigerators: two authorized repair points, a
specialized repair department and a service center (which also serves R02). Times are on
2026-10-30 unless a test says otherwise.
"""

from __future__ import annotations

from typing import Any

from closedloop.domain.facts import Fact, parse_ms
from closedloop.app.engine import Engine
from closedloop.reactors.network import network_reactors
from closedloop.reactors.network import NetworkConfig

from conftest import event, registration

DAY0 = "2026-10-30"


def at(clock: str, day: str = DAY0) -> str:
    return f"{day}T{clock}:00Z"


def outlet(outlet_id: str, tier: str, capacity: int, regions=("R01",), lines=("refrigerator",)) -> dict:
    return event("outlet.registered", outlet_id, "2026-09-01T09:00:00Z",
                 {"name": f"{outlet_id} {tier}", "tier": tier, "regions": list(regions), "product_lines": list(lines),
                  "daily_capacity": capacity}, source="/hq/network", id=f"REG-{outlet_id}")


def technician(technician_id: str, outlet_id: str, level: str = "intermediate") -> dict:
    return event("technician.registered", technician_id, "2026-09-02T09:00:00Z",
                 {"outlet_id": outlet_id, "name": f"Tech {technician_id}", "level": level},
                 source=f"/outlet/{outlet_id}", id=f"REG-{technician_id}")


NETWORK = [
    outlet("OUT-A", "authorized", 2), outlet("OUT-B", "authorized", 3),
    outlet("OUT-S", "specialized", 5, lines=("refrigerator", "washer")),
    outlet("OUT-C", "center", 10, regions=("R01", "R02"), lines=("refrigerator", "washer", "tv")),
    technician("TEC-A1", "OUT-A"), technician("TEC-A2", "OUT-A"), technician("TEC-B1", "OUT-B"),
    technician("TEC-S1", "OUT-S"), technician("TEC-C1", "OUT-C", "senior"),
]


def register(case_id: str, time: str, region: str = "R01", line: str = "refrigerator",
             serial: str | None = None) -> dict:
    data = registration(f"CALL-{case_id}", region=region, product_line=line)
    if serial:
        data["product"]["serial"] = serial
    return event("case.registered", case_id, time, data, id=f"reg-{case_id}")


def network_engine(database_url: str, clock: list[int] | None = None, auto: bool = True,
                   config: NetworkConfig | None = None, network: list[dict] | None = None) -> Engine:
    cfg = (config or NetworkConfig()).with_auto_dispatch(auto)
    # the network's reactors alone: leak alerts and feedback routing have their own tests
    kwargs: dict[str, Any] = {"network": cfg, "reactors": network_reactors(cfg)}
    if clock is not None:
        kwargs["clock"] = lambda: clock[0]
    engine = Engine.open(database_url, **kwargs)
    result = engine.submit(NETWORK if network is None else network)
    assert not result.rejected, result.rejected
    return engine


def decisions(engine: Engine, stream: str, type_: str | None = None) -> list[Fact]:
    """The engine's own facts in a stream ("case:CASE-1", "technician:TEC-A1"), in log order."""
    return [f for f in engine.log.stream(stream)
            if f.source.startswith("/closedloop/engine/") and (type_ is None or f.type == type_)]


def ms(text: str) -> int:
    return parse_ms(text)
