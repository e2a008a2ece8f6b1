"""Buyers of any country: the buyer's Peppol address (EndpointID, BT-49) and VAT number (BT-48).

The address is the optional ``peppol_id`` when set, else the GLN, else the org number under its
country's national EAS scheme, else the VAT number under the country's EAS VAT scheme (a German buyer:
9930); a buyer with none is refused by validation, before upload. A VAT number outside the EU is checked
by the country's python-stdnum module and never makes the invoice reverse charge. The documents are
checked with the official Peppol BIS 3 rules; a real SQLite ERP is read with and without the column.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import Engine, create_engine, text

from dispatch_testing.erp_rows import (
    CUSTOMER_NAME,
    CUSTOMER_NUMBER,
    END,
    INVOICE_ID,
    SELLER_CONFIG,
    START,
    customer_row,
    invoice_rows,
    single_batch,
    sqlite_row,
)
from dispatch_testing.peppol_rules import official_rules_folder
from inexchange.erp import ErpReader, InvoiceBatch
from inexchange.identifiers import EAS_CODES, SCHEME_CHECKS, VAT_NUMBER_SCHEMES, buyer_endpoint, parse_peppol_id
from inexchange.peppol import PeppolRules, rules_in
from inexchange.sql import statement
from inexchange.ubl import NS_CAC, NS_CBC, DocumentError, Seller, build_from_batch
from inexchange.validation import validate_batch
from inexchange_devkit.erpgen import create_tables, generate

NS = {"cac": NS_CAC, "cbc": NS_CBC}
BUYER = "cac:AccountingCustomerParty/cac:Party"
CUSTOMER = f"Kund {CUSTOMER_NUMBER} {CUSTOMER_NAME}: "
SELLER = Seller.from_config(SELLER_CONFIG)
GLN = "7300010000001"
#: (quantity, price, rate): one line at 25 % and one at 0 %
MIXED = (("10", "250", "25"), ("2", "1200", "0"))

GERMAN = customer_row(country_code="DE", org_number="HRB 12345", vat_number="DE136695976", gln=None,
                      language="de", currency="EUR", street="Industriestraße 8", postal_code="50667", city="Köln")
NORWEGIAN = customer_row(country_code="NO", org_number="974 760 673", vat_number="NO974760673MVA", gln=None,
                         language="no", currency="NOK", street="Karl Johans gate 22", postal_code="0159", city="Oslo")
AMERICAN = customer_row(country_code="US", org_number="C1234567", vat_number=None, gln=None, language="en",
                        currency="USD", street="1 Main Street", postal_code="10001", city="New York")
ITALIAN = customer_row(country_code="IT", org_number="00743110157", vat_number="IT00743110157", gln=None,
                       language="it", currency="EUR", street="Via Roma 1", postal_code="20121", city="Milano")
LATVIAN = customer_row(country_code="LV", org_number="40003521600", vat_number="LV40003521600", gln=None,
                       language="lv", currency="EUR", street="Brīvības iela 1", postal_code="LV-1010", city="Rīga")


@pytest.fixture(scope="module")
def official() -> PeppolRules:
    return rules_in(str(official_rules_folder()))


def batch_of(customer: dict[str, Any], peppol_id: str | None = None, items: tuple[tuple[str, str, str], ...] = MIXED,
             currency: str = "SEK") -> InvoiceBatch:
    """One invoice of ``customer``; ``peppol_id`` as the ERP's optional column when given."""
    batch = single_batch(customer, invoice_rows(items=items, currency=currency))
    if peppol_id is not None:
        batch.customers["peppol_id"] = peppol_id
    return batch


def message(batch: InvoiceBatch) -> str | None:
    return validate_batch(batch, start=START, end=END)[INVOICE_ID]


def built(batch: InvoiceBatch, official: PeppolRules) -> etree._Element:
    """The document of the batch's invoice, after validation let it through and the official rules found
    no fatal assertion in it."""
    assert message(batch) is None
    document = build_from_batch(batch, INVOICE_ID, SELLER)
    assert [failure.describe() for failure in official.check(document) if failure.fatal] == []
    return etree.fromstring(document)


def endpoint(root: etree._Element) -> tuple[str, str]:
    element = root.find(f"{BUYER}/cbc:EndpointID", NS)
    return element.get("schemeID"), element.text


def buyer_vat(root: etree._Element) -> list[str]:
    return root.xpath(f"{BUYER}/cac:PartyTaxScheme[cac:TaxScheme/cbc:ID = 'VAT']/cbc:CompanyID/text()",
                      namespaces=NS)


def categories(root: etree._Element) -> set[str]:
    return set(root.xpath("cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory/cbc:ID/text()", namespaces=NS))


# ---- documents the official rules accept ------------------------------------------------------------------
def test_german_buyer_with_a_vat_number_and_no_gln_is_addressed_by_the_vat_number(official: PeppolRules) -> None:
    root = built(batch_of(GERMAN, currency="EUR"), official)

    assert endpoint(root) == ("9930", "DE136695976")
    assert buyer_vat(root) == ["DE136695976"]
    assert "AE" in categories(root)  # an EU buyer abroad with a VAT number: reverse charge at 0 %


def test_norwegian_buyer_with_org_and_mva_number(official: PeppolRules) -> None:
    root = built(batch_of(NORWEGIAN, currency="NOK"), official)

    assert endpoint(root) == ("0192", "974760673")
    assert buyer_vat(root) == ["NO974760673MVA"]
    # outside the EU: an export, never reverse charge
    assert "AE" not in categories(root) and "S" in categories(root)


def test_norwegian_mva_number_without_its_prefix_is_written_with_it(official: PeppolRules) -> None:
    root = built(batch_of({**NORWEGIAN, "vat_number": "974760673MVA"}), official)

    assert buyer_vat(root) == ["NO974760673MVA"]  # BR-CO-09: the country prefix


@pytest.mark.parametrize(("customer", "peppol_id", "expected"), [
    pytest.param(customer_row(), f"0088:{GLN}", ("0088", GLN), id="swedish-gln"),
    pytest.param(customer_row(gln="7350000000016"), "0007:212000-1553", ("0007", "2120001553"),
                 id="over-the-gln-column"),
    pytest.param(NORWEGIAN, "0192:974760673", ("0192", "974760673"), id="norwegian-org"),
    pytest.param(GERMAN, "9930:de136695976", ("9930", "DE136695976"), id="german-vat"),
    pytest.param(customer_row(country_code="FI", org_number="0112038-9", vat_number="FI01120389"),
                 "0216:003701120389ABC", ("0216", "003701120389ABC"), id="finnish-ovt-with-unit"),
    pytest.param(customer_row(country_code="DE", org_number="HRB 12345", vat_number="DE136695976"),
                 "0204:04011000-1234512345-06", ("0204", "04011000-1234512345-06"), id="leitweg-id"),
])
def test_a_peppol_id_is_the_buyers_address(official: PeppolRules, customer: dict[str, Any], peppol_id: str,
                                          expected: tuple[str, str]) -> None:
    assert endpoint(built(batch_of(customer, peppol_id), official)) == expected


def test_us_buyer_with_a_peppol_id_gln(official: PeppolRules) -> None:
    root = built(batch_of(AMERICAN, f"0088:{GLN}", currency="USD"), official)

    assert endpoint(root) == ("0088", GLN)
    assert buyer_vat(root) == []  # no VAT number: none is needed outside the EU
    assert "AE" not in categories(root)


def test_an_empty_peppol_id_is_as_none(official: PeppolRules) -> None:
    root = built(batch_of(NORWEGIAN, "  "), official)

    assert endpoint(root) == ("0192", "974760673")


@pytest.mark.parametrize(("customer", "expected"), [
    pytest.param(customer_row(country_code="FR", org_number="552008443", vat_number="FR40303265045"),
                 ("0002", "552008443"), id="france-siren"),
    pytest.param(customer_row(country_code="NL", org_number="12345678", vat_number="NL004495445B01"),
                 ("9944", "NL004495445B01"), id="netherlands-vat"),
    pytest.param(customer_row(country_code="BE", org_number="0403.019.261", vat_number="BE0403019261"),
                 ("0208", "0403019261"), id="belgium-enterprise-number"),
    pytest.param(customer_row(country_code="IT", org_number="RM 123456", vat_number="IT00743110157"),
                 ("0211", "IT00743110157"), id="italy-partita-iva"),
    pytest.param(ITALIAN, ("0211", "IT00743110157"), id="italy-org-number-as-partita-iva"),
    pytest.param({**ITALIAN, "org_number": "IT 007 4311 0157"}, ("0211", "IT00743110157"),
                 id="italy-org-number-with-prefix-and-spaces"),
    pytest.param(LATVIAN, ("0218", "40003521600"), id="latvia-registration-number"),
    pytest.param({**LATVIAN, "org_number": "LV 4000 3521 600"}, ("0218", "40003521600"),
                 id="latvia-registration-number-with-prefix"),
    pytest.param(customer_row(country_code="GB", org_number="01234567", vat_number="GB980780684"),
                 ("9932", "GB980780684"), id="united-kingdom-vat"),
    pytest.param(customer_row(country_code="CH", org_number="CHE-116.281.710", vat_number="CHE-116.281.710 MWST"),
                 ("0183", "CHE116281710"), id="switzerland-uid"),
    pytest.param(customer_row(country_code="US", org_number="12-3456789", vat_number=None),
                 ("9959", "123456789"), id="united-states-ein"),
])
def test_the_country_gives_the_scheme(official: PeppolRules, customer: dict[str, Any],
                                      expected: tuple[str, str]) -> None:
    assert endpoint(built(batch_of(customer), official)) == expected


# ---- refusals, before upload --------------------------------------------------------------------------
def test_a_buyer_without_any_peppol_address_is_refused_with_what_to_give() -> None:
    assert message(batch_of(AMERICAN)) == CUSTOMER + (
        "Peppol-adress saknas för US: organisationsnummer C1234567 är inte ett amerikanskt EIN "
        "(9 siffror, EAS 9959); ange ett giltigt organisationsnummer, kundens GLN-nummer eller Peppol-id (peppol_id)"
    )
    brazilian = {**AMERICAN, "country_code": "BR"}
    assert message(batch_of(brazilian)) == CUSTOMER + (
        "Peppol-adress saknas för BR; ange kundens GLN-nummer eller Peppol-id (peppol_id)"
    )
    with pytest.raises(DocumentError, match=r"^Faktura 10001: kunden 4367: Peppol-adress saknas för BR; "):
        build_from_batch(batch_of(brazilian), INVOICE_ID, SELLER)


def test_a_norwegian_org_number_that_is_not_one_is_named() -> None:
    assert message(batch_of({**NORWEGIAN, "org_number": "974760674"})) == CUSTOMER + (
        "Peppol-adress saknas för NO: organisationsnummer 974760674 är inte ett norskt organisasjonsnummer "
        "(9 siffror med kontrollsiffra, EAS 0192); ange ett giltigt organisationsnummer, kundens GLN-nummer "
        "eller Peppol-id (peppol_id)"
    )


@pytest.mark.parametrize(("customer", "problem"), [
    pytest.param({**ITALIAN, "org_number": "00743110158", "vat_number": None},
                 "VAT-nummer saknas; Peppol-adress saknas för IT: organisationsnummer 00743110158 är inte ett "
                 "italienskt partita IVA-nummer (11 siffror med kontrollsiffra, EAS 0211); ange kundens VAT-nummer "
                 "(EAS 0211), GLN-nummer eller Peppol-id (peppol_id)", id="italy-check-digit"),
    pytest.param({**LATVIAN, "org_number": "40003521601", "vat_number": None},
                 "VAT-nummer saknas; Peppol-adress saknas för LV: organisationsnummer 40003521601 är inte ett "
                 "lettiskt registreringsnummer (11 siffror med kontrollsiffra, EAS 0218); ange kundens VAT-nummer "
                 "(EAS 9939), GLN-nummer eller Peppol-id (peppol_id)", id="latvia-check-digit"),
    pytest.param({**LATVIAN, "org_number": "161175-19997", "vat_number": None},
                 "VAT-nummer saknas; Peppol-adress saknas för LV: organisationsnummer 161175-19997 är inte ett "
                 "lettiskt registreringsnummer (11 siffror med kontrollsiffra, EAS 0218); ange kundens VAT-nummer "
                 "(EAS 9939), GLN-nummer eller Peppol-id (peppol_id)", id="latvia-personal-code"),
])
def test_an_org_number_that_is_not_the_countrys_company_id_is_named(customer: dict[str, Any], problem: str) -> None:
    assert message(batch_of(customer)) == CUSTOMER + problem
    with pytest.raises(DocumentError, match=r"^Faktura 10001: kunden 4367: Peppol-adress saknas för (IT|LV): "):
        build_from_batch(batch_of(customer), INVOICE_ID, SELLER)


def test_a_german_buyer_without_vat_number_or_gln() -> None:
    assert message(batch_of({**GERMAN, "vat_number": None})) == CUSTOMER + (
        "VAT-nummer saknas; Peppol-adress saknas för DE; ange kundens VAT-nummer (EAS 9930), GLN-nummer "
        "eller Peppol-id (peppol_id)"
    )


def test_vat_numbers_outside_the_eu_are_checked_by_their_country() -> None:
    assert message(batch_of({**NORWEGIAN, "vat_number": "NO974760674MVA"})) == (
        CUSTOMER + "VAT-nummer NO974760674MVA är inte ett giltigt momsnummer för NO")
    assert message(batch_of({**NORWEGIAN, "vat_number": "DE136695976"})) == (
        CUSTOMER + "VAT-nummer DE136695976 är inte ett giltigt momsnummer för NO")
    assert message(batch_of({**GERMAN, "vat_number": "DE136695977"})) == (
        CUSTOMER + "VAT-nummer DE136695977 är inte ett giltigt EU-momsnummer för DE")
    assert message(batch_of({**NORWEGIAN, "vat_number": None})) is None  # outside the EU: not required
    switzerland = customer_row(country_code="CH", org_number="CHE-116.281.710", vat_number="CHE-116.281.711 MWST")
    assert message(batch_of(switzerland)) == (
        CUSTOMER + "VAT-nummer CHE-116.281.711 MWST är inte ett giltigt momsnummer för CH")


@pytest.mark.parametrize(("peppol_id", "problem"), [
    pytest.param("7300010000001", "Peppol-id '7300010000001' ska skrivas schema:identifierare, till exempel "
                 "0088:7300010000001 (peppol_id)", id="no-scheme"),
    pytest.param("1234:7300010000001", "Peppol-id '1234:7300010000001' har schemat 1234, som inte finns i Peppols "
                 "EAS-lista; använd en EAS-kod, till exempel 0088 (GLN) eller 0007 (svenskt organisationsnummer) "
                 "(peppol_id)", id="unknown-scheme"),
    pytest.param("9906:IT00743110157", "Peppol-id '9906:IT00743110157' har schemat 9906, som inte finns i Peppols "
                 "EAS-lista; använd en EAS-kod, till exempel 0088 (GLN) eller 0007 (svenskt organisationsnummer) "
                 "(peppol_id)", id="removed-italian-vat-scheme"),
    pytest.param("0088:7300010000002", "Peppol-id '0088:7300010000002' är ogiltigt: identifieraren för EAS 0088 "
                 "ska vara ett GLN-nummer (13 siffror med kontrollsiffra); rätta kundens peppol_id",
                 id="gln-check-digit"),
    pytest.param("0007:212000-1554", "Peppol-id '0007:212000-1554' är ogiltigt: identifieraren för EAS 0007 ska "
                 "vara ett svenskt organisationsnummer (10 siffror med kontrollsiffra); rätta kundens peppol_id",
                 id="swedish-org-check-digit"),
    pytest.param("0037:01120389", "Peppol-id '0037:01120389' är ogiltigt: identifieraren för EAS 0037 ska vara en "
                 "finsk OVT-kod (0037, FO-numrets 8 siffror utan bindestreck och högst 5 bokstäver eller siffror "
                 "för en enhet); rätta kundens peppol_id", id="finnish-business-id-without-ovt-prefix"),
    pytest.param("9930:136695976", "Peppol-id '9930:136695976' är ogiltigt: identifieraren för EAS 9930 ska vara "
                 "ett momsnummer för DE (med landsprefixet DE); rätta kundens peppol_id", id="vat-without-prefix"),
    pytest.param("0204:a b", "Peppol-id '0204:a b' är ogiltigt: identifieraren för EAS 0204 ska vara tryckbara "
                 "tecken utan mellanslag, högst 50; rätta kundens peppol_id", id="space-in-unchecked-scheme"),
    pytest.param("0088:73000100\x0000001", "Peppol-id '0088:73000100\\x0000001' är ogiltigt: identifieraren för "
                 "EAS 0088 ska vara ett GLN-nummer (13 siffror med kontrollsiffra); rätta kundens peppol_id",
                 id="control-character"),
])
def test_a_bad_peppol_id_is_refused_with_what_to_fix(peppol_id: str, problem: str) -> None:
    assert message(batch_of(customer_row(), peppol_id)) == CUSTOMER + problem
    with pytest.raises(DocumentError, match="^Faktura 10001: kunden 4367: Peppol-id "):
        build_from_batch(batch_of(customer_row(), peppol_id), INVOICE_ID, SELLER)


# ---- the EAS data ----------------------------------------------------------------------------------------
def test_the_eas_codes_are_those_of_the_official_rules() -> None:
    schematron = (official_rules_folder() / "PEPPOL-EN16931-UBL.sch").read_text(encoding="utf-8")
    listed = re.search(r"name=\"eaid\"\s+value=\"tokenize\('([^']*)'", schematron)
    assert listed is not None
    assert set(EAS_CODES) == set(listed.group(1).split())
    assert set(SCHEME_CHECKS) <= set(EAS_CODES) and set(VAT_NUMBER_SCHEMES.values()) <= set(EAS_CODES)


@pytest.mark.parametrize(("country", "org", "vat", "expected"), [
    ("SE", "212000-1553", "SE212000155301", "0007:2120001553"),
    ("", "212000-1553", "SE212000155301", "0007:2120001553"),
    ("DK", "13585628", "DK13585628", "0184:13585628"),
    ("FI", "0112038-9", "FI01120389", "0216:003701120389"),
    ("NO", "974760673", "NO974760673MVA", "0192:974760673"),
    ("IS", "450401-3150", "", "0196:4504013150"),
    ("DE", "HRB 12345", "de 136 695 976", "9930:DE136695976"),
    ("GR", "", "EL094259216", "9933:EL094259216"),
    ("FR", "55200844", "FR40303265045", "9957:FR40303265045"),  # not a SIREN: the VAT number
    ("IT", "00743110157", "", "0211:IT00743110157"),
    ("IT", "RSSMRA85T10A562S", "IT00743110157", "0211:IT00743110157"),  # a person's codice fiscale: the VAT number
    ("LV", "40003521600", "", "0218:40003521600"),
    ("LV", "32867300679", "LV40003521600", "9939:LV40003521600"),  # a personal code: the VAT number
    ("NO", "974760674", "NO974760673MVA", None),  # Norway has no VAT-number scheme
    ("US", "", "", None),
])
def test_buyer_endpoint(country: str, org: str, vat: str, expected: str | None) -> None:
    found = buyer_endpoint(country, org, vat, "")
    assert (str(found) if found else None) == expected


def test_every_vat_scheme_takes_its_countrys_vat_number() -> None:
    assert parse_peppol_id("9944:NL004495445B01") is not None
    assert parse_peppol_id("9944:DE136695976") is None
    assert str(parse_peppol_id("9933:el094259216")) == "9933:EL094259216"
    assert str(parse_peppol_id("9932:GB 980 7806 84")) == "9932:GB980780684"
    assert str(parse_peppol_id(" 0184 : DK13585628 ")) == "0184:DK13585628"
    assert str(parse_peppol_id("0211:it00743110157")) == "0211:IT00743110157"
    assert str(parse_peppol_id("0218:LV 4000 3521 600")) == "0218:40003521600"
    assert parse_peppol_id("0218:40003521601") is None  # check digit
    assert parse_peppol_id("0218:32867300679") is None  # a personal code, not a registration number


# ---- a real SQLite ERP, with and without the column --------------------------------------------------------
def _erp(path: Path, *, peppol_id_column: bool) -> Engine:
    engine = create_engine(f"sqlite:///{path}")
    create_tables(engine)
    with engine.begin() as conn:
        if not peppol_id_column:  # an ERP of the contract before peppol_id
            conn.execute(text("ALTER TABLE customer DROP COLUMN peppol_id"))
        customer = sqlite_row(NORWEGIAN)
        if peppol_id_column:
            conn.execute(statement("erp_insert_customer"), {**customer, "peppol_id": f"0088:{GLN}"})
        else:
            columns = ", ".join(customer)
            conn.execute(text(f"INSERT INTO customer ({columns}) VALUES ({', '.join(':' + c for c in customer)})"),
                         customer)
        invoice, lines = invoice_rows(items=MIXED, currency="NOK")
        conn.execute(statement("erp_insert_invoice"), sqlite_row(invoice))
        for line in lines:
            line = sqlite_row(line)
            conn.execute(text(f"INSERT INTO customer_invoice_line ({', '.join(line)}) "
                              f"VALUES ({', '.join(':' + c for c in line)})"), line)
    return engine


@pytest.fixture(params=[True, False], ids=["with-peppol_id", "without-peppol_id"])
def erp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, bool]]:
    engine = _erp(tmp_path / "erp.db", peppol_id_column=request.param)
    yield engine, request.param
    engine.dispose()


def test_the_erp_is_read_with_the_column_when_it_has_it(official: PeppolRules, erp: tuple[Engine, bool]) -> None:
    engine, has_column = erp
    reader = ErpReader(engine)
    batch = reader.load([INVOICE_ID])

    assert reader.optional_columns("erp_select_customers") == (("peppol_id",) if has_column else ())
    assert ("peppol_id" in batch.customers.columns) is has_column
    root = built(batch, official)
    assert endpoint(root) == (("0088", GLN) if has_column else ("0192", "974760673"))


def test_generated_erp_has_buyers_abroad_and_peppol_ids(official: PeppolRules, tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'erp.db'}")
    summary = generate(engine, seed=5, customers=60, invoices=120, start_date=date(2026, 11, 16), days=2, drafts=2)
    with engine.connect() as conn:
        customers = {row.customer_number: row for row in conn.execute(text("SELECT * FROM customer"))}
        invoices = [row.invoice_id for row in conn.execute(text(
            "SELECT invoice_id FROM customer_invoice WHERE status = 'posted'"))]
    reader = ErpReader(engine)
    batch = reader.load(invoices)
    engine.dispose()

    good = [customers[number] for number in summary.good_customers]
    assert {"DE", "NO"} <= {customer.country_code for customer in good}
    assert {customer.peppol_id.split(":")[0] for customer in good if customer.peppol_id} == {"0088", "0192"}
    verdicts = validate_batch(batch, start=date(2026, 11, 16), end=date(2026, 11, 18))
    schemes = set()
    for invoice_id in invoices:
        customer = batch.customer(batch.invoice(invoice_id)["customer_id"])
        added = customer["country_code"] in ("DE", "NO") or customer["peppol_id"]  # the buyers of larger registers
        if customer["customer_number"] not in summary.good_customers or not added:
            continue
        if batch.invoice(invoice_id)["invoice_number"] in summary.defective_invoice_numbers:
            continue
        assert verdicts[invoice_id] is None, verdicts[invoice_id]
        document = build_from_batch(batch, invoice_id, SELLER)
        assert [failure.describe() for failure in official.check(document) if failure.fatal] == []
        schemes.add(endpoint(etree.fromstring(document))[0])
    assert {"9930", "0192", "0088"} <= schemes
