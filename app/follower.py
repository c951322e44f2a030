"""The engine's background follower: appends answer once durable, views and reactors follow.

In serve mode (`Engine.follow_in_background`) a submission appends its events in one
transaction and answers with their positions at once; this thread, woken after each
append (and every `poll` seconds for what other processes append), lets the reactors
decide and the views take the facts and the decisions — the same calls, in the same order,
that `Engine.submit` makes inline — reusing the facts just appended when they are next in
line. Every `tick_every` seconds it also lets the passing of time decide (`Engine.tick`)
and runs the hooks it was given (the API's hash-chain checkpoint): one thread follows the
log, not two.

It never dies on an exception: it logs it, backs off briefly and goes on. A follower that
fails on a stored fact is already stopped alone by `closedloop.log.followers`; what reaches
this loop is an error of the database itself, which the next round retries.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Callable, Sequence

from closedloop.domain.facts import Fact

if TYPE_CHECKING:
    from closedloop.app.engine import Engine

_log = logging.getLogger("closedloop.follower")

# facts kept in hand for the next round; past this the round reads them back from the log
MAX_IN_HAND = 100_000


class Follower:
    def __init__(self, engine: "Engine", poll: float = 0.05, tick_every: float = 1.0,
                 backoff: float = 0.5) -> None:
        self.engine = engine
        self.poll = poll
        self.tick_every = tick_every
        self.backoff = backoff
        # run every `tick_every` seconds after the engine's tick (the API's checkpoint)
        self.hooks: list[Callable[[], None]] = []
        self._cond = threading.Condition()
        self._in_hand: list[Fact] = []
        self._woken = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        # the log position this thread last brought every running view and reactor up to
        self.reached = 0
        self.rounds = 0
        self.errors = 0
        self.last_error: str | None = None

    # -- life ------------------------------------------------------------------------------------

    def start(self) -> "Follower":
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="closedloop-follower", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- what the engine tells it ------------------------------------------------------------------

    def appended(self, facts: Sequence[Fact]) -> None:
        """Facts this process has just appended: follow them now."""
        with self._cond:
            if len(self._in_hand) + len(facts) <= MAX_IN_HAND:
                self._in_hand.extend(facts)
            else:
                self._in_hand = []  # too far behind to keep them: read them back from the log
            self._woken = True
            self._cond.notify_all()

    def wait_round(self, timeout: float) -> None:
        """Wait until the next round ends (or `timeout` seconds)."""
        with self._cond:
            rounds = self.rounds
            self._cond.wait_for(lambda: self.rounds != rounds or self._stopping, timeout)

    # -- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic() + self.tick_every
        while True:
            with self._cond:
                if not self._woken and not self._stopping:
                    self._cond.wait(max(0.0, min(self.poll, next_tick - time.monotonic())))
                if self._stopping:
                    return
                in_hand, self._in_hand = self._in_hand, []
                woken, self._woken = self._woken, False
            try:
                if woken or self.engine.log.head() > self.reached:
                    self.follow(in_hand)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.tick_every
                    self.engine.tick()
                    for hook in self.hooks:
                        hook()
            except Exception as exc:  # noqa: BLE001 - the thread goes on; the next round retries
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                _log.exception("following the log failed; trying again shortly")
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping, self.backoff)

    def follow(self, in_hand: Sequence[Fact] = ()) -> int:
        """One round: the reactors decide, then the views take the facts and the decisions
        (what `Engine.submit` does inline). Returns how many decisions."""
        engine = self.engine
        head = engine.log.head()
        fresh = _next_in_line(in_hand)
        decided: list[Fact] = []
        if engine.reactors:
            engine.reactions.run(fresh=fresh, decided=decided)
        if not engine.defer_views:
            engine.projector.catch_up(fresh=sorted(fresh + decided, key=_position) if decided else fresh)
        with self._cond:
            self.reached = max(self.reached, head)
            self.rounds += 1
            if decided:
                # the reactors' decisions reach the reactors after them with the next round,
                # in hand: with them the facts in hand run on without a gap
                self._in_hand.extend(decided)
                self._woken = True
            self._cond.notify_all()
        return len(decided)


def _position(fact: Fact) -> int:
    return fact.position or 0


def _next_in_line(facts: Sequence[Fact]) -> list[Fact]:
    """The facts in hand in log order, the last run without a gap (appends of several API
    threads arrive in any order; what comes before a gap is read back from the log)."""
    ordered = sorted((f for f in facts if f.position is not None), key=_position)
    start = len(ordered) - 1
    while start > 0 and ordered[start - 1].position == ordered[start].position - 1:  # type: ignore[operator]
        start -= 1
    return ordered[max(start, 0):]
