"""The dispatch ledger's states, and the InExchange statuses that put an invoice in each."""

from __future__ import annotations

import enum


class LedgerState(enum.StrEnum):
    """States of an invoice's row in the dispatch ledger (docs/ledger-and-report.md)."""

    PENDING = "pending"
    READY = "ready"
    SUBMITTING = "submitting"
    WAITING = "waiting"
    SENT = "sent"
    REJECTED = "rejected"
    STOPPED = "stopped"
    FAILED = "failed"
    #: a send whose outcome InExchange never told: the look-up by ERP id kept failing; never resent
    #: automatically, a person checks InExchange's portal (a later look-up that finds it records it)
    IN_DOUBT = "in_doubt"


#: states that never change again without a person (or a fixed ERP row) stepping in
FINAL_STATES = frozenset({LedgerState.SENT, LedgerState.REJECTED, LedgerState.STOPPED})
#: states whose invoice needs a person's action
ACTION_STATES = frozenset({LedgerState.REJECTED, LedgerState.STOPPED, LedgerState.FAILED, LedgerState.IN_DOUBT})
#: attempts the submit task makes per invoice before a failed one is left for a person
MAX_ATTEMPTS = 5


_STATUS_TO_STATE = {
    "PendingInPlatform": LedgerState.WAITING,
    "Pending": LedgerState.WAITING,
    "Sent": LedgerState.SENT,
    "Delivered": LedgerState.SENT,
    "Stopped": LedgerState.STOPPED,
    "Error": LedgerState.FAILED,
}


def ledger_state_for(status: str | None) -> LedgerState:
    """Map an InExchange outbound status to the ledger state it puts the invoice in.

    Unknown statuses keep the invoice ``waiting``: they are stored as text and never treated as final.

    :param status: ``currentStatus.status`` of an outbound document.
    """
    return _STATUS_TO_STATE.get(status or "", LedgerState.WAITING)


def is_final_status(status: str | None) -> bool:
    """Whether an InExchange status ends the follow-up of a document."""
    return ledger_state_for(status) is not LedgerState.WAITING
