"""The hook against hostile replies from a real server (the simulator over loopback).

An HTML error page from a gateway, a success reply cut off in the middle and sent as text, and a
reply announcing 64 MiB: each call fails cleanly with an InExchange error naming what was wrong,
after its retries, within seconds, and without holding the huge body in memory; sync and async.
"""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from inexchange.exceptions import InExchangeError
from inexchange.hooks.inexchange import InExchangeHook

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: what the error says for each kind of hostile reply
EXPECTED = {"html": "Bad Gateway", "garbled": "not JSON", "huge": "refused"}
ATTEMPTS = 2


@pytest.fixture(scope="module")
def simulator() -> Iterator[Any]:
    from inexchange.simulator.testing import run_simulator

    with run_simulator(seed=4) as sim:
        yield sim


@pytest.fixture
def hook(simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[InExchangeHook]:
    simulator.configure(fault_rate=0.0)
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", json.dumps({
        "conn_type": "inexchange", "host": simulator.base_url, "password": simulator.api_key,
        "extra": {"erp_id": "hostile"}}))
    hook = InExchangeHook(max_attempts=ATTEMPTS, backoff=0.01, max_backoff=0.05)
    yield hook
    simulator.configure(fault_rate=0.0)
    hook.close()


def fail_once(hook: InExchangeHook, mode: str, simulator: Any, kind: str) -> tuple[InExchangeError, int]:
    """Get a client token with no fault, then list once with every request faulted.

    Returns the error and how many faults the list call met (counted before the token is revoked).
    """
    if mode == "sync":
        hook.list_outbound()
        before = simulator.stats()["faults"][kind]
        simulator.configure(fault_rate=1.0, faults=[kind])
        with pytest.raises(InExchangeError) as raised:
            hook.list_outbound()
        return raised.value, simulator.stats()["faults"][kind] - before

    async def run() -> tuple[InExchangeError, int]:
        try:
            await hook.alist_outbound()
            before = simulator.stats()["faults"][kind]
            simulator.configure(fault_rate=1.0, faults=[kind])
            with pytest.raises(InExchangeError) as raised:
                await hook.alist_outbound()
            return raised.value, simulator.stats()["faults"][kind] - before
        finally:
            simulator.configure(fault_rate=0.0)
            await hook.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("kind", list(EXPECTED))
def test_a_hostile_reply_fails_the_call_cleanly(kind: str, mode: str, hook: InExchangeHook, simulator: Any) -> None:
    tracemalloc.start()
    started = time.monotonic()
    try:
        error, faults = fail_once(hook, mode, simulator, kind)
        took = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    described = f"{error} ({error.__cause__})"  # a transport error keeps httpx's detail as its cause
    assert EXPECTED[kind] in described, described
    assert faults == ATTEMPTS  # retried, then given up
    assert took < 10, f"{kind} took {took:.1f} s"
    assert peak < 32 * 1024 * 1024, f"{kind}: {peak / 2**20:.0f} MiB held"
