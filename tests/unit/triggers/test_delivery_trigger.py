"""Tests of DeliveryStatusTrigger and of status_changes, with InExchange stubbed by respx."""

from __future__ import annotations

import asyncio
import importlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import respx
from airflow.triggers.base import TriggerEvent

from dispatch_testing.unit_fixtures import API_KEY, INVALID_REQUEST, STOPPED_ERROR, TOKEN, outbound_document, outbound_list
from inexchange.api import OutboundDocument
from inexchange.tracking import status_changes
from inexchange.triggers.delivery import DeliveryStatusTrigger

pytestmark = pytest.mark.timeout(10)

LIST = "documents/outbound/list"
CREATED_FROM = "2026-11-25T05:55:00+00:00"
CURSOR = "2026-11-25T06:30:00+00:00"


def make_trigger(**overrides: Any) -> DeliveryStatusTrigger:
    """A trigger watching the documents created from CREATED_FROM, changed after CURSOR."""
    kwargs: dict[str, Any] = {
        "inexchange_conn_id": "inexchange_default",
        "created_from": CREATED_FROM,
        "updated_after": CURSOR,
        "end_time": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat(),
        "poll_interval": 30.0,
        "page_size": 2,
    }
    return DeliveryStatusTrigger(**{**kwargs, **overrides})


async def all_events(trigger: DeliveryStatusTrigger) -> list[TriggerEvent]:
    """Run the trigger to its end and return every event it yielded."""
    return [event async for event in trigger.run()]


# ---- serialization -------------------------------------------------------------------------
def test_serialize_round_trip() -> None:
    trigger = make_trigger(updated_after=None, poll_interval=15.0, page_size=50, created_to=CURSOR)

    classpath, kwargs = trigger.serialize()

    assert classpath == "inexchange.triggers.delivery.DeliveryStatusTrigger"
    assert DeliveryStatusTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert kwargs == {
        "inexchange_conn_id": "inexchange_default",
        "created_from": CREATED_FROM,
        "created_to": CURSOR,
        "updated_after": None,
        "end_time": trigger.end_time,
        "poll_interval": 15.0,
        "page_size": 50,
        "max_changes": 2000,
        "first_poll_after": 0.0,
    }
    assert json.loads(json.dumps(kwargs)) == kwargs


def test_classpath_imports_the_trigger() -> None:
    classpath, _ = make_trigger().serialize()
    module, _, name = classpath.rpartition(".")

    assert getattr(importlib.import_module(module), name) is DeliveryStatusTrigger


# ---- run -----------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_run_yields_the_changes_and_the_new_cursor(api: respx.MockRouter) -> None:
    listed = api.post(LIST)
    listed.side_effect = [
        httpx.Response(200, json=outbound_list(
            [outbound_document("d1", "Delivered", "2026-11-25T07:00:00Z", erp_document_id="invoice-1"),
             outbound_document("d2", "Stopped", "2026-11-25T08:15:00Z", erp_document_id="invoice-2",
                               error=STOPPED_ERROR)],
            total_count=3)),
        httpx.Response(200, json=outbound_list(
            [outbound_document("d3", "Pending", "2026-11-25T07:30:00Z", erp_document_id="invoice-3")],
            total_count=3)),
    ]

    events = await all_events(make_trigger(created_to="2026-11-25T06:45:00+00:00"))

    assert len(events) == 1
    assert events[0].payload == {
        "status": "changes",
        "changes": [
            {"id": "d1", "erp_document_id": "invoice-1", "status": "Delivered",
             "time": "2026-11-25T07:00:00+00:00", "message": None},
            {"id": "d2", "erp_document_id": "invoice-2", "status": "Stopped",
             "time": "2026-11-25T08:15:00+00:00", "message": "InvalidEmail: The recipient e-mail address bounced"},
            {"id": "d3", "erp_document_id": "invoice-3", "status": "Pending",
             "time": "2026-11-25T07:30:00+00:00", "message": None},
        ],
        "cursor": "2026-11-25T08:15:00+00:00",
    }
    bodies = [json.loads(call.request.content) for call in listed.calls]
    assert [(b["skip"], b["take"]) for b in bodies] == [(0, 2), (2, 2)]
    assert all(b["createdFrom"] == CREATED_FROM and b["updatedAfter"] == CURSOR for b in bodies)
    assert all(b["createdTo"] == "2026-11-25T06:45:00+00:00" for b in bodies)
    assert api["revoke_token"].call_count == 1
    assert json.loads(api["revoke_token"].calls.last.request.content) == {"clientToken": TOKEN}


@pytest.mark.anyio
async def test_first_event_through_asend(api: respx.MockRouter) -> None:
    api.post(LIST).respond(200, json=outbound_list([outbound_document("d1", "Sent", "2026-11-25T07:00:00Z")]))
    run = make_trigger(updated_after=None).run()

    event = await run.asend(None)
    await run.aclose()

    assert event.payload["status"] == "changes"
    assert [change["id"] for change in event.payload["changes"]] == ["d1"]
    assert event.payload["cursor"] == "2026-11-25T07:00:00+00:00"


@pytest.mark.anyio
async def test_without_changes_the_trigger_keeps_waiting(api: respx.MockRouter) -> None:
    listed = api.post(LIST).respond(200, json=outbound_list([]))
    task = asyncio.create_task(make_trigger(poll_interval=30.0).run().asend(None))

    await asyncio.sleep(0.2)

    try:
        assert listed.call_count == 1  # it polled once and now sleeps until the next poll
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.anyio
async def test_the_first_listing_waits_first_poll_after(api: respx.MockRouter) -> None:
    listed = api.post(LIST).respond(200, json=outbound_list([outbound_document("d1", "Sent", "2026-11-25T07:00:00Z")]))
    task = asyncio.create_task(make_trigger(first_poll_after=30.0).run().asend(None))

    await asyncio.sleep(0.2)

    try:
        assert listed.call_count == 0 and not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.anyio
async def test_polls_again_after_the_interval(api: respx.MockRouter) -> None:
    listed = api.post(LIST)
    listed.side_effect = [
        httpx.Response(200, json=outbound_list([])),
        httpx.Response(200, json=outbound_list([outbound_document("d1", "Sent", "2026-11-25T07:00:00Z")])),
    ]

    event = await asyncio.wait_for(make_trigger(poll_interval=0.01).run().asend(None), timeout=5)

    assert event.payload["status"] == "changes"
    assert listed.call_count == 2
    assert api["create_token"].call_count == 1


@pytest.mark.anyio
async def test_timeout_when_end_time_has_passed(api: respx.MockRouter) -> None:
    listed = api.post(LIST).respond(200, json=outbound_list([]))
    past = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()

    events = await all_events(make_trigger(end_time=past))

    assert [event.payload for event in events] == [{"status": "timeout", "cursor": CURSOR}]
    assert listed.call_count == 1  # the last poll still happens before giving up
    assert api["revoke_token"].call_count == 1


@pytest.mark.anyio
async def test_the_timeout_event_comes_at_the_end_time_not_a_poll_interval_later(api: respx.MockRouter) -> None:
    listed = api.post(LIST).respond(200, json=outbound_list([]))
    soon = (datetime.now(timezone.utc) + timedelta(seconds=0.5)).isoformat()
    started = asyncio.get_running_loop().time()

    events = await asyncio.wait_for(all_events(make_trigger(end_time=soon, poll_interval=60.0)), timeout=5)

    assert [event.payload["status"] for event in events] == ["timeout"]
    assert asyncio.get_running_loop().time() - started < 3
    assert listed.call_count == 2  # the first poll, and the last one at the end time


@pytest.mark.anyio
async def test_an_event_carries_at_most_max_changes_and_the_next_trigger_lists_the_rest(
        api: respx.MockRouter) -> None:
    times = ["07:00", "07:01", "07:01", "07:02", "07:03"]
    changed = [outbound_document(f"d{n}", "Sent", f"2026-11-25T{t}:00Z") for n, t in enumerate(times)]
    listed = api.post(LIST)
    listed.side_effect = lambda request: httpx.Response(200, json=outbound_list([
        d for d in changed if d["currentStatus"]["time"] > json.loads(request.content)["updatedAfter"]
        .replace("+00:00", "Z")]))

    first = await all_events(make_trigger(page_size=100, max_changes=2))
    cursor = first[0].payload["cursor"]
    second = await all_events(make_trigger(page_size=100, max_changes=2, updated_after=cursor))

    # the cut falls after every document of 07:01, so the cursor passes none of the rest
    assert [c["id"] for c in first[0].payload["changes"]] == ["d0", "d1", "d2"]
    assert cursor == "2026-11-25T07:01:00+00:00"
    assert [c["id"] for c in second[0].payload["changes"]] == ["d3", "d4"]
    assert second[0].payload["cursor"] == "2026-11-25T07:03:00+00:00"


@pytest.mark.anyio
async def test_changes_win_over_an_expired_end_time(api: respx.MockRouter) -> None:
    api.post(LIST).respond(200, json=outbound_list([outbound_document("d1", "Sent", "2026-11-25T07:00:00Z")]))
    past = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()

    events = await all_events(make_trigger(end_time=past))

    assert [event.payload["status"] for event in events] == ["changes"]


@pytest.mark.anyio
async def test_http_failure_becomes_an_error_event(api: respx.MockRouter) -> None:
    api.post(LIST).respond(400, json=INVALID_REQUEST)

    events = await all_events(make_trigger())

    assert len(events) == 1
    payload = events[0].payload
    assert payload["status"] == "error"
    assert payload["message"].startswith("InExchangeApiError: HTTP 400 from InExchange documents/outbound/list")
    assert "The request is invalid." in payload["message"]
    assert API_KEY not in payload["message"] and TOKEN not in payload["message"]
    assert api["revoke_token"].call_count == 1


@pytest.mark.anyio
async def test_missing_connection_becomes_an_error_event() -> None:
    with respx.mock(assert_all_mocked=True, using="httpx") as router:
        events = await all_events(make_trigger(inexchange_conn_id="inexchange_not_defined"))

    assert [event.payload["status"] for event in events] == ["error"]
    assert "inexchange_not_defined" in events[0].payload["message"]
    assert not router.calls


# ---- status_changes ------------------------------------------------------------------------
def document(document_id: str, status: str, time: str | None) -> OutboundDocument:
    return OutboundDocument.from_json(outbound_document(document_id, status, time))


T6 = datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc)
T9 = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)


def test_status_changes_of_no_documents_keep_the_cursor() -> None:
    assert status_changes([], T6) == ([], T6)
    assert status_changes([], None) == ([], None)


def test_status_changes_advance_the_cursor_to_the_latest_time() -> None:
    documents = [document("a", "Sent", "2026-11-25T07:00:00Z"), document("b", "Pending", "2026-11-25T08:00:00Z")]

    changes, cursor = status_changes(documents, T6)

    assert [c["id"] for c in changes] == ["a", "b"]
    assert [c["status"] for c in changes] == ["Sent", "Pending"]
    assert cursor == datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)


def test_status_changes_never_move_the_cursor_back() -> None:
    changes, cursor = status_changes([document("a", "Sent", "2026-11-25T07:00:00Z")], T9)

    assert changes == []
    assert cursor == T9


def test_status_changes_drop_documents_stamped_at_the_cursor() -> None:
    """An API that treats updatedAfter as inclusive must not make the sensor spin on one document."""
    at_cursor = document("a", "Pending", T9.isoformat())
    later = document("b", "Sent", (T9 + timedelta(seconds=1)).isoformat())

    changes, cursor = status_changes([at_cursor, later], T9)

    assert [change["id"] for change in changes] == ["b"]
    assert cursor == T9 + timedelta(seconds=1)


def test_a_document_without_a_status_time_counts_only_in_a_listing_without_cursor() -> None:
    """Else it would be a change in every poll, and the sensor would resume without end."""
    timeless = document("a", "Pending", None)

    assert [c["id"] for c in status_changes([timeless], None)[0]] == ["a"]
    assert status_changes([timeless], T6) == ([], T6)


def test_status_changes_with_a_limit_keep_the_earliest_and_every_document_of_the_last_time() -> None:
    documents = [document("late", "Sent", "2026-11-25T09:00:00Z"), document("early", "Sent", "2026-11-25T07:00:00Z"),
                 document("tie1", "Sent", "2026-11-25T08:00:00Z"), document("tie2", "Pending", "2026-11-25T08:00:00Z")]

    changes, cursor = status_changes(documents, T6, limit=2)

    assert [c["id"] for c in changes] == ["early", "tie1", "tie2"]
    assert cursor == datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)
    assert status_changes(documents, T6, limit=10)[1] == T9
    assert [c["id"] for c in status_changes(documents, T6, limit=1)[0]] == ["early"]


def test_status_changes_without_cursor_or_times() -> None:
    assert status_changes([document("a", "Pending", None)], None)[1] is None
    assert status_changes([document("a", "Pending", None), document("b", "Sent", "2026-11-25T07:00:00Z")],
                          None)[1] == datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)


@pytest.mark.anyio
async def test_an_unreadable_document_is_skipped_and_named_in_the_event(api: respx.MockRouter) -> None:
    api.post(LIST).respond(200, json=outbound_list([
        outbound_document("d1", "Delivered", "2026-11-25T07:00:00Z"),
        {"id": "d-odd", "currentStatus": ["Delivered"]},
        {"currentStatus": {"status": "Sent"}},  # no id at all
    ]))

    events = await all_events(make_trigger())

    payload = events[0].payload
    assert [c["id"] for c in payload["changes"]] == ["d1"]
    assert payload["unreadable_count"] == 2
    assert payload["unreadable"] == ["(id is missing)", "d-odd"]
