"""Fixtures of the simulator's contract tests: one simulator per module, reset before every test.

The simulators inherit the environment, so ``INEXCHANGE_SIM_VARIANT`` chooses their reply variant; a
test that checks documented-mode specifics (fields the client does not use) asks for the
``documented`` fixture, which pins ``reply_variant="documented"`` for that test.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from inexchange_devkit.simulator.testing import SimulatorHandle, run_simulator
from dispatch_testing.sim_client import DEFAULTS, Client


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    """One simulator for the whole module."""
    with run_simulator(seed=42) as handle:
        yield handle


@pytest.fixture(scope="module")
def started_variant(sim: SimulatorHandle) -> str:
    """The reply variant the module's simulator started with (from the environment)."""
    return str(sim.configure()["reply_variant"])


@pytest.fixture(autouse=True)
def clean(sim: SimulatorHandle, started_variant: str) -> None:
    """Start every test from empty state and predictable settings (no faults, final status at once)."""
    sim.reset()
    sim.configure(**DEFAULTS, reply_variant=started_variant)


@pytest.fixture
def documented(sim: SimulatorHandle, clean: None) -> None:
    """Pin the documented reply shapes for a test that checks fields the client does not use."""
    sim.configure(reply_variant="documented")


@pytest.fixture
def client(sim: SimulatorHandle) -> Iterator[Client]:
    """A client with a fresh token."""
    api = Client(sim)
    yield api
    api.close()


@pytest.fixture
def background(sim: SimulatorHandle) -> Iterator[ThreadPoolExecutor]:
    """Threads for requests that the simulator holds; holds are released before the threads are joined."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        try:
            yield pool
        finally:
            sim.release()
