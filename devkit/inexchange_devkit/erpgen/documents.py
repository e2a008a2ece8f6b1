"""Tiny but valid PDF and PNG files used as invoice attachments."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _pdf_text(value: str) -> bytes:
    """Encode ``value`` as the body of a PDF literal string (WinAnsi covers å, ä, ö)."""
    raw = value.encode("cp1252", errors="replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def pdf_document(title: str, lines: Sequence[str]) -> bytes:
    """Return a one-page A4 PDF 1.4 showing ``title`` and ``lines`` in Helvetica.

    The file has a correct cross-reference table, so PDF readers open it without repair.
    """
    operations = [b"BT", b"/F1 14 Tf", b"50 790 Td", b"18 TL", b"(" + _pdf_text(title) + b") Tj"]
    operations.append(b"/F1 10 Tf")
    operations += [b"T* (" + _pdf_text(line) + b") Tj" for line in lines]
    operations.append(b"ET")
    stream = b"\n".join(operations)
    objects = (
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    )
    out = bytearray(b"%PDF-1.4\n%\xe5\xe4\xf6\xc5\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_offset = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref_offset)
    return bytes(out)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_barcode(text: str, width: int = 180, height: int = 60) -> bytes:
    """Return a greyscale PNG with a barcode-like stripe pattern derived from the digits of ``text``."""
    digits = [int(char) for char in text if char.isdigit()] or [0]
    stripes = bytes(
        0 if x % 6 < digits[(x // 6) % len(digits)] % 5 + 1 else 255 for x in range(width)
    )
    blank = bytes([255]) * width
    rows = [blank if y < 8 or y >= height - 8 else stripes for y in range(height)]
    raw = b"".join(b"\x00" + row for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )
