"""The Peppol BIS Billing 3.0 rules in the simulator: a document that breaks one ends in ``Error``.

InExchange accepts the upload and the send of a document that breaks the rules, then fails to
process it: the document moves through its statuses as any other and ends in ``Error`` (never
``Delivered``), with the rules it breaks in ``error.message``. The simulator does the same when it
is given a rules folder (``--peppol-rules FOLDER``, ``SimulatorConfig.peppol_rules``): the folder of
OpenPEPPOL's validation artefacts, holding the CEN EN 16931 and the Peppol rules compiled to XSLT
(``CEN-EN16931-UBL.xsl``, ``PEPPOL-EN16931-UBL.xsl``), as the provider's own check before upload
uses. They run on Saxon-HE for Python (``saxonche``).

The stylesheets are compiled once per process (about half a second for the official ones). Each
upload is checked in the background, on one worker thread, as soon as it is received; the send of
a document waits for its verdict (normally ready by then). Only the failed assertions flagged
``fatal`` count; warnings change nothing. The runner is the simulator's own (it shares no code with
the client), so the two can disagree.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree

#: the two stylesheets, in the order they run
STYLESHEETS = ("CEN-EN16931-UBL.xsl", "PEPPOL-EN16931-UBL.xsl")
#: ``error.status`` of a document that breaks a fatal rule or cannot be read
ERROR_STATUS = "ValidationFailed"
#: the rules named in ``error.message`` at most, and the length of each rule's text there
MAX_LISTED = 10
MAX_TEXT = 160
_SVRL = "http://purl.oclc.org/dsdl/svrl"
_REPORT_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
_DOCUMENT_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


class PeppolRulesError(ValueError):
    """The rules cannot be used: ``saxonche`` is missing, or the folder or a stylesheet is not usable."""


@dataclass(frozen=True, slots=True)
class Failure:
    """One fatal rule a document breaks: its id (``BR-CO-16``) and its text, on one line."""

    rule: str
    text: str


def check_folder(folder: Path) -> Path:
    """Return ``folder`` resolved when it holds both stylesheets and ``saxonche`` is installed.

    :raises PeppolRulesError: naming what is missing.
    """
    try:
        import saxonche  # noqa: F401
    except ImportError:
        raise PeppolRulesError(
            "--peppol-rules needs Saxon-HE for Python: install saxonche (the provider's extra [peppol])"
        ) from None
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise PeppolRulesError(f"--peppol-rules: {folder} is not a folder (give the folder of the Peppol "
                               "BIS 3 validation artefacts, release 3.0.19 or later)")
    missing = [name for name in STYLESHEETS if not (folder / name).is_file()]
    if missing:
        raise PeppolRulesError(f"--peppol-rules: the folder {folder} lacks {', '.join(missing)} (give the folder "
                               "of the Peppol BIS 3 validation artefacts, release 3.0.19 or later)")
    return folder.resolve()


class PeppolRules:
    """The two compiled stylesheets of one folder; :meth:`fatal` runs them over a document.

    :param folder: a folder that :func:`check_folder` accepts.
    :raises PeppolRulesError: the folder is not usable or a stylesheet does not compile.
    """

    def __init__(self, folder: Path) -> None:
        from saxonche import PySaxonProcessor

        self.folder = check_folder(folder)
        self._processor: Any = PySaxonProcessor(license=False)
        compiler = self._processor.new_xslt30_processor()
        self._stylesheets = []
        for name in STYLESHEETS:
            try:
                self._stylesheets.append(compiler.compile_stylesheet(stylesheet_file=str(self.folder / name)))
            except Exception as exc:  # saxonche raises PySaxonApiError, whose import path varies by release
                raise PeppolRulesError(f"--peppol-rules: {self.folder / name} does not compile: {exc}") from None
        self._lock = threading.Lock()  # one transformation at a time on the shared executables

    def fatal(self, content: bytes) -> list[Failure]:
        """The fatal rules ``content`` breaks, each rule once, in the order the stylesheets report them.

        :raises ValueError: the content is not UTF-8 or not well-formed XML.
        """
        text = content.decode("utf-8")
        try:  # lxml first: Saxon would also print its parse errors to standard error
            etree.fromstring(content, parser=_DOCUMENT_PARSER)
        except etree.XMLSyntaxError as exc:
            raise ValueError(f"not well-formed XML: {exc}") from None
        with self._lock:
            try:
                node = self._processor.parse_xml(xml_text=text)
            except Exception as exc:  # PySaxonApiError
                raise ValueError(f"not well-formed XML: {' '.join(str(exc).split())}") from None
            reports = [stylesheet.transform_to_string(xdm_node=node) for stylesheet in self._stylesheets]
        failures: dict[str, Failure] = {}
        for report in reports:
            root = etree.fromstring(report.encode("utf-8"), parser=_REPORT_PARSER)
            for element in root.iter(f"{{{_SVRL}}}failed-assert"):
                if (element.get("flag") or "fatal") != "fatal":
                    continue
                rule = element.get("id") or "?"
                text = " ".join((element.findtext(f"{{{_SVRL}}}text") or "").split())
                failures.setdefault(rule, Failure(rule, text))
        return list(failures.values())


@cache
def rules_in(folder: str) -> PeppolRules:
    """The rules of ``folder``, compiled once per process."""
    return PeppolRules(Path(folder))


def error_for(failures: list[Failure]) -> dict[str, Any] | None:
    """The ``error`` of a document that breaks these fatal rules, or ``None`` when there are none."""
    if not failures:
        return None
    listed = [
        f"{failure.rule}: {failure.text if len(failure.text) <= MAX_TEXT else failure.text[: MAX_TEXT - 1] + '…'}"
        for failure in failures[:MAX_LISTED]
    ]
    more = f" (and {len(failures) - MAX_LISTED} more)" if len(failures) > MAX_LISTED else ""
    message = f"The document breaks the Peppol BIS Billing 3.0 rules: {'; '.join(listed)}{more}"
    return {"status": ERROR_STATUS, "message": message, "moreInfoUri": None}


class PeppolCheck:
    """Checks uploads against the rules of one folder, in the background, one at a time.

    :param folder: the rules folder; its stylesheets are compiled here (once per process).
    :raises PeppolRulesError: the rules cannot be used.
    """

    def __init__(self, folder: Path) -> None:
        self.rules = rules_in(str(check_folder(folder)))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="peppol-check")
        self._counts_lock = threading.Lock()
        self.checked = 0
        self.failed = 0
        self.seconds = 0.0

    def submit(self, content: bytes) -> Future[dict[str, Any] | None]:
        """Start checking ``content``; the future gives the document's ``error``, or ``None`` when it passes."""
        return self._executor.submit(self._verdict, content)

    def _verdict(self, content: bytes) -> dict[str, Any] | None:
        started = time.thread_time()
        try:
            error = error_for(self.rules.fatal(content))
        except ValueError as exc:
            error = {"status": ERROR_STATUS, "message": f"The document could not be read: {exc}"[:500],
                     "moreInfoUri": None}
        except Exception as exc:  # a processing failure is the document's Error, as at InExchange
            error = {"status": ERROR_STATUS, "message": f"The document could not be validated: {exc}"[:500],
                     "moreInfoUri": None}
        with self._counts_lock:
            self.checked += 1
            self.failed += error is not None
            self.seconds += time.thread_time() - started
        return error

    def reset(self) -> None:
        """Start the counters again."""
        with self._counts_lock:
            self.checked = self.failed = 0
            self.seconds = 0.0

    def stats(self) -> dict[str, Any]:
        """``checked`` uploads, how many ``failed``, and the CPU time spent (``cpu_ms``, and per upload)."""
        with self._counts_lock:
            checked, failed, seconds = self.checked, self.failed, self.seconds
        return {
            "folder": str(self.rules.folder),
            "checked": checked,
            "failed": failed,
            "cpu_ms": round(seconds * 1000, 1),
            "cpu_ms_per_document": round(seconds * 1000 / checked, 2) if checked else None,
        }

    def close(self) -> None:
        """Stop the worker thread once the checks in progress are done."""
        self._executor.shutdown(wait=False, cancel_futures=True)
