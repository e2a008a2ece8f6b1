"""A buyer's invoice checks: read from a lookup's party, compared with an invoice, put in words.

The party shapes follow DOMAIN.md ("A party may also carry `hasInvoiceChecks` (bool) and
`invoiceChecks {buyerReferenceNo, buyerReferenceName, buyerOrderNo, buyerName}` (bools)"); the reader
must never fail over them, whatever their type.
"""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from dispatch_testing.erp_rows import SELLER_CONFIG, customer_row, invoice_rows, single_batch
from inexchange.api import BuyerParty, InvoiceCheck, LookupResult
from inexchange.invoice_checks import failed_checks, name_matches, refusal
from inexchange.ubl import NS_CAC, NS_CBC, Seller, build_from_batch

ALL = {"buyerReferenceNo": True, "buyerReferenceName": True, "buyerOrderNo": True, "buyerName": True}
PARTY = {
    "companyId": "0b6d8f2e-4a1c-4e3b-9d7a-5c2f1e8b3a64",
    "name": "Byggbolaget i Norr AB",
    "orgNo": "5567321707",
    "receiveElectronicInvoiceCapability": "ReceivingElectronicInvoices",
}


def party(**fields: Any) -> BuyerParty:
    return BuyerParty.from_json({**PARTY, **fields})


# ---- the reader ----------------------------------------------------------------------------------
def test_a_party_without_the_fields_has_no_checks() -> None:
    read = party()
    assert read.invoice_checks == frozenset() and read.has_invoice_checks is None


def test_each_check_that_is_true_is_on() -> None:
    read = party(hasInvoiceChecks=True, invoiceChecks={**ALL, "buyerReferenceName": False, "buyerName": False})
    assert read.invoice_checks == {InvoiceCheck.BUYER_REFERENCE_NO, InvoiceCheck.BUYER_ORDER_NO}
    assert read.has_invoice_checks is True
    assert party(hasInvoiceChecks=True, invoiceChecks=ALL).invoice_checks == set(InvoiceCheck)


def test_has_invoice_checks_false_turns_every_flag_off() -> None:
    assert party(hasInvoiceChecks=False, invoiceChecks=ALL).invoice_checks == frozenset()


@pytest.mark.parametrize("has", [None, "true", 1, [], {}])
def test_without_a_boolean_has_invoice_checks_the_flags_decide(has: Any) -> None:
    fields: dict[str, Any] = {"invoiceChecks": {"buyerOrderNo": True}}
    if has is not None:
        fields["hasInvoiceChecks"] = has
    read = party(**fields)
    assert read.invoice_checks == {InvoiceCheck.BUYER_ORDER_NO}
    assert read.has_invoice_checks is None


@pytest.mark.parametrize("checks", [None, [], "buyerOrderNo", True, 7, ["buyerOrderNo"]])
def test_invoice_checks_of_another_type_are_no_checks(checks: Any) -> None:
    read = party(hasInvoiceChecks=True, invoiceChecks=checks)
    assert read.invoice_checks == frozenset() and read.has_invoice_checks is True


@pytest.mark.parametrize("flag", [None, "true", "True", 1, 1.0, {}, [True]])
def test_a_flag_that_is_not_true_is_off(flag: Any) -> None:
    read = party(hasInvoiceChecks=True, invoiceChecks={"buyerOrderNo": flag, "buyerName": True})
    assert read.invoice_checks == {InvoiceCheck.BUYER_NAME}


def test_unknown_checks_and_letter_case_other_than_documented_are_ignored() -> None:
    read = party(invoiceChecks={"BuyerOrderNo": True, "buyerVatNo": True, "buyerReferenceNo": True})
    assert read.invoice_checks == {InvoiceCheck.BUYER_REFERENCE_NO}


def test_a_lookup_reply_with_odd_checks_is_read_whole() -> None:
    reply = {
        "parties": [
            {**PARTY, "hasInvoiceChecks": "yes", "invoiceChecks": "all"},
            {**PARTY, "companyId": "b", "hasInvoiceChecks": True, "invoiceChecks": None},
            {**PARTY, "companyId": "c", "hasInvoiceChecks": None, "invoiceChecks": {"buyerReferenceNo": True}},
        ],
        "potentialMatches": 3,
        "exactHit": True,
    }
    result = LookupResult.from_json(reply)
    assert [p.invoice_checks for p in result.parties] == [
        frozenset(),
        frozenset(),
        {InvoiceCheck.BUYER_REFERENCE_NO},
    ]


# ---- the comparison ------------------------------------------------------------------------------
def invoice(**fields: Any) -> dict[str, Any]:
    header, _ = invoice_rows(**fields)
    return header


REFERENCED = {"your_reference": "Eva Lind", "order_number": "PO-7781"}


def test_an_invoice_with_every_reference_fails_nothing() -> None:
    assert failed_checks(list(InvoiceCheck), invoice(**REFERENCED), customer_row(), "Alingsås kommun") == []


def test_no_checks_nothing_fails() -> None:
    assert failed_checks([], invoice(your_reference=None), customer_row(name="Other"), "Alingsås kommun") == []


def test_the_buyer_reference_comes_from_the_marking_or_your_reference_never_the_customer_number() -> None:
    check = [InvoiceCheck.BUYER_REFERENCE_NO]
    assert failed_checks(check, invoice(your_reference=None), customer_row(marking=None), None) == check
    assert failed_checks(check, invoice(your_reference="  "), customer_row(marking=""), None) == check
    assert failed_checks(check, invoice(your_reference=None), customer_row(marking="Projekt 9"), None) == []
    assert failed_checks(check, invoice(your_reference="Eva Lind"), customer_row(marking=None), None) == []


def test_the_reference_name_is_your_reference_only() -> None:
    check = [InvoiceCheck.BUYER_REFERENCE_NAME]
    assert failed_checks(check, invoice(your_reference=None), customer_row(marking="Projekt 9"), None) == check
    assert failed_checks(check, invoice(your_reference="Eva Lind"), customer_row(), None) == []


@pytest.mark.parametrize("order", [None, "", "   "])
def test_the_order_number_must_be_given(order: str | None) -> None:
    check = ["buyerOrderNo"]
    assert failed_checks(check, invoice(order_number=order), customer_row(), None) == [InvoiceCheck.BUYER_ORDER_NO]
    assert failed_checks(check, invoice(order_number="PO-1"), customer_row(), None) == []


def test_the_name_must_be_exactly_inexchanges() -> None:
    check = [InvoiceCheck.BUYER_NAME]
    customer = customer_row(name="Alingsås kommun")
    assert failed_checks(check, invoice(), customer, "Alingsås kommun") == []
    assert failed_checks(check, invoice(), customer, " Alingsås kommun ") == []  # spaces around are never sent
    for other in ("Alingsås Kommun", "Alingsas kommun", "Alingsås kommun AB"):
        assert failed_checks(check, invoice(), customer, other) == check, other


def test_a_name_inexchange_does_not_give_is_not_compared() -> None:
    assert name_matches(customer_row(name="Alingsås kommun"), None)
    assert name_matches(customer_row(name="Alingsås kommun"), "  ")
    assert failed_checks([InvoiceCheck.BUYER_NAME], invoice(), customer_row(), None) == []


def test_failed_checks_come_in_one_order() -> None:
    failed = failed_checks(
        ["buyerName", "buyerOrderNo", "buyerReferenceName", "buyerReferenceNo"],
        invoice(your_reference=None, order_number=None),
        customer_row(marking=None, name="Alingsås kommun"),
        "Alingsås Kommun",
    )
    assert failed == [
        InvoiceCheck.BUYER_REFERENCE_NO,
        InvoiceCheck.BUYER_REFERENCE_NAME,
        InvoiceCheck.BUYER_ORDER_NO,
        InvoiceCheck.BUYER_NAME,
    ]


# ---- the message ---------------------------------------------------------------------------------
def test_no_failed_check_no_message() -> None:
    assert refusal([], invoice(), customer_row(), None) is None


def test_the_order_number_message() -> None:
    message = refusal([InvoiceCheck.BUYER_ORDER_NO], invoice(invoice_number="10073"), customer_row(), None)
    assert message == (
        "Faktura 10073: Kunden kräver ordernummer på varje faktura; fyll i ordernummer på faktura 10073"
    )


def test_the_buyer_reference_message_names_both_fields() -> None:
    message = refusal(
        [InvoiceCheck.BUYER_REFERENCE_NO], invoice(invoice_number="10073"), customer_row(customer_number="1031"), None
    )
    assert message == (
        "Faktura 10073: Kunden kräver köparens referens (Märkning eller Er referens) på varje faktura; "
        "fyll i Märkning på kund 1031 eller Er referens på faktura 10073"
    )


def test_the_reference_name_message() -> None:
    message = refusal([InvoiceCheck.BUYER_REFERENCE_NAME], invoice(invoice_number="10073"), customer_row(), None)
    assert message == (
        "Faktura 10073: Kunden kräver referensperson (Er referens) på varje faktura; "
        "fyll i Er referens på faktura 10073"
    )


def test_the_name_message_says_which_name_inexchange_has() -> None:
    message = refusal(
        [InvoiceCheck.BUYER_NAME],
        invoice(invoice_number="10073"),
        customer_row(customer_number="1031", name="Vårgårda Kommun"),
        "Vårgårda kommun",
    )
    assert message == (
        'Faktura 10073: Kunden kräver köparens namn exakt som InExchange har det, "Vårgårda kommun" på varje '
        'faktura; ändra namnet på kund 1031 i ERP från "Vårgårda Kommun" till "Vårgårda kommun" så att det '
        "stämmer med InExchange"
    )


def test_several_failed_checks_make_one_message_naming_them_all() -> None:
    message = refusal(
        list(InvoiceCheck),
        invoice(invoice_number="10073"),
        customer_row(customer_number="1031", name="Vårgårda Kommun"),
        "Vårgårda kommun",
    )
    assert message is not None and message.startswith("Faktura 10073: Kunden kräver köparens referens")
    assert message.count("Faktura 10073") == 1
    for words in ("köparens referens", "referensperson (Er referens)", "ordernummer", '"Vårgårda kommun"',
                  "fyll i Er referens på faktura 10073", "fyll i ordernummer på faktura 10073",
                  'till "Vårgårda kommun"'):
        assert words in message, words
    # Er referens fills both the reference and the reference person: asked for once
    assert "Märkning på kund" not in message and message.count("fyll i Er referens") == 1
    assert " och ändra namnet" in message


# ---- the document carries the reference person -----------------------------------------------------
def _buyer_contact(customer: dict[str, Any], header: dict[str, Any]) -> etree._Element | None:
    batch = single_batch(customer, (header, invoice_rows()[1]))
    root = etree.fromstring(build_from_batch(batch, int(header["invoice_id"]), Seller.from_config(SELLER_CONFIG)))
    return root.find(f"{{{NS_CAC}}}AccountingCustomerParty/{{{NS_CAC}}}Party/{{{NS_CAC}}}Contact")


def test_your_reference_is_the_buyers_contact_name() -> None:
    contact = _buyer_contact(customer_row(marking="Avdelning 44"), invoice(your_reference="Eva Lind"))
    assert contact is not None
    assert [etree.QName(child).localname for child in contact] == ["Name", "ElectronicMail"]
    assert contact.findtext(f"{{{NS_CBC}}}Name") == "Eva Lind"


def test_without_your_reference_the_contact_has_no_name() -> None:
    contact = _buyer_contact(customer_row(), invoice(your_reference=None))
    assert contact is not None and contact.find(f"{{{NS_CBC}}}Name") is None
    assert _buyer_contact(customer_row(invoice_email=None), invoice(your_reference=None)) is None
    named = _buyer_contact(customer_row(invoice_email=None), invoice(your_reference="Eva Lind"))
    assert named is not None and [etree.QName(child).localname for child in named] == ["Name"]
