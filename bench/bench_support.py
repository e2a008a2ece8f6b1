"""What the benchmarks share: the seller they build documents for, and a generated ERP's invoices."""

from __future__ import annotations

SELLER_CONFIG = {
    "name": "Bench AB", "org_number": "556677-8899", "vat_number": "SE556677889901",
    "street": "Gatan 1", "postal_code": "111 22", "city": "Stockholm", "bankgiro": "5050-1055",
}


def generated_batch(n: int, *, seed: int = 4, customers: int = 60) -> tuple[list[int], object]:
    """A demo ERP of ``n`` invoices (SQLite, in a temporary folder): the posted invoices' ids and their
    :class:`~inexchange.erp.InvoiceBatch`, loaded as the submit task loads them."""
    import tempfile
    from datetime import date
    from pathlib import Path

    from inexchange_devkit.erpgen import generate
    from sqlalchemy import create_engine, text

    from inexchange.erp import ErpReader

    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{Path(tmp) / 'erp.db'}")
        generate(engine, seed=seed, customers=customers, invoices=n, start_date=date(2026, 11, 16), days=7, drafts=10)
        with engine.connect() as conn:
            ids = [r[0] for r in conn.execute(text("SELECT invoice_id FROM customer_invoice WHERE status = 'posted'"))]
        batch = ErpReader(engine).load(ids)
        engine.dispose()
    return ids, batch
