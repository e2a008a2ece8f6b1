"""``InExchangeHook.iter_outbound``: a listing read several pages at a time, yielded in order."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from dispatch_testing.unit_fixtures import outbound_document, outbound_list
from inexchange.exceptions import InExchangeApiError
from inexchange.hooks.inexchange import InExchangeHook

pytestmark = pytest.mark.timeout(20)

LIST = "documents/outbound/list"
DOCUMENTS = [outbound_document(f"d{i:02d}", "Sent", f"2026-11-25T06:{i:02d}:00Z") for i in range(23)]
IDS = [d["id"] for d in DOCUMENTS]


def window(request: httpx.Request) -> tuple[int, int]:
    body = json.loads(request.content)
    return body["skip"], body["take"]


def listing(documents: list[dict[str, Any]], *, page_cap: int | None = None, delay: float = 0.0,
            total: Callable[[], int] | None = None) -> tuple[Callable[[httpx.Request], httpx.Response], list[int]]:
    """Answer ``documents/outbound/list`` like InExchange: the body's take/skip window of ``documents``
    (at most ``page_cap`` a page), ``totalCount``; return the answer and, as it goes, the most calls
    seen at once."""
    in_flight, most = [0], [0]
    lock = threading.Lock()

    def answer(request: httpx.Request) -> httpx.Response:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            time.sleep(delay)
            skip, take = window(request)
            take = min(take, page_cap or take)
            count = total() if total else len(documents)
            return httpx.Response(200, json=outbound_list(documents[skip: skip + take], total_count=count))
        finally:
            with lock:
                in_flight[0] -= 1

    return answer, most


@pytest.fixture
def hook(inexchange_conn: str) -> InExchangeHook:
    return InExchangeHook(inexchange_conn)


def test_every_document_once_in_listing_order(api: respx.MockRouter, hook: InExchangeHook) -> None:
    answer, _ = listing(DOCUMENTS)
    listed = api.post(LIST).mock(side_effect=answer)

    ids = [d.id for d in hook.iter_outbound(page_size=5, workers=3, status="Sent")]

    assert ids == IDS
    assert sorted(window(c.request) for c in listed.calls) == [(0, 5), (5, 5), (10, 5), (15, 5), (20, 5)]
    assert all(json.loads(c.request.content)["status"] == "Sent" for c in listed.calls)


def test_pages_are_asked_for_at_once_up_to_workers(api: respx.MockRouter, hook: InExchangeHook) -> None:
    answer, most = listing(DOCUMENTS, delay=0.15)
    api.post(LIST).mock(side_effect=answer)

    started = time.monotonic()
    ids = [d.id for d in hook.iter_outbound(page_size=2, workers=4)]
    elapsed = time.monotonic() - started

    assert ids == IDS
    assert most[0] == 4  # 11 pages after the first, never more than 4 in flight
    assert elapsed < 12 * 0.15  # one page at a time would take 12 delays


@pytest.mark.parametrize(("ahead", "read_meanwhile"), [(None, 2 * 2), (6, 6), (1, 2)], ids=["default", "6", "workers"])
def test_a_reader_that_pauses_finds_ahead_pages_read_and_no_more(
    api: respx.MockRouter, hook: InExchangeHook, ahead: int | None, read_meanwhile: int
) -> None:
    """While the reader is busy elsewhere (writing what it took), the listing reads on: ``ahead``
    pages past the one the reader is in (``2 * workers`` unless given, never fewer than ``workers``)."""
    answer, _ = listing(DOCUMENTS)
    listed = api.post(LIST).mock(side_effect=answer)

    documents = hook.iter_outbound(page_size=2, workers=2, ahead=ahead)
    assert [next(documents).id for _ in range(3)] == IDS[:3]  # the reader is in the second page
    deadline = time.monotonic() + 5
    while listed.call_count < 2 + read_meanwhile and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # time for a page too many to be asked for

    assert listed.call_count == 2 + read_meanwhile  # the first two pages, then those read ahead
    assert [d.id for d in documents] == IDS[3:]
    assert listed.call_count == 12


def test_the_servers_page_length_is_the_step(api: respx.MockRouter, hook: InExchangeHook) -> None:
    """A server that answers fewer than ``take`` (its own page cap) is paged by what it answers."""
    answer, _ = listing(DOCUMENTS, page_cap=4)
    listed = api.post(LIST).mock(side_effect=answer)

    assert [d.id for d in hook.iter_outbound(page_size=100, workers=2)] == IDS
    assert sorted(skip for skip, _ in (window(c.request) for c in listed.calls)) == [0, 4, 8, 12, 16, 20]


def test_a_short_page_has_its_gap_read(api: respx.MockRouter, hook: InExchangeHook) -> None:
    """The page at skip=5 answers 2 of 5 (documents gone while listing): the 3 it left are read after it."""
    answer, _ = listing(DOCUMENTS)

    def short_once(request: httpx.Request) -> httpx.Response:
        if window(request) == (5, 5):
            return httpx.Response(200, json=outbound_list(DOCUMENTS[5:7], total_count=len(DOCUMENTS)))
        return answer(request)

    listed = api.post(LIST).mock(side_effect=short_once)

    assert [d.id for d in hook.iter_outbound(page_size=5, workers=2)] == IDS
    assert (7, 3) in [window(c.request) for c in listed.calls]


def test_a_listing_that_grows_is_read_to_its_new_total(api: respx.MockRouter, hook: InExchangeHook) -> None:
    documents = list(DOCUMENTS[:10])
    calls = [0]

    def growing_total() -> int:
        calls[0] += 1
        if calls[0] == 2:  # two documents created after the first page was read
            documents.extend(DOCUMENTS[10:12])
        return len(documents)

    answer, _ = listing(documents, total=growing_total)
    api.post(LIST).mock(side_effect=answer)

    assert [d.id for d in hook.iter_outbound(page_size=5, workers=1)] == IDS[:12]


def test_a_server_that_ignores_skip_fails_the_listing(api: respx.MockRouter, hook: InExchangeHook) -> None:
    api.post(LIST).respond(200, json=outbound_list(DOCUMENTS[:5], total_count=len(DOCUMENTS)))

    with pytest.raises(InExchangeApiError, match="repeats documents already listed"):
        list(hook.iter_outbound(page_size=5, workers=2))


def test_unreadable_documents_are_skipped_and_kept(api: respx.MockRouter, hook: InExchangeHook) -> None:
    documents = [*DOCUMENTS[:3], {"id": "broken", "currentStatus": "not an object"}, *DOCUMENTS[3:6]]
    answer, _ = listing(documents)
    api.post(LIST).mock(side_effect=answer)

    ids = [d.id for d in hook.iter_outbound(page_size=2, workers=2)]

    assert ids == IDS[:6]
    assert [item.id for item in hook.unreadable] == ["broken"]


def test_a_failing_page_fails_the_listing_after_the_pages_before_it(
    api: respx.MockRouter, hook: InExchangeHook
) -> None:
    answer, _ = listing(DOCUMENTS)

    def refuse_skip_10(request: httpx.Request) -> httpx.Response:
        if window(request)[0] == 10:
            return httpx.Response(400, json={"message": "bad window"})  # a refusal: never retried
        return answer(request)

    api.post(LIST).mock(side_effect=refuse_skip_10)
    read: list[str] = []

    with pytest.raises(InExchangeApiError):
        read.extend(d.id for d in hook.iter_outbound(page_size=5, workers=3))
    assert read == IDS[:10]


def test_a_reader_that_stops_early_leaves_no_thread_behind(api: respx.MockRouter, hook: InExchangeHook) -> None:
    answer, _ = listing(DOCUMENTS, delay=0.05)
    api.post(LIST).mock(side_effect=answer)
    before = {t.name for t in threading.enumerate()}

    documents = hook.iter_outbound(page_size=2, workers=3)
    assert [next(documents).id for _ in range(3)] == IDS[:3]
    documents.close()

    assert not [t.name for t in threading.enumerate() if t.name.startswith("inexchange-list") and t.name not in before]


def test_an_empty_listing_is_one_call(api: respx.MockRouter, hook: InExchangeHook) -> None:
    listed = api.post(LIST).respond(200, json=outbound_list([], total_count=0))

    assert list(hook.iter_outbound(page_size=5, workers=4)) == []
    assert listed.call_count == 1
