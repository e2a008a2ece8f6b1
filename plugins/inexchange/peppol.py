"""The official Peppol BIS Billing 3.0 rules, run over a UBL document before it is uploaded.

The rules are OpenPEPPOL's validation artefacts: the CEN EN 16931 rules bound to UBL and the Peppol
BIS 3 rules, each a schematron compiled to XSLT (``CEN-EN16931-UBL.xsl``, ``PEPPOL-EN16931-UBL.xsl``).
They are not part of the provider: a folder holding the two files is named by the Airflow option
``[inexchange] peppol_rules`` (environment ``AIRFLOW__INEXCHANGE__PEPPOL_RULES``). They run on
Saxon-HE for Python (``saxonche``, the optional extra ``[peppol]``): each stylesheet is compiled once
per process (about a second), a document then takes milliseconds.

A document passes when neither stylesheet's report (SVRL) holds a failed assertion flagged ``fatal``;
warnings are returned too, for the caller to list.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from inexchange.exceptions import InExchangeConfigError

#: the two stylesheets, in the order they run
STYLESHEETS = ("CEN-EN16931-UBL.xsl", "PEPPOL-EN16931-UBL.xsl")
#: the Airflow option (section ``inexchange``) that names the folder holding them
RULES_OPTION = "peppol_rules"
_SVRL = "http://purl.oclc.org/dsdl/svrl"


@dataclass(frozen=True)
class FailedAssertion:
    """One rule a document breaks.

    :param rule: the rule's id, such as ``BR-CO-16`` or ``PEPPOL-EN16931-R003``.
    :param flag: ``fatal`` or ``warning``.
    :param text: the rule's text.
    :param location: where in the document (an XPath).
    """

    rule: str
    flag: str
    text: str
    location: str

    @property
    def fatal(self) -> bool:
        """Whether the rule stops the document (Peppol access points refuse it)."""
        return self.flag == "fatal"

    def describe(self) -> str:
        """``rule: text``, on one line."""
        return f"{self.rule}: {' '.join(self.text.split())}"


class PeppolRules:
    """The two compiled stylesheets of one artefacts folder.

    :param folder: the folder holding ``CEN-EN16931-UBL.xsl`` and ``PEPPOL-EN16931-UBL.xsl``.
    :raises InExchangeConfigError: ``saxonche`` is not installed, or the folder lacks a stylesheet.
    """

    def __init__(self, folder: Path) -> None:
        try:
            from saxonche import PySaxonProcessor
        except ImportError:
            raise InExchangeConfigError(
                "the Peppol check needs Saxon-HE for Python: install the provider's extra [peppol] (saxonche)"
            ) from None
        missing = [name for name in STYLESHEETS if not (folder / name).is_file()]
        if missing:
            raise InExchangeConfigError(
                f"the Peppol rules folder {folder} lacks {', '.join(missing)}: set [inexchange] {RULES_OPTION} "
                "to the folder of the validation artefacts (release 3.0.19 or later)"
            )
        self.folder = folder
        self._processor: Any = PySaxonProcessor(license=False)
        compiler = self._processor.new_xslt30_processor()
        self._stylesheets = [compiler.compile_stylesheet(stylesheet_file=str(folder / name)) for name in STYLESHEETS]
        self._lock = threading.Lock()  # one transformation at a time on the shared executables

    def check(self, document: bytes) -> list[FailedAssertion]:
        """Every rule ``document`` breaks (fatal and warning), in the order the stylesheets report them."""
        with self._lock:
            node = self._processor.parse_xml(xml_text=document.decode("utf-8"))
            reports = [stylesheet.transform_to_string(xdm_node=node) for stylesheet in self._stylesheets]
        return [failed for report in reports for failed in _failed_assertions(report)]


def _failed_assertions(report: str) -> list[FailedAssertion]:
    from lxml import etree

    root = etree.fromstring(report.encode("utf-8"))
    return [
        FailedAssertion(
            rule=element.get("id") or "",
            flag=element.get("flag") or "fatal",
            text="".join(element.findtext(f"{{{_SVRL}}}text") or "").strip(),
            location=element.get("location") or "",
        )
        for element in root.iter(f"{{{_SVRL}}}failed-assert")
    ]


@cache
def rules_in(folder: str) -> PeppolRules:
    """The rules of ``folder``, compiled once per process."""
    return PeppolRules(Path(folder))


def configured_rules(folder: str | None) -> PeppolRules:
    """The rules of the folder the option ``[inexchange] peppol_rules`` names, compiled once per process.

    :param folder: the option's value (read by the submit operator); None or empty when it is not set.
    :raises InExchangeConfigError: the option is not set, or the folder is not usable.
    """
    if not folder:
        raise InExchangeConfigError(
            f"check_peppol is on but [inexchange] {RULES_OPTION} is not set: set it (or the environment "
            "variable AIRFLOW__INEXCHANGE__PEPPOL_RULES) to the folder of the Peppol BIS 3 validation artefacts"
        )
    return rules_in(str(Path(folder).expanduser().resolve()))


def rejection(invoice_number: Any, failures: list[FailedAssertion]) -> str | None:
    """The rejection message of a document that breaks fatal rules (their ids and texts), or None.

    :param invoice_number: the invoice's number, for the message.
    :param failures: what :meth:`PeppolRules.check` found.
    """
    fatal = [failure.describe() for failure in failures if failure.fatal]
    if not fatal:
        return None
    return (
        f"Faktura {invoice_number}: dokumentet bryter mot Peppol BIS 3-reglerna och skulle stoppas; "
        f"rätta fakturan i ERP: {'; '.join(dict.fromkeys(fatal))}"
    )
