"""The warnings of the official Peppol rules over the project's documents, held to README.md.

README.md lists every warning id the rules give over the golden files, the generated ERP and the
hostile corpus, after the sentence that starts "Warnings listed by rule id": either ``: none.``, or
``:`` followed by one Markdown list line per rule id::

    - `PEPPOL-EN16931-R046`: why the warning is acceptable, or how the documents were fixed

The Peppol tests fail on a warning id README.md does not list (naming the rule and its text) and on a
listed id no document gives any more. Each test records what it found as the user property
``peppol_warnings``, which travels with its report (also from pytest-xdist's workers), and
:func:`summary_lines` turns those into the lines ``tests/conftest.py`` prints at the end of the run:
one per rule id, or one saying there were none.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dispatch_testing.peppol_rules import ROOT

README = ROOT / "README.md"
#: the sentence of README.md that opens the list
MARKER = "Warnings listed by rule id"
#: the user property the tests record their warnings under
PROPERTY = "peppol_warnings"
_ENTRY = re.compile(r"^\s*[-*] `(?P<rule>[A-Za-z0-9._-]+)`:\s*(?P<why>\S.*)$")
#: the sources, in the order the summary names them
SOURCES = ("golden files", "generated ERP", "hostile corpus")


def documented_warnings(readme: str | None = None) -> dict[str, str]:
    """The warning ids README.md lists, each with why it is acceptable or fixed.

    :raises ValueError: README.md does not hold the list as the module docstring describes it.
    """
    lines = (README.read_text(encoding="utf-8") if readme is None else readme).splitlines()
    starts = [number for number, line in enumerate(lines) if MARKER in line]
    if len(starts) != 1:
        raise ValueError(f"README.md should hold the sentence {MARKER!r} once, not {len(starts)} times")
    end = starts[0]
    sentence = lines[end].split(MARKER, 1)[1]
    while ":" not in sentence and end + 1 < len(lines) and lines[end + 1].strip():
        end += 1
        sentence += " " + lines[end]
    if ":" not in sentence:
        raise ValueError(f"README.md: the sentence {MARKER!r} should end with ': none.' or ':' and the list")
    if re.match(r"\s*none\b", sentence.split(":", 1)[1], flags=re.IGNORECASE):
        return {}
    documented: dict[str, str] = {}
    for line in lines[end + 1 :]:
        entry = _ENTRY.match(line)
        if entry is None:
            break
        if entry["rule"] in documented:
            raise ValueError(f"README.md lists the warning {entry['rule']} twice")
        documented[entry["rule"]] = entry["why"].strip()
    if not documented:
        raise ValueError(f"README.md: {MARKER!r} is followed neither by 'none' nor by lines '- `RULE-ID`: why'")
    return documented


@dataclass
class Warnings:
    """The warnings the official rules gave over the documents of one source: per rule id, in how many
    documents, and the rule's text."""

    source: str
    documents: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    texts: dict[str, str] = field(default_factory=dict)

    def add(self, failures: Iterable[Any]) -> None:
        """Count one document, given what :meth:`inexchange.peppol.PeppolRules.check` found in it."""
        self.documents += 1
        warned = {failure.rule: failure for failure in failures if not failure.fatal}
        self.counts.update(warned.keys())
        for rule, failure in warned.items():
            self.texts.setdefault(rule, " ".join(failure.text.split()))

    def record(self, record_property: Callable[[str, object], None]) -> None:
        """Attach these warnings to the test's report (pytest's ``record_property``)."""
        record_property(PROPERTY, {
            "source": self.source,
            "documents": self.documents,
            "warnings": {rule: [count, self.texts[rule]] for rule, count in sorted(self.counts.items())},
        })

    def check_documented(self, documented: Mapping[str, str] | None = None) -> None:
        """Fail on every warning id README.md does not list, naming the rule and its text."""
        documented = documented_warnings() if documented is None else documented
        new = sorted(set(self.counts) - set(documented))
        if new:
            raise AssertionError("\n".join(
                f"{self.source}: the official Peppol rules give the warning {rule} in {self.counts[rule]} of "
                f"{self.documents} documents ({self.texts[rule]}), which README.md does not list: document it "
                f"in README.md under {MARKER!r}, one line '- `{rule}`: why it is acceptable' (or fix the documents)"
                for rule in new
            ))


def check_still_given(given: Iterable[Warnings], documented: Mapping[str, str] | None = None) -> None:
    """Fail on every warning id README.md lists that none of ``given`` (every source) holds any more."""
    documented = documented_warnings() if documented is None else documented
    seen = {rule for warnings in given for rule in warnings.counts}
    stale = sorted(set(documented) - seen)
    if stale:
        raise AssertionError("\n".join(
            f"README.md lists the warning {rule} ({documented[rule]}), but no document of the golden files, the "
            f"generated ERP or the hostile corpus gives it any more: remove its line from README.md"
            for rule in stale
        ))


def summary_lines(reports: Iterable[Any]) -> list[str]:
    """The lines of the run's summary from the test reports that recorded :data:`PROPERTY`: one per
    warning id (with the documents, the sources, the rule's text and README.md's reason), or one saying
    there was none; no line when no test recorded any."""
    documents: Counter[str] = Counter()
    counts: dict[str, Counter[str]] = {}
    texts: dict[str, str] = {}
    for report in reports:
        for name, value in getattr(report, "user_properties", ()):
            if name != PROPERTY:
                continue
            documents[value["source"]] += value["documents"]
            for rule, (count, text) in value["warnings"].items():
                counts.setdefault(rule, Counter())[value["source"]] += count
                texts.setdefault(rule, text)
    if not documents:
        return []
    order = [s for s in SOURCES if s in documents] + sorted(set(documents) - set(SOURCES))
    total = sum(documents.values())
    if not counts:
        per_source = ", ".join(f"{source} {documents[source]}" for source in order)
        return [f"official Peppol rules: no warnings in {total} documents ({per_source})"]
    try:
        documented = documented_warnings()
    except ValueError:  # the tests name what is wrong with README.md
        documented = {}
    lines = []
    for rule in sorted(counts):
        where = ", ".join(f"{source} {counts[rule][source]}" for source in order if counts[rule][source])
        why = f"README.md: {documented[rule]}" if rule in documented else "NOT listed in README.md"
        lines.append(f"official Peppol rules: warning {rule} in {sum(counts[rule].values())} of {total} documents "
                     f"({where}): {texts[rule]} -- {why}")
    return lines
