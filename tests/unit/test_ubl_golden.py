"""Golden files: the exact bytes of the documents the builder makes for typical invoices.

A change of output shows as a diff against tests/unit/golden/*.xml, to be read and accepted on
purpose: run with INEXCHANGE_UPDATE_GOLDEN=1 to rewrite the files, then review them with git diff.
"""

from __future__ import annotations

import os
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from dispatch_testing.erp_rows import (
    GLN,
    SELLER_CONFIG,
    attachment_row,
    credit_rows,
    customer_row,
    invoice_rows,
    single_batch,
)
from inexchange.ubl import NS_CAC, NS_CBC, NS_CREDIT_NOTE, NS_INVOICE, Seller, build_from_batch

GOLDEN = Path(__file__).parent / "golden"


def _rounded() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header, lines = invoice_rows(items=(("3", "33.33", "25"),))
    header["total_amount"] = (header["amount_ex_vat"] + header["vat_amount"]).quantize(Decimal("1"), ROUND_HALF_UP)
    return header, lines


CASES: dict[str, dict[str, Any]] = {
    "debit": {},
    "credit-note": {"invoice": credit_rows()},
    "gln-customer": {"customer": customer_row(gln=GLN, marking="Avdelning 44")},
    "attachments": {"customer": customer_row(attach_documents=True),
                    "attachments": [attachment_row(), attachment_row(file_name="foto.png", content=b"\x89PNG\r\n",
                                                                     mime_type="image/png")]},
    "mixed-vat": {"invoice": invoice_rows(items=(("2", "1200", "25"), ("5", "89.90", "12"), ("3", "249", "6"),
                                                 ("1", "500", "0")), order_number="PO-7781")},
    "rounding": {"invoice": _rounded()},
}


def _document(case: dict[str, Any]) -> bytes:
    batch = single_batch(case.get("customer"), case.get("invoice"), case.get("attachments", []))
    return build_from_batch(batch, next(iter(batch.invoices.index)), Seller.from_config(SELLER_CONFIG))


@pytest.mark.parametrize("name", sorted(CASES))
def test_document_matches_its_golden_file(name: str) -> None:
    produced = _document(CASES[name])
    path = GOLDEN / f"{name}.xml"
    if os.environ.get("INEXCHANGE_UPDATE_GOLDEN") == "1":
        path.write_bytes(produced)
    assert path.exists(), f"{path} missing: run with INEXCHANGE_UPDATE_GOLDEN=1 and review it"
    assert produced == path.read_bytes()


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_file_is_well_formed_in_the_ubl_namespaces(name: str) -> None:
    root = etree.fromstring((GOLDEN / f"{name}.xml").read_bytes())
    expected = NS_CREDIT_NOTE if name == "credit-note" else NS_INVOICE
    assert etree.QName(root).namespace == expected
    assert root.nsmap == {None: expected, "cac": NS_CAC, "cbc": NS_CBC}
    assert (GOLDEN / f"{name}.xml").read_bytes().startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
