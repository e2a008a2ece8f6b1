"""The Peppol warnings are held to README.md (:mod:`dispatch_testing.peppol_warnings`): its list is read
as written, a warning it does not list fails naming the rule and its text, a listed one no document
gives any more fails, and the run's summary has one line per rule id (or one saying there were none)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from dispatch_testing.peppol_rules import stand_in_rules
from dispatch_testing.peppol_warnings import (
    PROPERTY,
    Warnings,
    check_still_given,
    documented_warnings,
    summary_lines,
)
from inexchange.peppol import FailedAssertion, rules_in

GOLDEN = Path(__file__).parent / "golden"
LISTED = """Every document passes the rules.
Warnings listed by rule id, one line each with why it is acceptable or how it was fixed (the
tests hold it):
- `PEPPOL-EN16931-R046`: acceptable, the unit price is given with the base quantity the ERP stores
* `BR-CL-23`: fixed in 1.2 (unit codes from the UN/ECE list only)

## The two commands
"""


def warning(rule: str, text: str) -> FailedAssertion:
    return FailedAssertion(rule=rule, flag="warning", text=text, location="/*")


def test_the_readme_list_is_read_one_line_per_rule_id() -> None:
    assert documented_warnings(LISTED) == {
        "PEPPOL-EN16931-R046": "acceptable, the unit price is given with the base quantity the ERP stores",
        "BR-CL-23": "fixed in 1.2 (unit codes from the UN/ECE list only)",
    }
    assert documented_warnings("Intro. Warnings listed by rule id, one line each\nwith why: none.\nMore.") == {}
    assert isinstance(documented_warnings(), dict)  # README.md itself is readable


@pytest.mark.parametrize(("readme", "problem"), [
    ("No list here.", "once, not 0 times"),
    ("Warnings listed by rule id: none.\nWarnings listed by rule id: none.", "once, not 2 times"),
    ("Warnings listed by rule id, with why\n\nno colon", "should end with"),
    ("Warnings listed by rule id:\nthe list is missing", "neither by 'none'"),
    ("Warnings listed by rule id:\n- `BR-01`: why\n- `BR-01`: again", "BR-01 twice"),
    ("Warnings listed by rule id:\n- `BR-01`:\n", "neither by 'none'"),
])
def test_a_readme_without_a_readable_list_is_named(readme: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        documented_warnings(readme)


def test_a_warning_the_readme_does_not_list_fails_naming_the_rule_and_its_text(tmp_path: Path) -> None:
    rules = rules_in(str(stand_in_rules(tmp_path / "rules", fatal_for="another")))
    warnings = Warnings("golden files")
    for name in ("debit.xml", "credit-note.xml"):
        warnings.add(rules.check((GOLDEN / name).read_bytes()))

    assert (warnings.documents, dict(warnings.counts)) == (2, {"TEST-W001": 2})
    with pytest.raises(AssertionError) as failed:
        warnings.check_documented({})
    assert str(failed.value) == (
        "golden files: the official Peppol rules give the warning TEST-W001 in 2 of 2 documents "
        "([TEST-W001]-En varning), which README.md does not list: document it in README.md under "
        "'Warnings listed by rule id', one line '- `TEST-W001`: why it is acceptable' (or fix the documents)"
    )
    warnings.check_documented({"TEST-W001": "acceptable: the stand-in rules warn about every document"})


def test_a_listed_warning_no_document_gives_fails() -> None:
    given = Warnings("generated ERP")
    given.add([warning("BR-CL-23", "[BR-CL-23]-Unit code MUST be coded ...")])
    documented = documented_warnings(LISTED)

    with pytest.raises(AssertionError, match=r"lists the warning PEPPOL-EN16931-R046 \(acceptable, .*remove its line"):
        check_still_given([given, Warnings("hostile corpus")], documented)
    given.add([warning("PEPPOL-EN16931-R046", "[PEPPOL-EN16931-R046]-Item net price MUST ...")])
    check_still_given([given], documented)


def recorded(warnings: Warnings) -> SimpleNamespace:
    """A test report carrying ``warnings`` as a test's ``record_property`` leaves them."""
    properties: list[tuple[str, object]] = []
    warnings.record(lambda name, value: properties.append((name, value)))
    return SimpleNamespace(user_properties=properties)


def test_the_summary_has_one_line_per_rule_id_or_one_saying_none() -> None:
    golden, generated = Warnings("golden files"), Warnings("generated ERP")
    golden.add([])
    generated.add([warning("BR-CL-23", "[BR-CL-23]-Unit code")])
    generated.add([warning("BR-CL-23", "[BR-CL-23]-Unit code"), warning("BR-CL-23", "[BR-CL-23]-Unit code"),
                   warning("PEPPOL-X", "Another")])
    unrelated = SimpleNamespace(user_properties=[("other", 1)])

    assert summary_lines([unrelated]) == []
    assert summary_lines([recorded(golden), unrelated]) == [
        "official Peppol rules: no warnings in 1 documents (golden files 1)"
    ]
    assert summary_lines([recorded(generated), recorded(golden)]) == [
        "official Peppol rules: warning BR-CL-23 in 2 of 3 documents (generated ERP 2): [BR-CL-23]-Unit code "
        "-- NOT listed in README.md",
        "official Peppol rules: warning PEPPOL-X in 1 of 3 documents (generated ERP 1): Another "
        "-- NOT listed in README.md",
    ]
    assert recorded(generated).user_properties[0][0] == PROPERTY
