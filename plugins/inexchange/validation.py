"""Pandera schemas for customer prerequisites and invoice integrity.

Validation is lazy and vectorised. The ERP rows are first turned into *facts*: exact amounts in
öre (integers held in float64 columns so that an unreadable value can be NaN), parsed dates, line
aggregates per invoice and VAT per rate. Two Pandera schemas then check the facts column by column
(one for customers, run once per customer; one for invoices), every check named after its rule and
all failures collected at once. Only the failing rows are then formatted, into ONE message per
invoice in Swedish, the language of the ERP, naming the customer (number and name), each field as
the ERP shows it, and what to fix, for example
``Kund 4367 Alingsås kommun: organisationsnummer saknas; VAT-nummer saknas``.

A value that cannot be read (text in a number column, an impossible date, an absurd amount, a NULL
key) fails its column's ``not_nullable`` check and is named in the message; it never stops the
validation of the other invoices.

Identifiers are checked with python-stdnum (once per distinct customer value), e-mail addresses with
email-validator and currency codes against Babel's ISO 4217 list; none of that is written by hand.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from inexchange import vat
from inexchange.erp import INEXCHANGE_BILLING_METHOD, InvoiceBatch
from inexchange.identifiers import EU_COUNTRIES, endpoint_problem, in_eu, peppol_id_problem, vat_in_document
from inexchange.units import UNIT_CODES
from inexchange.values import BINARY, integer_id, is_null, text_or_empty

#: longest Märkning / your reference accepted (Peppol BuyerReference has no limit; InExchange's
#: portal and the ERP's field cut at 200 characters)
MAX_REFERENCE_LENGTH = 200
#: VAT rates in basis points (25 % = 2500)
VAT_RATES_BP = (2500, 1200, 600, 0)
#: amounts beyond this (in kronor) are taken as unreadable rather than real
MAX_AMOUNT = 10**12
#: the latest due date accepted, in days after the invoice date (9999-12-31 is a placeholder, not a term)
MAX_DUE_DAYS = 366
#: characters XML 1.0 cannot carry (C0 controls but tab, line feed and carriage return; the
#: noncharacters U+FFFE and U+FFFF), and DEL
_CONTROL_CHARS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff"
_CONTROL = re.compile(f"[{_CONTROL_CHARS}]")
#: what a text the ERP database could not decode as UTF-8 holds instead (see ``inexchange.db``)
_UNDECODABLE = "\ufffd"
_CENT = Decimal("0.01")


class TextField(NamedTuple):
    """A text column carried into the document.

    :param label: the label the ERP shows.
    :param limit: the longest text accepted, in characters (the adapter contract's column width).
    :param long_form: "long" as an adjective agreeing with the label ("långt", "lång").
    """

    label: str
    limit: int
    long_form: str


#: the text columns carried into the document, by column
TEXT_FIELDS: dict[str, TextField] = {
    "customer_number": TextField("kundnummer", 30, "långt"),
    "name": TextField("namn", 200, "långt"),
    "street": TextField("gatuadress", 200, "lång"),
    "postal_code": TextField("postnummer", 10, "långt"),
    "city": TextField("ort", 100, "lång"),
    "invoice_number": TextField("fakturanummer", 30, "långt"),
    "order_number": TextField("ordernummer", 50, "långt"),
    "credited_invoice_number": TextField("krediterat fakturanummer", 30, "långt"),
    "description": TextField("beskrivning", 200, "lång"),
    "article_number": TextField("artikelnummer", 30, "långt"),
    "vat_exemption_reason": TextField("undantagsorsak", vat.MAX_REASON_LENGTH, "lång"),
}
CUSTOMER_TEXTS = ("customer_number", "name", "street", "postal_code", "city")
INVOICE_TEXTS = ("invoice_number", "order_number", "credited_invoice_number")
LINE_TEXTS = ("description", "article_number")
#: why a text cannot go into the document, by code (0: it can)
_TEXT_PROBLEMS = ("", "binary", "undecodable", "control", "length")
#: boolean columns as the ERP shows them, and the texts read as yes and no
FLAG_LABELS = {
    "is_active": "Aktiv",
    "is_private_person": "Privatperson",
    "attach_documents": "Bifoga dokument vid digitalt utskick",
}
_YES = frozenset({"true", "t", "yes", "y", "ja", "j", "1"})
_NO = frozenset({"false", "f", "no", "n", "nej", "0"})


# ---- exact numbers ------------------------------------------------------------------------------------
def money(value: Any) -> Decimal | None:
    """Turn a NUMERIC column value (float on SQLite, Decimal on PostgreSQL) into exact öre."""
    if is_null(value):
        return None
    return Decimal(str(value)).quantize(_CENT, rounding=ROUND_HALF_UP)


def number(value: Any) -> Decimal | None:
    """Turn a NUMERIC column value into a Decimal without rounding it."""
    if is_null(value):
        return None
    return Decimal(str(value)).normalize()


def _numbers(series: pd.Series) -> pd.Series:
    """Float values of a NUMERIC column; text, absurd and infinite values become NaN."""
    values = pd.to_numeric(series, errors="coerce")
    if not pd.api.types.is_float_dtype(values):
        values = values.astype("float64")
    return values.where(np.isfinite(values) & (values.abs() < MAX_AMOUNT))


def _scaled(series: pd.Series, scale: int) -> pd.Series:
    """A NUMERIC column in integer units of 1/scale (öre for 100), as float64 with NaN."""
    return np.rint(_numbers(series) * scale)


def _round_half_up(values: np.ndarray | pd.Series) -> np.ndarray:
    """Round half away from zero, like Decimal's ROUND_HALF_UP.

    The inputs are exact multiples of 1e-6 computed in float; the small nudge puts a true .5 that
    float arithmetic left just below it back on the half.
    """
    values = np.asarray(values, dtype="float64")
    return np.sign(values) * np.floor(np.abs(values) + 0.5 + 1e-7)


def _ore_text(ore: float) -> str:
    """Öre as kronor text with two decimals ('625.02', '-10.00')."""
    return str(Decimal(int(ore)).scaleb(-2))


def shown(value: Any, limit: int | None = 100) -> str:
    """A value as a message may show it: characters XML cannot carry as ``\\xNN``, cut at ``limit``.

    :param value: an ERP value (text, number, bytes, NULL).
    :param limit: most characters shown (a longer text ends with '…'); None for no limit.
    """
    if isinstance(value, BINARY):
        return f"binära data ({len(bytes(value))} byte)"
    text = _CONTROL.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}",
        text_or_empty(value),
    )
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _is_binary(series: pd.Series) -> np.ndarray:
    """Where a column holds bytes (only an object column can)."""
    if not pd.api.types.is_object_dtype(series):
        return np.zeros(len(series), dtype=bool)
    return np.fromiter((isinstance(v, BINARY) for v in series), dtype=bool, count=len(series))


def _texts(series: pd.Series) -> pd.Series:
    """A text column with NULLs as '' and surrounding spaces removed; bytes decoded like
    :func:`~inexchange.values.text_or_empty`."""
    binary = _is_binary(series)
    if binary.any():
        series = series.copy()
        series[binary] = [bytes(v).decode("utf-8", "replace") for v in series[binary]]
    return series.where(series.notna(), "").astype(str).str.strip()


def _per_distinct(series: pd.Series, check: Callable[[pd.Series], np.ndarray]) -> np.ndarray:
    """``check`` run on the distinct values of a column that repeats a few texts (line texts, units)."""
    codes, uniques = pd.factorize(series)
    distinct = check(pd.Series(uniques, dtype=series.dtype))
    result = np.zeros(len(series), dtype=distinct.dtype)
    present = codes >= 0
    result[present] = distinct[codes[present]]
    if not present.all():  # NULL: checked as such
        result[~present] = check(pd.Series([None], dtype=series.dtype))[0]
    return result


def _text_problems(series: pd.Series, limit: int, *, repeated: bool = False) -> np.ndarray:
    """Per value, the code (index in ``_TEXT_PROBLEMS``) of why it cannot go into the document, 0 if it can.

    One pass over the column finds the suspicious values (a forbidden or replaced character, more
    than ``limit`` characters); only those are looked at again.

    :param series: the raw column.
    :param limit: the longest text accepted, in characters (surrounding spaces not counted).
    :param repeated: the column repeats a few texts: check each distinct text once.
    """
    if repeated and not pd.api.types.is_object_dtype(series):
        return _per_distinct(series, lambda distinct: _text_problems(distinct, limit))
    binary = _is_binary(series)
    texts = _texts(series) if pd.api.types.is_object_dtype(series) else series
    suspicious = texts.str.contains(f"[{_CONTROL_CHARS}{_UNDECODABLE}]", regex=True).to_numpy(
        dtype=bool, na_value=False
    )
    long = (texts.str.len() > limit).to_numpy(dtype=bool, na_value=False)
    codes = np.zeros(len(series), dtype="int8")
    for position in np.flatnonzero(suspicious | long | binary):
        text = text_or_empty(texts.iloc[position])
        if binary[position]:
            codes[position] = 1
        elif _UNDECODABLE in text:
            codes[position] = 2
        elif _CONTROL.search(text):
            codes[position] = 3
        elif len(text) > limit:
            codes[position] = 4
    return codes


def text_problem(column: str, text: str, code: int) -> str:
    """The message part for a text of ``column`` that cannot go into the document.

    :param column: a column of :data:`TEXT_FIELDS`.
    :param text: its value (as :func:`_texts` gives it).
    :param code: the problem's code from :func:`_text_problems`.
    """
    text_field = TEXT_FIELDS[column]
    label = text_field.label
    problem = _TEXT_PROBLEMS[int(code)]
    if problem == "length":
        return f"{label} är för {text_field.long_form} ({len(text)} tecken, högst {text_field.limit}); korta texten"
    if problem == "control":
        return f"{label} innehåller styrtecken; ta bort dem"
    if problem == "binary":
        return f"{label} kan inte läsas (binära data); spara den som text"
    return f"{label} är inte giltig text (tecken som inte är UTF-8); skriv in den igen"


def flag(value: Any) -> bool | None:
    """A BOOLEAN value (bool, a number, or text such as true/false, ja/nej, 1/0) as bool.

    NULL is False; a value that reads as neither yes nor no is None.
    """
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int | float | Decimal):
        return False if value != value else value != 0  # NaN: pandas' NULL
    text = text_or_empty(value).lower()
    if not text:
        return False
    if text in _YES:
        return True
    if text in _NO:
        return False
    try:
        return Decimal(text) != 0
    except ArithmeticError:
        return None


def _flags(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """A BOOLEAN column as bool (NULL is False), and where its value reads as neither yes nor no."""
    if pd.api.types.is_bool_dtype(series):
        return series, pd.Series(False, index=series.index)
    values = [flag(v) for v in series]
    unreadable = pd.Series([v is None for v in values], index=series.index)
    return pd.Series([bool(v) for v in values], index=series.index), unreadable


def integer_ids(series: pd.Series) -> pd.Series:
    """A key column (ids, line numbers) as float64: whole numbers kept, anything else NaN."""
    values = pd.to_numeric(series, errors="coerce")
    if not pd.api.types.is_float_dtype(values):
        values = values.astype("float64")
    return values.where(np.isfinite(values) & (values == np.floor(values)))


def _dates(series: pd.Series) -> pd.Series:
    """A DATE column (date objects or ISO text) as datetime64; unreadable values become NaT."""
    text = series.astype(str).str.slice(0, 10)
    return pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")


# ---- identifier rules (python-stdnum), one call per distinct value --------------------------------------
def org_number_valid(org: str, private_person: bool) -> bool:
    """A legal entity's organisationsnummer, or a private person's personnummer."""
    from stdnum.se import orgnr, personnummer

    if private_person:
        return personnummer.is_valid(org) or orgnr.is_valid(org)
    return orgnr.is_valid(org) and orgnr.compact(org)[2] >= "2"


def vat_matches(vat: str, org: str, country: str) -> bool:
    """A Swedish VAT number is SE + the org number + 01; a foreign one must be a valid VAT number of the
    customer's country: an EU VAT number in the EU, else by the country's python-stdnum module (Norway's
    MVA number, Switzerland's, the United Kingdom's), where it has one."""
    from stdnum.se import vat as se_vat

    country = (country or "SE").upper()
    if country != "SE":  # valid, and of the customer's own country (Greece writes EL)
        return vat_in_document(vat, country) is not None
    if not se_vat.is_valid(vat):
        return False
    digits = _swedish_id_digits(org)
    return digits is None or se_vat.compact(vat)[:10] == digits


def _swedish_id_digits(org: str) -> str | None:
    """The 10 digits of a valid org number or personnummer (any form), or None if it is neither."""
    from stdnum.se import orgnr, personnummer

    if not org:
        return None
    if orgnr.is_valid(org):
        return orgnr.compact(org)
    if personnummer.is_valid(org):
        return "".join(ch for ch in personnummer.compact(org) if ch.isdigit())[-10:]
    return None


def gln_valid(gln: str) -> bool:
    """13 digits with a valid GS1 check digit."""
    from stdnum import ean

    gln = gln.replace(" ", "")
    return len(gln) == 13 and gln.isdigit() and ean.is_valid(gln)


@lru_cache(maxsize=65536)
def email_valid(address: str) -> bool:
    """A syntactically valid e-mail address (no DNS look-up)."""
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


@lru_cache(maxsize=1)
def _currencies() -> frozenset[str]:
    from babel.numbers import list_currencies

    return frozenset(list_currencies())


# ---- facts --------------------------------------------------------------------------------------------
def customer_facts(customers: pd.DataFrame) -> pd.DataFrame:
    """One row per customer with the columns the customer schema checks."""
    facts = pd.DataFrame(index=customers.index)
    for column in (
        "customer_number",
        "name",
        "billing_method",
        "org_number",
        "vat_number",
        "gln",
        "marking",
        "invoice_email",
        "street",
        "postal_code",
        "city",
    ):
        facts[column] = _texts(customers[column])
    for column in CUSTOMER_TEXTS:
        facts[f"{column}_problem"] = _text_problems(customers[column], TEXT_FIELDS[column].limit)
    facts["country_code"] = _texts(customers["country_code"]).str.upper().replace("", "SE")
    for column in FLAG_LABELS:
        values, unreadable = _flags(customers[column])
        facts[f"{column}_unreadable"] = unreadable
        facts[f"{column}_text"] = [shown(v, 40) for v in customers[column]]
        # an unreadable flag is named as such, not also read as "no" (inactive, not a private person)
        facts[column] = values | unreadable if column == "is_active" else values
    swedish = facts["country_code"] == "SE"
    facts["org_number_ok"] = [
        not org or not se or org_number_valid(org, private)
        for org, se, private in zip(facts["org_number"], swedish, facts["is_private_person"], strict=False)
    ]
    facts["vat_number_ok"] = [
        not vat or vat_matches(vat, org, country)
        for vat, org, country in zip(facts["vat_number"], facts["org_number"], facts["country_code"], strict=False)
    ]
    # outside the EU a buyer may have no VAT number (the United States): given, it is checked
    outside_eu = ~facts["country_code"].map(in_eu).astype(bool)
    facts["vat_needed"] = np.where(facts["is_private_person"] | outside_eu, "-", facts["vat_number"])
    facts["gln_ok"] = [not gln or gln_valid(gln) for gln in facts["gln"]]
    # the optional column peppol_id: an ERP without it is read as one where it is empty
    facts["peppol_id"] = _texts(customers["peppol_id"]) if "peppol_id" in customers.columns else ""
    facts["peppol_id_ok"] = [not pid or peppol_id_problem(pid) is None for pid in facts["peppol_id"]]
    buyers = facts[["country_code", "org_number", "vat_number", "gln", "peppol_id"]].itertuples(index=False)
    facts["endpoint_ok"] = [endpoint_problem(*buyer) is None for buyer in buyers]
    facts["invoice_email_ok"] = [not mail or email_valid(mail) for mail in facts["invoice_email"]]
    facts["route"] = facts["gln"] + facts["org_number"] + facts["invoice_email"]
    return facts


def line_facts(lines: pd.DataFrame) -> pd.DataFrame:
    """Lines with quantities, prices, amounts and rates as exact integers (NaN when unreadable)."""
    facts = pd.DataFrame({"invoice_id": lines["invoice_id"], "line_number": lines["line_number"]})
    facts["bad_line_number"] = integer_ids(lines["line_number"]).isna()
    quantity = _scaled(lines["quantity"], 10_000)
    price = _scaled(lines["unit_price"], 10_000)
    facts["amount"] = _scaled(lines["line_amount"], 100)
    facts["rate_bp"] = _scaled(lines["vat_rate"], 100)
    product = quantity.to_numpy() * price.to_numpy() / 1e6  # öre, an exact multiple of 1e-6
    expected = _round_half_up(product)
    large = np.abs(product) >= 1e9  # beyond float's exactness for the half: redo in Decimal
    if large.any():
        expected[large] = [
            float((Decimal(int(q)) * Decimal(int(p)) / Decimal(10**6)).quantize(Decimal(1), ROUND_HALF_UP))
            for q, p in zip(quantity.to_numpy()[large], price.to_numpy()[large], strict=False)
        ]
    facts["unreadable"] = quantity.isna() | price.isna() | facts["amount"].isna() | facts["rate_bp"].isna()
    facts["bad_amount"] = ~facts["unreadable"] & (expected != facts["amount"].to_numpy())
    facts["bad_rate"] = ~facts["rate_bp"].isna() & ~facts["rate_bp"].isin(VAT_RATES_BP)
    facts["negative_price"] = (price < 0).to_numpy()  # BR-27: a discount is a negative quantity
    facts["bad_unit"] = _per_distinct(
        lines["unit"], lambda units: ~_texts(units).str.lower().isin(list(UNIT_CODES)).to_numpy(dtype=bool)
    )
    problems = np.zeros(len(lines), dtype=bool)
    for column in LINE_TEXTS:
        codes = _text_problems(lines[column], TEXT_FIELDS[column].limit, repeated=True)
        facts[f"{column}_problem"] = codes
        problems |= codes > 0
    facts["bad_text"] = problems
    _vat_line_facts(facts, lines)
    return facts


def _vat_line_facts(facts: pd.DataFrame, lines: pd.DataFrame) -> None:
    """The lines' optional VAT columns (:data:`inexchange.vat.LINE_COLUMNS`; an ERP without them states
    nothing): the stated category and reason code (upper case) and reason text, '' where not stated, and
    ``bad_vat`` where a line breaks a rule of :func:`inexchange.vat.line_problem` or its reason text cannot
    go into the document."""
    if not any(column in lines.columns for column in vat.LINE_COLUMNS):
        facts["vat_category"] = facts["reason_code"] = facts["reason_text"] = ""
        facts["has_reason"], facts["reason_problem"], facts["bad_vat"] = False, 0, False
        return
    empty = pd.Series("", index=lines.index, dtype=object)
    category, code, reason = (_texts(lines[c]) if c in lines.columns else empty for c in vat.LINE_COLUMNS)
    facts["vat_category"], facts["reason_code"], facts["reason_text"] = category.str.upper(), code.str.upper(), reason
    facts["has_reason"] = (code != "") | (reason != "")
    column = vat.LINE_COLUMNS[2]
    reason_problem = _text_problems(lines[column], vat.MAX_REASON_LENGTH, repeated=True) if column in lines else 0
    facts["reason_problem"] = reason_problem
    stated = (category != "").to_numpy()
    if not stated.any() and not facts["has_reason"].any():
        facts["bad_vat"] = False
        return
    category = facts["vat_category"]
    rate = facts["rate_bp"]
    rate_ok = rate.isna() | np.where(category == "S", rate > 0, rate == 0)
    code_ok = (facts["reason_code"] == "") | (facts["reason_code"].map(vat.VATEX) == category)
    reason_allowed = ~(category.isin(list(vat.NO_REASON_RULES)) & facts["has_reason"])
    fits = category.isin(list(vat.CATEGORIES)) & rate_ok & code_ok & reason_allowed
    facts["bad_vat"] = np.where(stated, ~fits, facts["has_reason"]) | (facts["reason_problem"] > 0)


def invoice_facts(batch: InvoiceBatch, duplicates: set[str], lines: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per invoice with exact amounts, dates and the aggregates of its lines.

    :param lines: the batch's :func:`line_facts`, when the caller has them already.
    """
    invoices = batch.invoices
    facts = pd.DataFrame(index=invoices.index)
    for column in INVOICE_TEXTS:
        facts[column] = _texts(invoices[column])
        facts[f"{column}_problem"] = _text_problems(invoices[column], TEXT_FIELDS[column].limit)
    facts["customer_id"] = integer_ids(invoices["customer_id"])
    for column in ("status", "invoice_type", "currency"):  # few distinct values: categories are small
        facts[column] = _texts(invoices[column]).astype("category")
    facts["your_reference"] = _texts(invoices["your_reference"])
    facts["invoice_date"] = _dates(invoices["invoice_date"])
    due = _dates(invoices["due_date"])
    due_given = _texts(invoices["due_date"]) != ""
    facts["due_days"] = (due - facts["invoice_date"]).dt.days.where(due.notna() | ~due_given, -1e9)
    # BR-CO-25: an amount due needs a due date (the ERP gives no payment terms instead)
    facts["due_missing"] = ~due_given & (facts["invoice_type"] != "credit")
    for column in ("amount_ex_vat", "vat_amount", "total_amount"):
        facts[column] = _scaled(invoices[column], 100)

    lines = line_facts(batch.lines) if lines is None else lines
    grouped = lines.groupby("invoice_id", sort=False)
    aggregates = pd.DataFrame(
        {
            "line_count": grouped.size(),
            "lines_sum": grouped["amount"].sum(min_count=1),
            "bad_lines": grouped["bad_amount"].sum(),
            "bad_rates": grouped["bad_rate"].sum(),
            "unreadable_lines": grouped["unreadable"].sum(),
            "bad_line_numbers": grouped["bad_line_number"].sum(),
            "negative_prices": grouped["negative_price"].sum(),
            "bad_units": grouped["bad_unit"].sum(),
            "bad_texts": grouped["bad_text"].sum(),
            "bad_vat_lines": grouped["bad_vat"].sum(),
        }
    )
    per_rate = lines.groupby(["invoice_id", "rate_bp"], sort=False)["amount"].sum().reset_index()
    per_rate["vat"] = _round_half_up(per_rate["amount"] * per_rate["rate_bp"] / 10_000)
    vat = per_rate.groupby("invoice_id", sort=False).agg(vat_expected=("vat", "sum"), rates=("vat", "size"))
    aggregates = aggregates.join(vat).reindex(facts.index)
    # column by column: joining whole frames would copy every fact column
    for column in (
        "line_count",
        "lines_sum",
        "vat_expected",
        "bad_lines",
        "bad_rates",
        "unreadable_lines",
        "bad_line_numbers",
        "negative_prices",
        "bad_units",
        "bad_texts",
        "bad_vat_lines",
    ):
        facts[column] = aggregates[column].fillna(0).to_numpy()
    facts["rates"] = aggregates["rates"].fillna(1).to_numpy()
    del aggregates, per_rate, vat

    # the differences the schema checks (NaN where a part is unreadable: reported once, as unreadable)
    facts["ex_vat_diff"] = (facts["amount_ex_vat"] - facts["lines_sum"]).where(facts["unreadable_lines"] == 0, 0)
    facts["vat_excess"] = ((facts["vat_amount"] - facts["vat_expected"]).abs() - facts["rates"]).clip(lower=0)
    facts["vat_excess"] = facts["vat_excess"].where((facts["unreadable_lines"] == 0) | facts["vat_amount"].isna(), 0)
    total_diff = facts["total_amount"] - facts["amount_ex_vat"] - facts["vat_amount"]
    # öresavrundning: a total rounded to whole kronor (at most 50 öre away) is the ERP's own rounding
    rounded = (facts["total_amount"] % 100 == 0) & (total_diff.abs() <= 50)
    facts["total_diff"] = total_diff.where(~rounded, 0)
    credit = (facts["invoice_type"] == "credit").to_numpy()
    facts["signed_total"] = np.where(credit, -facts["total_amount"], facts["total_amount"])
    facts["credit_reference"] = facts["credited_invoice_number"].where(credit, "-")
    facts["duplicate"] = facts["invoice_number"].isin(duplicates)
    _vat_invoice_facts(facts, lines, batch.customers)
    return facts


def _vat_invoice_facts(facts: pd.DataFrame, lines: pd.DataFrame, customers: pd.DataFrame) -> None:
    """What the VAT categories the lines state ask of the whole invoice.

    ``vat_reason_problems``: categories without an exemption reason where EN 16931 requires one, or whose
    lines state different ones (the breakdown has one reason per category); ``vat_not_subject``: lines
    beside lines not subject to VAT (O) (BR-O-11..14); ``vat_buyer``: the categories (K, AE) whose customer
    has no VAT number (BR-IC-02, BR-AE-02); ``vat_abroad``: the customer's country when an intra-community
    supply (K) goes to a customer not in another EU country.
    """
    facts["vat_reason_problems"], facts["vat_not_subject"], facts["vat_buyer"], facts["vat_abroad"] = 0, 0, "", ""
    stated = lines[lines["vat_category"].isin(list(vat.CATEGORIES))]
    if stated.empty:
        return
    needs = stated["vat_category"].isin(list(vat.REASON_RULES))
    if needs.any():
        reasoned = stated[needs]
        keys = ["invoice_id", "vat_category"]
        given = reasoned.groupby(keys, sort=False)["has_reason"].any()
        codes = reasoned[reasoned["reason_code"] != ""].groupby(keys)["reason_code"].nunique()
        texts = reasoned[reasoned["reason_text"] != ""].groupby(keys)["reason_text"].nunique()
        problems = (
            ~given | (codes.reindex(given.index, fill_value=0) > 1) | (texts.reindex(given.index, fill_value=0) > 1)
        )
        per_invoice = problems.groupby(level=0, sort=False).sum()
        facts["vat_reason_problems"] = per_invoice.reindex(facts.index, fill_value=0).to_numpy()
    not_subject = (stated["vat_category"] == "O").groupby(stated["invoice_id"], sort=False).sum()
    others = (facts["line_count"] - not_subject.reindex(facts.index, fill_value=0)).where(
        not_subject.reindex(facts.index, fill_value=0) > 0, 0
    )
    facts["vat_not_subject"] = others.to_numpy()
    buyer_categories = stated[stated["vat_category"].isin(list(vat.BUYER_VAT_RULES))]
    if buyer_categories.empty:
        return
    first = customers[~customers.index.duplicated()]
    vat_numbers = dict(zip(first.index.map(integer_id), _texts(first["vat_number"]), strict=False))
    countries = dict(zip(first.index.map(integer_id), _texts(first["country_code"]).str.upper(), strict=False))
    wanted = buyer_categories.groupby("invoice_id", sort=False)["vat_category"].agg(lambda s: sorted(set(s)))
    per_invoice = wanted.reindex(facts.index).to_numpy()
    customer_ids = facts["customer_id"].to_numpy()
    buyer, abroad = np.full(len(facts), "", dtype=object), np.full(len(facts), "", dtype=object)
    for position in np.flatnonzero(pd.notna(per_invoice)):  # only the invoices with K or AE lines
        categories, key = per_invoice[position], integer_id(customer_ids[position])
        if key not in vat_numbers:  # a missing customer is named as such
            continue
        buyer[position] = "" if vat_numbers[key] else ", ".join(categories)
        country = countries[key] or "SE"
        abroad[position] = country if "K" in categories and country not in EU_COUNTRIES - {"SE"} else ""
    facts["vat_buyer"], facts["vat_abroad"] = buyer, abroad


# ---- the schemas ------------------------------------------------------------------------------------------
def _present(name: str) -> pa.Check:
    return pa.Check(lambda s: s.str.len() > 0, name=name, error=name)


def _absent(name: str) -> pa.Check:
    return pa.Check(lambda s: s.str.len() == 0, name=name, error=name)


def _reference_checks(prefix: str) -> list[pa.Check]:
    return [
        pa.Check(lambda s: s.str.len() <= MAX_REFERENCE_LENGTH, name=f"{prefix}_length", error=f"{prefix}_length"),
        pa.Check(
            lambda s: ~s.str.contains(f"[{_CONTROL_CHARS}]", regex=True),
            name=f"{prefix}_control",
            error=f"{prefix}_control",
        ),
    ]


def customer_schema() -> pa.DataFrameSchema:
    """Customer prerequisites: billing method, active, identifiers, references and a route."""
    return pa.DataFrameSchema(
        name="customer prerequisites",
        columns={
            "row_count": pa.Column(checks=pa.Check.eq(1, error="duplicate_row")),
            "customer_number": pa.Column(checks=_present("number_missing")),
            "name": pa.Column(checks=_present("name_missing")),
            **{
                f"{column}_problem": pa.Column(checks=pa.Check.eq(0, error=f"text:{column}"))
                for column in CUSTOMER_TEXTS
            },
            "billing_method": pa.Column(checks=pa.Check.eq(INEXCHANGE_BILLING_METHOD, error="billing_method")),
            **{
                f"{column}_unreadable": pa.Column(checks=pa.Check.eq(False, error=f"flag:{column}"))
                for column in FLAG_LABELS
            },
            "is_active": pa.Column(checks=pa.Check.eq(True, error="active")),
            "org_number": pa.Column(checks=_present("org_missing")),
            "org_number_ok": pa.Column(checks=pa.Check.eq(True, error="org_invalid")),
            "vat_needed": pa.Column(checks=_present("vat_missing")),
            "vat_number_ok": pa.Column(checks=pa.Check.eq(True, error="vat_invalid")),
            "gln_ok": pa.Column(checks=pa.Check.eq(True, error="gln_invalid")),
            "peppol_id_ok": pa.Column(checks=pa.Check.eq(True, error="peppol_id_invalid")),
            "marking": pa.Column(checks=_reference_checks("marking")),
            "invoice_email_ok": pa.Column(checks=pa.Check.eq(True, error="email_invalid")),
            "route": pa.Column(checks=_present("no_route")),
            "endpoint_ok": pa.Column(checks=pa.Check.eq(True, error="no_endpoint")),
        },
    )


def invoice_schema(start: date, end: date, currencies: frozenset[str]) -> pa.DataFrameSchema:
    """Invoice integrity for a run whose invoice dates are ``[start, end)``."""
    low, high = pd.Timestamp(start), pd.Timestamp(end)
    return pa.DataFrameSchema(
        name="invoice integrity",
        columns={
            "row_count": pa.Column(checks=pa.Check.eq(1, error="duplicate_row")),
            "invoice_number": pa.Column(checks=_present("number_missing")),
            **{
                f"{column}_problem": pa.Column(checks=pa.Check.eq(0, error=f"text:{column}"))
                for column in INVOICE_TEXTS
            },
            "customer_id": pa.Column(nullable=False),
            "status": pa.Column(checks=pa.Check.eq("posted", error="posted")),
            "invoice_type": pa.Column(checks=pa.Check.isin(["debit", "credit"], error="type")),
            "invoice_date": pa.Column(
                nullable=False, checks=pa.Check.in_range(low, high, include_max=False, error="in_interval")
            ),
            "due_days": pa.Column(
                nullable=True, checks=[pa.Check.ge(0, error="due_date"), pa.Check.le(MAX_DUE_DAYS, error="due_far")]
            ),
            "due_missing": pa.Column(checks=pa.Check.eq(False, error="due_missing")),
            "currency": pa.Column(checks=pa.Check.isin(currencies, error="currency")),
            "line_count": pa.Column(checks=pa.Check.gt(0, error="has_lines")),
            "bad_line_numbers": pa.Column(checks=pa.Check.eq(0, error="line_numbers")),
            "bad_texts": pa.Column(checks=pa.Check.eq(0, error="line_texts")),
            "bad_units": pa.Column(checks=pa.Check.eq(0, error="units")),
            "unreadable_lines": pa.Column(checks=pa.Check.eq(0, error="line_unreadable")),
            "negative_prices": pa.Column(checks=pa.Check.eq(0, error="negative_price")),
            "bad_lines": pa.Column(checks=pa.Check.eq(0, error="line_amounts")),
            "bad_rates": pa.Column(checks=pa.Check.eq(0, error="vat_rates")),
            "bad_vat_lines": pa.Column(checks=pa.Check.eq(0, error="vat_categories")),
            "vat_reason_problems": pa.Column(checks=pa.Check.eq(0, error="vat_reasons")),
            "vat_not_subject": pa.Column(checks=pa.Check.eq(0, error="vat_not_subject")),
            "vat_buyer": pa.Column(checks=_absent("vat_buyer_vat")),
            "vat_abroad": pa.Column(checks=_absent("vat_intra_community")),
            "amount_ex_vat": pa.Column(nullable=False),
            "vat_amount": pa.Column(nullable=False),
            "total_amount": pa.Column(nullable=False),
            "ex_vat_diff": pa.Column(nullable=True, checks=pa.Check.eq(0, error="amount_ex_vat")),
            "vat_excess": pa.Column(nullable=True, checks=pa.Check.eq(0, error="vat_amount")),
            "total_diff": pa.Column(nullable=True, checks=pa.Check.eq(0, error="total")),
            "signed_total": pa.Column(nullable=True, checks=pa.Check.gt(0, error="sign")),
            "credit_reference": pa.Column(checks=_present("credited")),
            "duplicate": pa.Column(checks=pa.Check.eq(False, error="unique_number")),
            "your_reference": pa.Column(checks=_reference_checks("your_reference")),
        },
    )


def _failures(facts: pd.DataFrame, schema: pa.DataFrameSchema) -> dict[Any, list[str]]:
    """Run a schema lazily; return, per index value, the failed rule names in the schema's order.

    A NULL where a value is required fails as ``unreadable:<column>``.
    """
    if facts.empty:
        return {}
    try:
        schema.validate(facts, lazy=True, inplace=True)  # the facts are ours: no copy
    except SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return {}
    order: dict[str, int] = {}
    for column, spec in schema.columns.items():
        order.setdefault(f"unreadable:{column}", len(order))
        for check in spec.checks:
            order.setdefault(check.error or check.name, len(order))
    failed: dict[Any, set[str]] = defaultdict(set)
    for column, check, index in zip(cases["column"], cases["check"], cases["index"], strict=False):
        if index is None or (isinstance(index, float) and np.isnan(index)):
            continue
        name = f"unreadable:{column}" if check == "not_nullable" else str(check)
        if name in order:
            failed[index].add(name)
    return {index: sorted(names, key=order.__getitem__) for index, names in failed.items()}


# ---- messages -----------------------------------------------------------------------------------------
_FIELD_LABELS = {
    "customer_id": "kund",
    "invoice_date": "fakturadatum",
    "amount_ex_vat": "belopp exkl. moms",
    "vat_amount": "momsbelopp",
    "total_amount": "totalbelopp",
}
_RAW_COLUMN = {
    "customer_id": "customer_id",
    "invoice_date": "invoice_date",
    "amount_ex_vat": "amount_ex_vat",
    "vat_amount": "vat_amount",
    "total_amount": "total_amount",
}
#: what to do when a field is missing, where the field's name alone does not say it
_MISSING_HINTS = {"kund": "koppla fakturan till en kund"}


_LINE_FIELDS = {"quantity": "antal", "unit_price": "pris", "line_amount": "radbelopp", "vat_rate": "momssats"}


def _unreadable_text(label: str, value: Any) -> str:
    """'<field> saknas' for a NULL, else the value that cannot be read and what to do."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        hint = _MISSING_HINTS.get(label)
        return f"{label} saknas" + (f"; {hint}" if hint else "")
    text = shown(value, 40)
    if text.lower() in ("nan", "inf", "-inf", "infinity", "-infinity") or not text:
        return f"{label} saknas eller är inget tal"
    return f"{label} '{text}' kan inte läsas; ange ett giltigt värde"


def _ref_problem(label: str, value: str, rule: str) -> str:
    if rule.endswith("_length"):
        return f"{label} är för lång ({len(value)} tecken, högst {MAX_REFERENCE_LENGTH})"
    return f"{label} innehåller styrtecken; ta bort dem"


def customer_label(customer_id: Any, number: Any, name: Any) -> str:
    """How a message names a customer: 'Kund 4367 Alingsås kommun' (by id when it has no number).

    :param customer_id: the ERP's internal id.
    :param number: the customer number as the ERP shows it.
    :param name: the customer's name.
    """
    number, name = shown(number, 40), shown(name, 80)
    head = f"Kund {number}" if number else f"Kund med id {shown(customer_id, 40)}"
    return f"{head} {name}".rstrip()


def _flag_message(column: str) -> Callable[[pd.Series], str]:
    return lambda c: f"{FLAG_LABELS[column]} '{c[f'{column}_text']}' kan inte läsas; ange ja eller nej"


def _text_message(column: str) -> Callable[[pd.Series], str]:
    return lambda c: text_problem(column, c[column], c[f"{column}_problem"])


CUSTOMER_MESSAGES: dict[str, Callable[[pd.Series], str]] = {
    "duplicate_row": lambda c: (
        f"kunden finns på {c.row_count} rader i ERP (customer_id {c.name}); en kund ska finnas på en rad"
    ),
    "number_missing": lambda c: "kundnummer saknas; ange kundnummer",
    "name_missing": lambda c: "namn saknas; ange kundens namn",
    **{f"text:{column}": _text_message(column) for column in CUSTOMER_TEXTS},
    "billing_method": lambda c: (
        f"faktureringsmetod är '{shown(c.billing_method)}', ska vara '{INEXCHANGE_BILLING_METHOD}'"
    ),
    **{f"flag:{column}": _flag_message(column) for column in FLAG_LABELS},
    "active": lambda c: "kunden är inaktiv; aktivera kunden",
    "org_missing": lambda c: "organisationsnummer saknas",
    "org_invalid": lambda c: (
        f"organisationsnummer {shown(c.org_number)} är ogiltigt"
        + (
            " (personnummer väntas för en privatperson)"
            if c.is_private_person
            else " (10 siffror, giltig kontrollsiffra, tredje siffran minst 2)"
        )
    ),
    "vat_missing": lambda c: "VAT-nummer saknas",
    "vat_invalid": lambda c: (
        f"VAT-nummer {shown(c.vat_number)} matchar inte organisationsnumret"
        if c.country_code == "SE"
        else f"VAT-nummer {shown(c.vat_number)} är inte ett giltigt EU-momsnummer för {shown(c.country_code)}"
        if in_eu(c.country_code)
        else f"VAT-nummer {shown(c.vat_number)} är inte ett giltigt momsnummer för {shown(c.country_code)}"
    ),
    "gln_invalid": lambda c: f"GLN-nummer {shown(c.gln)} är ogiltigt (13 siffror med giltig kontrollsiffra)",
    "peppol_id_invalid": lambda c: peppol_id_problem(c.peppol_id, shown) or "",
    "marking_length": lambda c: _ref_problem("Märkning", c.marking, "marking_length"),
    "marking_control": lambda c: _ref_problem("Märkning", c.marking, "marking_control"),
    "email_invalid": lambda c: f"faktura e-post {shown(c.invoice_email)} är ogiltig",
    "no_route": lambda c: "ingen mottagarväg: ange GLN-nummer, organisationsnummer eller faktura e-post",
    "no_endpoint": lambda c: (
        endpoint_problem(c.country_code, c.org_number, c.vat_number, c.gln, c.peppol_id, shown) or ""
    ),
}


def _invoice_messages(start: date, end: date) -> dict[str, Callable[[pd.Series, pd.Series, str], str]]:
    """Rule -> message from (facts row, raw ERP row, line details)."""

    def unreadable(column: str) -> Callable[[pd.Series, pd.Series, str], str]:
        def message(fact: pd.Series, raw: pd.Series, _: str) -> str:
            return _unreadable_text(_FIELD_LABELS[column], raw.get(_RAW_COLUMN[column]))

        return message

    def text(column: str) -> Callable[[pd.Series, pd.Series, str], str]:
        return lambda f, r, _: text_problem(column, getattr(f, column), getattr(f, f"{column}_problem"))

    def due_date(f: Any, r: Any, _: str) -> str:
        if f.due_days == -1e9:
            return f"förfallodatum '{shown(r.get('due_date'), 40)}' kan inte läsas; ange ett datum (ÅÅÅÅ-MM-DD)"
        return f"förfallodatum {text_or_empty(r.get('due_date'))[:10]} är före fakturadatum {f.invoice_date.date()}"

    return {
        "duplicate_row": lambda f, r, _: (
            f"fakturan finns på {f.row_count} rader i ERP (invoice_id {f.Index}); en faktura ska finnas på en rad"
        ),
        "number_missing": lambda f, r, _: "fakturanummer saknas; ange fakturanummer",
        **{f"text:{column}": text(column) for column in INVOICE_TEXTS},
        **{f"unreadable:{column}": unreadable(column) for column in _RAW_COLUMN},
        "posted": lambda f, r, _: f"status är '{shown(f.status)}', bara verifierade (posted) fakturor skickas",
        "type": lambda f, r, _: (
            "fakturatyp saknas; ange debet eller kredit"
            if not f.invoice_type
            else f"fakturatyp '{shown(f.invoice_type)}' är varken debet eller kredit"
        ),
        "in_interval": lambda f, r, _: (
            f"fakturadatum {f.invoice_date.date()} ligger utanför körningens period {start}–{end}"
        ),
        "due_date": due_date,
        "due_far": lambda f, r, _: (
            f"förfallodatum {text_or_empty(r.get('due_date'))[:10]} ligger mer än ett år efter "
            f"fakturadatum {f.invoice_date.date()}; kontrollera förfallodatum"
        ),
        "due_missing": lambda f, r, _: "förfallodatum saknas; ange förfallodatum",
        "currency": lambda f, r, _: (
            "valuta saknas; ange valutakod (ISO 4217, till exempel SEK)"
            if not f.currency
            else f"valuta '{shown(f.currency)}' är ingen ISO 4217-kod"
        ),
        "has_lines": lambda f, r, _: "fakturan saknar rader",
        "line_numbers": lambda f, r, details: details,
        "line_texts": lambda f, r, details: details,
        "units": lambda f, r, details: details,
        "line_unreadable": lambda f, r, details: details,
        "negative_price": lambda f, r, details: details,
        "line_amounts": lambda f, r, details: f"radbelopp stämmer inte med antal × pris på rad {details}",
        "vat_rates": lambda f, r, details: details,
        "vat_categories": lambda f, r, details: details,
        "vat_reasons": lambda f, r, details: details,
        "vat_not_subject": lambda f, r, details: details,
        "vat_buyer_vat": lambda f, r, _: vat.buyer_vat_missing(f.vat_buyer.split(", ")),
        "vat_intra_community": lambda f, r, _: vat.not_intra_community(shown(f.vat_abroad, 10)),
        "amount_ex_vat": lambda f, r, _: (
            f"belopp exkl. moms {_ore_text(f.amount_ex_vat)} är inte summan av raderna {_ore_text(f.lines_sum)}"
        ),
        "vat_amount": lambda f, r, _: (
            f"momsbelopp {_ore_text(f.vat_amount)} stämmer inte med raderna ({_ore_text(f.vat_expected)})"
        ),
        "total": lambda f, r, _: (
            f"totalbelopp {_ore_text(f.total_amount)} är inte belopp exkl. moms + moms "
            f"({_ore_text(f.amount_ex_vat + f.vat_amount)})"
        ),
        "sign": lambda f, r, _: (
            "en kreditfaktura ska ha negativt belopp"
            if f.invoice_type == "credit"
            else "en debetfaktura ska ha positivt totalbelopp"
        ),
        "credited": lambda f, r, _: "kreditfakturan anger inte vilken faktura den krediterar",
        "unique_number": lambda f, r, _: f"fakturanummer {shown(f.invoice_number)} används av flera fakturor",
        "your_reference_length": lambda f, r, _: _ref_problem("Er referens", f.your_reference, "your_reference_length"),
        "your_reference_control": lambda f, r, _: _ref_problem(
            "Er referens", f.your_reference, "your_reference_control"
        ),
    }


def _line_label(value: Any) -> str:
    """A line as a message names it: 'rad 2' (a whole number, also when read as 2.0), else 'en rad utan nummer'."""
    number = integer_id(value)
    return f"rad {number}" if number is not None else "en rad utan giltigt radnummer"


def _line_details(lines: pd.DataFrame, raw_lines: pd.DataFrame, invoice_ids: set[Any]) -> dict[tuple[Any, str], str]:
    """Line numbers (and rates) behind the line rules, for the failing invoices only."""
    subset = lines[lines["invoice_id"].isin(invoice_ids)]
    details: dict[tuple[Any, str], str] = {}

    def labels(group: pd.DataFrame) -> list[str]:
        return [_line_label(raw_lines.at[index, "line_number"]) for index in group.index]

    for invoice_id, group in subset.loc[subset["bad_amount"]].groupby("invoice_id"):
        details[(invoice_id, "line_amounts")] = ", ".join(label.removeprefix("rad ") for label in labels(group))
    for invoice_id, group in subset.loc[subset["bad_line_number"]].groupby("invoice_id"):
        unreadable_numbers = dict.fromkeys(
            "radnummer saknas" if text_or_empty(value) == "" else f"radnummer '{shown(value, 40)}' kan inte läsas"
            for value in raw_lines.loc[group.index, "line_number"]
        )
        details[(invoice_id, "line_numbers")] = (
            "; ".join(unreadable_numbers) + "; ge raderna heltal som radnummer (1, 2, 3 …)"
        )
    for invoice_id, group in subset.loc[subset["bad_text"]].groupby("invoice_id"):
        problems = []
        for index, label in zip(group.index, labels(group), strict=False):
            for column in LINE_TEXTS:
                code = group.at[index, f"{column}_problem"]
                if code:
                    text = text_or_empty(raw_lines.at[index, column])
                    problems.append(f"{label}: {text_problem(column, text, code)}")
        details[(invoice_id, "line_texts")] = "; ".join(problems)
    for invoice_id, group in subset.loc[subset["bad_unit"]].groupby("invoice_id"):
        known = ", ".join(sorted(unit for unit in UNIT_CODES if unit))
        problems = [
            f"{label}: enheten '{shown(raw_lines.at[index, 'unit'], 40)}' är okänd"
            for index, label in zip(group.index, labels(group), strict=False)
        ]
        details[(invoice_id, "units")] = "; ".join(problems) + f"; använd en av {known}"
    unreadable = subset.loc[subset["unreadable"]]
    for invoice_id, group in unreadable.groupby("invoice_id"):
        problems = []
        for index, label in zip(group.index, labels(group), strict=False):
            for column, field_label in _LINE_FIELDS.items():
                value = raw_lines.at[index, column]
                if np.isnan(_numbers(pd.Series([value], dtype=object)).iloc[0]):
                    problems.append(f"{label}: {_unreadable_text(field_label, value)}")
        details[(invoice_id, "line_unreadable")] = "; ".join(problems)
    for invoice_id, group in subset.loc[subset["negative_price"]].groupby("invoice_id"):
        problems = [
            f"{label}: pris {_rate_text(raw_lines.at[index, 'unit_price'])} är negativt"
            for index, label in zip(group.index, labels(group), strict=False)
        ]
        details[(invoice_id, "negative_price")] = (
            "; ".join(problems) + "; ange en rabatt som negativt antal till positivt pris (Peppol BR-27)"
        )
    bad = subset.loc[subset["bad_rate"]]
    for invoice_id, group in bad.groupby("invoice_id"):
        rates = ", ".join(_rate_text(raw_lines.at[i, "vat_rate"]) for i in group.index)
        numbers = ", ".join(label.removeprefix("rad ") for label in labels(group))
        details[(invoice_id, "vat_rates")] = f"momssats {rates} på rad {numbers} är inte 25, 12, 6 eller 0 %"
    details.update(_vat_details(subset, labels))
    return details


def _vat_details(lines: pd.DataFrame, labels: Callable[[pd.DataFrame], list[str]]) -> dict[tuple[Any, str], str]:
    """The lines and categories behind the VAT category rules, for the given (failing invoices') line facts."""
    details: dict[tuple[Any, str], str] = {}
    for invoice_id, group in lines.loc[lines["bad_vat"]].groupby("invoice_id"):
        problems = []
        for row, label in zip(group.itertuples(), labels(group), strict=False):
            if row.reason_problem:
                problems.append(f"{label}: {text_problem(vat.LINE_COLUMNS[2], row.reason_text, row.reason_problem)}")
            rate = None if np.isnan(row.rate_bp) else Decimal(int(row.rate_bp)).scaleb(-2)
            problem = vat.line_problem(row.vat_category, rate, row.reason_code, row.reason_text)
            if problem:
                problems.append(f"{label}: {shown(problem, None)}")
        details[(invoice_id, "vat_categories")] = "; ".join(problems)
    stated = lines[lines["vat_category"].isin(list(vat.CATEGORIES))]
    for invoice_id, group in stated.groupby("invoice_id"):
        problems = []
        for category, category_rows in group.groupby("vat_category"):
            if category not in vat.REASON_RULES:
                continue
            reason = vat.reason_of(zip(category_rows["reason_code"], category_rows["reason_text"], strict=False))
            if reason is None:
                problems.append(vat.conflicting_reasons(str(category)))
            elif not any(reason):
                problems.append(vat.missing_reason(str(category)))
        if problems:
            details[(invoice_id, "vat_reasons")] = "; ".join(problems)
        if (group["vat_category"] == "O").any():
            rows = lines[lines["invoice_id"] == invoice_id]
            mixed = [label for label, c in zip(labels(rows), rows["vat_category"], strict=False) if c != "O"]
            if mixed:
                others = sorted(set(rows["vat_category"]) - {"O", ""})
                others += ["rader utan momskategori"] if (rows["vat_category"] == "").any() else []
                numbers = ", ".join(label.removeprefix("rad ") for label in mixed)
                details[(invoice_id, "vat_not_subject")] = f"{vat.not_subject_mixed(others)} (rad {numbers})"
    return details


def _rate_text(value: Any) -> str:
    text = text_or_empty(value)
    try:
        return f"{Decimal(text).normalize():f}"
    except ArithmeticError:
        return shown(text, 40)


@dataclass
class ValidationReport:
    """The outcome of validating a batch.

    :param messages: per invoice id, None when it may be sent, else its one message.
    :param reasons: per rejected invoice id, the names of the rules it failed.
    """

    messages: dict[int, str | None]
    reasons: dict[int, list[str]] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        """How many invoices failed."""
        return sum(message is not None for message in self.messages.values())

    def top_reasons(self, limit: int = 5) -> list[tuple[str, int]]:
        """The most frequent rules behind the rejections, with their counts."""
        counts = Counter(reason for names in self.reasons.values() for reason in names)
        return counts.most_common(limit)

    def summary(self) -> str:
        """A small table for the task log: checked, passed, rejected and the top reasons."""
        tally = ValidationTally()
        tally.add(self)
        return tally.summary()


@dataclass
class ValidationTally:
    """The counts of one or more :class:`ValidationReport` (a run validated chunk by chunk), for one
    summary: adding the reports of the chunks gives the summary one report of all of them would give.

    :param checked: invoices checked.
    :param rejected: invoices that failed.
    :param reasons: per rule, the rejected invoices that failed it, counted in the order first met.
    """

    checked: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, report: ValidationReport) -> None:
        """Count the invoices of ``report``."""
        self.checked += len(report.messages)
        self.rejected += report.rejected
        self.reasons.update(reason for names in report.reasons.values() for reason in names)

    def summary(self, limit: int = 5) -> str:
        """A small table for the task log: checked, passed, rejected and the ``limit`` most frequent reasons
        (rules equally frequent in the order first met)."""
        from tabulate import tabulate

        rows = [
            ["kontrollerade", self.checked],
            ["godkända", self.checked - self.rejected],
            ["avvisade", self.rejected],
        ]
        rows += [[f"  {_REASON_LABELS.get(name, name)}", count] for name, count in self.reasons.most_common(limit)]
        return tabulate(rows, headers=["fakturor", "antal"], tablefmt="simple")


_REASON_LABELS = {
    "billing_method": "fel faktureringsmetod",
    "active": "inaktiv kund",
    "org_missing": "organisationsnummer saknas",
    "org_invalid": "ogiltigt organisationsnummer",
    "vat_missing": "VAT-nummer saknas",
    "vat_invalid": "fel VAT-nummer",
    "gln_invalid": "ogiltigt GLN-nummer",
    "peppol_id_invalid": "ogiltigt Peppol-id",
    "no_endpoint": "Peppol-adress saknas",
    "marking_length": "för lång Märkning",
    "marking_control": "styrtecken i Märkning",
    "email_invalid": "ogiltig faktura e-post",
    "no_route": "ingen mottagarväg",
    "posted": "inte verifierad",
    "in_interval": "fakturadatum utanför perioden",
    "due_date": "förfallodatum",
    "currency": "ogiltig valuta",
    "has_lines": "saknar rader",
    "line_unreadable": "oläsbara rader",
    "line_amounts": "fel radbelopp",
    "vat_rates": "ogiltig momssats",
    "vat_categories": "ogiltig momskategori eller undantagsorsak",
    "vat_reasons": "undantagsorsak saknas eller skiljer sig",
    "vat_not_subject": "momskategori O blandad med andra",
    "vat_buyer_vat": "VAT-nummer saknas för K eller AE",
    "vat_intra_community": "EU-leverans till kund utanför EU",
    "amount_ex_vat": "fel belopp exkl. moms",
    "vat_amount": "fel momsbelopp",
    "total": "fel totalbelopp",
    "sign": "fel tecken på beloppet",
    "credited": "kredit utan krediterad faktura",
    "unique_number": "dubbelt fakturanummer",
    "missing_customer": "kund saknas i ERP",
    "duplicate_row": "dubblerad rad i ERP",
    "number_missing": "nummer saknas",
    "name_missing": "namn saknas",
    "due_far": "förfallodatum för långt fram",
    "due_missing": "förfallodatum saknas",
    "line_numbers": "ogiltiga radnummer",
    "line_texts": "ogiltig radtext",
    "units": "okänd enhet",
    "negative_price": "negativt pris",
    **{f"text:{column}": f"ogiltig text i {text.label}" for column, text in TEXT_FIELDS.items()},
    **{f"flag:{column}": f"oläsbart värde i {label}" for column, label in FLAG_LABELS.items()},
}


@dataclass
class CheckedCustomers:
    """The customers one validation task has checked, for the task's later chunks: per customer id, a
    hash of its ERP row (and how many rows it had), the rules it failed and its part of a message.

    A customer whose invoices fall in several chunks is checked in the first only, unless its row
    differs in a later one (an ERP edit meanwhile).
    """

    found: dict[Any, tuple[tuple[int, int], list[str], str]] = field(default_factory=dict)


def validate(
    batch: InvoiceBatch,
    *,
    start: date,
    end: date,
    duplicate_numbers: set[str] | None = None,
    checked: CheckedCustomers | None = None,
) -> ValidationReport:
    """Check every invoice of the batch and its customer, and explain every failure.

    Customers are checked once each, not once per invoice (nor once per chunk, given ``checked``).

    :param batch: invoices with customers and lines, from :meth:`ErpReader.load`.
    :param start: first invoice date of the run's data interval.
    :param end: first invoice date after the interval.
    :param duplicate_numbers: invoice numbers the ERP uses more than once.
    :param checked: the customers earlier chunks of the same task checked; updated with this batch's.
    """
    # a view without keys may repeat a customer or an invoice (a join too many): checked on its
    # first row, and rejected as ambiguous
    customer_rows, invoice_rows = _row_counts(batch.customers), _row_counts(batch.invoices)
    if customer_rows or invoice_rows:
        batch = InvoiceBatch(
            invoices=batch.invoices[~batch.invoices.index.duplicated()],
            customers=batch.customers[~batch.customers.index.duplicated()],
            lines=batch.lines,
            attachments=batch.attachments,
        )
    checked = checked if checked is not None else CheckedCustomers()
    # each customer's row as a number (NaN and None hash alike), with how many rows it had
    hashes = pd.util.hash_pandas_object(batch.customers, index=True)
    fingerprints = [(int(h), customer_rows.get(i, 1)) for i, h in zip(batch.customers.index, hashes, strict=True)]
    ids = list(batch.customers.index)
    fresh = [checked.found.get(i, (None,))[0] != f for i, f in zip(ids, fingerprints, strict=True)]
    customers = customer_facts(batch.customers[fresh])
    customers["row_count"] = [customer_rows.get(i, 1) for i in customers.index] if customer_rows else 1
    customer_failures = _failures(customers, customer_schema())
    customer_parts: dict[Any, str] = {}
    for customer_id, names in customer_failures.items():
        row = customers.loc[customer_id]
        problems = "; ".join(CUSTOMER_MESSAGES[name](row) for name in names)
        customer_parts[customer_id] = f"{customer_label(customer_id, row.customer_number, row['name'])}: {problems}"
    for customer_id, fingerprint, new in zip(ids, fingerprints, fresh, strict=True):
        if new:
            found = (fingerprint, customer_failures.get(customer_id, []), customer_parts.get(customer_id, ""))
            checked.found[customer_id] = found
        elif checked.found[customer_id][1]:  # failed in an earlier chunk: its invoices here fail alike
            _, customer_failures[customer_id], customer_parts[customer_id] = checked.found[customer_id]
    lines = line_facts(batch.lines)
    facts = invoice_facts(batch, duplicate_numbers or set(), lines)
    facts["row_count"] = [invoice_rows.get(i, 1) for i in facts.index] if invoice_rows else 1
    invoice_failures = _failures(facts, invoice_schema(start, end, _currencies()))
    for invoice_id, names in invoice_failures.items():
        if "duplicate_row" in names:  # which row's values are wrong cannot be said
            invoice_failures[invoice_id] = ["duplicate_row"]

    known_customers = set(batch.customers.index)
    customer_ids = facts["customer_id"]
    missing = facts.index[customer_ids.notna() & ~customer_ids.isin(known_customers)]
    rejected_invoices = set(invoice_failures) | set(missing)
    rejected_invoices |= set(facts.index[customer_ids.isin(list(customer_failures))])

    messages: dict[int, str | None] = dict.fromkeys((int(i) for i in facts.index), None)
    reasons: dict[int, list[str]] = {}
    if not rejected_invoices:
        return ValidationReport(messages)
    details = _line_details(lines, batch.lines, rejected_invoices)
    formats = _invoice_messages(start, end)
    rejected_ids = [i for i in facts.index if i in rejected_invoices]
    missing_ids = set(missing)
    raw_rows = batch.invoices.loc[rejected_ids, [*list(_RAW_COLUMN.values()), "due_date"]].to_dict("records")
    for fact, raw in zip(facts.loc[rejected_ids].itertuples(), raw_rows, strict=False):
        invoice_id = fact.Index
        number = shown(fact.invoice_number, 40) or f"med id {invoice_id}"
        names = list(invoice_failures.get(invoice_id, []))
        parts = []
        customer_id = fact.customer_id
        if invoice_id in missing_ids:
            names.insert(0, "missing_customer")
            parts.append(
                f"Faktura {number}: kund med id {int(customer_id)} finns inte i ERP; "
                "koppla fakturan till en befintlig kund"
            )
        elif customer_id in customer_parts:
            parts.append(customer_parts[customer_id])
            names = customer_failures[customer_id] + names
        invoice_names = invoice_failures.get(invoice_id, [])
        if invoice_names:
            problems = "; ".join(formats[n](fact, raw, details.get((invoice_id, n), "")) for n in invoice_names)
            parts.append(f"Faktura {number}: {problems}")
        messages[int(invoice_id)] = ". ".join(parts)
        reasons[int(invoice_id)] = names
    return ValidationReport(messages, reasons)


def _row_counts(frame: pd.DataFrame) -> dict[Any, int]:
    """Index values (ids) that occur on more than one row, with their number of rows."""
    repeated = frame.index[frame.index.duplicated()]
    if not len(repeated):
        return {}
    return {key: int(count) for key, count in frame.index[frame.index.isin(repeated)].value_counts().items()}


def validate_batch(
    batch: InvoiceBatch, *, start: date, end: date, duplicate_numbers: set[str] | None = None
) -> dict[int, str | None]:
    """Per invoice id, None when it may be sent, else the one message describing everything to fix."""
    return validate(batch, start=start, end=end, duplicate_numbers=duplicate_numbers).messages
