"""Fixtures of the simulator's contract tests: one simulator per module, reset before every test."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from inexchange.simulator.testing import SimulatorHandle, run_simulator
from sim_client import DEFAULTS, Client


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    """One simulator for the whole module."""
    with run_simulator(seed=42) as handle:
        yield handle


@pytest.fixture(autouse=True)
def clean(sim: SimulatorHandle) -> None:
    """Start every test from empty state and predictable settings (no faults, final status at once)."""
    sim.reset()
    sim.configure(**DEFAULTS)


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
