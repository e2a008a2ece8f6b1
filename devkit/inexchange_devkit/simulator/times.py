"""Timestamps the way a .NET service writes them, and a tolerant parser for the ones clients send.

The simulator keeps every time as whole epoch microseconds (UTC). A document's times are written in
one notation chosen per document from the seed (see :func:`time_style`), made of:

* an offset: ``Z``; ``+00:00``; the Europe/Stockholm local time with its offset (``+01:00`` in
  winter, ``+02:00`` in summer; the same instant, other wall-clock digits); or no offset at all,
  which by the API's documented assumption means UTC;
* 3, 6 or 7 fractional digits: milliseconds, microseconds, or .NET's round-trip format (``"o"``,
  ticks of 100 ns; the seventh digit is always ``0`` since the clock counts whole microseconds).

Every notation denotes exactly the stored instant: a document whose notation has 3 digits gets
times on whole milliseconds when it is sent (see ``Store.send``), so no digit is ever dropped.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta, timezone

from inexchange_devkit.simulator.seeded import unit

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
US_PER_MS = 1000

#: The offset notations, in the order :func:`time_style` numbers them.
OFFSETS: tuple[str, ...] = ("Z", "+00:00", "Europe/Stockholm", "none")
#: The numbers of fractional digits, in the order :func:`time_style` numbers them.
DIGITS: tuple[int, ...] = (3, 6, 7)
#: Every notation as ``(offset, digits)``; a style is an index into this tuple.
STYLES: tuple[tuple[str, int], ...] = tuple((offset, digits) for offset in OFFSETS for digits in DIGITS)
#: The style of :func:`utc_iso` (``Z``, 6 digits), used by the ``/_sim`` routes.
CANONICAL = STYLES.index(("Z", 6))

_HOUR_US = 3600 * 1_000_000
_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?"
)


def time_style(seed: int, key: str) -> int:
    """Return the notation of a document's times, drawn from the seed and ``key`` (its erpDocumentId)."""
    return int(unit(seed, "time-style", key) * len(STYLES))


def whole_milliseconds(style: int) -> bool:
    """Tell whether times of ``style`` show milliseconds only (and must therefore be whole ones)."""
    return STYLES[style][1] == 3


def ceil_ms(micros: int) -> int:
    """Round epoch microseconds up to a whole millisecond."""
    return -(-micros // US_PER_MS) * US_PER_MS


def _last_sunday(year: int, month: int) -> datetime:
    first_next = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=timezone.utc)
    last = first_next - timedelta(days=1)
    return last - timedelta(days=(last.weekday() + 1) % 7)


@functools.lru_cache(maxsize=64)
def _summer_time(year: int) -> tuple[int, int]:
    """Return the start and end of summer time in ``year`` as epoch microseconds."""
    start = _last_sunday(year, 3).replace(hour=1)
    end = _last_sunday(year, 10).replace(hour=1)
    return (start - EPOCH) // timedelta(microseconds=1), (end - EPOCH) // timedelta(microseconds=1)


def stockholm_offset_hours(micros: int) -> int:
    """Return Europe/Stockholm's UTC offset at an instant: 2 in summer time, else 1.

    Summer time runs from 01:00 UTC on the last Sunday of March to 01:00 UTC on the last Sunday of
    October (the EU rule, in force in Sweden since 1996); written out here so that no time zone
    database is needed.
    """
    start, end = _summer_time((EPOCH + timedelta(microseconds=micros)).year)
    return 2 if start <= micros < end else 1


def format_time(micros: int, style: int = CANONICAL) -> str:
    """Write epoch microseconds in the notation ``style`` (an index into :data:`STYLES`).

    A 3-digit style on a time that is not a whole millisecond is written with 6 digits instead, so
    that the text always denotes the exact instant.
    """
    offset, digits = STYLES[style]
    shift = stockholm_offset_hours(micros) * _HOUR_US if offset == "Europe/Stockholm" else 0
    text = (EPOCH + timedelta(microseconds=micros + shift)).strftime("%Y-%m-%dT%H:%M:%S.%f")
    if digits == 3 and micros % US_PER_MS == 0:
        text = text[:-3]
    elif digits == 7:
        text += "0"
    if offset == "Z":
        return text + "Z"
    if offset == "+00:00":
        return text + "+00:00"
    if offset == "Europe/Stockholm":
        return f"{text}+{shift // _HOUR_US:02d}:00"
    return text


def utc_iso(micros: int) -> str:
    """Format epoch microseconds as UTC ISO 8601 with microseconds and a ``Z`` suffix."""
    return format_time(micros, CANONICAL)


def parse_time(text: str) -> int:
    """Parse a timestamp a client sends to epoch microseconds.

    Accepts ISO 8601 / RFC 3339 date-times with ``T`` (or a space), any number of fractional
    digits (a point or a comma; beyond microseconds they are cut off), an offset ``Z``, ``+HH:MM``,
    ``+HHMM`` or ``+HH``, or no offset (UTC, the documented assumption), and a bare date (midnight
    UTC); anything else :func:`datetime.fromisoformat` reads. Raises ``ValueError`` otherwise.
    """
    stripped = text.strip()
    match = _TIME.fullmatch(stripped)
    if match is None:
        moment = datetime.fromisoformat(stripped)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return (moment - EPOCH) // timedelta(microseconds=1)
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                      tzinfo=timezone.utc)
    micros = (moment - EPOCH) // timedelta(microseconds=1)
    if fraction:
        micros += int(fraction[:6].ljust(6, "0"))
    if sign:
        hours, minutes = int(off_h), int(off_m or 0)
        if hours > 23 or minutes > 59:
            raise ValueError(f"invalid UTC offset in {text!r}")
        offset = (hours * 60 + minutes) * 60_000_000
        micros -= offset if sign == "+" else -offset
    return micros
