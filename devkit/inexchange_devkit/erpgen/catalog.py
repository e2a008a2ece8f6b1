"""Static Swedish master data the generator draws from: names, places, articles, references."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

INEXCHANGE_BILLING_METHOD = "InExchange utskrift (API)"
"""The billing method ("Faktureringsmetod") of customers whose invoices go through InExchange."""

OTHER_BILLING_METHODS = ("Utskrift", "E-post")
"""Billing methods of customers whose invoices the pipeline must never send."""


@dataclass(frozen=True, slots=True)
class Place:
    """A Swedish city and the first two digits of its street-address postal codes."""

    city: str
    postal_prefix: str


PLACES: tuple[Place, ...] = (
    Place("Stockholm", "11"),
    Place("Göteborg", "41"),
    Place("Malmö", "21"),
    Place("Uppsala", "75"),
    Place("Linköping", "58"),
    Place("Örebro", "70"),
    Place("Västerås", "72"),
    Place("Umeå", "90"),
    Place("Luleå", "97"),
    Place("Borås", "50"),
    Place("Lerum", "44"),
    Place("Jönköping", "55"),
    Place("Sundsvall", "85"),
    Place("Karlstad", "65"),
    Place("Växjö", "35"),
    Place("Gävle", "80"),
)


@dataclass(frozen=True, slots=True)
class PublicBody:
    """A municipality or region: name, city of its invoice address, box postal code, mail domain."""

    name: str
    city: str
    postal_code: str
    mail_domain: str


ALINGSAS = PublicBody("Alingsås kommun", "Alingsås", "441 81", "alingsas.se")
"""The municipality shown in SoftOne GO's InExchange handbook (customer 4367, org number 212000-1553)."""

ALINGSAS_CUSTOMER_NUMBER = "4367"
ALINGSAS_ORG_NUMBER = "212000-1553"

MUNICIPALITIES: tuple[PublicBody, ...] = (
    PublicBody("Lerums kommun", "Lerum", "443 80", "lerum.se"),
    PublicBody("Borås Stad", "Borås", "501 80", "boras.se"),
    PublicBody("Linköpings kommun", "Linköping", "581 81", "linkoping.se"),
    PublicBody("Örebro kommun", "Örebro", "701 35", "orebro.se"),
    PublicBody("Umeå kommun", "Umeå", "901 84", "umea.se"),
    PublicBody("Luleå kommun", "Luleå", "971 85", "lulea.se"),
    PublicBody("Västerås stad", "Västerås", "721 87", "vasteras.se"),
    PublicBody("Uppsala kommun", "Uppsala", "753 75", "uppsala.se"),
    PublicBody("Trollhättans stad", "Trollhättan", "461 83", "trollhattan.se"),
    PublicBody("Kungsbacka kommun", "Kungsbacka", "434 81", "kungsbacka.se"),
    PublicBody("Partille kommun", "Partille", "433 82", "partille.se"),
    PublicBody("Härryda kommun", "Mölnlycke", "435 80", "harryda.se"),
    PublicBody("Vårgårda kommun", "Vårgårda", "447 80", "vargarda.se"),
    PublicBody("Herrljunga kommun", "Herrljunga", "524 81", "herrljunga.se"),
    PublicBody("Mölndals stad", "Mölndal", "431 82", "molndal.se"),
)

REGIONS: tuple[PublicBody, ...] = (
    PublicBody("Region Östergötland", "Linköping", "581 91", "regionostergotland.se"),
    PublicBody("Region Västra Götaland", "Vänersborg", "462 80", "vgregion.se"),
    PublicBody("Region Skåne", "Kristianstad", "291 89", "skane.se"),
    PublicBody("Region Halland", "Halmstad", "301 80", "regionhalland.se"),
)

STREETS = (
    "Storgatan", "Kungsgatan", "Drottninggatan", "Industrivägen", "Hamngatan", "Järnvägsgatan",
    "Skolgatan", "Verkstadsgatan", "Torggatan", "Kyrkogatan", "Västra vägen", "Östra Hamngatan",
    "Lagervägen", "Fabriksgatan", "Bangårdsgatan", "Åvägen",
)

COMPANY_PREFIXES = (
    "Bergström", "Lindqvist", "Nordens", "Svea", "Mälardalens", "Västkustens", "Norrlands",
    "Öresunds", "Götaälvens", "Sjöbergs", "Karlssons", "Ekholms", "Vikingarnas", "Dalarnas",
    "Skogsbygdens", "Hallands", "Roslagens", "Fjällvärldens", "Solbackens", "Åkessons",
)

COMPANY_TRADES = (
    "Bygg", "Konsult", "Transport", "Fastigheter", "El & Tele", "Data", "Måleri", "Redovisning",
    "Livsmedel", "Logistik", "Teknik", "Städservice", "Rör", "Kontorsmaterial", "Omsorg",
)

MUNICIPAL_DEPARTMENTS = (
    "Fakturaservice", "Ekonomiavdelningen", "Socialförvaltningen", "Samhällsbyggnadsförvaltningen",
    "Utbildningsförvaltningen", "Kultur- och fritidsförvaltningen",
)

FIRST_NAMES = (
    "Anna", "Erik", "Maria", "Lars", "Karin", "Anders", "Eva", "Johan", "Kristina", "Per",
    "Elin", "Mikael", "Sara", "Fredrik", "Ingrid", "Oskar", "Linnea", "Gustav", "Maja", "Nils",
)

LAST_NAMES = (
    "Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson", "Persson",
    "Svensson", "Gustafsson", "Pettersson", "Lindberg", "Lindqvist", "Holm", "Sjöberg", "Åberg",
    "Öberg", "Ekström", "Björk", "Wallin",
)

GOOD_MARKINGS = (
    "Projekt 4711", "Kostnadsställe 3100", "Ansvar 1320 Verksamhet 410", "Avd. Hemtjänst",
    "Ref 12345", "Projekt Skolgården 2026", "Kst 8800 Fastighet", "Beställare Eva Ek",
)

LONG_MARKING = (
    "Fakturan ska märkas med projektnummer 4711, ansvarsnummer 1320, verksamhetskod 410 och "
    "beställarens fullständiga namn samt telefonnummer, annars returneras den obetald till "
    "leverantören. Kopia på tidrapport och följesedel ska bifogas. Frågor besvaras av ekonomi"
    "avdelningen vardagar 9-11."
)
"""A marking pasted from the customer's instructions: longer than 200 characters."""

CONTROL_CHARACTER_MARKING = "Ansvar 1320\x0bVerksamhet 410"
"""A marking with a vertical tab pasted from a word processor: a control character XML refuses."""

FOREIGN_CUSTOMERS = (
    ("FI", "Suomen Rakennuspalvelu Oy", "Mannerheimintie 12", "00100", "Helsinki", "EUR", "fi"),
    ("DK", "Nordisk Logistik ApS", "Vesterbrogade 34", "1620", "København V", "DKK", "dk"),
)
"""Country, name, street, postal code, city, currency and e-mail top-level domain of the EU customers."""

BUYERS_ABROAD = (
    ("DE", "Rheinland Maschinenbau GmbH", "Industriestraße 8", "50667", "Köln", "EUR", "de"),
    ("DE", "Hansa Handelshaus GmbH", "Am Sandtorkai 3", "20457", "Hamburg", "EUR", "de"),
    ("NO", "Fjordbygg AS", "Karl Johans gate 22", "0159", "Oslo", "NOK", "no"),
    ("NO", "Vestland Energi AS", "Bryggen 5", "5003", "Bergen", "NOK", "no"),
)
"""The German (VAT number, no GLN) and Norwegian (organisation and MVA number) customers of larger
registers, as :data:`FOREIGN_CUSTOMERS`."""

PRIVATE_PERSON_NAME = "Karin Lindqvist"


@dataclass(frozen=True, slots=True)
class Article:
    """An article of the price list and how its quantities and prices are drawn.

    ``goods`` marks goods (not services): sold to an EU customer abroad they are an intra-community
    supply (VAT category K), services reverse charge (AE). ``exemption`` is the reason an exempt
    article (VAT category E) carries no VAT.
    """

    number: str
    description: str
    unit: str
    vat_rate: Decimal
    min_price: int
    max_price: int
    weight: int
    goods: bool = False
    exemption: str | None = None


LETTING_EXEMPTION = "Undantag från skatteplikt: upplåtelse av fastighet (lokalhyra)"
"""Why letting premises carries no VAT (VAT category E; the VATEX list has no code for it)."""

ARTICLES: tuple[Article, ...] = (
    Article("1001", "Konsulttimmar", "tim", Decimal("25.00"), 850, 1450, 12),
    Article("1002", "Projektledning", "tim", Decimal("25.00"), 950, 1650, 6),
    Article("1010", "Utbildningsdag", "dag", Decimal("25.00"), 4500, 9500, 3),
    Article("2001", "Licens ekonomisystem", "mån", Decimal("25.00"), 300, 4500, 6),
    Article("2002", "Support och underhåll", "mån", Decimal("25.00"), 500, 2500, 4),
    Article("3001", "Frakt", "st", Decimal("25.00"), 95, 650, 7),
    Article("3002", "Kabel EKK 3G1,5", "m", Decimal("25.00"), 8, 45, 4, goods=True),
    Article("3003", "Kontorsstol", "st", Decimal("25.00"), 1200, 4800, 3, goods=True),
    Article("4001", "Livsmedel", "kg", Decimal("12.00"), 25, 180, 5, goods=True),
    Article("4002", "Lunchbuffé", "st", Decimal("12.00"), 95, 175, 3),
    Article("4003", "Hotellövernattning", "dag", Decimal("12.00"), 990, 1890, 2),
    Article("5001", "Böcker", "st", Decimal("6.00"), 149, 695, 3, goods=True),
    Article("5002", "Tidningar, prenumeration", "mån", Decimal("6.00"), 89, 399, 2),
    Article("5003", "Persontransport", "st", Decimal("6.00"), 250, 1900, 2),
    Article("6001", "Hyra lokal", "mån", Decimal("0.00"), 8500, 42000, 1, exemption=LETTING_EXEMPTION),
)

ARTICLE_WEIGHTS = tuple(article.weight for article in ARTICLES)

RARE_ARTICLES: tuple[Article, ...] = (
    Article("7001", "Saffran", "g", Decimal("12.00"), 20, 60, 0, goods=True),
    Article("7002", "Milersättning, resa till kund", "km", Decimal("25.00"), 3, 6, 0),
    Article("7003", "Diesel", "l", Decimal("25.00"), 18, 24, 0, goods=True),
    Article("7004", "Serviceavtal, årsavgift", "år", Decimal("25.00"), 6000, 24000, 0),
    Article("7005", "Golvslipning", "m2", Decimal("25.00"), 180, 420, 0),
    Article("7006", "Bergkross 0-16", "m3", Decimal("25.00"), 250, 600, 0, goods=True),
    Article("7007", "Kontorsmaterial", "paket", Decimal("25.00"), 60, 300, 0, goods=True),
    Article("7008", "Fakturaavgift", "", Decimal("25.00"), 45, 75, 0),
    Article(
        "7009",
        "Konsultuppdrag enligt ramavtal 2026/114: förstudie, kravanalys, workshopserie med verksamhetens "
        "nyckelpersoner, dokumentation av nuläge och målbild samt rekommendationer för fortsatt arbete (etapp 1).",
        "tim",
        Decimal("25.00"),
        900,
        1500,
        0,
    ),
)
"""Articles of larger registers only (see :data:`inexchange_devkit.erpgen.invoices.SHOWCASE_FROM`): every
unit the pipeline knows that :data:`ARTICLES` does not use, and a line text of 200 characters. Each is
added to some invoices without a random draw, so the other values stay as they were."""

NOT_SUBJECT_ARTICLES: tuple[Article, ...] = (
    Article("8001", "Vidarefakturerat utlägg: ansökningsavgift Bolagsverket", "st", Decimal("0.00"), 900, 2200, 0),
    Article("8002", "Påminnelseavgift", "st", Decimal("0.00"), 60, 60, 0),
)
"""Articles of larger registers only, outside the scope of VAT (category O): an outlay paid in the customer's
name and re-invoiced at cost, and the statutory reminder fee. An invoice has them alone (BR-O-11..14)."""

NOT_SUBJECT_REASON = "Utanför momsens tillämpningsområde: utlägg för kundens räkning och påminnelseavgift"
"""The exemption reason text of the lines of :data:`NOT_SUBJECT_ARTICLES` (with the code VATEX-EU-O)."""

INTERNATIONAL_TRANSPORT = ("5003", "Persontransport, utrikes")
"""Article number and line text of passenger transport abroad: zero rated (VAT category Z), not 6 %."""

QUANTITY_STEPS: dict[str, tuple[int, int, int]] = {
    "tim": (1, 160, 25),
    "dag": (1, 10, 100),
    "mån": (1, 12, 100),
    "st": (1, 40, 100),
    "kg": (5, 2500, 10),
    "m": (10, 2000, 10),
}
"""Per unit: quantity drawn as randint(low, high) * step hundredths (quarter hours, 0.1 kg, ...)."""

ATTACHMENT_KINDS = (
    ("tidrapport", "Tidrapport", "application/pdf"),
    ("foljesedel", "Följesedel", "application/pdf"),
    ("kvitto", "Kvitto", "image/png"),
)
"""File name stem, document title and MIME type of the attachments invoices may carry."""
