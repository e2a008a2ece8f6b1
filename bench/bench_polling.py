"""Status polling of 10,000 waiting documents: the trigger's list cycle against one GET per document.

Seeds the simulator with N sent documents (uploaded and sent through the hook), then measures, at
20 ms latency per request:

- list cycles as the trigger runs them: ``documents/outbound/list`` over the run's creation window
  with the ``updatedAfter`` cursor, paged by 100. The first cycle (no cursor) lists everything;
  later ones only what changed since the cursor. Each prints the documents changed, the API calls
  made (counted by the simulator) against ``ceil(changed / 100)``, and the time taken;
- the alternative: one ``GET documents/outbound/{id}`` per waiting document, 32 at a time.

Prints the ratio of API calls (target: at least 50x fewer) and checks the list cycles never make
more calls than ``max(1, ceil(changed / 100))``. Usage: python bench/bench_polling.py [N] (10000).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

LATENCY_MS = 20
STEP_MS = 15_000  # a document moves on every 15 s, so each cycle sees a share of them change


def ubl(number: int) -> bytes:
    """The smallest document the simulator accepts: an Invoice with its number."""
    return (
        '<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" '
        'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">'
        f"<cbc:ID>{number}</cbc:ID></Invoice>"
    ).encode()


async def seed(hook: Any, n: int) -> list[str]:
    """Upload and send ``n`` documents; return their InExchange ids."""
    slots = asyncio.Semaphore(32)

    async def one(number: int) -> str:
        async with slots:
            uri = await hook.aupload_document(ubl(number))
            return await hook.asend_outbound({
                "sendDocumentAs": {"type": "Paper"},
                "recipientInformation": {"name": f"Kund {number}", "countryCode": "SE"},
                "document": {"documentFormat": "bis3", "erpDocumentId": f"bench-{number}", "documentUri": uri},
            })

    return list(await asyncio.gather(*(one(number) for number in range(1, n + 1))))


async def list_cycle(hook: Any, sim: Any, created_from: datetime, cursor: datetime | None) -> tuple[int, int, float, datetime | None]:
    """One trigger cycle; returns (changed, API calls, seconds, new cursor)."""
    from inexchange.triggers.delivery import status_changes

    before = sim.stats()["requests"]
    started = time.perf_counter()
    documents = await hook.aall_outbound(page_size=100, created_from=created_from, updated_after=cursor)
    changes, new_cursor = status_changes(documents, cursor)
    seconds = time.perf_counter() - started
    return len(changes), sim.stats()["requests"] - before, seconds, new_cursor or cursor


async def get_cycle(hook: Any, sim: Any, ids: list[str]) -> tuple[int, float]:
    """One GET per document, 32 at a time; returns (API calls, seconds)."""
    slots = asyncio.Semaphore(32)

    async def one(document_id: str) -> None:
        async with slots:
            await hook.aget_outbound(document_id)

    before = sim.stats()["requests"]
    started = time.perf_counter()
    await asyncio.gather(*(one(document_id) for document_id in ids))
    return sim.stats()["requests"] - before, time.perf_counter() - started


async def measure(sim: Any, n: int) -> None:
    from inexchange.hooks.inexchange import InExchangeHook

    hook = InExchangeHook(concurrency=32)
    created_from = datetime.now(timezone.utc) - timedelta(minutes=1)
    started = time.perf_counter()
    ids = await seed(hook, n)
    print(f"seeded {len(ids)} documents in {time.perf_counter() - started:.0f} s; "
          f"latency now {LATENCY_MS} ms per request")
    sim.configure(latency_ms=LATENCY_MS)

    print(f"\n{'cycle':<22}{'changed':>9}{'API calls':>11}{'ceil(changed/100)':>19}{'seconds':>9}")
    cursor = None
    list_calls = []
    for cycle in range(4):
        changed, calls, seconds, cursor = await list_cycle(hook, sim, created_from, cursor)
        bound = max(1, math.ceil(changed / 100))
        label = "list, first (all)" if cycle == 0 else f"list, cursor #{cycle}"
        print(f"{label:<22}{changed:>9}{calls:>11}{bound:>19}{seconds:>9.2f}")
        if calls > bound:
            raise RuntimeError(f"{label}: {calls} calls for {changed} changes")
        if cycle:
            list_calls.append(calls)
        await asyncio.sleep(STEP_MS / 1000 / 3)
    get_calls, get_seconds = await get_cycle(hook, sim, ids)
    print(f"{'GET per document':<22}{'':>9}{get_calls:>11}{'':>19}{get_seconds:>9.2f}")
    await hook.aclose()
    mean = sum(list_calls) / len(list_calls)
    print(f"\nAPI calls per cycle: list with cursor {mean:.1f} on average, GET per document {get_calls}: "
          f"{get_calls / mean:.0f}x fewer (target >= 50)")


def main(n: int) -> None:
    from inexchange_devkit.simulator.testing import run_simulator

    with run_simulator(status_step_ms=STEP_MS, stop_rate=0.02, error_rate=0.01) as sim:
        os.environ["AIRFLOW_CONN_INEXCHANGE_DEFAULT"] = json.dumps({
            "conn_type": "inexchange", "host": sim.base_url, "password": sim.api_key, "extra": {"erp_id": "bench"}})
        asyncio.run(measure(sim, n))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
