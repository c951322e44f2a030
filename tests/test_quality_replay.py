"""The quality views answer for a past moment exactly as views built from only the facts
of that moment would: `as_of` on the live views equals a replay up to it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from closedloop.contract.events import to_cloudevent
from closedloop.domain.facts import to_ms
from closedloop.app.engine import Engine, feed
from closedloop.projections import defects
from closedloop.projections import feedback as feedback_view
from closedloop.projections.control_periods import control_cases
from closedloop.projections.settlement import penalties_by_owner, statements
from closedloop.simulation.workload import WorkloadSpec, generate

END = datetime(2026, 11, 1, tzinfo=UTC)
SPEC = WorkloadSpec(seed=23, days=12, calls_per_day=40, outlets=10, regions=3, end=END, shipment_months=2)
START = to_ms(END - timedelta(days=SPEC.days))


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Engine:
    engine = Engine.open(f"sqlite:///{tmp_path_factory.mktemp('live')}/live.db")
    feed(engine, generate(SPEC), batch_size=500)
    yield engine
    engine.close()


def answers(engine: Engine, at: int) -> dict:
    s = engine.storage
    period = defects.Period(START, to_ms(END), at)
    return {
        "feedback": feedback_view.summary(s, at),
        "items": feedback_view.items(s, at, limit=5000),
        "pareto": defects.pareto(s, period, per="product_line", cases=True),
        "batches": defects.failures_by_batch(s, period, cases=True),
        "repeats": defects.repeat_repairs(s, period, engine.quality, cases=True),
        "settlement": statements(s, engine.quality, START, to_ms(END) + 1, at),
        "penalties": penalties_by_owner(s, START, to_ms(END) + 1, at),
        "omissions": control_cases(s, START, to_ms(END), at, "omission", {}, limit=5000),
    }


@pytest.mark.parametrize("hours", [70, 150, 250, 12 * 24 + 96])
def test_the_quality_views_as_of_a_moment_equal_a_replay_of_the_facts_up_to_it(live: Engine, tmp_path, hours: int):
    at = START + hours * 3_600_000
    replayed = Engine.open(f"sqlite:///{tmp_path}/replayed.db", reactors=[])  # the decisions are in the log already
    facts = [f for batch in live.log.follow(0) for f in batch if f.time_ms <= at]
    feed(replayed, [to_cloudevent(f) for f in facts], batch_size=700)
    now = answers(live, at)
    assert now["items"]["total"] > 0 and now["settlement"]["total"]["services"] > 0
    assert answers(replayed, at) == now
    replayed.close()
