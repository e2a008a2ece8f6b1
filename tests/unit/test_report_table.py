"""The report table the report task logs and ``make demo`` prints."""

from __future__ import annotations

from typing import Any

from inexchange.pipeline import format_report


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


def test_a_long_message_is_cut_at_a_word() -> None:
    message = ("AwaitingRecipientApproval: The recipient must approve the supplier before the invoice can be "
               "delivered to them")
    table = format_report([_row(state="stopped", message=message)])
    line = next(line for line in table.splitlines() if "AwaitingRecipientApproval" in line)
    shown = line[line.index("AwaitingRecipientApproval"):].rstrip()
    assert shown.endswith("…") and len(shown) <= 90
    assert message.startswith(shown[:-1]) and message[len(shown) - 1] == " ", shown  # cut before a space


def test_a_message_without_spaces_is_still_cut_to_its_width() -> None:
    table = format_report([_row(state="rejected", message="x" * 200)])
    assert "x" * 89 + "…" in table and "x" * 90 not in table
