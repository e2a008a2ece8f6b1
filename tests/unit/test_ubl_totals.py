"""Every document built from a generated ERP adds up, re-computed from the XML alone.

The totals are read back from the XML and checked against the EN 16931 calculation rules
(BR-CO-10, -13, -14, -15, -16, -17 and the per-category taxable amounts), independent of the
builder's own arithmetic. The generator states the VAT category of its zero-rated lines: EU buyers
abroad get intra-community supply (K) or reverse charge (AE), exempt lines (E) state their reason,
zero-rated ones (Z) none.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import create_engine, text

from dispatch_testing.erp_rows import END, INVOICE_ID, SELLER_CONFIG, START, customer_row, invoice_rows, single_batch
from inexchange.erp import ErpReader
from inexchange_devkit.erpgen import generate
from inexchange.ubl import NS_CAC, NS_CBC, DocumentError, Seller, build_from_batch
from inexchange.validation import validate_batch

NS = {"cac": NS_CAC, "cbc": NS_CBC}
CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[dict, etree._Element]]:
    path: Path = tmp_path_factory.mktemp("erp") / "erp.db"
    engine = create_engine(f"sqlite:///{path}")
    generate(engine, seed=21, customers=40, invoices=240, start_date=date(2026, 11, 16), days=4, drafts=4)
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT invoice_id FROM customer_invoice"))]
    batch = ErpReader(engine).load(ids)
    engine.dispose()
    seller = Seller.from_config(SELLER_CONFIG)
    built = []
    for invoice_id in ids:
        try:
            xml = build_from_batch(batch, invoice_id, seller)
        except DocumentError:
            continue
        built.append((batch.customer(batch.invoice(invoice_id)["customer_id"]), etree.fromstring(xml)))
    return built


def amount(element: etree._Element, path: str) -> Decimal:
    return Decimal(element.findtext(path, namespaces=NS))


def test_enough_documents_of_each_kind(documents: list[tuple[dict, etree._Element]]) -> None:
    roots = {etree.QName(root).localname for _, root in documents}
    assert len(documents) >= 230 and roots == {"Invoice", "CreditNote"}


def test_totals_add_up(documents: list[tuple[dict, etree._Element]]) -> None:
    for _, root in documents:
        number = root.findtext("cbc:ID", namespaces=NS)
        lines = root.findall("cac:InvoiceLine", NS) + root.findall("cac:CreditNoteLine", NS)
        line_sum = sum((amount(line, "cbc:LineExtensionAmount") for line in lines), Decimal("0"))
        totals = root.find("cac:LegalMonetaryTotal", NS)
        assert amount(totals, "cbc:LineExtensionAmount") == line_sum, number  # BR-CO-10
        assert amount(totals, "cbc:TaxExclusiveAmount") == line_sum, number  # BR-CO-13, no allowances
        tax_totals = root.findall("cac:TaxTotal", NS)
        assert len(tax_totals) == 1, number
        subtotals = tax_totals[0].findall("cac:TaxSubtotal", NS)
        tax = sum((amount(s, "cbc:TaxAmount") for s in subtotals), Decimal("0"))
        assert amount(tax_totals[0], "cbc:TaxAmount") == tax, number  # BR-CO-14
        assert amount(totals, "cbc:TaxInclusiveAmount") == line_sum + tax, number  # BR-CO-15
        assert amount(totals, "cbc:PayableAmount") == line_sum + tax, number  # BR-CO-16, nothing prepaid

        per_category: dict[tuple[str, Decimal], Decimal] = defaultdict(Decimal)
        for line in lines:
            category = line.find("cac:Item/cac:ClassifiedTaxCategory", NS)
            key = (category.findtext("cbc:ID", namespaces=NS), Decimal(category.findtext("cbc:Percent", namespaces=NS)))
            per_category[key] += amount(line, "cbc:LineExtensionAmount")
            quantity = Decimal(line.findtext("cbc:InvoicedQuantity", namespaces=NS)
                               or line.findtext("cbc:CreditedQuantity", namespaces=NS))
            price = amount(line, "cac:Price/cbc:PriceAmount")
            assert price >= 0, number  # BR-27
            assert abs(quantity * price - amount(line, "cbc:LineExtensionAmount")) <= Decimal("0.02"), number
        seen = {}
        for subtotal in subtotals:
            category = subtotal.find("cac:TaxCategory", NS)
            key = (category.findtext("cbc:ID", namespaces=NS), Decimal(category.findtext("cbc:Percent", namespaces=NS)))
            taxable = amount(subtotal, "cbc:TaxableAmount")
            seen[key] = taxable
            expected = (taxable * key[1] / 100).quantize(CENT, ROUND_HALF_UP)
            assert amount(subtotal, "cbc:TaxAmount") == expected, number  # BR-CO-17 and BR-S-09
        assert seen == dict(per_category), number  # one subtotal per category and rate, with its lines


def test_zero_rate_categories_and_their_reasons(documents: list[tuple[dict, etree._Element]]) -> None:
    seen = set()
    for customer, root in documents:
        buyer_vat = root.findtext("cac:AccountingCustomerParty/cac:Party/cac:PartyTaxScheme/cbc:CompanyID",
                                  namespaces=NS)
        for category in root.findall("cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory", NS):
            code = category.findtext("cbc:ID", namespaces=NS)
            if Decimal(category.findtext("cbc:Percent", namespaces=NS)) != 0:
                assert code == "S"
                continue
            foreign = customer["country_code"] != "SE"
            seen.add((foreign, code))
            reason = (category.findtext("cbc:TaxExemptionReasonCode", namespaces=NS),
                      category.findtext("cbc:TaxExemptionReason", namespaces=NS))
            if code == "Z":
                assert not foreign and reason == (None, None)  # BR-Z-10
            else:
                assert code in ({"AE", "K", "E"} if foreign else {"E"}) and any(reason)  # BR-AE/IC/E-10
            if code in ("AE", "K"):
                assert reason[0] == {"AE": "VATEX-EU-AE", "K": "VATEX-EU-IC"}[code]
                assert buyer_vat == customer["vat_number"]  # BR-AE-02, BR-IC-02
    assert {(True, "AE"), (True, "K"), (False, "Z"), (False, "E")} <= seen, seen


def _build(customer: dict | None = None, invoice: tuple | None = None) -> bytes:
    batch = single_batch(customer, invoice)
    return build_from_batch(batch, next(iter(batch.invoices.index)), Seller.from_config(SELLER_CONFIG))


def test_line_amount_that_is_not_quantity_times_price_is_refused() -> None:
    header, lines = invoice_rows()
    lines[0]["line_amount"] += Decimal("1.00")
    with pytest.raises(DocumentError, match=r"rad 1: beloppet 2501.00 är inte antal 10 × pris 250 \(PEPPOL-EN16931-R120\)"):
        _build(invoice=(header, lines))


def test_erp_total_that_the_lines_do_not_give_is_refused() -> None:
    header, lines = invoice_rows()
    header["total_amount"] += Decimal("0.05")
    with pytest.raises(DocumentError, match=r"Faktura 10001: totalbeloppet .* i ERP skiljer sig .*BR-CO-15"):
        _build(invoice=(header, lines))


def test_control_characters_are_refused_not_crashed_on() -> None:
    with pytest.raises(DocumentError, match="BuyerReference innehåller tecken som XML inte kan bära"):
        _build(customer=customer_row(marking="Projekt\x0b4711"))


@pytest.mark.parametrize("items", [(("3", "33.33", "25"),), (("1", "99.70", "12"), ("2", "10.10", "6"))],
                         ids=["rounded-up", "rounded-down-two-rates"])
def test_total_rounded_to_whole_kronor_becomes_payable_rounding(items: tuple) -> None:
    header, lines = invoice_rows(items=items)
    exact = header["amount_ex_vat"] + header["vat_amount"]
    header["total_amount"] = exact.quantize(Decimal("1"), ROUND_HALF_UP)
    assert header["total_amount"] != exact

    assert validate_batch(single_batch(invoice=(header, lines)), start=START, end=END) == {INVOICE_ID: None}
    totals = etree.fromstring(_build(invoice=(header, lines))).find("cac:LegalMonetaryTotal", NS)
    rounding = amount(totals, "cbc:PayableRoundingAmount")
    assert rounding == header["total_amount"] - exact and 0 < abs(rounding) <= Decimal("0.50")
    assert amount(totals, "cbc:PayableAmount") == header["total_amount"]
    assert amount(totals, "cbc:PayableAmount") == amount(totals, "cbc:TaxInclusiveAmount") + rounding  # BR-CO-16


def test_payable_rounding_absent_when_the_totals_agree() -> None:
    totals = etree.fromstring(_build()).find("cac:LegalMonetaryTotal", NS)
    assert totals.find("cbc:PayableRoundingAmount", NS) is None


def test_total_off_by_more_than_rounding_is_rejected_by_both() -> None:
    header, lines = invoice_rows(items=(("3", "33.33", "25"),))
    header["total_amount"] = (header["amount_ex_vat"] + header["vat_amount"]).quantize(Decimal("1")) + 1
    message = validate_batch(single_batch(invoice=(header, lines)), start=START, end=END)[INVOICE_ID]
    assert message is not None and "totalbelopp" in message
    with pytest.raises(DocumentError, match="BR-CO-15"):
        _build(invoice=(header, lines))


@pytest.mark.parametrize(("country", "org", "vat", "scheme", "identifier"), [
    ("SE", "212000-1553", "SE212000155301", "0007", "2120001553"),
    ("DK", "13585628", "DK13585628", "0184", "13585628"),
    # Finland: the OVT code (0037 and the business id's digits) under 0216, which replaced 0037
    ("FI", "0112038-9", "FI01120389", "0216", "003701120389"),
])
def test_buyer_endpoint_scheme_follows_the_country(country: str, org: str, vat: str, scheme: str,
                                                   identifier: str) -> None:
    root = etree.fromstring(_build(customer=customer_row(country_code=country, org_number=org, vat_number=vat)))
    endpoint = root.find("cac:AccountingCustomerParty/cac:Party/cbc:EndpointID", NS)
    assert (endpoint.get("schemeID"), endpoint.text) == (scheme, identifier)


def test_buyer_from_a_country_without_a_national_scheme_is_addressed_by_its_vat_number() -> None:
    root = etree.fromstring(_build(customer=customer_row(country_code="DE", org_number="HRB 12345",
                                                         vat_number="DE136695976")))
    endpoint = root.find("cac:AccountingCustomerParty/cac:Party/cbc:EndpointID", NS)
    assert (endpoint.get("schemeID"), endpoint.text) == ("9930", "DE136695976")
    root = etree.fromstring(_build(customer=customer_row(country_code="DE", org_number="HRB 12345",
                                                         vat_number="DE136695976", gln="7350000000016")))
    assert root.find("cac:AccountingCustomerParty/cac:Party/cbc:EndpointID", NS).get("schemeID") == "0088"
    with pytest.raises(DocumentError, match="Peppol-adress saknas för BR; ange kundens GLN-nummer eller Peppol-id"):
        _build(customer=customer_row(country_code="BR", org_number="12345", vat_number=None))
