"""Where the tests find the official Peppol BIS 3 validation artefacts, and stand-in rules for wiring tests.

The artefacts are not the project's: the tests read them from ``INEXCHANGE_PEPPOL_RULES`` or, by default,
from ``../shared/peppol-artefacts/3.0.19`` beside the repository. Without them the tests that need them
skip, or fail when ``INEXCHANGE_REQUIRE_PEPPOL=1`` (as in CI).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUIRE_PEPPOL = os.environ.get("INEXCHANGE_REQUIRE_PEPPOL") == "1"


def official_rules_folder() -> Path:
    """The folder of the official artefacts (release 3.0.19); skips, or fails when they are required."""
    folder = Path(os.environ.get("INEXCHANGE_PEPPOL_RULES") or ROOT.parent / "shared" / "peppol-artefacts" / "3.0.19")
    if not (folder / "CEN-EN16931-UBL.xsl").is_file() or not (folder / "PEPPOL-EN16931-UBL.xsl").is_file():
        message = f"the Peppol BIS 3 validation artefacts are not in {folder} (set INEXCHANGE_PEPPOL_RULES)"
        if REQUIRE_PEPPOL:
            pytest.fail(message + " (INEXCHANGE_REQUIRE_PEPPOL=1 makes these tests mandatory)")
        pytest.skip(message)
    return folder


def stand_in_rules(folder: Path, *, fatal_for: str, rule: str = "TEST-R001") -> Path:
    """A rules folder whose two stylesheets report as the official ones do (SVRL): the first flags the
    document whose ``cbc:ID`` is ``fatal_for`` with a fatal ``rule``, the second gives every document a
    warning. Returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    failed = (
        f'<xsl:if test="/*/cbc:ID = \'{fatal_for}\'"><svrl:failed-assert id="{rule}" flag="fatal" location="/*">'
        f"<svrl:text>[{rule}]-Testregeln stoppar dokument {fatal_for}</svrl:text></svrl:failed-assert></xsl:if>"
    )
    warned = (
        '<svrl:failed-assert id="TEST-W001" flag="warning" location="/*"><svrl:text>[TEST-W001]-En varning'
        "</svrl:text></svrl:failed-assert>"
    )
    for name, body in (("CEN-EN16931-UBL.xsl", failed), ("PEPPOL-EN16931-UBL.xsl", warned)):
        (folder / name).write_text(
            '<xsl:stylesheet version="2.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"'
            ' xmlns:svrl="http://purl.oclc.org/dsdl/svrl"'
            ' xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">'
            f'<xsl:template match="/"><svrl:schematron-output>{body}</svrl:schematron-output></xsl:template>'
            "</xsl:stylesheet>",
            encoding="utf-8",
        )
    return folder


def official_rules_folder_or_none() -> Path | None:
    """The folder of the official artefacts, or ``None`` when they are missing and not required; fails
    when they are missing and ``INEXCHANGE_REQUIRE_PEPPOL=1``. For the tests that run with the rules
    when they can (the simulator's ``peppol_rules``) and without them otherwise. Saxon-HE for Python
    (``saxonche``), which runs them, is needed the same way."""
    import importlib.util

    folder = Path(os.environ.get("INEXCHANGE_PEPPOL_RULES") or ROOT.parent / "shared" / "peppol-artefacts" / "3.0.19")
    if not (folder / "CEN-EN16931-UBL.xsl").is_file() or not (folder / "PEPPOL-EN16931-UBL.xsl").is_file():
        missing = f"the Peppol BIS 3 validation artefacts are not in {folder} (set INEXCHANGE_PEPPOL_RULES)"
    elif importlib.util.find_spec("saxonche") is None:
        missing = "saxonche (Saxon-HE for Python, the extra [peppol]) is not installed"
    else:
        return folder
    if REQUIRE_PEPPOL:
        pytest.fail(missing + " (INEXCHANGE_REQUIRE_PEPPOL=1 makes the Peppol rules mandatory)")
    return None


#: what the official rules (release 3.0.19) report for a document :func:`break_official_rules` made, as
#: ``(rule id, text)`` of their ``sch:assert`` (``CEN-EN16931-UBL.sch`` line 69, ``PEPPOL-EN16931-UBL.sch``
#: line 288), both ``flag="fatal"``, in the order the two stylesheets report them
BROKEN_DOCUMENT_FAILURES = (
    ("BR-CO-16", "[BR-CO-16]-Amount due for payment (BT-115) = Invoice total amount with VAT (BT-112) -Paid amount "
                 "(BT-113) +Rounding amount (BT-114)."),
    ("PEPPOL-EN16931-R003", "A buyer reference or purchase order reference MUST be provided."),
)


def break_official_rules(document: bytes) -> bytes:
    """``document`` without ``cbc:BuyerReference`` and ``cac:OrderReference`` (PEPPOL-EN16931-R003) and with a
    ``cbc:PayableAmount`` that is not the total with VAT (BR-CO-16): still well-formed UBL of the same
    invoice, broken for the official rules only."""
    from lxml import etree

    cbc = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
    cac = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
    root = etree.fromstring(document)
    references = root.findall(f"{{{cbc}}}BuyerReference") + root.findall(f"{{{cac}}}OrderReference")
    assert references, "the document should carry a buyer or order reference"
    for reference in references:
        root.remove(reference)
    payable = root.find(f"{{{cac}}}LegalMonetaryTotal/{{{cbc}}}PayableAmount")
    assert payable is not None and payable.text != "1.00"
    payable.text = "1.00"
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
