"""Where one case stands: its timeline and each of the four steps, with the owner."""

from __future__ import annotations

from typing import Any

import orjson

from closedloop.domain.facts import iso, stream_id
from closedloop.domain.loop import STAGES, CaseFile, assess
from closedloop.domain.policy import LoopPolicy
from closedloop.log.eventlog import EventLog

from .loop import ITEMS


def case_standing(log: EventLog, policy: LoopPolicy, case_id: str, at: int,
                  known_at: int | None = None) -> dict[str, Any] | None:
    with log.storage.reading() as tx:
        row = tx.one(f"SELECT file FROM {ITEMS} WHERE item = {tx.q}", [f"case:{case_id}"])
    if row is None:
        return None
    file = CaseFile.from_json(orjson.loads(row["file"]))
    streams = [stream_id("case", case_id)]
    if file.call:
        streams.append(stream_id("call", file.call[0]))
    streams += [stream_id("call", c) for c in sorted(file.related_calls)]
    streams += [stream_id("feedback", f) for f in sorted(file.feedback)]
    timeline = []
    for stream in streams:
        for fact in log.stream(stream):
            if fact.time_ms > at or (known_at is not None and (fact.recorded_ms or 0) > known_at):
                continue
            timeline.append(fact)
    timeline.sort(key=lambda f: (f.time_ms, f.position or 0))
    if known_at is not None:
        # "what did we know then": the file rebuilt from only what was recorded by then
        file = _file_from(case_id, file, timeline)
    a = assess(file, policy, upto=at)
    if a.registered is None and not timeline:
        return None
    steps = {}
    owner = None
    for stage in STAGES:
        st = a.steps[stage]
        steps[stage] = {
            "status": st.status,
            "opened": iso(st.opened),
            "due": iso(st.due),
            "done": iso(st.done),
            "owner": st.owner,
            "waiting_for": st.waiting_for,
        }
        if owner is None and st.status in ("open", "overdue"):
            owner = st.owner
    return {
        "case_id": case_id,
        "as_of": iso(at),
        "known_at": iso(known_at),
        "owner": owner,
        "loop_closed": all(steps[s]["status"] in ("done", "not_required") for s in STAGES),
        "steps": steps,
        "profile": a.profile,
        "outlet_id": a.outlet_id,
        "technician_id": a.technician_id,
        "call_id": file.call[0] if file.call else None,
        "awaiting_registration": a.awaiting_registration,
        "anomalies": [{"time": iso(x["time"]), "anomaly": x["anomaly"]} for x in a.anomalies],
        "timeline": [
            {
                "time": iso(f.time_ms),
                "recorded": iso(f.recorded_ms),
                "type": f.type,
                "subject": f.subject,
                "source": f.source,
                "id": f.id,
                "position": f.position,
                "data": f.data,
            }
            for f in timeline
        ],
    }


def _file_from(case_id: str, full: CaseFile, facts: list) -> CaseFile:
    from closedloop.domain.loop import lite

    file = CaseFile(case_id)
    for f in facts:
        if f.type == "call.received":
            if full.call and f.subject == full.call[0]:
                file.call = full.call
            elif f.subject in full.related_calls:
                file.related_calls[f.subject] = full.related_calls[f.subject]
        elif f.type.startswith("feedback."):
            file.add_feedback(f.subject, [[f.time_ms, f.position or 0, f.type, lite(f)]])
        else:
            file.add(f)
    return file
