"""Build the customer register: good InExchange customers, deliberately bad ones and other billing methods."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from inexchange.identifiers import in_eu
from inexchange_devkit.erpgen import catalog, identifiers

GOOD = "good"
"""Category of InExchange customers without any defect (companies, public bodies, EU, private person)."""

OTHER_BILLING = "other_billing"
"""Category of customers billed by another method than InExchange: never sent by the pipeline."""

BAD_CUSTOMER_CATEGORIES = (
    "missing_org_number",
    "invalid_org_number",
    "missing_vat_number",
    "vat_org_mismatch",
    "invalid_gln",
    "inactive",
    "marking_too_long",
    "marking_control_character",
)
"""One deliberate defect each, on customers with billing method InExchange utskrift (API)."""

MIN_CUSTOMERS = 15
"""Fewest customers that still hold every bad category and the fixed good customers."""

BUYERS_ABROAD_FROM = 60
"""From this many customers on, the register also holds two German customers (VAT number, no GLN), two
Norwegian ones (organisation and MVA number; one with a ``peppol_id``) and a Swedish company whose
Peppol address is a ``peppol_id`` (a GLN) instead of the GLN column. Smaller registers are as before."""

OTHER_BILLING_SHARE = 0.15
BAD_SHARE = 0.18
PUBLIC_BODY_SHARE = 0.3

CUSTOMER_COLUMNS = (
    "customer_id", "customer_number", "name", "is_active", "is_private_person", "org_number",
    "vat_number", "country_code", "language", "currency", "billing_method", "invoice_email", "gln",
    "marking", "attach_documents", "street", "postal_code", "city", "peppol_id",
)


@dataclass(slots=True)
class Customer:
    """One customer row plus what the generator knows about it (category, kind, invoice volume)."""

    customer_id: int
    customer_number: str
    name: str
    is_active: bool
    is_private_person: bool
    org_number: str | None
    vat_number: str | None
    country_code: str
    language: str
    currency: str
    billing_method: str
    invoice_email: str | None
    gln: str | None
    marking: str | None
    attach_documents: bool
    street: str | None
    postal_code: str | None
    city: str | None
    category: str
    kind: str
    weight: int
    peppol_id: str | None = None

    @property
    def is_foreign(self) -> bool:
        """Whether the customer is outside Sweden (invoiced without Swedish VAT)."""
        return self.country_code != "SE"

    @property
    def in_eu(self) -> bool:
        """Whether the customer is in the EU (Sweden included): a foreign customer outside it is an export."""
        return in_eu(self.country_code)

    @property
    def is_inexchange(self) -> bool:
        """Whether the customer's billing method sends invoices through InExchange."""
        return self.billing_method == catalog.INEXCHANGE_BILLING_METHOD

    def row(self) -> dict[str, Any]:
        """Return the ``customer`` table columns as bind parameters."""
        return {column: getattr(self, column) for column in CUSTOMER_COLUMNS}


def _customer_numbers() -> Iterator[str]:
    """Yield 1001, 1002, ... skipping Alingsås kommun's fixed customer number."""
    number = 1001
    while True:
        if str(number) != catalog.ALINGSAS_CUSTOMER_NUMBER:
            yield str(number)
        number += 1


def _mail_slug(name: str) -> str:
    """Turn a company name into the ASCII part of a mail domain ("Åkessons Bygg AB" -> "akessonsbygg")."""
    base = name.lower().removesuffix(" ab")
    table = str.maketrans({"å": "a", "ä": "a", "ö": "o", "é": "e", "ø": "o", "æ": "ae"})
    return "".join(char for char in base.translate(table) if char.isascii() and char.isalnum())


class _Builder:
    """Draws customers from a seeded random generator, keeping names and identifiers unique."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.names: set[str] = set()
        self.org_numbers: set[str] = {catalog.ALINGSAS_ORG_NUMBER}
        self.public_bodies = list(catalog.MUNICIPALITIES + catalog.REGIONS)
        rng.shuffle(self.public_bodies)

    def _unique_org(self, prefix: str | None) -> str:
        while True:
            if prefix is None:
                org = identifiers.company_org_number(self.rng)
            else:
                org = identifiers.org_number(self.rng, prefix)
            if org not in self.org_numbers:
                self.org_numbers.add(org)
                return org

    def _company_name(self) -> str:
        rng = self.rng
        for _ in range(20):
            name = f"{rng.choice(catalog.COMPANY_PREFIXES)} {rng.choice(catalog.COMPANY_TRADES)} AB"
            if name not in self.names:
                return name
        number = 2
        while f"{name.removesuffix(' AB')} {number} AB" in self.names:
            number += 1
        return f"{name.removesuffix(' AB')} {number} AB"

    def swedish(self, category: str, *, public: bool) -> Customer:
        """Return a valid Swedish company or public body of ``category``, before any defect."""
        rng = self.rng
        if public and self.public_bodies:
            body = self.public_bodies.pop()
            is_region = body in catalog.REGIONS
            kind = "region" if is_region else "municipality"
            prefix = identifiers.REGION_PREFIX if is_region else identifiers.MUNICIPALITY_PREFIX
            org = self._unique_org(prefix)
            name, city, postal_code = body.name, body.city, body.postal_code
            street = f"{rng.choice(catalog.MUNICIPAL_DEPARTMENTS)}, Box {rng.randint(100, 999)}"
            email: str | None = f"faktura@{body.mail_domain}"
            gln = identifiers.gln(rng) if rng.random() < 0.5 else None
            weight = 3
        else:
            kind = "company"
            org = self._unique_org(None)
            name = self._company_name()
            place = rng.choice(catalog.PLACES)
            city = place.city
            postal_code = f"{place.postal_prefix}{rng.randint(1, 9)} {rng.randint(10, 99)}"
            street = f"{rng.choice(catalog.STREETS)} {rng.randint(1, 120)}"
            email = f"faktura@{_mail_slug(name)}.se" if rng.random() < 0.9 else None
            gln = identifiers.gln(rng) if rng.random() < 0.15 else None
            weight = 2
        self.names.add(name)
        return Customer(
            customer_id=0,
            customer_number="",
            name=name,
            is_active=True,
            is_private_person=False,
            org_number=org,
            vat_number=identifiers.swedish_vat_number(org),
            country_code="SE",
            language="sv",
            currency="SEK",
            billing_method=catalog.INEXCHANGE_BILLING_METHOD,
            invoice_email=email,
            gln=gln,
            marking=rng.choice(catalog.GOOD_MARKINGS) if rng.random() < 0.25 else None,
            attach_documents=rng.random() < 0.2,
            street=street,
            postal_code=postal_code,
            city=city,
            category=category,
            kind=kind,
            weight=weight,
        )

    def alingsas(self) -> Customer:
        """Return Alingsås kommun as shown in the handbook, with a GLN, a marking and attachments."""
        body = catalog.ALINGSAS
        self.names.add(body.name)
        return Customer(
            customer_id=0,
            customer_number=catalog.ALINGSAS_CUSTOMER_NUMBER,
            name=body.name,
            is_active=True,
            is_private_person=False,
            org_number=catalog.ALINGSAS_ORG_NUMBER,
            vat_number=identifiers.swedish_vat_number(catalog.ALINGSAS_ORG_NUMBER),
            country_code="SE",
            language="sv",
            currency="SEK",
            billing_method=catalog.INEXCHANGE_BILLING_METHOD,
            invoice_email=f"faktura@{body.mail_domain}",
            gln=identifiers.gln(self.rng),
            marking="12345",
            attach_documents=True,
            street="Fakturor avfallsavdelningen",
            postal_code=body.postal_code,
            city=body.city,
            category=GOOD,
            kind="municipality",
            weight=3,
        )

    def private_person(self) -> Customer:
        """Return a private person billed through InExchange: personnummer, no VAT number."""
        person = identifiers.personnummer(self.rng)
        self.org_numbers.add(person)
        return Customer(
            customer_id=0,
            customer_number="",
            name=catalog.PRIVATE_PERSON_NAME,
            is_active=True,
            is_private_person=True,
            org_number=person,
            vat_number=None,
            country_code="SE",
            language="sv",
            currency="SEK",
            billing_method=catalog.INEXCHANGE_BILLING_METHOD,
            invoice_email="karin.lindqvist@hemma.se",
            gln=None,
            marking=None,
            attach_documents=False,
            street="Björkvägen 7",
            postal_code="443 38",
            city="Lerum",
            category=GOOD,
            kind="private_person",
            weight=1,
        )

    def foreign(self, country: str) -> Customer:
        """Return the EU customer of ``country`` ("FI" or "DK") with a valid national id and VAT number."""
        return self.abroad(next(item for item in catalog.FOREIGN_CUSTOMERS if item[0] == country))

    def abroad(self, entry: tuple[str, ...]) -> Customer:
        """Return the customer of an entry of :data:`catalog.FOREIGN_CUSTOMERS` or :data:`catalog.BUYERS_ABROAD`
        with a valid national id (a German one: a commercial register number) and VAT number."""
        country, name, street, postal_code, city, currency, tld = entry
        org, vat = _FOREIGN_IDS[country](self.rng)
        mailbox = "laskut" if country == "FI" else "faktura"
        self.names.add(name)
        return Customer(
            customer_id=0,
            customer_number="",
            name=name,
            is_active=True,
            is_private_person=False,
            org_number=org,
            vat_number=vat,
            country_code=country,
            language="en",
            currency=currency,
            billing_method=catalog.INEXCHANGE_BILLING_METHOD,
            invoice_email=f"{mailbox}@{_mail_slug(name)}.{tld}",
            gln=None,
            marking=None,
            attach_documents=False,
            street=street,
            postal_code=postal_code,
            city=city,
            category=GOOD,
            kind="foreign",
            weight=1,
        )

    def bad(self, category: str) -> Customer:
        """Return an InExchange customer carrying the one defect named by ``category``."""
        rng = self.rng
        customer = self.swedish(category, public=rng.random() < PUBLIC_BODY_SHARE)
        customer.weight = 1
        if category == "missing_org_number":
            customer.org_number = None
        elif category == "invalid_org_number":
            customer.org_number = identifiers.with_wrong_check_digit(customer.org_number or "", rng)
            customer.vat_number = identifiers.swedish_vat_number(customer.org_number)
        elif category == "missing_vat_number":
            customer.vat_number = None
        elif category == "vat_org_mismatch":
            customer.vat_number = identifiers.swedish_vat_number(self._unique_org(None))
        elif category == "invalid_gln":
            customer.gln = identifiers.with_wrong_check_digit(identifiers.gln(rng), rng)
        elif category == "inactive":
            customer.is_active = False
        elif category == "marking_too_long":
            customer.marking = catalog.LONG_MARKING
        elif category == "marking_control_character":
            customer.marking = catalog.CONTROL_CHARACTER_MARKING
        else:
            raise ValueError(f"unknown bad-customer category {category!r}")
        return customer


def _with_peppol_id(customer: Customer, peppol_id: str) -> Customer:
    customer.peppol_id = peppol_id
    return customer


_FOREIGN_IDS = {
    "FI": identifiers.finnish_ids,
    "DK": identifiers.danish_ids,
    "DE": identifiers.german_ids,
    "NO": identifiers.norwegian_ids,
}


def build_customers(rng: random.Random, count: int) -> list[Customer]:
    """Return ``count`` customers ordered by customer number, with ids 1..count.

    About 15 % use another billing method ("Utskrift", "E-post"); of the InExchange customers about
    18 % (at least one per category) carry one defect each from :data:`BAD_CUSTOMER_CATEGORIES`; the
    rest are good: Alingsås kommun (4367), a private person, a Finnish and a Danish company, Swedish
    municipalities, regions and companies. From :data:`BUYERS_ABROAD_FROM` customers on, also German and
    Norwegian customers and customers with a ``peppol_id``.
    """
    if count < MIN_CUSTOMERS:
        raise ValueError(f"customers must be at least {MIN_CUSTOMERS}, got {count}")
    other_count = max(1, round(count * OTHER_BILLING_SHARE))
    bad_count = max(len(BAD_CUSTOMER_CATEGORIES), round((count - other_count) * BAD_SHARE))
    good_count = count - other_count - bad_count

    builder = _Builder(rng)
    fixed = builder.alingsas()
    customers = [builder.private_person(), builder.foreign("FI"), builder.foreign("DK")]
    if count >= BUYERS_ABROAD_FROM:
        abroad = [builder.abroad(entry) for entry in catalog.BUYERS_ABROAD]
        norwegian = abroad[-1]
        abroad[-1] = _with_peppol_id(norwegian, f"0192:{norwegian.org_number}")
        company = builder.swedish(GOOD, public=False)
        company.gln = None
        customers += [*abroad, _with_peppol_id(company, f"0088:{identifiers.gln(rng)}")]
    for _ in range(good_count - 1 - len(customers)):
        customers.append(builder.swedish(GOOD, public=rng.random() < PUBLIC_BODY_SHARE))
    for index in range(bad_count):
        customers.append(builder.bad(BAD_CUSTOMER_CATEGORIES[index % len(BAD_CUSTOMER_CATEGORIES)]))
    for index in range(other_count):
        customer = builder.swedish(OTHER_BILLING, public=rng.random() < PUBLIC_BODY_SHARE)
        customer.billing_method = catalog.OTHER_BILLING_METHODS[index % len(catalog.OTHER_BILLING_METHODS)]
        customers.append(customer)

    rng.shuffle(customers)
    for customer, number in zip(customers, _customer_numbers()):
        customer.customer_number = number
    customers.append(fixed)
    customers.sort(key=lambda customer: int(customer.customer_number))
    for customer_id, customer in enumerate(customers, start=1):
        customer.customer_id = customer_id
    return customers
