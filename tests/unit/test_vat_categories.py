"""VAT categories of invoice lines (S, Z, E, AE, K, G, O) and their exemption reasons: the optional line
columns of the adapter contract, their validation, the document's VAT breakdown, and the official Peppol
BIS 3 rules over documents of every category. An ERP without the columns is read, validated and built
as before (S, Z, and AE for a buyer in another EU country)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import Engine, MetaData, Table, create_engine, text

from dispatch_testing.erp_rows import (
    END,
    GLN,
    INVOICE_DATE,
    INVOICE_ID,
    INVOICE_NUMBER,
    SELLER_CONFIG,
    START,
    credit_rows,
    customer_row,
    invoice_rows,
    single_batch,
)
from dispatch_testing.peppol_rules import official_rules_folder
from inexchange.erp import OPTIONAL_COLUMNS, ErpReader, InvoiceBatch
from inexchange.identifiers import EU_COUNTRIES
from inexchange.peppol import PeppolRules, rules_in
from inexchange.sql import script
from inexchange.ubl import NS_CAC, NS_CBC, DocumentError, Seller, build_from_batch
from inexchange.validation import validate, validate_batch
from inexchange.vat import LINE_COLUMNS, VATEX

NS = {"cac": NS_CAC, "cbc": NS_CBC}
SELLER = Seller.from_config(SELLER_CONFIG)
INVOICE = f"Faktura {INVOICE_NUMBER}: "
#: a line's stated (category, VATEX code, reason text); None: the line states nothing
State = tuple[str | None, str | None, str | None] | None
Invoice = tuple[dict[str, Any], list[dict[str, Any]]]

#: a buyer in another EU country (Finland), addressed by GLN
FINNISH = {"country_code": "FI", "org_number": "2077474-0", "vat_number": "FI20774740", "gln": GLN,
           "name": "Suomen Rakennuspalvelu Oy", "street": "Mannerheimintie 12", "postal_code": "00100",
           "city": "Helsinki"}
#: a buyer outside the EU (Norway), without a VAT number
NORWEGIAN = {"country_code": "NO", "org_number": "923609016", "vat_number": None, "gln": GLN,
             "name": "Nordisk Handel AS", "street": "Karl Johans gate 1", "postal_code": "0154", "city": "Oslo"}
REVERSE_CHARGE = ("VATEX-EU-AE", "Omvänd betalningsskyldighet (reverse charge)")


def stating(invoice: Invoice, *states: State) -> Invoice:
    """The invoice with its lines stating the optional VAT columns, one state per line."""
    header, lines = invoice
    stated = [{**line, **dict(zip(LINE_COLUMNS, state or (None, None, None), strict=True))}
              for line, state in zip(lines, states, strict=True)]
    return header, stated


def batch_of(customer: dict[str, Any] | None, invoice: Invoice, *, sqlite: bool = False) -> InvoiceBatch:
    """A batch of one invoice; the lines carry the optional VAT columns when the invoice's lines have them."""
    header, lines = invoice
    batch = single_batch(customer, (header, lines), sqlite=sqlite)
    if any(column in line for line in lines for column in LINE_COLUMNS):
        for column in LINE_COLUMNS:
            batch.lines[column] = [line.get(column) for line in lines]
    return batch


def document(customer: dict[str, Any] | None, invoice: Invoice) -> bytes:
    return build_from_batch(batch_of(customer, invoice), INVOICE_ID, SELLER)


def message(customer: dict[str, Any] | None, invoice: Invoice) -> str | None:
    return validate_batch(batch_of(customer, invoice), start=START, end=END)[INVOICE_ID]


def breakdown(xml: bytes) -> list[tuple[str | None, ...]]:
    """Per TaxSubtotal: category, rate, taxable amount, VAT, reason code and reason text."""
    root = etree.fromstring(xml)
    return [
        (s.findtext("cac:TaxCategory/cbc:ID", namespaces=NS), s.findtext("cac:TaxCategory/cbc:Percent", namespaces=NS),
         s.findtext("cbc:TaxableAmount", namespaces=NS), s.findtext("cbc:TaxAmount", namespaces=NS),
         s.findtext("cac:TaxCategory/cbc:TaxExemptionReasonCode", namespaces=NS),
         s.findtext("cac:TaxCategory/cbc:TaxExemptionReason", namespaces=NS))
        for s in root.findall("cac:TaxTotal/cac:TaxSubtotal", NS)
    ]


def line_categories(xml: bytes) -> list[tuple[str | None, str | None]]:
    """Per line: its ClassifiedTaxCategory's ID and Percent."""
    root = etree.fromstring(xml)
    return [(c.findtext("cbc:ID", namespaces=NS), c.findtext("cbc:Percent", namespaces=NS))
            for c in root.iterfind(".//cac:Item/cac:ClassifiedTaxCategory", NS)]


def vat_identifiers(xml: bytes) -> list[str]:
    """The VAT identifiers of seller and buyer (PartyTaxScheme with the scheme VAT)."""
    root = etree.fromstring(xml)
    return root.xpath("(cac:AccountingSupplierParty|cac:AccountingCustomerParty)/cac:Party/cac:PartyTaxScheme"
                      "[cac:TaxScheme/cbc:ID='VAT']/cbc:CompanyID/text()", namespaces=NS)


@pytest.fixture(scope="module")
def official() -> PeppolRules:
    return rules_in(str(official_rules_folder()))


def assert_passes(official: PeppolRules, xml: bytes) -> None:
    failures = official.check(xml)
    assert [f.describe() for f in failures if f.fatal] == []


# ---- one category per document ------------------------------------------------------------------------
#: name -> (customer fields, (quantity, price, rate), the line's state, the expected subtotal)
SINGLE: dict[str, tuple[dict[str, Any], tuple[str, str, str], State, tuple[str | None, ...]]] = {
    "S": ({}, ("10", "250", "25"), ("S", None, None), ("S", "25", "2500.00", "625.00", None, None)),
    "S-derived": ({}, ("10", "250", "25"), None, ("S", "25", "2500.00", "625.00", None, None)),
    "Z": ({}, ("4", "125", "0"), ("Z", None, None), ("Z", "0", "500.00", "0.00", None, None)),
    "Z-derived": ({}, ("4", "125", "0"), None, ("Z", "0", "500.00", "0.00", None, None)),
    "E-code": ({}, ("4", "125", "0"), ("E", "VATEX-EU-132", "Hälso- och sjukvård"),
               ("E", "0", "500.00", "0.00", "VATEX-EU-132", "Hälso- och sjukvård")),
    "E-text": ({}, ("1", "8500", "0"), ("E", None, "Undantag från skatteplikt: upplåtelse av fastighet"),
               ("E", "0", "8500.00", "0.00", None, "Undantag från skatteplikt: upplåtelse av fastighet")),
    "AE": ({}, ("4", "125", "0"), ("AE", "VATEX-EU-AE", "Omvänd betalningsskyldighet för byggtjänster"),
           ("AE", "0", "500.00", "0.00", "VATEX-EU-AE", "Omvänd betalningsskyldighet för byggtjänster")),
    "AE-derived": (FINNISH, ("4", "125", "0"), None, ("AE", "0", "500.00", "0.00", *REVERSE_CHARGE)),
    "K": (FINNISH, ("4", "125", "0"), ("K", "VATEX-EU-IC", None), ("K", "0", "500.00", "0.00", "VATEX-EU-IC", None)),
    "G": (NORWEGIAN, ("4", "125", "0"), ("G", "VATEX-EU-G", "Export"),
          ("G", "0", "500.00", "0.00", "VATEX-EU-G", "Export")),
    "Z-derived-outside-the-EU": (NORWEGIAN, ("4", "125", "0"), None, ("Z", "0", "500.00", "0.00", None, None)),
    "O": ({}, ("4", "125", "0"), ("O", "VATEX-EU-O", None), ("O", None, "500.00", "0.00", "VATEX-EU-O", None)),
}


@pytest.mark.parametrize("name", list(SINGLE))
def test_a_document_of_each_category_passes_validation_and_the_official_rules(official: PeppolRules,
                                                                              name: str) -> None:
    fields, item, state, subtotal = SINGLE[name]
    customer = customer_row(**fields)
    invoice = invoice_rows(items=(item,)) if state is None else stating(invoice_rows(items=(item,)), state)

    assert message(customer, invoice) is None
    xml = document(customer, invoice)
    assert breakdown(xml) == [subtotal]
    assert line_categories(xml) == [(subtotal[0], subtotal[1])]
    assert_passes(official, xml)


def test_an_intra_community_supply_names_its_delivery() -> None:
    invoice = stating(invoice_rows(items=(("4", "125", "0"),)), ("K", "VATEX-EU-IC", None))
    xml = document(customer_row(**FINNISH), invoice)
    root = etree.fromstring(xml)
    delivery = root.find("cac:Delivery", NS)
    assert delivery is not None and delivery.getnext().tag == f"{{{NS_CAC}}}PaymentMeans"
    assert delivery.findtext("cbc:ActualDeliveryDate", namespaces=NS) == INVOICE_DATE.isoformat()  # BR-IC-11
    assert delivery.findtext("cac:DeliveryLocation/cac:Address/cac:Country/cbc:IdentificationCode",
                             namespaces=NS) == "FI"  # BR-IC-12
    assert vat_identifiers(xml) == [SELLER.vat_number, "FI20774740"]  # BR-IC-02


def test_a_document_not_subject_to_vat_names_no_vat_identifiers() -> None:
    xml = document(None, stating(invoice_rows(items=(("4", "125", "0"), ("1", "50", "0"))),
                                 ("O", None, "Ej föremål för moms"), ("O", None, None)))
    assert vat_identifiers(xml) == []  # BR-O-02
    root = etree.fromstring(xml)
    assert root.findtext("cac:AccountingSupplierParty/cac:Party/cac:PartyTaxScheme/cbc:CompanyID",
                         namespaces=NS) == "Godkänd för F-skatt"
    assert breakdown(xml) == [("O", None, "550.00", "0.00", None, "Ej föremål för moms")]
    assert line_categories(xml) == [("O", None), ("O", None)]  # BR-O-05


def test_stated_texts_are_read_in_any_case_and_written_in_upper_case() -> None:
    invoice = stating(invoice_rows(items=(("4", "125", "0"),)), (" e ", "vatex-eu-132", " Sjukvård "))
    assert message(None, invoice) is None
    assert breakdown(document(None, invoice)) == [("E", "0", "500.00", "0.00", "VATEX-EU-132", "Sjukvård")]


# ---- mixed documents ----------------------------------------------------------------------------------
def test_standard_and_exempt_lines(official: PeppolRules) -> None:
    invoice = stating(invoice_rows(items=(("2", "1200", "25"), ("1", "8500", "0"), ("3", "100", "0"))),
                      None, ("E", None, "Undantag från skatteplikt"), ("E", None, "Undantag från skatteplikt"))
    assert message(None, invoice) is None
    xml = document(None, invoice)
    assert breakdown(xml) == [("E", "0", "8800.00", "0.00", None, "Undantag från skatteplikt"),
                              ("S", "25", "2400.00", "600.00", None, None)]
    assert line_categories(xml) == [("S", "25"), ("E", "0"), ("E", "0")]
    root = etree.fromstring(xml)
    assert root.findtext("cac:LegalMonetaryTotal/cbc:PayableAmount", namespaces=NS) == "11800.00"
    assert_passes(official, xml)


def test_standard_zero_rated_and_reverse_charge_lines(official: PeppolRules) -> None:
    invoice = stating(invoice_rows(items=(("2", "1200", "25"), ("5", "89.90", "12"), ("1", "500", "0"),
                                          ("10", "950", "0"))),
                      None, ("S", None, None), ("Z", None, None), ("AE", "VATEX-EU-AE", None))
    assert message(None, invoice) is None
    xml = document(None, invoice)
    assert breakdown(xml) == [("AE", "0", "9500.00", "0.00", "VATEX-EU-AE", None),
                              ("S", "12", "449.50", "53.94", None, None),
                              ("S", "25", "2400.00", "600.00", None, None),
                              ("Z", "0", "500.00", "0.00", None, None)]
    assert_passes(official, xml)


def test_an_eu_buyer_abroad_with_goods_services_and_exempt_lines(official: PeppolRules) -> None:
    invoice = stating(invoice_rows(items=(("30", "1564.52", "0"), ("12", "950", "0"), ("1", "8500", "0"))),
                      ("K", "VATEX-EU-IC", None), None, ("E", None, "Undantag från skatteplikt"))
    customer = customer_row(**FINNISH)
    assert message(customer, invoice) is None
    xml = document(customer, invoice)
    assert breakdown(xml) == [("AE", "0", "11400.00", "0.00", *REVERSE_CHARGE),
                              ("E", "0", "8500.00", "0.00", None, "Undantag från skatteplikt"),
                              ("K", "0", "46935.60", "0.00", "VATEX-EU-IC", None)]
    assert_passes(official, xml)


def test_a_credit_note_with_exempt_and_intra_community_lines(official: PeppolRules) -> None:
    invoice = stating(credit_rows(INVOICE_ID, items=(("2", "125", "0"), ("1", "80", "0"))),
                      ("K", "VATEX-EU-IC", None), ("E", "VATEX-EU-132", None))
    customer = customer_row(**FINNISH)
    assert message(customer, invoice) is None
    xml = document(customer, invoice)
    assert etree.QName(etree.fromstring(xml)).localname == "CreditNote"
    assert breakdown(xml) == [("E", "0", "80.00", "0.00", "VATEX-EU-132", None),  # a credit note: positive
                              ("K", "0", "250.00", "0.00", "VATEX-EU-IC", None)]
    assert_passes(official, xml)


def test_lines_of_one_category_may_state_its_reason_once() -> None:
    invoice = stating(invoice_rows(items=(("1", "100", "0"), ("1", "50", "0"))),
                      ("E", "VATEX-EU-132", None), ("E", None, "Sjukvård"))
    assert message(None, invoice) is None
    assert breakdown(document(None, invoice)) == [("E", "0", "150.00", "0.00", "VATEX-EU-132", "Sjukvård")]


# ---- refusals -----------------------------------------------------------------------------------------
ZERO = (("4", "125", "0"),)
#: name -> (customer fields, items, states, the rule name, what the message says)
REFUSALS: dict[str, tuple[dict[str, Any], Sequence[tuple[str, str, str]], Sequence[State], str, str]] = {
    "unknown category": ({}, ZERO, [("X", None, None)], "vat_categories",
                         "rad 1: momskategori 'X' är okänd; använd S, Z, E, AE, K, G eller O"),
    "S at 0 %": ({}, ZERO, [("S", None, None)], "vat_categories",
                 "rad 1: momskategori S (standardmoms) kräver en momssats över 0 %, raden har 0 % (BR-S-05); "
                 "rätta momssatsen eller momskategorin"),
    "E at 25 %": ({}, (("4", "125", "25"),), [("E", "VATEX-EU-132", None)], "vat_categories",
                  "rad 1: momskategori E (undantagen från moms) kräver momssats 0 %, raden har 25 % (BR-E-05)"),
    "G at 12 %": ({}, (("4", "125", "12"),), [("G", "VATEX-EU-G", None)], "vat_categories",
                  "rad 1: momskategori G (export utanför EU) kräver momssats 0 %, raden har 12 % (BR-G-05)"),
    "code not in VATEX": ({}, ZERO, [("E", "VATEX-SE-3", None)], "vat_categories",
                          "rad 1: momsundantagskod 'VATEX-SE-3' finns inte i VATEX-listan (BR-CL-22); ange en "
                          "VATEX-kod, till exempel VATEX-EU-132"),
    "code of another category": ({}, ZERO, [("E", "VATEX-EU-IC", None)], "vat_categories",
                                 "rad 1: momsundantagskod VATEX-EU-IC hör till momskategori K, inte E; rätta koden "
                                 "eller momskategorin"),
    "reason on Z": ({}, ZERO, [("Z", None, "Nollskattesats")], "vat_categories",
                    "rad 1: momskategori Z (nollskattesats) har ingen undantagsorsak (BR-Z-10); ta bort "
                    "undantagsorsaken eller ändra momskategorin"),
    "reason on S": ({}, (("4", "125", "25"),), [("S", "VATEX-EU-132", None)], "vat_categories",
                    "rad 1: momskategori S (standardmoms) har ingen undantagsorsak (BR-S-10)"),
    "reason without category": ({}, ZERO, [(None, "VATEX-EU-132", None)], "vat_categories",
                                "rad 1: undantagsorsak anges utan momskategori; ange momskategori (E, AE, K, G "
                                "eller O) eller ta bort orsaken"),
    "reason too long": ({}, ZERO, [("E", None, "x" * 201)], "vat_categories",
                        "rad 1: undantagsorsak är för lång (201 tecken, högst 200); korta texten"),
    "reason with a control character": ({}, ZERO, [("E", None, "Sjuk\x0bvård")], "vat_categories",
                                        "rad 1: undantagsorsak innehåller styrtecken; ta bort dem"),
    "E without reason": ({}, ZERO, [("E", None, None)], "vat_reasons",
                         "momskategori E (undantagen från moms) saknar undantagsorsak (BR-E-10); ange "
                         "momsundantagskod (till exempel VATEX-EU-132) eller undantagsorsak på raden"),
    "AE without reason": ({}, ZERO, [("AE", None, None)], "vat_reasons",
                          "momskategori AE (omvänd betalningsskyldighet) saknar undantagsorsak (BR-AE-10); ange "
                          "momsundantagskod (till exempel VATEX-EU-AE)"),
    "K without reason": (FINNISH, ZERO, [("K", None, None)], "vat_reasons",
                         "saknar undantagsorsak (BR-IC-10); ange momsundantagskod (till exempel VATEX-EU-IC)"),
    "G without reason": (NORWEGIAN, ZERO, [("G", None, None)], "vat_reasons",
                         "saknar undantagsorsak (BR-G-10); ange momsundantagskod (till exempel VATEX-EU-G)"),
    "O without reason": ({}, ZERO, [("O", None, None)], "vat_reasons",
                         "saknar undantagsorsak (BR-O-10); ange momsundantagskod (till exempel VATEX-EU-O)"),
    "different reasons": ({}, (("1", "100", "0"), ("1", "50", "0")),
                          [("E", "VATEX-EU-132", None), ("E", "VATEX-EU-143", None)], "vat_reasons",
                          "raderna med momskategori E anger olika undantagsorsaker; en faktura har en "
                          "momsspecifikation och en orsak per kategori (BR-E-01); ge raderna samma orsak eller dela "
                          "upp fakturan"),
    "O beside S": ({}, (("1", "100", "0"), ("1", "50", "25"), ("1", "10", "25")),
                   [("O", "VATEX-EU-O", None), None, ("S", None, None)], "vat_not_subject",
                   "momskategori O (utanför momsens tillämpningsområde) kan inte stå på samma faktura som S, rader "
                   "utan momskategori (BR-O-11, BR-O-12); fakturera dem var för sig (rad 2, 3)"),
    "AE without the buyer's VAT number": ({"is_private_person": True, "org_number": "880320-0016",
                                           "vat_number": None}, ZERO, [("AE", "VATEX-EU-AE", None)], "vat_buyer_vat",
                                          "momskategori AE (omvänd betalningsskyldighet) (BR-AE-02) kräver kundens "
                                          "VAT-nummer; ange kundens VAT-nummer"),
    "K to a buyer in Sweden": ({}, ZERO, [("K", "VATEX-EU-IC", None)], "vat_intra_community",
                               "momskategori K (unionsintern leverans (EU)) förutsätter en kund i ett annat EU-land "
                               "än Sverige, kunden har landskod SE; rätta momskategorin eller kundens land"),
    "K to a buyer outside the EU": (NORWEGIAN, ZERO, [("K", "VATEX-EU-IC", None)], "vat_buyer_vat",
                                    "momskategori K (unionsintern leverans (EU)) (BR-IC-02) kräver kundens "
                                    "VAT-nummer"),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_validation_refuses_with_one_message_naming_invoice_line_and_fix(name: str) -> None:
    fields, items, states, rule, expected = REFUSALS[name]
    batch = batch_of(customer_row(**fields), stating(invoice_rows(items=items), *states))

    report = validate(batch, start=START, end=END)
    found = report.messages[INVOICE_ID]
    assert found is not None and found.startswith(INVOICE)
    assert expected in found, found
    assert rule in report.reasons[INVOICE_ID]
    assert report.summary()  # every rule has a label in the task log's table


@pytest.mark.parametrize("name", list(REFUSALS))
def test_the_builder_refuses_what_validation_refuses(name: str) -> None:
    fields, items, states, _, expected = REFUSALS[name]
    invoice = stating(invoice_rows(items=items), *states)
    if name == "reason too long":  # the contract's column width: validation's, no Peppol rule
        assert document(customer_row(**fields), invoice)
        return
    with pytest.raises(DocumentError, match=f"^{INVOICE}") as raised:
        document(customer_row(**fields), invoice)
    if name not in ("O beside S", "reason with a control character"):  # said with the categories the builder derives
        assert expected.split("; ")[0].removeprefix("rad 1: ")[:60] in str(raised.value)


def test_several_problems_of_one_invoice_make_one_message() -> None:
    invoice = stating(invoice_rows(items=(("1", "100", "0"), ("1", "50", "25"))), ("E", None, None), ("Q", None, None))
    found = message(None, invoice)
    assert found is not None and found.count(INVOICE) == 1
    assert "rad 2: momskategori 'Q' är okänd" in found
    assert "momskategori E (undantagen från moms) saknar undantagsorsak (BR-E-10)" in found


def test_the_rules_of_other_invoices_are_not_mixed_in() -> None:
    from dispatch_testing.erp_rows import make_batch

    good = stating(invoice_rows(INVOICE_ID, items=ZERO), ("E", "VATEX-EU-132", None))
    bad = stating(invoice_rows(INVOICE_ID + 1, items=ZERO), ("E", None, None))
    batch = make_batch([customer_row()], [good, bad])
    for column in LINE_COLUMNS:
        batch.lines[column] = [line[column] for _, lines in (good, bad) for line in lines]

    messages = validate_batch(batch, start=START, end=END)
    assert messages[INVOICE_ID] is None
    assert messages[INVOICE_ID + 1] == "Faktura 10002: " + (
        "momskategori E (undantagen från moms) saknar undantagsorsak (BR-E-10); ange momsundantagskod (till "
        "exempel VATEX-EU-132) eller undantagsorsak på raden")


# ---- the code list --------------------------------------------------------------------------------------
def test_the_vatex_codes_are_those_of_the_official_rules() -> None:
    schematron = official_rules_folder() / "CEN-EN16931-UBL.sch"
    if not schematron.is_file():
        pytest.skip(f"{schematron} is not there")
    listed = re.search(r'id="BR-CL-22".*?contains\(\' (.*?) \'', schematron.read_text(encoding="utf-8"))
    assert listed is not None
    assert set(listed.group(1).split()) == set(VATEX)
    assert {VATEX[c] for c in ("VATEX-EU-AE", "VATEX-EU-IC", "VATEX-EU-G", "VATEX-EU-O")} == {"AE", "K", "G", "O"}
    assert {VATEX[c] for c in ("VATEX-EU-D", "VATEX-EU-F", "VATEX-EU-I", "VATEX-EU-J", "VATEX-EU-132")} == {"E"}


# ---- a real SQLite ERP, with and without the columns ------------------------------------------------------
def _erp(path: Path, *, with_columns: bool) -> Engine:
    """An ERP on SQLite from the contract's schema; without the columns, ``customer_invoice_line`` is a view
    of the contract's first nine columns (as an ERP mapped before the columns existed)."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        for clause in script("erp_schema"):
            conn.execute(clause)
        if not with_columns:
            conn.execute(text("ALTER TABLE customer_invoice_line RENAME TO line_store"))
            conn.execute(text(
                "CREATE VIEW customer_invoice_line AS SELECT invoice_id, line_number, article_number, description, "
                "quantity, unit, unit_price, vat_rate, line_amount FROM line_store"))
    return engine


def _store(engine: Engine, customer: dict[str, Any], invoice: Invoice, *, lines_table: str) -> None:
    """Insert the rows, each with the columns its table has (decimals and dates as text, as SQLite keeps them)."""
    header, lines = invoice
    metadata = MetaData()
    with engine.begin() as conn:
        for name, rows in (("customer", [customer]), ("customer_invoice", [header]), (lines_table, lines)):
            columns = [c for c in Table(name, metadata, autoload_with=conn).c.keys() if c in rows[0]]
            insert = text(f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})")
            conn.execute(insert, [{c: _as_stored(row[c]) for c in columns} for row in rows])


def _as_stored(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return value.isoformat() if isinstance(value, date) else value


CASES = {
    "domestic": ({}, stating(invoice_rows(items=(("2", "1200", "25"), ("1", "500", "0"), ("1", "8500", "0"))),
                             None, None, ("E", None, "Undantag från skatteplikt: upplåtelse av fastighet"))),
    "eu-abroad": (FINNISH, stating(invoice_rows(items=(("30", "1564.52", "0"), ("12", "950", "0"))),
                                   ("K", "VATEX-EU-IC", None), ("AE", "VATEX-EU-AE", None))),
    "outside-the-eu": (NORWEGIAN, stating(invoice_rows(items=(("2", "1200", "25"), ("4", "125", "0"))),
                                          None, ("G", "VATEX-EU-G", "Export"))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_erp_with_the_columns_is_read_with_them(tmp_path: Path, official: PeppolRules, case: str) -> None:
    fields, invoice = CASES[case]
    customer = customer_row(**fields)
    engine = _erp(tmp_path / "erp.db", with_columns=True)
    _store(engine, customer, invoice, lines_table="customer_invoice_line")

    reader = ErpReader(engine)
    assert reader.optional_columns("erp_select_lines") == LINE_COLUMNS
    batch = reader.load([INVOICE_ID])
    engine.dispose()
    assert set(LINE_COLUMNS) <= set(batch.lines.columns)
    assert validate_batch(batch, start=START, end=END) == {INVOICE_ID: None}
    xml = build_from_batch(batch, INVOICE_ID, SELLER)
    assert xml == document(customer, invoice)  # as from the rows themselves
    expected = {"domestic": ["S", "Z", "E"], "eu-abroad": ["K", "AE"], "outside-the-eu": ["S", "G"]}[case]
    assert [category for category, _ in line_categories(xml)] == expected
    assert_passes(official, xml)


@pytest.mark.parametrize("case", list(CASES))
def test_an_erp_without_the_columns_is_read_as_before(tmp_path: Path, official: PeppolRules, case: str) -> None:
    fields, invoice = CASES[case]
    customer = customer_row(**fields)
    engine = _erp(tmp_path / "erp.db", with_columns=False)
    _store(engine, customer, invoice, lines_table="line_store")

    reader = ErpReader(engine)
    assert reader.optional_columns("erp_select_lines") == ()
    batch = reader.load([INVOICE_ID])
    engine.dispose()
    assert not set(LINE_COLUMNS) & set(batch.lines.columns)
    assert validate_batch(batch, start=START, end=END) == {INVOICE_ID: None}
    xml = build_from_batch(batch, INVOICE_ID, SELLER)
    header, lines = invoice
    plain = (header, [{k: v for k, v in line.items() if k not in LINE_COLUMNS} for line in lines])
    assert xml == document(customer, plain)  # today's documents: categories from the rate and the buyer
    expected = {"domestic": ["S", "Z", "Z"], "eu-abroad": ["AE", "AE"], "outside-the-eu": ["S", "Z"]}[case]
    assert [category for category, _ in line_categories(xml)] == expected
    # per subtotal its category and reason code: Z takes none (BR-Z-10), a derived AE its VATEX code
    assert [(subtotal[0], subtotal[4]) for subtotal in breakdown(xml)] == {
        "domestic": [("S", None), ("Z", None)], "eu-abroad": [("AE", REVERSE_CHARGE[0])],
        "outside-the-eu": [("S", None), ("Z", None)]}[case]
    assert_passes(official, xml)


def test_stated_nulls_are_read_as_before(tmp_path: Path) -> None:
    invoice = invoice_rows(items=(("2", "1200", "25"), ("1", "500", "0")))
    engine = _erp(tmp_path / "erp.db", with_columns=True)
    _store(engine, customer_row(**FINNISH), invoice, lines_table="customer_invoice_line")
    batch = ErpReader(engine).load([INVOICE_ID])
    engine.dispose()

    assert batch.lines[list(LINE_COLUMNS)].isna().all().all()
    assert validate_batch(batch, start=START, end=END) == {INVOICE_ID: None}
    assert build_from_batch(batch, INVOICE_ID, SELLER) == document(customer_row(**FINNISH), invoice)


def test_the_reader_registers_the_line_columns() -> None:
    assert OPTIONAL_COLUMNS["erp_select_lines"] == ("customer_invoice_line", LINE_COLUMNS)


# ---- the demo ERP's generator ---------------------------------------------------------------------------
def test_the_generator_states_categories_and_reasons(tmp_path: Path) -> None:
    from inexchange_devkit.erpgen import generate

    engine = create_engine(f"sqlite:///{tmp_path / 'erp.db'}")
    generate(engine, seed=21, customers=40, invoices=240, start_date=date(2026, 11, 16), days=4, drafts=4)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT c.country_code, l.vat_category, l.vat_exemption_reason_code, l.vat_exemption_reason, l.vat_rate "
            "FROM customer_invoice_line l JOIN customer_invoice i ON i.invoice_id = l.invoice_id "
            "JOIN customer c ON c.customer_id = i.customer_id")).all()
    engine.dispose()
    seen = {(country != "SE", category) for country, category, *_ in rows}
    assert {(False, None), (False, "E"), (False, "Z"), (True, "K"), (True, "AE")} <= seen
    for country, category, code, reason, rate in rows:
        assert (category is None) == (float(rate) > 0 and country == "SE"), (country, category, rate)
        if category in ("K", "AE"):
            assert country != "SE" and code == {"K": "VATEX-EU-IC", "AE": "VATEX-EU-AE"}[category]
        elif category == "E":
            assert reason and reason.startswith("Undantag från skatteplikt")
        elif category == "Z":
            assert (code, reason) == (None, None)


def test_a_larger_generated_register_has_o_invoices_and_foreign_ones_stating_no_category(
        tmp_path: Path, official: PeppolRules) -> None:
    from inexchange_devkit.erpgen import generate

    engine = create_engine(f"sqlite:///{tmp_path / 'erp.db'}")
    generate(engine, seed=21, customers=60, invoices=1000, start_date=START, days=2, drafts=2)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT l.invoice_id, c.country_code, l.vat_category, l.vat_exemption_reason_code, l.vat_rate "
            "FROM customer_invoice_line l JOIN customer_invoice i ON i.invoice_id = l.invoice_id "
            "JOIN customer c ON c.customer_id = i.customer_id")).all()
    lines: dict[int, list[tuple[str, str | None, str | None, Any]]] = {}
    for invoice_id, *line in rows:
        lines.setdefault(invoice_id, []).append(tuple(line))
    not_subject = [i for i, its in lines.items() if any(category == "O" for _, category, _, _ in its)]
    unstated = [i for i, its in lines.items() if its[0][0] != "SE" and all(c is None for _, c, _, _ in its)]
    assert not_subject and unstated
    for invoice_id in not_subject:  # only O lines, each with its reason (BR-O-10..14)
        assert {(category, code) for _, category, code, _ in lines[invoice_id]} == {("O", "VATEX-EU-O")}
    assert {lines[i][0][0] in EU_COUNTRIES for i in unstated} == {True, False}  # EU buyers and others

    reader = ErpReader(engine)
    batch = reader.load([*not_subject, *unstated])
    engine.dispose()
    verdicts = validate_batch(batch, start=START, end=END)
    built = [i for i in [*not_subject, *unstated] if verdicts[i] is None]
    assert set(built) & set(not_subject) and set(built) & set(unstated)
    for invoice_id in built:
        xml = build_from_batch(batch, invoice_id, SELLER)
        country = lines[invoice_id][0][0]
        derived = "O" if invoice_id in not_subject else "AE" if country in EU_COUNTRIES else "Z"
        assert {category for category, _ in line_categories(xml)} == {derived}, invoice_id
        assert_passes(official, xml)


def test_the_generator_fills_an_erp_made_without_the_columns(tmp_path: Path) -> None:
    from inexchange_devkit.erpgen import generate

    engine = create_engine(f"sqlite:///{tmp_path / 'erp.db'}")
    with engine.begin() as conn:
        for clause in script("erp_schema"):
            conn.execute(clause)
        for column in LINE_COLUMNS:
            conn.execute(text(f"ALTER TABLE customer_invoice_line DROP COLUMN {column}"))
    summary = generate(engine, seed=21, customers=20, invoices=24, start_date=START, days=1, drafts=2,
                       create_schema=False)
    reader = ErpReader(engine)
    assert reader.optional_columns("erp_select_lines") == ()
    with engine.connect() as conn:
        ids = [row[0] for row in conn.execute(text("SELECT invoice_id FROM customer_invoice"))]
    batch = reader.load(ids)
    engine.dispose()
    assert len(batch.lines) == summary.lines and not set(LINE_COLUMNS) & set(batch.lines.columns)
