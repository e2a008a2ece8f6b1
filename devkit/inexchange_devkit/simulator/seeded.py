"""Seeded, order-independent pseudo-random draws.

The registry and the document outcomes must not depend on the order of requests, so instead of a
shared random generator they hash the seed together with a stable key.
"""

from __future__ import annotations

import hashlib
import uuid


def _digest(seed: int, *parts: str) -> bytes:
    text = "\x1f".join([str(seed), *parts])
    return hashlib.sha256(text.encode("utf-8")).digest()


def unit(seed: int, *parts: str) -> float:
    """Return a number in ``[0, 1)`` determined by the seed and the given key parts."""
    return int.from_bytes(_digest(seed, *parts)[:8], "big") / 2**64


def stable_uuid(seed: int, *parts: str) -> str:
    """Return a UUID string determined by the seed and the given key parts."""
    return str(uuid.UUID(bytes=_digest(seed, *parts)[:16], version=4))
