"""Validation of hostile ERP values: texts the document cannot carry, unreadable flags and keys,
missing numbers and names, line numbers, negative prices, units and absurd due dates.

Every case runs with the value types PostgreSQL returns and with those SQLite returns, and the two
must give the same message (the ``sqlite`` fixture). The messages are compared whole where the
wording matters: which customer or invoice, which field as the ERP shows it, what to fix.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dispatch_testing.erp_rows import (
    CUSTOMER_NAME,
    CUSTOMER_NUMBER,
    END,
    INVOICE_DATE,
    INVOICE_ID,
    INVOICE_NUMBER,
    START,
    credit_rows,
    customer_row,
    invoice_rows,
    make_batch,
    with_values,
)
from inexchange.validation import TEXT_FIELDS, flag, shown, validate_batch

CUSTOMER = f"Kund {CUSTOMER_NUMBER} {CUSTOMER_NAME}: "
INVOICE = f"Faktura {INVOICE_NUMBER}: "
Invoice = tuple[dict[str, Any], list[dict[str, Any]]]


@pytest.fixture(params=[False, True], ids=["postgresql-types", "sqlite-types"])
def sqlite(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def message(customer: dict[str, Any] | None = None, invoice: Invoice | None = None, *, sqlite: bool = False,
            start: date = START, end: date = END) -> str | None:
    """The message of one invoice next to a valid one; with SQLite's types it must equal PostgreSQL's."""
    other = invoice_rows(INVOICE_ID + 50, customer_id=8)
    good = customer_row(8, customer_number="5001", name="Östra Göinge kommun")
    results = {}
    for types in {False, sqlite}:
        batch = make_batch([customer or customer_row(), good], [invoice or invoice_rows(), other], sqlite=types)
        results[types] = validate_batch(batch, start=start, end=end)
        assert results[types][INVOICE_ID + 50] is None, "a hostile row disturbed another invoice"
    assert results[sqlite][INVOICE_ID] == results[False][INVOICE_ID], "SQLite and PostgreSQL types disagree"
    return results[sqlite][INVOICE_ID]


def with_line(**values: Any) -> Invoice:
    """The default invoice with line 2 changed (the header adds up the lines as built)."""
    header, lines = invoice_rows(items=[("10", "250", "25"), ("2", "100", "25")])
    return header, [lines[0], with_values(lines[1], **values)]


# ---- texts the document carries ------------------------------------------------------------------------
CONTROL = "innehåller styrtecken; ta bort dem"


@pytest.mark.parametrize(("column", "value", "expected"), [
    pytest.param("name", "Kund\x01 AB", f"Kund {CUSTOMER_NUMBER} Kund\\x01 AB: namn {CONTROL}", id="name-control"),
    pytest.param("name", "Nul\x00AB", f"Kund {CUSTOMER_NUMBER} Nul\\x00AB: namn {CONTROL}", id="name-nul"),
    pytest.param("name", b"Blob AB", f"Kund {CUSTOMER_NUMBER} Blob AB: namn kan inte läsas (binära data); "
                 "spara den som text", id="name-binary"),
    pytest.param("name", "Caf\ufffd AB", f"Kund {CUSTOMER_NUMBER} Caf\ufffd AB: namn är inte giltig text "
                 "(tecken som inte är UTF-8); skriv in den igen", id="name-not-utf8"),
    pytest.param("street", "Box\x0b 12", CUSTOMER + f"gatuadress {CONTROL}", id="street-control"),
    pytest.param("city", "Borås\ufffe", CUSTOMER + f"ort {CONTROL}", id="city-noncharacter"),
    pytest.param("city", "O" * 101, CUSTOMER + "ort är för lång (101 tecken, högst 100); korta texten", id="city-long"),
    pytest.param("postal_code", "441 81 441 8", CUSTOMER + "postnummer är för långt (12 tecken, högst 10); "
                 "korta texten", id="postal-code-long"),
    pytest.param("customer_number", "4" * 31, f"Kund {'4' * 31} {CUSTOMER_NAME}: kundnummer är för långt "
                 "(31 tecken, högst 30); korta texten", id="customer-number-long"),
    pytest.param("customer_number", None, f"Kund med id 7 {CUSTOMER_NAME}: kundnummer saknas; ange kundnummer",
                 id="customer-number-missing"),
    pytest.param("name", None, f"Kund {CUSTOMER_NUMBER}: namn saknas; ange kundens namn", id="name-missing"),
    pytest.param("name", "  ", f"Kund {CUSTOMER_NUMBER}: namn saknas; ange kundens namn", id="name-blank"),
])
def test_customer_texts_the_document_cannot_carry(column: str, value: Any, expected: str, sqlite: bool) -> None:
    assert message(customer_row(**{column: value}), sqlite=sqlite) == expected


def test_a_long_customer_name_is_counted_and_shown_cut() -> None:
    result = message(customer_row(name="N" * 5000))
    assert result == f"Kund {CUSTOMER_NUMBER} {'N' * 79}…: namn är för långt (5000 tecken, högst 200); korta texten"
    assert message(customer_row(name="Å" * 200)) is None


@pytest.mark.parametrize("text", [
    "'; DROP TABLE customer; --", "O'Brien & Söner \"AB\" <Ltd>", "100% _x_ \\ back\\slash", "Åsa Öberg 🧾 AB",
    "شركة الاختبار \u202eBA\u202c", "A\u0308ngelholm", "\u200bNoll\u200cbredd\u200dAB\ufeff", "Rad 1\tRad 2\nRad 3",
])
def test_sql_metacharacters_and_unicode_are_accepted(text: str, sqlite: bool) -> None:
    customer = customer_row(name=text, street=text[:200], city=text[:100])
    header, lines = invoice_rows(order_number=text[:50])
    lines[0]["description"] = text
    assert message(customer, (header, lines), sqlite=sqlite) is None


@pytest.mark.parametrize(("values", "expected"), [
    pytest.param({"invoice_number": None}, "Faktura med id 101: fakturanummer saknas; ange fakturanummer",
                 id="number-missing"),
    pytest.param({"invoice_number": "10\x1f01"}, f"Faktura 10\\x1f01: fakturanummer {CONTROL}", id="number-control"),
    pytest.param({"invoice_number": "9" * 31}, f"Faktura {'9' * 31}: fakturanummer är för långt (31 tecken, högst 30); "
                 "korta texten", id="number-long"),
    pytest.param({"order_number": "PO\x02"}, INVOICE + f"ordernummer {CONTROL}", id="order-number-control"),
    pytest.param({"order_number": "P" * 51}, INVOICE + "ordernummer är för långt (51 tecken, högst 50); korta texten",
                 id="order-number-long"),
    pytest.param({"invoice_type": None}, INVOICE + "fakturatyp saknas; ange debet eller kredit", id="type-missing"),
    pytest.param({"currency": None}, INVOICE + "valuta saknas; ange valutakod (ISO 4217, till exempel SEK)",
                 id="currency-missing"),
    pytest.param({"customer_id": None}, INVOICE + "kund saknas; koppla fakturan till en kund", id="customer-missing"),
])
def test_invoice_header_values(values: dict[str, Any], expected: str, sqlite: bool) -> None:
    header, lines = invoice_rows()
    assert message(invoice=(with_values(header, **values), lines), sqlite=sqlite) == expected


@pytest.mark.parametrize(("values", "expected"), [
    pytest.param({"description": "x" * 201}, "rad 2: beskrivning är för lång (201 tecken, högst 200); korta texten",
                 id="description-long"),
    pytest.param({"description": "Rad\x0cmed sidbrytning"}, f"rad 2: beskrivning {CONTROL}", id="description-control"),
    pytest.param({"description": b"\x00\x01"}, "rad 2: beskrivning kan inte läsas (binära data)",
                 id="description-binary"),
    pytest.param({"article_number": "A" * 31}, "rad 2: artikelnummer är för långt (31 tecken, högst 30)",
                 id="article-number-long"),
    pytest.param({"unit": "burk"}, "rad 2: enheten 'burk' är okänd; använd en av ", id="unit-unknown"),
    pytest.param({"unit": "st\x00"}, "rad 2: enheten 'st\\x00' är okänd", id="unit-control"),
])
def test_line_values(values: dict[str, Any], expected: str, sqlite: bool) -> None:
    result = message(invoice=with_line(**values), sqlite=sqlite)
    assert result is not None and result.startswith(INVOICE) and expected in result, result


def test_the_description_limit_is_the_contract_width() -> None:
    assert TEXT_FIELDS["description"].limit == 200
    assert message(invoice=with_line(description="Å" * 200)) is None


def test_a_ten_megabyte_description_is_rejected_quickly_and_in_little_memory(tmp_path: Path) -> None:
    """Peak memory of a process validating it, against the same process validating a short text."""
    script = tmp_path / "validate_big.py"
    script.write_text(
        "import json, resource, sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).parents[1])!r})\n"
        "from dispatch_testing.erp_rows import END, START, invoice_rows, make_batch, customer_row\n"
        "from inexchange.validation import validate_batch\n"
        "header, lines = invoice_rows()\n"
        "lines[0]['description'] = 'x' * int(sys.argv[1])\n"
        "batch = make_batch([customer_row()], [(header, lines)], sqlite=True)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "started = time.perf_counter()\n"
        "result = validate_batch(batch, start=START, end=END)\n"
        "elapsed = time.perf_counter() - started\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'message': result[101], 'seconds': elapsed, 'grown_kib': after - before}))\n",
        encoding="utf-8")

    def run(size: int) -> dict[str, Any]:
        done = subprocess.run([sys.executable, str(script), str(size)], check=True, capture_output=True, text=True,
                              timeout=120)
        return json.loads(done.stdout.strip().splitlines()[-1])

    small, big = run(201), run(10 * 1024 * 1024)
    assert small["message"] == INVOICE + "rad 1: beskrivning är för lång (201 tecken, högst 200); korta texten"
    assert big["message"] == INVOICE + "rad 1: beskrivning är för lång (10485760 tecken, högst 200); korta texten"
    assert big["seconds"] < small["seconds"] + 3, (small, big)
    # the text itself is 10 MiB; a few copies of it at most, never one per rule or per message
    assert big["grown_kib"] - small["grown_kib"] < 60 * 1024, (small, big)


# ---- flags ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("column", "label"), [("is_active", "Aktiv"), ("is_private_person", "Privatperson"),
                                               ("attach_documents", "Bifoga dokument vid digitalt utskick")])
def test_an_unreadable_flag_is_named(column: str, label: str, sqlite: bool) -> None:
    expected = CUSTOMER + f"{label} 'kanske' kan inte läsas; ange ja eller nej"
    assert message(customer_row(**{column: "kanske"}), sqlite=sqlite) == expected


@pytest.mark.parametrize("value", [True, 1, "true", "TRUE", " t ", "ja", "Ja", "yes", "1", Decimal("1")])
def test_flags_reading_yes(value: Any, sqlite: bool) -> None:
    assert flag(value) is True
    assert message(customer_row(is_active=value), sqlite=sqlite) is None


@pytest.mark.parametrize("value", [False, 0, "false", "f", "nej", "NEJ", "no", "0", None, ""])
def test_flags_reading_no(value: Any, sqlite: bool) -> None:
    assert flag(value) is False
    assert message(customer_row(is_active=value), sqlite=sqlite) == CUSTOMER + "kunden är inaktiv; aktivera kunden"


# ---- keys -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("customer_id", "expected"), [
    pytest.param("k-17", "kund 'k-17' kan inte läsas; ange ett giltigt värde", id="text"),
    # never taken for customer 7, whose id it starts with
    pytest.param(7.5, "kund '7.5' kan inte läsas; ange ett giltigt värde", id="fraction"),
    pytest.param(b"\x07", "kund 'binära data (1 byte)' kan inte läsas", id="binary"),
    pytest.param(99, "kund med id 99 finns inte i ERP; koppla fakturan till en befintlig kund", id="missing"),
])
def test_customer_ids_that_are_no_customer(customer_id: Any, expected: str, sqlite: bool) -> None:
    header, lines = invoice_rows()
    result = message(invoice=(with_values(header, customer_id=customer_id), lines), sqlite=sqlite)
    assert result is not None and result.startswith(INVOICE) and expected in result, result


@pytest.mark.parametrize("customer_id", [7, 7.0, Decimal("7"), "7", " 7 "])
def test_a_whole_customer_id_of_any_type_is_the_customer(customer_id: Any) -> None:
    header, lines = invoice_rows()
    assert message(invoice=(with_values(header, customer_id=customer_id), lines)) is None


@pytest.mark.parametrize(("line_number", "expected"), [
    pytest.param(None, "radnummer saknas", id="null"),
    pytest.param("ett", "radnummer 'ett' kan inte läsas", id="text"),
    pytest.param(1.5, "radnummer '1.5' kan inte läsas", id="fraction"),
])
def test_line_numbers(line_number: Any, expected: str, sqlite: bool) -> None:
    result = message(invoice=with_line(line_number=line_number), sqlite=sqlite)
    assert result == INVOICE + f"{expected}; ge raderna heltal som radnummer (1, 2, 3 …)"


def test_a_line_without_number_does_not_turn_other_line_numbers_into_decimals() -> None:
    broken_header, broken_lines = invoice_rows(INVOICE_ID + 1)
    broken_lines[0]["line_number"] = None
    header, lines = with_line(line_amount=Decimal("1"))
    batch = make_batch([customer_row()], [(header, lines), (broken_header, broken_lines)])
    assert batch.lines["line_number"].dtype.kind == "f"  # pandas made the whole column float
    results = validate_batch(batch, start=START, end=END)
    assert "radbelopp stämmer inte med antal × pris på rad 2;" in results[INVOICE_ID]
    assert "rad 2.0" not in results[INVOICE_ID]


# ---- signs and prices ---------------------------------------------------------------------------------
def test_a_negative_price_is_rejected(sqlite: bool) -> None:
    invoice = invoice_rows(items=[("10", "250", "25"), ("1", "-200", "25")])
    assert message(invoice=invoice, sqlite=sqlite) == INVOICE + (
        "rad 2: pris -200 är negativt; ange en rabatt som negativt antal till positivt pris (Peppol BR-27)")


def test_a_credit_note_with_negative_prices_is_rejected(sqlite: bool) -> None:
    header, lines = credit_rows(invoice_id=INVOICE_ID, items=[("1", "-250", "25")])
    lines = [with_values(line, quantity=Decimal("1"), unit_price=Decimal("-250")) for line in lines]
    result = message(invoice=(header, lines), sqlite=sqlite)
    assert result is not None and "rad 1: pris -250 är negativt" in result


def test_a_discount_line_is_a_negative_quantity(sqlite: bool) -> None:
    assert message(invoice=invoice_rows(items=[("10", "250", "25"), ("-1", "200", "25")]), sqlite=sqlite) is None


def test_a_debit_whose_discount_exceeds_it_is_rejected(sqlite: bool) -> None:
    result = message(invoice=invoice_rows(items=[("1", "100", "25"), ("-2", "200", "25")]), sqlite=sqlite)
    assert result == INVOICE + "en debetfaktura ska ha positivt totalbelopp"


# ---- dates --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("due_date", "expected"), [
    pytest.param(date(9999, 12, 31), f"förfallodatum 9999-12-31 ligger mer än ett år efter fakturadatum "
                 f"{INVOICE_DATE}; kontrollera förfallodatum", id="year-9999"),
    pytest.param(INVOICE_DATE + timedelta(days=367), f"förfallodatum {INVOICE_DATE + timedelta(days=367)} ligger mer "
                 f"än ett år efter fakturadatum {INVOICE_DATE}; kontrollera förfallodatum", id="367-days"),
    pytest.param(INVOICE_DATE + timedelta(days=366), None, id="366-days"),
    pytest.param("snart", "förfallodatum 'snart' kan inte läsas; ange ett datum (ÅÅÅÅ-MM-DD)", id="text"),
    pytest.param("10000-01-01", "förfallodatum '10000-01-01' kan inte läsas; ange ett datum (ÅÅÅÅ-MM-DD)",
                 id="year-10000"),
])
def test_due_dates(due_date: Any, expected: str | None, sqlite: bool) -> None:
    result = message(invoice=invoice_rows(due_date=due_date), sqlite=sqlite)
    assert result == (None if expected is None else INVOICE + expected)


def test_an_invoice_dated_in_year_9999_is_outside_any_run(sqlite: bool) -> None:
    result = message(invoice=invoice_rows(invoice_date=date(9999, 12, 31), due_date=date(9999, 12, 31)),
                     sqlite=sqlite)
    assert result == INVOICE + f"fakturadatum 9999-12-31 ligger utanför körningens period {START}–{END}"


# ---- how values are shown -----------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "expected"), [
    ("Alingsås kommun", "Alingsås kommun"), ("a\x00b\x1f\x7f", "a\\x00b\\x1f\\x7f"), ("x\ufffe", "x\\ufffe"),
    ("tab\tand\nnewline", "tab\tand\nnewline"), (b"\x00\x01\x02", "binära data (3 byte)"), (None, ""),
    (17, "17"), ("  kant  ", "kant"), ("N" * 101, "N" * 99 + "…"),
])
def test_shown(value: Any, expected: str) -> None:
    assert shown(value) == expected


# ---- rows a view without keys repeats -------------------------------------------------------------------
def test_a_customer_on_two_rows_is_rejected_as_ambiguous(sqlite: bool) -> None:
    other = customer_row(name="Alingsås kommun, Kontakt 2", vat_number=None)
    header, lines = invoice_rows()
    batch = make_batch([customer_row(), other], [(header, lines), invoice_rows(INVOICE_ID + 1)], sqlite=sqlite)
    results = validate_batch(batch, start=START, end=END)
    expected = CUSTOMER + "kunden finns på 2 rader i ERP (customer_id 7); en kund ska finnas på en rad"
    assert results == {INVOICE_ID: expected, INVOICE_ID + 1: expected}


def test_an_invoice_on_two_rows_is_rejected_as_ambiguous_and_others_pass(sqlite: bool) -> None:
    header, lines = invoice_rows()
    copy = (with_values(header, total_amount=Decimal("1")), [dict(line) for line in lines])
    batch = make_batch([customer_row()], [(header, lines), copy, invoice_rows(INVOICE_ID + 1)], sqlite=sqlite)
    results = validate_batch(batch, start=START, end=END)
    assert results == {INVOICE_ID: INVOICE + "fakturan finns på 2 rader i ERP (invoice_id 101); "
                                                "en faktura ska finnas på en rad",
                       INVOICE_ID + 1: None}
