"""Generate a realistic SoftOne GO-like ERP data set for the InExchange dispatch pipeline.

``generate(engine, seed=7, ...)`` writes customers, invoices, lines and attachments into the four
adapter-contract tables (``include/sql/erp_schema.sql``) through any SQLAlchemy engine, and returns a
:class:`GenerationSummary` naming every deliberately bad customer and defective invoice. The command
line ``python -m inexchange_devkit.erpgen --url sqlite:///erp.db`` does the same.
"""

from __future__ import annotations

from inexchange_devkit.erpgen.catalog import INEXCHANGE_BILLING_METHOD, OTHER_BILLING_METHODS
from inexchange_devkit.erpgen.customers import BAD_CUSTOMER_CATEGORIES
from inexchange_devkit.erpgen.generator import (
    ERP_TABLES,
    DayCounts,
    GenerationSummary,
    TablesNotEmptyError,
    create_tables,
    drop_tables,
    generate,
)
from inexchange_devkit.erpgen.invoices import INVOICE_DEFECTS

__all__ = [
    "BAD_CUSTOMER_CATEGORIES",
    "ERP_TABLES",
    "INEXCHANGE_BILLING_METHOD",
    "INVOICE_DEFECTS",
    "OTHER_BILLING_METHODS",
    "DayCounts",
    "GenerationSummary",
    "TablesNotEmptyError",
    "create_tables",
    "drop_tables",
    "generate",
]
