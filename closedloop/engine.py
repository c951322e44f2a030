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
from closedloop.eventlog import Appended, EventLog, now_ms
from closedloop.network import NetworkConfig, network_reactors
from closedloop.projections.loop import LoopView
from closedloop.projections.network import NetworkView
from closedloop.process import Reactions, Reactor
from closedloop.projections.runner import Projector, View
from closedloop.quarantine import Quarantine
from closedloop.storage import Storage, Tx, open_storage


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
                 clock: Callable[[], int] = now_ms, project_on_submit: bool = True,
                 reactors: Sequence[Reactor] | None = None, network: NetworkConfig | None = None) -> None:
        self.storage = storage
        self.policy = policy or LoopPolicy()
        self.clock = clock
        self.log = EventLog(storage, clock=clock)
        self.quarantine = Quarantine(storage)
        self.loop = LoopView(self.policy)
        # the views, each answering one question; add a new one here
        self.views: list[View] = [self.loop]
        self.network = network or NetworkConfig()
        self.views.append(NetworkView(self.network.dispatch))
        self.projector = Projector(self.log, self.views)
        # the process logic: what the engine decides by itself; add a new reactor here
        self.reactors: list[Reactor] = list(reactors) if reactors is not None else network_reactors(self.network)
        self.reactions = Reactions(self.log, self.reactors)
        self.project_on_submit = project_on_submit
        self._submit_lock = threading.Lock()

    @classmethod
    def open(cls, url: str | None = None, policy: LoopPolicy | None = None, **kwargs: Any) -> "Engine":
        kwargs.setdefault("network", NetworkConfig.from_env())
        return cls(open_storage(url), policy or LoopPolicy.from_env(), **kwargs)

    def submit(self, events: Sequence[Any], channel: str = "api",
               also: Callable[[Tx, Appended], None] | None = None) -> Submitted:
        """Validate, append and project: the one path every producer's events take.

        `also` runs inside the append's transaction (see `EventLog.append`)."""
        facts: list[Fact] = []
        rejected: list[Rejection] = []
        for index, raw in enumerate(events):
            outcome = validate(raw, index=index if len(events) > 1 else None)
            (facts if isinstance(outcome, Fact) else rejected).append(outcome)
        return self.submit_facts(facts, rejected, channel, also)

    def submit_facts(self, facts: list[Fact], rejected: list[Rejection] | None = None,
                     channel: str = "api", also: Callable[[Tx, Appended], None] | None = None) -> Submitted:
        rejected = list(rejected or [])
        out = Submitted()
        appended = Appended()
        if facts or also is not None:
            appended = self.log.append(facts, also)
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
            if self.reactors and self.reactions.run(fresh=appended.stored):
                self.projector.catch_up(fresh=self.reactions.appended)
        return out

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Bring views and reactors up to the log's head (events other processes appended)."""
        n = self.projector.catch_up(progress)
        if self.reactors and self.reactions.run():
            n += self.projector.catch_up(fresh=self.reactions.appended)
        return n

    def tick(self) -> int:
        """Let the passing of time decide (deadlines missed); returns how many decisions."""
        if not self.reactors:
            return 0
        decided = self.reactions.tick(self.clock())
        if decided:
            self.catch_up()
        return decided

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
