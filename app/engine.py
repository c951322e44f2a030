"""The engine: one place that wires the log, the quarantine and the views together.

Every way in (HTTP, Kafka, a file, the demo) calls `submit`; every way out reads the
views through the query functions. This is the composition root of the product.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from closedloop.app.access import KeyStore
from closedloop.app.follower import Follower
from closedloop.reactors import leak_alerts
from closedloop.contract.events import Rejection, to_cloudevent, validate
from closedloop.domain.facts import Fact
from closedloop.domain.policy import LoopPolicy
from closedloop.domain.quality import QualityPolicy
from closedloop.log.followers import FollowerStatus
from closedloop.log.followers import resume as resume_follower
from closedloop.log.followers import status as followers_status
from closedloop.log.eventlog import Appended, EventLog, now_ms
from closedloop.app.logs import log_submission
from closedloop.app.settings import Settings, default_settings, load_settings
from closedloop.reactors.network import NetworkConfig, network_reactors
from closedloop.projections.loop import LoopView
from closedloop.projections.network import NetworkView
from closedloop.reactors.process import Reactions, Reactor
from closedloop.projections.runner import Projector, View
from closedloop.log.quarantine import Quarantine
from closedloop.log.storage import Storage, Tx, open_storage


_log = logging.getLogger("closedloop.engine")

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
                 reactors: Sequence[Reactor] | None = None, quality: QualityPolicy | None = None,
                 network: NetworkConfig | None = None, share: tuple[int, int] = (1, 1),
                 settings: Settings | None = None, extra_views: Sequence[View] = ()) -> None:
        """`settings` gives the engine's switches (reactors, leak alerts, routing, penalties, the
        rebuild's batch); None: the defaults, whatever the environment says (`Engine.open`
        reads the environment)."""
        self.settings = settings = settings or default_settings()
        self.storage = storage
        self.policy = policy or LoopPolicy()
        self.quality = quality or QualityPolicy()
        self.clock = clock
        self.log = EventLog(storage, clock=clock)
        self.quarantine = Quarantine(storage)
        self.keys = KeyStore(storage)
        self.loop = LoopView(self.policy)
        # the views, each answering one question; add a new one here
        self.views: list[View] = [self.loop]
        self.views += quality_views(self.policy)
        self.network = network or NetworkConfig()
        self.views.append(NetworkView(self.network.dispatch))
        # the process logic: what the engine decides by itself; add a new reactor here.
        # CLOSEDLOOP_REACTORS=off: this process decides nothing (a read replica of the API,
        # while the consumers or another process keep the reactors)
        if reactors is None and not settings.reactors:
            reactors = []
        self.reactors: list[Reactor] = list(reactors) if reactors is not None else network_reactors(self.network)
        if reactors is None and settings.leak_alerts:
            self.reactors.append(leak_alerts.LeakAlerts(self.policy))
        if reactors is None:
            self.reactors += quality_reactors(self.policy, self.quality, self.log, settings.auto_routing,
                                              settings.auto_penalties)
        self.views += list(extra_views)
        if share != (1, 1):
            self.views, self.reactors = _my_share(self.views, self.reactors, share)
        self.projector = Projector(self.log, self.views, rebuild_batch=settings.replay_batch)
        self.reactions = Reactions(self.log, self.reactors)
        self.project_on_submit = project_on_submit
        # a bulk load of history: the reactors answer each batch, the views are built once at
        # the end by a (parallel) rebuild instead of batch by batch
        self.defer_views = False
        # told of every submission (channel, what the append did, the outcome with what was
        # rejected and quarantined): the structured log, the metrics of each API process
        self.watchers: list[Callable[[str, Appended, Submitted], None]] = [log_submission]
        self._submit_lock = threading.Lock()
        # serve mode: a thread that follows the log, so that a submission answers once its
        # events are durable (`follow_in_background`); None: the embedded default
        self.follower: Follower | None = None

    @classmethod
    def open(cls, url: str | None = None, policy: LoopPolicy | None = None, settings: Settings | None = None,
             **kwargs: Any) -> "Engine":
        """The engine over the log at `url` (None: the settings' database URL). `settings`
        (None: `load_settings()`, the CLOSEDLOOP_* environment) gives every policy not passed:
        the loop's `policy`, `quality`, `network` (automatic dispatch off unless the settings
        turn it on)."""
        settings = settings or load_settings()
        kwargs.setdefault("quality", settings.quality_policy())
        kwargs.setdefault("network", settings.network_config())
        storage = open_storage(url or settings.database_url, synchronous=settings.sqlite_synchronous)
        try:
            return cls(storage, policy or settings.loop_policy(), settings=settings, **kwargs)
        except BaseException:
            storage.close()
            raise

    def submit(self, events: Sequence[Any], channel: str = "api",
               also: Callable[[Tx, Appended], None] | None = None) -> Submitted:
        """Validate, append and project: the one path every producer's events take (in serve
        mode, `follow_in_background`, the projecting is left to the background follower).

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
        for watch in self.watchers:
            watch(channel, appended, out)
        if self.follower is not None and out.accepted:
            # serve mode: the events are durable, the answer goes now; the follower takes them
            self.follower.appended(appended.stored)
        elif self.project_on_submit and out.accepted:
            # The events are durable: whatever happens to the followers now, the producer is
            # told they were taken. A follower that fails on a fact stops alone (its row in
            # the followers table says where and why); an error of the database itself leaves
            # the catching up to the next submission or the follow thread.
            try:
                # The reactors decide first (they keep their own state, not the views'), so
                # that the views take the facts and the decisions they caused in one pass.
                decided: list[Fact] = []
                if self.reactors:
                    self.reactions.run(fresh=appended.stored, decided=decided)
                if not self.defer_views:
                    self.projector.catch_up(fresh=appended.stored + decided)
            except Exception:  # noqa: BLE001 - the append stands; see above
                _log.exception("the views and reactors could not follow the log after an append; "
                               "they will catch up later")
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
        # reactors judge deadlines against the views (which steps are open): bring them current
        self.catch_up()
        decided = self.reactions.tick(self.clock())
        if decided:
            self.catch_up()
        return decided

    def follow_in_background(self, poll: float = 0.05, tick_every: float = 1.0) -> Follower:
        """Serve mode: submissions answer once their events are durable, with their positions,
        and a background thread (`closedloop.app.follower`) brings the reactors and views up
        within milliseconds; it also ticks every `tick_every` seconds. Readers that need their
        own write wait for it with `wait_for`. `close` stops the thread."""
        if self.follower is None:
            self.follower = Follower(self, poll=poll, tick_every=tick_every)
        self.project_on_submit = False
        return self.follower.start()

    def views_position(self) -> int:
        """The log position every running view reflects (the lowest of them): what a view
        answer read now is current up to. A view stopped on a failure is left out (`/health`
        names it); with no view at all, the log's head."""
        positions = self.projector.positions()
        running = self.projector.followers.running()
        names = running or list(positions)
        if not names:
            return self.log.head()
        return min(positions[name] for name in names)

    def wait_for(self, position: int, timeout: float) -> bool:
        """Wait (at most `timeout` seconds) until every running view reflects `position`;
        False when they still do not. Woken by each round of the background follower; without
        one (the views follow inline, or another process keeps them), it looks again every few
        milliseconds."""
        deadline = time.monotonic() + timeout
        while True:
            if self.views_position() >= position:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            follower = self.follower
            if follower is not None and follower.alive:
                follower.wait_round(min(left, 0.05))
            else:
                time.sleep(min(left, 0.01))

    def followers(self) -> list[FollowerStatus]:
        """Every view, reactor and publisher following the log: position, lag, and failure."""
        return followers_status(self.storage, self.log.head)

    def resume(self, name: str, kind: str | None = None) -> int:
        """Let a follower stopped on a failure try again from where it stopped (after a fix);
        returns how many followers were resumed."""
        resumed = resume_follower(self.storage, name, kind)
        if resumed:
            self.catch_up()
        return resumed

    def skip_busy(self) -> None:
        """Several processes keep the same views and reactors (consumers sharing a topic with
        `--followers any`): each goes on past what another is working on now, so whoever is
        free does the next piece of work instead of queueing for it."""
        self.projector.skip_busy_views()
        self.reactions.skip_busy_reactors()

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
        if self.follower is not None:
            self.follower.stop()
        self.storage.close()


def _my_share(views: list[View], reactors: list[Reactor],
              share: tuple[int, int]) -> tuple[list[View], list[Reactor]]:
    """Member k of n keeps its share of the views and reactors (split by weight, the same
    way in every member): n consumer processes append in parallel AND follow the log in
    parallel, each folding and deciding for its share only, instead of all of them queueing
    for the same views and reactors. Together the n members cover every one."""
    from closedloop.projections.rebuild import plan

    k, n = share
    if not 1 <= k <= n:
        raise ValueError(f"share {k}/{n}: k must be between 1 and n")
    groups = plan(list(views) + list(reactors), n)
    mine = groups[k - 1] if k - 1 < len(groups) else []
    return [v for v in views if v in mine], [r for r in reactors if r in mine]


def quality_views(policy: LoopPolicy) -> list[View]:
    """The quality loop's views: the departments' feedback items; services, network, shipments, penalties."""
    from closedloop.projections.feedback import FeedbackView
    from closedloop.projections.quality import QualityView

    return [FeedbackView(policy), QualityView()]


def quality_reactors(policy: LoopPolicy, quality: QualityPolicy, log: EventLog, routing: bool = True,
                     penalties: bool = True) -> list[Reactor]:
    """Feedback routing and penalties, each switched off by CLOSEDLOOP_AUTO_ROUTING=off or
    CLOSEDLOOP_AUTO_PENALTIES=off (when another system decides them and sends the events)."""
    from closedloop.reactors.penalties import PenaltyReactor
    from closedloop.reactors.routing import FeedbackRouter

    out: list[Reactor] = []
    if routing:
        out.append(FeedbackRouter(policy, log))
    if penalties:
        out.append(PenaltyReactor(quality, log))
    return out


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
