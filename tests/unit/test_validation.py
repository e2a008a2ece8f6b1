"""Tests of the customer prerequisites and invoice integrity rules (``inexchange.validation``)."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

import inexchange.validation as validation
from dispatch_testing.erp_rows import (
    CUSTOMER_NAME,
    CUSTOMER_NUMBER,
    END,
    GLN,
    INVOICE_DATE,
    INVOICE_ID,
    INVOICE_NUMBER,
    ORG_NUMBER,
    OTHER_ORG_NUMBER,
    PERSONNUMMER,
    START,
    credit_rows,
    customer_row,
    invoice_from_lines,
    invoice_rows,
    line_row,
    make_batch,
    single_batch,
    totals,
)
from inexchange.erp import INEXCHANGE_BILLING_METHOD
from inexchange.validation import MAX_REFERENCE_LENGTH, validate_batch

CUSTOMER = f"Kund {CUSTOMER_NUMBER} {CUSTOMER_NAME}: "
INVOICE = f"Faktura {INVOICE_NUMBER}: "
Invoice = tuple[dict[str, Any], list[dict[str, Any]]]


def message_of(customer: dict[str, Any] | None = None, invoice: Invoice | None = None, *,
               duplicates: set[str] | None = None, sqlite: bool = False) -> str | None:
    """Validate a batch of one invoice and return its message."""
    batch = single_batch(customer, invoice, sqlite=sqlite)
    results = validate_batch(batch, start=START, end=END, duplicate_numbers=duplicates)
    assert len(results) == 1
    return next(iter(results.values()))


# ---- a clean invoice --------------------------------------------------------------------------------
@pytest.mark.parametrize("sqlite", [False, True], ids=["postgresql-types", "sqlite-types"])
def test_clean_invoice_may_be_sent(sqlite: bool) -> None:
    assert validate_batch(single_batch(sqlite=sqlite), start=START, end=END) == {INVOICE_ID: None}


def test_clean_credit_note_may_be_sent() -> None:
    assert message_of(invoice=credit_rows()) is None


# ---- customer prerequisites -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        pytest.param({"billing_method": "E-post"},
                     f"faktureringsmetod är 'E-post', ska vara '{INEXCHANGE_BILLING_METHOD}'", id="billing-method"),
        pytest.param({"is_active": False}, "kunden är inaktiv; aktivera kunden", id="inactive"),
        pytest.param({"org_number": None}, "organisationsnummer saknas", id="org-missing"),
        pytest.param({"org_number": "  "}, "organisationsnummer saknas", id="org-blank"),
        pytest.param({"org_number": "212000-1554"},
                     "organisationsnummer 212000-1554 är ogiltigt "
                     "(10 siffror, giltig kontrollsiffra, tredje siffran minst 2)", id="org-luhn"),
        pytest.param({"org_number": PERSONNUMMER, "vat_number": "SE880320001601"},
                     f"organisationsnummer {PERSONNUMMER} är ogiltigt "
                     "(10 siffror, giltig kontrollsiffra, tredje siffran minst 2)", id="org-third-digit"),
        pytest.param({"vat_number": None}, "VAT-nummer saknas", id="vat-missing"),
        pytest.param({"vat_number": "SE556036079301"},
                     "VAT-nummer SE556036079301 matchar inte organisationsnumret", id="vat-other-org"),
        pytest.param({"vat_number": "SE212000155302"},
                     "VAT-nummer SE212000155302 matchar inte organisationsnumret", id="vat-not-01"),
        pytest.param({"gln": "7350000000017"},
                     "GLN-nummer 7350000000017 är ogiltigt (13 siffror med giltig kontrollsiffra)",
                     id="gln-check-digit"),
        pytest.param({"gln": "735000000001"},
                     "GLN-nummer 735000000001 är ogiltigt (13 siffror med giltig kontrollsiffra)", id="gln-12-digits"),
        pytest.param({"marking": "M" * (MAX_REFERENCE_LENGTH + 1)},
                     f"Märkning är för lång ({MAX_REFERENCE_LENGTH + 1} tecken, högst {MAX_REFERENCE_LENGTH})",
                     id="marking-too-long"),
        pytest.param({"marking": "Projekt\x07 4711"}, "Märkning innehåller styrtecken; ta bort dem",
                     id="marking-control-character"),
        pytest.param({"invoice_email": "fakturor@"}, "faktura e-post fakturor@ är ogiltig", id="email-invalid"),
        pytest.param({"gln": None, "org_number": None, "invoice_email": None},
                     "organisationsnummer saknas; "
                     "ingen mottagarväg: ange GLN-nummer, organisationsnummer eller faktura e-post", id="no-route"),
    ],
)
def test_customer_rule_rejects_with_the_customer_named(fields: dict[str, Any], problem: str) -> None:
    assert message_of(customer_row(**fields)) == CUSTOMER + problem


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"gln": GLN}, id="valid-gln"),
        pytest.param({"marking": "M" * MAX_REFERENCE_LENGTH}, id="marking-at-limit"),
        pytest.param({"marking": "Projekt 4711 / Eva Lind"}, id="marking-plain"),
        pytest.param({"org_number": "2120001553", "vat_number": "se 2120001553 01"}, id="compact-org-spaced-vat"),
        pytest.param({"invoice_email": None}, id="no-email-but-org"),
    ],
)
def test_customer_values_the_rules_accept(fields: dict[str, Any]) -> None:
    assert message_of(customer_row(**fields)) is None


def test_private_person_with_personnummer_needs_no_vat_number() -> None:
    person = customer_row(customer_number="5120", name="Karin Svensson", is_private_person=True,
                          org_number=PERSONNUMMER, vat_number=None)
    assert message_of(person) is None


def test_private_person_with_invalid_personnummer_is_rejected() -> None:
    person = customer_row(customer_number="5120", name="Karin Svensson", is_private_person=True,
                          org_number="880320-0017", vat_number=None)
    assert message_of(person) == ("Kund 5120 Karin Svensson: organisationsnummer 880320-0017 är ogiltigt "
                                  "(personnummer väntas för en privatperson)")


@pytest.mark.parametrize(
    ("country", "national_id", "vat_number"),
    [("DK", "13585628", "DK13585628"), ("FI", "2077474-0", "FI20774740")],
)
def test_foreign_eu_customer_with_valid_vat_number_is_accepted(country: str, national_id: str,
                                                               vat_number: str) -> None:
    foreign = customer_row(country_code=country, org_number=national_id, vat_number=vat_number)
    assert message_of(foreign) is None


@pytest.mark.parametrize(
    ("country", "national_id", "vat_number"),
    [("DK", "13585628", "DK13585627"), ("FI", "2077474-0", "FI20774741")],
)
def test_foreign_eu_customer_with_invalid_vat_number_is_rejected(country: str, national_id: str,
                                                                 vat_number: str) -> None:
    foreign = customer_row(country_code=country, org_number=national_id, vat_number=vat_number)
    assert message_of(foreign) == CUSTOMER + f"VAT-nummer {vat_number} är inte ett giltigt EU-momsnummer för {country}"


# ---- invoice integrity -----------------------------------------------------------------------------
def _lines_with_amount(amount: str) -> list[dict[str, Any]]:
    return [line_row(INVOICE_ID, 1, "10", "250", "25", line_amount=Decimal(amount))]


@pytest.mark.parametrize(
    ("invoice", "problem"),
    [
        pytest.param(invoice_rows(status="draft"),
                     "status är 'draft', bara verifierade (posted) fakturor skickas", id="draft"),
        pytest.param(invoice_rows(invoice_date=END),
                     f"fakturadatum {END} ligger utanför körningens period {START}–{END}", id="date-at-end"),
        pytest.param(invoice_rows(invoice_date=START - timedelta(days=1)),
                     f"fakturadatum {START - timedelta(days=1)} ligger utanför körningens period {START}–{END}",
                     id="date-before-start"),
        pytest.param(invoice_rows(due_date=INVOICE_DATE - timedelta(days=1)),
                     f"förfallodatum {INVOICE_DATE - timedelta(days=1)} är före fakturadatum {INVOICE_DATE}",
                     id="due-before-invoice-date"),
        # BR-CO-25: an amount due needs a due date (the ERP gives no payment terms instead)
        pytest.param(invoice_rows(due_date=None), "förfallodatum saknas; ange förfallodatum", id="debit-without-due-date"),
        pytest.param(invoice_rows(due_date=INVOICE_DATE + timedelta(days=367)),
                     f"förfallodatum {INVOICE_DATE + timedelta(days=367)} ligger mer än ett år efter fakturadatum "
                     f"{INVOICE_DATE}; kontrollera förfallodatum", id="due-more-than-a-year-ahead"),
        pytest.param(invoice_rows(currency="XXQ"), "valuta 'XXQ' är ingen ISO 4217-kod", id="currency"),
        pytest.param((invoice_from_lines(_lines_with_amount("2500.01")), _lines_with_amount("2500.01")),
                     "radbelopp stämmer inte med antal × pris på rad 1", id="line-amount"),
        pytest.param(invoice_rows(items=[("10", "250", "25"), ("4", "100", "7")]),
                     "momssats 7 på rad 2 är inte 25, 12, 6 eller 0 %", id="vat-rate-7"),
        pytest.param(invoice_rows(amount_ex_vat=Decimal("2400"), total_amount=Decimal("3025")),
                     "belopp exkl. moms 2400.00 är inte summan av raderna 2500.00", id="amount-ex-vat"),
        pytest.param(invoice_rows(vat_amount=Decimal("625.02"), total_amount=Decimal("3125.02")),
                     "momsbelopp 625.02 stämmer inte med raderna (625.00)", id="vat-amount"),
        pytest.param(invoice_rows(total_amount=Decimal("3125.50")),
                     "totalbelopp 3125.50 är inte belopp exkl. moms + moms (3125.00)", id="total"),
        pytest.param(invoice_rows(items=[("-10", "250", "25")]),
                     "en debetfaktura ska ha positivt totalbelopp", id="debit-negative"),
        pytest.param(invoice_rows(your_reference="R" * (MAX_REFERENCE_LENGTH + 1)),
                     f"Er referens är för lång ({MAX_REFERENCE_LENGTH + 1} tecken, högst {MAX_REFERENCE_LENGTH})",
                     id="your-reference-too-long"),
    ],
)
def test_invoice_rule_rejects_with_the_invoice_named(invoice: Invoice, problem: str) -> None:
    assert message_of(invoice=invoice) == INVOICE + problem


@pytest.mark.parametrize(
    "invoice",
    [
        pytest.param(invoice_rows(invoice_date=START, due_date=START), id="first-day-due-same-day"),
        pytest.param(invoice_rows(invoice_date=END - timedelta(days=1)), id="last-day"),
        pytest.param(invoice_rows(currency="EUR"), id="eur"),
        pytest.param(credit_rows(invoice_id=INVOICE_ID, due_date=None), id="credit-note-without-due-date"),
        pytest.param(invoice_rows(your_reference="R" * MAX_REFERENCE_LENGTH), id="reference-at-limit"),
        pytest.param(invoice_rows(items=[("1", "1000", "0")]), id="zero-rate"),
    ],
)
def test_invoice_values_the_rules_accept(invoice: Invoice) -> None:
    assert message_of(invoice=invoice) is None


def test_invoice_without_lines_is_rejected() -> None:
    header, _ = invoice_rows()
    message = message_of(invoice=(header, []))
    assert message is not None and message.startswith(INVOICE)
    assert "fakturan saknar rader" in message


def test_vat_amount_within_one_ore_is_accepted() -> None:
    assert message_of(invoice=invoice_rows(vat_amount=Decimal("625.01"), total_amount=Decimal("3125.01"))) is None
    assert message_of(invoice=invoice_rows(vat_amount=Decimal("624.99"), total_amount=Decimal("3124.99"))) is None


@pytest.mark.parametrize(("off_by", "accepted"), [("0.03", True), ("-0.03", True), ("0.04", False)])
def test_vat_tolerance_is_one_ore_per_rate(off_by: str, accepted: bool) -> None:
    header, lines = invoice_rows(items=[("1", "1000", "25"), ("1", "1000", "12"), ("1", "1000", "6")])
    assert header["vat_amount"] == Decimal("430.00")
    vat = header["vat_amount"] + Decimal(off_by)
    header.update(vat_amount=vat, total_amount=header["amount_ex_vat"] + vat)
    message = message_of(invoice=(header, lines))
    if accepted:
        assert message is None
    else:
        assert message == INVOICE + f"momsbelopp {vat} stämmer inte med raderna (430.00)"


def test_credit_note_without_credited_invoice_is_rejected() -> None:
    message = message_of(invoice=credit_rows(invoice_id=INVOICE_ID, credited=None))
    assert message == INVOICE + "kreditfakturan anger inte vilken faktura den krediterar"


def test_credit_note_with_positive_total_is_rejected() -> None:
    message = message_of(invoice=invoice_rows(invoice_type="credit", credited_invoice_number="9999"))
    assert message == INVOICE + "en kreditfaktura ska ha negativt belopp"


def test_duplicate_invoice_number_is_rejected() -> None:
    message = message_of(duplicates={INVOICE_NUMBER})
    assert message == INVOICE + f"fakturanummer {INVOICE_NUMBER} används av flera fakturor"
    assert message_of(duplicates={"10002", "99999"}) is None


def test_invoice_of_a_customer_missing_from_the_erp_is_rejected() -> None:
    results = validate_batch(make_batch([customer_row()], [invoice_rows(customer_id=99)]), start=START, end=END)
    assert results == {INVOICE_ID: f"Faktura {INVOICE_NUMBER}: kund med id 99 finns inte i ERP; "
                                    "koppla fakturan till en befintlig kund"}


# ---- one message per invoice ------------------------------------------------------------------------
def test_all_failures_of_an_invoice_make_one_message_each_rule_once() -> None:
    customer = customer_row(is_active=False, vat_number=None)
    invoice = invoice_rows(status="draft", currency="XXQ", your_reference="R" * (MAX_REFERENCE_LENGTH + 1))
    message = message_of(customer, invoice, duplicates={INVOICE_NUMBER})

    customer_problems = ["kunden är inaktiv; aktivera kunden", "VAT-nummer saknas"]
    invoice_problems = [
        "status är 'draft', bara verifierade (posted) fakturor skickas",
        "valuta 'XXQ' är ingen ISO 4217-kod",
        f"fakturanummer {INVOICE_NUMBER} används av flera fakturor",
        f"Er referens är för lång ({MAX_REFERENCE_LENGTH + 1} tecken, högst {MAX_REFERENCE_LENGTH})",
    ]
    assert message == CUSTOMER + "; ".join(customer_problems) + ". " + INVOICE + "; ".join(invoice_problems)
    for text in [CUSTOMER, INVOICE, *customer_problems, *invoice_problems]:
        assert message.count(text) == 1, text


def test_each_invoice_of_a_failing_customer_is_rejected_with_the_customer_part() -> None:
    batch = make_batch([customer_row(is_active=False)],
                       [invoice_rows(INVOICE_ID), invoice_rows(INVOICE_ID + 1, status="draft")])
    results = validate_batch(batch, start=START, end=END)
    customer_part = CUSTOMER + "kunden är inaktiv; aktivera kunden"
    assert results == {
        INVOICE_ID: customer_part,
        INVOICE_ID + 1: customer_part
        + ". Faktura 10002: status är 'draft', bara verifierade (posted) fakturor skickas",
    }


def test_each_customer_is_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: Counter[str] = Counter()
    original = validation.org_number_valid

    def counting(org: str, private_person: bool) -> bool:
        checked[org] += 1
        return original(org, private_person)

    monkeypatch.setattr(validation, "org_number_valid", counting)
    other = customer_row(8, customer_number="5001", name="Byggbolaget i Norr AB", org_number=OTHER_ORG_NUMBER,
                         vat_number="SE556036079301", invoice_email="bogus")
    batch = make_batch(
        [customer_row(), other],
        [invoice_rows(INVOICE_ID), invoice_rows(INVOICE_ID + 1), invoice_rows(INVOICE_ID + 2, customer_id=8),
         invoice_rows(INVOICE_ID + 3, customer_id=8)],
    )
    results = validate_batch(batch, start=START, end=END)

    assert checked == {ORG_NUMBER: 1, OTHER_ORG_NUMBER: 1}
    other_part = "Kund 5001 Byggbolaget i Norr AB: faktura e-post bogus är ogiltig"
    assert results == {INVOICE_ID: None, INVOICE_ID + 1: None, INVOICE_ID + 2: other_part, INVOICE_ID + 3: other_part}


def test_issue_example_customer_without_org_number() -> None:
    message = message_of(customer_row(customer_number="4367", name="Alingsås kommun", org_number=None,
                                      vat_number=None))
    assert message is not None
    assert message.startswith("Kund 4367 Alingsås kommun: organisationsnummer saknas")
    assert message == "Kund 4367 Alingsås kommun: organisationsnummer saknas; VAT-nummer saknas"


# ---- SQLite (float) and PostgreSQL (Decimal) amounts ------------------------------------------------
_MIXED = [("3", "33.335", "25"), ("1.5", "99.99", "12"), ("7", "0.1", "6"), ("2", "50", "0")]


def _mixed(**fields: Any) -> Invoice:
    return invoice_rows(items=_MIXED, **fields)


@pytest.mark.parametrize(
    ("invoice", "expected"),
    [
        pytest.param(_mixed(), None, id="clean"),
        pytest.param(_mixed(vat_amount=Decimal("43.05"), total_amount=Decimal("393.75")), None, id="vat-one-ore-off"),
        pytest.param(_mixed(vat_amount=Decimal("43.09"), total_amount=Decimal("393.79")),
                     INVOICE + "momsbelopp 43.09 stämmer inte med raderna (43.04)", id="vat-five-ore-off"),
        pytest.param(_mixed(total_amount=Decimal("393.75")),
                     INVOICE + "totalbelopp 393.75 är inte belopp exkl. moms + moms (393.74)", id="total-off"),
    ],
)
def test_float_and_decimal_amounts_behave_the_same(invoice: Invoice, expected: str | None) -> None:
    _, lines = invoice
    assert totals(lines) == (Decimal("350.70"), Decimal("43.04"))
    as_floats = single_batch(invoice=invoice, sqlite=True)
    assert isinstance(as_floats.invoices["amount_ex_vat"].iloc[0], float)
    assert isinstance(as_floats.lines["unit_price"].iloc[0], float)
    as_decimals = single_batch(invoice=invoice)
    assert isinstance(as_decimals.invoices["amount_ex_vat"].iloc[0], Decimal)

    from_sqlite = validate_batch(as_floats, start=START, end=END)
    from_postgres = validate_batch(as_decimals, start=START, end=END)
    assert from_sqlite == from_postgres == {INVOICE_ID: expected}


def test_sqlite_dates_and_booleans_are_understood() -> None:
    batch = single_batch(customer_row(is_active=False), invoice_rows(due_date=date(2026, 3, 9)), sqlite=True)
    assert batch.invoices["invoice_date"].iloc[0] == INVOICE_DATE.isoformat()
    assert batch.customers["is_active"].iloc[0] == 0
    assert validate_batch(batch, start=START, end=END) == {
        INVOICE_ID: CUSTOMER + "kunden är inaktiv; aktivera kunden. "
        + INVOICE + f"förfallodatum 2026-03-09 är före fakturadatum {INVOICE_DATE}"
    }


def test_report_summary_counts_and_top_reasons() -> None:
    inactive = customer_row(8, customer_number="5001", name="Byggbolaget i Norr AB", org_number=OTHER_ORG_NUMBER,
                            vat_number="SE556036079301", is_active=False)
    batch = make_batch(
        [customer_row(), inactive],
        [invoice_rows(INVOICE_ID), invoice_rows(INVOICE_ID + 1, customer_id=8),
         invoice_rows(INVOICE_ID + 2, customer_id=8), invoice_rows(INVOICE_ID + 3, status="draft")],
    )
    report = validation.validate(batch, start=START, end=END)

    assert report.rejected == 3
    assert report.top_reasons() == [("active", 2), ("posted", 1)]
    lines = report.summary().splitlines()
    assert [line.split()[-1] for line in lines[2:5]] == ["4", "1", "3"]
    assert "inaktiv kund" in lines[5] and lines[5].split()[-1] == "2"


def test_foreign_vat_number_must_belong_to_the_customers_country() -> None:
    danish = {"country_code": "DK", "org_number": "13585628"}
    assert message_of(customer_row(**danish, vat_number="DK13585628")) is None
    assert message_of(customer_row(**danish, vat_number="FI01120389")) == (
        CUSTOMER + "VAT-nummer FI01120389 är inte ett giltigt EU-momsnummer för DK")


# ---- customers across chunks ------------------------------------------------------------------------
@pytest.mark.parametrize("sqlite", [False, True], ids=["postgresql-types", "sqlite-types"])
def test_a_customer_is_checked_in_its_first_chunk_and_again_only_when_its_row_changed(
        sqlite: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    checked_rows: list[int] = []
    customer_facts = validation.customer_facts

    def counting(customers: Any) -> Any:
        checked_rows.append(len(customers))
        return customer_facts(customers)

    monkeypatch.setattr(validation, "customer_facts", counting)
    bad, good = customer_row(1, vat_number=None), customer_row(2, customer_number="4368")
    seen = validation.CheckedCustomers()

    def chunk(customers: list[dict[str, Any]], invoice_ids: list[int], customer_ids: list[int]) -> dict:
        invoices = [invoice_rows(i, c) for i, c in zip(invoice_ids, customer_ids, strict=True)]
        batch = make_batch(customers, invoices, sqlite=sqlite)
        return validation.validate(batch, start=START, end=END, checked=seen).messages

    first = chunk([bad, good], [101, 102], [1, 2])
    second = chunk([bad, good], [103, 104], [1, 2])  # the same rows: nobody checked again
    fixed = chunk([customer_row(1), good], [105, 106], [1, 2])  # the ERP fixed customer 1 meanwhile

    assert checked_rows == [2, 0, 1]
    assert first[101] and "VAT-nummer saknas" in first[101] and first[102] is None
    assert second[103] == first[101].replace("10001", "10003") and second[104] is None
    assert fixed == {105: None, 106: None}
