"""Tests of the Peppol BIS Billing 3.0 documents built from ERP invoices (``inexchange.ubl``)."""

from __future__ import annotations

import base64
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from dispatch_testing.erp_rows import (
    CUSTOMER_NUMBER,
    GLN,
    INVOICE_ID,
    INVOICE_NUMBER,
    SELLER_CONFIG,
    attachment_row,
    credit_rows,
    customer_row,
    invoice_rows,
    make_batch,
    single_batch,
)
from inexchange.erp import InvoiceBatch
from inexchange.exceptions import InExchangeConfigError
from inexchange.ubl import (
    CUSTOMIZATION_ID,
    MAX_ATTACHMENT_BYTES,
    NS_CAC,
    NS_CBC,
    NS_CREDIT_NOTE,
    NS_INVOICE,
    PROFILE_ID,
    DocumentError,
    Seller,
    build_from_batch,
)
from lxml import etree

#: the official Peppol BIS Billing 3.0 example documents
EXAMPLES = Path(os.environ.get("PEPPOL_EXAMPLES_DIR", "/work/shared/peppol-examples"))
needs_examples = pytest.mark.skipif(not (EXAMPLES / "base-example.xml").is_file(),
                                    reason=f"Peppol example documents not found in {EXAMPLES}")
NS = {"cac": NS_CAC, "cbc": NS_CBC}
SELLER = Seller.from_config(SELLER_CONFIG)
#: three lines at 25, 12 and 6 %, listed out of rate order
MIXED_ITEMS = [("2", "1000", "12"), ("3", "33.335", "25"), ("1.5", "99.99", "6")]

#: UBL 2.1 sequence of the Invoice children the builder may write (xsd:sequence order)
UBL_INVOICE_SEQUENCE = (
    "CustomizationID", "ProfileID", "ID", "IssueDate", "DueDate", "InvoiceTypeCode", "DocumentCurrencyCode",
    "BuyerReference", "OrderReference", "BillingReference", "AdditionalDocumentReference",
    "AccountingSupplierParty", "AccountingCustomerParty", "PaymentMeans", "TaxTotal", "LegalMonetaryTotal",
    "InvoiceLine",
)
#: the same for a CreditNote (no DueDate; CreditNoteTypeCode in place of InvoiceTypeCode)
UBL_CREDIT_NOTE_SEQUENCE = (
    "CustomizationID", "ProfileID", "ID", "IssueDate", "CreditNoteTypeCode", "DocumentCurrencyCode",
    "BuyerReference", "OrderReference", "BillingReference", "AdditionalDocumentReference",
    "AccountingSupplierParty", "AccountingCustomerParty", "PaymentMeans", "TaxTotal", "LegalMonetaryTotal",
    "CreditNoteLine",
)


# ---- helpers ---------------------------------------------------------------------------------------
def build(batch: InvoiceBatch, invoice_id: int = INVOICE_ID, seller: Seller = SELLER) -> bytes:
    """Build one invoice of a batch the way the submit operator does."""
    return build_from_batch(batch, invoice_id, seller)


def document(customer: dict[str, Any] | None = None,
             invoice: tuple[dict[str, Any], list[dict[str, Any]]] | None = None,
             attachments: list[dict[str, Any]] | None = None, *, sqlite: bool = False) -> etree._Element:
    """Build and parse the document of one invoice."""
    batch = single_batch(customer, invoice, attachments or [], sqlite=sqlite)
    invoice_id = int(batch.invoices.index[0])
    return etree.fromstring(build(batch, invoice_id))


def one(root: etree._Element, path: str) -> etree._Element:
    """The single element at ``path``."""
    found = root.findall(path, NS)
    assert len(found) == 1, f"{path}: {len(found)} elements"
    return found[0]


def text(root: etree._Element, path: str) -> str:
    """The text of the single element at ``path``."""
    return one(root, path).text or ""


def amount(root: etree._Element, path: str) -> Decimal:
    """The amount at ``path``, checked to carry the document currency."""
    element = one(root, path)
    assert element.get("currencyID") == "SEK"
    return Decimal(element.text or "")


def local_names(element: etree._Element) -> list[str]:
    """Local names of an element's children, in document order."""
    return [etree.QName(child).localname for child in element if isinstance(child.tag, str)]


def common_order(names: list[str], common: set[str]) -> list[str]:
    """``names`` restricted to ``common``, repeated neighbours collapsed."""
    order: list[str] = []
    for name in names:
        if name in common and (not order or order[-1] != name):
            order.append(name)
    return order


def order_differences(ours: etree._Element, theirs: etree._Element, path: str = "") -> list[str]:
    """Where the children of elements both documents have come in a different order."""
    ours_names, theirs_names = local_names(ours), local_names(theirs)
    common = set(ours_names) & set(theirs_names)
    differences = []
    if common_order(ours_names, common) != common_order(theirs_names, common):
        differences.append(f"{path or '/'}: {common_order(ours_names, common)} "
                           f"!= {common_order(theirs_names, common)}")
    for name in sorted(common):
        mine = next(c for c in ours if isinstance(c.tag, str) and etree.QName(c).localname == name)
        other = next(c for c in theirs if isinstance(c.tag, str) and etree.QName(c).localname == name)
        differences += order_differences(mine, other, f"{path}/{name}")
    return differences


def full_document() -> etree._Element:
    """A debit invoice using every optional part: order number, GLN, Märkning, attachments, three rates."""
    customer = customer_row(gln=GLN, marking="Projekt 4711", attach_documents=True)
    return document(customer, invoice_rows(items=MIXED_ITEMS, order_number="PO-8812"), [attachment_row()])


# ---- a debit invoice -------------------------------------------------------------------------------
def test_debit_invoice_root_and_header() -> None:
    root = document()
    assert root.tag == f"{{{NS_INVOICE}}}Invoice"
    assert root.nsmap == {None: NS_INVOICE, "cac": NS_CAC, "cbc": NS_CBC}
    assert text(root, "cbc:CustomizationID") == (
        "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0") == CUSTOMIZATION_ID
    assert text(root, "cbc:ProfileID") == "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0" == PROFILE_ID
    assert text(root, "cbc:ID") == INVOICE_NUMBER
    assert text(root, "cbc:InvoiceTypeCode") == "380"
    assert text(root, "cbc:IssueDate") == "2026-03-10"
    assert text(root, "cbc:DueDate") == "2026-04-09"
    assert text(root, "cbc:DocumentCurrencyCode") == "SEK"
    assert root.find("cbc:CreditNoteTypeCode", NS) is None
    assert root.find("cac:BillingReference", NS) is None


def test_document_currency_is_the_invoice_currency() -> None:
    root = document(invoice=invoice_rows(currency="EUR"))
    assert text(root, "cbc:DocumentCurrencyCode") == "EUR"
    assert {e.get("currencyID") for e in root.iter() if e.get("currencyID")} == {"EUR"}


def test_buyer_reference_is_the_marking_first() -> None:
    root = document(customer_row(marking="Projekt 4711"), invoice_rows(your_reference="Eva Lind"))
    assert text(root, "cbc:BuyerReference") == "Projekt 4711"


def test_buyer_reference_is_your_reference_without_marking() -> None:
    root = document(customer_row(marking=None), invoice_rows(your_reference="Eva Lind"))
    assert text(root, "cbc:BuyerReference") == "Eva Lind"


def test_buyer_reference_is_the_customer_number_without_marking_or_reference() -> None:
    root = document(customer_row(marking=None), invoice_rows(your_reference=None))
    assert text(root, "cbc:BuyerReference") == CUSTOMER_NUMBER


def test_order_reference_from_order_number() -> None:
    assert text(document(invoice=invoice_rows(order_number="PO-8812")), "cac:OrderReference/cbc:ID") == "PO-8812"
    assert document(invoice=invoice_rows(order_number=None)).find("cac:OrderReference", NS) is None


def test_seller_party() -> None:
    party = one(document(), "cac:AccountingSupplierParty/cac:Party")
    endpoint = one(party, "cbc:EndpointID")
    assert endpoint.get("schemeID") == "0007"
    assert re.fullmatch(r"\d{10}", endpoint.text or "") and endpoint.text == "5560360793"
    schemes = {text(scheme, "cac:TaxScheme/cbc:ID"): text(scheme, "cbc:CompanyID")
               for scheme in party.findall("cac:PartyTaxScheme", NS)}
    assert schemes == {"VAT": "SE556036079301", "TAX": "Godkänd för F-skatt"}
    assert text(party, "cac:PartyLegalEntity/cbc:RegistrationName") == SELLER_CONFIG["name"]
    legal_id = one(party, "cac:PartyLegalEntity/cbc:CompanyID")
    assert (legal_id.text, legal_id.get("schemeID")) == ("5560360793", "0007")
    assert text(party, "cac:PostalAddress/cac:Country/cbc:IdentificationCode") == "SE"


def test_seller_without_f_skatt_has_only_the_vat_scheme() -> None:
    seller = Seller.from_config({**SELLER_CONFIG, "f_skatt": False})
    root = etree.fromstring(build(single_batch(), seller=seller))
    schemes = root.findall("cac:AccountingSupplierParty/cac:Party/cac:PartyTaxScheme/cac:TaxScheme/cbc:ID", NS)
    assert [s.text for s in schemes] == ["VAT"]


def test_buyer_endpoint_is_the_gln_when_present() -> None:
    party = one(document(customer_row(gln=GLN)), "cac:AccountingCustomerParty/cac:Party")
    endpoint = one(party, "cbc:EndpointID")
    assert (endpoint.text, endpoint.get("schemeID")) == (GLN, "0088")


def test_buyer_endpoint_is_the_org_number_digits_without_gln() -> None:
    party = one(document(customer_row(gln=None, org_number="212000-1553")), "cac:AccountingCustomerParty/cac:Party")
    endpoint = one(party, "cbc:EndpointID")
    assert (endpoint.text, endpoint.get("schemeID")) == ("2120001553", "0007")
    assert text(party, "cac:PartyLegalEntity/cbc:RegistrationName") == "Alingsås kommun"
    assert text(party, "cac:PartyTaxScheme/cbc:CompanyID") == "SE212000155301"


def test_payment_means_is_a_credit_transfer_to_the_bankgiro() -> None:
    means = one(document(), "cac:PaymentMeans")
    assert text(means, "cbc:PaymentMeansCode") == "30"
    assert text(means, "cbc:PaymentID") == INVOICE_NUMBER
    assert text(means, "cac:PayeeFinancialAccount/cbc:ID") == "50501055"
    assert text(means, "cac:PayeeFinancialAccount/cac:FinancialInstitutionBranch/cbc:ID") == "SE:BANKGIRO"


def test_payment_means_with_an_iban() -> None:
    config = {k: v for k, v in SELLER_CONFIG.items() if k != "bankgiro"}
    seller = Seller.from_config({**config, "iban": "SE45 5000 0000 0583 9825 7466", "bic": "ESSESESS"})
    means = one(etree.fromstring(build(single_batch(), seller=seller)), "cac:PaymentMeans")
    assert text(means, "cac:PayeeFinancialAccount/cbc:ID") == "SE4550000000058398257466"
    assert text(means, "cac:PayeeFinancialAccount/cac:FinancialInstitutionBranch/cbc:ID") == "ESSESESS"


def test_one_tax_total_whose_subtotals_add_up() -> None:
    root = document()
    tax_total = one(root, "cac:TaxTotal")
    subtotals = tax_total.findall("cac:TaxSubtotal", NS)
    assert len(subtotals) == 1
    assert amount(tax_total, "cbc:TaxAmount") == Decimal("625.00") == amount(subtotals[0], "cbc:TaxAmount")
    assert amount(subtotals[0], "cbc:TaxableAmount") == Decimal("2500.00")
    assert text(subtotals[0], "cac:TaxCategory/cbc:ID") == "S"
    assert text(subtotals[0], "cac:TaxCategory/cbc:Percent") == "25"
    assert text(subtotals[0], "cac:TaxCategory/cac:TaxScheme/cbc:ID") == "VAT"


def test_legal_monetary_total_adds_up_to_the_erp_amounts() -> None:
    header, _ = invoice = invoice_rows(items=MIXED_ITEMS)
    root = document(invoice=invoice)
    line_sum = sum((amount(line, "cbc:LineExtensionAmount") for line in root.findall("cac:InvoiceLine", NS)),
                   Decimal("0"))
    totals = one(root, "cac:LegalMonetaryTotal")
    tax = amount(root, "cac:TaxTotal/cbc:TaxAmount")
    assert amount(totals, "cbc:LineExtensionAmount") == line_sum == header["amount_ex_vat"]
    assert amount(totals, "cbc:TaxExclusiveAmount") == line_sum
    assert tax == header["vat_amount"]
    assert amount(totals, "cbc:TaxInclusiveAmount") == line_sum + tax
    assert amount(totals, "cbc:PayableAmount") == line_sum + tax == header["total_amount"]


def test_each_line_amount_is_quantity_times_price() -> None:
    root = document(invoice=invoice_rows(items=MIXED_ITEMS))
    lines = root.findall("cac:InvoiceLine", NS)
    assert [text(line, "cbc:ID") for line in lines] == ["1", "2", "3"]
    assert [text(line, "cbc:InvoicedQuantity") for line in lines] == ["2", "3", "1.5"]
    assert [text(line, "cac:Price/cbc:PriceAmount") for line in lines] == ["1000", "33.335", "99.99"]
    for line in lines:
        quantity = Decimal(text(line, "cbc:InvoicedQuantity"))
        price = Decimal(text(line, "cac:Price/cbc:PriceAmount"))
        assert abs(amount(line, "cbc:LineExtensionAmount") - quantity * price) <= Decimal("0.02")
    first = lines[0]
    assert text(first, "cac:Item/cbc:Name") == "Konsulttjänst 1"
    assert text(first, "cac:Item/cac:SellersItemIdentification/cbc:ID") == "A-001"
    assert text(first, "cac:Item/cac:ClassifiedTaxCategory/cbc:Percent") == "12"


@needs_examples
@pytest.mark.parametrize("example", ["base-example.xml", "Vat-category-S.xml", "Allowance-example.xml"])
def test_element_order_follows_the_peppol_examples(example: str) -> None:
    ours = full_document()
    theirs = etree.parse(str(EXAMPLES / example)).getroot()
    assert etree.QName(theirs).localname == "Invoice"
    assert len(set(local_names(ours)) & set(local_names(theirs))) >= 12
    assert order_differences(ours, theirs) == []


def test_element_order_follows_the_ubl_sequence() -> None:
    names = local_names(full_document())
    assert {"OrderReference", "AdditionalDocumentReference", "InvoiceLine"} <= set(names)
    assert set(names) <= set(UBL_INVOICE_SEQUENCE)
    positions = [UBL_INVOICE_SEQUENCE.index(name) for name in names]
    assert positions == sorted(positions), names


# ---- a credit invoice ------------------------------------------------------------------------------
def credit_document(credited: str | None = INVOICE_NUMBER) -> etree._Element:
    """A credit note of three lines with an order number and an attachment."""
    return document(customer_row(attach_documents=True),
                    credit_rows(items=MIXED_ITEMS, credited=credited, order_number="PO-8812"),
                    [attachment_row(INVOICE_ID + 1)])


def test_credit_invoice_is_a_credit_note() -> None:
    root = credit_document()
    assert root.tag == f"{{{NS_CREDIT_NOTE}}}CreditNote"
    assert root.nsmap == {None: NS_CREDIT_NOTE, "cac": NS_CAC, "cbc": NS_CBC}
    assert text(root, "cbc:CreditNoteTypeCode") == "381"
    assert root.find("cbc:InvoiceTypeCode", NS) is None
    assert root.find("cac:InvoiceLine", NS) is None
    assert text(root, "cbc:ID") == "10002"
    assert text(root, "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID") == INVOICE_NUMBER


def test_credit_note_quantities_and_amounts_are_positive() -> None:
    header, lines = credit_rows(items=MIXED_ITEMS)
    assert header["total_amount"] < 0 and all(line["quantity"] < 0 for line in lines)
    root = document(invoice=(header, lines))
    credit_lines = root.findall("cac:CreditNoteLine", NS)
    assert [text(line, "cbc:CreditedQuantity") for line in credit_lines] == ["2", "3", "1.5"]
    amounts = [Decimal(e.text or "") for e in root.iter() if e.get("currencyID")]
    assert len(amounts) > 10 and all(a > 0 for a in amounts)
    assert amount(root, "cac:LegalMonetaryTotal/cbc:PayableAmount") == -header["total_amount"]
    assert amount(root, "cac:TaxTotal/cbc:TaxAmount") == -header["vat_amount"]
    for line in credit_lines:
        quantity = Decimal(text(line, "cbc:CreditedQuantity"))
        price = Decimal(text(line, "cac:Price/cbc:PriceAmount"))
        assert abs(amount(line, "cbc:LineExtensionAmount") - quantity * price) <= Decimal("0.02")


@needs_examples
def test_credit_note_element_order_follows_the_peppol_example() -> None:
    ours = credit_document()
    theirs = etree.parse(str(EXAMPLES / "base-creditnote-correction.xml")).getroot()
    assert order_differences(ours, theirs) == []
    names = local_names(ours)
    assert set(names) <= set(UBL_CREDIT_NOTE_SEQUENCE)
    positions = [UBL_CREDIT_NOTE_SEQUENCE.index(name) for name in names]
    assert positions == sorted(positions), names


def test_credit_note_without_credited_invoice_is_refused() -> None:
    with pytest.raises(DocumentError, match=r"Faktura 10002: kreditfakturan anger inte vilken faktura den krediterar"):
        credit_document(credited=None)


# ---- VAT rates -------------------------------------------------------------------------------------
def test_mixed_vat_rates_give_three_sorted_subtotals() -> None:
    root = document(invoice=invoice_rows(items=MIXED_ITEMS))
    subtotals = one(root, "cac:TaxTotal").findall("cac:TaxSubtotal", NS)
    got = [(text(s, "cac:TaxCategory/cbc:Percent"), amount(s, "cbc:TaxableAmount"), amount(s, "cbc:TaxAmount"))
           for s in subtotals]
    # 3 x 33.335 = 100.005 -> 100.01; 1.5 x 99.99 = 149.985 -> 149.99; VAT rounded per rate
    assert got == [
        ("6", Decimal("149.99"), Decimal("9.00")),
        ("12", Decimal("2000.00"), Decimal("240.00")),
        ("25", Decimal("100.01"), Decimal("25.00")),
    ]
    assert {text(s, "cac:TaxCategory/cbc:ID") for s in subtotals} == {"S"}
    assert amount(root, "cac:TaxTotal/cbc:TaxAmount") == Decimal("274.00")


# ---- attachments -----------------------------------------------------------------------------------
def test_attachments_are_embedded_when_the_customer_wants_them() -> None:
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 4
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\xff" * 50
    root = document(customer_row(attach_documents=True), invoice_rows(),
                    [attachment_row(file_name="tidrapport.pdf", content=pdf),
                     attachment_row(file_name="foto.png", content=png, mime_type="image/png")])
    references = root.findall("cac:AdditionalDocumentReference", NS)
    embedded = {}
    for reference in references:
        binary = one(reference, "cac:Attachment/cbc:EmbeddedDocumentBinaryObject")
        assert binary.get("filename") == text(reference, "cbc:ID")
        embedded[binary.get("filename")] = (binary.get("mimeCode"), base64.b64decode(binary.text or "", validate=True))
    assert embedded == {"tidrapport.pdf": ("application/pdf", pdf), "foto.png": ("image/png", png)}


def test_attachments_are_left_out_when_the_customer_does_not_want_them() -> None:
    root = document(customer_row(attach_documents=False), invoice_rows(), [attachment_row()])
    assert root.findall("cac:AdditionalDocumentReference", NS) == []


def test_attachments_of_other_invoices_are_not_embedded() -> None:
    batch = make_batch([customer_row(attach_documents=True)], [invoice_rows(INVOICE_ID), invoice_rows(INVOICE_ID + 1)],
                       [attachment_row(INVOICE_ID + 1, "annan.pdf")])
    root = etree.fromstring(build(batch, INVOICE_ID))
    assert root.findall("cac:AdditionalDocumentReference", NS) == []


def test_attachment_over_five_megabytes_is_refused() -> None:
    at_limit = attachment_row(file_name="stor.pdf", content=b"x" * MAX_ATTACHMENT_BYTES)
    root = document(customer_row(attach_documents=True), invoice_rows(), [at_limit])
    assert len(root.findall("cac:AdditionalDocumentReference", NS)) == 1

    too_big = attachment_row(file_name="ritning.pdf", content=b"x" * (MAX_ATTACHMENT_BYTES + 1))
    assert MAX_ATTACHMENT_BYTES == 5 * 1024 * 1024
    with pytest.raises(DocumentError) as raised:
        document(customer_row(attach_documents=True), invoice_rows(), [too_big])
    assert INVOICE_NUMBER in str(raised.value)
    assert "ritning.pdf" in str(raised.value)


@pytest.mark.parametrize("flag", ["false", "nej", "0", 0, False, None])
def test_attachments_are_left_out_when_the_flag_reads_no(flag: Any) -> None:
    # a view casting nothing over text gives 'false': a non-empty text, yet no
    root = document(customer_row(attach_documents=flag), invoice_rows(), [attachment_row()])
    assert root.findall("cac:AdditionalDocumentReference", NS) == []


@pytest.mark.parametrize("flag", ["true", "ja", "1", 1, True])
def test_attachments_are_embedded_when_the_flag_reads_yes(flag: Any) -> None:
    root = document(customer_row(attach_documents=flag), invoice_rows(), [attachment_row()])
    assert len(root.findall("cac:AdditionalDocumentReference", NS)) == 1


# ---- units -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("unit", "code"), [("st", "H87"), ("tim", "HUR"), ("kg", "KGM"), ("Tim", "HUR")])
def test_known_units_map_to_un_ece_codes(unit: str, code: str) -> None:
    header, lines = invoice_rows()
    lines[0]["unit"] = unit
    quantity = one(document(invoice=(header, lines)), "cac:InvoiceLine/cbc:InvoicedQuantity")
    assert quantity.get("unitCode") == code


def test_unknown_unit_is_refused_naming_the_line_and_the_unit() -> None:
    header, lines = invoice_rows(items=[("1", "100", "25"), ("2", "100", "25")])
    lines[1]["unit"] = "burk"
    with pytest.raises(DocumentError) as raised:
        document(invoice=(header, lines))
    message = str(raised.value)
    assert message.startswith(f"Faktura {INVOICE_NUMBER}: ") and "rad 2" in message and "'burk'" in message


# ---- hostile rows ----------------------------------------------------------------------------------
def test_a_negative_price_is_refused_not_turned_into_a_negative_quantity() -> None:
    header, lines = invoice_rows(items=[("10", "250", "25"), ("1", "-200", "25")])
    with pytest.raises(DocumentError, match=r"rad 2: priset -200 är negativt \(BR-27\)"):
        document(invoice=(header, lines))


def test_a_discount_line_is_a_negative_quantity_at_a_positive_price() -> None:
    root = document(invoice=invoice_rows(items=[("10", "250", "25"), ("-1", "200", "25")]))
    discount = root.findall("cac:InvoiceLine", NS)[1]
    assert text(discount, "cbc:InvoicedQuantity") == "-1"
    assert text(discount, "cbc:LineExtensionAmount") == "-200.00"
    assert text(discount, "cac:Price/cbc:PriceAmount") == "200"
    assert text(root, "cac:LegalMonetaryTotal/cbc:PayableAmount") == "2875.00"


def test_a_line_text_over_200_characters_is_refused_not_cut() -> None:
    header, lines = invoice_rows()
    lines[0]["description"] = "Å" * 200
    assert text(document(invoice=(header, lines)), "cac:InvoiceLine/cac:Item/cbc:Name") == "Å" * 200
    lines[0]["description"] = "Å" * 201
    with pytest.raises(DocumentError, match="radtexten har 201 tecken, högst 200"):
        document(invoice=(header, lines))


def test_line_ids_are_whole_numbers_when_another_line_has_none() -> None:
    # one NULL line number in the batch makes the column float: line 1 must still be '1', not '1.0'
    other_header, other_lines = invoice_rows(INVOICE_ID + 1)
    other_lines[0]["line_number"] = None
    batch = make_batch([customer_row()], [invoice_rows(items=[("1", "100", "25"), ("2", "100", "25")]),
                                          (other_header, other_lines)])
    root = etree.fromstring(build(batch, INVOICE_ID))
    assert [text(line, "cbc:ID") for line in root.findall("cac:InvoiceLine", NS)] == ["1", "2"]
    with pytest.raises(DocumentError, match="BT-126"):
        build(batch, INVOICE_ID + 1)


def test_a_customer_repeated_in_the_batch_builds_from_its_first_row() -> None:
    # a view without keys may repeat a customer after validation checked it: no crash, the first row
    batch = make_batch([customer_row(), customer_row(name="Kontakt 2")], [invoice_rows()])
    root = etree.fromstring(build(batch))
    assert text(root, "cac:AccountingCustomerParty/cac:Party/cac:PartyName/cbc:Name") == "Alingsås kommun"


@pytest.mark.parametrize("invoice_type", [" credit ", "credit\n"])
def test_the_invoice_type_is_read_like_validation_reads_it(invoice_type: str) -> None:
    header, lines = credit_rows(invoice_id=INVOICE_ID)
    root = document(invoice=({**header, "invoice_type": invoice_type}, lines))
    assert etree.QName(root).localname == "CreditNote"


def test_a_value_validation_would_reject_becomes_a_document_error() -> None:
    header, lines = invoice_rows()
    with pytest.raises(DocumentError, match=f"Faktura {INVOICE_NUMBER}: ERP-raden kan inte läsas"):
        document(invoice=({**header, "total_amount": "tolv"}, lines))
    with pytest.raises(DocumentError, match=f"Faktura {INVOICE_NUMBER}: ERP-raden kan inte läsas"):
        document(invoice=({**header, "due_date": "snart"}, lines))


@pytest.mark.parametrize("name", ["'; DROP TABLE customer; --", "O'Brien & Söner \"AB\" <Ltd>",
                                  "Åsa 🧾 \u202eBA\u202c", "A\u0308ngelholm", "\u200bNoll\u200dbredd\ufeff"])
def test_names_are_carried_exactly_and_escaped(name: str) -> None:
    batch = single_batch(customer_row(name=name))
    content = build(batch)
    root = etree.fromstring(content)
    assert text(root, "cac:AccountingCustomerParty/cac:Party/cac:PartyName/cbc:Name") == name
    if "&" in name:
        assert b"&amp; S" in content and b"&lt;Ltd&gt;" in content


# ---- the bytes -------------------------------------------------------------------------------------
def test_the_same_invoice_gives_the_same_bytes() -> None:
    def make() -> bytes:
        batch = single_batch(customer_row(attach_documents=True, gln=GLN),
                             invoice_rows(items=MIXED_ITEMS, order_number="PO-8812"), [attachment_row()])
        return build(batch)

    first, second = make(), make()
    assert first == second
    batch = single_batch(invoice=invoice_rows(items=MIXED_ITEMS))
    assert build(batch) == build(batch)
    assert build(batch) != first


def test_sqlite_and_postgresql_rows_give_the_same_document() -> None:
    customer, invoice = customer_row(attach_documents=True), invoice_rows(items=MIXED_ITEMS)
    from_postgres = build(single_batch(customer, invoice, [attachment_row()]))
    from_sqlite = build(single_batch(customer, invoice, [attachment_row()], sqlite=True))
    assert from_sqlite == from_postgres


def test_document_is_well_formed_utf8() -> None:
    xml = build(single_batch(customer_row(marking="Märkning åäö")))
    assert re.match(rb"<\?xml version=['\"]1\.0['\"] encoding=['\"]UTF-8['\"]\?>", xml)
    assert "Alingsås kommun".encode() in xml and "Märkning åäö".encode() in xml
    root = etree.fromstring(xml)
    assert text(root, "cbc:BuyerReference") == "Märkning åäö"


# ---- the seller's configuration ----------------------------------------------------------------------
def test_seller_config_is_accepted_and_compacted() -> None:
    seller = Seller.from_config({**SELLER_CONFIG, "vat_number": "se 5560360793 01"})
    assert seller.org_number == "5560360793"
    assert seller.vat_number == "SE556036079301"
    assert (seller.name, seller.bankgiro, seller.country_code, seller.f_skatt) == (
        SELLER_CONFIG["name"], "5050-1055", "SE", True)


def _config_error(config: dict[str, Any]) -> str:
    with pytest.raises(InExchangeConfigError) as raised:
        Seller.from_config(config)
    message = str(raised.value)
    assert message.startswith("seller configuration (Variable inexchange_seller): ")
    return message


@pytest.mark.parametrize("key", ["name", "org_number", "vat_number", "street", "postal_code", "city"])
def test_seller_config_missing_key(key: str) -> None:
    config = {k: v for k, v in SELLER_CONFIG.items() if k != key}
    assert f"{key} is required" in _config_error(config)


def test_seller_config_invalid_org_number() -> None:
    message = _config_error({**SELLER_CONFIG, "org_number": "556036-0794"})
    assert "org_number 556036-0794 is not a valid Swedish organisation number" in message


def test_seller_config_vat_number_not_matching() -> None:
    message = _config_error({**SELLER_CONFIG, "vat_number": "SE212000155301"})
    assert message.endswith("vat_number SE212000155301 must be SE + org_number + 01")


def test_seller_config_without_payment_account() -> None:
    config = {k: v for k, v in SELLER_CONFIG.items() if k != "bankgiro"}
    assert "one of bankgiro, plusgiro or iban is required for PaymentMeans" in _config_error(config)


def test_seller_config_bad_iban() -> None:
    message = _config_error({**SELLER_CONFIG, "iban": "SE46 5000 0000 0583 9825 7466"})
    assert message.endswith("iban SE46 5000 0000 0583 9825 7466 is not valid")


def test_seller_config_names_every_problem_at_once() -> None:
    config = {k: v for k, v in SELLER_CONFIG.items() if k not in ("name", "bankgiro")}
    message = _config_error({**config, "org_number": "556036-0794", "vat_number": "SE55603607930",
                             "iban": "XX00", "logo": "logo.png"})
    problems = [
        "unknown key 'logo'",
        "name is required",
        "org_number 556036-0794 is not a valid Swedish organisation number",
        "vat_number SE55603607930 must be SE + org_number + 01",
        "iban XX00 is not valid",
    ]
    for problem in problems:
        assert message.count(problem) == 1, problem
    assert "one of bankgiro" not in message  # the (invalid) iban is a payment account


@pytest.mark.parametrize(("key", "value"), [("bankgiro", "123"), ("bankgiro", "5050-1056"), ("bankgiro", "5050-105X"),
                                            ("plusgiro", "4000-00"), ("plusgiro", "1")])
def test_seller_config_bad_giro_number(key: str, value: str) -> None:
    config = {k: v for k, v in SELLER_CONFIG.items() if k != "bankgiro"}
    assert f"{key} {value} is not valid" in _config_error({**config, key: value})


@pytest.mark.parametrize(("key", "value"), [("bankgiro", "5050-1055"), ("bankgiro", "991-2346"), ("plusgiro", "4000-6"), ("plusgiro", "9002-09")])
def test_seller_config_good_giro_number(key: str, value: str) -> None:
    config = {k: v for k, v in SELLER_CONFIG.items() if k != "bankgiro"}
    assert getattr(Seller.from_config({**config, key: value}), key) == value


def test_seller_config_bad_bic() -> None:
    message = _config_error({**SELLER_CONFIG, "iban": "SE45 5000 0000 0583 9825 7466", "bic": "ESSE"})
    assert "bic ESSE is not a valid BIC" in message
