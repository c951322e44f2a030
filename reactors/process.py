"""Process logic: what the engine decides by itself, as facts in the same log.

A `Reactor` follows the log like a view, keeps the little state it needs in its own tables,
and answers new facts with decisions (automatic dispatch, alarms, approvals, routing, permit
points). Time is a source of decisions too: `due` is asked, now and then, what deadlines
have passed. Each decision is a `Fact` whose `source` names the engine and whose `id` is
derived from what caused it, so the same decision taken twice is recorded once.

A batch's decisions, the reactor's state and its position in the log commit in one
transaction: a crash neither loses a decision nor takes it twice. When a reactor's rules
change (its fingerprint), its state is rebuilt from the log *without* deciding again what
was decided under the old rules. A reactor that fails on a stored fact stops there alone
(its row in `closedloop.log.followers` keeps the error); the others go on deciding.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from operator import attrgetter
from typing import Iterable, Protocol, Sequence

from closedloop.domain.facts import Fact
from closedloop.log.eventlog import AppendSession, EventLog
from closedloop.log.followers import Failure, Followers, take
from closedloop.log.storage import Tx

KIND = "reactor"
ENGINE_SOURCE = "/closedloop/engine"


class Reactor(Protocol):
    name: str

    def fingerprint(self) -> str: ...
    def tables(self) -> list[str]: ...
    def create_statements(self) -> list[str]: ...
    def react(self, tx: Tx, facts: Sequence[Fact]) -> list[Fact]: ...
    def due(self, tx: Tx, now: int) -> list[Fact]: ...


class StaleReactorError(RuntimeError):
    """Another process moved the reactor on while this one was deciding."""


class _MovedOn(Exception):
    """Raised inside a transaction to roll it back: another process got there first."""


class Reactions:
    def __init__(self, log: EventLog, reactors: Iterable[Reactor], batch_size: int = 5000) -> None:
        self.log = log
        self.reactors = list(reactors)
        self.batch_size = batch_size
        self._lock = threading.Lock()
        # each reactor's position, rules and failure; PostgreSQL lets two processes read a
        # position at once, so the rows read are locked: the second waits for the first and
        # then sees where it left off (SQLite's writer lock already does this)
        self.followers = Followers(log.storage, KIND, [r.name for r in self.reactors])
        # the decisions the last `run` or `tick` appended: the views take them without reading them
        # back, and the next run hands them to the reactors that have not seen them yet
        self.appended: list[Fact] = []
        for reactor in self.reactors:
            self._prepare(reactor)

    def _prepare(self, reactor: Reactor) -> None:
        storage = self.log.storage
        # Read before the write transaction: an in-memory SQLite database has one connection.
        # A fact appended in between is decided as new; its deterministic id keeps it single.
        head = self.log.head()
        with storage.writing() as tx:
            storage.lock_ddl(tx)
            # indexes a later version added (CREATE INDEX IF NOT EXISTS), made with no rebuild
            ensure = [storage.ddl(s) for s in getattr(reactor, "ensure_statements", lambda: [])()]
            if self.followers.fingerprint(tx, reactor.name) == reactor.fingerprint():
                for statement in ensure:
                    tx.execute(statement)
                return
            for table in reactor.tables():
                tx.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in [*map(storage.ddl, reactor.create_statements()), *ensure]:
                tx.execute(statement)
            # What the log holds now was decided already: fold it, decide nothing again.
            self.followers.reset(tx, reactor.name, reactor.fingerprint(), quiet_until=head)

    def positions(self) -> dict[str, int]:
        return self.followers.positions()

    def run(self, fresh: Sequence[Fact] = (), decided: list[Fact] | None = None) -> int:
        """Let every reactor answer the facts it has not seen; returns how many decisions
        (and adds the recorded decisions to `decided`, when given)."""
        count = 0
        with self._lock:
            # a reactor stopped on a failure waits where it stopped; the others go on without it
            places = self.followers.read()
            pending = [r for r in self.reactors if not places[r.name].failed]
            if fresh:
                positions = {name: p.position for name, p in places.items()}
                together, done = self._react_together(pending, list(fresh), decided, positions)
                count += together
                pending = [r for r in pending if r.name not in done]
            for reactor in pending:
                start = self.positions()[reactor.name]
                for facts in self.log.follow(start, self.batch_size):
                    answered = self._react(reactor, facts, decided)
                    if answered is None:
                        break  # another process is answering it now; it carries on from there
                    count += answered
        return count

    def skip_busy_reactors(self) -> None:
        """Several processes keeping the same reactors: one that finds a reactor being
        answered by another goes on to the next instead of waiting (PostgreSQL's SKIP LOCKED);
        the other carries it to the log's head, and what is appended after is answered at the
        next turn of whichever process is free. (SQLite has one writer at a time anyway.)"""
        self.followers.skip_busy()

    def _react_together(self, reactors: list[Reactor], fresh: list[Fact], decided: list[Fact] | None,
                        positions: dict[str, int]) -> tuple[int, set[str]]:
        """The usual case after an append: every reactor is just behind the fresh facts (by
        the decisions of the round before, at most). Then they all answer in ONE transaction,
        each seeing the facts in hand plus what the reactors before it decided — one commit
        instead of one per reactor. `positions`: the reactors' as read before (checked again
        inside the transaction)."""
        start = min((positions[r.name] for r in reactors), default=0)
        gap = fresh[0].position - 1 - start
        # The gap is what other processes appended since: consumers sharing a topic append
        # a batch each in turn, so it is commonly a few of their batches. Taken in the same
        # window, rather than each reactor following the log on its own in transactions of
        # its own; bounded, so that one transaction's window stays a few batches long.
        if gap < 0 or gap > max(self.batch_size, 4 * len(fresh)):
            return 0, set()
        window = (self.log.read(start, gap, fresh[0].position - 1) if gap else []) + fresh
        if window[0].position != start + 1 or window[-1].position != start + len(window):
            return 0, set()  # positions with gaps (PostgreSQL after a rollback): one by one

        def work(session: AppendSession) -> list[Fact]:
            tx = session.tx
            # only these reactors' rows: a consumer keeping another share of them is not held up
            at = self.followers.places(tx)
            # (after skip_busy_reactors, the reactors another process is answering now are not in `at`)
            mine = [r for r in reactors if r.name in at and not at[r.name].failed]
            if not mine or any(at[r.name].position != positions[r.name] for r in mine):
                raise _MovedOn  # another process answered some of these: take the careful path
            taken[:] = [r.name for r in mine]  # (a retried transaction takes them anew)
            in_hand = list(window)
            stored_all: list[Fact] = []
            for reactor in mine:
                position, quiet_until = at[reactor.name].position, at[reactor.name].quiet_until
                todo = in_hand[bisect_right(in_hand, position, key=_position):]  # in_hand is in log order
                if not todo:
                    continue
                stored, moved_to = _answer_alone(session, self.followers, reactor, todo, quiet_until)
                in_hand += stored
                stored_all += stored
                # a reactor has seen what was in hand when it answered; its own decisions and
                # those of the reactors after it come to it with the next round, from the log
                if moved_to is not None:
                    self.followers.advance(tx, reactor.name, moved_to)
            return stored_all

        taken: list[str] = []
        try:
            stored = self.log.transaction(work)
        except _MovedOn:
            return 0, set()
        if decided is not None:
            decided.extend(stored)
        return len(stored), set(taken)

    def _react(self, reactor: Reactor, facts: list[Fact], decided: list[Fact] | None = None) -> int | None:
        """`reactor` answers what it has not seen of `facts`; None when another process is
        answering it now (only after skip_busy_reactors)."""
        def work(session: AppendSession) -> list[Fact] | None:
            tx = session.tx
            place = self.followers.places(tx, [reactor.name]).get(reactor.name)
            if place is None or place.failed:
                return None
            position, quiet_until = place.position, place.quiet_until
            todo = [f for f in facts if f.position > position]
            if not todo:
                return []
            stored, moved_to = _answer_alone(session, self.followers, reactor, todo, quiet_until)
            if moved_to is not None and not self.followers.advance(tx, reactor.name, moved_to, expected=position):
                raise StaleReactorError(f"reactor {reactor.name} moved on under this batch")
            return stored  # (stopped on a failure: the next batch finds it so and goes no further)

        stored = self.log.transaction(work)
        if stored is None:
            return None
        if decided is not None:
            decided.extend(stored)
        return len(stored)

    def tick(self, now: int) -> int:
        """Ask every reactor what the passing of time has decided (deadlines missed)."""
        decided = 0
        with self._lock:
            self.appended = []
            running = set(self.followers.running())
            for reactor in self.reactors:
                if reactor.name not in running:
                    continue  # stopped on a failure until it is resumed

                def work(session: AppendSession, reactor: Reactor = reactor) -> list[Fact]:
                    tx = session.tx
                    tx.execute("SAVEPOINT closedloop_due")
                    try:
                        decisions = reactor.due(tx, now)
                        _check(reactor, decisions)
                    except Exception as exc:  # noqa: BLE001 - one reactor's failure stops it alone
                        tx.execute("ROLLBACK TO SAVEPOINT closedloop_due")
                        self.followers.fail(tx, reactor.name, Failure(None, exc))
                        return []
                    tx.execute("RELEASE SAVEPOINT closedloop_due")
                    return session.append(decisions).stored

                stored: list[Fact] = self.log.transaction(work)
                self.appended.extend(stored)
                decided += len(stored)
        return decided


_position = attrgetter("position")


def _following(facts: Sequence[Fact], start: int) -> list[Fact]:
    """The facts that follow position `start` without a gap (another process's appends make one)."""
    out: list[Fact] = []
    expected = start + 1
    for f in facts:
        if f.position is None or f.position < expected:
            continue
        if f.position != expected:
            break
        out.append(f)
        expected += 1
    return out


def _answer_alone(session: AppendSession, followers: Followers, reactor: Reactor, todo: list[Fact],
                  quiet_until: int) -> tuple[list[Fact], int | None]:
    """`_answer` inside a savepoint: when the reactor fails on a fact, what it decided on the
    facts before that one stands, and it stops at the fact with the error on record. Returns
    its recorded decisions and the position it reached (None: not one fact taken)."""
    answers, taken, failure = take(session.tx, todo, lambda facts: _answer(session, reactor, list(facts), quiet_until))
    if failure is not None:
        followers.fail(session.tx, reactor.name, failure)
        return [f for batch in answers for f in batch], taken
    return [f for batch in answers for f in batch], todo[-1].position


def _answer(session: AppendSession, reactor: Reactor, todo: list[Fact], quiet_until: int) -> list[Fact]:
    """One reactor answers `todo` inside the session's transaction; returns its decisions as
    recorded. Facts up to `quiet_until` were decided under earlier rules: they only update
    the reactor's state."""
    # todo is in log order: the quiet facts come first
    n_quiet = bisect_right(todo, quiet_until, key=_position) if todo[0].position <= quiet_until else 0
    if n_quiet:
        reactor.react(session.tx, todo[:n_quiet])
    loud = todo[n_quiet:]
    decisions = reactor.react(session.tx, loud) if loud else []
    _check(reactor, decisions)
    return session.append(decisions).stored


def _check(reactor: Reactor, decisions: Sequence[Fact]) -> None:
    """The engine speaks the contract too: a decision that breaks it is a bug, not data."""
    from closedloop.contract.events import Rejection, to_cloudevent, validate

    for fact in decisions:
        outcome = validate(to_cloudevent(fact))
        if isinstance(outcome, Rejection):
            raise ValueError(f"reactor {reactor.name} decided an event outside the contract: {outcome.describe()}")


def engine_fact(type_: str, subject: str, time_ms: int, data: dict, reactor: str, key: str) -> Fact:
    """A decision of the engine's: its source names the reactor, its id what caused it."""
    return Fact(type_, subject, f"{ENGINE_SOURCE}/{reactor}", key, time_ms, data)

