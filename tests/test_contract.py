"""The v1 contract at the edge: what is accepted, and how a rejection names what is wrong."""

from __future__ import annotations

import pytest

from closedloop.contract.events import DATA_MODELS, Rejection, from_binary, validate
from closedloop.domain.facts import FACT_TYPES, Fact

from conftest import event, registration

pytestmark = pytest.mark.fast


def fields_of(r: Rejection) -> set[str]:
    return {e["field"] for e in r.errors}


def test_every_contract_type_has_a_model():
    assert set(DATA_MODELS) == FACT_TYPES


def test_a_valid_registration_becomes_a_fact_with_both_clocks_to_come():
    f = validate(event("case.registered", "CASE-1", "2026-10-30T08:10:00+08:00", registration("CALL-1")))
    assert isinstance(f, Fact)
    assert f.time_ms == 1793318400000 + 10 * 60_000 and f.recorded_ms is None


def test_an_unknown_type_is_rejected_naming_the_type():
    r = validate(event("case.teleported", "CASE-1", "2026-10-30T08:10:00Z", {}))
    assert isinstance(r, Rejection) and fields_of(r) == {"type"}
    assert "case.teleported" in r.describe() and r.id and r.source


def test_a_missing_required_field_is_rejected_naming_its_path():
    data = registration("CALL-1")
    del data["customer"]["region"]
    r = validate(event("case.registered", "CASE-1", "2026-10-30T08:10:00Z", data))
    assert isinstance(r, Rejection) and fields_of(r) == {"data.customer.region"}
    assert r.errors[0]["message"] == "required field is missing"


def test_a_blank_detail_is_accepted_so_the_case_counts_as_recorded_incomplete():
    assert isinstance(validate(event("case.registered", "C", "2026-10-30T08:10:00Z",
                                     registration("CALL-1", address=""))), Fact)
    assert isinstance(validate(event("case.registered", "C", "2026-10-30T08:10:00Z",
                                     registration("CALL-1", address=None))), Fact)


@pytest.mark.parametrize(
    ("type_", "data", "field"),
    [
        ("call.received", {"phone": "1", "intent": "gossip"}, "data.intent"),
        ("service.completed", {"technician_id": "T", "fault_code": "E", "cause": "design", "first_visit": "yes"},
         "data.first_visit"),
        ("part.requested", {"request_id": "R", "part_no": "P", "quantity": "2", "outlet_id": "O"}, "data.quantity"),
        ("outlet.registered", {"name": "N", "tier": "authorized", "regions": "R01", "product_lines": ["tv"],
                               "daily_capacity": 5}, "data.regions"),
        ("appointment.set", {"at": "tomorrow", "customer_agreed": True}, "data.at"),
    ],
)
def test_a_wrong_type_of_value_is_rejected_naming_the_field(type_, data, field):
    r = validate(event(type_, "S-1", "2026-10-30T08:10:00Z", data))
    assert isinstance(r, Rejection), r
    assert field in fields_of(r)


def test_envelope_attributes_are_checked():
    bad = event("call.received", "CALL-1", "2026-10-30T08:10:00", {"phone": "1", "intent": "repair"})
    bad["specversion"] = "0.3"
    del bad["subject"]
    r = validate(bad)
    assert isinstance(r, Rejection)
    assert fields_of(r) == {"specversion", "subject", "time"}


def test_a_reached_callback_needs_a_satisfaction():
    r = validate(event("callback.made", "CASE-1", "2026-10-30T08:10:00Z", {"agent_id": "A", "reached": True}))
    assert isinstance(r, Rejection) and "satisfaction" in r.describe()


def test_a_transfer_must_say_where_to():
    r = validate(event("case.transferred", "CASE-1", "2026-10-30T08:10:00Z", {"from_outlet_id": "O", "reason": "x"}))
    assert isinstance(r, Rejection) and "to_outlet_id" in r.describe()
    ok = validate(event("case.transferred", "CASE-1", "2026-10-30T08:10:00Z",
                        {"from_outlet_id": "O", "to": "center", "reason": "hard case"}))
    assert isinstance(ok, Fact)


def test_producers_may_add_fields_of_their_own():
    data = {"phone": "1", "intent": "repair", "ivr_path": [1, 3]}
    f = validate(event("call.received", "CALL-1", "2026-10-30T08:10:00Z", data, **{}))
    assert isinstance(f, Fact) and f.data["ivr_path"] == [1, 3]


def test_binary_mode_headers_become_the_envelope():
    headers = {"ce-specversion": "1.0", "ce-id": "x1", "ce-source": "/outlet/OUT-1", "ce-type": "visit.arrived",
               "ce-time": "2026-10-30T08:10:00Z", "ce-subject": "CASE-1", "content-type": "application/json"}
    f = validate(from_binary(headers, {"technician_id": "TEC-1"}))
    assert isinstance(f, Fact)
    assert (f.id, f.source, f.type, f.subject, f.time_ms, dict(f.data)) == (
        "x1", "/outlet/OUT-1", "visit.arrived", "CASE-1", 1793318400000 + (8 * 60 + 10) * 60_000,
        {"technician_id": "TEC-1"})
    # the same fact as the event sent in structured mode
    assert f == validate(event("visit.arrived", "CASE-1", "2026-10-30T08:10:00Z", {"technician_id": "TEC-1"},
                               source="/outlet/OUT-1", id="x1"))


def test_something_that_is_not_an_object_is_rejected():
    r = validate(["not", "an", "event"])
    assert isinstance(r, Rejection) and r.errors[0]["field"] == "(event)"


def test_data_nested_absurdly_deep_is_rejected_not_crashed_on():
    deep: dict = {"technician_id": "TEC-1"}
    inner = deep
    for _ in range(100):
        inner["x"] = {}
        inner = inner["x"]
    r = validate(event("visit.arrived", "CASE-1", "2026-10-30T08:10:00Z", deep))
    assert isinstance(r, Rejection) and r.errors[0]["field"] == "data" and "nested deeper" in r.errors[0]["message"]
