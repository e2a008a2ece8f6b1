"""The buyer's identifiers: its Peppol electronic address (BT-49), national company ids and VAT numbers.

The electronic address is ``EndpointID`` with a ``schemeID`` from Peppol's Electronic Address Scheme
(EAS) code list. It is, in this order of preference:

1. the customer's ``peppol_id`` (``scheme:identifier``), when the ERP has that optional column and it is set;
2. the customer's GLN (scheme 0088);
3. the customer's organisation number, under its country's national scheme (:data:`NATIONAL_ID_SCHEMES`),
   when python-stdnum accepts it as that country's company id;
4. the customer's VAT number, under its country's EAS VAT-number scheme (:data:`VAT_NUMBER_SCHEMES`).

A customer with none of these cannot be addressed in Peppol: validation refuses its invoices before
upload. Which countries are in the EU decides reverse charge (:func:`in_eu`): a buyer outside the EU is
an export, never reverse charge.

Every identifier is checked with python-stdnum where it has a check; none is written by hand.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import import_module
from typing import Any

#: Peppol's Electronic Address Scheme codes (EAS) with their meaning, as the validation artefacts of
#: Peppol BIS Billing 3.0 release 3.0.19 list them (rule PEPPOL-EN16931-CL008 refuses any other).
#: 9906 (IT VAT) and 9955 (SE VAT) are no longer in it: Italian VAT numbers use 0211.
EAS_CODES: dict[str, str] = {
    "0002": "System Information et Repertoire des Entreprise et des Etablissements: SIRENE",
    "0007": "Organisationsnummer (Swedish legal entities)",
    "0009": "SIRET-CODE",
    "0037": "LY-tunnus (Finnish OVT code)",
    "0060": "Data Universal Numbering System (D-U-N-S Number)",
    "0088": "EAN Location Code (GS1 GLN)",
    "0096": "The Danish Business Authority - P-number (DK:P)",
    "0097": "FTI - Ediforum Italia, (EDIRA compliant)",
    "0106": "Vereniging van Kamers van Koophandel en Fabrieken in Nederland (KvK), Scheme (EDIRA compliant)",
    "0130": "Directorates of the European Commission",
    "0135": "SIA Object Identifiers",
    "0142": "SECETI Object Identifiers",
    "0147": "Standard Company Code",
    "0151": "Australian Business Number (ABN) Scheme",
    "0154": "Identification number of economic subjects: (ICO)",
    "0158": "Identification number of economic subject (ICO) Act on State Statistics of 29 November 2001, § 27",
    "0170": "Teikoku Company Code",
    "0177": "Odette International Limited",
    "0183": "Numéro d'identification suisse des entreprises (IDE), Swiss Unique Business Identification Number (UIDB)",
    "0184": "DIGSTORG (Danish CVR number)",
    "0188": "Corporate Number of The Social Security and Tax Number System (Japan)",
    "0190": "Dutch Originator's Identification Number",
    "0191": "Centre of Registers and Information Systems of the Ministry of Justice (Estonian company code)",
    "0192": "Enhetsregisteret ved Bronnoysundregisterne (Norwegian organisation number)",
    "0193": "UBL.BE party identifier",
    "0194": "KOIOS Open Technical Dictionary",
    "0195": "Singapore UEN identifier",
    "0196": "Kennitala - Iceland legal id for individuals and legal entities",
    "0198": "ERSTORG",
    "0199": "Global legal entity identifier (GLEIF)",
    "0200": "Legal entity code (Lithuania)",
    "0201": "Codice Univoco Unità Organizzativa iPA",
    "0202": "Indirizzo di Posta Elettronica Certificata",
    "0203": "eDelivery Network Participant identifier",
    "0204": "Leitweg-ID",
    "0205": "CODDEST",
    "0208": "Numero d'entreprise / ondernemingsnummer / Unternehmensnummer (Belgium)",
    "0209": "GS1 identification keys",
    "0210": "CODICE FISCALE",
    "0211": "PARTITA IVA (Italian VAT number)",
    "0212": "Finnish Organization Identifier",
    "0213": "Finnish Organization Value Add Tax Identifier",
    "0215": "Net service ID",
    "0216": "OVTcode (Finland)",
    "0217": "The Netherlands Chamber of Commerce and Industry establishment number",
    "0218": "Unified registration number (Latvia)",
    "0221": "The registered number of the qualified invoice issuer (Japan)",
    "0225": "FRCTC ELECTRONIC ADDRESS",
    "0230": "National e-Invoicing Framework (Malaysia)",
    "0235": "UAE Tax Identification Number (TIN)",
    "0240": "Register of legal persons (in French : Répertoire des personnes morales)",
    "9910": "Hungary VAT number",
    "9913": "Business Registers Network",
    "9914": "Österreichische Umsatzsteuer-Identifikationsnummer",
    "9915": "Österreichisches Verwaltungs bzw. Organisationskennzeichen",
    "9918": "SOCIETY FOR WORLDWIDE INTERBANK FINANCIAL, TELECOMMUNICATION S.W.I.F.T",
    "9919": "Kennziffer des Unternehmensregisters",
    "9920": "Agencia Española de Administración Tributaria (Spanish VAT number)",
    "9922": "Andorra VAT number",
    "9923": "Albania VAT number",
    "9924": "Bosnia and Herzegovina VAT number",
    "9925": "Belgium VAT number",
    "9926": "Bulgaria VAT number",
    "9927": "Switzerland VAT number",
    "9928": "Cyprus VAT number",
    "9929": "Czech Republic VAT number",
    "9930": "Germany VAT number",
    "9931": "Estonia VAT number",
    "9932": "United Kingdom VAT number",
    "9933": "Greece VAT number",
    "9934": "Croatia VAT number",
    "9935": "Ireland VAT number",
    "9936": "Liechtenstein VAT number",
    "9937": "Lithuania VAT number",
    "9938": "Luxemburg VAT number",
    "9939": "Latvia VAT number",
    "9940": "Monaco VAT number",
    "9941": "Montenegro VAT number",
    "9942": "Macedonia, the former Yugoslav Republic of VAT number",
    "9943": "Malta VAT number",
    "9944": "Netherlands VAT number",
    "9945": "Poland VAT number",
    "9946": "Portugal VAT number",
    "9947": "Romania VAT number",
    "9948": "Serbia VAT number",
    "9949": "Slovenia VAT number",
    "9950": "Slovakia VAT number",
    "9951": "San Marino VAT number",
    "9952": "Turkey VAT number",
    "9953": "Holy See (Vatican City State) VAT number",
    "9957": "French VAT number",
    "9959": "Employer Identification Number (EIN, USA)",
}

#: the EU's member states (ISO 3166-1 alpha-2): a buyer in one of them, Sweden aside, is an intra-EU buyer
EU_COUNTRIES = frozenset(
    {
        "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
        "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
    }
)  # fmt: skip
#: where a VAT number's prefix is not the ISO country code
_VAT_PREFIX = {"GR": "EL"}

#: EAS VAT-number schemes, by country: the identifier is the VAT number with its country prefix
#: (DE136695976). Italy's is 0211 (PARTITA IVA, which replaced 9906); Finland's 0213 is left out (its
#: participants are no longer registered under it), as are Sweden's 9955 and Norway's 9909 (removed).
VAT_NUMBER_SCHEMES: dict[str, str] = {
    "AD": "9922", "AL": "9923", "AT": "9914", "BA": "9924", "BE": "9925", "BG": "9926", "CH": "9927",
    "CY": "9928", "CZ": "9929", "DE": "9930", "EE": "9931", "ES": "9920", "FR": "9957", "GB": "9932",
    "GR": "9933", "HR": "9934", "HU": "9910", "IE": "9935", "IT": "0211", "LI": "9936", "LT": "9937",
    "LU": "9938", "LV": "9939", "MC": "9940", "ME": "9941", "MK": "9942", "MT": "9943", "NL": "9944",
    "PL": "9945", "PT": "9946", "RO": "9947", "RS": "9948", "SI": "9949", "SK": "9950", "SM": "9951",
    "TR": "9952", "VA": "9953",
}  # fmt: skip

#: EAS schemes of the national company id kept in ``org_number``, by the customer's country: used when
#: python-stdnum accepts the org number as that id. Finland's is the OVT code (0216: "0037" + the
#: business id's 8 digits), built from the business id (Y-tunnus). Italy's is the partita IVA (0211,
#: written IT + 11 digits as the VAT-number scheme writes it; a company's codice fiscale is the same
#: number), Latvia's the unified registration number of a legal entity (0218, 11 digits).
NATIONAL_ID_SCHEMES: dict[str, str] = {
    "SE": "0007", "NO": "0192", "DK": "0184", "FI": "0216", "IS": "0196", "EE": "0191", "BE": "0208",
    "FR": "0002", "CH": "0183", "AU": "0151", "SG": "0195", "JP": "0188", "US": "9959", "IT": "0211",
    "LV": "0218",
}  # fmt: skip

#: longest identifier of a Peppol participant (after the scheme)
MAX_IDENTIFIER = 50
_OVT = re.compile(r"0037(\d{8})([0-9A-Z]{0,5})")
_PRINTABLE = re.compile(r"[!-~]+")  # printable ASCII, no spaces
_SCHEME = re.compile(r"\d{4}")


@dataclass(frozen=True)
class Endpoint:
    """A Peppol electronic address: ``EndpointID`` and its ``schemeID``.

    :param scheme: the EAS code (0088).
    :param identifier: the identifier as the document writes it (7300010000001).
    """

    scheme: str
    identifier: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.identifier}"


def in_eu(country: str) -> bool:
    """Whether ``country`` (ISO 3166-1 alpha-2, any case) is an EU member state."""
    return country.strip().upper() in EU_COUNTRIES


def _compact(text: str) -> str:
    return "".join(text.split()).upper()


def _stdnum(path: str, *, digits: bool = False) -> Callable[[str], str | None]:
    """A check by python-stdnum module ``stdnum.<path>``: its compact form, or None when invalid."""

    def normal(identifier: str) -> str | None:
        module: Any = import_module(f"stdnum.{path}")
        if not module.is_valid(identifier):
            return None
        compact = str(module.compact(identifier)).upper()
        return "".join(ch for ch in compact if ch.isdigit()) if digits else compact

    return normal


def _gln(identifier: str) -> str | None:
    from stdnum import ean

    digits = identifier.replace(" ", "")
    return digits if len(digits) == 13 and digits.isdigit() and ean.is_valid(digits) else None


def _ovt(identifier: str) -> str | None:
    """A Finnish OVT code: 0037, the business id (Y-tunnus) without its hyphen, and an optional unit of up
    to five letters or digits (003720774740, 003720774740ABC)."""
    from stdnum.fi import ytunnus

    text = _compact(identifier)
    match = _OVT.fullmatch(text)
    return text if match and ytunnus.is_valid(match.group(1)) else None


def _cvr(identifier: str) -> str | None:
    """A Danish CVR number, 8 digits, written with or without DK (Peppol rule PEPPOL-COMMON-R042)."""
    from stdnum.dk import cvr

    text = _compact(identifier)
    prefix = "DK" if text.startswith("DK") else ""
    digits = text.removeprefix(prefix)
    return prefix + digits if len(digits) == 8 and digits.isdigit() and cvr.is_valid(digits) else None


def _partita_iva(identifier: str) -> str | None:
    """An Italian org number as a partita IVA under 0211: IT and its 11 digits (stdnum.it.iva)."""
    from stdnum.it import iva

    return "IT" + str(iva.compact(identifier)) if iva.is_valid(identifier) else None


def _latvian_registration(identifier: str) -> str | None:
    """A Latvian unified registration number (0218): the 11 digits of a legal entity, written with or without
    LV (stdnum.lv.pvn, whose numbers of a legal entity start above 3; the others are personal codes)."""
    from stdnum.lv import pvn

    digits = str(pvn.compact(identifier)) if pvn.is_valid(identifier) else ""
    return digits if digits[:1] > "3" else None


def vat_in_document(vat: str, country: str) -> str | None:
    """A foreign buyer's VAT number as the document writes it (with its country prefix), or None when
    python-stdnum does not accept it as a VAT number of ``country``.

    EU countries: a valid EU VAT number of that country (Greece's prefix is EL). Elsewhere: valid by the
    country's own python-stdnum module (Norway's MVA number, Switzerland's, the United Kingdom's); where
    python-stdnum has none, any number written with the country's prefix.

    :param vat: the VAT number as the ERP has it (spaces and lower case allowed).
    :param country: the customer's country (ISO 3166-1 alpha-2).
    """
    country = country.strip().upper() or "SE"
    text = _compact(vat)
    if not text:
        return None
    if country in EU_COUNTRIES:
        from stdnum.eu import vat as eu_vat

        if not eu_vat.is_valid(text):
            return None
        compact = str(eu_vat.compact(text))
        return compact if compact[:2] == _VAT_PREFIX.get(country, country) else None
    module = _vat_module(country)
    if module is None:
        return text if text.startswith(country) and len(text) > len(country) else None
    for candidate in (text, text.removeprefix(country)):
        if candidate and module.is_valid(candidate):
            compact = str(module.compact(candidate)).upper()
            return compact if compact.startswith(country) else country + compact
    return None


@lru_cache(maxsize=256)
def _vat_module(country: str) -> Any:
    """python-stdnum's VAT-number module of a country outside the EU, or None."""
    from stdnum.util import get_cc_module

    if not re.fullmatch(r"[A-Z]{2}", country):
        return None
    return get_cc_module(country.lower(), "vat")


def _vat_scheme(country: str) -> Callable[[str], str | None]:
    return lambda identifier: vat_in_document(identifier, country)


@dataclass(frozen=True)
class _Check:
    """How the identifiers of one EAS scheme are checked.

    :param label: what the identifier is, in Swedish with its article, for messages ("ett GLN-nummer").
    :param form: how it is written, in Swedish ("13 siffror med kontrollsiffra").
    :param normal: the identifier as the document writes it, or None when it is not valid.
    """

    label: str
    form: str
    normal: Callable[[str], str | None]


_OVT_FORM = "0037, FO-numrets 8 siffror utan bindestreck och högst 5 bokstäver eller siffror för en enhet"

#: the EAS schemes whose identifiers python-stdnum can check (the others need printable characters only)
SCHEME_CHECKS: dict[str, _Check] = {
    "0002": _Check("ett franskt SIREN-nummer", "9 siffror", _stdnum("fr.siren")),
    "0007": _Check("ett svenskt organisationsnummer", "10 siffror med kontrollsiffra", _stdnum("se.orgnr")),
    "0009": _Check("ett franskt SIRET-nummer", "14 siffror", _stdnum("fr.siret")),
    "0037": _Check("en finsk OVT-kod", _OVT_FORM, _ovt),
    "0088": _Check("ett GLN-nummer", "13 siffror med kontrollsiffra", _gln),
    "0151": _Check("ett australiskt ABN", "11 siffror", _stdnum("au.abn")),
    "0183": _Check("ett schweiziskt UID", "CHE och 9 siffror", _stdnum("ch.uid")),
    "0184": _Check("ett danskt CVR-nummer", "8 siffror, med eller utan DK", _cvr),
    "0188": _Check("ett japanskt företagsnummer", "13 siffror", _stdnum("jp.cn")),
    "0191": _Check("ett estniskt registrikood", "8 siffror", _stdnum("ee.registrikood")),
    "0192": _Check("ett norskt organisasjonsnummer", "9 siffror med kontrollsiffra", _stdnum("no.orgnr")),
    "0195": _Check("ett singaporianskt UEN", "9 eller 10 tecken", _stdnum("sg.uen")),
    "0196": _Check("ett isländskt kennitala", "10 siffror", _stdnum("is_.kennitala")),
    "0199": _Check("en LEI-kod", "20 tecken", _stdnum("lei")),
    "0208": _Check("ett belgiskt företagsnummer", "10 siffror", _stdnum("be.vat", digits=True)),
    "0210": _Check("ett italienskt codice fiscale", "11 siffror eller 16 tecken", _stdnum("it.codicefiscale")),
    "0213": _Check("ett finskt momsnummer", "FI och 8 siffror", _vat_scheme("FI")),
    "0216": _Check("en finsk OVT-kod", _OVT_FORM, _ovt),
    "0218": _Check("ett lettiskt registreringsnummer", "11 siffror med kontrollsiffra", _latvian_registration),
    "9959": _Check("ett amerikanskt EIN", "9 siffror", _stdnum("us.ein", digits=True)),
    **{
        scheme: _Check(
            f"ett momsnummer för {country}",
            f"med landsprefixet {_VAT_PREFIX.get(country, country)}",
            _vat_scheme(country),
        )
        for country, scheme in VAT_NUMBER_SCHEMES.items()
    },
}


def _national_id(country: str, org: str) -> Endpoint | None:
    """The org number under its country's national scheme, when python-stdnum accepts it (Finland: as the
    OVT code of the business id)."""
    scheme = NATIONAL_ID_SCHEMES.get(country)
    if scheme is None or not org:
        return None
    if scheme == "0216":
        from stdnum.fi import ytunnus

        return Endpoint(scheme, "0037" + str(ytunnus.compact(org))) if ytunnus.is_valid(org) else None
    identifier = _partita_iva(org) if scheme == "0211" else SCHEME_CHECKS[scheme].normal(org)
    return Endpoint(scheme, identifier) if identifier else None


def parse_peppol_id(peppol_id: str) -> Endpoint | None:
    """A ``peppol_id`` (``scheme:identifier``) as the document writes it, or None when it is not a valid one.

    The scheme must be an EAS code; the identifier must pass the scheme's python-stdnum check, where the
    scheme has one (:data:`SCHEME_CHECKS`), else be printable characters without spaces (at most 50).
    """
    return _parsed(peppol_id)[0]


def _parsed(peppol_id: str) -> tuple[Endpoint | None, str]:
    """The endpoint, or None and why not (``format``, ``scheme`` or ``identifier``)."""
    scheme, colon, identifier = peppol_id.strip().partition(":")
    scheme, identifier = scheme.strip(), identifier.strip()
    if not colon or not _SCHEME.fullmatch(scheme) or not identifier:
        return None, "format"
    if scheme not in EAS_CODES:
        return None, "scheme"
    check = SCHEME_CHECKS.get(scheme)
    if check is not None:
        written = check.normal(identifier)
    else:
        written = identifier if _PRINTABLE.fullmatch(identifier) and len(identifier) <= MAX_IDENTIFIER else None
    return (Endpoint(scheme, written), "") if written else (None, "identifier")


def peppol_id_problem(peppol_id: str, show: Callable[[Any], str] = str) -> str | None:
    """What is wrong with a ``peppol_id``, in Swedish (None when it is valid).

    :param peppol_id: the value of the customer's ``peppol_id``.
    :param show: how a message shows an ERP value.
    """
    endpoint, problem = _parsed(peppol_id)
    if endpoint is not None:
        return None
    value = show(peppol_id)
    if problem == "format":
        return f"Peppol-id '{value}' ska skrivas schema:identifierare, till exempel 0088:7300010000001 (peppol_id)"
    scheme, _, _ = peppol_id.strip().partition(":")
    if problem == "scheme":
        return (
            f"Peppol-id '{value}' har schemat {show(scheme.strip())}, som inte finns i Peppols EAS-lista; "
            "använd en EAS-kod, till exempel 0088 (GLN) eller 0007 (svenskt organisationsnummer) (peppol_id)"
        )
    scheme = scheme.strip()
    check = SCHEME_CHECKS.get(scheme)
    if check is None:
        wanted = f"tryckbara tecken utan mellanslag, högst {MAX_IDENTIFIER}"
    else:
        wanted = f"{check.label} ({check.form})"
    return (
        f"Peppol-id '{value}' är ogiltigt: identifieraren för EAS {scheme} ska vara {wanted}; rätta kundens peppol_id"
    )


def buyer_endpoint(country: str, org: str, vat: str, gln: str, peppol_id: str = "") -> Endpoint | None:
    """The buyer's electronic address (BT-49), or None when it has none (see the module's order).

    :param country: the customer's country (ISO 3166-1 alpha-2, empty for Sweden).
    :param org: its org number (a foreign customer's national company id).
    :param vat: its VAT number.
    :param gln: its GLN.
    :param peppol_id: its ``peppol_id`` (empty when the ERP has no such column or value).
    """
    if peppol_id:
        return parse_peppol_id(peppol_id)
    if gln:
        return Endpoint("0088", "".join(ch for ch in gln if ch.isdigit()))
    country = country.strip().upper() or "SE"
    if country == "SE":  # the org number's own rules are validation's (a sole trader's personnummer too)
        digits = "".join(ch for ch in org if ch.isdigit())
        return Endpoint("0007", digits) if digits else None
    national = _national_id(country, org)
    if national is not None:
        return national
    scheme = VAT_NUMBER_SCHEMES.get(country)
    identifier = vat_in_document(vat, country) if scheme and vat else None
    return Endpoint(scheme, identifier) if scheme and identifier else None


def endpoint_problem(
    country: str, org: str, vat: str, gln: str, peppol_id: str = "", show: Callable[[Any], str] = str
) -> str | None:
    """Why a customer has no Peppol address, in Swedish, or None when it has one.

    A given GLN, ``peppol_id`` or (where the country has a VAT-number scheme) VAT number counts as an
    address even when it is invalid: its own rule names what is wrong with it.

    :param show: how a message shows an ERP value.
    """
    country = country.strip().upper() or "SE"
    if peppol_id or gln or country == "SE":
        return None
    if _national_id(country, org) is not None:
        return None
    vat_scheme = VAT_NUMBER_SCHEMES.get(country)
    if vat_scheme and vat:
        return None
    national = NATIONAL_ID_SCHEMES.get(country)
    reason = ""
    if national and org:
        label, form = _national_label(national)
        reason = f": organisationsnummer {show(org)} är inte {label} ({form}, EAS {national})"
    wanted = "kundens GLN-nummer eller Peppol-id (peppol_id)"
    if vat_scheme:
        wanted = f"kundens VAT-nummer (EAS {vat_scheme}), GLN-nummer eller Peppol-id (peppol_id)"
    elif national:
        wanted = f"ett giltigt organisationsnummer, {wanted}"
    return f"Peppol-adress saknas för {show(country)}{reason}; ange {wanted}"


def _national_label(scheme: str) -> tuple[str, str]:
    """What the org number must be to give the national scheme ``scheme``, and its form."""
    if scheme == "0216":
        return "ett finskt FO-nummer (Y-tunnus)", "7 siffror, bindestreck och kontrollsiffra"
    if scheme == "0211":
        return "ett italienskt partita IVA-nummer", "11 siffror med kontrollsiffra"
    return SCHEME_CHECKS[scheme].label, SCHEME_CHECKS[scheme].form


def endpoint_refusal(
    country: str, org: str, vat: str, gln: str, peppol_id: str = "", show: Callable[[Any], str] = str
) -> str:
    """Why :func:`buyer_endpoint` found no address, in Swedish: what is wrong with the ``peppol_id``, or
    which address is missing, or (an invalid org or VAT number the address was to come from) what to fix."""
    if peppol_id:
        return peppol_id_problem(peppol_id, show) or f"Peppol-id '{show(peppol_id)}' är ogiltigt"
    return endpoint_problem(country, org, vat, gln, peppol_id, show) or (
        "Peppol-adress saknas: kundens organisations- eller VAT-nummer är ogiltigt; rätta det"
    )
