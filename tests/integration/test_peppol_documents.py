"""The official Peppol BIS 3 rules (release 3.0.19) over every document the pipeline can make.

Two sources of documents, each built the way the submit task builds them (the ERP reader, the
validation, then :func:`inexchange.ubl.build_from_batch`) from a real SQLite ERP:

- a generated ERP large enough to cover each code path of the builder: at least 2,000 documents,
  debit and credit, GLN and organisation-number buyers, foreign buyers, attachments, mixed rates,
  rounding, long texts and every unit the builder knows;
- the hostile corpus (:mod:`dispatch_testing.hostile_corpus`): every case the pipeline does not refuse.

Zero fatal assertions is the bar. Warnings are held to README.md
(:mod:`dispatch_testing.peppol_warnings`): a warning id it does not list fails, naming the rule and its
text, and so does a listed id that no document (golden files, generated ERP, hostile corpus) gives
any more; the run's summary prints them, one line per rule id (or that there were none).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import create_engine, text

from dispatch_testing.hostile_corpus import RUN_DAY, Sent, cases_for
from dispatch_testing.peppol_rules import official_rules_folder
from dispatch_testing.peppol_warnings import Warnings, check_still_given
from dispatch_testing.support import SELLER, sqlite_conn_env
from inexchange.db import erp_engine
from inexchange.erp import INEXCHANGE_BILLING_METHOD, ErpReader
from inexchange.peppol import FailedAssertion, PeppolRules, rules_in
from inexchange.ubl import DocumentError, Seller, build_from_batch
from inexchange.units import UNIT_CODES
from inexchange.validation import validate
from inexchange.values import integer_id
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
GOLDEN = Path(__file__).resolve().parents[1] / "unit" / "golden"


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


@dataclass
class Checked:
    """What the rules found over the documents of one source."""

    #: ``(invoice number, document)`` of every document built
    built: list[tuple[str, bytes]]
    #: the fatal failures, ``number: rule: text``
    fatal: list[str]
    warnings: Warnings


def checked(rules: PeppolRules, source: str, built: Iterator[tuple[str, bytes]]) -> Checked:
    """Every document of ``built`` through the rules."""
    result = Checked([], [], Warnings(source))
    for number, document in built:
        result.built.append((number, document))
        failures: list[FailedAssertion] = rules.check(document)
        result.fatal += [f"{number}: {failure.describe()}" for failure in failures if failure.fatal]
        result.warnings.add(failures)
    return result


@pytest.fixture(scope="module")
def generated(rules: PeppolRules, tmp_path_factory: pytest.TempPathFactory) -> Checked:
    """The documents of a generated ERP (a week, 3,200 invoices) through the rules."""
    from inexchange_devkit.erpgen.generator import generate

    path = tmp_path_factory.mktemp("generated-erp") / "erp.db"
    generate(create_engine(f"sqlite:///{path}"), seed=31, customers=400, invoices=3200, start_date=START, days=DAYS,
             drafts=20)
    with pytest.MonkeyPatch.context() as monkeypatch:
        return checked(rules, "generated ERP", documents(path, START, START + timedelta(days=DAYS), monkeypatch))


@pytest.fixture(scope="module")
def hostile(rules: PeppolRules, tmp_path_factory: pytest.TempPathFactory) -> tuple[Checked, set[str]]:
    """The documents of the hostile corpus through the rules, and the invoice numbers it expects sent."""
    path = tmp_path_factory.mktemp("hostile-erp") / "erp.db"
    engine = create_engine(f"sqlite:///{path}")
    cases = cases_for("sqlite")
    with engine.begin() as conn:
        for ddl in permissive_ddl("sqlite"):
            conn.execute(text(ddl))
    write_cases(engine, cases)
    engine.dispose()
    sent = {str(case.invoice_number) for case in cases if isinstance(case.expect, Sent)}
    with pytest.MonkeyPatch.context() as monkeypatch:
        return checked(rules, "hostile corpus", documents(path, RUN_DAY, RUN_DAY + timedelta(days=1), monkeypatch)), sent


#: the EU's member states (ISO 3166 codes; Greece as GR, the code of its postal address)
EU_COUNTRIES = frozenset(
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split()
)


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
    found |= {"buyer outside the EU" for code in country if code not in EU_COUNTRIES}
    found |= {"EU buyer abroad" for code in country if code != "SE" and code in EU_COUNTRIES}
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
    generated: Checked, record_property: Any
) -> None:
    generated.warnings.record(record_property)
    assert generated.fatal == [], "\n".join(generated.fatal[:50])
    generated.warnings.check_documented()
    assert len(generated.built) >= AT_LEAST
    covered: set[str] = set().union(*(features(document) for _, document in generated.built))
    wanted = {"Invoice", "CreditNote", "endpoint 0088", "endpoint 0007", "endpoint 0192", "endpoint 9930",
              "foreign buyer", "attachment", "mixed rates", "rounding", "long text"}
    wanted |= {"buyer outside the EU", "EU buyer abroad"}
    wanted |= {f"category {code}" for code in ("S", "Z", "E", "AE", "K", "G", "O")}
    wanted |= {f"unit {code}" for code in UNIT_CODES.values()}
    assert wanted <= covered, f"not covered: {sorted(wanted - covered)}"


def test_every_hostile_case_the_pipeline_sends_passes_the_official_rules(
    hostile: tuple[Checked, set[str]], record_property: Any
) -> None:
    found, sent = hostile

    found.warnings.record(record_property)
    assert found.fatal == [], "\n".join(found.fatal)
    found.warnings.check_documented()
    built = {number for number, _ in found.built}
    assert sent <= built, sorted(sent - built)
    assert len(found.built) >= len(sent) > 0


def test_readme_lists_exactly_the_warnings_the_rules_give(
    rules: PeppolRules, generated: Checked, hostile: tuple[Checked, set[str]]
) -> None:
    """Over the golden files, the generated ERP and the hostile corpus together: every warning id README.md
    lists is still given (a line for a warning no document gives any more is no longer true), and every
    one given is listed."""
    golden = Warnings("golden files")
    for path in sorted(GOLDEN.glob("*.xml")):
        golden.add(rules.check(path.read_bytes()))
    assert golden.documents >= 6, f"the golden files should be in {GOLDEN}"

    for warnings in (golden, generated.warnings, hostile[0].warnings):
        warnings.check_documented()
    check_still_given([golden, generated.warnings, hostile[0].warnings])
