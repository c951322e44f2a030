"""The engine: one place that wires the log, the quarantine and the views together.

Every way in (HTTP, Kafka, a file, the demo) calls `submit`; every way out reads the
views through the query functions. This is the composition root of the product.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from closedloop.contract import Rejection, to_cloudevent, validate
from closedloop.domain.facts import Fact
from closedloop.domain.policy import LoopPolicy
from closedloop.eventlog import EventLog, now_ms
from closedloop.projections.loop import LoopView
from closedloop.projections.runner import Projector
from closedloop.quarantine import Quarantine
from closedloop.storage import Storage, open_storage


@dataclass
class Submitted:
    """The outcome of one submission, event by event."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    quarantined: list[int] = field(default_factory=list)
    head: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": [r.to_json() | {"quarantine_id": q} for r, q in zip(self.rejected, self.quarantined)],
            "position": self.head,
        }


class Engine:
    def __init__(self, storage: Storage, policy: LoopPolicy | None = None,
                 clock: Callable[[], int] = now_ms, project_on_submit: bool = True) -> None:
        self.storage = storage
        self.policy = policy or LoopPolicy()
        self.clock = clock
        self.log = EventLog(storage, clock=clock)
        self.quarantine = Quarantine(storage)
        self.loop = LoopView(self.policy)
        self.projector = Projector(self.log, [self.loop])
        self.project_on_submit = project_on_submit
        self._submit_lock = threading.Lock()

    @classmethod
    def open(cls, url: str | None = None, policy: LoopPolicy | None = None, **kwargs: Any) -> "Engine":
        return cls(open_storage(url), policy or LoopPolicy.from_env(), **kwargs)

    def submit(self, events: Sequence[Any], channel: str = "api") -> Submitted:
        """Validate, append and project: the one path every producer's events take."""
        facts: list[Fact] = []
        rejected: list[Rejection] = []
        for index, raw in enumerate(events):
            outcome = validate(raw, index=index if len(events) > 1 else None)
            (facts if isinstance(outcome, Fact) else rejected).append(outcome)
        return self.submit_facts(facts, rejected, channel)

    def submit_facts(self, facts: list[Fact], rejected: list[Rejection] | None = None,
                     channel: str = "api") -> Submitted:
        rejected = list(rejected or [])
        out = Submitted()
        if facts:
            appended = self.log.append(facts)
            out.accepted = len(appended.stored)
            out.duplicates = len(appended.duplicates)
            out.head = appended.head
            for fact, original in appended.conflicts:
                rejected.append(Rejection(
                    [{"field": "id", "message": f"this (source, id) was already recorded at position {original} "
                      "with different content; a resend must be identical"}],
                    fact.id, fact.source, fact.type, raw=to_cloudevent(fact),
                ))
        out.rejected = rejected
        out.quarantined = self.quarantine.keep(rejected, channel)
        if self.project_on_submit and out.accepted:
            self.projector.catch_up(fresh=appended.stored)
        return out

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        return self.projector.catch_up(progress)

    def resubmit(self, qid: int, corrected: Any | None = None) -> Submitted:
        """An operator sends a quarantined event again, as it was or corrected."""
        entry = self.quarantine.get(qid)
        if entry is None:
            raise KeyError(qid)
        if entry["status"] != "open":
            raise ValueError(f"quarantined event {qid} is already {entry['status']}")
        event = corrected if corrected is not None else entry["event"]
        outcome = validate(event)
        if isinstance(outcome, Rejection):
            # still wrong: the entry stays open, with nothing new to keep
            return Submitted(rejected=[outcome], quarantined=[qid])
        result = self.submit_facts([outcome], channel=f"resubmit:{qid}")
        if not result.rejected:
            self.quarantine.resolve(qid, "resubmitted",
                                    "accepted" if result.accepted else "duplicate of a recorded event")
        return result

    def close(self) -> None:
        self.storage.close()


def feed(engine: Engine, events: Iterable[Any], batch_size: int = 2000, channel: str = "file",
         progress: Callable[[int], None] | None = None) -> Submitted:
    """Submit a stream of events in batches; returns the totals."""
    total = Submitted()
    batch: list[Any] = []

    def flush() -> None:
        r = engine.submit(batch, channel)
        total.accepted += r.accepted
        total.duplicates += r.duplicates
        total.rejected += r.rejected
        total.quarantined += r.quarantined
        total.head = r.head or total.head
        if progress:
            progress(len(batch))
        batch.clear()

    for event in events:
        batch.append(event)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return total
