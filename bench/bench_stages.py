"""Throughput of the CPU-bound stages on a generated ERP, against a baseline in the same process.

Generates an ERP (SQLite file) with N posted invoices, then times:
- baseline: reading the invoices, lines and customers with plain SQL (the floor any stage pays);
- load: ErpReader.load (the same data into DataFrames);
- validate: validate_batch (Pandera, every rule);
- build: build_document for every invoice (lxml).
Prints seconds, invoices per second and each stage's cost as a ratio to the baseline, plus the
peak resident memory. Usage: python bench/bench_stages.py [N ...] (default 1000 5000).
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from bench_support import SELLER_CONFIG
from sqlalchemy import create_engine, text


def run(n: int) -> None:
    from inexchange.erp import ErpReader
    from inexchange_devkit.erpgen import generate
    from inexchange.ubl import DocumentError, Seller, build_from_batch
    from inexchange.validation import validate_batch

    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{Path(tmp) / 'erp.db'}")
        days = 7
        generate(engine, seed=3, customers=60, invoices=n, start_date=date(2026, 11, 16), days=days, drafts=10)
        with engine.connect() as conn:
            ids = [r[0] for r in conn.execute(text("SELECT invoice_id FROM customer_invoice WHERE status = 'posted'"))]

        started = time.perf_counter()
        with engine.connect() as conn:
            for table in ("customer_invoice", "customer_invoice_line", "customer"):
                conn.execute(text(f"SELECT * FROM {table}")).fetchall()  # fixed table names
        baseline = time.perf_counter() - started

        timings = {}
        started = time.perf_counter()
        batch = ErpReader(engine).load(ids)
        timings["load"] = time.perf_counter() - started

        started = time.perf_counter()
        validate_batch(batch, start=date(2026, 11, 16), end=date(2026, 11, 16 + days))
        timings["validate"] = time.perf_counter() - started

        seller = Seller.from_config(SELLER_CONFIG)
        started = time.perf_counter()
        built = 0
        for invoice_id in ids:
            try:
                build_from_batch(batch, invoice_id, seller)
                built += 1
            except DocumentError:
                pass
        timings["build"] = time.perf_counter() - started
        engine.dispose()

    print(f"\n{n} invoices ({built} documents built); baseline plain SQL read {baseline:.3f} s")
    print(f"{'stage':<10}{'seconds':>10}{'invoices/s':>14}{'x baseline':>12}")
    for stage, seconds in timings.items():
        print(f"{stage:<10}{seconds:>10.3f}{n / seconds:>14.0f}{seconds / baseline:>12.1f}")
    print(f"peak RSS so far: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    for size in [int(a) for a in sys.argv[1:]] or [1000, 5000]:
        run(size)
