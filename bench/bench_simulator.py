"""The simulator at chaos-run scale: paging through creation windows of 15,000 and 150,000 documents.

Fills one simulator in this process with N documents (default 160,000) through its store (upload and
send, the same calls the HTTP handlers make; no files written), then measures through its ASGI app
(in-process HTTP, JSON included, no network):

- paging through a creation window of W documents (``createdFrom``/``createdTo``, 100 a page,
  ``skip`` stepping on) as a client does, at two sizes (default W=15,000 and W=150,000): the time a
  page, the time a document, how often the window's index was built and how many documents that
  examined (``list_builds``, ``list_examined``), and the ratio of the time a document between the
  two sizes (1.0 is linear: a pass builds its sorted index once and cuts every page from it);
- the baseline, in the same process and through the same requests: every page building the index
  afresh (the store forgets its listing snapshots before each page), which is what a page cost
  before passes shared an index; timed on 30 pages spread over each window and multiplied out to
  the whole window, with the same ratio;
- paging through the smaller window with an ``updatedAfter`` cursor at its middle document's status time;
- one request of each other kind at this size: upload, send, get, by-erp-id, ``GET /_sim/stats`` (whole,
  and without the parts that grow with the number of documents);
- memory per stored document (upload and outbound document together), by tracemalloc, on a separate
  store of N/8 documents, with and without upload files.

Times are this process's CPU time (client and simulator share it), so that other work on the
machine does not count. Usage: python bench/bench_simulator.py [N [W_SMALL [W_LARGE]]].
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


def memory_per_document(scratch: str, n: int, *, upload_files: bool) -> float:
    """Return the bytes per document of a store of ``n`` documents (files are never written here)."""
    from inexchange_devkit.simulator.config import SimulatorConfig
    from inexchange_devkit.simulator.store import Store

    data_dir = Path(scratch) / ("files" if upload_files else "light")
    store = Store(SimulatorConfig(status_step_ms=STEP_MS, data_dir=data_dir, upload_files=upload_files))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    fill(store, n)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / n


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


async def rebuilt_pages(client: Any, store: Any, body: dict[str, Any], listed: int, samples: int = 30) -> float:
    """Baseline: the seconds a page of ``body``'s window costs when every page builds the index afresh.

    The mean over ``samples`` pages spread over the window, each requested as a later page of a pass
    whose snapshot the store has just forgotten.
    """
    skips = sorted({min(listed - 1, round(index * listed / samples)) // PAGE * PAGE for index in range(samples)})
    started = time.process_time()
    for skip in skips:
        store.forget_listings()
        reply = (await client.post("documents/outbound/list", json={**body, "skip": skip, "take": PAGE})).json()
        assert len(reply["documents"]) == min(PAGE, listed - skip)
    return (time.process_time() - started) / len(skips)


async def timed(call: Any, repeat: int = 200) -> float:
    """Return the mean microseconds of ``await call()``."""
    started = time.process_time()
    for _ in range(repeat):
        await call()
    return (time.process_time() - started) / repeat * 1e6


async def measure(n: int, windows: tuple[int, int]) -> None:
    import httpx

    from inexchange_devkit.simulator.app import create_app
    from inexchange_devkit.simulator.config import SimulatorConfig
    from inexchange_devkit.simulator.store import utc_iso

    with tempfile.TemporaryDirectory(prefix="bench-sim-") as scratch:
        config = SimulatorConfig(status_step_ms=STEP_MS, data_dir=Path(scratch))
        app = create_app(config)
        store = app.state.store
        started = time.process_time()
        documents = fill(store, n)
        print(f"stored {n:,} documents in {time.process_time() - started:.1f} s")
        sample = max(1, n // 8)
        with_files = memory_per_document(scratch, sample, upload_files=True)
        without_files = memory_per_document(scratch, sample, upload_files=False)
        print(f"memory per document (upload + outbound document), {sample:,} documents: {with_files:,.0f} bytes;"
              f" without upload files (--no-upload-files): {without_files:,.0f}")
        gc.collect()

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim/v1/api/") as client:
            token = (await client.post("clientTokens/create", headers={"APIKey": config.api_key},
                                       json={"erpId": "bench"})).json()["token"]
            client.headers["ClientToken"] = token

            per_document: dict[int, tuple[float, float]] = {}
            bodies: dict[int, dict[str, Any]] = {}
            for window in windows:
                first = (n - window) // 2
                low, high = documents[first].created, documents[first + window - 1].created
                body = bodies[window] = {"createdFrom": utc_iso(low), "createdTo": utc_iso(high)}
                builds, examined = store.list_builds, store.list_examined
                listed, pages, seconds = await page_through(client, body)
                builds, examined = store.list_builds - builds, store.list_examined - examined
                baseline = await rebuilt_pages(client, store, body, listed)
                per_document[window] = (seconds / listed, baseline * pages / listed)
                print(f"\nwindow of {listed:,} documents in {pages:,} pages: {seconds:.2f} s,"
                      f" {seconds / pages * 1000:.2f} ms a page, {seconds / listed * 1e6:.1f} µs a document;"
                      f" index built {builds} time{'s' * (builds != 1)}, {examined:,} documents examined")
                print(f"  baseline (index rebuilt for every page): {baseline * 1000:.1f} ms a page,"
                      f" {baseline * pages:.1f} s for the window, {baseline * pages / listed * 1e6:.1f} µs a document;"
                      f" {baseline * pages / seconds:.0f}x")
            small, large = windows
            print(f"\nper-document cost, {large:,} against {small:,} documents ({large / small:.0f}x the window):"
                  f" {per_document[large][0] / per_document[small][0]:.2f}x with one index a pass (1.0 is linear),"
                  f" {per_document[large][1] / per_document[small][1]:.2f}x with one a page")

            middle = documents[(n - small) // 2 + small // 2]
            cursor = utc_iso(middle.current(store.clock.now())[1])
            listed, pages, seconds = await page_through(client, {**bodies[small], "updatedAfter": cursor})
            print(f"window of {small:,}, updatedAfter the status time of its middle document: {listed:,} documents"
                  f" in {pages} pages, {seconds:.2f} s, {seconds / pages * 1000:.2f} ms a page")

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
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 160_000
    small = int(sys.argv[2]) if len(sys.argv) > 2 else 15_000
    large = int(sys.argv[3]) if len(sys.argv) > 3 else 150_000
    if not 0 < small < large <= n:
        raise SystemExit("usage: bench_simulator.py [N [W_SMALL [W_LARGE]]] with 0 < W_SMALL < W_LARGE <= N")
    asyncio.run(measure(n, (small, large)))


if __name__ == "__main__":
    main()
