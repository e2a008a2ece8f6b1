"""Pandera schemas for customer prerequisites and invoice integrity.

Validation is lazy: every check runs on every row, and the failures of one invoice (its own and
its customer's) become ONE message in Swedish, the language of the ERP, naming the customer
(number and name), each field as the ERP shows it, and what to fix, for example
``Kund 4367 Alingsås kommun: organisationsnummer saknas; VAT-nummer saknas``.

Identifiers are checked with python-stdnum, e-mail addresses with email-validator and currency
codes with Babel's ISO 4217 list; none of that is written by hand here.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from inexchange.db import as_date
from inexchange.erp import INEXCHANGE_BILLING_METHOD, InvoiceBatch

#: longest Märkning / your reference accepted (Peppol BuyerReference has no limit; InExchange's
#: portal and the ERP's field cut at 200 characters)
MAX_REFERENCE_LENGTH = 200
VAT_RATES = frozenset({Decimal("25"), Decimal("12"), Decimal("6"), Decimal("0")})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CENT = Decimal("0.01")


def money(value: Any) -> Decimal | None:
    """Turn a NUMERIC column value (float on SQLite, Decimal on PostgreSQL) into exact öre."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return Decimal(str(value)).quantize(_CENT, rounding=ROUND_HALF_UP)


def number(value: Any) -> Decimal | None:
    """Turn a NUMERIC column value into a Decimal without rounding it."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return Decimal(str(value)).normalize()


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip()


# ---- identifier rules (python-stdnum) ------------------------------------------------------------
def org_number_valid(org: str, private_person: bool) -> bool:
    """A legal entity's organisationsnummer, or a private person's personnummer."""
    from stdnum.se import orgnr, personnummer

    if private_person:
        return personnummer.is_valid(org) or orgnr.is_valid(org)
    return orgnr.is_valid(org) and orgnr.compact(org)[2] >= "2"


def vat_matches(vat: str, org: str, country: str) -> bool:
    """A Swedish VAT number is SE + the org number + 01; a foreign one must be a valid EU VAT number."""
    from stdnum.eu import vat as eu_vat
    from stdnum.se import orgnr, vat as se_vat

    if (country or "SE").upper() != "SE":
        return eu_vat.is_valid(vat)
    if not se_vat.is_valid(vat):
        return False
    return not org or not orgnr.is_valid(org) or se_vat.compact(vat)[:10] == orgnr.compact(org)


def gln_valid(gln: str) -> bool:
    """13 digits with a valid GS1 check digit."""
    from stdnum import ean

    return len(gln) == 13 and gln.isdigit() and ean.is_valid(gln)


def email_valid(address: str) -> bool:
    """A syntactically valid e-mail address (no DNS look-up)."""
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def currency_valid(code: str) -> bool:
    """An ISO 4217 currency code."""
    from babel.numbers import is_currency

    return bool(code) and is_currency(code)


# ---- checks: name -> (row-wise predicate, message) -----------------------------------------------
@dataclass(frozen=True)
class Rule:
    """One named check and the message shown when a row fails it."""

    name: str
    passes: Callable[[pd.Series], bool]
    message: Callable[[pd.Series], str]


def _ref_ok(value: Any) -> bool:
    text = _text(value)
    return len(text) <= MAX_REFERENCE_LENGTH and not _CONTROL.search(text)


def _ref_problem(label: str, value: Any) -> str:
    text = _text(value)
    if len(text) > MAX_REFERENCE_LENGTH:
        return f"{label} är för lång ({len(text)} tecken, högst {MAX_REFERENCE_LENGTH})"
    return f"{label} innehåller styrtecken; ta bort dem"


CUSTOMER_RULES: tuple[Rule, ...] = (
    Rule("billing_method",
         lambda r: _text(r.billing_method) == INEXCHANGE_BILLING_METHOD,
         lambda r: f"faktureringsmetod är '{_text(r.billing_method)}', ska vara '{INEXCHANGE_BILLING_METHOD}'"),
    Rule("active", lambda r: bool(r.is_active), lambda r: "kunden är inaktiv; aktivera kunden"),
    Rule("org_missing", lambda r: bool(_text(r.org_number)), lambda r: "organisationsnummer saknas"),
    Rule("org_invalid",
         # a foreign customer's org_number is its national id: its EU VAT number is checked instead
         lambda r: not _text(r.org_number) or (_text(r.country_code) or "SE").upper() != "SE"
         or org_number_valid(_text(r.org_number), bool(r.is_private_person)),
         lambda r: f"organisationsnummer {_text(r.org_number)} är ogiltigt"
                   + (" (personnummer väntas för en privatperson)" if r.is_private_person
                      else " (10 siffror, giltig kontrollsiffra, tredje siffran minst 2)")),
    Rule("vat_missing",
         lambda r: bool(r.is_private_person) or bool(_text(r.vat_number)),
         lambda r: "VAT-nummer saknas"),
    Rule("vat_invalid",
         lambda r: not _text(r.vat_number)
         or vat_matches(_text(r.vat_number), _text(r.org_number), _text(r.country_code)),
         lambda r: f"VAT-nummer {_text(r.vat_number)} matchar inte organisationsnumret"
                   if _text(r.country_code or "SE").upper() == "SE"
                   else f"VAT-nummer {_text(r.vat_number)} är inte ett giltigt EU-momsnummer"),
    Rule("gln_invalid",
         lambda r: not _text(r.gln) or gln_valid(_text(r.gln)),
         lambda r: f"GLN-nummer {_text(r.gln)} är ogiltigt (13 siffror med giltig kontrollsiffra)"),
    Rule("marking", lambda r: _ref_ok(r.marking), lambda r: _ref_problem("Märkning", r.marking)),
    Rule("email_invalid",
         lambda r: not _text(r.invoice_email) or email_valid(_text(r.invoice_email)),
         lambda r: f"faktura e-post {_text(r.invoice_email)} är ogiltig"),
    Rule("no_route",
         lambda r: bool(_text(r.gln) or _text(r.org_number) or _text(r.invoice_email)),
         lambda r: "ingen mottagarväg: ange GLN-nummer, organisationsnummer eller faktura e-post"),
)


def _invoice_rules(start: date, end: date) -> tuple[Rule, ...]:
    return (
        Rule("posted", lambda r: r.status == "posted",
             lambda r: f"status är '{r.status}', bara verifierade (posted) fakturor skickas"),
        Rule("in_interval", lambda r: r.invoice_date_ is not None and start <= r.invoice_date_ < end,
             lambda r: f"fakturadatum {r.invoice_date_} ligger utanför körningens period {start}–{end}"),
        Rule("due_date", lambda r: r.due_date_ is None or r.invoice_date_ is None or r.due_date_ >= r.invoice_date_,
             lambda r: f"förfallodatum {r.due_date_} är före fakturadatum {r.invoice_date_}"),
        Rule("currency", lambda r: currency_valid(_text(r.currency)),
             lambda r: f"valuta '{_text(r.currency)}' är ingen ISO 4217-kod"),
        Rule("has_lines", lambda r: r.line_count > 0, lambda r: "fakturan saknar rader"),
        Rule("line_amounts", lambda r: not r.bad_lines,
             lambda r: f"radbelopp stämmer inte med antal × pris på rad {r.bad_lines}"),
        Rule("vat_rates", lambda r: not r.bad_rates,
             lambda r: f"momssats {r.bad_rates} på rad {r.bad_rate_lines} är inte 25, 12, 6 eller 0 %"),
        Rule("amount_ex_vat", lambda r: r.amount_ex_vat_ == r.lines_sum,
             lambda r: f"belopp exkl. moms {r.amount_ex_vat_} är inte summan av raderna {r.lines_sum}"),
        Rule("vat_amount", lambda r: r.vat_amount_ is not None and abs(r.vat_amount_ - r.vat_expected) <= r.vat_tolerance,
             lambda r: f"momsbelopp {r.vat_amount_} stämmer inte med raderna ({r.vat_expected})"),
        Rule("total", lambda r: r.total_amount_ is not None and r.amount_ex_vat_ is not None
             and r.vat_amount_ is not None and r.total_amount_ == r.amount_ex_vat_ + r.vat_amount_,
             lambda r: f"totalbelopp {r.total_amount_} är inte belopp exkl. moms + moms "
                       f"({(r.amount_ex_vat_ or 0) + (r.vat_amount_ or 0)})"),
        Rule("sign", lambda r: (r.total_amount_ or 0) < 0 if r.invoice_type == "credit" else (r.total_amount_ or 0) > 0,
             lambda r: "en kreditfaktura ska ha negativt belopp" if r.invoice_type == "credit"
                       else "en debetfaktura ska ha positivt totalbelopp"),
        Rule("credited", lambda r: r.invoice_type != "credit" or bool(_text(r.credited_invoice_number)),
             lambda r: "kreditfakturan anger inte vilken faktura den krediterar"),
        Rule("type", lambda r: r.invoice_type in ("debit", "credit"),
             lambda r: f"fakturatyp '{r.invoice_type}' är varken debet eller kredit"),
        Rule("unique_number", lambda r: not r.duplicate_number,
             lambda r: f"fakturanummer {r.invoice_number} används av flera fakturor"),
        Rule("your_reference", lambda r: _ref_ok(r.your_reference),
             lambda r: _ref_problem("Er referens", r.your_reference)),
    )


def _schema(name: str, rules: tuple[Rule, ...]) -> pa.DataFrameSchema:
    """A DataFrame schema whose wide checks are the rules, each named after its rule."""
    return pa.DataFrameSchema(
        name=name,
        checks=[pa.Check(lambda df, rule=rule: df.apply(rule.passes, axis=1).astype(bool), name=rule.name)
                for rule in rules],
    )


def _failures(frame: pd.DataFrame, schema: pa.DataFrameSchema) -> dict[Any, list[str]]:
    """Run a schema lazily and return, per index value, the names of the rules it failed."""
    if frame.empty:
        return {}
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        failed: dict[Any, list[str]] = defaultdict(list)
        cases = exc.failure_cases
        for check, index in zip(cases["check"], cases["index"]):
            # a wide check is reported once per column: keep each rule once per row
            if index is not None and not pd.isna(index) and str(check) not in failed[index]:
                failed[index].append(str(check))
        # pandera lists failure cases in no stable order: report the rules in the schema's order
        order = {check.name: position for position, check in enumerate(schema.checks)}
        return {index: sorted(names, key=order.__getitem__) for index, names in failed.items()}
    return {}


def _invoice_frame(batch: InvoiceBatch, duplicates: set[str]) -> pd.DataFrame:
    """Invoice rows with exact amounts and the aggregates of their lines."""
    invoices = batch.invoices.copy()
    lines = batch.lines
    facts: dict[int, dict[str, Any]] = {}
    for invoice_id, group in lines.groupby("invoice_id", sort=False):
        bad_lines, bad_rates, bad_rate_lines = [], [], []
        per_rate: dict[Decimal, Decimal] = defaultdict(Decimal)
        total = Decimal("0")
        for line in group.itertuples():
            quantity, price, amount = number(line.quantity), number(line.unit_price), money(line.line_amount)
            rate = number(line.vat_rate)
            if None in (quantity, price, amount) or (quantity * price).quantize(_CENT, ROUND_HALF_UP) != amount:
                bad_lines.append(str(line.line_number))
            if rate is None or rate not in VAT_RATES:
                bad_rates.append(str(line.vat_rate))
                bad_rate_lines.append(str(line.line_number))
            if amount is not None:
                total += amount
                per_rate[rate or Decimal("0")] += amount
        vat = sum(((base * rate / 100).quantize(_CENT, ROUND_HALF_UP) for rate, base in per_rate.items()), Decimal("0"))
        facts[int(invoice_id)] = {
            "line_count": len(group), "bad_lines": ", ".join(bad_lines), "bad_rates": ", ".join(bad_rates),
            "bad_rate_lines": ", ".join(bad_rate_lines), "lines_sum": total, "vat_expected": vat,
            "vat_tolerance": _CENT * max(len(per_rate), 1),
        }
    empty = {"line_count": 0, "bad_lines": "", "bad_rates": "", "bad_rate_lines": "",
             "lines_sum": Decimal("0"), "vat_expected": Decimal("0"), "vat_tolerance": _CENT}
    extra = pd.DataFrame([facts.get(int(i), empty) for i in invoices.index], index=invoices.index)
    invoices = invoices.join(extra)
    invoices["invoice_date_"] = [None if pd.isna(v) else as_date(v) for v in invoices["invoice_date"]]
    invoices["due_date_"] = [None if v is None or pd.isna(v) else as_date(v) for v in invoices["due_date"]]
    for column in ("amount_ex_vat", "vat_amount", "total_amount"):
        invoices[f"{column}_"] = [money(v) for v in invoices[column]]
    invoices["duplicate_number"] = [str(n) in duplicates for n in invoices["invoice_number"]]
    return invoices


def validate_batch(batch: InvoiceBatch, *, start: date, end: date,
                   duplicate_numbers: set[str] | None = None) -> dict[int, str | None]:
    """Check every invoice of the batch and its customer.

    Customers are checked once each, not once per invoice. Returns, per invoice id, None when it
    may be sent, else the one message describing everything to fix.

    :param batch: invoices with customers and lines, from :meth:`ErpReader.load`.
    :param start: first invoice date of the run's data interval.
    :param end: first invoice date after the interval.
    :param duplicate_numbers: invoice numbers the ERP uses more than once.
    """
    customers = batch.customers
    customer_failures = _failures(customers, _schema("customer prerequisites", CUSTOMER_RULES))
    invoices = _invoice_frame(batch, duplicate_numbers or set())
    rules = _invoice_rules(start, end)
    invoice_failures = _failures(invoices, _schema("invoice integrity", rules))
    customer_messages = {r.name: r.message for r in CUSTOMER_RULES}
    invoice_messages = {r.name: r.message for r in rules}

    results: dict[int, str | None] = {}
    for invoice_id, invoice in invoices.iterrows():
        customer_id = invoice["customer_id"]
        if customer_id not in customers.index:
            results[int(invoice_id)] = (
                f"Faktura {invoice['invoice_number']}: kund med id {customer_id} finns inte i ERP; "
                "koppla fakturan till en befintlig kund"
            )
            continue
        customer = customers.loc[customer_id]
        problems = [customer_messages[n](customer) for n in customer_failures.get(customer_id, [])]
        invoice_problems = [invoice_messages[n](invoice) for n in invoice_failures.get(invoice_id, [])]
        if not problems and not invoice_problems:
            results[int(invoice_id)] = None
            continue
        parts = []
        if problems:
            parts.append(f"Kund {_text(customer['customer_number'])} {_text(customer['name'])}: " + "; ".join(problems))
        if invoice_problems:
            parts.append(f"Faktura {invoice['invoice_number']}: " + "; ".join(invoice_problems))
        results[int(invoice_id)] = ". ".join(parts)
    return results
