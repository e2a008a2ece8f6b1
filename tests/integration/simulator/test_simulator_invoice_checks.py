"""The simulator's invoice checks: parties that demand references, and documents stopped without them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from dispatch_testing.sim_client import Client, send_body, uid
from inexchange_devkit.simulator.testing import SimulatorHandle

pytestmark = pytest.mark.integration

ORG = "5567321707"
ALL_CHECKS = {"buyerReferenceNo": True, "buyerReferenceName": True, "buyerOrderNo": True, "buyerName": True}
NAME = "Byggbolaget i Norr AB"


def ubl(number: str, *, buyer_reference: str | None = "Projekt 9", contact: str | None = "Eva Lind",
        order: str | None = "PO-1", name: str | None = NAME) -> bytes:
    """A small UBL invoice carrying the references a buyer's checks read (None: left out)."""
    parts = [f"<cbc:ID>{number}</cbc:ID>"]
    if buyer_reference is not None:
        parts.append(f"<cbc:BuyerReference>{buyer_reference}</cbc:BuyerReference>")
    if order is not None:
        parts.append(f"<cac:OrderReference><cbc:ID>{order}</cbc:ID></cac:OrderReference>")
    party = ""
    if name is not None:
        party += (f"<cac:PartyName><cbc:Name>{name}</cbc:Name></cac:PartyName>"
                  f"<cac:PartyLegalEntity><cbc:RegistrationName>{name}</cbc:RegistrationName></cac:PartyLegalEntity>")
    if contact is not None:
        party += f"<cac:Contact><cbc:Name>{contact}</cbc:Name></cac:Contact>"
    parts.append(f"<cac:AccountingCustomerParty><cac:Party>{party}</cac:Party></cac:AccountingCustomerParty>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"'
        ' xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"'
        ' xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">'
        + "".join(parts) + "</Invoice>"
    ).encode()


def send(client: Client, content: bytes, *, kind: str | None = "Electronic", recipient_id: str = "",
         org_no: str = ORG) -> dict[str, Any]:
    """Upload and send a document; return it as InExchange shows it at once (the status step is 0)."""
    uri = client.upload(content)
    body = send_body(uri, uid(), kind)
    body["sendDocumentAs"]["electronic"]["recipientId"] = recipient_id
    body["recipientInformation"]["orgNo"] = org_no
    response = client.http.post("documents/outbound", json=body)
    assert response.status_code == 201, response.text
    return client.document(response.headers["Location"].rsplit("/", 1)[1])


def registered(sim: SimulatorHandle, **fields: Any) -> dict[str, Any]:
    return sim.register_parties([{"orgNo": ORG, "name": NAME, **fields}])[0]


@pytest.mark.usefixtures("documented")
def test_a_registered_party_carries_its_checks_and_one_without_carries_none(
        sim: SimulatorHandle, client: Client) -> None:
    registered(sim, invoiceChecks={"buyerOrderNo": True})
    sim.register_parties([{"orgNo": "5560360793", "name": "Utan Kontroller AB"}])

    party = client.lookup(orgNo=ORG)["parties"][0]
    assert party["hasInvoiceChecks"] is True
    assert party["invoiceChecks"] == {"buyerReferenceNo": False, "buyerReferenceName": False, "buyerOrderNo": True,
                                      "buyerName": False}
    plain = client.lookup(orgNo="5560360793")["parties"][0]
    assert "hasInvoiceChecks" not in plain and "invoiceChecks" not in plain


@pytest.mark.parametrize(("missing", "check"), [
    ({"buyer_reference": None}, "BuyerReference"),
    ({"contact": None}, "Contact Name"),
    ({"order": None}, "OrderReference"),
    ({"name": "Byggbolaget Norr AB"}, "the buyer's name"),
    ({"order": "  "}, "OrderReference"),
])
def test_a_document_without_a_demanded_reference_is_stopped(
        sim: SimulatorHandle, client: Client, missing: dict[str, Any], check: str) -> None:
    party = registered(sim, invoiceChecks=ALL_CHECKS)

    stopped = send(client, ubl("2001", **missing), recipient_id=party["companyId"])
    sent = send(client, ubl("2002"), recipient_id=party["companyId"])

    assert stopped["currentStatus"]["status"] == "Stopped"
    assert stopped["error"]["status"] == "InvoiceCheckFailed"
    assert check in stopped["error"]["message"]
    assert sent["currentStatus"]["status"] == "Delivered" and sent["error"] is None
    assert sim.stats()["invoice_check_stops"] == [stopped["erpDocumentId"]]


def test_every_missing_reference_is_named() -> None:
    from inexchange_devkit.simulator.registry import missing_references

    party = {"name": NAME, "hasInvoiceChecks": True, "invoiceChecks": ALL_CHECKS}
    assert missing_references(party, {"buyer_name": "Other AB"}) == list(ALL_CHECKS)
    assert missing_references({**party, "hasInvoiceChecks": False}, {}) == []
    assert missing_references({"name": NAME}, {}) == []


def test_a_document_left_to_inexchange_meets_the_checks_of_the_party_it_finds(
        sim: SimulatorHandle, client: Client) -> None:
    registered(sim, invoiceChecks={"buyerOrderNo": True})

    assert send(client, ubl("2101", order=None), kind=None)["currentStatus"]["status"] == "Stopped"
    assert send(client, ubl("2102"), kind=None)["currentStatus"]["status"] == "Sent"
    # by PDF or paper the buyer's checks are not met: nothing is stopped for them
    assert send(client, ubl("2103", order=None), kind="Pdf")["currentStatus"]["status"] == "Sent"
    assert send(client, ubl("2104", order=None), kind="Paper")["currentStatus"]["status"] == "Sent"


def test_a_party_whose_checks_are_switched_off_stops_nothing(sim: SimulatorHandle, client: Client) -> None:
    party = registered(sim, hasInvoiceChecks=False, invoiceChecks=ALL_CHECKS)

    document = send(client, ubl("2201", buyer_reference=None, contact=None, order=None, name=None),
                    recipient_id=party["companyId"])

    assert document["currentStatus"]["status"] == "Delivered"


def test_bad_checks_are_refused_at_registration(sim: SimulatorHandle) -> None:
    for bad in ({"invoiceChecks": {"buyerOrderNo": "yes"}}, {"invoiceChecks": {"buyerVat": True}},
                {"invoiceChecks": ["buyerOrderNo"]}, {"hasInvoiceChecks": "true"}):
        response = httpx.post(f"{sim.root_url}_sim/parties", json=[{"orgNo": ORG, **bad}])
        assert response.status_code == 400, bad


@pytest.mark.usefixtures("documented")
def test_a_share_of_the_derived_parties_has_checks_drawn_from_the_seed(sim: SimulatorHandle, client: Client) -> None:
    numbers = [f"{n}" for n in range(5560000000, 5560000000 + 60)]
    assert not any("invoiceChecks" in (client.lookup(orgNo=n)["parties"] or [{}])[0] for n in numbers)
    sim.configure(invoice_check_rate=1.0)
    try:
        answers = [client.lookup(orgNo=n) for n in numbers]
        again = [client.lookup(orgNo=n) for n in numbers]
        gln = client.lookup(gln="7300009012345")["parties"][0]
    finally:
        sim.configure(invoice_check_rate=0.0)
    assert answers == again, "the checks are the seed's, not the request's"
    parties = [a["parties"][0] for a in answers if a["parties"]]
    receiving = [p for p in parties if p["receiveElectronicInvoiceCapability"] == "ReceivingElectronicInvoices"]
    assert receiving and len(receiving) < len(parties)
    for party in receiving + [gln]:
        assert party["hasInvoiceChecks"] is True
        assert any(party["invoiceChecks"].values()) and party["invoiceChecks"]["buyerName"] is False
    assert all("invoiceChecks" not in p for p in parties if p not in receiving)
    assert len({tuple(sorted(p["invoiceChecks"].items())) for p in receiving}) > 1


def test_the_reply_variants_keep_a_partys_checks_and_a_checked_name(sim: SimulatorHandle, client: Client) -> None:
    registered(sim, invoiceChecks={"buyerName": True, "buyerOrderNo": True})
    for variant in ("sparse", "loose", "extra"):
        sim.configure(reply_variant=variant)
        for _ in range(12):
            party = client.lookup(orgNo=ORG)["parties"][0]
            assert party["hasInvoiceChecks"] is True, variant
            assert party["invoiceChecks"]["buyerName"] is True and party["invoiceChecks"]["buyerOrderNo"] is True
            assert party["name"] == NAME, variant
