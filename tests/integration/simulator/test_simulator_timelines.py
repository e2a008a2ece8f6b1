"""Slow and stuck documents: timelines drawn per erpDocumentId when a document is sent, never changed after.

The timelines are read from ``statusHistory`` and ``created`` (fields the client does not use), so
these tests pin the documented reply shapes.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import pytest

from inexchange_devkit.simulator.testing import SimulatorHandle, run_simulator
from dispatch_testing.sim_client import Client, status_times, uid, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("documented")]

FINAL = ("Delivered", "Sent", "Stopped", "Error")


def final_document(client: Client, document_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """Wait until the document reaches a final status and return it."""
    return wait_for(
        lambda: (d := client.document(document_id))["currentStatus"]["status"] in FINAL and d, timeout=timeout
    )


def steps(document: dict[str, Any]) -> tuple[int, int]:
    """Return the microseconds from created to Pending and from Pending to the final status."""
    times = status_times(document)
    final = times[document["currentStatus"]["status"]]
    return times["Pending"] - times["PendingInPlatform"], final - times["Pending"]


def test_a_slow_document_takes_slow_factor_times_the_status_step(sim: SimulatorHandle, client: Client) -> None:
    sim.configure(status_step_ms=100)
    normal = client.send(uid())
    sim.configure(slow_rate=1.0, slow_factor=3)
    slow = client.send(uid())
    assert client.document(slow)["currentStatus"]["status"] == "PendingInPlatform"

    assert steps(final_document(client, normal)) == (100_000, 100_000)
    assert steps(final_document(client, slow)) == (300_000, 300_000)
    stats = sim.stats()
    assert (stats["slow_documents"], stats["stuck_documents"], stats["stuck_pending"]) == (1, 0, [])


def test_a_stuck_document_stays_pending_for_stuck_ms_more(sim: SimulatorHandle, client: Client) -> None:
    sim.configure(status_step_ms=100, stuck_rate=1.0, stuck_ms=1500)
    erp_id = uid()
    document_id = client.send(erp_id)
    wait_for(lambda: client.document(document_id)["currentStatus"]["status"] == "Pending")
    stats = sim.stats()
    assert stats["stuck_pending"] == [erp_id]
    assert (stats["stuck_documents"], stats["slow_documents"]) == (1, 0)

    final = final_document(client, document_id)
    assert final["currentStatus"]["status"] == "Delivered"
    assert steps(final) == (100_000, 1_600_000)
    assert [entry["status"] for entry in final["statusHistory"]] == ["PendingInPlatform", "Pending", "Delivered"]
    stats = sim.stats()
    assert stats["stuck_pending"] == []
    assert stats["stuck_documents"] == 1


def test_slow_and_stuck_add_up(sim: SimulatorHandle, client: Client) -> None:
    sim.configure(status_step_ms=50, slow_rate=1.0, slow_factor=2, stuck_rate=1.0, stuck_ms=200)
    document = final_document(client, client.send(uid()))
    assert steps(document) == (100_000, 300_000)
    assert sim.stats()["slow_documents"] == 1


def test_a_stuck_document_is_found_by_a_client_that_looks_again_later(sim: SimulatorHandle, client: Client) -> None:
    sim.configure(status_step_ms=100, stuck_rate=1.0, stuck_ms=3000)
    document_id = client.send(uid())
    created = client.document(document_id)["created"]
    window = {"createdFrom": created, "createdTo": created}
    pending = wait_for(lambda: (d := client.document(document_id))["currentStatus"]["status"] == "Pending" and d)
    cursor = pending["currentStatus"]["time"]
    sim.configure(stuck_rate=0.0)
    for _ in range(3):
        client.send(uid())

    # the client gives up waiting: nothing changed since its cursor
    assert client.list(**window, updatedAfter=cursor) == {"documents": [], "totalCount": 0}

    final = final_document(client, document_id)
    later = client.list(**window, updatedAfter=cursor)
    assert [d["id"] for d in later["documents"]] == [document_id]
    assert later["documents"][0]["currentStatus"] == final["currentStatus"]
    assert document_id in {d["id"] for d in client.list(updatedAfter=cursor)["documents"]}


def test_slow_and_stuck_are_drawn_per_erp_document_id(sim: SimulatorHandle, client: Client) -> None:
    erp_ids = [f"TIMELINE-{number}" for number in range(40)]

    def draw() -> tuple[set[str], set[str], dict[str, Any]]:
        sim.reset()
        sim.configure(status_step_ms=20, slow_rate=0.5, slow_factor=5, stuck_rate=0.3, stuck_ms=100)
        sent = {erp_id: client.send(erp_id, number=f"{erp_id}-{uid()}") for erp_id in erp_ids}
        slow, stuck = set(), set()
        for erp_id, document_id in sent.items():
            to_pending, to_final = steps(final_document(client, document_id))
            step = to_pending
            assert step in (20_000, 100_000), erp_id
            assert to_final in (step, step + 100_000), erp_id
            if step == 100_000:
                slow.add(erp_id)
            if to_final > step:
                stuck.add(erp_id)
        return slow, stuck, sim.stats()

    slow, stuck, stats = draw()
    assert 8 <= len(slow) <= 32
    assert 4 <= len(stuck) <= 24
    assert stats["slow_documents"] == len(slow)
    assert stats["stuck_documents"] == len(stuck)
    again = draw()
    assert (again[0], again[1]) == (slow, stuck)


def test_timelines_are_fixed_when_a_document_is_sent(sim: SimulatorHandle, client: Client) -> None:
    sim.configure(status_step_ms=150)
    document_id = client.send(uid())
    first = client.document(document_id)
    sim.configure(status_step_ms=60_000, slow_rate=1.0, slow_factor=50, stuck_rate=1.0, stuck_ms=60_000)
    changed = client.send(uid())

    final = final_document(client, document_id)
    assert steps(final) == (150_000, 150_000)
    assert final["created"] == first["created"]
    assert client.document(changed)["currentStatus"]["status"] == "PendingInPlatform"
    stats = sim.stats()
    assert (stats["slow_documents"], stats["stuck_documents"]) == (1, 1)
    assert len(stats["stuck_pending"]) == 1
    sim.configure(status_step_ms=0, slow_rate=0.0, stuck_rate=0.0)
    assert client.document(changed)["currentStatus"]["status"] == "PendingInPlatform"
    assert client.document(document_id)["currentStatus"] == final["currentStatus"]


@pytest.mark.parametrize(
    "bad", [{"slow_rate": 1.5}, {"slow_rate": -0.1}, {"slow_factor": 0.5}, {"slow_factor": "x"},
            {"stuck_rate": 2}, {"stuck_ms": -1}, {"stuck_ms": True}]
)
def test_timeline_settings_are_validated(sim: SimulatorHandle, bad: dict[str, Any]) -> None:
    before = sim.configure()
    response = httpx.post(f"{sim.root_url}_sim/config", json=bad)
    assert response.status_code == 400
    assert next(iter(bad)) in response.json()["message"]
    assert sim.configure() == before


def test_timeline_settings_from_the_command_line() -> None:
    args = ["--slow-rate", "0.25", "--slow-factor", "4", "--stuck-rate", "0.5", "--stuck-ms", "1500"]
    with run_simulator(extra_args=args) as fresh:
        settings = fresh.configure()
        changed = fresh.configure(slow_rate=0.1, stuck_ms=10)
    assert {name: settings[name] for name in ("slow_rate", "slow_factor", "stuck_rate", "stuck_ms")} == {
        "slow_rate": 0.25, "slow_factor": 4, "stuck_rate": 0.5, "stuck_ms": 1500}
    assert (changed["slow_rate"], changed["stuck_ms"], changed["slow_factor"]) == (0.1, 10, 4)
    result = subprocess.run(
        [sys.executable, "-m", "inexchange_devkit.simulator", "--slow-factor", "0.5"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "slow_factor" in result.stderr


def test_a_fresh_simulator_has_no_slow_or_stuck_documents() -> None:
    with run_simulator() as fresh:
        settings = fresh.configure()
    assert (settings["slow_rate"], settings["stuck_rate"]) == (0.0, 0.0)
    assert (settings["slow_factor"], settings["stuck_ms"]) == (10.0, 60_000.0)
