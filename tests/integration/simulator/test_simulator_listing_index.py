"""A listing pass is cut from one sorted index of its window, built once: the pass costs W log W, not W per page.

The store-level tests drive :class:`~inexchange_devkit.simulator.store.Store` on a clock that moves
only when told, so that statuses change exactly between two pages; the HTTP tests check the same
through the running simulator's counters (``list_requests``, ``list_examined``, ``list_builds``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from inexchange_devkit.simulator.config import SimulatorConfig
from inexchange_devkit.simulator.store import (
    LIST_SNAPSHOT_MAX_AGE_US,
    LIST_SNAPSHOTS,
    LIST_SNAPSHOTS_PER_OWNER,
    US_PER_S,
    Listing,
    OutboundDocument,
    Store,
)
from inexchange_devkit.simulator.testing import SimulatorHandle
from dispatch_testing.sim_client import Client, order_key, uid

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("documented")]

STEP_US = US_PER_S  # status step of the store-level tests: Pending 1 s after sending, final 2 s after
OWNER = "erp-index"


class ManualClock:
    """A simulator clock that moves only when sending (a millisecond a document) or when told to."""

    def __init__(self) -> None:
        self.time = 1_700_000_000 * US_PER_S

    def now(self) -> int:
        return self.time

    def tick(self, *, whole_ms: bool = False) -> int:
        self.time += 1000
        return self.time

    def advance(self, micros: int) -> None:
        self.time += micros


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A store whose documents all end ``Sent``, on a manual clock."""
    config = SimulatorConfig(
        data_dir=tmp_path, upload_files=False, status_step_ms=STEP_US / 1000, stop_rate=0.0, error_rate=0.0,
        unknown_type_rate=0.0, unknown_status_rate=0.0,
    )
    sim = Store(config)
    sim.clock = ManualClock()  # type: ignore[assignment]
    return sim


def clock(store: Store) -> ManualClock:
    assert isinstance(store.clock, ManualClock)
    return store.clock


def send(store: Store, count: int, *, owner: str = OWNER, root: str = "Invoice") -> list[OutboundDocument]:
    """Send ``count`` documents for ``owner``, a millisecond apart."""
    sent = []
    for _ in range(count):
        number = uid()
        content = (
            f'<{root} xmlns="urn:oasis:names:specification:ubl:schema:xsd:{root}-2" '
            'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">'
            f"<cbc:ID>{number}</cbc:ID></{root}>"
        ).encode()
        sent.append(store.send(owner=owner, upload=store.upload(content), erp_document_id=number, send_as="Paper",
                               pdf_email=None, recipient_information={}))
    return sent


def listing(store: Store, *, skip: int = 0, take: int | None = 10, owner: str = OWNER, **query: Any) -> Listing:
    """One page of the owner's listing, filters as keyword arguments (``None`` when not given)."""
    filters: dict[str, Any] = {"created_from": None, "created_to": None, "updated_after": None,
                               "document_type": None, "status": None, "ignore_statuses": ()}
    filters.update(query)
    return store.list_documents(owner, skip=skip, take=take, **filters)


def page_through(store: Store, take: int, *, between: int = 0, **query: Any) -> tuple[list[Listing], list[str]]:
    """Page a whole pass with ``skip`` stepping on, the clock moving ``between`` µs after each page."""
    pages: list[Listing] = []
    ids: list[str] = []
    while True:
        if pages:
            clock(store).advance(between)
        page = listing(store, skip=len(ids), take=take, **query)
        pages.append(page)
        ids += [document.id for document in page.documents]
        if not page.documents or len(ids) >= page.total:
            return pages, ids


def reference(store: Store, **query: Any) -> list[str]:
    """The ids of a whole listing as a single fresh request sees it now."""
    return [document.id for document in listing(store, take=None, **query).documents]


def in_listing_order(documents: list[OutboundDocument], moment: int) -> list[str]:
    return [d.id for d in sorted(documents, key=lambda d: (d.current(moment)[1], d.id))]


# ---- the store ------------------------------------------------------------------------------


def test_a_pass_lists_every_match_once_in_order_when_statuses_change_between_pages(store: Store) -> None:
    documents = send(store, 30)
    start = clock(store).now()
    # every document is PendingInPlatform now, listed in creation order; the clock moves on between
    # pages so that the fifth and last page comes when the first three have turned Pending (a later
    # status time). Sorted afresh, that page would have them at the end and the documents behind
    # them shifted back: the last two never listed, two listed twice.
    between = -(-(documents[2].pending_at - start) // 4)
    pages, ids = page_through(store, 7, between=between)
    assert len(pages) == 5
    last = clock(store).now()
    assert last == start + 4 * between
    assert [d.current(last)[0] for d in documents[:4]] == ["Pending", "Pending", "Pending", "PendingInPlatform"]
    assert ids == [d.id for d in documents] == in_listing_order(documents, start)
    assert {page.total for page in pages} == {30}
    assert {page.as_of for page in pages} == {start}  # every page shows the documents as at the pass's start
    assert store.list_builds == 1
    # a new pass lists the changed ones last
    assert reference(store)[-3:] == [d.id for d in documents[:3]]


def test_a_pass_examines_its_window_once(store: Store) -> None:
    before = send(store, 40)
    window = send(store, 250)
    send(store, 60)
    send(store, 25, owner="erp-stranger")
    clock(store).advance(3 * STEP_US)
    bounds: dict[str, Any] = {"created_from": window[0].created, "created_to": window[-1].created}
    requests, examined = store.list_requests, store.list_examined

    pages, ids = page_through(store, 10, between=1000, **bounds)

    assert len(pages) == 25
    assert store.list_requests - requests == 25
    assert store.list_examined - examined == 250  # W for the pass, not W for every page
    assert store.list_builds == 1
    assert ids == in_listing_order(window, clock(store).now())
    assert not {d.id for d in before} & set(ids)
    # take may change from page to page within a pass
    cut = [listing(store, **bounds, skip=skip, take=take).documents for skip, take in ((0, 3), (3, 50), (53, 197))]
    assert [d.id for page in cut for d in page] == ids
    assert store.list_builds == 2  # the second pass built at its skip 0; the pages after it did not
    assert store.list_examined - examined == 500


def test_cut_pages_are_what_a_single_request_returns(store: Store) -> None:
    send(store, 40)
    send(store, 30, root="CreditNote")
    clock(store).advance(STEP_US + 500)
    send(store, 20)
    clock(store).advance(STEP_US // 3)  # the first 70 are Pending, the last 20 PendingInPlatform
    moment = clock(store).now()
    everything = listing(store, take=None).documents
    queries: list[dict[str, Any]] = [
        {},
        {"created_from": everything[10].created, "created_to": everything[70].created},
        {"updated_after": everything[30].current(moment)[1]},
        {"status": "pending"},
        {"ignore_statuses": ("PENDING",)},
        {"document_type": "creditnote", "created_from": everything[45].created},
    ]
    for query in queries:
        expected = reference(store, **query)
        for take in (1, 7, 100):
            _, ids = page_through(store, take, **query)
            assert ids == expected, (query, take)
            for skip in range(0, len(expected) + take, take):
                cut = listing(store, skip=skip, take=take, **query)
                store.forget_listings()  # the same page, computed as a request of its own
                alone = listing(store, skip=skip, take=take, **query)
                assert (cut.total, cut.documents, cut.as_of) == (alone.total, alone.documents, alone.as_of)
    assert clock(store).now() == moment


def test_a_new_pass_sees_documents_sent_during_the_last_one(store: Store) -> None:
    sent = send(store, 25)
    clock(store).advance(3 * STEP_US)
    first = listing(store, take=10)
    late = send(store, 3)
    clock(store).advance(3 * STEP_US)
    rest = [listing(store, skip=skip, take=10) for skip in (10, 20)]
    # the pass is a picture of its start: the three late ones are not in it
    assert [page.total for page in rest] == [25, 25]
    assert [d.id for page in (first, *rest) for d in page.documents] == [d.id for d in sent]
    fresh = listing(store, take=None)
    assert fresh.total == 28
    assert [d.id for d in fresh.documents[-3:]] == [d.id for d in late]


def test_a_status_change_shows_in_the_next_pass_and_after_the_snapshot_ages(store: Store) -> None:
    documents = send(store, 20)
    first = listing(store, take=5)
    assert {d.current(first.as_of)[0] for d in first.documents} == {"PendingInPlatform"}
    clock(store).advance(documents[-1].final_at - clock(store).now())  # every one is Sent now
    # within the snapshot's age the pass goes on in its picture
    second = listing(store, skip=5, take=5)
    assert second.as_of == first.as_of
    assert store.list_builds == 1
    # a new pass shows the new statuses
    fresh = listing(store, take=5)
    assert fresh.as_of == clock(store).now()
    assert {d.current(fresh.as_of)[0] for d in fresh.documents} == {"Sent"}
    assert store.list_builds == 2
    # a later page of an old pass whose window changed builds afresh when the snapshot is too old
    listing(store, take=5, status="Sent")
    clock(store).advance(LIST_SNAPSHOT_MAX_AGE_US + 1)
    assert listing(store, skip=5, take=5, status="Sent").as_of != clock(store).now()  # nothing changed since
    builds = store.list_builds
    listing(store, take=5, created_to=documents[-1].created)
    send(store, 1)
    clock(store).advance(LIST_SNAPSHOT_MAX_AGE_US + 1)
    later = listing(store, skip=5, take=5, created_to=documents[-1].created)
    assert later.as_of != clock(store).now()  # the new one is outside the window: still exact
    assert store.list_builds == builds + 1
    aged = listing(store, skip=5, take=5)  # the window of this query got the new document
    assert aged.as_of == clock(store).now()
    assert aged.total == 21
    assert store.list_builds == builds + 2


def test_an_unchanged_window_is_reused_at_any_age_and_a_changed_one_only_while_young(store: Store) -> None:
    documents = send(store, 30)
    clock(store).advance(documents[14].final_at - clock(store).now())  # half are Sent, half Pending
    listing(store, take=10)
    built = store.list_builds
    clock(store).advance(LIST_SNAPSHOT_MAX_AGE_US // 2)
    young = listing(store, skip=10, take=10)  # some statuses changed, but the snapshot is young
    assert store.list_builds == built
    clock(store).advance(LIST_SNAPSHOT_MAX_AGE_US)
    old = listing(store, skip=20, take=10)  # changed and old: built afresh
    assert store.list_builds == built + 1
    assert old.as_of == clock(store).now() != young.as_of
    # every document final: the window cannot change any more, so its snapshot serves at any age
    start = listing(store, take=10)
    clock(store).advance(3600 * US_PER_S)
    page = listing(store, skip=10, take=10)
    assert page.as_of == start.as_of
    assert store.list_builds == built + 2  # the pass at skip 0; none for skip 10
    assert [d.id for d in page.documents] == reference(store)[10:20]


def test_snapshots_stay_bounded_and_reset_drops_them(store: Store) -> None:
    owners = [f"erp-{index}" for index in range(8)]
    for owner in owners:
        send(store, 5, owner=owner)
    clock(store).advance(3 * STEP_US)
    for owner in owners:
        for index in range(6):
            listing(store, owner=owner, take=2, status=f"status-{index}")
            per_owner = [key for key in store.list_snapshots if key[0] == owner]
            assert len(per_owner) <= LIST_SNAPSHOTS_PER_OWNER
        assert len(store.list_snapshots) <= LIST_SNAPSHOTS
    assert len(store.list_snapshots) == LIST_SNAPSHOTS
    # the most recently used stay: the last owners' newest queries
    assert {key[0] for key in store.list_snapshots} == set(owners[-LIST_SNAPSHOTS // LIST_SNAPSHOTS_PER_OWNER:])
    # a later page keeps its snapshot in use, so it is not the one dropped next
    listing(store, owner=owners[-1], skip=2, take=2, status="status-2")
    assert store.list_builds == 8 * 6
    listing(store, owner=owners[-1], take=2, status="status-0")
    assert any(key[0] == owners[-1] and key[5] == "status-2" for key in store.list_snapshots)
    assert not any(key[0] == owners[-1] and key[5] == "status-3" for key in store.list_snapshots)
    store.reset()
    assert not store.list_snapshots
    assert listing(store, owner=owners[-1], skip=2).total == 0


# ---- through the API ------------------------------------------------------------------------


def test_a_pass_over_http_examines_its_window_once_and_shows_one_moment(sim: SimulatorHandle, client: Client) -> None:
    # statuses move on while the pass pages: PendingInPlatform, Pending 0.3 s later, Sent 0.6 s later
    sim.configure(status_step_ms=300)
    ids = [client.send(uid(), kind="Pdf") for _ in range(12)]
    before = sim.stats(per_document=False)
    pages = []
    for skip in range(0, 12, 4):
        pages.append(client.list(take=4, skip=skip))
        time.sleep(0.25)
    after = sim.stats(per_document=False)
    listed = [d for page in pages for d in page["documents"]]
    assert sorted(d["id"] for d in listed) == sorted(ids)
    assert [order_key(d) for d in listed] == sorted(order_key(d) for d in listed)
    assert {page["totalCount"] for page in pages} == {12}
    assert after["list_requests"] - before["list_requests"] == 3
    assert after["list_examined"] - before["list_examined"] == 12
    assert after["list_builds"] - before["list_builds"] == 1
    time.sleep(0.7)
    fresh = client.list(take=4)  # a new pass, every document final by now
    assert {d["currentStatus"]["status"] for d in fresh["documents"]} == {"Sent"}
    assert sim.stats(per_document=False)["list_builds"] - after["list_builds"] == 1


def test_other_queries_build_their_own_index(sim: SimulatorHandle, client: Client) -> None:
    for kind in ["Pdf"] * 6 + ["Electronic"] * 4:
        client.send(uid(), kind=kind)
    before = sim.stats(per_document=False)
    first = client.list(take=3)
    delivered = client.list(take=3, status="Delivered")
    rest = client.list(take=10, skip=3)
    rest_delivered = client.list(take=10, skip=3, status="delivered")  # status compares case-insensitively
    after = sim.stats(per_document=False)
    assert after["list_builds"] - before["list_builds"] == 2
    assert after["list_examined"] - before["list_examined"] == 20
    assert len(first["documents"] + rest["documents"]) == 10
    assert len(delivered["documents"] + rest_delivered["documents"]) == 4
    sim.reset()
    assert sim.stats(per_document=False)["list_builds"] == 0
