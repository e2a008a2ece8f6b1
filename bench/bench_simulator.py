"""The simulator at chaos-run scale: 100,000 stored documents, a 15,000-document window listed page by page.

Fills one simulator in this process with N documents (default 100,000) through its store (upload and
send, the same calls the HTTP handlers make; no files written), then measures through its ASGI app
(in-process HTTP, JSON included, no network):

- paging through a creation window of W documents (default 15,000; ``createdFrom``/``createdTo``,
  100 a page, ``skip`` stepping on) as a client does, against the baseline: the same pages computed by
  filtering and sorting every stored document, which is what one page cost before the creation index;
- paging through the same window with an ``updatedAfter`` cursor at its middle document's status time;
- one request of each other kind at this size: upload, send, get, by-erp-id, ``GET /_sim/stats`` (whole,
  and without the parts that grow with the number of documents);
- memory per stored document (upload and outbound document together), by tracemalloc.

Times are this process's CPU time (client and simulator share it), so that other work on the
machine does not count. Usage: python bench/bench_simulator.py [N [W]].
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

PAGE = 100
STEP_MS = 2_000


def ubl(number: int) -> bytes:
    """The smallest document the simulator accepts: an Invoice with its number."""
    return (
        '<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" '
        'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">'
        f"<cbc:ID>{number}</cbc:ID></Invoice>"
    ).encode()


def fill(store: Any, n: int) -> list[Any]:
    """Upload and send ``n`` documents for the owner ``bench``; return them in creation order."""
    documents = []
    for number in range(n):
        upload = store.upload(ubl(number))
        documents.append(store.send(
            owner="bench", upload=upload, erp_document_id=f"invoice-{number}", send_as="Paper", pdf_email=None,
            recipient_information={"gln": None, "orgNo": "556677-8899", "vatNo": None, "name": f"Kund {number}",
                                   "recipientNo": str(number), "countryCode": "SE"},
        ))
    return documents


def memory_per_document(scratch: str, n: int) -> float:
    """Return the bytes per document of a store of ``n`` documents that keeps no upload files."""
    from inexchange_devkit.simulator.config import SimulatorConfig
    from inexchange_devkit.simulator.store import Store

    store = Store(SimulatorConfig(status_step_ms=STEP_MS, data_dir=Path(scratch) / "light", upload_files=False))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    fill(store, n)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / n


def full_scan_page(store: Any, body: dict[str, Any]) -> list[Any]:
    """Baseline: one page as the listing computed it before the creation index.

    Every stored document is examined, its status computed, the window and cursor applied, and
    the matches sorted by status time and id; then the page is cut out.
    """
    from inexchange_devkit.simulator.store import parse_iso

    now = store.clock.now()
    created_from, created_to = parse_iso(body["createdFrom"]), parse_iso(body["createdTo"])
    updated_after = parse_iso(body["updatedAfter"]) if "updatedAfter" in body else None
    matches = []
    for document in store.documents.values():
        if document.owner != "bench":
            continue
        since = document.current(now)[1]
        if document.created < created_from or document.created > created_to:
            continue
        if updated_after is not None and since <= updated_after:
            continue
        matches.append((document, since))
    matches.sort(key=lambda item: (item[1], item[0].id))
    return matches[body["skip"]: body["skip"] + body["take"]]


async def page_through(client: Any, body: dict[str, Any]) -> tuple[int, int, float]:
    """List every page of ``body``'s window; return (documents listed, pages, seconds)."""
    listed = pages = 0
    started = time.process_time()
    while True:
        reply = (await client.post("documents/outbound/list", json={**body, "skip": listed, "take": PAGE})).json()
        pages += 1
        listed += len(reply["documents"])
        if listed >= reply["totalCount"] or not reply["documents"]:
            return listed, pages, time.process_time() - started


async def timed(call: Any, repeat: int = 200) -> float:
    """Return the mean microseconds of ``await call()``."""
    started = time.process_time()
    for _ in range(repeat):
        await call()
    return (time.process_time() - started) / repeat * 1e6


async def measure(n: int, window: int) -> None:
    import httpx

    from inexchange_devkit.simulator.app import create_app
    from inexchange_devkit.simulator.config import SimulatorConfig
    from inexchange_devkit.simulator.store import utc_iso

    with tempfile.TemporaryDirectory(prefix="bench-sim-") as scratch:
        config = SimulatorConfig(status_step_ms=STEP_MS, data_dir=Path(scratch))
        app = create_app(config)
        store = app.state.store
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        started = time.process_time()
        documents = fill(store, n)
        filled = time.process_time() - started
        gc.collect()
        per_document = (tracemalloc.get_traced_memory()[0] - before) / n
        tracemalloc.stop()
        print(f"stored {n:,} documents in {filled:.1f} s (tracemalloc on); "
              f"{per_document:,.0f} bytes per document (upload + outbound document)")
        if "upload_files" in SimulatorConfig.__dataclass_fields__:
            print(f"  without upload files (--no-upload-files): {memory_per_document(scratch, n // 5):,.0f} bytes"
                  f" per document, {n // 5:,} documents")

        first = n * 2 // 5
        low, high = documents[first].created, documents[min(first + window, n) - 1].created
        body = {"createdFrom": utc_iso(low), "createdTo": utc_iso(high)}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim/v1/api/") as client:
            token = (await client.post("clientTokens/create", headers={"APIKey": config.api_key},
                                       json={"erpId": "bench"})).json()["token"]
            client.headers["ClientToken"] = token

            listed, pages, seconds = await page_through(client, body)
            print(f"\nwindow of {listed:,} documents in {pages} pages: {seconds:.2f} s,"
                  f" {seconds / pages * 1000:.1f} ms a page")
            started = time.process_time()
            scanned = 0
            for skip in range(0, listed, PAGE * 10):
                full_scan_page(store, {**body, "skip": skip, "take": PAGE})
                scanned += 1
            baseline = (time.process_time() - started) / scanned
            print(f"baseline (every stored document filtered and sorted per page): {baseline * 1000:.1f} ms a page,"
                  f" {baseline * pages:.1f} s for the window; {baseline * pages / seconds:.0f}x")

            middle = documents[first + window // 2]
            cursor = utc_iso(middle.current(store.clock.now())[1])
            listed, pages, seconds = await page_through(client, {**body, "updatedAfter": cursor})
            print(f"same window, updatedAfter the status time of its middle document: {listed:,} documents"
                  f" in {pages} pages, {seconds:.2f} s, {seconds / pages * 1000:.1f} ms a page")

            print("\none request at this size, mean of 200 (µs):")
            content = ubl(n + 1)
            uploads: list[str] = []

            async def upload() -> None:
                reply = await client.post("documents", content=content)
                uploads.append(reply.headers["Location"])

            sends = iter(range(10**9))

            async def send() -> None:
                number = next(sends)
                await client.post("documents/outbound", json={
                    "sendDocumentAs": {"type": "Paper"},
                    "document": {"documentFormat": "bis3", "erpDocumentId": f"extra-{number}",
                                 "documentUri": uploads[number]}})

            probe = documents[n // 2]
            figures = {
                "upload": await timed(upload),
                "send": await timed(send),
                "get": await timed(lambda: client.get(f"documents/outbound/{probe.id}")),
                "by-erp-id": await timed(lambda: client.post(f"invoices/outbound/byerpid/{probe.erp_document_id}",
                                                         json={"includeFileInfo": False})),
            }
            for name, micros in figures.items():
                print(f"  {name:<26}{micros:>8.0f}")
            for query in ("", "?documents=false"):
                started = time.process_time()
                reply = await client.get(f"http://sim/_sim/stats{query}")
                micros = (time.process_time() - started) * 1e6
                sends = len(json.loads(reply.content).get("sends", {}))
                print(f"  {'stats' + query:<26}{micros:>8.0f}  ({len(reply.content) / 1e6:.2f} MB, sends of"
                      f" {sends:,} erpDocumentIds)")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    window = int(sys.argv[2]) if len(sys.argv) > 2 else 15_000
    asyncio.run(measure(n, window))


if __name__ == "__main__":
    main()
