"""Contract of the InExchange simulator, exercised over loopback HTTP like a real client would."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from inexchange_devkit.simulator.testing import SimulatorHandle, run_simulator
from dispatch_testing.sim_client import Client, iso, micros, order_key, send_body, ubl, uid, wait_for

pytestmark = pytest.mark.integration

UNAUTHORIZED = {"message": "Authorization has been denied for this request."}
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


# Command line ---------------------------------------------------------------------------------


def test_cli_prints_one_url_line_writes_url_file_and_stops_on_sigterm(tmp_path: Path) -> None:
    url_file = tmp_path / "url.txt"
    command = [sys.executable, "-m", "inexchange_devkit.simulator", "--port", "0", "--seed", "1"]
    command += ["--data-dir", str(tmp_path / "data"), "--url-file", str(url_file)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert re.fullmatch(r"SIMULATOR_URL=http://127\.0\.0\.1:\d+/v1/api/\n", line)
        url = line.split("=", 1)[1].strip()
        assert url_file.read_text().strip() == url
        assert httpx.get(url.replace("v1/api/", "_sim/health")).status_code == 200
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert rest == ""
    assert process.returncode == 0


def test_cli_rejects_unknown_fault_kind() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "inexchange_devkit.simulator", "--faults", "5xx,bogus"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "bogus" in result.stderr


def test_handle_urls(sim: SimulatorHandle) -> None:
    assert sim.base_url.endswith("/v1/api/")
    assert sim.base_url == f"{sim.root_url}v1/api/"
    assert httpx.get(f"{sim.root_url}_sim/health").json()["status"] == "ok"


# Authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"APIKey": "wrong"}])
def test_token_create_needs_the_api_key(sim: SimulatorHandle, headers: dict[str, str]) -> None:
    response = httpx.post(f"{sim.base_url}clientTokens/create", headers=headers, json={"erpId": "erp-1"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == UNAUTHORIZED


def test_token_create_validates_its_body(sim: SimulatorHandle) -> None:
    url = f"{sim.base_url}clientTokens/create"
    headers = {"APIKey": sim.api_key}
    missing = httpx.post(url, headers=headers, json={})
    assert missing.status_code == 400
    assert missing.json()["message"] == "The request is invalid."
    assert "erpId" in missing.json()["modelState"]
    bad_time = httpx.post(url, headers=headers, json={"erpId": "e", "validTo": "tomorrow"})
    assert bad_time.status_code == 400
    assert "validTo" in bad_time.json()["modelState"]


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_api_calls_need_a_live_client_token(sim: SimulatorHandle, token: str | None) -> None:
    headers = {"ClientToken": token} if token else {}
    for method, path in [
        ("POST", "buyerparties/lookup"),
        ("POST", "documents"),
        ("POST", "documents/outbound"),
        ("POST", "documents/outbound/list"),
        ("GET", f"documents/outbound/{uuid.uuid4()}"),
        ("POST", "invoices/outbound/byerpid/x"),
    ]:
        response = httpx.request(method, f"{sim.base_url}{path}", headers=headers, content=b"{}")
        assert response.status_code == 401, path
        assert response.json() == UNAUTHORIZED


def test_api_key_alone_does_not_open_the_api(sim: SimulatorHandle) -> None:
    response = httpx.post(f"{sim.base_url}documents/outbound/list", headers={"APIKey": sim.api_key}, json={})
    assert response.status_code == 401


def test_revoke_with_api_key_ends_the_token(sim: SimulatorHandle, client: Client) -> None:
    assert client.http.post("documents/outbound/list", json={}).status_code == 200
    revoke = httpx.post(
        f"{sim.base_url}clientTokens/revoke", headers={"APIKey": sim.api_key}, json={"clientToken": client.token}
    )
    assert revoke.status_code in (200, 204)
    response = client.http.post("documents/outbound/list", json={})
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_revoke_with_a_client_token_of_the_same_erp_id_only(sim: SimulatorHandle, client: Client) -> None:
    stranger = Client(sim, erp_id="erp-stranger")
    try:
        denied = stranger.http.post("clientTokens/revoke", json={"clientToken": client.token})
    finally:
        stranger.close()
    assert denied.status_code == 401
    assert client.http.post("clientTokens/revoke", json={"clientToken": client.token}).status_code in (200, 204)
    assert client.http.post("documents/outbound/list", json={}).status_code == 401


def test_revoke_needs_authentication_and_a_token(sim: SimulatorHandle, client: Client) -> None:
    url = f"{sim.base_url}clientTokens/revoke"
    assert httpx.post(url, json={"clientToken": client.token}).json() == UNAUTHORIZED
    missing = httpx.post(url, headers={"APIKey": sim.api_key}, json={})
    assert missing.status_code == 400
    assert "clientToken" in missing.json()["modelState"]
    assert client.http.post("documents/outbound/list", json={}).status_code == 200


def test_token_expires_after_its_ttl(sim: SimulatorHandle) -> None:
    sim.configure(token_ttl_s=0.5)
    api = Client(sim)
    try:
        assert api.http.post("documents/outbound/list", json={}).status_code == 200
        wait_for(lambda: api.http.post("documents/outbound/list", json={}).status_code == 401)
    finally:
        api.close()


def test_token_expires_at_valid_to(sim: SimulatorHandle) -> None:
    valid_to = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1.5))
    response = httpx.post(
        f"{sim.base_url}clientTokens/create", headers={"APIKey": sim.api_key}, json={"erpId": "e", "validTo": valid_to}
    )
    token = response.json()["token"]
    url = f"{sim.base_url}documents/outbound/list"
    assert httpx.post(url, headers={"ClientToken": token}, json={}).status_code == 200
    wait_for(lambda: httpx.post(url, headers={"ClientToken": token}, json={}).status_code == 401, timeout=4)


def test_sim_tokens_lists_every_issued_token_with_its_state(sim: SimulatorHandle) -> None:
    sim.configure(token_ttl_s=0.3)
    short = Client(sim, erp_id="erp-short")
    sim.configure(token_ttl_s=3600)
    live, ended = Client(sim, erp_id="erp-live"), Client(sim, erp_id="erp-ended")
    try:
        revoke = httpx.post(
            f"{sim.base_url}clientTokens/revoke", headers={"APIKey": sim.api_key}, json={"clientToken": ended.token}
        )
        assert revoke.status_code in (200, 204)
        wait_for(lambda: short.http.post("documents/outbound/list", json={}).status_code == 401)
        sim.configure(fault_rate=1.0, faults=["5xx"])
        reply = httpx.get(f"{sim.root_url}_sim/tokens")
        sim.configure(fault_rate=0.0)
        sim.reset()
        after_reset = sim.tokens()
    finally:
        for api in (short, live, ended):
            api.close()
    assert reply.status_code == 200
    assert reply.json()["apiKey"] == sim.api_key
    tokens = {entry["token"]: entry for entry in reply.json()["tokens"]}
    assert set(tokens[live.token]) == {"token", "erpId", "expiresAt", "revoked", "expired"}
    states = {api.token: (tokens[api.token]["erpId"], tokens[api.token]["revoked"], tokens[api.token]["expired"])
              for api in (short, live, ended)}
    assert states == {
        short.token: ("erp-short", False, True),
        live.token: ("erp-live", False, False),
        ended.token: ("erp-ended", True, False),
    }
    assert tokens[short.token]["expiresAt"] < tokens[live.token]["expiresAt"]
    # issued oldest first; a reset forgets documents, not tokens
    order = [entry["token"] for entry in reply.json()["tokens"]]
    assert order.index(short.token) < order.index(live.token) < order.index(ended.token)
    assert [entry["token"] for entry in after_reset] == order


# Buyer party lookup ---------------------------------------------------------------------------

PARTY_KEYS = {
    "companyId",
    "name",
    "orgNo",
    "vatNo",
    "gln",
    "peppolParticipantIdentifiers",
    "receiveElectronicInvoiceCapability",
}


def _org_numbers() -> Iterator[str]:
    for n in range(556000_0000, 556000_0000 + 400):
        yield f"{str(n)[:6]}-{str(n)[6:]}"


@pytest.mark.usefixtures("documented")
def test_lookup_by_org_number_gives_all_three_outcomes(client: Client) -> None:
    outcomes: dict[str, dict[str, Any]] = {}
    for org_no in _org_numbers():
        answer = client.lookup(orgNo=org_no)
        assert set(answer) == {"parties", "potentialMatches", "exactHit"}
        # a count of potential matches (only a search by name has any), never a boolean
        assert type(answer["potentialMatches"]) is int and answer["potentialMatches"] == 0
        if answer["parties"]:
            assert answer["exactHit"] is True
            kind = answer["parties"][0]["receiveElectronicInvoiceCapability"]
        else:
            assert answer["exactHit"] is False
            assert answer["parties"] is None
            kind = "unknown"
        outcomes.setdefault(kind, {"orgNo": org_no, **answer})
        if len(outcomes) == 3:
            break
    assert set(outcomes) == {"ReceivingElectronicInvoices", "NotReceivingElectronicInvoices", "unknown"}
    receiving = outcomes["ReceivingElectronicInvoices"]
    party = receiving["parties"][0]
    assert set(party) == PARTY_KEYS
    assert party["peppolParticipantIdentifiers"]
    digits = receiving["orgNo"].replace("-", "")
    assert client.lookup(orgNo=digits) == {k: v for k, v in receiving.items() if k != "orgNo"}
    assert client.lookup(vatNo=f"SE{digits}01")["parties"] == [party]
    not_receiving = outcomes["NotReceivingElectronicInvoices"]["parties"][0]
    assert not_receiving["peppolParticipantIdentifiers"] == []
    assert outcomes["unknown"]["parties"] is None


def test_lookup_by_gln_is_a_receiving_party(client: Client) -> None:
    answer = client.lookup(gln="7300009012345")
    assert answer["exactHit"] is True
    assert answer["parties"][0]["receiveElectronicInvoiceCapability"] == "ReceivingElectronicInvoices"
    assert isinstance(answer["parties"][0]["companyId"], str)


@pytest.mark.usefixtures("documented")
def test_lookup_answers_the_documented_shape(client: Client) -> None:
    found = client.lookup(gln="7300009012345")
    assert found["parties"][0]["gln"] == "7300009012345"
    assert found["parties"][0]["peppolParticipantIdentifiers"] == ["0088:7300009012345"]
    assert type(found["potentialMatches"]) is int and found["potentialMatches"] == 0
    for miss in ({"gln": "123"}, {"orgNo": "12-34"}, {"vatNo": "DE123456789"}, {"name": "nobody at all"}):
        answer = client.lookup(**miss)
        assert answer == {"parties": None, "potentialMatches": 0, "exactHit": False}, miss


def test_lookup_needs_party_id(client: Client) -> None:
    response = client.http.post("buyerparties/lookup", json={"orgNo": "5560000000"})
    assert response.status_code == 400
    assert response.json()["message"] == "The request is invalid."
    assert "PartyId" in response.json()["modelState"]


@pytest.mark.usefixtures("documented")
def test_registered_parties_override_and_match_by_name(sim: SimulatorHandle, client: Client) -> None:
    capability = "NotReceivingElectronicInvoices"
    acme = {"orgNo": "5560000001", "name": "Acme Nordic AB", "receiveElectronicInvoiceCapability": capability}
    sim.register_parties([acme, {"orgNo": "5560000002", "name": "Acme Baltic AB"}])
    party = client.lookup(orgNo="556000-0001")["parties"][0]
    assert party["name"] == "Acme Nordic AB"
    assert party["receiveElectronicInvoiceCapability"] == capability
    by_name = client.lookup(name="acme nordic")
    # potentialMatches counts the parties the name matched
    assert type(by_name["potentialMatches"]) is int
    assert by_name["potentialMatches"] == 1 and by_name["exactHit"] is False
    assert by_name["parties"] == [party]
    both = client.lookup(name="ACME")
    assert both["potentialMatches"] == 2 and len(both["parties"]) == 2 and both["exactHit"] is False
    assert client.lookup(name="Zeta") == {"parties": None, "potentialMatches": 0, "exactHit": False}
    for bad in ({"name": "no identifier"}, [{"gln": "7300009012345", "receiveElectronicInvoiceCapability": "Maybe"}]):
        assert httpx.post(f"{sim.root_url}_sim/parties", json=bad).status_code == 400


# Upload ---------------------------------------------------------------------------------------


def test_upload_stores_the_file_and_answers_a_document_uri(sim: SimulatorHandle, client: Client) -> None:
    response = client.http.post("documents", content=ubl("1001"), headers={"Content-Type": "application/xml"})
    assert response.status_code == 201
    match = re.fullmatch(rf"urn:inexchangedocument:({GUID})", response.headers["Location"])
    assert match
    assert (sim.data_dir / "documents" / f"{match.group(1)}.xml").read_bytes() == ubl("1001")
    assert sim.stats()["documents_uploaded"] == 1


def test_upload_accepts_multipart(client: Client) -> None:
    response = client.http.post("documents", files={"file": ("invoice.xml", ubl("1002"), "application/xml")})
    assert response.status_code == 201
    assert response.headers["Location"].startswith("urn:inexchangedocument:")


def test_upload_of_nothing_is_invalid(client: Client) -> None:
    response = client.http.post("documents", content=b"")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"message": "The request is invalid.", "modelState": {"file": ["No file content"]}}


# Send -----------------------------------------------------------------------------------------


def test_send_answers_the_document_location(sim: SimulatorHandle, client: Client) -> None:
    uri = client.upload(ubl("2001"))
    response = client.http.post("documents/outbound", json=send_body(uri, "ERP-2001"))
    assert response.status_code == 201
    assert re.fullmatch(rf"{re.escape(sim.base_url)}documents/outbound/{GUID}", response.headers["Location"])
    assert sim.stats()["sends"] == {"ERP-2001": 1}


def _invalid_bodies(uri: str) -> list[tuple[dict[str, Any], str]]:
    def body(**changes: Any) -> dict[str, Any]:
        result = send_body(uri, "ERP-X")
        for dotted, value in changes.items():
            target = result
            *parents, leaf = dotted.split("__")
            for parent in parents:
                target = target[parent]
            target[leaf] = value
        return result

    return [
        ({"sendDocumentAs": {"type": "Electronic", "electronic": {"recipientId": "x"}}}, "document"),
        (body(document__documentUri=f"urn:inexchangedocument:{uuid.uuid4()}"), "document.documentUri"),
        (body(document__documentUri=None), "document.documentUri"),
        (body(document__documentFormat=None), "document.documentFormat"),
        (body(document__erpDocumentId=None), "document.erpDocumentId"),
        (body(document__erpDocumentId=12345), "document.erpDocumentId"),
        (body(sendDocumentAs__type="Fax"), "sendDocumentAs.type"),
        (body(sendDocumentAs__electronic={}), "sendDocumentAs.electronic.recipientId"),
        (
            body(sendDocumentAs__type="Pdf", sendDocumentAs__pdf={"recipientEmail": "not-an-email"}),
            "sendDocumentAs.pdf.recipientEmail",
        ),
        (body(document__attachments="x"), "document.attachments"),
        (body(document__attachments=[{"documentUri": uri}]), "document.attachments[0]"),
        (body(document__attachments=[uri, 7]), "document.attachments[1]"),
        (body(document__attachments=[f"urn:inexchangedocument:{uuid.uuid4()}"]), "document.attachments[0]"),
        (body(document__attachments=[""]), "document.attachments[0]"),
    ]


def test_send_rejects_each_invalid_body_with_model_state(sim: SimulatorHandle, client: Client) -> None:
    uri = client.upload(ubl("3001"))
    for payload, field in _invalid_bodies(uri):
        response = client.http.post("documents/outbound", json=payload)
        assert response.status_code == 400, field
        body = response.json()
        assert body["message"] == "The request is invalid."
        assert field in body["modelState"], (field, body)
        assert all(isinstance(reasons, list) and reasons for reasons in body["modelState"].values())
    broken = client.http.post("documents/outbound", content=b"{not json", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400
    assert broken.json()["message"] == "The request is invalid."
    assert sim.stats()["sends"] == {}


def test_send_takes_attachments_as_the_uris_of_earlier_uploads(sim: SimulatorHandle, client: Client) -> None:
    uri = client.upload(ubl("3002"))
    attachments = [client.upload(b"%PDF-1.4 terms"), client.upload(b"x" * (5 * 1024 * 1024))]
    for index, value in enumerate((attachments, [], None)):
        body = send_body(uri if index == 0 else client.upload(ubl(f"300{index + 2}")), f"ERP-ATT-{index}")
        body["document"]["attachments"] = value
        response = client.http.post("documents/outbound", json=body)
        assert response.status_code == 201, response.text
    body = send_body(client.upload(ubl("3009")), "ERP-ATT-OBJECTS")
    body["document"]["attachments"] = [{"documentUri": attachments[0]}]
    refused = client.http.post("documents/outbound", json=body)
    assert refused.status_code == 400
    assert set(refused.json()["modelState"]) == {"document.attachments[0]"}
    body["document"]["attachments"] = [attachments[0], client.upload(b"x" * (5 * 1024 * 1024 + 1))]
    too_big = client.http.post("documents/outbound", json=body)
    assert too_big.status_code == 400
    assert too_big.json()["modelState"] == {"document.attachments[1]": ["An attachment may be at most 5 MB."]}
    assert sim.stats()["sends"] == {"ERP-ATT-0": 1, "ERP-ATT-1": 1, "ERP-ATT-2": 1}


@pytest.mark.usefixtures("documented")
def test_send_without_a_type_lets_the_operator_choose(client: Client) -> None:
    document = client.document(client.send(uid(), kind=None))
    assert document["sendDocumentAs"] is None
    assert document["currentStatus"]["status"] == "Sent"


# Status over time -----------------------------------------------------------------------------


@pytest.mark.usefixtures("documented")
def test_status_moves_from_pending_in_platform_to_final(sim: SimulatorHandle, client: Client) -> None:
    sim.configure(status_step_ms=500)
    erp_id = uid()
    document_id = client.send(erp_id)
    first = client.document(document_id)
    assert first["id"] == document_id
    assert first["erpDocumentId"] == erp_id
    assert first["documentType"] == "Invoice"
    assert first["sendDocumentAs"] == "Electronic"
    assert first["recipientInformation"]["recipientNo"] == "C-1"
    assert first["currentStatus"]["status"] == "PendingInPlatform"
    assert [s["status"] for s in first["statusHistory"]] == ["PendingInPlatform"]
    assert first["error"] is None
    wait_for(lambda: client.document(document_id)["currentStatus"]["status"] == "Pending")
    final = wait_for(lambda: (d := client.document(document_id))["currentStatus"]["status"] == "Delivered" and d)
    assert [s["status"] for s in final["statusHistory"]] == ["PendingInPlatform", "Pending", "Delivered"]
    times = [micros(s["time"]) for s in final["statusHistory"]]
    assert times == sorted(times)
    assert micros(final["created"]) == times[0]
    assert final["currentStatus"] == final["statusHistory"][-1]


def test_pdf_and_paper_end_sent(client: Client) -> None:
    assert client.document(client.send(uid(), kind="Pdf"))["currentStatus"]["status"] == "Sent"
    assert client.document(client.send(uid(), kind="Paper"))["currentStatus"]["status"] == "Sent"


def test_stop_rate_one_stops_every_document(sim: SimulatorHandle, client: Client) -> None:
    sim.configure(stop_rate=1.0)
    for _ in range(4):
        document = client.document(client.send(uid()))
        assert document["currentStatus"]["status"] == "Stopped"
        error = document["error"]
        assert error["status"] in ("AwaitingRecipientApproval", "InvalidDeliveryMethod")
        assert error["message"] and error["moreInfoUri"] is None


def test_error_rate_one_fails_every_document(sim: SimulatorHandle, client: Client) -> None:
    sim.configure(error_rate=1.0)
    document = client.document(client.send(uid(), kind="Pdf"))
    assert document["currentStatus"]["status"] == "Error"
    assert document["error"]["status"] == "InvalidEmailAddress"
    assert "ap@buyer.example" in document["error"]["message"]


@pytest.mark.usefixtures("documented")
def test_invoice_number_sent_again_is_a_duplicate(sim: SimulatorHandle, client: Client) -> None:
    first = client.document(client.send(uid(), number="1234"))
    again = client.document(client.send(uid(), number="1234"))
    credit = client.document(client.send(uid(), number="1234", root="CreditNote"))
    other_company = Client(sim, erp_id="erp-2")
    try:
        elsewhere = other_company.document(other_company.send(uid(), number="1234"))
    finally:
        other_company.close()
    assert first["currentStatus"]["status"] == "Delivered"
    assert again["currentStatus"]["status"] == "Error"
    assert again["error"]["status"] == "DuplicateInvoiceNumber"
    assert again["error"]["message"] == "Duplicate invoice number 1234"
    assert credit["documentType"] == "CreditNote"
    assert credit["currentStatus"]["status"] == "Delivered"
    assert elsewhere["currentStatus"]["status"] == "Delivered"


def test_unknown_document_is_404(client: Client) -> None:
    response = client.http.get(f"documents/outbound/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert "message" in response.json()


# List -----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("documented")
def test_list_pages_filters_and_counts(sim: SimulatorHandle, client: Client) -> None:
    ids = [client.send(uid(), kind="Electronic") for _ in range(3)]
    ids += [client.send(uid(), kind="Pdf") for _ in range(2)]
    ids.append(client.send(uid(), root="CreditNote"))
    everything = client.list()
    assert everything["totalCount"] == 6
    listed = everything["documents"]
    assert sorted(d["id"] for d in listed) == sorted(ids)
    keys = [order_key(d) for d in listed]
    assert keys == sorted(keys)
    assert all("error" not in d for d in listed)
    assert all("error" in d for d in client.list(includeErrorInfo=True)["documents"])

    pages = [client.list(take=2, skip=skip) for skip in (0, 2, 4, 6)]
    assert [len(p["documents"]) for p in pages] == [2, 2, 2, 0]
    assert all(p["totalCount"] == 6 for p in pages)
    assert [d["id"] for p in pages for d in p["documents"]] == [d["id"] for d in listed]

    cursor = listed[2]["currentStatus"]["time"]
    after = client.list(updatedAfter=cursor)
    assert [d["id"] for d in after["documents"]] == [d["id"] for d in listed[3:]]
    assert after["totalCount"] == 3
    assert client.list(updatedAfter=iso(micros(cursor)).replace("Z", "+00:00"))["totalCount"] == 3

    assert client.list(status="Sent")["totalCount"] == 2
    assert client.list(ignoreStatuses=["Sent"])["totalCount"] == 4
    assert client.list(documentType="CreditNote")["totalCount"] == 1
    assert client.list(createdFrom=listed[0]["created"], createdTo=listed[0]["created"])["totalCount"] == 1
    assert client.list(createdFrom="2999-01-01T00:00:00Z")["totalCount"] == 0

    other = Client(sim, erp_id="erp-other")
    try:
        assert other.list()["totalCount"] == 0
    finally:
        other.close()


@pytest.mark.parametrize(
    "body", [{"take": 1001}, {"take": 0}, {"skip": -1}, {"updatedAfter": "yesterday"}, {"documentType": "Order"}]
)
def test_list_rejects_bad_parameters(client: Client, body: dict[str, Any]) -> None:
    response = client.http.post("documents/outbound/list", json=body)
    assert response.status_code == 400
    assert response.json()["message"] == "The request is invalid."
    assert response.json()["modelState"]


# Lookup by ERP id -----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [{"includeFileInfo": False}, {"includeFileInfo": True}, {}, None])
def test_by_erp_id_finds_the_latest_send(client: Client, body: dict[str, Any] | None) -> None:
    erp_id = f"{uid()}/2024"
    client.send(erp_id, number="A1")
    latest = client.send(erp_id, number="A2")
    path = f"invoices/outbound/byerpid/{erp_id.replace('/', '%2F')}"
    response = client.http.post(path) if body is None else client.http.post(path, json=body)
    assert response.status_code == 200
    found, listed = response.json(), client.document(latest)
    assert (found["id"], found["erpDocumentId"]) == (latest, erp_id)
    assert found["currentStatus"]["status"] == listed["currentStatus"]["status"] == "Delivered"
    assert micros(found["currentStatus"]["time"]) == micros(listed["currentStatus"]["time"])
    missing = client.http.post("invoices/outbound/byerpid/never-sent", json={"includeFileInfo": False})
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/json")
    assert missing.json() == {"message": "No invoice found"}


@pytest.mark.usefixtures("documented")
def test_by_erp_id_answers_the_document_as_a_listing_shows_it(client: Client) -> None:
    erp_id = uid()
    document_id = client.send(erp_id)
    response = client.by_erp_id(erp_id)
    assert response.status_code == 200
    assert response.json() == client.document(document_id) == client.list(includeErrorInfo=True)["documents"][0]


def test_by_erp_id_is_post_only_with_an_optional_json_object(sim: SimulatorHandle, client: Client) -> None:
    erp_id = uid()
    client.send(erp_id)
    path = f"invoices/outbound/byerpid/{erp_id}"
    for method in ("GET", "PUT", "DELETE"):
        refused = client.http.request(method, path)
        assert refused.status_code == 405, method
        assert refused.headers["content-type"].startswith("application/json")
        assert refused.json() == {"message": "Method Not Allowed"}
    for bad, field in (({"includeFileInfo": "no"}, "includeFileInfo"), ({"includeFileInfo": 0}, "includeFileInfo"),
                       ([False], "request"), ("false", "request")):
        response = client.http.post(path, json=bad)
        assert response.status_code == 400, bad
        assert response.json()["message"] == "The request is invalid."
        assert field in response.json()["modelState"], bad
    broken = client.http.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and "modelState" in broken.json()
    assert client.by_erp_id(erp_id).status_code == 200
    assert client.http.post(path, json={"includeFileInfo": None, "other": 1}).status_code == 200


# Simulator statistics and operations ----------------------------------------------------------


def test_stats_count_sends_and_duplicates(sim: SimulatorHandle, client: Client) -> None:
    twice, once = uid(), uid()
    client.send(twice)
    client.send(twice)
    client.send(once)
    stats = sim.stats()
    assert stats["sends"] == {twice: 2, once: 1}
    assert stats["duplicates"] == [twice]
    assert stats["documents_uploaded"] == 3
    assert stats["outbound_documents"] == 3
    assert stats["requests"] >= 7
    assert set(stats["faults"]) == {"5xx", "429", "drop", "lost", "timeout", "html", "garbled", "huge", "fuzz"}
    assert stats["holds"] == [] and stats["held"] == {}
    # the second send of the same invoice number is a duplicate
    assert stats["statuses"] == {"Delivered": 2, "Error": 1}
    light = sim.stats(per_document=False)
    assert light == {key: value for key, value in stats.items() if key not in ("sends", "statuses")}
    sim.reset()
    assert sim.stats()["sends"] == {} and sim.stats()["outbound_documents"] == 0
    assert sim.stats()["duplicates"] == []


def test_config_is_validated(sim: SimulatorHandle) -> None:
    for bad in ({"fault_rate": 2}, {"faults": ["bogus"]}, {"seed": 1}, {"timeout_ms": -1}):
        assert httpx.post(f"{sim.root_url}_sim/config", json=bad).status_code == 400
    assert sim.configure(faults="5xx,lost")["faults"] == ["5xx", "lost"]
    assert sim.configure(timeout_ms=250)["timeout_ms"] == 250


def test_paths_are_case_insensitive_and_unknown_routes_are_json(sim: SimulatorHandle, client: Client) -> None:
    assert client.http.post("Documents/Outbound/List", json={}).status_code == 200
    unknown = client.http.get("no/such/thing")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/json")
    assert client.http.get("documents/outbound/list").status_code == 404
    assert client.http.put("documents").status_code == 405


# Faults ---------------------------------------------------------------------------------------


def test_fault_5xx(sim: SimulatorHandle, client: Client) -> None:
    sim.configure(fault_rate=1.0, faults=["5xx"])
    response = client.http.post("documents/outbound/list", json={})
    assert response.status_code in (500, 503)
    assert response.headers["content-type"].startswith("application/json")
    assert "message" in response.json()
    assert sim.stats()["faults"]["5xx"] == 1


def test_fault_429_carries_retry_after(sim: SimulatorHandle) -> None:
    sim.configure(fault_rate=1.0, faults=["429"])
    response = httpx.post(f"{sim.base_url}clientTokens/create", headers={"APIKey": sim.api_key}, json={"erpId": "e"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert sim.stats()["tokens_created"] == 0


def test_fault_drop_breaks_the_connection_before_processing(sim: SimulatorHandle, client: Client) -> None:
    uri = client.upload(ubl("4001"))
    sim.configure(fault_rate=1.0, faults=["drop"])
    with pytest.raises(httpx.TransportError):
        client.http.post("documents/outbound", json=send_body(uri, "ERP-DROP"))
    sim.configure(fault_rate=0.0)
    assert sim.stats()["sends"] == {}
    assert sim.stats()["faults"]["drop"] == 1
    assert client.by_erp_id("ERP-DROP").status_code == 404


def test_fault_lost_processes_the_request_but_loses_the_answer(sim: SimulatorHandle, client: Client) -> None:
    uri = client.upload(ubl("4002"))
    sim.configure(fault_rate=1.0, faults=["lost"])
    with pytest.raises(httpx.RemoteProtocolError):
        client.http.post("documents/outbound", json=send_body(uri, "ERP-LOST"))
    sim.configure(fault_rate=0.0)
    assert sim.stats()["sends"] == {"ERP-LOST": 1}
    assert client.by_erp_id("ERP-LOST").json()["erpDocumentId"] == "ERP-LOST"


def test_sim_routes_are_never_faulted_and_latency_applies(sim: SimulatorHandle, client: Client) -> None:
    sim.configure(fault_rate=1.0, faults=["5xx"])
    assert httpx.get(f"{sim.root_url}_sim/health").status_code == 200
    sim.configure(fault_rate=0.0, latency_ms=150)
    started = time.monotonic()
    assert client.http.post("documents/outbound/list", json={}).status_code == 200
    assert time.monotonic() - started >= 0.11


def test_faults_are_repeatable_for_a_seed(sim: SimulatorHandle) -> None:
    def sequence() -> list[int]:
        sim.reset()
        sim.configure(fault_rate=0.5, faults=["5xx", "429"])
        url = f"{sim.base_url}clientTokens/create"
        return [httpx.post(url, headers={"APIKey": sim.api_key}, json={"erpId": "e"}).status_code for _ in range(12)]

    first = sequence()
    assert set(first) - {200} and 200 in first
    assert sequence() == first


def test_fault_timeout_waits_then_processes_and_answers(sim: SimulatorHandle, client: Client) -> None:
    uri = client.upload(ubl("4003"))
    sim.configure(fault_rate=1.0, faults=["timeout"], timeout_ms=300)
    started = time.monotonic()
    response = client.http.post("documents/outbound", json=send_body(uri, "ERP-SLOW"))
    elapsed = time.monotonic() - started
    sim.configure(fault_rate=0.0)
    assert response.status_code == 201, response.text
    assert 0.28 <= elapsed < 2.0
    assert sim.stats()["sends"] == {"ERP-SLOW": 1}
    assert sim.stats()["faults"]["timeout"] == 1


def test_fault_timeout_processes_the_request_of_a_client_that_gave_up(sim: SimulatorHandle, client: Client) -> None:
    uri = client.upload(ubl("4004"))
    sim.configure(fault_rate=1.0, faults=["timeout"], timeout_ms=500)
    with pytest.raises(httpx.ReadTimeout):
        client.http.post("documents/outbound", json=send_body(uri, "ERP-GAVE-UP"), timeout=httpx.Timeout(10.0, read=0.1))
    sim.configure(fault_rate=0.0)
    assert sim.stats()["sends"] == {}
    wait_for(lambda: sim.stats()["sends"] == {"ERP-GAVE-UP": 1})
    assert client.by_erp_id("ERP-GAVE-UP").json()["erpDocumentId"] == "ERP-GAVE-UP"
    assert sim.stats()["faults"]["timeout"] == 1


def test_a_fresh_simulator_enables_the_old_fault_kinds_and_takes_timeout_ms() -> None:
    with run_simulator(timeout_ms=250) as fresh:
        settings = fresh.configure()
    assert settings["faults"] == ["5xx", "429", "drop", "lost"]
    assert settings["timeout_ms"] == 250


# Holds ----------------------------------------------------------------------------------------


def test_before_hold_keeps_the_request_waiting_until_release(
    sim: SimulatorHandle, client: Client, background: ThreadPoolExecutor
) -> None:
    key = sim.hold("documents/outbound")
    assert key == "POST documents/outbound before"
    uri = client.upload(ubl("5001"))
    pending = background.submit(client.http.post, "documents/outbound", json=send_body(uri, "ERP-BEFORE"))
    assert sim.wait_held(key) == 1
    time.sleep(0.1)
    stats = sim.stats()
    assert not pending.done()
    assert stats["sends"] == {}
    assert stats["holds"] == [key]
    assert stats["held"] == {key: 1}
    assert sim.release() == 1
    response = pending.result(timeout=5)
    assert response.status_code == 201, response.text
    stats = sim.stats()
    assert stats["sends"] == {"ERP-BEFORE": 1}
    assert stats["holds"] == [] and stats["held"] == {}


@pytest.mark.parametrize("phase", ["before", "after"])
def test_dropping_held_requests_breaks_their_connections(
    sim: SimulatorHandle, client: Client, background: ThreadPoolExecutor, phase: str
) -> None:
    key = sim.hold("documents/outbound", phase=phase)
    uri = client.upload(ubl("5003"))
    pending = background.submit(client.http.post, "documents/outbound", json=send_body(uri, "ERP-DROP"))
    sim.wait_held(key)

    assert sim.release(drop=True) == 1

    with pytest.raises(httpx.TransportError):
        pending.result(timeout=5)
    # held before: never processed; held after: processed, only the answer is lost
    assert sim.stats()["sends"] == ({} if phase == "before" else {"ERP-DROP": 1})
    assert sim.stats()["held"] == {}


def test_after_hold_processes_the_request_and_answers_after_release(
    sim: SimulatorHandle, client: Client, background: ThreadPoolExecutor
) -> None:
    key = sim.hold("documents/outbound", phase="after")
    assert key == "POST documents/outbound after"
    uri = client.upload(ubl("5002"))
    pending = background.submit(client.http.post, "documents/outbound", json=send_body(uri, "ERP-AFTER"))
    sim.wait_held(key)
    assert sim.stats()["sends"] == {"ERP-AFTER": 1}
    observer = Client(sim)
    try:
        stored = observer.by_erp_id("ERP-AFTER")
    finally:
        observer.close()
    assert stored.status_code == 200
    assert not pending.done()
    assert sim.release() == 1
    response = pending.result(timeout=5)
    assert response.status_code == 201, response.text
    assert response.headers["Location"].endswith(f"/documents/outbound/{stored.json()['id']}")
    assert sim.stats()["sends"] == {"ERP-AFTER": 1}


def test_holds_match_method_and_whole_path_without_regard_to_case(
    sim: SimulatorHandle, client: Client, background: ThreadPoolExecutor
) -> None:
    key = sim.hold("/Documents/Outbound/List/", method="post")
    assert key == "POST documents/outbound/list before"
    assert sim.hold("documents") == "POST documents before"
    assert sim.hold("documents/outbound/list", phase="after", method="GET") == "GET documents/outbound/list after"
    assert sim.stats()["holds"] == ["GET documents/outbound/list after", "POST documents before", key]
    assert client.http.post("documents/outbound", json={}).status_code == 400
    assert client.http.get(f"documents/outbound/{uuid.uuid4()}").status_code == 404
    pending = background.submit(client.http.post, "DOCUMENTS/outbound/LIST", json={})
    assert sim.wait_held(key) == 1
    assert sim.stats()["held"] == {key: 1}
    assert sim.release() == 1
    assert pending.result(timeout=5).status_code == 200


def test_held_requests_are_counted_per_hold(sim: SimulatorHandle, background: ThreadPoolExecutor) -> None:
    clients = [Client(sim) for _ in range(3)]
    try:
        listing = sim.hold("documents/outbound/list")
        lookup = sim.hold("buyerparties/lookup", phase="after")
        lists = [background.submit(api.http.post, "documents/outbound/list", json={}) for api in clients[:2]]
        found = background.submit(clients[2].lookup, orgNo="556677-8899")
        sim.wait_held(listing, count=2)
        sim.wait_held(lookup)
        assert sim.stats()["held"] == {listing: 2, lookup: 1}
        assert sim.release() == 3
        assert [future.result(timeout=5).status_code for future in lists] == [200, 200]
        found.result(timeout=5)
    finally:
        for api in clients:
            api.close()


def test_wait_held_times_out_with_a_clear_message(sim: SimulatorHandle) -> None:
    key = sim.hold("documents")
    with pytest.raises(TimeoutError, match=r"0 request\(s\) held under 'POST documents before'.*at least 1"):
        sim.wait_held(key, timeout=0.2)


def test_held_requests_are_never_faulted(
    sim: SimulatorHandle, client: Client, background: ThreadPoolExecutor
) -> None:
    sim.configure(fault_rate=1.0, faults=["5xx"])
    key = sim.hold("documents/outbound/list")
    pending = background.submit(client.http.post, "documents/outbound/list", json={})
    sim.wait_held(key)
    sim.release()
    assert pending.result(timeout=5).status_code == 200
    assert sim.stats()["faults"]["5xx"] == 0
    assert client.http.post("documents/outbound/list", json={}).status_code in (500, 503)


def test_reset_releases_and_removes_holds(sim: SimulatorHandle, client: Client, background: ThreadPoolExecutor) -> None:
    key = sim.hold("documents/outbound/list")
    pending = background.submit(client.http.post, "documents/outbound/list", json={})
    sim.wait_held(key)
    sim.reset()
    assert pending.result(timeout=5).status_code == 200
    stats = sim.stats()
    assert stats["holds"] == [] and stats["held"] == {}
    assert client.http.post("documents/outbound/list", json={}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"path": "documents", "phase": "during"},
        {"phase": "before"},
        {"path": ""},
        {"path": "/"},
        {"path": 5},
        {"path": "documents", "method": "PO ST"},
        {"path": "documents", "method": None},
        {"path": "documents", "until": "later"},
        b"",
        b"{not json",
        b'["documents"]',
    ],
)
def test_bad_hold_bodies_are_rejected(sim: SimulatorHandle, body: dict[str, Any] | bytes) -> None:
    url = f"{sim.root_url}_sim/hold"
    if isinstance(body, bytes):
        response = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    else:
        response = httpx.post(url, json=body)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["message"]
    assert sim.stats()["holds"] == []


def test_held_requests_of_clients_that_are_gone_end_quietly_and_do_not_delay_stopping(
    capfd: pytest.CaptureFixture[str],
) -> None:
    short = httpx.Timeout(10.0, read=0.2)
    with ThreadPoolExecutor(max_workers=1) as pool, run_simulator(status_step_ms=0) as fresh:
        api, waiter = Client(fresh), Client(fresh)
        try:
            uris = [api.upload(ubl(number)) for number in ("6001", "6002")]
            after = fresh.hold("documents/outbound", phase="after")
            with pytest.raises(httpx.ReadTimeout):
                api.http.post("documents/outbound", json=send_body(uris[0], "ERP-GONE-AFTER"), timeout=short)
            fresh.wait_held(after)
            assert fresh.release() == 1
            before = fresh.hold("documents/outbound")
            with pytest.raises(httpx.ReadTimeout):
                api.http.post("documents/outbound", json=send_body(uris[1], "ERP-GONE-BEFORE"), timeout=short)
            fresh.wait_held(before)
            assert fresh.stats()["sends"] == {"ERP-GONE-AFTER": 1}
            assert fresh.release() == 1
            wait_for(lambda: fresh.stats()["sends"] == {"ERP-GONE-AFTER": 1, "ERP-GONE-BEFORE": 1})
            assert api.by_erp_id("ERP-GONE-BEFORE").status_code == 200
            listing = fresh.hold("documents/outbound/list")
            pending = pool.submit(waiter.http.post, "documents/outbound/list", json={})
            fresh.wait_held(listing)
            stopping = time.monotonic()
        finally:
            api.close()
    assert time.monotonic() - stopping < 3.0
    assert fresh.process.returncode == 0
    assert pending.result(timeout=5).status_code == 200
    waiter.close()
    assert capfd.readouterr().err == ""
