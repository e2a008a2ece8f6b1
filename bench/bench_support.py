"""What the benchmarks share: the seller they build documents for."""

from __future__ import annotations

SELLER_CONFIG = {
    "name": "Bench AB", "org_number": "556677-8899", "vat_number": "SE556677889901",
    "street": "Gatan 1", "postal_code": "111 22", "city": "Stockholm", "bankgiro": "5050-1055",
}
