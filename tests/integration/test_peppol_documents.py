"""The official Peppol BIS 3 rules (release 3.0.19) over every document the pipeline can make.

Two sources of documents, each built the way the submit task builds them (the ERP reader, the
validation, then :func:`inexchange.ubl.build_from_batch`) from a real SQLite ERP:

- a generated ERP large enough to cover each code path of the builder: at least 2,000 documents,
  debit and credit, GLN and organisation-number buyers, foreign buyers, attachments, mixed rates,
  rounding, long texts and every unit the builder knows;
- the hostile corpus (:mod:`dispatch_testing.hostile_corpus`): every case the pipeline does not refuse.

Zero fatal assertions is the bar. Warnings are printed, one line per rule id with its count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import create_engine, text

from dispatch_testing.hostile_corpus import RUN_DAY, Sent, cases_for
from dispatch_testing.peppol_rules import official_rules_folder
from dispatch_testing.support import SELLER, sqlite_conn_env
from inexchange.db import erp_engine, integer_id
from inexchange.erp import INEXCHANGE_BILLING_METHOD, ErpReader
from inexchange.peppol import FailedAssertion, PeppolRules, rules_in
from inexchange.ubl import DocumentError, Seller, build_from_batch
from inexchange.units import UNIT_CODES
from inexchange.validation import validate
from test_hostile_input import permissive_ddl, write_cases

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

NS = {
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
}
START = date(2026, 11, 16)
DAYS = 7
#: documents the generated ERP must give at the least
AT_LEAST = 2000


@pytest.fixture(scope="module")
def rules() -> PeppolRules:
    return rules_in(str(official_rules_folder()))


def documents(path: Path, start: date, end: date, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, bytes]]:
    """``(invoice number, document)`` of every invoice of ``[start, end)`` the pipeline would send, read from
    the ERP in the SQLite file ``path`` through the pipeline's own (read-only) engine."""
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", sqlite_conn_env(path))
    reader = ErpReader(erp_engine("erp_default"))
    extracted = reader.extract(
        start_date=start.isoformat(), end_date=end.isoformat(), billing_method=INEXCHANGE_BILLING_METHOD
    )
    # as the extract does: a row without a usable invoice_id never reaches the ledger
    rows = [{**row, "invoice_id": key} for row in extracted if (key := integer_id(row["invoice_id"])) is not None]
    seller = Seller.from_config(SELLER)
    for chunk in range(0, len(rows), 500):
        part = rows[chunk : chunk + 500]
        batch = reader.load([row["invoice_id"] for row in part])
        numbers = reader.duplicate_invoice_numbers(row["invoice_number"] for row in part)
        verdicts = validate(batch, start=start, end=end, duplicate_numbers=numbers).messages
        for row in part:
            if verdicts.get(int(row["invoice_id"]), "missing") is not None:
                continue  # refused by the validation: never built
            try:
                yield str(row["invoice_number"]), build_from_batch(batch, int(row["invoice_id"]), seller)
            except DocumentError:
                continue  # refused by the builder, with its message: never sent


def checked(rules: PeppolRules, built: Iterator[tuple[str, bytes]]) -> tuple[list[bytes], list[str], Counter[str]]:
    """The documents, their fatal failures (``number: rule: text``) and the warnings counted per rule."""
    kept: list[bytes] = []
    fatal: list[str] = []
    warnings: Counter[str] = Counter()
    for number, document in built:
        kept.append(document)
        failures: list[FailedAssertion] = rules.check(document)
        fatal += [f"{number}: {failure.describe()}" for failure in failures if failure.fatal]
        warnings.update(failure.rule for failure in failures if not failure.fatal)
    return kept, fatal, warnings


def listed(name: str, warnings: Counter[str]) -> None:
    for rule, count in sorted(warnings.items()):
        print(f"{name}: warning {rule} in {count} documents")


def features(document: bytes) -> set[str]:
    """What a document exercises of the builder."""
    root = etree.fromstring(document)
    found = {etree.QName(root).localname}
    found |= {f"endpoint {scheme}" for scheme in root.xpath("cac:AccountingCustomerParty//cbc:EndpointID/@schemeID",
                                                            namespaces=NS)}
    found |= {f"category {code}" for code in root.xpath("cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory/cbc:ID/text()",
                                                        namespaces=NS)}
    found |= {f"unit {code}" for code in root.xpath("//@unitCode", namespaces=NS)}
    country = root.xpath("cac:AccountingCustomerParty//cac:PostalAddress/cac:Country/cbc:IdentificationCode/text()",
                         namespaces=NS)
    found |= {"foreign buyer" for code in country if code != "SE"}
    if root.xpath("cac:AdditionalDocumentReference/cac:Attachment", namespaces=NS):
        found.add("attachment")
    if len(root.xpath("cac:TaxTotal/cac:TaxSubtotal", namespaces=NS)) > 1:
        found.add("mixed rates")
    if root.xpath("cac:LegalMonetaryTotal/cbc:PayableRoundingAmount", namespaces=NS):
        found.add("rounding")
    if any(len(text) >= 200 for text in root.xpath("//cac:Item/cbc:Name/text()", namespaces=NS)):
        found.add("long text")
    return found


def test_every_document_of_a_generated_erp_passes_the_official_rules(
    rules: PeppolRules, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inexchange_devkit.erpgen.generator import generate

    path = tmp_path / "erp.db"
    generate(create_engine(f"sqlite:///{path}"), seed=31, customers=400, invoices=3200, start_date=START, days=DAYS,
             drafts=20)

    kept, fatal, warnings = checked(rules, documents(path, START, START + timedelta(days=DAYS), monkeypatch))

    listed("generated ERP", warnings)
    assert fatal == [], "\n".join(fatal[:50])
    assert len(kept) >= AT_LEAST
    covered: set[str] = set().union(*(features(document) for document in kept))
    wanted = {"Invoice", "CreditNote", "endpoint 0088", "endpoint 0007", "endpoint 0192", "endpoint 9930",
              "foreign buyer", "attachment", "mixed rates", "rounding", "long text"}
    wanted |= {f"category {code}" for code in ("S", "Z", "E", "AE", "K", "G")}
    wanted |= {f"unit {code}" for code in UNIT_CODES.values()}
    assert wanted <= covered, f"not covered: {sorted(wanted - covered)}"


def test_every_hostile_case_the_pipeline_sends_passes_the_official_rules(
    rules: PeppolRules, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "erp.db"
    engine = create_engine(f"sqlite:///{path}")
    cases = cases_for("sqlite")
    with engine.begin() as conn:
        for ddl in permissive_ddl("sqlite"):
            conn.execute(text(ddl))
    write_cases(engine, cases)
    sent = {str(case.invoice_number) for case in cases if isinstance(case.expect, Sent)}

    built: list[tuple[str, Any]] = list(documents(path, RUN_DAY, RUN_DAY + timedelta(days=1), monkeypatch))
    kept, fatal, warnings = checked(rules, iter(built))

    listed("hostile corpus", warnings)
    assert fatal == [], "\n".join(fatal)
    assert sent <= {number for number, _ in built}, sorted(sent - {number for number, _ in built})
    assert len(kept) >= len(sent) > 0
