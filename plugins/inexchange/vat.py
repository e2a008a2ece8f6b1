"""VAT categories of invoice lines and the reasons a line carries no VAT (EN 16931, Peppol BIS 3).

A line's VAT category (BT-151) is a code of UNCL5305 as EN 16931 uses it. The ERP may state it, with
an exemption reason code of the CEF VATEX list (BT-121) and a reason text (BT-120), in the optional
columns :data:`LINE_COLUMNS` of ``customer_invoice_line``. A line that states no category has one
derived from its rate: S above 0 %; at 0 %, AE (reverse charge) for a buyer in another EU country
with a VAT number, else Z (a buyer outside the EU too: G, an export, is only ever stated).

The validation (``inexchange.validation``) and the document builder (``inexchange.ubl``) share the
data and the checks of this module, so that both name a problem in the same words (Swedish, the
language of the ERP).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

#: the optional columns of ``customer_invoice_line`` (docs/erp-contract.md)
LINE_COLUMNS = ("vat_category", "vat_exemption_reason_code", "vat_exemption_reason")

#: the categories a line may state, with what each means (as a message names it)
CATEGORIES: dict[str, str] = {
    "S": "standardmoms",
    "Z": "nollskattesats",
    "E": "undantagen från moms",
    "AE": "omvänd betalningsskyldighet",
    "K": "unionsintern leverans (EU)",
    "G": "export utanför EU",
    "O": "utanför momsens tillämpningsområde",
}
#: categories whose VAT breakdown must state an exemption reason, and the rule that says so
REASON_RULES = {"E": "BR-E-10", "AE": "BR-AE-10", "K": "BR-IC-10", "G": "BR-G-10", "O": "BR-O-10"}
#: categories whose VAT breakdown must not state one, and the rule that says so
NO_REASON_RULES = {"S": "BR-S-10", "Z": "BR-Z-10"}
#: the rule fixing the rate of each category's lines (S above 0, O without a rate, the others 0)
RATE_RULES = {
    "S": "BR-S-05",
    "Z": "BR-Z-05",
    "E": "BR-E-05",
    "AE": "BR-AE-05",
    "K": "BR-IC-05",
    "G": "BR-G-05",
    "O": "BR-O-05",
}
#: categories that need the buyer's VAT number, and the rule: K by BR-IC-02; AE by BR-AE-02 (which
#: would take a legal registration id instead, but a reverse-charge invoice names the buyer's VAT number)
BUYER_VAT_RULES = {"K": "BR-IC-02", "AE": "BR-AE-02"}
#: the VATEX code that means exactly the category, suggested when a reason is missing
CATEGORY_CODES = {"AE": "VATEX-EU-AE", "K": "VATEX-EU-IC", "G": "VATEX-EU-G", "O": "VATEX-EU-O"}
#: the exemption reason of lines whose reverse charge is derived (no category stated)
DERIVED_REVERSE_CHARGE = ("VATEX-EU-AE", "Omvänd betalningsskyldighet (reverse charge)")
#: the reasons of the categories a line without a stated category may get (see ubl._category): S and Z
#: take none; G (export) is never derived, a 0 % line of a buyer outside the EU that states none is Z
DERIVED_REASONS = {"AE": DERIVED_REVERSE_CHARGE}
#: longest exemption reason text accepted, in characters (the contract's column width; validation checks it)
MAX_REASON_LENGTH = 200

_EXEMPT_CODES = (
    "VATEX-EU-79-C",
    "VATEX-EU-132",
    *(f"VATEX-EU-132-1{letter}" for letter in "ABCDEFGHIJKLMNOPQ"),
    "VATEX-EU-143",
    *(f"VATEX-EU-143-1{suffix}" for suffix in ("A", "B", "C", "D", "E", "F", "FA", "G", "H", "I", "J", "K", "L")),
    "VATEX-EU-144",
    "VATEX-EU-146-1E",
    "VATEX-EU-148",
    *(f"VATEX-EU-148-{letter}" for letter in "ABCDEFG"),
    "VATEX-EU-151",
    *(f"VATEX-EU-151-1{suffix}" for suffix in ("A", "AA", "B", "C", "D", "E")),
    "VATEX-EU-153",
    "VATEX-EU-159",
    "VATEX-EU-309",
    "VATEX-EU-D",
    "VATEX-EU-F",
    "VATEX-EU-I",
    "VATEX-EU-J",
    "VATEX-FR-FRANCHISE",
    "VATEX-FR-CNWVAT",
    *(f"VATEX-FR-CGI261-{number}" for number in "1234578"),
    "VATEX-FR-CGI261A",
    "VATEX-FR-CGI261B",
    *(f"VATEX-FR-CGI261C-{number}" for number in "123"),
    *(f"VATEX-FR-CGI261D-{number}" for number in ("1", "1BIS", "2", "3", "4")),
    *(f"VATEX-FR-CGI261E-{number}" for number in "12"),
    "VATEX-FR-CGI277A",
    "VATEX-FR-CGI275",
    "VATEX-FR-298SEXDECIESA",
    "VATEX-FR-CGI295",
)
#: the CEF VATEX code list (as rule BR-CL-22 of the Peppol BIS 3 release 3.0.19 lists it) and the VAT
#: category each code belongs to (the Peppol rules P0104 to P0111 for the EU codes of one meaning)
VATEX: dict[str, str] = {
    **dict.fromkeys(_EXEMPT_CODES, "E"),
    "VATEX-EU-AE": "AE",
    "VATEX-FR-AE": "AE",
    "VATEX-EU-IC": "K",
    "VATEX-EU-G": "G",
    "VATEX-EU-O": "O",
}


def category_name(category: str) -> str:
    """A category as a message names it: 'E (undantagen från moms)'."""
    return f"{category} ({CATEGORIES[category]})" if category in CATEGORIES else repr(category)


def rate_fits(category: str, rate: Decimal) -> bool:
    """Whether a line of ``category`` may have ``rate`` (percent): S above 0, every other category 0."""
    return rate > 0 if category == "S" else rate == 0


def line_problem(category: str, rate: Decimal | None, code: str, reason: str) -> str | None:
    """What is wrong with a line's VAT category and exemption reason, or None.

    :param category: the stated category, upper case ('' when none is stated).
    :param rate: the line's VAT rate in percent (None when unreadable: named elsewhere).
    :param code: the stated VATEX code, upper case ('' when none).
    :param reason: the stated reason text ('' when none).
    """
    if not category:
        if code or reason:
            return (
                "undantagsorsak anges utan momskategori; ange momskategori (E, AE, K, G eller O) eller ta bort orsaken"
            )
        return None
    if category not in CATEGORIES:
        return f"momskategori {category[:20]!r} är okänd; använd {', '.join(list(CATEGORIES)[:-1])} eller O"
    if rate is not None and not rate_fits(category, rate):
        wanted = "en momssats över 0 %" if category == "S" else "momssats 0 %"
        return (
            f"momskategori {category_name(category)} kräver {wanted}, raden har {_percent(rate)} % "
            f"({RATE_RULES[category]}); rätta momssatsen eller momskategorin"
        )
    if category in NO_REASON_RULES and (code or reason):
        return (
            f"momskategori {category_name(category)} har ingen undantagsorsak ({NO_REASON_RULES[category]}); "
            "ta bort undantagsorsaken eller ändra momskategorin"
        )
    if code and code not in VATEX:
        return f"momsundantagskod {code[:40]!r} finns inte i VATEX-listan (BR-CL-22); ange en VATEX-kod, till exempel {_example(category)}"
    if code and VATEX[code] != category:
        return (
            f"momsundantagskod {code} hör till momskategori {VATEX[code]}, inte {category}; "
            "rätta koden eller momskategorin"
        )
    return None


def missing_reason(category: str) -> str:
    """The message part for a category stated without any exemption reason on its lines."""
    return (
        f"momskategori {category_name(category)} saknar undantagsorsak ({REASON_RULES[category]}); "
        f"ange momsundantagskod (till exempel {_example(category)}) eller undantagsorsak på raden"
    )


def conflicting_reasons(category: str) -> str:
    """The message part for lines of one category that state different exemption reasons."""
    return (
        f"raderna med momskategori {category} anger olika undantagsorsaker; en faktura har en momsspecifikation "
        f"och en orsak per kategori ({REASON_RULES[category].replace('-10', '-01')}); ge raderna samma orsak "
        "eller dela upp fakturan"
    )


def not_subject_mixed(others: Iterable[str]) -> str:
    """The message part for lines not subject to VAT (O) beside lines of ``others`` (BR-O-11, BR-O-12)."""
    return (
        f"momskategori {category_name('O')} kan inte stå på samma faktura som {', '.join(others)} "
        "(BR-O-11, BR-O-12); fakturera dem var för sig"
    )


def buyer_vat_missing(categories: Iterable[str]) -> str:
    """The message part for lines of ``categories`` (K, AE) whose customer has no VAT number."""
    needs = ", ".join(f"{category_name(category)} ({BUYER_VAT_RULES[category]})" for category in categories)
    return f"momskategori {needs} kräver kundens VAT-nummer; ange kundens VAT-nummer"


def not_intra_community(country: str) -> str:
    """The message part for an intra-community supply (K) to a customer of ``country``, not another EU country."""
    return (
        f"momskategori {category_name('K')} förutsätter en kund i ett annat EU-land än Sverige, kunden har "
        f"landskod {country}; rätta momskategorin eller kundens land"
    )


def reason_of(reasons: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """The one (code, text) of a category's lines: each part is the one value its lines state, or ''.

    :param reasons: (code, text) per line of the category, '' where a line states none.
    :returns: None when two lines state different codes or different texts.
    """
    codes, texts = set(), set()
    for code, text in reasons:
        if code:
            codes.add(code)
        if text:
            texts.add(text)
    if len(codes) > 1 or len(texts) > 1:
        return None
    return (next(iter(codes), ""), next(iter(texts), ""))


def _example(category: str) -> str:
    return CATEGORY_CODES.get(category, "VATEX-EU-132")


def _percent(rate: Decimal) -> str:
    text = f"{rate:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
