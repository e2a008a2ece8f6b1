"""Edge cases of the validation rules, one table per rule, and rows the schema cannot even read.

Every table holds valid and invalid cases and goes through :func:`validate_batch`, the public
behaviour: the cases of a table are validated together, one invoice (and customer) each, once with
the Decimal amounts and date objects PostgreSQL returns and once with the floats, integers and ISO
text SQLite returns; the SQLite run must give exactly the PostgreSQL run's message. Each unreadable
row gets its own batch next to a valid invoice. Identifiers that a table calls valid are built and
checked with python-stdnum in this module (:func:`test_table_identifiers_are_what_stdnum_says`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from stdnum import ean, luhn
from stdnum.dk import cvr
from stdnum.eu import vat as eu_vat
from stdnum.fi import alv
from stdnum.se import orgnr, personnummer
from stdnum.se import vat as se_vat

from dispatch_testing.erp_rows import (
    CUSTOMER_NUMBER,
    END,
    GLN,
    INVOICE_DATE,
    INVOICE_ID,
    INVOICE_NUMBER,
    ORG_NUMBER,
    OTHER_ORG_NUMBER,
    PERSONNUMMER,
    START,
    VAT_NUMBER,
    credit_rows,
    customer_row,
    invoice_from_lines,
    invoice_rows,
    line_row,
    make_batch,
    with_values,
)
from inexchange.erp import InvoiceBatch
from inexchange.validation import MAX_REFERENCE_LENGTH, validate_batch

Invoice = tuple[dict[str, Any], list[dict[str, Any]]]


# ---- identifiers, built with python-stdnum -----------------------------------------------------------
def _with_check_digit(body: str, check: str, offset: int) -> str:
    """``body + check`` with the check digit moved by ``offset`` (mod 10)."""
    return body + str((int(check) + offset) % 10)


def _vat_of(number: str) -> str:
    """The Swedish VAT number of an org number or personnummer: SE + its last 10 digits + 01."""
    return "SE" + "".join(ch for ch in number if ch.isdigit())[-10:] + "01"


ORG_PLUS_ONE = _with_check_digit(ORG_NUMBER[:-1], ORG_NUMBER[-1], 1)
ORG_MINUS_ONE = _with_check_digit(ORG_NUMBER[:-1], ORG_NUMBER[-1], -1)

#: a man born 18 December 1981, serial 987; the check digit is computed, not guessed
_PNR_BODY = "811218987"
_PNR_CHECK = luhn.calc_check_digit(_PNR_BODY)
PNR_10 = f"811218-987{_PNR_CHECK}"
PNR_12 = f"19811218-987{_PNR_CHECK}"
PNR_12_COMPACT = f"19811218987{_PNR_CHECK}"
#: "+" instead of "-": the same date a century earlier (1881), a person over 100 years old
PNR_PLUS = f"811218+987{_PNR_CHECK}"
PNR_10_OFF = _with_check_digit("811218-987", _PNR_CHECK, 1)
PNR_12_OFF = _with_check_digit("19811218-987", _PNR_CHECK, -1)
PNR_PLUS_OFF = _with_check_digit("811218+987", _PNR_CHECK, 1)

#: GLNs whose check digits are 6, 0 and 9: off by one wraps around for the last two
GLN_0 = "735000000003" + ean.calc_check_digit("735000000003")
GLN_9 = "735000000000" + ean.calc_check_digit("735000000000")
VALID_GLNS = (GLN, GLN_0, GLN_9)

DK_CVR, DK_VAT, DK_VAT_OFF = "13585628", "DK13585628", "DK13585627"
FI_YTUNNUS, FI_VAT, FI_VAT_OFF = "2077474-0", "FI20774740", "FI20774741"


def test_table_identifiers_are_what_stdnum_says() -> None:
    for number in (ORG_NUMBER, "2120001553", OTHER_ORG_NUMBER):
        assert orgnr.is_valid(number) and orgnr.compact(number)[2] >= "2", number
    for number in (ORG_PLUS_ONE, ORG_MINUS_ONE):
        assert not orgnr.is_valid(number), number
    # personnummer: valid ones with and without century and with "+", none of them a legal entity
    for number in (PNR_10, PNR_12, PNR_12_COMPACT, PNR_PLUS, PERSONNUMMER):
        assert personnummer.is_valid(number), number
        assert orgnr.compact(number.replace("+", ""))[-10:][2] < "2", number
    for number in (PNR_10_OFF, PNR_12_OFF, PNR_PLUS_OFF):
        assert not personnummer.is_valid(number), number
    assert personnummer.get_birth_date(PNR_PLUS).year == 1881
    assert personnummer.get_birth_date(PNR_12).year == 1981
    for vat_number in (VAT_NUMBER, _vat_of(PNR_10), _vat_of(PNR_12), _vat_of(OTHER_ORG_NUMBER)):
        assert se_vat.is_valid(vat_number), vat_number
    assert not se_vat.is_valid("SE212000155302")
    # GLN: 13 digits, GS1 check digit; the wrap-around cases really wrap
    assert [g[-1] for g in VALID_GLNS] == ["6", "0", "9"]
    assert ean.is_valid(_spaced(GLN)) and ean.compact(_spaced(GLN)) == GLN
    assert ean.is_valid("0" + GLN)  # a valid GTIN-14, yet no GLN
    for gln in VALID_GLNS:
        assert len(gln) == 13 and ean.is_valid(gln), gln
        for offset in (1, -1):
            assert not ean.is_valid(_with_check_digit(gln[:-1], gln[-1], offset))
    # foreign EU VAT numbers
    assert cvr.is_valid(DK_CVR) and eu_vat.is_valid(DK_VAT) and not eu_vat.is_valid(DK_VAT_OFF)
    assert eu_vat.is_valid(DK_VAT.lower()) and not eu_vat.is_valid(DK_CVR)
    assert alv.is_valid(FI_VAT) and eu_vat.is_valid(FI_VAT) and not eu_vat.is_valid(FI_VAT_OFF)


# ---- running a case on both databases' types ---------------------------------------------------------
@pytest.fixture(params=[False, True], ids=["postgresql-decimal", "sqlite-float"])
def sqlite(request: pytest.FixtureRequest) -> bool:
    """Run a case with PostgreSQL's value types, then with SQLite's."""
    return bool(request.param)


@dataclass(frozen=True)
class Case:
    """One row of a rule's table: a customer, an invoice of it, and the expected verdict.

    :param id: the pytest id.
    :param expected: None when the invoice may be sent, else a fragment of its message.
    """

    id: str
    expected: str | None
    customer: dict[str, Any] = field(default_factory=customer_row)
    invoice: Invoice = field(default_factory=invoice_rows)


class RuleTable:
    """The cases of one rule, validated as one batch per backend (fast, and many rows at once).

    Each case gets its own customer id, invoice id and invoice number (its id, as the ERP's numbers
    are unique); customer numbers and names stay as built.
    """

    FIRST_ID = 1000

    def __init__(self, *cases: Case) -> None:
        self.cases = {case.id: case for case in cases}
        assert len(self.cases) == len(cases), "duplicate case ids"
        self._results: dict[bool, dict[int, str | None]] = {}

    def ids(self) -> list[Any]:
        """The cases as pytest parameters."""
        return [pytest.param(case_id, id=case_id) for case_id in self.cases]

    def message(self, case_id: str, sqlite: bool) -> str | None:
        """The message of one case, with PostgreSQL's or SQLite's value types."""
        if sqlite not in self._results:
            batch = self._batch(sqlite)
            self._results[sqlite] = validate_batch(batch, start=START, end=END)
            assert set(self._results[sqlite]) == set(batch.invoices.index)
        return self._results[sqlite][self.FIRST_ID + list(self.cases).index(case_id)]

    def check(self, case_id: str, sqlite: bool) -> str | None:
        """Assert the case's verdict (and, with SQLite's types, the same message as PostgreSQL's)."""
        message = self.message(case_id, sqlite)
        if sqlite:
            assert message == self.message(case_id, False), "SQLite floats and PostgreSQL Decimals disagree"
        assert_verdict(message, self.cases[case_id].expected)
        return message

    def _batch(self, sqlite: bool) -> InvoiceBatch:
        customers, invoices = [], []
        for key, case in enumerate(self.cases.values(), start=self.FIRST_ID):
            header, lines = case.invoice
            customers.append(with_values(case.customer, customer_id=key))
            invoices.append((with_values(header, invoice_id=key, customer_id=key, invoice_number=str(key)),
                             [with_values(line, invoice_id=key) for line in lines]))
        return make_batch(customers, invoices, sqlite=sqlite)


def assert_verdict(message: str | None, expected: str | None) -> None:
    """None for a valid case; for an invalid one, a message holding the rule's fragment."""
    if expected is None:
        assert message is None
    else:
        assert message is not None, f"accepted, expected {expected!r}"
        assert expected in message


# ---- organisation number and personnummer ------------------------------------------------------------
COMPANY_HINT = "(10 siffror, giltig kontrollsiffra, tredje siffran minst 2)"
PERSON_HINT = "(personnummer väntas för en privatperson)"


def _org(case_id: str, org_number: str, private_person: bool, vat_number: str | None,
         expected: str | None) -> Case:
    return Case(case_id, expected, customer_row(org_number=org_number, is_private_person=private_person,
                                                vat_number=vat_number))


ORG_NUMBERS = RuleTable(
    _org("company-with-dash", "212000-1553", False, VAT_NUMBER, None),
    _org("company-compact", "2120001553", False, VAT_NUMBER, None),
    _org("company-padded", " 212000-1553 ", False, VAT_NUMBER, None),
    _org("company-with-space", "212000 1553", False, VAT_NUMBER, None),
    _org("company-check-digit-plus-1", ORG_PLUS_ONE, False, VAT_NUMBER,
         f"organisationsnummer {ORG_PLUS_ONE} är ogiltigt {COMPANY_HINT}"),
    _org("company-check-digit-minus-1", ORG_MINUS_ONE, False, VAT_NUMBER,
         f"organisationsnummer {ORG_MINUS_ONE} är ogiltigt {COMPANY_HINT}"),
    _org("company-check-digit-padded", f" {ORG_PLUS_ONE} ", False, VAT_NUMBER,
         f"organisationsnummer {ORG_PLUS_ONE} är ogiltigt"),
    _org("company-third-digit-1", PNR_10, False, _vat_of(PNR_10),
         f"organisationsnummer {PNR_10} är ogiltigt {COMPANY_HINT}"),
    _org("company-third-digit-0", PERSONNUMMER, False, _vat_of(PERSONNUMMER),
         f"organisationsnummer {PERSONNUMMER} är ogiltigt {COMPANY_HINT}"),
    _org("company-given-personnummer-12", PNR_12, False, _vat_of(PNR_12),
         f"organisationsnummer {PNR_12} är ogiltigt {COMPANY_HINT}"),
    _org("person-10-digits", PNR_10, True, None, None),
    _org("person-12-digits-with-century", PNR_12, True, None, None),
    _org("person-12-digits-compact", PNR_12_COMPACT, True, None, None),
    _org("person-over-100-plus-sign", PNR_PLUS, True, None, None),
    _org("person-padded", f" {PNR_12} ", True, None, None),
    _org("person-10-check-digit-off", PNR_10_OFF, True, None,
         f"organisationsnummer {PNR_10_OFF} är ogiltigt {PERSON_HINT}"),
    _org("person-12-check-digit-off", PNR_12_OFF, True, None,
         f"organisationsnummer {PNR_12_OFF} är ogiltigt {PERSON_HINT}"),
    _org("person-plus-check-digit-off", PNR_PLUS_OFF, True, None,
         f"organisationsnummer {PNR_PLUS_OFF} är ogiltigt {PERSON_HINT}"),
    # the code lets a private person (a sole trader) use an organisation number
    _org("person-with-org-number", ORG_NUMBER, True, None, None),
)


@pytest.mark.parametrize("case", ORG_NUMBERS.ids())
def test_org_number_rule(case: str, sqlite: bool) -> None:
    ORG_NUMBERS.check(case, sqlite)


# ---- VAT number --------------------------------------------------------------------------------------
MISMATCH = "matchar inte organisationsnumret"
NOT_EU = "är inte ett giltigt EU-momsnummer"


def _vat(case_id: str, country: str | None, org_number: str, private_person: bool, vat_number: str,
         expected: str | None) -> Case:
    return Case(case_id, expected, customer_row(country_code=country, org_number=org_number,
                                                is_private_person=private_person, vat_number=vat_number))


VAT_NUMBERS = RuleTable(
    _vat("se", "SE", ORG_NUMBER, False, "SE212000155301", None),
    _vat("se-lowercase-prefix", "SE", ORG_NUMBER, False, "se212000155301", None),
    _vat("se-with-spaces", "SE", ORG_NUMBER, False, "SE 2120001553 01", None),
    _vat("se-with-dash", "SE", ORG_NUMBER, False, "SE212000-155301", None),
    _vat("se-padded-compact-org", "SE", "2120001553", False, " SE212000155301 ", None),
    _vat("country-lowercase", "se", ORG_NUMBER, False, VAT_NUMBER, None),
    _vat("country-missing-means-sweden", None, ORG_NUMBER, False, VAT_NUMBER, None),
    _vat("se-other-org", "SE", ORG_NUMBER, False, "SE556036079301", f"VAT-nummer SE556036079301 {MISMATCH}"),
    _vat("se-lowercase-other-org", "se", ORG_NUMBER, False, "se556036079301",
         f"VAT-nummer se556036079301 {MISMATCH}"),
    _vat("se-suffix-02", "SE", ORG_NUMBER, False, "SE212000155302", f"VAT-nummer SE212000155302 {MISMATCH}"),
    _vat("se-without-suffix", "SE", ORG_NUMBER, False, "SE2120001553", f"VAT-nummer SE2120001553 {MISMATCH}"),
    _vat("se-check-digit-off", "SE", ORG_NUMBER, False, "SE212000155401",
         f"VAT-nummer SE212000155401 {MISMATCH}"),
    _vat("sole-trader-10-digits", "SE", PNR_10, True, _vat_of(PNR_10), None),
    _vat("sole-trader-with-century", "SE", PNR_12, True, _vat_of(PNR_12), None),
    _vat("sole-trader-plus-sign", "SE", PNR_PLUS, True, _vat_of(PNR_PLUS), None),
    _vat("sole-trader-10-digits-other-vat", "SE", PNR_10, True, VAT_NUMBER, f"VAT-nummer {VAT_NUMBER} {MISMATCH}"),
    # the century or "+" form of the same personnummer must not switch the comparison off
    _vat("sole-trader-with-century-other-vat", "SE", PNR_12, True, VAT_NUMBER,
         f"VAT-nummer {VAT_NUMBER} {MISMATCH}"),
    _vat("sole-trader-plus-sign-other-vat", "SE", PNR_PLUS, True, VAT_NUMBER,
         f"VAT-nummer {VAT_NUMBER} {MISMATCH}"),
    _vat("dk", "DK", DK_CVR, False, DK_VAT, None),
    _vat("dk-lowercase-prefix", "DK", DK_CVR, False, DK_VAT.lower(), None),
    _vat("dk-country-lowercase", "dk", DK_CVR, False, DK_VAT, None),
    _vat("fi", "FI", FI_YTUNNUS, False, FI_VAT, None),
    _vat("dk-check-digit-off", "DK", DK_CVR, False, DK_VAT_OFF, f"VAT-nummer {DK_VAT_OFF} {NOT_EU}"),
    _vat("fi-check-digit-off", "FI", FI_YTUNNUS, False, FI_VAT_OFF, f"VAT-nummer {FI_VAT_OFF} {NOT_EU}"),
    _vat("dk-without-prefix", "DK", DK_CVR, False, DK_CVR, f"VAT-nummer {DK_CVR} {NOT_EU}"),
)


@pytest.mark.parametrize("case", VAT_NUMBERS.ids())
def test_vat_number_rule(case: str, sqlite: bool) -> None:
    VAT_NUMBERS.check(case, sqlite)


# ---- GLN ---------------------------------------------------------------------------------------------
GLN_HINT = "är ogiltigt (13 siffror med giltig kontrollsiffra)"
#: a GLN with its check digit one too high
WRONG_GLN = _with_check_digit(GLN[:-1], GLN[-1], 1)


def _spaced(gln: str) -> str:
    return f"{gln[:3]} {gln[3:7]} {gln[7:]}"


def _gln(case_id: str, gln: str | None, valid: bool) -> Case:
    shown = (gln or "").strip()
    return Case(case_id, None if valid else f"GLN-nummer {shown} {GLN_HINT}", customer_row(gln=gln))


GLNS = RuleTable(
    *[_gln(f"valid-check-digit-{gln[-1]}", gln, True) for gln in VALID_GLNS],
    _gln("none", None, True),
    _gln("empty", "", True),
    _gln("padded", f" {GLN} ", True),
    # the UBL sends the GLN's digits (EndpointID 0088), and org numbers are accepted with spaces too
    _gln("grouped-with-spaces", _spaced(GLN), True),
    *[_gln(f"check-digit-{gln[-1]}-{name}", _with_check_digit(gln[:-1], gln[-1], offset), False)
      for gln in VALID_GLNS for name, offset in (("plus-1", 1), ("minus-1", -1))],
    _gln("grouped-with-spaces-check-digit-off", _spaced(WRONG_GLN), False),
    _gln("12-digits", GLN[:-1], False),
    _gln("14-digits-valid-gtin-14", "0" + GLN, False),
    _gln("14-digits", GLN + "0", False),
    _gln("letter-o-for-zero", GLN[:5] + "O" + GLN[6:], False),
)


@pytest.mark.parametrize("case", GLNS.ids())
def test_gln_rule(case: str, sqlite: bool) -> None:
    GLNS.check(case, sqlite)


# ---- names and references with Swedish letters -------------------------------------------------------
_NAMES = {
    "capital-a-umlaut": "Ängelholms kommun",
    "o-umlaut": "Östra Göinge kommun",
    "uppercase-a-ring": "ÅRE KOMMUN",
    "e-acute": "Café Hélène AB",
    "dash-ampersand": "Bjäre Ö-Vård & Omsorg AB",
    "decomposed-nfd": unicodedata.normalize("NFD", "Ängelholms kommun"),
}
_TEXTS = {
    "swedish-letters": "Avd. Öst / Märta Ekström",
    "e-acute": "Café Hélène, Ändringsorder 17",
    "all-letters": "ÅÄÖ åäö Éé",
}
SWEDISH_LETTERS = RuleTable(
    *[Case(f"name-{key}-accepted", None, customer_row(name=name)) for key, name in _NAMES.items()],
    *[Case(f"name-{key}-shown-unchanged", f"Kund {CUSTOMER_NUMBER} {name}: kunden är inaktiv; aktivera kunden",
           customer_row(name=name, is_active=False)) for key, name in _NAMES.items()],
    *[Case(f"references-{key}-accepted", None, customer_row(name="Ängelholms kommun", marking=text),
           invoice_rows(your_reference=text)) for key, text in _TEXTS.items()],
    *[Case(f"references-{key}-shown-unchanged",
           f"Kund {CUSTOMER_NUMBER} Ängelholms kommun: faktura e-post {text}@ är ogiltig",
           customer_row(name="Ängelholms kommun", marking=text, invoice_email=f"{text}@"))
      for key, text in _TEXTS.items()],
)


@pytest.mark.parametrize("case", SWEDISH_LETTERS.ids())
def test_swedish_letters_are_accepted_and_shown_unchanged(case: str, sqlite: bool) -> None:
    message = SWEDISH_LETTERS.check(case, sqlite)
    expected = SWEDISH_LETTERS.cases[case].expected
    assert message == expected  # the whole message, letters unchanged


# ---- Märkning and Er referens: length and control characters -----------------------------------------
TOO_LONG = f"är för lång ({MAX_REFERENCE_LENGTH + 1} tecken, högst {MAX_REFERENCE_LENGTH})"
CONTROL = "innehåller styrtecken; ta bort dem"
_REFERENCE_VALUES: dict[str, tuple[str, str | None]] = {
    "at-limit": ("M" * MAX_REFERENCE_LENGTH, None),
    "one-over": ("M" * (MAX_REFERENCE_LENGTH + 1), TOO_LONG),
    "at-limit-counted-in-characters": ("Å" * MAX_REFERENCE_LENGTH, None),
    "one-over-counted-in-characters": ("Ö" * (MAX_REFERENCE_LENGTH + 1), TOO_LONG),
    "at-limit-padded": (" " + "M" * MAX_REFERENCE_LENGTH + " ", None),
    # tab, line feed and carriage return are allowed (legal in XML); other C0 controls and DEL are not
    "tab": ("Rad 1\tRad 2", None),
    "newline": ("Rad 1\nRad 2", None),
    "crlf": ("Rad 1\r\nRad 2", None),
    "trailing-newline": ("Projekt 4711\n", None),
    "nul": ("Projekt\x00 4711", CONTROL),
    "leading-nul": ("\x00Projekt 4711", CONTROL),
    "backspace": ("Projekt\x08 4711", CONTROL),
    "vertical-tab": ("Projekt\x0b 4711", CONTROL),
    "form-feed": ("Projekt\x0c 4711", CONTROL),
    "unit-separator-1f": ("Projekt\x1f 4711", CONTROL),
    "delete-7f": ("Projekt\x7f 4711", CONTROL),
}
REFERENCES = RuleTable(
    *[Case(f"marking-{key}", None if problem is None else f"Märkning {problem}", customer_row(marking=value))
      for key, (value, problem) in _REFERENCE_VALUES.items()],
    *[Case(f"your-reference-{key}", None if problem is None else f"Er referens {problem}",
           invoice=invoice_rows(your_reference=value))
      for key, (value, problem) in _REFERENCE_VALUES.items()],
)


@pytest.mark.parametrize("case", REFERENCES.ids())
def test_reference_rule(case: str, sqlite: bool) -> None:
    message = REFERENCES.check(case, sqlite)
    if message is not None:  # the Märkning is the customer's, Er referens the invoice's
        assert message.startswith(f"Kund {CUSTOMER_NUMBER} " if case.startswith("marking") else "Faktura ")


# ---- invoice e-mail ----------------------------------------------------------------------------------
def _email(case_id: str, email: str | None, valid: bool) -> Case:
    return Case(case_id, None if valid else f"faktura e-post {(email or '').strip()} är ogiltig",
                customer_row(invoice_email=email))


EMAILS = RuleTable(
    _email("idn-domain", "fakturor@ängelholm.se", True),
    _email("idn-domain-uppercase", "fakturor@ÄNGELHOLM.SE", True),
    # email-validator accepts an internationalised local part (SMTPUTF8) by default
    _email("swedish-local-part", "åsa.öberg@ängelholm.se", True),
    _email("padded", " fakturor@alingsas.se ", True),
    _email("none", None, True),
    _email("empty", "", True),
    _email("missing-at", "fakturorängelholm.se", False),
    _email("idn-domain-no-dot", "fakturor@ängelholm", False),
    _email("two-at", "fakturor@@ängelholm.se", False),
    _email("no-local-part", "@ängelholm.se", False),
    _email("space-in-domain", "fakturor@ängel holm.se", False),
)


@pytest.mark.parametrize("case", EMAILS.ids())
def test_email_rule(case: str, sqlite: bool) -> None:
    EMAILS.check(case, sqlite)


# ---- currency ----------------------------------------------------------------------------------------
def _currency(case_id: str, currency: str | None, expected: str | None) -> Case:
    return Case(case_id, expected, invoice=invoice_rows(currency=currency))


CURRENCIES = RuleTable(
    _currency("sek", "SEK", None),
    _currency("eur", "EUR", None),
    _currency("dkk", "DKK", None),
    _currency("padded", " SEK ", None),
    # ISO 4217 codes are upper case, and the UBL's currencyID takes the code as it is
    _currency("lowercase-rejected", "sek", "valuta 'sek' är ingen ISO 4217-kod"),
    _currency("unknown", "XXQ", "valuta 'XXQ' är ingen ISO 4217-kod"),
    _currency("four-letters", "SEKR", "valuta 'SEKR' är ingen ISO 4217-kod"),
    _currency("empty", "", "valuta"),
    _currency("none", None, "valuta"),
)


@pytest.mark.parametrize("case", CURRENCIES.ids())
def test_currency_rule(case: str, sqlite: bool) -> None:
    CURRENCIES.check(case, sqlite)


# ---- VAT rates ---------------------------------------------------------------------------------------
NOT_A_RATE = "är inte 25, 12, 6 eller 0 %"


def _rates(case_id: str, *rates: str, expected: str | None = None, credit: bool = False) -> Case:
    items = [("1", "1000", rate) for rate in rates]
    return Case(case_id, expected, invoice=credit_rows(items=items) if credit else invoice_rows(items=items))


VAT_RATES = RuleTable(
    _rates("25", "25"),
    _rates("12", "12"),
    _rates("6", "6"),
    _rates("0-alone", "0"),
    _rates("25-as-numeric-5-2", "25.00"),
    _rates("0-as-numeric-5-2", "0.00"),
    _rates("0-and-25", "0", "25"),
    _rates("all-four", "25", "12", "6", "0"),
    _rates("credit-0-alone", "0", credit=True),
    _rates("credit-0-and-25", "0", "25", credit=True),
    _rates("7", "25", "7", expected=f"momssats 7 på rad 2 {NOT_A_RATE}"),
    _rates("25.5", "25", "25.5", expected=f"momssats 25.5 på rad 2 {NOT_A_RATE}"),
    _rates("minus-25", "25", "-25", expected=f"momssats -25 på rad 2 {NOT_A_RATE}"),
    _rates("250", "25", "250", expected=f"momssats 250 på rad 2 {NOT_A_RATE}"),
    _rates("fraction-0.25", "25", "0.25", expected=f"momssats 0.25 på rad 2 {NOT_A_RATE}"),
    # as PostgreSQL returns NUMERIC(5,2): the SQLite run checks both give the same message
    _rates("7-as-numeric-5-2", "25", "7.00", expected=f"på rad 2 {NOT_A_RATE}"),
)


@pytest.mark.parametrize("case", VAT_RATES.ids())
def test_vat_rate_rule(case: str, sqlite: bool) -> None:
    VAT_RATES.check(case, sqlite)


# ---- line amounts rounded half up at 0.005 ----------------------------------------------------------
LINE_2 = "radbelopp stämmer inte med antal × pris på rad 2"


def _rounding(case_id: str, quantity: str, price: str, amount: str, valid: bool) -> Case:
    """Line 2 is quantity x price stored as ``amount``; the header adds up the lines as stored.

    A negative quantity makes a credit note.
    """
    credit = quantity.startswith("-")
    first = line_row(INVOICE_ID, 1, "-10" if credit else "10", "250", "25")
    second = line_row(INVOICE_ID, 2, quantity, price, "25", line_amount=Decimal(amount))
    fields = {"invoice_type": "credit", "credited_invoice_number": "9999"} if credit else {}
    return Case(case_id, None if valid else LINE_2,
                invoice=(invoice_from_lines([first, second], **fields), [first, second]))


ROUNDING = RuleTable(
    _rounding("half-ore-rounds-up", "1", "0.005", "0.01", True),
    _rounding("half-ore-rounded-down", "1", "0.005", "0.00", False),
    _rounding("3x3.335-rounds-up", "3", "3.335", "10.01", True),
    _rounding("3x3.335-rounded-down", "3", "3.335", "10.00", False),
    # as floats, 1.005 and 2.675 lie just below the half: they are still rounded up
    _rounding("1.005-rounds-up", "1", "1.005", "1.01", True),
    _rounding("1.005-rounded-down", "1", "1.005", "1.00", False),
    _rounding("2.675-rounds-up", "1", "2.675", "2.68", True),
    _rounding("2.675-rounded-down", "1", "2.675", "2.67", False),
    _rounding("quantity-with-decimals", "2.5", "0.003", "0.01", True),
    _rounding("below-half-rounds-down", "1", "0.004", "0.00", True),
    _rounding("below-half-rounded-up", "1", "0.004", "0.01", False),
    _rounding("credit-half-ore-away-from-zero", "-1", "0.005", "-0.01", True),
    _rounding("credit-half-ore-toward-zero", "-1", "0.005", "0.00", False),
    _rounding("credit-wrong-sign", "-1", "0.005", "0.01", False),
    _rounding("credit-3x3.335-away-from-zero", "-3", "3.335", "-10.01", True),
    _rounding("credit-3x3.335-toward-zero", "-3", "3.335", "-10.00", False),
)


@pytest.mark.parametrize("case", ROUNDING.ids())
def test_line_amount_rounding(case: str, sqlite: bool) -> None:
    ROUNDING.check(case, sqlite)


# ---- VAT amount: one öre of tolerance per rate ------------------------------------------------------
ONE_RATE = [("10", "250", "25")]                        # VAT 625.00
TWO_RATES = [("10", "250", "25"), ("10", "100", "12")]  # VAT 625.00 + 120.00
HALF_ORE_VAT = [("1", "0.02", "25")]                    # VAT 0.005, rounded half up: 0.01


def _vat_off(case_id: str, invoice: Invoice, off_by: str, expected: str | None) -> Case:
    header, lines = invoice
    vat = header["vat_amount"] + Decimal(off_by)
    return Case(case_id, expected,
                invoice=({**header, "vat_amount": vat, "total_amount": header["amount_ex_vat"] + vat}, lines))


VAT_AMOUNTS = RuleTable(
    _vat_off("one-rate-plus-1-ore", invoice_rows(items=ONE_RATE), "0.01", None),
    _vat_off("one-rate-minus-1-ore", invoice_rows(items=ONE_RATE), "-0.01", None),
    _vat_off("one-rate-plus-2-ore", invoice_rows(items=ONE_RATE), "0.02",
             "momsbelopp 625.02 stämmer inte med raderna (625.00)"),
    _vat_off("one-rate-minus-2-ore", invoice_rows(items=ONE_RATE), "-0.02",
             "momsbelopp 624.98 stämmer inte med raderna (625.00)"),
    _vat_off("two-rates-plus-2-ore", invoice_rows(items=TWO_RATES), "0.02", None),
    _vat_off("two-rates-minus-2-ore", invoice_rows(items=TWO_RATES), "-0.02", None),
    _vat_off("two-rates-plus-3-ore", invoice_rows(items=TWO_RATES), "0.03",
             "momsbelopp 745.03 stämmer inte med raderna (745.00)"),
    _vat_off("vat-0.005-is-0.01", invoice_rows(items=HALF_ORE_VAT), "0", None),
    _vat_off("vat-0.005-expected-0.01", invoice_rows(items=HALF_ORE_VAT), "0.02",
             "momsbelopp 0.03 stämmer inte med raderna (0.01)"),
    _vat_off("credit-vat-0.005-expected-minus-0.01", credit_rows(items=HALF_ORE_VAT), "-0.02",
             "momsbelopp -0.03 stämmer inte med raderna (-0.01)"),
)


@pytest.mark.parametrize("case", VAT_AMOUNTS.ids())
def test_vat_amount_rule(case: str, sqlite: bool) -> None:
    VAT_AMOUNTS.check(case, sqlite)


# ---- rows the schema cannot read ---------------------------------------------------------------------
VALID_ID = INVOICE_ID
BROKEN_ID = INVOICE_ID + 1
#: Python's and pandas' spellings of a missing value: never part of a message
_PYTHON_MISSING = re.compile(r"\bNone\b|\bNaT\b|<NA>")
#: nor, for a missing value, any spelling of "not a number"
_ANY_MISSING = re.compile(r"\bNone\b|\bNaT\b|<NA>|\bnan\b", re.IGNORECASE)


def _broken_line(**values: Any) -> Callable[[int], Invoice]:
    """An invoice whose line 2 has ``values``; the header adds up the lines as built."""
    def build(invoice_id: int) -> Invoice:
        header, lines = invoice_rows(invoice_id, items=[("10", "250", "25"), ("2", "100", "25")])
        return header, [lines[0], with_values(lines[1], **values)]
    return build


def _broken_header(**values: Any) -> Callable[[int], Invoice]:
    """An invoice whose header has ``values``."""
    def build(invoice_id: int) -> Invoice:
        header, lines = invoice_rows(invoice_id)
        return with_values(header, **values), lines
    return build


def _huge_but_adding_up(invoice_id: int) -> Invoice:
    """Amounts far beyond the contract's NUMERIC(18,2) that nevertheless add up."""
    return invoice_rows(invoice_id, items=[("1", "1E+20", "25")])


#: (builder of the broken invoice by id, field as the ERP shows it, line number or None, the value
#: the message must show or None, whether the value is missing)
UNREADABLE = [
    pytest.param(_broken_line(quantity="abc"), "antal", 2, "abc", False, id="quantity-text"),
    pytest.param(_broken_line(quantity=Decimal("Infinity")), "antal", 2, None, False, id="quantity-infinite"),
    pytest.param(_broken_line(unit_price="12,50"), "pris", 2, "12,50", False, id="unit-price-decimal-comma"),
    pytest.param(_broken_line(vat_rate=None), "momssats", 2, None, True, id="vat-rate-null"),
    pytest.param(_broken_line(line_amount=None), "belopp", 2, None, True, id="line-amount-null"),
    pytest.param(_broken_header(amount_ex_vat="tolv"), "belopp exkl. moms", None, "tolv", False,
                 id="amount-ex-vat-text"),
    pytest.param(_broken_header(amount_ex_vat=Decimal("1E+20")), "belopp exkl. moms", None, None, False,
                 id="amount-ex-vat-1e20"),
    pytest.param(_huge_but_adding_up, "belopp", None, None, False, id="amounts-1e20-adding-up"),
    pytest.param(_broken_header(amount_ex_vat=Decimal("Infinity")), "belopp exkl. moms", None, None, False,
                 id="amount-ex-vat-infinite"),
    pytest.param(_broken_header(amount_ex_vat=Decimal("NaN")), "belopp exkl. moms", None, None, False,
                 id="amount-ex-vat-nan"),
    pytest.param(_broken_header(total_amount=None), "totalbelopp", None, None, True, id="total-amount-null"),
    pytest.param(_broken_header(invoice_date="not a date"), "fakturadatum", None, "not a date", False,
                 id="invoice-date-text"),
    pytest.param(_broken_header(invoice_date=None), "fakturadatum", None, None, True, id="invoice-date-null"),
    pytest.param(_broken_header(due_date="2026-13-45"), "förfallodatum", None, "2026-13-45", False,
                 id="due-date-impossible"),
    pytest.param(_broken_header(customer_id=None), "kund", None, None, True, id="customer-id-null"),
    pytest.param(_broken_header(customer_id=99), "kund", None, "99", False, id="customer-row-missing"),
    pytest.param(_broken_header(invoice_type=None), "fakturatyp", None, None, True, id="invoice-type-null"),
]


def _assert_clear(message: str | None, invoice_number: str, label: str, line: int | None, shown: str | None,
                  missing: bool) -> None:
    """The message names the invoice, the field as the ERP shows it, the line and the unreadable value."""
    assert message is not None, "an unreadable invoice was accepted"
    assert f"Faktura {invoice_number}" in message, message
    assert label in message.lower(), f"{label!r} not named: {message}"
    if line is not None:
        assert f"rad {line}" in message, message
    if shown is not None:
        assert shown in message, f"{shown!r} not shown: {message}"
    assert not _PYTHON_MISSING.search(message), message
    if missing:
        assert not _ANY_MISSING.search(message), message


@pytest.mark.parametrize(("broken", "label", "line", "shown", "missing"), UNREADABLE)
def test_unreadable_row_is_rejected_and_the_valid_invoice_still_passes(
        broken: Callable[[int], Invoice], label: str, line: int | None, shown: str | None, missing: bool,
        sqlite: bool) -> None:
    batch = make_batch([customer_row()], [broken(BROKEN_ID), invoice_rows(VALID_ID)], sqlite=sqlite)
    results = validate_batch(batch, start=START, end=END)
    assert set(results) == {BROKEN_ID, VALID_ID}
    assert results[VALID_ID] is None
    _assert_clear(results[BROKEN_ID], "10002", label, line, shown, missing)


def test_all_unreadable_rows_in_one_batch_leave_the_valid_invoices_alone(sqlite: bool) -> None:
    broken = {201 + n: case.values for n, case in enumerate(UNREADABLE)}
    invoices = [invoice_rows(VALID_ID)]
    invoices += [build(invoice_id) for invoice_id, (build, *_) in broken.items()]
    invoices.append(invoice_rows(VALID_ID + 1))
    other = customer_row(8, customer_number="5001", name="Östra Göinge kommun", org_number=OTHER_ORG_NUMBER,
                         vat_number=_vat_of(OTHER_ORG_NUMBER))
    invoices.append(invoice_rows(VALID_ID + 2, customer_id=8))
    batch = make_batch([customer_row(), other], invoices, sqlite=sqlite)

    results = validate_batch(batch, start=START, end=END)

    assert set(results) == {VALID_ID, VALID_ID + 1, VALID_ID + 2, *broken}
    assert [results[i] for i in (VALID_ID, VALID_ID + 1, VALID_ID + 2)] == [None, None, None]
    for invoice_id, (_, label, line, shown, missing) in broken.items():
        _assert_clear(results[invoice_id], str(10001 + invoice_id - INVOICE_ID), label, line, shown, missing)


def test_text_in_numeric_columns_reaches_validation_as_object_columns(sqlite: bool) -> None:
    text_quantity = _broken_line(quantity="abc")(BROKEN_ID)
    text_amount = _broken_header(amount_ex_vat="tolv")(BROKEN_ID + 1)
    batch = make_batch([customer_row()], [invoice_rows(VALID_ID), text_quantity, text_amount], sqlite=sqlite)
    assert batch.lines["quantity"].dtype == object
    assert batch.invoices["amount_ex_vat"].dtype == object
    assert "abc" in list(batch.lines["quantity"]) and "tolv" in list(batch.invoices["amount_ex_vat"])


# ---- one invoice, five problems: one message in a stable order --------------------------------------
def test_five_problems_make_one_message_customer_part_first_in_rule_order(sqlite: bool) -> None:
    customer = customer_row(customer_number="1290", name="Ängelholms kommun", marking="Avd. Öst\x00",
                            gln=WRONG_GLN)
    header, lines = invoice_rows(items=[("10", "250", "25"), ("4", "100", "7")],
                                 due_date=INVOICE_DATE - timedelta(days=1))
    other = invoice_rows(INVOICE_ID + 1)
    customer_part = (f"Kund 1290 Ängelholms kommun: GLN-nummer {WRONG_GLN} {GLN_HINT}; "
                     f"Märkning {CONTROL}")
    invoice_part = (f"Faktura {INVOICE_NUMBER}: förfallodatum {INVOICE_DATE - timedelta(days=1)} är före "
                    f"fakturadatum {INVOICE_DATE}; momssats 7 på rad 2 {NOT_A_RATE}; "
                    f"fakturanummer {INVOICE_NUMBER} används av flera fakturor")
    # the same rows in other orders: invoices, lines and the checks' failure cases
    batches = [
        make_batch([customer], [(header, lines), other], sqlite=sqlite),
        make_batch([customer], [other, (header, list(reversed(lines)))], sqlite=sqlite),
        make_batch([customer], [other, (header, list(reversed(lines)))], sqlite=sqlite),
    ]
    for batch in batches:
        results = validate_batch(batch, start=START, end=END, duplicate_numbers={INVOICE_NUMBER})
        assert results == {INVOICE_ID: f"{customer_part}. {invoice_part}", INVOICE_ID + 1: customer_part}
