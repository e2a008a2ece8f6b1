"""Documents per second: Peppol BIS 3 UBL for invoices of 5 lines, against a baseline in the same process.

Generates a demo ERP (SQLite) with N invoices, gives every invoice exactly 5 lines (amounts and
header totals re-computed so that they add up), loads the batch, then times:
- baseline: lxml building and serialising a fixed tree of the same size (~90 elements) N times,
  the floor any UBL builder pays;
- build: build_document for every invoice (debit invoices and credit notes, attachments included).
Prints documents per second and the ratio to the baseline. Single-threaded, so the figure is per
core. Usage: python bench/bench_documents.py [N ...] (default 10000).
"""

from __future__ import annotations

import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from lxml import etree
from bench_support import SELLER_CONFIG, generated_batch

LINES_PER_INVOICE = 5


def five_lines(batch) -> None:
    """Replace every invoice's lines by 5 lines and make the header amounts add up (vectorised)."""
    invoices = batch.invoices
    rng = np.random.default_rng(5)
    n = len(invoices)
    ids = np.repeat(invoices["invoice_id"].to_numpy(), LINES_PER_INVOICE)
    sign = np.repeat(np.where(invoices["invoice_type"].to_numpy() == "credit", -1, 1), LINES_PER_INVOICE)
    quantity = rng.integers(1, 20, size=n * LINES_PER_INVOICE) * sign
    price_ore = rng.integers(100, 500_000, size=n * LINES_PER_INVOICE)
    rate = np.array([25, 12, 6])[rng.integers(0, 3, size=n * LINES_PER_INVOICE)]
    amount_ore = quantity * price_ore
    batch.lines = pd.DataFrame({
        "invoice_id": ids,
        "line_number": np.tile(np.arange(1, LINES_PER_INVOICE + 1), n),
        "article_number": "A-100",
        "description": "Konsulttimmar",
        "quantity": quantity.astype(float),
        "unit": "tim",
        "unit_price": price_ore / 100,
        "vat_rate": rate.astype(float),
        "line_amount": amount_ore / 100,
    })
    per_rate = pd.DataFrame({"invoice_id": ids, "rate": rate, "amount": amount_ore})
    per_rate = per_rate.groupby(["invoice_id", "rate"])["amount"].sum().reset_index()
    scaled = per_rate["amount"].to_numpy() * per_rate["rate"].to_numpy()
    per_rate["vat"] = np.sign(scaled) * ((np.abs(scaled) + 50) // 100)  # half up, in öre
    sums = per_rate.groupby("invoice_id")[["amount", "vat"]].sum()
    ex, vat = sums["amount"].reindex(invoices.index), sums["vat"].reindex(invoices.index)
    invoices["amount_ex_vat"], invoices["vat_amount"] = ex / 100, vat / 100
    invoices["total_amount"] = (ex + vat) / 100
    batch._records.clear()


def baseline_tree() -> etree._Element:
    root = etree.Element("Invoice")
    for index in range(18):
        etree.SubElement(root, f"Header{index}").text = "value"
    for _ in range(LINES_PER_INVOICE):
        line = etree.SubElement(root, "Line")
        for index in range(14):
            etree.SubElement(line, f"Field{index}").text = "12.50"
    return root


def run(n: int) -> None:
    from inexchange.ubl import DocumentError, Seller, build_from_batch

    ids, batch = generated_batch(n)
    five_lines(batch)
    seller = Seller.from_config(SELLER_CONFIG)

    started = time.perf_counter()
    for _ in ids:
        etree.tostring(baseline_tree(), xml_declaration=True, encoding="UTF-8")
    baseline = time.perf_counter() - started

    started = time.perf_counter()
    built = refused = 0
    reasons: dict[str, int] = {}
    for invoice_id in ids:
        try:
            build_from_batch(batch, invoice_id, seller)
            built += 1
        except DocumentError as exc:  # the generator's bad customers (validation rejects them first)
            refused += 1
            reason = str(exc).split(": ", 1)[-1][:60]
            reasons[reason] = reasons.get(reason, 0) + 1
    seconds = time.perf_counter() - started
    print(f"\n{len(ids)} invoices of {LINES_PER_INVOICE} lines: {built} documents built, {refused} refused")
    print(f"baseline (lxml, fixed tree)  {len(ids) / baseline:>10.0f} documents/s")
    print(f"build_document               {len(ids) / seconds:>10.0f} documents/s  "
          f"({seconds / baseline:.1f}x the baseline; target at least 2000/s)")
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        print(f"  refused {count}: {reason}")


if __name__ == "__main__":
    for size in [int(a) for a in sys.argv[1:]] or [10000]:
        run(size)
