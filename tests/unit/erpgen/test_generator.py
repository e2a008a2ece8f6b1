"""Tests of the ERP data-set generator on SQLite files."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import unicodedata
import zlib
from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine
from stdnum import ean
from stdnum.eu import vat as eu_vat
from stdnum.se import orgnr, personnummer
from stdnum.se import vat as se_vat

from inexchange_devkit.erpgen import (
    BAD_CUSTOMER_CATEGORIES,
    INEXCHANGE_BILLING_METHOD,
    INVOICE_DEFECTS,
    GenerationSummary,
    TablesNotEmptyError,
    generate,
)
from dispatch_testing.support import dump

CENT = Decimal("0.01")
START = date(2026, 11, 16)
Rows = dict[str, list[dict[str, Any]]]
Generated = tuple[GenerationSummary, Rows]


def sqlite_engine(path: Path) -> Engine:
    """Return an engine on a SQLite file."""
    return create_engine(f"sqlite:///{path}")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """Generate the default data set once and return its summary and rows."""
    engine = sqlite_engine(tmp_path_factory.mktemp("erpgen") / "erp.db")
    summary = generate(engine)
    rows = dump(engine)
    engine.dispose()
    return summary, rows


def customer_ids(rows: Rows, numbers: list[str]) -> set[int]:
    """Return the ids of the customers with these customer numbers."""
    return {row["customer_id"] for row in rows["customer"] if row["customer_number"] in numbers}


def _digits(number: str) -> str:
    return re.sub(r"\D", "", number)


def customer_defects(customer: dict[str, Any]) -> set[str]:
    """Return the bad-customer categories whose defect this customer row shows."""
    org, vat, gln, marking = (customer[key] for key in ("org_number", "vat_number", "gln", "marking"))
    found = set()
    if org is None:
        found.add("missing_org_number")
    elif customer["country_code"] == "SE" and not orgnr.is_valid(org):
        found.add("invalid_org_number")
    if vat is None and not customer["is_private_person"]:
        found.add("missing_vat_number")
    if vat and org and customer["country_code"] == "SE" and _digits(vat)[:10] != _digits(org):
        found.add("vat_org_mismatch")
    if gln is not None and not (len(gln) == 13 and ean.is_valid(gln)):
        found.add("invalid_gln")
    if not customer["is_active"]:
        found.add("inactive")
    if marking is not None and len(marking) > 200:
        found.add("marking_too_long")
    if marking is not None and any(unicodedata.category(char) == "Cc" for char in marking):
        found.add("marking_control_character")
    return found


def recomputed(lines: list[dict[str, Any]]) -> tuple[Decimal, Decimal]:
    """Return amount ex VAT and VAT (rounded half up per rate) recomputed from the lines."""
    per_rate: dict[Decimal, Decimal] = defaultdict(Decimal)
    for line in lines:
        per_rate[line["vat_rate"]] += line["line_amount"]
    amount = sum((line["line_amount"] for line in lines), Decimal(0))
    vat = sum(
        ((base * rate / 100).quantize(CENT, ROUND_HALF_UP) for rate, base in per_rate.items()), Decimal(0)
    )
    return amount, vat


def test_counts_match_the_arguments(generated: Generated) -> None:
    summary, rows = generated
    invoices = rows["customer_invoice"]
    assert len(rows["customer"]) == summary.customers == 40
    assert sum(row["status"] == "posted" for row in invoices) == summary.posted == 200
    assert sum(row["status"] == "draft" for row in invoices) == summary.drafts == 15
    assert len(invoices) == summary.invoices == 215
    assert len(rows["customer_invoice_line"]) == summary.lines
    assert len(rows["invoice_attachment"]) == summary.attachments > 0
    assert sum(row["invoice_type"] == "credit" for row in invoices) == summary.credits
    assert sorted(summary.per_day) == [START + timedelta(days=offset) for offset in range(7)]
    assert sum(day.posted for day in summary.per_day.values()) == 200
    assert sum(day.drafts for day in summary.per_day.values()) == 15
    lines_per_invoice = defaultdict(int)
    for line in rows["customer_invoice_line"]:
        lines_per_invoice[line["invoice_id"]] += 1
    assert set(lines_per_invoice) == {row["invoice_id"] for row in invoices}
    assert set(lines_per_invoice.values()) <= {1, 2, 3, 4, 5}


def test_same_seed_gives_identical_rows_and_another_seed_does_not(tmp_path: Path) -> None:
    dumps = []
    for name, seed, chunk_size in (("a", 7, 5000), ("b", 7, 7), ("c", 8, 5000)):
        engine = sqlite_engine(tmp_path / f"{name}.db")
        generate(engine, seed=seed, chunk_size=chunk_size)
        dumps.append(dump(engine))
        engine.dispose()
    assert dumps[0] == dumps[1]
    assert dumps[0]["customer"] != dumps[2]["customer"]
    assert dumps[0]["customer_invoice"] != dumps[2]["customer_invoice"]


def test_invoice_numbers_unique_and_sequential(generated: Generated) -> None:
    _, rows = generated
    numbers = [row["invoice_number"] for row in rows["customer_invoice"]]
    assert numbers == [str(10001 + index) for index in range(len(numbers))]
    dates = [row["invoice_date"] for row in rows["customer_invoice"]]
    assert dates == sorted(dates)


def test_good_customers_have_valid_identifiers(generated: Generated) -> None:
    summary, rows = generated
    customers = {row["customer_number"]: row for row in rows["customer"]}
    assert "4367" in summary.good_customers
    alingsas = customers["4367"]
    assert (alingsas["name"], alingsas["org_number"], alingsas["vat_number"]) == (
        "Alingsås kommun", "212000-1553", "SE212000155301",
    )
    assert any(customers[number]["gln"] for number in summary.good_customers)
    for number in summary.good_customers:
        customer = customers[number]
        assert customer["billing_method"] == INEXCHANGE_BILLING_METHOD
        assert customer_defects(customer) == set(), number
        if customer["gln"] is not None:
            assert re.fullmatch(r"73\d{11}", customer["gln"]) and ean.is_valid(customer["gln"])
        if customer["country_code"] != "SE":
            assert number in summary.foreign_customers
            assert eu_vat.is_valid(customer["vat_number"])
            assert customer["vat_number"].startswith(customer["country_code"])
        elif customer["is_private_person"]:
            assert number in summary.private_person_customers
            assert personnummer.is_valid(customer["org_number"]) and customer["vat_number"] is None
        else:
            assert re.fullmatch(r"\d{6}-\d{4}", customer["org_number"])
            assert orgnr.is_valid(customer["org_number"]) and int(customer["org_number"][2]) >= 2
            assert se_vat.is_valid(customer["vat_number"])
            assert customer["vat_number"] == "SE" + _digits(customer["org_number"]) + "01"
            assert customer["language"] == "sv" and customer["currency"] == "SEK"
            assert re.fullmatch(r"\d{3} \d{2}", customer["postal_code"])
    assert len(summary.private_person_customers) == 1
    assert {customers[number]["country_code"] for number in summary.foreign_customers} == {"DK", "FI"}
    emails = [customers[number]["invoice_email"] for number in summary.good_customers]
    assert sum(email is not None and email.startswith("faktura@") for email in emails) > len(emails) / 2


def test_each_bad_category_present_with_exactly_its_defect(generated: Generated) -> None:
    summary, rows = generated
    customers = {row["customer_number"]: row for row in rows["customer"]}
    assert list(summary.bad_customers) == list(BAD_CUSTOMER_CATEGORIES)
    inexchange = [row for row in rows["customer"] if row["billing_method"] == INEXCHANGE_BILLING_METHOD]
    bad_numbers = [number for numbers in summary.bad_customers.values() for number in numbers]
    assert 0.15 <= len(bad_numbers) / len(inexchange) <= 0.25
    for category, numbers in summary.bad_customers.items():
        assert numbers, category
        for number in numbers:
            customer = customers[number]
            assert customer["billing_method"] == INEXCHANGE_BILLING_METHOD
            assert customer_defects(customer) == {category}, (number, category)
    mismatch = customers[summary.bad_customers["vat_org_mismatch"][0]]
    assert se_vat.is_valid(mismatch["vat_number"]) and orgnr.is_valid(mismatch["org_number"])
    gln = customers[summary.bad_customers["invalid_gln"][0]]["gln"]
    assert re.fullmatch(r"73\d{11}", gln)
    classified = set(summary.good_customers) | set(bad_numbers) | set(summary.other_billing_customers)
    assert classified == set(customers) and len(classified) == len(customers)


def test_other_billing_methods(generated: Generated) -> None:
    summary, rows = generated
    customers = {row["customer_number"]: row for row in rows["customer"]}
    methods = {customers[number]["billing_method"] for number in summary.other_billing_customers}
    assert methods == {"Utskrift", "E-post"}
    assert 0.1 <= len(summary.other_billing_customers) / len(customers) <= 0.2
    assert all(customer_defects(customers[number]) == set() for number in summary.other_billing_customers)


def test_amounts_add_up_except_listed_defects(generated: Generated) -> None:
    summary, rows = generated
    lines = defaultdict(list)
    for line in rows["customer_invoice_line"]:
        lines[line["invoice_id"]].append(line)
    found: dict[str, set[str]] = defaultdict(set)
    for invoice in rows["customer_invoice"]:
        its_lines = lines[invoice["invoice_id"]]
        products = [
            (line["quantity"] * line["unit_price"]).quantize(CENT, ROUND_HALF_UP) for line in its_lines
        ]
        if [line["line_amount"] for line in its_lines] != products:
            found["line_amount_mismatch"].add(invoice["invoice_number"])
        if invoice["total_amount"] != invoice["amount_ex_vat"] + invoice["vat_amount"]:
            found["total_mismatch"].add(invoice["invoice_number"])
        if invoice["due_date"] < invoice["invoice_date"]:
            found["due_before_invoice"].add(invoice["invoice_number"])
        elif invoice["due_date"] != invoice["invoice_date"] + timedelta(days=30):
            found["wrong_terms"].add(invoice["invoice_number"])
        assert (invoice["amount_ex_vat"], invoice["vat_amount"]) == recomputed(its_lines), invoice
        for line in its_lines:
            assert line["unit"] in {"st", "tim", "kg", "m", "mån", "dag"}
            assert line["vat_rate"] in {Decimal(25), Decimal(12), Decimal(6), Decimal(0)}
            assert line["unit_price"] > 0 and line["unit_price"] == line["unit_price"].quantize(CENT)
    assert {kind: set(numbers) for kind, numbers in summary.defective_invoices.items()} == dict(found)
    assert list(summary.defective_invoices) == list(INVOICE_DEFECTS)
    by_number = {row["invoice_number"]: row for row in rows["customer_invoice"]}
    good_ids = customer_ids(rows, summary.good_customers)
    posted = [row for row in rows["customer_invoice"] if row["status"] == "posted"]
    good_posted = [row for row in posted if row["customer_id"] in good_ids]
    assert 0.02 <= len(summary.defective_invoice_numbers) / len(good_posted) <= 0.08
    for number in summary.defective_invoice_numbers:
        invoice = by_number[number]
        assert (invoice["status"], invoice["invoice_type"]) == ("posted", "debit")
        assert invoice["customer_id"] in good_ids


def test_vat_rates_and_reverse_charge(generated: Generated) -> None:
    summary, rows = generated
    foreign_ids = customer_ids(rows, summary.foreign_customers)
    invoice_customer = {row["invoice_id"]: row["customer_id"] for row in rows["customer_invoice"]}
    rates = defaultdict(set)
    for line in rows["customer_invoice_line"]:
        rates[invoice_customer[line["invoice_id"]] in foreign_ids].add(line["vat_rate"])
    assert rates[True] == {Decimal(0)}
    assert {Decimal(25), Decimal(12), Decimal(6)} <= rates[False]


def test_credit_invoices_credit_an_earlier_debit_of_the_same_customer(generated: Generated) -> None:
    summary, rows = generated
    by_number = {row["invoice_number"]: row for row in rows["customer_invoice"]}
    lines = defaultdict(list)
    for line in rows["customer_invoice_line"]:
        lines[line["invoice_id"]].append(line)
    credits = [row for row in rows["customer_invoice"] if row["invoice_type"] == "credit"]
    assert 0.05 <= len(credits) / summary.posted <= 0.15
    credited = [credit["credited_invoice_number"] for credit in credits]
    assert len(set(credited)) == len(credited)
    for credit in credits:
        assert credit["status"] == "posted"
        assert credit["amount_ex_vat"] < 0 and credit["total_amount"] < 0 and credit["vat_amount"] <= 0
        for line in lines[credit["invoice_id"]]:
            assert line["quantity"] < 0 < line["unit_price"] and line["line_amount"] < 0
        debit = by_number[credit["credited_invoice_number"]]
        assert (debit["invoice_type"], debit["status"]) == ("debit", "posted")
        assert debit["customer_id"] == credit["customer_id"]
        assert int(debit["invoice_number"]) < int(credit["invoice_number"])
        assert debit["invoice_date"] <= credit["invoice_date"]
        assert -credit["amount_ex_vat"] <= debit["amount_ex_vat"]
        assert debit["invoice_number"] not in summary.defective_invoice_numbers
    debits = [row for row in rows["customer_invoice"] if row["invoice_type"] == "debit"]
    assert all(row["credited_invoice_number"] is None and row["amount_ex_vat"] > 0 for row in debits)


def test_drafts_are_debits_of_good_customers(generated: Generated) -> None:
    summary, rows = generated
    good_ids = customer_ids(rows, summary.good_customers)
    drafts = [row for row in rows["customer_invoice"] if row["status"] == "draft"]
    assert len(drafts) == 15
    assert all(row["invoice_type"] == "debit" and row["customer_id"] in good_ids for row in drafts)


def test_every_day_has_every_kind_of_invoice(generated: Generated) -> None:
    summary, rows = generated
    category = {}
    for row in rows["customer"]:
        number = row["customer_number"]
        if number in summary.good_customers:
            category[row["customer_id"]] = "good"
        elif number in summary.other_billing_customers:
            category[row["customer_id"]] = "other"
        else:
            category[row["customer_id"]] = "bad"
    kinds = defaultdict(set)
    for invoice in rows["customer_invoice"]:
        kind = "draft" if invoice["status"] == "draft" else category[invoice["customer_id"]]
        kinds[invoice["invoice_date"]].add(kind)
    assert len(kinds) == 7
    for day, found in kinds.items():
        assert found == {"good", "bad", "other", "draft"}, day
        counts = summary.per_day[day]
        assert min(counts.posted_good, counts.posted_bad, counts.posted_other_billing, counts.drafts) > 0
    posted_days = [day.posted for day in summary.per_day.values()]
    assert max(posted_days) - min(posted_days) <= 1
    invoiced = {row["customer_id"] for row in rows["customer_invoice"] if row["status"] == "posted"}
    assert invoiced == set(category)


def _check_pdf(content: bytes) -> None:
    assert content.startswith(b"%PDF-1.4") and content.rstrip().endswith(b"%%EOF")
    xref = int(content[content.rindex(b"startxref") + 9 :].split()[0])
    assert content[xref:].startswith(b"xref")
    entries = content[xref:].split(b"\n")[3:]
    for number, entry in enumerate(entries[:5], start=1):
        offset = int(entry.split()[0])
        assert content[offset:].startswith(b"%d 0 obj" % number)


def _check_png(content: bytes) -> None:
    assert content.startswith(b"\x89PNG\r\n\x1a\n")
    position, data = 8, b""
    while position < len(content):
        (length,) = struct.unpack(">I", content[position : position + 4])
        tag = content[position + 4 : position + 8]
        body = content[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", content[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(tag + body)
        if tag == b"IDAT":
            data += body
        position += 12 + length
    width, height = struct.unpack(">II", content[16:24])
    assert len(zlib.decompress(data)) == height * (width + 1)


def test_attachments(generated: Generated) -> None:
    _, rows = generated
    attaching = {row["customer_id"] for row in rows["customer"] if row["attach_documents"]}
    per_invoice = defaultdict(list)
    for attachment in rows["invoice_attachment"]:
        per_invoice[attachment["invoice_id"]].append(attachment)
    for invoice in rows["customer_invoice"]:
        files = per_invoice[invoice["invoice_id"]]
        assert (1 <= len(files) <= 2) if invoice["customer_id"] in attaching else not files
    mime_types = set()
    for attachment in rows["invoice_attachment"]:
        content = attachment["content"]
        assert 0 < len(content) < 5000
        mime_types.add(attachment["mime_type"])
        if attachment["mime_type"] == "application/pdf":
            assert attachment["file_name"].endswith(".pdf")
            _check_pdf(content)
        else:
            assert attachment["file_name"].endswith(".png")
            _check_png(content)
    assert mime_types == {"application/pdf", "image/png"}


def test_refuses_non_empty_tables(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path / "erp.db")
    generate(engine, invoices=21, drafts=0)
    before = dump(engine)
    with pytest.raises(TablesNotEmptyError, match="customer"):
        generate(engine, seed=8)
    assert dump(engine) == before
    engine.dispose()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"customers": 14}, "customers"), ({"invoices": 20}, "per day"), ({"drafts": -1}, "drafts")],
)
def test_rejects_impossible_arguments(tmp_path: Path, arguments: dict[str, int], message: str) -> None:
    engine = sqlite_engine(tmp_path / "erp.db")
    with pytest.raises(ValueError, match=message):
        generate(engine, **arguments)
    engine.dispose()


def _cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inexchange_devkit.erpgen", *arguments], capture_output=True, text=True, timeout=120
    )


def test_cli_generates_refuses_and_replaces(tmp_path: Path) -> None:
    database = tmp_path / "erp.db"
    url = f"sqlite:///{database}"
    first = _cli(
        "--url", url, "--seed", "7", "--customers", "40", "--invoices", "200", "--start-date", "2026-11-16",
        "--days", "7",
    )
    assert first.returncode == 0, first.stderr
    assert "40 customers" in first.stdout and "200 posted" in first.stdout and "15 drafts" in first.stdout
    assert first.stdout.count("\n") == 1

    refused = _cli("--url", url, "--seed", "8")
    assert refused.returncode == 1
    assert "refusing" in refused.stderr and "--replace" in refused.stderr

    replaced = _cli("--url", url, "--seed", "8", "--invoices", "70", "--drafts", "7", "--replace")
    assert replaced.returncode == 0, replaced.stderr
    engine = sqlite_engine(database)
    cli_rows = dump(engine)
    engine.dispose()
    fresh = sqlite_engine(tmp_path / "fresh.db")
    generate(fresh, seed=8, invoices=70, drafts=7)
    assert cli_rows == dump(fresh)
    fresh.dispose()

    invalid = _cli("--url", url, "--customers", "3", "--replace")
    assert invalid.returncode == 2 and "customers" in invalid.stderr
    engine = sqlite_engine(database)
    assert dump(engine) == cli_rows
    engine.dispose()
