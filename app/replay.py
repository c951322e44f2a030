"""Replay: rebuild the views from the log, or answer for a moment of the past.

`rebuild` (the projector's) drops every view and folds the whole log into it again.
`scratch_views` folds only the facts that had happened by T (and, for audits, that the
engine had recorded by K) into a scratch database, apart from the live views: the loop as
it stood then, as it was known then. The tests check it agrees with the live views.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from closedloop.domain.policy import LoopPolicy
from closedloop.log.eventlog import EventLog
from closedloop.projections import controls as controls_view
from closedloop.projections import leaks as leaks_view
from closedloop.projections.loop import LoopView
from closedloop.projections.runner import View
from closedloop.log.storage import SQLiteStorage, Storage


@contextmanager
def scratch_views(log: EventLog, policy: LoopPolicy, at: int | None = None, known_at: int | None = None,
                  progress: Callable[[int], None] | None = None, batch: int = 20_000,
                  views: Sequence[View] | None = None) -> Iterator[Storage]:
    """A throw-away database holding views (default: the loop) built from the facts with
    time <= `at` and recorded <= `known_at` (None: no bound)."""
    scratch = SQLiteStorage("sqlite://:memory:", ":memory:")
    try:
        chosen = list(views) if views is not None else [LoopView(policy)]
        for view in chosen:
            # with the indexes its folding needs that came after its tables (`ensure_statements`)
            scratch.create([*view.create_statements(), *getattr(view, "ensure_statements", lambda: [])()])
        for facts in log.follow(0, batch):
            kept = [f for f in facts
                    if (at is None or f.time_ms <= at) and (known_at is None or (f.recorded_ms or 0) <= known_at)]
            if kept:
                with scratch.writing() as tx:
                    for view in chosen:
                        view.apply(tx, kept)
            if progress:
                progress(len(facts))
        yield scratch
    finally:
        scratch.close()


def loop_as_of(log: EventLog, policy: LoopPolicy, at: int, known_at: int | None = None,
               progress: Callable[[int], None] | None = None, controls_from: int | None = None) -> dict[str, Any]:
    """The loop summary at `at` (as known at `known_at`), and optionally the controls."""
    with scratch_views(log, policy, at, known_at, progress) as scratch:
        out = leaks_view.summary(scratch, at)
        if controls_from is not None:
            out["controls"] = controls_view.controls(scratch, controls_from, at + 1, at)
        return out
