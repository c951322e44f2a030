"""Replay: rebuild the views from the log, or answer for a moment of the past.

`rebuild` drops every view and folds the whole log into it again. `loop_as_of` folds only
the facts that had happened by T (and, for audits, that the engine had recorded by K) into
a scratch database, and reports the loop as it stood then: an answer computed apart from
the live views, which must agree with them.
"""

from __future__ import annotations

from typing import Any, Callable

from closedloop.domain.policy import LoopPolicy
from closedloop.eventlog import EventLog
from closedloop.projections import controls as controls_view
from closedloop.projections import leaks as leaks_view
from closedloop.projections.loop import LoopView
from closedloop.storage import SQLiteStorage


def loop_as_of(log: EventLog, policy: LoopPolicy, at: int, known_at: int | None = None,
               progress: Callable[[int], None] | None = None, batch: int = 5000,
               controls_from: int | None = None) -> dict[str, Any]:
    scratch = SQLiteStorage("sqlite://:memory:", ":memory:")
    try:
        view = LoopView(policy)
        scratch.create(view.create_statements())
        for facts in log.follow(0, batch):
            kept = [f for f in facts
                    if f.time_ms <= at and (known_at is None or (f.recorded_ms or 0) <= known_at)]
            if kept:
                with scratch.writing() as tx:
                    view.apply(tx, kept)
            if progress:
                progress(len(facts))
        out = leaks_view.summary(scratch, at)
        if controls_from is not None:
            out["controls"] = controls_view.controls(scratch, controls_from, at + 1, at)
        return out
    finally:
        scratch.close()
