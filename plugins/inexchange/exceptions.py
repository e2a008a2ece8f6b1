"""Exceptions raised by the InExchange provider."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class InExchangeError(Exception):
    """Base class of every error this provider raises."""

    #: set on an error of a call whose own retries are spent (creating the client token inside another
    #: call's attempt), so that the enclosing call gives up too instead of repeating the whole loop
    retries_spent: bool = False


class InExchangeConfigError(InExchangeError):
    """A connection or seller configuration is missing or invalid."""


class ReportingConnectionMissing(InExchangeConfigError, AirflowFailException):
    """The connection of the reporting database (the ledger and the report) is not defined.

    It fails the task without retries: no retry can define the connection, and the ledger is never
    put anywhere else (the ERP is only read).

    :param conn_id: the connection id that is not defined.
    """

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        super().__init__(
            f"connection {conn_id!r} is not defined: define {conn_id} as the database that holds the ledger "
            "and the report (it may be the ERP's database only if that database is writable)"
        )


class ErpDatabaseMissing(InExchangeConfigError, AirflowFailException):
    """The ERP connection names a SQLite file that does not exist (it is opened read-only, never created).

    :param conn_id: the ERP connection id.
    :param path: the file the connection names.
    """

    def __init__(self, conn_id: str, path: str) -> None:
        self.conn_id = conn_id
        self.path = path
        where = f"no such file: {path}" if path else "it names no file (host is empty)"
        super().__init__(
            f"connection {conn_id!r}: the ERP's SQLite database cannot be opened, {where}; "
            "the ERP is only read, so check the connection's host (the path of the file)"
        )


class InExchangeApiError(InExchangeError):
    """InExchange answered with an error status.

    :param status_code: HTTP status of the response.
    :param message: InExchange's ``message`` field (or the response text).
    :param model_state: InExchange's ``modelState`` (field -> list of reasons), if any.
    :param path: API path of the request, without host or secrets.
    :param retry_after: seconds InExchange asked to wait before the next request (``Retry-After``), if any.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        model_state: dict[str, list[str]] | None = None,
        path: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.message = message
        self.model_state = model_state or {}
        self.path = path
        self.retry_after = retry_after
        super().__init__(self.describe())

    def describe(self) -> str:
        """Return a one-line description fit for a ledger message."""
        text = f"HTTP {self.status_code} from InExchange {self.path}: {self.message}".strip()
        if self.model_state:
            details = "; ".join(f"{field}: {', '.join(reasons)}" for field, reasons in sorted(self.model_state.items()))
            text = f"{text} ({details})"
        return text

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later.

        408 (the server gave up waiting for the request), 429, 5xx, and any reply below 400 that was
        no answer: a 1xx, 3xx or 206, or a success reply that could not be read (cut off, not JSON,
        of another shape, a header missing), as a proxy in between can garble one.
        """
        return self.status_code in (408, 429) or self.status_code >= 500 or self.status_code < 400

    @property
    def permanent(self) -> bool:
        """Whether InExchange refused the request itself (4xx other than 401/404/408/429)."""
        return 400 <= self.status_code < 500 and self.status_code not in (401, 404, 408, 429)


class InExchangeTransportError(InExchangeError):
    """The request may or may not have reached InExchange (connect error, timeout, dropped reply)."""

    def __init__(self, path: str, cause: Any) -> None:
        self.path = path
        super().__init__(f"no usable reply from InExchange {path}: {type(cause).__name__}")


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of an error's text, for one-line messages: a database error's text goes on with
    the whole statement, so its driver's error (``orig``) is taken; the class name when it has none.

    :param exc: the error.
    :param limit: the most characters kept; ``None`` for all.
    """
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


class SystematicFailure(InExchangeError, AirflowFailException):
    """Every send a submit task attempted failed for the same cause that is no passing fault.

    It fails the task without retries: a retry meets the same cause.

    :param cause: the cause, one line.
    :param held_back: how many invoices were not sent (their attempts are kept).
    :param hint: what to check.
    """

    def __init__(self, cause: str, held_back: int, hint: str) -> None:
        self.cause, self.held_back, self.hint = cause, held_back, hint
        super().__init__(
            f"every send failed for the same cause, so the task stopped: {cause.rstrip('. ')}. {hint} "
            "Nothing was "
            f"sent: {held_back} invoices held back, their attempts kept; they go out on the next run "
            "once this is fixed"
        )


class DeliveryPollingFailed(InExchangeError, AirflowException):
    """The delivery trigger's polling of InExchange failed; the sensor's try fails (and is retried).

    :param message: the trigger's one line: the error's class and text.
    """

    def __init__(self, message: Any) -> None:
        super().__init__(f"polling InExchange failed: {message}")
