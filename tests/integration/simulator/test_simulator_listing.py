"""Listing at scale: a page of ``documents/outbound/list`` examines its creation window only, with unchanged semantics.

The simulator counts the documents each listing examines (``list_examined`` in ``/_sim/stats``), so
these tests check the work done per page instead of timing it. They read ``created`` (a field the
client does not use) and so pin the documented reply shapes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from inexchange_devkit.simulator.testing import SimulatorHandle, run_simulator
from dispatch_testing.sim_client import Client, iso, micros, order_key, send_body, ubl, uid

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("documented")]


def listing_work(sim: SimulatorHandle, call: Any) -> tuple[Any, int, int]:
    """Run ``call()``; return its result, the listings it made and the documents they examined."""
    before = sim.stats()
    result = call()
    after = sim.stats()
    return result, after["list_requests"] - before["list_requests"], after["list_examined"] - before["list_examined"]


def order_keys(documents: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """Return the listing order keys: current status time (as an instant), then id."""
    return [order_key(d) for d in documents]


def test_a_window_page_examines_only_the_documents_created_in_it(sim: SimulatorHandle, client: Client) -> None:
    stranger = Client(sim, erp_id="erp-stranger")
    try:
        older = [client.send(uid(), kind="Pdf") for _ in range(300)]
        window = []
        for index in range(20):
            window.append(client.send(uid(), kind="Pdf"))
            if index % 2:
                stranger.send(uid())
        newer = [client.send(uid(), kind="Pdf") for _ in range(50)]
    finally:
        stranger.close()
    created = {d["id"]: d["created"] for d in client.list(take=1000)["documents"]}
    assert len(created) == len(older) + len(window) + len(newer)
    bounds = {"createdFrom": created[window[0]], "createdTo": created[window[-1]]}

    pages, listings, examined = listing_work(
        sim, lambda: [client.list(**bounds, take=6, skip=skip) for skip in range(0, 24, 6)]
    )

    assert listings == 4
    # the pass looks at the 20 documents of the window once (its first page builds the index the
    # others are cut from): not the 350 others, not the stranger's 10
    assert examined == 20
    assert [len(page["documents"]) for page in pages] == [6, 6, 6, 2]
    assert all(page["totalCount"] == 20 for page in pages)
    listed = [d for page in pages for d in page["documents"]]
    assert sorted(d["id"] for d in listed) == sorted(window)
    assert order_keys(listed) == sorted(order_keys(listed))

    everything, listings, examined = listing_work(sim, lambda: client.list(take=1000))
    assert (listings, examined) == (1, 370)
    assert everything["totalCount"] == 370


def test_created_bounds_are_inclusive_to_the_microsecond(client: Client) -> None:
    ids = [client.send(uid()) for _ in range(5)]
    documents = sorted(client.list()["documents"], key=lambda d: micros(d["created"]))
    assert sorted(d["id"] for d in documents) == sorted(ids)
    target = micros(documents[2]["created"])

    def listed(low: int, high: int) -> list[str]:
        return sorted(d["id"] for d in client.list(createdFrom=iso(low), createdTo=iso(high))["documents"])

    assert listed(target, target) == [documents[2]["id"]]
    assert listed(target + 1, target) == []
    assert listed(target + 1, target + 1) == []
    assert listed(target - 1, target - 1) == []
    middle = sorted(d["id"] for d in documents[1:4])
    assert listed(micros(documents[1]["created"]), micros(documents[3]["created"])) == middle
    assert listed(micros(documents[1]["created"]) + 1, micros(documents[3]["created"]) - 1) == [documents[2]["id"]]
    # the same instant in other notations, and in the document's own
    utc = iso(target)
    for shifted in (utc.replace("Z", "+00:00"), utc[:-1], utc[:-1] + "0Z", documents[2]["created"]):
        listed_ids = [d["id"] for d in client.list(createdFrom=shifted, createdTo=shifted)["documents"]]
        assert listed_ids == [documents[2]["id"]], shifted
    assert client.list(createdFrom=documents[4]["created"])["totalCount"] == 1
    assert client.list(createdTo=documents[0]["created"])["totalCount"] == 1


def test_updated_after_is_strict_and_skips_documents_settled_before_it(sim: SimulatorHandle, client: Client) -> None:
    # status step 0: every document is final when sent, so its status time is its creation time
    ids = [client.send(uid()) for _ in range(30)]
    listed = client.list(take=100)["documents"]
    assert sorted(d["id"] for d in listed) == sorted(ids)
    cursor = listed[9]["currentStatus"]["time"]

    after, listings, examined = listing_work(sim, lambda: client.list(updatedAfter=cursor))

    assert [d["id"] for d in after["documents"]] == [d["id"] for d in listed[10:]]
    assert after["totalCount"] == 20
    # documents whose whole timeline ended by the cursor are not even looked at
    assert (listings, examined) == (1, 20)
    assert client.list(updatedAfter=listed[-1]["currentStatus"]["time"])["totalCount"] == 0
    assert client.list(updatedAfter=iso(micros(cursor) - 1))["documents"][0]["id"] == listed[9]["id"]


def test_filters_and_paging_inside_a_window(client: Client) -> None:
    before = client.send(uid(), kind="Pdf")
    inside = [client.send(uid(), kind="Pdf"), client.send(uid()), client.send(uid(), root="CreditNote")]
    inside += [client.send(uid(), kind="Paper") for _ in range(4)]
    after = client.send(uid(), kind="Paper")
    created = {d["id"]: d["created"] for d in client.list()["documents"]}
    bounds = {"createdFrom": created[inside[0]], "createdTo": created[inside[-1]]}

    assert client.list(**bounds)["totalCount"] == 7
    assert client.list(**bounds, status="sent")["totalCount"] == 5
    assert client.list(**bounds, status="Delivered")["totalCount"] == 2
    assert client.list(**bounds, ignoreStatuses=["SENT"])["totalCount"] == 2
    assert client.list(**bounds, ignoreStatuses=["Sent", "Delivered"])["totalCount"] == 0
    assert client.list(**bounds, documentType="creditnote")["totalCount"] == 1
    assert client.list(**bounds, documentType="Invoice", status="Sent")["totalCount"] == 5
    pages = [client.list(**bounds, take=3, skip=skip)["documents"] for skip in (0, 3, 6, 9)]
    assert [len(page) for page in pages] == [3, 3, 1, 0]
    assert [d["id"] for page in pages for d in page] == [d["id"] for d in client.list(**bounds)["documents"]]
    assert before not in {d["id"] for page in pages for d in page}
    assert after not in {d["id"] for page in pages for d in page}


def test_documents_sent_while_a_client_pages_do_not_reorder_earlier_pages(client: Client) -> None:
    ids = [client.send(uid()) for _ in range(12)]
    first = client.list(take=5)
    late = client.send(uid())
    second = client.list(take=5, skip=5)
    third = client.list(take=5, skip=10)
    listed = [d["id"] for page in (first, second, third) for d in page["documents"]]
    assert listed == [d["id"] for d in client.list(take=12)["documents"]]
    assert sorted(ids) == sorted(listed)
    # the pass pages its snapshot; the document sent meanwhile is listed by the next pass
    assert (first["totalCount"], second["totalCount"], third["totalCount"]) == (12, 12, 12)
    again = client.list(take=20)
    assert again["totalCount"] == 13
    assert again["documents"][-1]["id"] == late


def test_uploads_can_be_kept_without_their_files(tmp_path: Path) -> None:
    with run_simulator(status_step_ms=0, stop_rate=0, error_rate=0, data_dir=tmp_path, reply_variant="documented",
                       extra_args=["--no-upload-files", "--unknown-type-rate", "0"]) as sim:
        assert sim.configure()["upload_files"] is False
        api = Client(sim)
        try:
            uri = api.upload(ubl("7001"))
            first = api.http.post("documents/outbound", json=send_body(uri, "ERP-7001"))
            again = api.send("ERP-7001-AGAIN", number="7001")
            credit = api.send("ERP-7001-CREDIT", number="7001", root="CreditNote")
            assert first.status_code == 201, first.text
            first_id = first.headers["Location"].rsplit("/", 1)[1]
            assert api.document(first_id)["currentStatus"]["status"] == "Delivered"
            assert api.document(again)["error"]["status"] == "DuplicateInvoiceNumber"
            assert api.document(credit)["documentType"] == "CreditNote"
            assert api.document(credit)["currentStatus"]["status"] == "Delivered"
            big = api.upload(b"x" * (5 * 1024 * 1024 + 1))
            body = send_body(uri, "ERP-ATTACHED")
            body["document"]["attachments"] = [big]
            refused = api.http.post("documents/outbound", json=body)
            assert refused.status_code == 400
            assert "document.attachments[0]" in refused.json()["modelState"]
        finally:
            api.close()
        assert sim.stats()["documents_uploaded"] == 4
        assert list((tmp_path / "documents").iterdir()) == []


def test_upload_files_is_fixed_at_start_up(sim: SimulatorHandle) -> None:
    assert sim.configure()["upload_files"] is True
    response = httpx.post(f"{sim.root_url}_sim/config", json={"upload_files": False})
    assert response.status_code == 400
    assert "upload_files" in response.json()["message"]
    assert sim.configure()["upload_files"] is True


def test_windows_and_cursors_list_what_a_full_scan_would(sim: SimulatorHandle, client: Client) -> None:
    # statuses that cannot change while the test runs: final at once, or PendingInPlatform for a minute
    for step in (0, 60_000, 0):
        sim.configure(status_step_ms=step)
        for _ in range(12):
            client.send(uid(), kind="Pdf")
    everything = client.list(take=1000)["documents"]
    assert len(everything) == 36
    created = sorted(micros(d["created"]) for d in everything)
    times = sorted(micros(d["currentStatus"]["time"]) for d in everything)
    probes = [created[0] - 1, created[0], created[5], created[11], created[12], created[20], created[35],
              created[35] + 1, times[3], times[30]]
    for low in probes[:7]:
        for high in probes[2:]:
            for cursor in (None, probes[1], probes[6], times[30]):
                body: dict[str, Any] = {"createdFrom": iso(low), "createdTo": iso(high)}
                if cursor is not None:
                    body["updatedAfter"] = iso(cursor)
                expected = [
                    d["id"] for d in everything
                    if low <= micros(d["created"]) <= high
                    and (cursor is None or micros(d["currentStatus"]["time"]) > cursor)
                ]
                listed = client.list(**body, take=1000)
                assert [d["id"] for d in listed["documents"]] == expected, body
                assert listed["totalCount"] == len(expected)
