"""Build valid (and deliberately broken) Swedish and foreign identifiers with python-stdnum's check digits."""

from __future__ import annotations

import random
from datetime import date, timedelta

from stdnum import ean, luhn
from stdnum.de import vat as de_vat
from stdnum.dk import cvr
from stdnum.fi import alv, ytunnus
from stdnum.no import orgnr as no_orgnr

COMPANY_PREFIXES = ("556", "559")
"""Prefixes of aktiebolag org numbers (third digit 2 or more marks a legal entity)."""

MUNICIPALITY_PREFIX = "212000"
REGION_PREFIX = "232100"
GLN_PREFIX = "73"
"""GS1 Sweden company prefixes start with 73."""


def _digits(rng: random.Random, count: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(count))


def _luhn_number(rng: random.Random, prefix: str) -> str:
    """Return 9 digits starting with ``prefix`` followed by their Luhn check digit (10 digits)."""
    body = prefix + _digits(rng, 9 - len(prefix))
    return body + luhn.calc_check_digit(body)


def format_org_number(digits: str) -> str:
    """Format 10 digits the way SoftOne GO shows an org number: ``NNNNNN-NNNN``."""
    return f"{digits[:6]}-{digits[6:]}"


def org_number(rng: random.Random, prefix: str) -> str:
    """Return a valid formatted Swedish org number starting with ``prefix``."""
    return format_org_number(_luhn_number(rng, prefix))


def company_org_number(rng: random.Random) -> str:
    """Return a valid formatted org number of an aktiebolag (``556...`` or ``559...``)."""
    return org_number(rng, rng.choice(COMPANY_PREFIXES))


def personnummer(rng: random.Random) -> str:
    """Return a valid personnummer ``YYMMDD-NNNN`` of someone born 1950-1999."""
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 50))
    body = born.strftime("%y%m%d") + _digits(rng, 3)
    return format_org_number(body + luhn.calc_check_digit(body))


def swedish_vat_number(org: str) -> str:
    """Return the Swedish VAT number of an org number: ``SE`` + its 10 digits + ``01``."""
    return "SE" + org.replace("-", "") + "01"


def gln(rng: random.Random) -> str:
    """Return a valid 13-digit GLN with a Swedish (``73``) GS1 prefix."""
    body = GLN_PREFIX + _digits(rng, 12 - len(GLN_PREFIX))
    return body + ean.calc_check_digit(body)


def with_wrong_check_digit(number: str, rng: random.Random) -> str:
    """Return ``number`` with its last digit replaced by a different digit."""
    wrong = (int(number[-1]) + rng.randint(1, 9)) % 10
    return number[:-1] + str(wrong)


def finnish_ids(rng: random.Random) -> tuple[str, str]:
    """Return a valid Finnish business id (``1234567-8``) and its VAT number (``FI12345678``)."""
    while True:
        digits = str(rng.randint(1, 9)) + _digits(rng, 7)
        if alv.is_valid("FI" + digits):
            return ytunnus.format(digits), "FI" + digits


def danish_ids(rng: random.Random) -> tuple[str, str]:
    """Return a valid Danish CVR number and its VAT number (``DK`` + CVR)."""
    while True:
        digits = str(rng.randint(1, 9)) + _digits(rng, 7)
        if cvr.is_valid(digits):
            return digits, "DK" + digits


def german_ids(rng: random.Random) -> tuple[str, str]:
    """Return a German commercial register number (``HRB 123456``) and a valid VAT number (``DE`` + 9 digits)."""
    register = f"HRB {rng.randint(10000, 299999)}"
    while True:
        digits = str(rng.randint(1, 9)) + _digits(rng, 8)
        if de_vat.is_valid(digits):
            return register, "DE" + digits


def norwegian_ids(rng: random.Random) -> tuple[str, str]:
    """Return a valid Norwegian organisation number (9 digits, starting 8 or 9) and its MVA number
    (``NO`` + organisation number + ``MVA``)."""
    while True:
        digits = str(rng.randint(8, 9)) + _digits(rng, 8)
        if no_orgnr.is_valid(digits):
            return digits, f"NO{digits}MVA"
