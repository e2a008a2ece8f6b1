"""The ``fuzz`` fault: hostile replies of many shapes, each request processed first or not at all, as drawn."""

from __future__ import annotations

import email.utils
import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from inexchange_devkit.simulator.testing import SimulatorHandle, run_simulator
from dispatch_testing.sim_client import FUZZ_SHAPES, Client, send_body, ubl, uid, wait_for

pytestmark = pytest.mark.integration

GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
LIST_ONLY = {"documents_string", "total_negative", "total_text"}
LOCATION_ONLY = {"location_garbage", "location_missing"}
LIST_SHAPES = [shape for shape in FUZZ_SHAPES if shape not in LOCATION_ONLY]
SEND_SHAPES = [shape for shape in FUZZ_SHAPES if shape not in LIST_ONLY | {"status_number"}]


def fuzz(sim: SimulatorHandle, *shapes: str, **settings: Any) -> None:
    """Fault every API request with the ``fuzz`` kind, drawing from ``shapes``."""
    sim.configure(fault_rate=1.0, faults=["fuzz"], fuzz_shapes=list(shapes), **settings)


def calm(sim: SimulatorHandle) -> None:
    """Stop faulting."""
    sim.configure(fault_rate=0.0)


def attempt(call: Callable[[], httpx.Response]) -> httpx.Response | httpx.HTTPError:
    """Return the response of ``call()``, or the transport error it raised."""
    try:
        return call()
    except httpx.HTTPError as exc:
        return exc


def bogus_retry_after(value: str) -> bool:
    """Tell whether ``Retry-After`` is unusable: not a delay of at most a day, nor a date within the next day."""
    if value.isdigit():
        return int(value) > 86_400
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return True
    now = datetime.now(timezone.utc)
    return not now - timedelta(seconds=5) <= moment <= now + timedelta(days=1)


def check_list_reply(shape: str, response: httpx.Response, processed: bool, real_ids: set[str]) -> None:
    """Check a faulted ``documents/outbound/list`` reply against the documentation of ``shape``."""
    content_type = response.headers.get("content-type", "")
    assert "location" not in response.headers
    if shape == "no_content":
        assert (response.status_code, response.content) == (204, b"")
        return
    if shape == "retry_after":
        assert response.status_code in (429, 503)
        assert bogus_retry_after(response.headers["retry-after"]), response.headers["retry-after"]
        assert "message" in response.json()
        return
    assert response.status_code == 200
    body = response.content
    if shape in ("html_page", "html_error_200"):
        assert content_type.startswith("text/html")
        assert body.startswith(b"<!DOCTYPE html>")
        assert (b"Internal Server Error" in body) == (shape == "html_error_200")
        return
    if shape == "xml":
        assert content_type.startswith("application/xml")
        assert ElementTree.fromstring(body).tag == "Error"
        return
    if shape == "octet_stream":
        assert content_type == "application/octet-stream"
        assert 64 <= len(body) <= 4096
        return
    assert content_type == "application/json; charset=utf-8"
    if shape == "invalid_utf8":
        with pytest.raises(UnicodeDecodeError):
            body.decode("utf-8")
        return
    if shape == "truncated_json":
        assert body.startswith(b'{"documents": [')
        with pytest.raises(json.JSONDecodeError):
            json.loads(body)
        return
    if shape == "nested_json":
        assert body == b"[" * 100_000 + b"]" * 100_000
        with pytest.raises(RecursionError):
            json.loads(body)
        return
    parsed = json.loads(body)
    if shape == "nulls":
        assert parsed["documents"] and all(item is None for item in parsed["documents"])
        return
    if shape == "missing_fields":
        assert "documents" not in parsed and isinstance(parsed["totalCount"], int)
        return
    if shape == "documents_string":
        assert isinstance(parsed["documents"], str)
        return
    page = parsed[0] if shape == "json_list" else parsed
    assert isinstance(parsed, list) == (shape == "json_list")
    documents = page["documents"]
    assert documents
    if processed:
        assert {d["id"] for d in documents} == real_ids
    else:
        assert all(d["erpDocumentId"].startswith("fuzz-") for d in documents)
    if shape == "status_number":
        assert all(isinstance(d["currentStatus"], int) for d in documents)
    if shape == "total_negative":
        assert page["totalCount"] < 0
    if shape == "total_text":
        assert isinstance(page["totalCount"], str)


@pytest.mark.parametrize("shape", [shape for shape in LIST_SHAPES if shape != "drip"])
def test_each_shape_on_a_listing(sim: SimulatorHandle, client: Client, shape: str) -> None:
    real_ids = {client.send(uid()), client.send(uid())}
    fuzz(sim, shape)
    start = sim.stats()["requests"]
    seen = set()
    for _ in range(12):
        before = sim.stats()
        response = client.http.post("documents/outbound/list", json={})
        stats = sim.stats()
        drawn = stats["fuzz_recent"][-1]
        assert drawn == {"method": "POST", "path": "documents/outbound/list", "shape": shape,
                         "processed": drawn["processed"]}
        processed = drawn["processed"]
        # a processed listing reached the store; the other never did
        assert stats["list_requests"] - before["list_requests"] == int(processed)
        check_list_reply(shape, response, processed, real_ids)
        if shape == "retry_after" and response.status_code == 429:
            assert not processed
        seen.add(processed)
        if seen == {True, False}:
            break
    assert seen == {True, False}
    stats = sim.stats()
    assert stats["faults"]["fuzz"] == stats["fuzz_shapes"][shape] == stats["requests"] - start
    assert sum(stats["fuzz_shapes"].values()) == stats["fuzz_shapes"][shape]
    assert {kind: count for kind, count in stats["faults"].items() if count} == {"fuzz": stats["fuzz_shapes"][shape]}


@pytest.mark.parametrize("shape", SEND_SHAPES)
def test_each_shape_on_a_send_is_processed_or_not_as_drawn(sim: SimulatorHandle, client: Client, shape: str) -> None:
    uris = [client.upload(ubl(f"{shape}-{n}")) for n in range(12)]
    fuzz(sim, shape, drip_max_s=0.3)
    outcomes: dict[str, bool] = {}
    for uri in uris:
        erp_id = uid()
        reply = attempt(lambda: client.http.post("documents/outbound", json=send_body(uri, erp_id)))
        drawn = sim.stats()["fuzz_recent"][-1]
        assert (drawn["path"], drawn["shape"]) == ("documents/outbound", shape)
        outcomes[erp_id] = drawn["processed"]
        if shape == "drip":
            assert isinstance(reply, httpx.RemoteProtocolError)
        else:
            assert isinstance(reply, httpx.Response)
            location = reply.headers.get("location")
            # never an answer the client could take for a successful send
            assert location is None or not re.fullmatch(rf"{re.escape(sim.base_url)}documents/outbound/{GUID}", location)
            assert (location is not None) == (shape == "location_garbage")
            if shape == "retry_after":
                assert reply.status_code in (429, 503)
                assert bogus_retry_after(reply.headers["retry-after"])
                if reply.status_code == 429:
                    assert not drawn["processed"]
            elif shape in ("no_content", "html_error_200"):
                assert reply.status_code == (204 if shape == "no_content" else 200)
            else:
                assert reply.status_code == 201
        if len(set(outcomes.values())) == 2 and len(outcomes) >= 4:
            break
    calm(sim)
    stats = sim.stats()
    assert set(outcomes.values()) == {True, False}
    # a send processed before its hostile reply is counted and stored; one faulted before is not
    assert stats["sends"] == {erp_id: 1 for erp_id, processed in outcomes.items() if processed}
    assert stats["fuzz_processed"] == sum(outcomes.values())
    assert stats["fuzz_shapes"][shape] == stats["faults"]["fuzz"] == len(outcomes)
    for erp_id, processed in outcomes.items():
        assert client.by_erp_id(erp_id).status_code == (200 if processed else 404)


def test_location_shapes_on_an_upload(sim: SimulatorHandle, client: Client) -> None:
    for shape in ("location_garbage", "location_missing"):
        sim.reset()
        fuzz(sim, shape)
        replies = [client.http.post("documents", content=ubl("8001")) for _ in range(8)]
        stats = sim.stats()
        assert all(reply.status_code == 201 and reply.content == b"" for reply in replies)
        for reply in replies:
            location = reply.headers.get("location")
            assert (location is None) == (shape == "location_missing")
            assert location is None or not re.fullmatch(f"urn:inexchangedocument:{GUID}", location)
        # processed uploads are stored, the others are not
        assert stats["documents_uploaded"] == stats["fuzz_processed"] == sum(r["processed"] for r in stats["fuzz_recent"])
        assert 0 < stats["documents_uploaded"] < 8


def test_other_routes_get_shapes_of_their_own_answers(sim: SimulatorHandle, client: Client) -> None:
    document_id = client.send("ERP-FUZZ-ROUTES")
    requests: dict[str, Callable[[], httpx.Response]] = {
        "token": lambda: httpx.post(f"{sim.base_url}clientTokens/create", headers={"APIKey": sim.api_key},
                                    json={"erpId": "erp-fuzz"}),
        "document": lambda: client.http.get(f"documents/outbound/{document_id}"),
        "byerpid": lambda: client.by_erp_id("ERP-FUZZ-ROUTES"),
        "parties": lambda: client.http.post("buyerparties/lookup", json={"PartyId": "p", "orgNo": "5560000000"}),
    }
    fuzz(sim, "nulls")
    token = requests["token"]()
    assert token.json() == {"token": None}
    assert requests["parties"]().json() == {"parties": [None], "potentialMatches": 0, "exactHit": True}
    for name in ("document", "byerpid"):
        body = requests[name]().json()
        assert body["currentStatus"] is None and body["recipientInformation"] is None
        assert body["statusHistory"] and all(entry is None for entry in body["statusHistory"])
    fuzz(sim, "missing_fields")
    assert requests["token"]().json() == {}
    for name in ("document", "byerpid"):
        body = requests[name]().json()
        assert not {"id", "currentStatus", "statusHistory"} & set(body)
    fuzz(sim, "status_number")
    seen = set()
    for _ in range(12):
        body = requests["document"]().json()
        processed = sim.stats()["fuzz_recent"][-1]["processed"]
        assert body["currentStatus"] == 3
        assert (body["id"] == document_id) == processed
        assert body["erpDocumentId"].startswith("fuzz-") != processed
        seen.add(processed)
    assert seen == {True, False}
    sim.reset()
    fuzz(sim, "json_list")
    replies = [requests["token"]() for _ in range(8)]
    stats = sim.stats()
    assert all(isinstance(reply.json(), list) and isinstance(reply.json()[0]["token"], str) for reply in replies)
    assert stats["tokens_created"] == stats["fuzz_processed"] == sum(r["processed"] for r in stats["fuzz_recent"])
    assert stats["fuzz_shapes"]["json_list"] == 8


def test_every_shape_is_drawn_from_the_full_set_and_counted(sim: SimulatorHandle, client: Client) -> None:
    uris = [client.upload(ubl(str(n))) for n in range(150)]
    document_id = client.send(uid())
    fuzz(sim, *FUZZ_SHAPES, drip_max_s=0.1)
    calls: list[Callable[[], httpx.Response]] = [
        lambda: client.http.post("documents/outbound/list", json={}),
        lambda: client.http.post("documents", content=ubl("9001")),
        lambda: client.http.post("documents/outbound", json=send_body(uris.pop(), uid())),
        lambda: client.http.get(f"documents/outbound/{document_id}"),
    ]
    made = 0
    while made < 600:
        attempt(calls[made % len(calls)])
        made += 1
        if made % 20 == 0 and all(sim.stats()["fuzz_shapes"].values()):
            break
    stats = sim.stats()
    assert all(stats["fuzz_shapes"][shape] > 0 for shape in FUZZ_SHAPES), stats["fuzz_shapes"]
    assert set(stats["fuzz_shapes"]) == set(FUZZ_SHAPES)
    assert sum(stats["fuzz_shapes"].values()) == stats["faults"]["fuzz"] == made
    assert len(stats["fuzz_recent"]) == min(made, 100)
    recent = stats["fuzz_recent"]
    assert {entry["path"] for entry in recent} == {
        "documents/outbound/list", "documents", "documents/outbound", f"documents/outbound/{document_id}"}
    # shapes fit their routes
    assert not {e["shape"] for e in recent if e["path"] != "documents/outbound/list"} & LIST_ONLY
    assert not {e["shape"] for e in recent if e["path"] not in ("documents", "documents/outbound")} & LOCATION_ONLY
    assert 0 < stats["fuzz_processed"] < made


def test_fuzz_draws_are_repeatable_for_a_seed(sim: SimulatorHandle, client: Client) -> None:
    def sequence() -> list[tuple[str, bool]]:
        sim.reset()
        fuzz(sim, *FUZZ_SHAPES, drip_max_s=0.1)
        for _ in range(30):
            attempt(lambda: client.http.post("documents/outbound/list", json={}))
        return [(entry["shape"], entry["processed"]) for entry in sim.stats()["fuzz_recent"]]

    first = sequence()
    assert len({shape for shape, _ in first}) > 5
    assert sequence() == first


def test_a_drip_sends_a_byte_every_half_second_until_drip_max_s(sim: SimulatorHandle, client: Client) -> None:
    client.send(uid())
    fuzz(sim, "drip", drip_max_s=2.2)
    arrivals: list[float] = []
    received = b""
    started = time.monotonic()
    # a per-read timeout longer than the drip's pace never fires
    with pytest.raises(httpx.RemoteProtocolError):
        with client.http.stream("POST", "documents/outbound/list", json={},
                                timeout=httpx.Timeout(10.0, read=2.0)) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json; charset=utf-8"
            announced = int(response.headers["content-length"])
            for chunk in response.iter_raw():
                arrivals.append(time.monotonic())
                received += chunk
    elapsed = time.monotonic() - started
    assert 2.0 <= elapsed < 5.0
    assert 4 <= len(received) <= 6 < announced
    assert received.startswith(b'{"')
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]
    assert gaps and min(gaps) >= 0.35
    assert sim.stats()["dripping"] == 0


def test_a_drip_ends_when_its_client_hangs_up_and_when_the_server_stops(capfd: pytest.CaptureFixture[str]) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool, run_simulator() as fresh:
        api = Client(fresh)
        try:
            fuzz(fresh, "drip")
            assert fresh.configure()["drip_max_s"] == 60
            with api.http.stream("POST", "documents/outbound/list", json={}) as response:
                chunks = response.iter_raw()
                assert len(next(chunks)) == 1
                assert fresh.stats()["dripping"] == 1
            # the client hung up: the server stops dripping at its next byte
            wait_for(lambda: fresh.stats()["dripping"] == 0, timeout=3)

            def hang() -> bytes:
                with api.http.stream("POST", "documents/outbound/list", json={}) as pending:
                    return pending.read()

            hanging = pool.submit(hang)
            wait_for(lambda: fresh.stats()["dripping"] == 1, timeout=3)
            stopping = time.monotonic()
        finally:
            api.close()
    assert time.monotonic() - stopping < 3.0
    assert fresh.process.returncode == 0
    with pytest.raises(httpx.HTTPError):
        hanging.result(timeout=5)
    assert capfd.readouterr().err == ""


def test_fuzz_leaves_sim_routes_and_held_requests_alone(
    sim: SimulatorHandle, client: Client, background: ThreadPoolExecutor
) -> None:
    client.send(uid())
    fuzz(sim, *FUZZ_SHAPES, drip_max_s=0.1)
    for route in ("health", "stats", "tokens", "config"):
        response = httpx.get(f"{sim.root_url}_sim/{route}")
        assert response.status_code == 200 and isinstance(response.json(), dict), route
    key = sim.hold("documents/outbound/list")
    pending = background.submit(client.http.post, "documents/outbound/list", json={})
    sim.wait_held(key)
    sim.release()
    held = pending.result(timeout=5)
    assert held.status_code == 200 and held.json()["totalCount"] == 1
    assert sim.stats()["faults"]["fuzz"] == 0
    attempt(lambda: client.http.post("documents/outbound/list", json={}))
    assert sim.stats()["faults"]["fuzz"] == 1
    assert sim.stats()["fuzz_recent"][0]["path"] == "documents/outbound/list"


def test_fuzz_and_the_other_kinds_share_the_fault_rate(sim: SimulatorHandle, client: Client) -> None:
    sim.configure(fault_rate=1.0, faults=["5xx"])
    for _ in range(5):
        assert client.http.post("documents/outbound/list", json={}).status_code in (500, 503)
    stats = sim.stats()
    assert stats["faults"]["5xx"] == 5 and stats["faults"]["fuzz"] == 0
    assert not any(stats["fuzz_shapes"].values()) and stats["fuzz_recent"] == []
    sim.reset()
    sim.configure(fault_rate=1.0, faults=["5xx", "fuzz"], fuzz_shapes=["xml"])
    replies = [client.http.post("documents/outbound/list", json={}) for _ in range(30)]
    stats = sim.stats()
    xml = sum(reply.headers.get("content-type", "").startswith("application/xml") for reply in replies)
    assert 0 < stats["faults"]["fuzz"] < 30
    assert stats["faults"]["fuzz"] == stats["fuzz_shapes"]["xml"] == xml
    assert stats["faults"]["fuzz"] + stats["faults"]["5xx"] == 30


def test_a_request_no_enabled_shape_fits_is_not_faulted(sim: SimulatorHandle, client: Client) -> None:
    uri = client.upload(ubl("8101"))
    fuzz(sim, "location_missing")
    listing = client.http.post("documents/outbound/list", json={})
    assert listing.status_code == 200
    assert (listing.json()["documents"], listing.json()["totalCount"]) == ([], 0)
    assert sim.stats()["faults"]["fuzz"] == 0
    sent = client.http.post("documents/outbound", json=send_body(uri, "ERP-8101"))
    assert sent.status_code == 201 and "location" not in sent.headers
    assert sim.stats()["faults"]["fuzz"] == 1
    fuzz(sim)
    assert client.http.post("documents/outbound/list", json={}).status_code == 200
    assert sim.stats()["faults"]["fuzz"] == 1


def test_fuzz_settings_are_validated(sim: SimulatorHandle) -> None:
    url = f"{sim.root_url}_sim/config"
    for bad in ({"fuzz_shapes": ["bogus"]}, {"fuzz_shapes": [3]}, {"drip_max_s": -1}, {"faults": ["fuzzy"]}):
        response = httpx.post(url, json=bad)
        assert response.status_code == 400, bad
    assert sim.configure(fuzz_shapes="drip, XML")["fuzz_shapes"] == ["drip", "xml"]
    assert sim.configure(fuzz_shapes=[])["fuzz_shapes"] == []


def test_fuzz_settings_from_the_command_line() -> None:
    with run_simulator() as fresh:
        defaults = fresh.configure()
    with run_simulator(faults=["fuzz"], extra_args=["--fuzz-shapes", "drip,xml", "--drip-max-s", "5"]) as fresh:
        chosen = fresh.configure()
    assert defaults["fuzz_shapes"] == list(FUZZ_SHAPES)
    assert "fuzz" not in defaults["faults"] and defaults["drip_max_s"] == 60
    assert (chosen["faults"], chosen["fuzz_shapes"], chosen["drip_max_s"]) == (["fuzz"], ["drip", "xml"], 5)
    result = subprocess.run([sys.executable, "-m", "inexchange_devkit.simulator", "--fuzz-shapes", "xml,bogus"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "bogus" in result.stderr
