"""The official Peppol BIS 3 rules (release 3.0.19) over the documents the builder makes: every golden
file passes with no fatal assertion, a broken document fails with the rules' ids, and the check is
configured by ``[inexchange] peppol_rules``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from dispatch_testing.peppol_rules import official_rules_folder, stand_in_rules
from dispatch_testing.peppol_warnings import Warnings
from inexchange.exceptions import InExchangeConfigError
from inexchange.operators.airflow_reads import peppol_rules_folder
from inexchange.peppol import PeppolRules, configured_rules, rejection, rules_in
from inexchange.ubl import NS_CBC

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def official() -> PeppolRules:
    return rules_in(str(official_rules_folder()))


@pytest.mark.parametrize("name", sorted(path.name for path in GOLDEN.glob("*.xml")))
def test_every_golden_document_passes_the_official_rules(
        official: PeppolRules, name: str, record_property: Any) -> None:
    failures = official.check((GOLDEN / name).read_bytes())

    warnings = Warnings("golden files")
    warnings.add(failures)
    warnings.record(record_property)  # the run's summary lists them, one line per rule id
    assert [f.describe() for f in failures if f.fatal] == []
    warnings.check_documented()  # each warning id is in README.md, with why it is acceptable


def broken(document: bytes) -> bytes:
    """The document without BuyerReference (BR-CO-25/PEPPOL-EN16931-R003) and with a PayableAmount that
    is not the sum (BR-CO-16)."""
    root = etree.fromstring(document)
    reference = root.find(f"{{{NS_CBC}}}BuyerReference")
    assert reference is not None
    root.remove(reference)
    payable = next(root.iter(f"{{{NS_CBC}}}PayableAmount"))
    payable.text = "1.00"
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_a_broken_document_fails_with_the_rules_it_breaks(official: PeppolRules) -> None:
    failures = official.check(broken((GOLDEN / "debit.xml").read_bytes()))

    fatal = {f.rule for f in failures if f.fatal}
    assert {"BR-CO-16", "PEPPOL-EN16931-R003"} <= fatal, failures
    message = rejection("10071", failures)
    assert message is not None and message.startswith("Faktura 10071: ")
    assert "BR-CO-16: " in message and "PEPPOL-EN16931-R003: " in message


def test_warnings_alone_reject_nothing(tmp_path: Path) -> None:
    rules = rules_in(str(stand_in_rules(tmp_path / "rules", fatal_for="another")))
    failures = rules.check((GOLDEN / "debit.xml").read_bytes())

    assert [(f.rule, f.flag) for f in failures] == [("TEST-W001", "warning")]
    assert rejection("10071", failures) is None


def test_the_folder_is_the_airflow_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = stand_in_rules(tmp_path / "rules", fatal_for="x")
    monkeypatch.setenv("AIRFLOW__INEXCHANGE__PEPPOL_RULES", str(folder))

    assert peppol_rules_folder() == str(folder)
    assert configured_rules(peppol_rules_folder()).folder == folder.resolve()


def test_without_the_option_the_check_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__INEXCHANGE__PEPPOL_RULES", raising=False)

    assert peppol_rules_folder() is None
    with pytest.raises(InExchangeConfigError, match=r"\[inexchange\] peppol_rules is not set"):
        configured_rules(peppol_rules_folder())


def test_a_folder_without_the_stylesheets_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InExchangeConfigError, match="lacks CEN-EN16931-UBL.xsl, PEPPOL-EN16931-UBL.xsl"):
        rules_in(str(tmp_path))
