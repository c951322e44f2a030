"""Penalties for complaints, as rules: no storage, no engine.

The sources' rolling-door factory: late, a poor repair or a bad attitude costs the employee
responsible 5 yuan and the manager 5 yuan, paid to the customer. Given a penalty rule written
as configuration, when it is read, then these amounts in cents per complaint category (or this
error); given a penalty as a producer sends it, when it is checked, then it must add up.

Who pays is decided by the penalty reactor (reactors/penalties.py, `_decide`) from its state
table and the case's stream, so it has no pure function to call: it is tested on both
databases in tests/test_penalties.py. Here: the rule it applies (`QualityPolicy.penalties`,
`parse_penalties`, money in cents) and the contract every penalty.charged must meet.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from closedloop.contract.events import Rejection, validate
from closedloop.domain.facts import Fact
from closedloop.domain.quality import (
    COMPLAINT_CATEGORIES,
    DEFAULT_PENALTIES,
    QualityPolicy,
    money,
    parse_money,
    parse_penalties,
)

from conftest import event

pytestmark = pytest.mark.fast


# --- the rule ---------------------------------------------------------------------------------------
def test_by_default_late_poor_repeated_or_rude_service_costs_five_yuan_each_to_employee_and_manager():
    policy = QualityPolicy()
    assert policy.penalties == {"promise_broken": (500, 500), "not_fixed_first_visit": (500, 500),
                                "repeat_repair": (500, 500), "attitude": (500, 500)}
    assert policy.currency == "CNY"


def test_by_default_an_overcharge_a_non_standard_service_or_another_complaint_costs_nothing():
    priced = QualityPolicy().penalties
    assert [c for c in COMPLAINT_CATEGORIES if c not in priced] == ["non_standard_service", "overcharge", "other"]


def test_a_rule_names_the_employees_share_and_the_managers_share_of_each_category():
    assert parse_penalties("promise_broken=5.00+5.00, overcharge=20+10.50") == {
        "promise_broken": (500, 500), "overcharge": (2000, 1050)}


def test_a_rule_without_a_managers_share_charges_the_employee_alone():
    assert parse_penalties("attitude=5") == {"attitude": (500, 0)}


def test_categories_a_rule_does_not_name_cost_nothing_and_an_empty_rule_charges_no_penalties():
    assert parse_penalties("attitude=1+1") == {"attitude": (100, 100)}
    assert parse_penalties("") == {} and parse_penalties(" , ") == {}


def test_the_default_rule_written_out_reads_back_as_the_default():
    written = ", ".join(f"{c}={money(e)}+{money(m)}" for c, (e, m) in DEFAULT_PENALTIES.items())
    assert parse_penalties(written) == DEFAULT_PENALTIES


@pytest.mark.parametrize(("text", "words"), [
    ("attitude=5.001+1", "more than two decimals"),
    ("attitude=-5+5", "is not an amount of money"),
    ("attitude=five+5", "is not an amount of money"),
    ("attitude=5+NaN", "is not an amount of money"),
    ("rudeness=5+5", "categories: promise_broken, non_standard_service"),
    ("attitude 5+5", "write category=employee+manager"),
])
def test_a_rule_that_cannot_be_read_to_the_cent_is_refused_saying_why(text: str, words: str):
    with pytest.raises(ValueError, match=re.escape(words)):
        parse_penalties(text)


def test_changing_the_rule_or_the_currency_changes_its_fingerprint_and_prices_do_not():
    base = QualityPolicy()
    assert QualityPolicy(penalties={"attitude": (100, 100)}).penalty_fingerprint() != base.penalty_fingerprint()
    assert QualityPolicy(currency="EUR").penalty_fingerprint() != base.penalty_fingerprint()
    # the penalty reactor is replayed when its rule changes, not when an outlet's price does
    from closedloop.domain.quality import parse_prices

    repriced = QualityPolicy(prices=parse_prices("repair=60.00"))
    assert repriced.penalty_fingerprint() == base.penalty_fingerprint()


def test_the_rule_is_described_in_yuan_per_share():
    described = QualityPolicy(penalties={"overcharge": (2000, 1050)}).describe()["penalties"]
    assert described == {"overcharge": {"employee": "20.00", "manager": "10.50"}}


# --- money ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "cents"), [("5", 500), ("5.00", 500), ("12.5", 1250), ("0.10", 10), (" 7 ", 700),
                                             ("0", 0)])
def test_amounts_are_read_to_the_cent(text: str, cents: int):
    assert parse_money(text) == cents


@pytest.mark.parametrize(("cents", "text"), [(500, "5.00"), (1050, "10.50"), (7, "0.07"), (0, "0.00"),
                                             (-1000, "-10.00")])
def test_cents_are_printed_as_yuan_with_two_decimals(cents: int, text: str):
    assert money(cents) == text


# --- a penalty as recorded ---------------------------------------------------------------------------------
def penalty(**changes: Any) -> dict[str, Any]:
    data = {"case_id": "CASE-1", "complaint_id": "CMP-1", "category": "attitude", "accountable": "TEC-1",
            "outlet_id": "OUT-1",
            "shares": [{"party": "TEC-1", "role": "employee", "amount_cents": 500, "name": "Zhang Wei"},
                       {"party": "manager:OUT-1", "role": "manager", "amount_cents": 500}],
            "total_cents": 1000, "currency": "CNY", "payee": {"case_id": "CASE-1", "customer_id": "CU-42"}}
    return data | changes


def checked(data: dict[str, Any]) -> Fact | Rejection:
    return validate(event("penalty.charged", "PEN-CMP-1", "2026-10-12T13:00:00Z", data, source="/hq/service-quality"))


def test_a_penalty_whose_shares_add_up_to_its_total_is_accepted():
    f = checked(penalty())
    assert isinstance(f, Fact) and f.data["total_cents"] == 1000 and len(f.data["shares"]) == 2


def test_a_penalty_whose_total_is_not_the_sum_of_its_shares_is_refused():
    r = checked(penalty(total_cents=1001))
    assert isinstance(r, Rejection)
    assert "total_cents must be the sum of the shares' amount_cents" in r.describe()


@pytest.mark.parametrize(("changes", "field"), [
    ({"shares": []}, "data.shares"),
    ({"shares": [{"party": "TEC-1", "role": "director", "amount_cents": 1000}]}, "data.shares.0.role"),
    ({"shares": [{"party": "TEC-1", "role": "employee", "amount_cents": -5}], "total_cents": -5},
     "data.shares.0.amount_cents"),
    ({"currency": "YUAN"}, "data.currency"),
])
def test_a_penalty_with_no_one_to_pay_a_made_up_role_a_negative_share_or_a_bad_currency_is_refused(
        changes: dict[str, Any], field: str):
    r = checked(penalty(**changes))
    assert isinstance(r, Rejection) and field in {e["field"] for e in r.errors}, r
