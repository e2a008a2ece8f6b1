"""ERP units of measure and their UN/ECE Recommendation 20 codes, which Peppol BIS 3 requires
(``cbc:InvoicedQuantity/@unitCode``); the validation refuses a unit not listed here and the UBL
builder writes its code."""

from __future__ import annotations

#: ERP units (lower case) -> UN/ECE Recommendation 20 codes; no unit is one piece (C62)
UNIT_CODES = {
    "st": "H87",
    "styck": "H87",
    "pcs": "H87",
    "tim": "HUR",
    "h": "HUR",
    "timme": "HUR",
    "kg": "KGM",
    "g": "GRM",
    "m": "MTR",
    "km": "KMT",
    "l": "LTR",
    "mån": "MON",
    "månad": "MON",
    "dag": "DAY",
    "d": "DAY",
    "år": "ANN",
    "m2": "MTK",
    "m3": "MTQ",
    "paket": "XPK",
    "": "C62",
}
