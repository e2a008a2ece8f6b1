"""Throughput and peak memory of validate_batch on a large batch, against a baseline in the same process.

Builds an InvoiceBatch in memory with numpy (no database, no per-row Python work): M customers
(valid Swedish org and VAT numbers, some GLNs, a few private persons) and N posted invoices of one
7-day interval with about 3 lines each, header sums consistent with the lines. About 4 % of the
customers and 2 % of the invoices carry one planted defect each (missing or invalid identifiers,
inactive customer, wrong billing method, wrong line or header amounts, VAT rate, dates, currency,
sign, status, missing lines, unknown customer, ...). The frames have the shape and dtypes of
ErpReader.load on SQLite: invoices indexed by invoice_id and customers by customer_id (columns kept),
lines and attachments on a RangeIndex, NUMERIC as float, DATE as 'YYYY-MM-DD' text, BOOLEAN as 0/1,
text as str with missing values; ``--decimal`` gives PostgreSQL's types instead (Decimal, date, bool).

After one warm-up call on a small batch (imports), times for every size, caches emptied first:
- baseline: the plain vectorised pandas pass any validation pays at least (sum of the line amounts
  per invoice, invoices merged with their customers, header compared with the line sum);
- validate: validate_batch(batch, start=, end=, duplicate_numbers=set()).
Prints rows, customers, lines, seconds, invoices/s, the ratio to the baseline, the peak RSS of the
process (getrusage) and the RSS growth during each call (psutil sampled every 5 ms), and the
passed/rejected counts next to the number of invoices with a planted defect, with 3 sample messages.
Issue target for 1,000,000 invoices and 20,000 customers: at most 10 s and 1.5 GiB (figures only).

Usage: python bench/bench_validation.py [--invoices N [N ...]] [--customers M] [--seed S] [--decimal]
(default --invoices 1000000 --customers 20000 --seed 7).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import psutil

START = date(2026, 11, 16)
DAYS = 7
TARGET_SECONDS = 10.0
TARGET_MIB = 1.5 * 1024
MIB = 1024 * 1024

CUSTOMER_DEFECT_SHARE = 0.04
INVOICE_DEFECT_SHARE = 0.02
CREDIT_SHARE = 0.10
PRIVATE_SHARE = 0.02
GLN_SHARE = 0.30

CUSTOMER_DEFECTS = ("org_missing", "org_check_digit", "vat_mismatch", "inactive", "billing_method",
                    "gln_check_digit", "email_invalid", "marking_control")
INVOICE_DEFECTS = ("line_amount", "vat_rate", "amount_ex_vat", "vat_amount", "total", "due_date",
                   "out_of_interval", "credit_without_reference", "debit_negative", "no_lines", "currency",
                   "draft", "reference_too_long", "unknown_customer")

RATES = np.array([25, 12, 6, 0, 20])  # the last one is no Swedish VAT rate (planted defect only)
# article number, description, unit, index into RATES, lowest and highest unit price in öre
CATALOG = (
    ("1001", "Konsulttimmar", "tim", 0, 90_000, 150_000),
    ("1002", "Projektledning", "tim", 0, 110_000, 160_000),
    ("2002", "Support och underhåll", "mån", 0, 40_000, 90_000),
    ("2010", "Licens ekonomisystem", "mån", 0, 150_000, 600_000),
    ("3001", "Kontorsstol", "st", 0, 250_000, 700_000),
    ("3105", "Kabel EKK 3G1,5", "m", 0, 500, 2_500),
    ("4001", "Utbildningsdag", "dag", 3, 450_000, 900_000),
    ("5001", "Persontransport", "st", 2, 2_500, 60_000),
    ("5101", "Hotellnatt", "st", 1, 90_000, 250_000),
    ("5201", "Lunch", "st", 1, 9_500, 18_000),
    ("6001", "Facklitteratur", "st", 2, 19_900, 89_900),
    ("7001", "Försäkringsavgift", "st", 3, 50_000, 500_000),
)
SURNAMES = np.array(["Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson",
                     "Persson", "Svensson", "Gustafsson", "Lindqvist", "Sjöberg", "Holm", "Berg",
                     "Lindström", "Åberg", "Hallin", "Ekström", "Nyström", "Wikström"])
FIRST_NAMES = np.array(["Karin", "Anna", "Maja", "Ingrid", "Linnea", "Eva", "Sara", "Emma", "Lars",
                        "Erik", "Gustav", "Johan", "Anders", "Per", "Nils", "Oskar"])
TRADES = np.array(["Bygg AB", "Konsult AB", "Fastigheter AB", "El AB", "Transport AB", "Redovisning AB",
                   "Måleri AB", "Handel AB"])
STREETS = np.array(["Storgatan ", "Kungsgatan ", "Hamngatan ", "Drottninggatan ", "Industrivägen ", "Box "])
CITIES = np.array(["Stockholm", "Göteborg", "Malmö", "Uppsala", "Linköping", "Örebro", "Västerås",
                   "Umeå", "Alingsås", "Vänersborg"])


@dataclass
class Planted:
    """The defects built into a batch: kind per customer and per invoice ('' when none)."""

    customer_kind: np.ndarray  # by customer position (customer_id - 1)
    invoice_kind: np.ndarray  # by invoice position (invoice_id - 1)
    rejected: np.ndarray  # bool per invoice: its own defect or its customer's


# ---- vectorised text ----------------------------------------------------------------------------
def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """The decimal digits of non-negative integers as an (n, width) array, most significant first."""
    return (np.asarray(values, dtype=np.int64)[:, None] // 10 ** np.arange(width - 1, -1, -1)) % 10


def _text(*parts: np.ndarray | str, rows: int) -> np.ndarray:
    """Concatenate digit matrices (n, k) and ASCII literals into one fixed-width unicode array."""
    columns = []
    for part in parts:
        if isinstance(part, str):
            columns.append(np.broadcast_to(np.frombuffer(part.encode("ascii"), dtype=np.uint8), (rows, len(part))))
        else:
            columns.append((part + ord("0")).astype(np.uint8))
    matrix = np.ascontiguousarray(np.hstack(columns))
    width = matrix.shape[1]
    return matrix.view(f"S{width}").ravel().astype(f"U{width}")


def _luhn_check(digits: np.ndarray) -> np.ndarray:
    """Luhn check digit of each row of payload digits (the rightmost payload digit is doubled)."""
    doubled = (np.arange(digits.shape[1])[::-1] % 2) == 0
    values = np.where(doubled, digits * 2, digits)
    values = np.where(values > 9, values - 9, values)
    return (10 - values.sum(axis=1) % 10) % 10


def _gs1_check(digits: np.ndarray) -> np.ndarray:
    """GS1 check digit of each row of payload digits (weight 3 on the rightmost payload digit)."""
    weights = np.where((np.arange(digits.shape[1])[::-1] % 2) == 0, 3, 1)
    return (10 - (digits * weights).sum(axis=1) % 10) % 10


def _optional(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Object array holding ``values`` where ``mask`` is set and None elsewhere."""
    out = np.full(len(mask), None, dtype=object)
    out[mask] = values[mask]
    return out


def _strings(table: tuple[str, ...], index: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """``table[index]`` as one str object per row, as a database driver returns them (in chunks,
    so no full-length fixed-width copy is ever held)."""
    values = np.array(table)
    out = np.empty(len(index), dtype=object)
    for start in range(0, len(index), chunk):
        out[start : start + chunk] = values[index[start : start + chunk]].astype(object)
    return out


def _round_half_up_div(numerator: np.ndarray, divisor: int) -> np.ndarray:
    """numerator / divisor rounded half away from zero (Decimal ROUND_HALF_UP), in integers."""
    magnitude = (np.abs(numerator) + divisor // 2) // divisor
    return np.where(numerator < 0, -magnitude, magnitude)


def _pick(rng: np.random.Generator, size: int, share: float, kinds: tuple[str, ...]) -> np.ndarray:
    """About ``share`` of the positions, each given one of ``kinds`` (round robin), else ''."""
    kind = np.full(size, "", dtype=object)
    chosen = rng.choice(size, size=min(size, max(len(kinds), round(size * share))), replace=False)
    kind[chosen] = np.array(kinds, dtype=object)[np.arange(len(chosen)) % len(kinds)]
    return kind


# ---- the batch ----------------------------------------------------------------------------------
def build_customers(rng: np.random.Generator, count: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Customers 1..count as the ERP holds them, and the planted defect kind of each."""
    from inexchange.erp import INEXCHANGE_BILLING_METHOD

    kind = _pick(rng, count, CUSTOMER_DEFECT_SHARE, CUSTOMER_DEFECTS)
    ids = np.arange(1, count + 1)
    private = (kind == "") & (rng.random(count) < PRIVATE_SHARE)

    body = rng.integers(0, 10, size=(count, 9))
    body[:, 0] = np.array([2, 5, 7, 8, 9])[rng.integers(0, 5, size=count)]
    body[:, 2] = rng.integers(2, 10, size=count)  # a legal entity's third digit is 2 or more
    check = _luhn_check(body)
    born = np.datetime64("1950-01-01") + rng.integers(0, 365 * 50, size=count)
    month_start = born.astype("datetime64[M]")
    birth = np.column_stack([
        _digits((born.astype("datetime64[Y]").astype(np.int64) + 1970) % 100, 2),
        _digits(month_start.astype(np.int64) % 12 + 1, 2),
        _digits((born - month_start).astype(np.int64) + 1, 2),
        rng.integers(0, 10, size=(count, 3)),
    ])
    body = np.where(private[:, None], birth, body)
    check = np.where(private, _luhn_check(birth), check)
    wrong = (check + rng.integers(1, 10, size=count)) % 10
    org_check = np.where(kind == "org_check_digit", wrong, check)
    org = _text(body[:, :6], "-", body[:, 6:], org_check[:, None], rows=count)
    vat_check = np.where(kind == "vat_mismatch", wrong, check)
    vat = _text("SE", body, vat_check[:, None], "01", rows=count)

    gln_body = np.column_stack([np.full((count, 1), 7), np.full((count, 1), 3),
                                rng.integers(0, 10, size=(count, 10))])
    gln_check = _gs1_check(gln_body)
    gln_check = np.where(kind == "gln_check_digit", (gln_check + 1 + rng.integers(0, 9, size=count)) % 10, gln_check)
    has_gln = (rng.random(count) < GLN_SHARE) | (kind == "gln_check_digit")
    gln = _text(gln_body, gln_check[:, None], rows=count)

    number = ids + 1000
    number_text = number.astype(str)
    email = np.char.add(np.char.add("faktura@kund", number_text), ".se")
    email = np.where(kind == "email_invalid", np.char.add("faktura@@kund", number_text), email)
    has_email = (rng.random(count) < 0.6) | (kind == "email_invalid")
    marking = _text("Ansvar ", _digits(rng.integers(1000, 10000, size=count), 4), rows=count)
    marking = np.where(kind == "marking_control", np.char.add(marking, "\x01Verksamhet 410"), marking)
    has_marking = (rng.random(count) < 0.2) | (kind == "marking_control")

    company = np.char.add(np.char.add(SURNAMES[rng.integers(0, len(SURNAMES), count)], "s "),
                          TRADES[rng.integers(0, len(TRADES), count)])
    person = np.char.add(np.char.add(FIRST_NAMES[rng.integers(0, len(FIRST_NAMES), count)], " "),
                         SURNAMES[rng.integers(0, len(SURNAMES), count)])
    frame = pd.DataFrame({
        "customer_id": ids,
        "customer_number": number_text,
        "name": np.where(private, person, company),
        "is_active": (kind != "inactive").astype(np.int64),
        "is_private_person": private.astype(np.int64),
        "org_number": _optional(kind != "org_missing", org),
        "vat_number": _optional(~private, vat),
        "country_code": np.full(count, "SE"),
        "language": np.full(count, "sv"),
        "currency": np.full(count, "SEK"),
        "billing_method": np.where(kind == "billing_method", "Utskrift", INEXCHANGE_BILLING_METHOD),
        "invoice_email": _optional(has_email, email),
        "gln": _optional(has_gln, gln),
        "marking": _optional(has_marking, marking),
        "attach_documents": (rng.random(count) < 0.3).astype(np.int64),
        "street": np.char.add(STREETS[rng.integers(0, len(STREETS), count)],
                              rng.integers(1, 200, size=count).astype(str)),
        "postal_code": _text(_digits(rng.integers(100, 1000, size=count), 3), " ",
                             _digits(rng.integers(0, 100, size=count), 2), rows=count),
        "city": CITIES[rng.integers(0, len(CITIES), count)],
    })
    return frame, kind


def _build_lines(rng: np.random.Generator, kind: np.ndarray,
                 negative: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Invoice lines (1-5 per invoice, 3 on average; quantities in quarters, prices in öre) and the
    header sums they imply, in öre: amount excluding VAT, and VAT rounded half up per rate."""
    n = len(kind)
    per_invoice = rng.integers(1, 6, size=n)
    per_invoice[kind == "no_lines"] = 0
    owner = np.repeat(np.arange(n), per_invoice)
    first = np.cumsum(per_invoice) - per_invoice
    article = rng.integers(0, len(CATALOG), size=len(owner))
    catalog = list(zip(*CATALOG))
    low = np.array(catalog[4])[article]
    price = low + (rng.random(len(owner)) * (np.array(catalog[5])[article] - low)).astype(np.int64)
    del low
    quarters = rng.integers(1, 161, size=len(owner))
    quarters[negative[owner]] *= -1
    amount = _round_half_up_div(quarters * price, 4)  # quantity x price rounded half up to öre
    rate_index = np.array(catalog[3])[article]
    firsts = first[per_invoice > 0]
    spoiled = kind[owner[firsts]]
    amount[firsts[spoiled == "line_amount"]] += 1
    rate_index[firsts[spoiled == "vat_rate"]] = len(RATES) - 1

    ex = np.bincount(owner, weights=amount, minlength=n).astype(np.int64)
    base = np.bincount(owner * len(RATES) + rate_index, weights=amount, minlength=n * len(RATES))
    vat = _round_half_up_div(base.astype(np.int64) * np.tile(RATES, n), 100).reshape(n, len(RATES)).sum(axis=1)
    del base

    numeric = {"invoice_id": owner + 1, "line_number": np.arange(len(owner)) - first[owner] + 1,
               "quantity": quarters / 4, "unit_price": price / 100, "vat_rate": RATES[rate_index],
               "line_amount": amount / 100}
    del owner, first, firsts, spoiled, quarters, price, rate_index, amount
    frame = pd.DataFrame({
        "invoice_id": numeric["invoice_id"],
        "line_number": numeric["line_number"],
        "article_number": _strings(catalog[0], article),
        "description": _strings(catalog[1], article),
        "quantity": numeric["quantity"],
        "unit": _strings(catalog[2], article),
        "unit_price": numeric["unit_price"],
        "vat_rate": numeric["vat_rate"],
        "line_amount": numeric["line_amount"],
    })
    return frame, ex, vat


def build_batch(invoices: int, customers: int, seed: int, *, decimal: bool = False) -> tuple[Any, Planted]:
    """An InvoiceBatch of ``invoices`` invoices over ``customers`` customers, and what was planted."""
    from inexchange.erp import InvoiceBatch

    rng = np.random.default_rng(seed)
    customer_frame, customer_kind = build_customers(rng, customers)

    n = invoices
    kind = _pick(rng, n, INVOICE_DEFECT_SHARE, INVOICE_DEFECTS)
    ids = np.arange(1, n + 1)
    customer_id = rng.integers(1, customers + 1, size=n)
    customer_id[kind == "unknown_customer"] = customers + 1_000_000
    credit = ((rng.random(n) < CREDIT_SHARE) & (kind != "debit_negative")) | (kind == "credit_without_reference")
    negative = credit | (kind == "debit_negative")

    line_frame, ex, vat = _build_lines(rng, kind, negative)
    ex[kind == "amount_ex_vat"] += 100
    vat[kind == "vat_amount"] += 100
    total = ex + vat
    total[kind == "total"] += 1

    day = np.datetime64(START.isoformat()) + rng.integers(0, DAYS, size=n)
    day[kind == "out_of_interval"] = np.datetime64(START.isoformat()) - 1
    due = day + 30
    due[kind == "due_date"] = day[kind == "due_date"] - 1
    numbers = ids + 10_000_000
    reference = np.char.add(np.char.add(FIRST_NAMES[rng.integers(0, len(FIRST_NAMES), n)], " "),
                            SURNAMES[rng.integers(0, len(SURNAMES), n)])
    your_reference = _optional((rng.random(n) < 0.7) | (kind == "reference_too_long"), reference)
    your_reference[kind == "reference_too_long"] = "Projekt " + "x" * 240
    del reference
    # text columns as str objects straight away, so no fixed-width temporary outlives its column
    invoice_frame = pd.DataFrame({
        "invoice_id": ids,
        "invoice_number": numbers.astype(str).astype(object),
        "customer_id": customer_id,
        "invoice_type": np.where(credit, "credit", "debit").astype(object),
        "status": np.where(kind == "draft", "draft", "posted").astype(object),
        "invoice_date": day.astype(str).astype(object),
        "due_date": due.astype(str).astype(object),
        "currency": np.where(kind == "currency", "SKR", "SEK").astype(object),
        "amount_ex_vat": ex / 100,
        "vat_amount": vat / 100,
        "total_amount": total / 100,
        "your_reference": your_reference,
        "order_number": _optional(rng.random(n) < 0.3, rng.integers(10_000_000, 99_999_999, size=n).astype(str)),
        "credited_invoice_number": _optional(
            credit & (kind != "credit_without_reference"),
            np.maximum(numbers - rng.integers(1, 5000, size=n), 10_000_001).astype(str)),
    })
    del your_reference
    attached = np.flatnonzero(rng.random(n) < 0.05)
    attachment_frame = pd.DataFrame({
        "invoice_id": ids[attached],
        "file_name": np.char.add(np.char.add("tidrapport_", numbers[attached].astype(str)), ".pdf"),
        "mime_type": np.full(len(attached), "application/pdf"),
        "content": np.char.add(b"%PDF-1.4\n% tidrapport ", numbers[attached].astype("S8")).astype(object),
    })
    if decimal:
        _as_postgres(invoice_frame, customer_frame, line_frame)

    used = np.unique(customer_id)
    customer_frame = customer_frame[customer_frame["customer_id"].isin(used)].reset_index(drop=True)
    known = customer_id <= customers
    rejected = (kind != "") | (known & (customer_kind[np.minimum(customer_id, customers) - 1] != ""))
    batch = InvoiceBatch(
        invoices=invoice_frame.set_index("invoice_id", drop=False),
        customers=customer_frame.set_index("customer_id", drop=False),
        lines=line_frame,
        attachments=attachment_frame,
    )
    return batch, Planted(customer_kind=customer_kind, invoice_kind=kind, rejected=rejected)


def _as_objects(values: pd.Series, convert: Callable[[Any], Any]) -> np.ndarray:
    """Map a column through ``convert`` once per distinct value (shared objects, like a row cache)."""
    distinct, inverse = np.unique(values.to_numpy(), return_inverse=True)
    converted = np.empty(len(distinct), dtype=object)
    converted[:] = [convert(v) for v in distinct.tolist()]
    return converted[inverse]


def _as_postgres(invoices: pd.DataFrame, customers: pd.DataFrame, lines: pd.DataFrame) -> None:
    """Turn SQLite's types into psycopg's: NUMERIC to Decimal, DATE to date, BOOLEAN to bool."""
    def scaled(scale: int) -> Callable[[Any], Decimal]:
        return lambda v: Decimal(round(v * 10**scale)).scaleb(-scale)

    for column in ("amount_ex_vat", "vat_amount", "total_amount"):
        invoices[column] = _as_objects(invoices[column], scaled(2))
    for column in ("invoice_date", "due_date"):
        invoices[column] = _as_objects(invoices[column], date.fromisoformat)
    for column, scale in (("quantity", 4), ("unit_price", 4), ("vat_rate", 2), ("line_amount", 2)):
        lines[column] = _as_objects(lines[column], scaled(scale))
    for column in ("is_active", "is_private_person", "attach_documents"):
        customers[column] = customers[column].astype(bool)


# ---- measuring ----------------------------------------------------------------------------------
class PeakRss:
    """Resident memory before a block and the highest sample during it (psutil, every 5 ms)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.process = psutil.Process()
        self.interval = interval
        self.before = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self.before = self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.before) / MIB


def _release_free_memory() -> None:
    """Collect garbage and hand the allocator's free heap back to the OS (glibc), so that the
    temporaries of building the frames do not count as memory the measured calls hold."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):
            pass


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def baseline(batch: Any) -> int:
    """The floor: line sums per invoice, invoices joined to customers, header against line sum."""
    sums = batch.lines.groupby("invoice_id", sort=False)["line_amount"].sum()
    merged = (batch.invoices[["invoice_id", "customer_id", "amount_ex_vat"]].reset_index(drop=True)
              .merge(batch.customers[["customer_id", "is_active", "billing_method"]].reset_index(drop=True),
                     on="customer_id", how="left"))
    line_sum = merged["invoice_id"].map(sums)
    return int(((merged["amount_ex_vat"] - line_sum).abs() < 0.005).sum())


# ---- one size -----------------------------------------------------------------------------------
def _clear_caches(module: Any) -> None:
    """Empty the module's functools caches (per-value identifier checks), as in a fresh worker."""
    for value in list(vars(module).values()):
        if callable(getattr(value, "cache_clear", None)):
            value.cache_clear()


def run(invoices: int, customers: int, seed: int, decimal: bool) -> dict[str, float]:
    from inexchange import validation
    from inexchange.validation import validate_batch

    started = time.perf_counter()
    batch, planted = build_batch(invoices, customers, seed, decimal=decimal)
    built = time.perf_counter() - started
    rows, lines = len(batch.invoices), len(batch.lines)
    _release_free_memory()
    print(f"\n{rows} invoices, {len(batch.customers)} customers, {lines} lines, {len(batch.attachments)} "
          f"attachments{' (PostgreSQL types)' if decimal else ''}; built in {built:.2f} s; "
          f"process RSS {psutil.Process().memory_info().rss / MIB:.0f} MiB")

    with PeakRss() as base_memory:
        started = time.perf_counter()
        baseline(batch)
        base_seconds = time.perf_counter() - started

    _clear_caches(validation)
    _release_free_memory()
    max_rss_before = _max_rss_mib()
    with PeakRss() as memory:
        started = time.perf_counter()
        results = validate_batch(batch, start=START, end=START + timedelta(days=DAYS), duplicate_numbers=set())
        seconds = time.perf_counter() - started
    max_rss = _max_rss_mib()

    print(f"{'stage':<10}{'seconds':>10}{'invoices/s':>14}{'x baseline':>12}{'RSS growth MiB':>16}")
    for stage, took, grown in (("baseline", base_seconds, base_memory.growth_mib),
                               ("validate", seconds, memory.growth_mib)):
        print(f"{stage:<10}{took:>10.3f}{rows / took:>14.0f}{took / base_seconds:>12.1f}{grown:>16.0f}")
    print(f"peak RSS of the process (getrusage): {max_rss:.0f} MiB (before validate {max_rss_before:.0f} MiB); "
          f"sampled peak during validate {memory.peak / MIB:.0f} MiB")
    print(f"issue target at 1,000,000 invoices: {TARGET_SECONDS:.0f} s and {TARGET_MIB:.0f} MiB")

    rejected_ids = np.array(sorted(i for i, message in results.items() if message is not None), dtype=np.int64)
    rejected = np.zeros(rows, dtype=bool)
    rejected[rejected_ids - 1] = True
    missed = planted.rejected & ~rejected
    unexpected = rejected & ~planted.rejected
    print(f"passed {rows - len(rejected_ids)}, rejected {len(rejected_ids)}; planted: {int(planted.rejected.sum())} "
          f"invoices with a defect ({int((planted.invoice_kind != '').sum())} of their own, "
          f"{int((planted.customer_kind != '').sum())} defective customers); "
          f"missed {int(missed.sum())}, unexpected {int(unexpected.sum())}, returned {len(results)} of {rows}")
    if missed.any():
        kinds = Counter(_kind_of(planted, batch, i) for i in np.flatnonzero(missed)[:1000])
        print(f"  missed by kind: {dict(kinds)}")
    sample_rng = np.random.default_rng(seed)
    seen: set[str] = set()
    shown = 0
    for position in sample_rng.permutation(np.flatnonzero(rejected)):
        label = _kind_of(planted, batch, position)
        if label in seen:
            continue
        seen.add(label)
        print(f"  [{label}] invoice {position + 1}: {results[int(position) + 1]}")
        shown += 1
        if shown == 3:
            break
    return {"invoices": rows, "seconds": seconds, "ratio": seconds / base_seconds, "growth": memory.growth_mib,
            "max_rss": max_rss}


def _kind_of(planted: Planted, batch: Any, position: int) -> str:
    """The planted defect of the invoice at ``position`` (its own, else its customer's)."""
    own = planted.invoice_kind[position]
    if own:
        return str(own)
    customer = int(batch.invoices["customer_id"].iat[position])
    if customer <= len(planted.customer_kind) and planted.customer_kind[customer - 1]:
        return f"customer {planted.customer_kind[customer - 1]}"
    return "none planted"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, nargs="+", default=[1_000_000], help="invoice counts to measure")
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--decimal", action="store_true",
                        help="PostgreSQL's types (Decimal, date, bool) instead of SQLite's (float, text, 0/1)")
    args = parser.parse_args()

    # one small call first, so one-time costs (imports, caches, schema set-up) count in no size
    from inexchange.validation import validate_batch

    warm, _ = build_batch(2000, min(args.customers, 500), args.seed + 1, decimal=args.decimal)
    validate_batch(warm, start=START, end=START + timedelta(days=DAYS), duplicate_numbers=set())
    del warm
    summary = []
    for size in args.invoices:
        summary.append(run(size, args.customers, args.seed, args.decimal))
        _release_free_memory()
    if len(summary) > 1:
        print(f"\n{'invoices':>10}{'seconds':>10}{'invoices/s':>14}{'x baseline':>12}{'RSS growth MiB':>16}")
        for row in summary:
            print(f"{row['invoices']:>10.0f}{row['seconds']:>10.3f}{row['invoices'] / row['seconds']:>14.0f}"
                  f"{row['ratio']:>12.1f}{row['growth']:>16.0f}")


if __name__ == "__main__":
    main()
