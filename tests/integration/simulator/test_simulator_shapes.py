"""Documented shapes: undocumented document types and statuses, the notations of times, the variant switch.

Times are read with the strict parser of ``sim_client`` (written for these tests, independent of the
simulator's code): 3, 6 or 7 fractional digits, then ``Z``, ``+00:00``, Stockholm's offset or none.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from inexchange_devkit.simulator.config import SimulatorConfig
from inexchange_devkit.simulator.testing import SimulatorHandle, run_simulator
from inexchange_devkit.simulator.times import STYLES, format_time
from dispatch_testing.sim_client import Client, iso, micros, notation, send_body, ubl, uid, wait_for

pytestmark = pytest.mark.integration

DOCUMENTED_TYPES = {"Invoice", "CreditNote"}
DOCUMENTED_STATUSES = {"PendingInPlatform", "Pending", "Sent", "Delivered", "Error", "Stopped"}
FINAL = {"Sent", "Delivered", "Error", "Stopped"}
NOTATIONS = {(offset, digits) for offset in ("Z", "+00:00", "Stockholm", "none") for digits in (3, 6, 7)}
STOCKHOLM = ZoneInfo("Europe/Stockholm")


def clock(sim: SimulatorHandle) -> int:
    """Return the simulator's clock (``/_sim/health``) in epoch microseconds."""
    return micros(httpx.get(f"{sim.root_url}_sim/health").json()["time"])


def send_many(client: Client, prefix: str, count: int) -> dict[str, str]:
    """Send ``count`` documents with erpDocumentIds ``{prefix}-{n}``; return erpDocumentId -> document id."""
    kinds = ("Electronic", "Pdf", "Paper", None)
    return {
        f"{prefix}-{n}": client.send(f"{prefix}-{n}", kind=kinds[n % 4], root="CreditNote" if n % 5 == 0 else "Invoice")
        for n in range(count)
    }


# Undocumented document types and statuses ------------------------------------------------------


@pytest.mark.usefixtures("documented")
def test_unknown_types_and_statuses_occur_at_the_configured_share(sim: SimulatorHandle, client: Client) -> None:
    sim.configure(unknown_type_rate=0.2, unknown_status_rate=0.3, stop_rate=0.1, error_rate=0.1)
    sent = send_many(client, "SHARE", 150)
    documents = client.list(take=1000, includeErrorInfo=True)["documents"]
    assert sorted(d["id"] for d in documents) == sorted(sent.values())

    unknown_types = [d for d in documents if d["documentType"] not in DOCUMENTED_TYPES]
    unknown_statuses = [d for d in documents if {s["status"] for s in d["statusHistory"]} - DOCUMENTED_STATUSES]
    assert 15 <= len(unknown_types) <= 45
    assert 25 <= len(unknown_statuses) <= 65
    assert all(isinstance(d["documentType"], str) and d["documentType"] for d in unknown_types)
    stats = sim.stats()
    assert (stats["unknown_types"], stats["unknown_statuses"]) == (len(unknown_types), len(unknown_statuses))

    for document in documents:
        statuses = [entry["status"] for entry in document["statusHistory"]]
        # the timeline goes on to a final status; an unknown one is never final, never the last
        assert statuses[:2] == ["PendingInPlatform", "Pending"] and statuses[-1] in FINAL, statuses
        assert document["currentStatus"]["status"] == statuses[-1]
        assert len(statuses) == (4 if document in unknown_statuses else 3)
        assert all(status in DOCUMENTED_STATUSES for status in statuses[:2] + statuses[-1:])
        times = [micros(entry["time"]) for entry in document["statusHistory"]]
        assert times == sorted(times)

    # a listing filters on the type shown: the documented types and each undocumented one add up
    shown = {d["documentType"] for d in documents}
    counts = {name: client.list(take=1000, documentType=name)["totalCount"] for name in shown}
    assert counts == {name: sum(d["documentType"] == name for d in documents) for name in shown}
    assert sum(counts.values()) == len(documents)
    invoices = client.list(take=1000, documentType="invoice")["documents"]
    assert {d["documentType"] for d in invoices} == {"Invoice"}
    # the same seed and erpDocumentIds draw the same documents again
    sim.reset()
    sim.configure(unknown_type_rate=0.2, unknown_status_rate=0.3, stop_rate=0.1, error_rate=0.1)
    send_many(client, "SHARE", 150)
    again = client.list(take=1000)["documents"]
    assert sorted((d["erpDocumentId"], d["documentType"]) for d in again) == sorted(
        (d["erpDocumentId"], d["documentType"]) for d in documents)


@pytest.mark.usefixtures("documented")
def test_no_unknown_values_at_rate_zero(sim: SimulatorHandle, client: Client) -> None:
    send_many(client, "SHARE", 60)
    documents = client.list(take=1000)["documents"]
    assert {d["documentType"] for d in documents} <= DOCUMENTED_TYPES
    assert {s["status"] for d in documents for s in d["statusHistory"]} <= DOCUMENTED_STATUSES


def test_an_unknown_status_comes_between_pending_and_the_final_status(sim: SimulatorHandle, client: Client) -> None:
    sim.configure(unknown_status_rate=1.0, status_step_ms=200)
    document_id = client.send(uid())
    seen: list[str] = []

    def final() -> bool:
        status = client.document(document_id)["currentStatus"]["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        return status in FINAL

    wait_for(final)
    assert len(seen) == 4 and seen[:2] == ["PendingInPlatform", "Pending"] and seen[-1] == "Delivered", seen
    unknown = seen[2]
    assert unknown not in DOCUMENTED_STATUSES
    assert client.list(status=unknown)["totalCount"] == 0
    assert client.list(status="Delivered")["totalCount"] == 1


# Times ----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("documented")
def test_times_come_in_every_notation_and_denote_the_clock_instant(sim: SimulatorHandle, client: Client) -> None:
    before = clock(sim)
    sent = send_many(client, "TIME", 96)
    after = clock(sim)
    by_id = {d["id"]: d for d in client.list(take=1000)["documents"]}
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    instants = []
    for erp_id, document_id in sent.items():
        document = by_id[document_id]
        texts = [document["created"], document["currentStatus"]["time"]]
        texts += [entry["time"] for entry in document["statusHistory"]]
        # one notation per document; status step 0: every status at the creation instant
        assert len({notation(text) for text in texts}) == 1, texts
        assert len({micros(text) for text in texts}) == 1, texts
        instant = micros(document["created"])
        assert before <= instant <= after
        instants.append(instant)
        seen.setdefault(notation(document["created"]), document)
        assert client.document(document_id)["created"] == document["created"], erp_id
    assert set(seen) == NOTATIONS
    # every document its own instant, in the order sent
    assert instants == sorted(instants) and len(set(instants)) == len(instants)

    for (offset, digits), document in seen.items():
        written = document["currentStatus"]["time"]
        instant = micros(written)
        if offset == "none":
            assert written[-6] not in "+-" and not written.endswith("Z")
        if digits == 3:
            assert instant % 1000 == 0
        # the time as written is exactly the stored instant: a strict cursor at it excludes the document
        assert document["id"] not in {d["id"] for d in client.list(take=1000, updatedAfter=written)["documents"]}
        assert client.list(take=1000, updatedAfter=iso(instant - 1))["documents"][0]["id"] == document["id"]
        window = client.list(createdFrom=document["created"], createdTo=document["created"])["documents"]
        assert [d["id"] for d in window] == [document["id"]]


def test_request_times_are_read_in_every_notation(sim: SimulatorHandle, client: Client) -> None:
    document_id = client.send(uid())
    instant = micros(client.document(document_id)["currentStatus"]["time"])
    utc = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=instant)
    local = utc.astimezone(STOCKHOLM)
    base = utc.strftime("%Y-%m-%dT%H:%M:%S.%f")
    forms = [
        base + "Z",
        base + "+00:00",
        base,
        base + "0Z",
        base + "0",
        local.strftime("%Y-%m-%dT%H:%M:%S.%f") + local.strftime("%z")[:3] + ":" + local.strftime("%z")[3:],
        local.strftime("%Y-%m-%dT%H:%M:%S.%f0") + local.strftime("%z")[:3] + ":" + local.strftime("%z")[3:],
        (utc - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "-05:00",
        base.replace("T", " ") + "Z",
    ]
    for form in forms:
        listed = client.list(createdFrom=form, createdTo=form)["documents"]
        assert [d["id"] for d in listed] == [document_id], form
    millis = utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    assert client.list(createdFrom=millis + "Z", createdTo=iso(instant))["totalCount"] == 1
    valid_to = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "1"
    token = httpx.post(f"{sim.base_url}clientTokens/create", headers={"APIKey": sim.api_key},
                       json={"erpId": "erp-ticks", "validTo": valid_to})
    assert token.status_code == 200, token.text


def test_stockholm_offsets_follow_summer_time() -> None:
    styles = [index for index, (offset, _) in enumerate(STYLES) if offset == "Europe/Stockholm"]
    transitions = []
    for year in range(2024, 2031):
        for month in (3, 10):
            last = datetime(year, month, 31, 1, tzinfo=timezone.utc)
            last -= timedelta(days=(last.weekday() + 1) % 7)
            transitions.append(last)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    moments = [start + timedelta(hours=7 * n, microseconds=n * 1000) for n in range(0, 7 * 365 * 24 // 7)]
    moments += [t + timedelta(microseconds=delta) for t in transitions for delta in (-1000, 0, 1000)]
    for moment in moments:
        value = (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
        for style in styles:
            text = format_time(value, style)
            # the strict parser checks the offset against the time zone database
            assert micros(text) == value, text
            assert text[-6:] == moment.astimezone(STOCKHOLM).strftime("%z")[:3] + ":00", text


# The variant switch ---------------------------------------------------------------------------


def test_reply_variant_is_set_at_run_time_and_validated(sim: SimulatorHandle) -> None:
    assert sim.configure(reply_variant="LOOSE")["reply_variant"] == "loose"
    for bad in ({"reply_variant": "bogus"}, {"reply_variant": 1}, {"unknown_type_rate": 2},
                {"unknown_status_rate": -0.5}, {"unknown_status_rate": True}):
        response = httpx.post(f"{sim.root_url}_sim/config", json=bad)
        assert response.status_code == 400, bad
        assert next(iter(bad)) in response.json()["message"]
    settings = sim.configure(reply_variant="mixed", unknown_type_rate=0.5, unknown_status_rate=0)
    assert (settings["reply_variant"], settings["unknown_type_rate"], settings["unknown_status_rate"]) == (
        "mixed", 0.5, 0)


def test_the_environment_sets_the_default_variant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INEXCHANGE_SIM_VARIANT", raising=False)
    assert SimulatorConfig().reply_variant == "documented"
    assert (SimulatorConfig().unknown_type_rate, SimulatorConfig().unknown_status_rate) == (0.05, 0.05)
    monkeypatch.setenv("INEXCHANGE_SIM_VARIANT", "")
    assert SimulatorConfig().reply_variant == "documented"
    monkeypatch.setenv("INEXCHANGE_SIM_VARIANT", " Sparse ")
    assert SimulatorConfig().reply_variant == "sparse"
    assert SimulatorConfig(reply_variant="loose").reply_variant == "loose"

    monkeypatch.setenv("INEXCHANGE_SIM_VARIANT", "extra")
    with run_simulator() as fresh:
        settings = fresh.configure()
        token = httpx.post(f"{fresh.base_url}clientTokens/create", headers={"APIKey": fresh.api_key},
                           json={"erpId": "erp-env"}).json()
    assert settings["reply_variant"] == "extra"
    assert (settings["unknown_type_rate"], settings["unknown_status_rate"]) == (0.05, 0.05)
    assert isinstance(token["token"], str) and set(token) > {"token"}
    # the command line wins over the environment
    with run_simulator(reply_variant="sparse") as flagged:
        assert flagged.configure()["reply_variant"] == "sparse"

    monkeypatch.setenv("INEXCHANGE_SIM_VARIANT", "bogus")
    result = subprocess.run([sys.executable, "-m", "inexchange_devkit.simulator"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert "reply_variant" in result.stderr and "bogus" in result.stderr
    monkeypatch.delenv("INEXCHANGE_SIM_VARIANT")
    helped = subprocess.run([sys.executable, "-m", "inexchange_devkit.simulator", "--help"], capture_output=True, text=True,
                            timeout=30)
    assert helped.returncode == 0
    for word in ("--reply-variant", "INEXCHANGE_SIM_VARIANT", "documented", "sparse", "loose", "extra", "mixed",
                 "--unknown-type-rate", "--unknown-status-rate"):
        assert word in helped.stdout, word
    refused = subprocess.run([sys.executable, "-m", "inexchange_devkit.simulator", "--reply-variant", "tidy"],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "tidy" in refused.stderr


def test_attachment_uris_match_without_regard_to_case(sim: SimulatorHandle, client: Client) -> None:
    attachment = client.upload(b"%PDF-1.4 delivery note")
    body = send_body(client.upload(ubl("9901")), "ERP-9901")
    body["document"]["attachments"] = [attachment.upper().replace("URN:INEXCHANGEDOCUMENT:", "urn:inexchangedocument:")]
    response = client.http.post("documents/outbound", json=body)
    assert response.status_code == 201, response.text
    found = client.by_erp_id("ERP-9901")
    assert found.status_code == 200 and found.json()["erpDocumentId"] == "ERP-9901"


def test_reply_shapes_repeat_for_a_seed(sim: SimulatorHandle, client: Client) -> None:
    def run() -> list[dict[str, Any]]:
        sim.reset()
        sim.configure(reply_variant="mixed")
        return [client.lookup(orgNo=f"556000{n:04d}") for n in range(24)]

    first = run()
    assert run() == first
    assert len({frozenset(answer) for answer in first}) > 1
    assert all(type(answer["exactHit"]) is bool for answer in first)
