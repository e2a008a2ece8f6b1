"""Tests of the API's typed shapes and of the one status mapping shared by sensor and trigger."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dispatch_testing.unit_fixtures import DOCUMENT_ID, LOOKUP_REPLY, STOPPED_ERROR, outbound_document
from inexchange.api import DocumentError, LookupResult, OutboundDocument, ReplyShapeError, parse_time
from inexchange.states import FINAL_STATES, LedgerState, is_final_status, ledger_state_for


@pytest.mark.parametrize(
    ("status", "state", "final"),
    [
        ("PendingInPlatform", LedgerState.WAITING, False),
        ("Pending", LedgerState.WAITING, False),
        ("Sent", LedgerState.SENT, True),
        ("Delivered", LedgerState.SENT, True),
        ("Stopped", LedgerState.STOPPED, True),
        ("Error", LedgerState.FAILED, True),
        ("Awaiting recipient approval", LedgerState.WAITING, False),
        ("sent", LedgerState.WAITING, False),  # status text is matched exactly, as InExchange spells it
        ("", LedgerState.WAITING, False),
        (None, LedgerState.WAITING, False),
    ],
)
def test_status_maps_to_ledger_state(status: str | None, state: LedgerState, final: bool) -> None:
    assert ledger_state_for(status) is state
    assert is_final_status(status) is final


def test_only_sent_and_stopped_statuses_reach_final_ledger_states() -> None:
    statuses = ["PendingInPlatform", "Pending", "Sent", "Delivered", "Error", "Stopped", "Unknown"]

    final = {status for status in statuses if ledger_state_for(status) in FINAL_STATES}

    assert final == {"Sent", "Delivered", "Stopped"}


def test_document_without_error() -> None:
    document = OutboundDocument.from_json(
        outbound_document(DOCUMENT_ID, "Delivered", "2026-11-25T07:15:00Z", erp_document_id="invoice-1")
    )

    assert document.id == DOCUMENT_ID
    assert document.erp_document_id == "invoice-1"
    assert document.document_type == "Invoice"
    assert document.status == "Delivered"
    assert document.status_time == datetime(2026, 11, 25, 7, 15, tzinfo=timezone.utc)
    assert document.error is None
    assert document.message is None
    assert document.ledger_state is LedgerState.SENT


def test_document_with_error_keeps_status_and_message() -> None:
    document = OutboundDocument.from_json(
        outbound_document(DOCUMENT_ID, "Stopped", "2026-11-25T08:00:00+01:00", error=STOPPED_ERROR)
    )

    assert document.error == DocumentError("InvalidEmail", "The recipient e-mail address bounced")
    assert document.message == "InvalidEmail: The recipient e-mail address bounced"
    assert document.ledger_state is LedgerState.STOPPED
    assert document.status_time == datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)


def test_document_to_event_is_json_friendly() -> None:
    document = OutboundDocument.from_json(
        outbound_document("d-7", "Error", "2026-11-25T09:00:00Z", erp_document_id="invoice-7",
                          error={"status": "Error", "message": "Invalid delivery method"})
    )

    assert document.to_event() == {
        "id": "d-7",
        "erp_document_id": "invoice-7",
        "status": "Error",
        "time": "2026-11-25T09:00:00+00:00",
        "message": "Error: Invalid delivery method",
    }


def test_document_with_minimal_fields() -> None:
    document = OutboundDocument.from_json({"id": 42, "currentStatus": {"status": "AwaitingRecipientApproval"}})

    assert (document.id, document.status, document.status_time, document.message) == (
        "42", "AwaitingRecipientApproval", None, None)
    assert document.to_event()["time"] is None
    assert document.ledger_state is LedgerState.WAITING


@pytest.mark.parametrize(("current", "problem"), [
    ("absent", "currentStatus is missing"), (None, "currentStatus is missing"),
    ({}, "currentStatus.status is missing"), ({"status": ""}, "currentStatus.status is missing"),
    ({"status": 3}, "status is not a string"), ("Sent", "currentStatus is not a JSON object"),
])
def test_a_document_without_a_readable_status_is_not_read(current: object, problem: str) -> None:
    """The status is what the pipeline decides on: a document without one cannot be recorded."""
    with pytest.raises(ReplyShapeError, match=problem):
        OutboundDocument.from_json({"id": "d1"} | ({} if current == "absent" else {"currentStatus": current}))


@pytest.mark.parametrize(
    ("error", "described"),
    [
        (DocumentError(None, "Bounced"), "Error: Bounced"),
        (DocumentError("Stopped", None), "Stopped:"),
        (DocumentError("InvalidEmail", "Bad address"), "InvalidEmail: Bad address"),
    ],
)
def test_document_error_describe(error: DocumentError, described: str) -> None:
    assert error.describe() == described


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T06:00:00Z", datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc)),
        ("2026-11-25T07:00:00+01:00", datetime(2026, 11, 25, 7, 0, tzinfo=timezone(timedelta(hours=1)))),
        ("2026-11-25T06:00:00.123456Z", datetime(2026, 11, 25, 6, 0, 0, 123456, tzinfo=timezone.utc)),
        (None, None),
        ("", None),
    ],
)
def test_parse_time(text: str | None, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_lookup_result_from_json() -> None:
    result = LookupResult.from_json(LOOKUP_REPLY)

    assert result.exact_hit and result.potential_matches == 2
    assert [party.can_receive_einvoice for party in result.parties] == [True, False]
    assert result.parties[0].company_id == "c7d1e2f3-0000-4000-8000-000000000001"
    assert result.parties[0].name == "Byggbolaget i Norr AB"


@pytest.mark.parametrize("parties", [[], None, "absent"])
def test_lookup_result_without_parties(parties: object) -> None:
    reply = {"potentialMatches": 0, "exactHit": False} | ({} if parties == "absent" else {"parties": parties})

    result = LookupResult.from_json(reply)

    assert (result.parties, result.exact_hit, result.potential_matches) == ((), False, 0)


@pytest.mark.parametrize("potential_matches", [3, True, None, "many", {"count": 3}, "absent"])
def test_potential_matches_of_any_shape_never_fails_the_reply(potential_matches: object) -> None:
    reply = {"parties": None, "exactHit": False}
    if potential_matches != "absent":
        reply["potentialMatches"] = potential_matches

    result = LookupResult.from_json(reply)

    assert result.exact_hit is False and result.parties == ()
    assert result.potential_matches == (int(potential_matches) if isinstance(potential_matches, int) else None)


def test_a_lookup_reply_without_its_exact_hit_carries_no_result() -> None:
    with pytest.raises(ReplyShapeError, match="exactHit is missing"):
        LookupResult.from_json({})  # an empty object is not "no party found"
