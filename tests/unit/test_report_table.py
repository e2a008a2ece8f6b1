"""The report table the report task logs and ``make demo`` prints."""

from __future__ import annotations

from typing import Any

from inexchange.pipeline import MESSAGE_WIDTH, format_report


def _row(**values: Any) -> dict[str, Any]:
    row = {"document_type": "Kundfaktura", "invoice_number": "10071", "customer_number": "1015",
           "customer_name": "Mälardalens Städservice AB", "delivery_method": "Electronic", "state": "sent",
           "inexchange_status": "Delivered", "sent_at": None, "message": None}
    return {**row, **values}


def test_sent_times_are_local_with_their_zone() -> None:
    table = format_report([_row(sent_at="2026-12-03T08:19:36.123456+00:00"),
                           _row(invoice_number="10072", sent_at="2026-07-01T10:00:00+00:00")])
    assert "2026-12-03 09:19 CET" in table  # winter: UTC+1
    assert "2026-07-01 12:00 CEST" in table  # summer: UTC+2
    assert "2026-12-03T08:19" not in table


def _column(table: str, header: str) -> list[str]:
    """The cells of one column of a ``simple`` table, one per printed line, below the header."""
    import re

    lines = table.splitlines()
    spans = [match.span() for match in re.finditer(r"-+", lines[1])]  # the rule under the headers
    start, end = next((a, b) for a, b in spans if lines[0][a:b].strip() == header)
    return [line[start:end].strip() for line in lines[2:]]


def test_a_long_message_is_wrapped_at_words_never_cut() -> None:
    message = ("AwaitingRecipientApproval: The recipient must approve the supplier before the invoice can be "
               "delivered to them; ask the customer to approve Exempelbolaget AB in InExchange's portal.")
    table = format_report([_row(state="stopped", message=message)])
    cells = [cell for cell in _column(table, "Meddelande") if cell]
    assert len(cells) > 1 and all(len(cell) <= MESSAGE_WIDTH for cell in cells), cells
    assert " ".join(cells) == message  # every word, in order, none cut
    assert "…" not in table


def test_a_long_customer_name_is_wrapped_beside_its_row() -> None:
    name = "Stiftelsen för Samordnad Fastighetsförvaltning i Mälardalen"
    table = format_report([_row(customer_name=name), _row(invoice_number="10072")])
    cells = _column(table, "Kund")
    assert " ".join(cell for cell in cells[:-1] if cell) == name
    assert cells[-1] == "Mälardalens Städservice AB"


def test_a_message_without_spaces_is_broken_to_its_width_and_kept_whole() -> None:
    table = format_report([_row(state="rejected", message="x" * 200)])
    cells = [cell for cell in _column(table, "Meddelande") if cell]
    assert "".join(cells) == "x" * 200 and all(len(cell) <= MESSAGE_WIDTH for cell in cells)


def test_line_breaks_in_a_message_do_not_break_the_table() -> None:
    table = format_report([_row(state="rejected", message="first line\nsecond  line")])
    assert [cell for cell in _column(table, "Meddelande") if cell] == ["first line second line"]


def test_numbers_are_right_aligned_and_a_column_with_other_text_left_aligned() -> None:
    import re

    table = format_report([_row(invoice_number="7", customer_number="K-12"),
                           _row(invoice_number="10072", customer_number=None),
                           _row(invoice_number="0012", customer_number="1015")])
    lines = table.splitlines()
    spans = [match.span() for match in re.finditer(r"-+", lines[1])]  # the rule under the headers
    number, customer = spans[1], spans[2]
    numbers = [line[slice(*number)] for line in lines[2:]]
    customers = [line[slice(*customer)] for line in lines[2:]]
    assert [cell.lstrip(" ") for cell in numbers] == ["7", "10072", "0012"]  # right-aligned, as the ERP wrote them
    assert [cell.rstrip(" ") for cell in customers] == ["K-12", "", "1015"]  # left-aligned
