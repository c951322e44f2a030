"""Stand-ins for the department and network routes other branches are adding, so the
dashboard's pages for them can be driven in a browser before those routes land.

They answer in the shapes the dashboard expects (the quality branch's
`/quality/defects/*`; the network routes as written down in api/static/pages/network.js),
computed honestly from the demo events the test server was fed, with simple rules: a
dispatch not accepted by its `accept_by` is an alarm; an outlet's open jobs are the cases
accepted by it and not yet completed or cancelled; a technician with one complaint is on
warning, with two or more eliminated. When the real routes land, the browser tests should
run against them instead and these go.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from typing import Annotated

from fastapi import APIRouter, Query

from closedloop.domain.facts import iso


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _moment(value: datetime | None, default: int) -> int:
    if value is None:
        return default
    return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp() * 1000)


class DemoFacts:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = sorted(events, key=lambda e: _ms(e["time"]))
        self.product: dict[str, dict[str, Any]] = {}
        for e in self.events:
            if e["type"] in ("case.registered", "case.amended") and isinstance(e["data"].get("product"), dict):
                self.product.setdefault(e["subject"], {}).update(
                    {k: v for k, v in e["data"]["product"].items() if v is not None})

    def completed(self, start: int, end: int, at: int) -> list[dict[str, Any]]:
        out = []
        for e in self.events:
            t = _ms(e["time"])
            if e["type"] != "service.completed" or not (start <= t < end and t <= at):
                continue
            p = self.product.get(e["subject"], {})
            out.append({"case_id": e["subject"], "completed": iso(t), "product_line": p.get("product_line"),
                        "model": p.get("model"), "production_batch": p.get("production_batch"), "plant": p.get("plant"),
                        "fault_code": e["data"]["fault_code"], "cause": e["data"]["cause"],
                        "outlet_id": e["source"].rsplit("/", 1)[-1], "technician_id": e["data"]["technician_id"]})
        return out

    def before(self, at: int) -> list[dict[str, Any]]:
        return [e for e in self.events if _ms(e["time"]) <= at]


From = Annotated[datetime | None, Query(alias="from")]

FILTERS = ("model", "product_line", "production_batch", "plant", "fault_code", "cause", "outlet_id", "technician_id")


def router(facts: DemoFacts, clock) -> APIRouter:
    r = APIRouter()

    def window(from_: datetime | None, to: datetime | None, as_of: datetime | None) -> tuple[int, int, int]:
        at = _moment(as_of, clock())
        end = _moment(to, at)
        return _moment(from_, end - 30 * 86_400_000), end, at

    def chosen(rows: list[dict[str, Any]], given: dict[str, Any]) -> list[dict[str, Any]]:
        return [row for row in rows if all(row.get(k) == v for k, v in given.items() if v is not None)]

    @r.get("/quality/defects/pareto")
    def pareto(by: str = "fault_code", model: str | None = None, product_line: str | None = None,
               as_of: datetime | None = None, from_: From = None, to: datetime | None = None) -> Any:
        return _pareto(by, {"model": model, "product_line": product_line}, window(from_, to, as_of))

    def _pareto(by: str, scope: dict[str, Any], win: tuple[int, int, int]) -> dict[str, Any]:
        rows = chosen(facts.completed(*win), scope)
        counts: dict[str, int] = defaultdict(int)
        for row in rows:
            counts[row[by]] += 1
        out, running = [], 0
        for rank, (value, n) in enumerate(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])), 1):
            running += n
            out.append({by: value, "rank": rank, "count": n, "share": round(n / len(rows), 4),
                        "cumulative_share": round(running / len(rows), 4),
                        "filters": {k: v for k, v in scope.items() if v is not None} | {by: value}})
        return {"by": by, "total": len(rows), "rows": out}

    @r.get("/quality/defects/batches")
    def batches(by: str = "batch", model: str | None = None, product_line: str | None = None,
                as_of: datetime | None = None, from_: From = None) -> Any:
        rows = chosen(facts.completed(*window(from_, None, as_of)), {"model": model, "product_line": product_line})
        keys = ("model", "production_batch", "plant") if by == "batch" else ("plant",)
        groups: dict[tuple, int] = defaultdict(int)
        for row in rows:
            groups[tuple(row[k] for k in keys)] += 1
        out = [dict(zip(keys, key)) | {"failures": n, "shipped": None, "failure_rate_ppm": None,
                                       "filters": dict(zip(keys, key))}
               for key, n in sorted(groups.items(), key=lambda kv: (-kv[1], [str(x) for x in kv[0]]))]
        return {"by": by, "total": len(rows), "rows": out}

    @r.get("/quality/defects/cases")
    def cases(model: str | None = None, product_line: str | None = None, production_batch: str | None = None,
              plant: str | None = None, fault_code: str | None = None, cause: str | None = None,
              as_of: datetime | None = None, from_: From = None, limit: int = 100, offset: int = 0) -> Any:
        given = {"model": model, "product_line": product_line, "production_batch": production_batch, "plant": plant,
                 "fault_code": fault_code, "cause": cause}
        rows = chosen(facts.completed(*window(from_, None, as_of)), given)
        return {"total": len(rows), "limit": limit, "offset": offset, "rows": rows[offset: offset + limit]}

    @r.get("/network/alarms")
    def alarms(as_of: datetime | None = None, limit: int = 50) -> Any:
        at = _moment(as_of, clock())
        seen = facts.before(at)
        accepted = {(e["subject"], e["data"]["outlet_id"]): _ms(e["time"]) for e in seen if e["type"] == "dispatch.accepted"}
        out = []
        for e in seen:
            if e["type"] != "case.dispatched" or not e["data"].get("accept_by"):
                continue
            due = _ms(e["data"]["accept_by"])
            took = accepted.get((e["subject"], e["data"]["outlet_id"]))
            if due <= at and (took is None or took > due):
                out.append({"time": iso(due), "case_id": e["subject"], "outlet_id": e["data"]["outlet_id"], "level": 1,
                            "accept_by": e["data"]["accept_by"], "action": "page"})
        out.sort(key=lambda a: a["time"], reverse=True)
        return {"total": len(out), "items": out[:limit]}

    @r.get("/network/outlets")
    def outlets(as_of: datetime | None = None) -> Any:
        seen = facts.before(_moment(as_of, clock()))
        holder: dict[str, str] = {}
        for e in seen:
            if e["type"] == "dispatch.accepted":
                holder[e["subject"]] = e["data"]["outlet_id"]
            elif e["type"] in ("service.completed", "case.cancelled"):
                holder.pop(e["subject"], None)
        jobs: dict[str, int] = defaultdict(int)
        for outlet in holder.values():
            jobs[outlet] += 1
        items = [{"outlet_id": e["subject"], "name": e["data"]["name"], "tier": e["data"]["tier"],
                  "daily_capacity": e["data"]["daily_capacity"], "open_jobs": jobs[e["subject"]]}
                 for e in seen if e["type"] == "outlet.registered"]
        return {"items": items}

    @r.get("/network/technicians")
    def technicians(as_of: datetime | None = None) -> Any:
        seen = facts.before(_moment(as_of, clock()))
        complaints: dict[str, int] = defaultdict(int)
        for e in seen:
            if e["type"] == "complaint.filed" and e["data"].get("technician_id"):
                complaints[e["data"]["technician_id"]] += 1
        items = []
        for e in seen:
            if e["type"] == "technician.registered":
                n = complaints[e["subject"]]
                items.append({"technician_id": e["subject"], "name": e["data"]["name"], "outlet_id": e["data"]["outlet_id"],
                              "level": e["data"]["level"], "balance": 12 - 6 * n,
                              "status": "normal" if n == 0 else "warning" if n == 1 else "eliminated"})
        return {"items": items}

    return r
