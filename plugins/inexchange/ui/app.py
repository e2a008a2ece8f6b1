"""The FastAPI app behind the "InExchange dispatch" page (server-side rendered HTML).

``GET /`` lists the report table with filters: by default (no ``state`` in the query string) only
the rows that need a person (``state=attention``); ``state=all`` lists every state, ``state=<one
ledger state>`` that state. A failed row that is retried automatically says when (the ledger's
``next_retry_at``, in Europe/Stockholm). ``GET /invoices/{invoice_id}`` shows one invoice's report
rows and its dispatch history. Both read the reporting database (connection
``inexchange_reporting``, never the ERP's) through :func:`inexchange.db.reporting_engine` and need
a logged-in Airflow user (see :mod:`.auth`).
The pages show ERP and InExchange text only, always HTML-escaped; never a connection, a
password, an API key or a token. A database error is logged and shown as a generic message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.exc import SQLAlchemyError

from inexchange.exceptions import ReportingConnectionMissing
from inexchange.ui.auth import dispatch_viewer, login_redirect_or_error
from inexchange.ui.formatting import next_step
from inexchange.ui.queries import (
    ALL_STATES,
    ATTENTION,
    PAGE_SIZE,
    STATES,
    FilterError,
    ReportFilter,
    invoice_history,
    invoice_report_rows,
    parse_filter,
    report_page,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

REPORTING_CONN_ID = "inexchange_reporting"
TEMPLATES = Path(__file__).resolve().parent / "templates"
#: shown instead of any database error text (which could name hosts, files or parameters)
DATABASE_ERROR = (
    "The reporting database could not be read. The report tables may not exist yet "
    "(no dispatch run so far), or the connection is wrong; the api-server log has the details."
)
#: shown when the reporting connection is not defined (the page never reads the ERP's database instead)
UNDEFINED_CONNECTION = (
    "The connection {conn_id} is not defined. Define {conn_id} as the database that holds "
    "the dispatch ledger and the report (it may be the ERP's database only if that database "
    "is writable); the page shows the report once it is defined."
)
#: headers of every page: no caching of invoice data, no framing by other sites
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'; "
    "form-action 'self'",
}

EngineFactory = Callable[[], "Engine"]


def default_engine() -> Engine:
    """The reporting database's engine (connection ``inexchange_reporting``).

    Raises :class:`~inexchange.exceptions.ReportingConnectionMissing` when it is not defined.
    """
    from inexchange.db import reporting_engine

    return reporting_engine(REPORTING_CONN_ID)


def create_app(engine_factory: EngineFactory = default_engine) -> FastAPI:
    """Build the page's FastAPI app (mounted by the api-server under the plugin's ``url_prefix``).

    :param engine_factory: returns the reporting database's engine; called once per request, the
        engine is disposed afterwards, so edited connections take effect without a restart.
    """
    app = FastAPI(
        title="InExchange dispatch",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(dispatch_viewer)],
    )  # every route: a logged-in, authorised user
    app.exception_handler(HTTPException)(login_redirect_or_error)
    pages = _Pages(engine_factory, _template_environment())
    app.add_exception_handler(_DatabaseUnavailable, pages.error)

    @app.get("/", response_class=HTMLResponse, name="report")
    def report(
        request: Request,
        date_from: str = Query("", max_length=40),
        date_to: str = Query("", max_length=40),
        state: str = Query("", max_length=40),
        customer: str = Query("", max_length=200),
        page: int = Query(1, ge=1, le=1_000_000),
    ) -> HTMLResponse:
        """The report table, filtered (``state``: attention, the default; all; or one ledger state)."""
        return pages.report(request, date_from=date_from, date_to=date_to, state=state, customer=customer, page=page)

    @app.get("/invoices/{invoice_id}", response_class=HTMLResponse, name="invoice")
    def invoice(request: Request, invoice_id: int) -> HTMLResponse:
        """One invoice's report rows and its dispatch history."""
        return pages.invoice(request, invoice_id)

    return app


def _template_environment() -> Environment:
    """Jinja2 with autoescaping of every template: ERP text is never trusted as HTML."""
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["minute"] = minute
    environment.globals["next_step"] = next_step
    return environment


def minute(value: str | None) -> str:
    """Ledger time text shortened to the minute for a table cell ('2026-11-17 05:00'); '' for none.

    :param value: UTC ISO text as the ledger stores it ('2026-11-17T05:00:00.000000Z').
    """
    if not value:
        return ""
    return value[:16].replace("T", " ")


class _Pages:
    """Renders the two pages from database reads."""

    def __init__(self, engine_factory: EngineFactory, templates: Environment) -> None:
        self._engine_factory = engine_factory
        self._templates = templates

    def report(
        self, request: Request, *, date_from: str, date_to: str, state: str, customer: str, page: int
    ) -> HTMLResponse:
        """The report listing for the query string values."""
        form = {"date_from": date_from, "date_to": date_to, "state": state, "customer": customer}
        context: dict[str, Any] = {
            "states": STATES,
            "attention": ATTENTION,
            "all_states": ALL_STATES,
            "page_size": PAGE_SIZE,
        }
        try:
            report_filter = parse_filter(page=page, **form)
        except FilterError as exc:
            return self._render(
                "report.html",
                request,
                status.HTTP_400_BAD_REQUEST,
                form=form,
                filter_error=str(exc),
                result=None,
                **context,
            )
        with self._database() as engine:
            result = report_page(engine, report_filter)
        return self._render(
            "report.html",
            request,
            status.HTTP_200_OK,
            form={**form, "state": report_filter.state},
            filter_error=None,
            result=result,
            state_links=_state_links(request),
            page_links=_page_links(request, report_filter, result.pages),
            **context,
        )

    def invoice(self, request: Request, invoice_id: int) -> HTMLResponse:
        """The history page of one invoice (404 when neither report nor history knows it)."""
        with self._database() as engine:
            rows = invoice_report_rows(engine, invoice_id)
            history = invoice_history(engine, invoice_id)
        code = status.HTTP_200_OK if rows or history else status.HTTP_404_NOT_FOUND
        return self._render("invoice.html", request, code, invoice_id=invoice_id, rows=rows, history=history)

    @contextmanager
    def _database(self) -> Iterator[Engine]:
        """An engine for one request; any database failure becomes :class:`_DatabaseUnavailable`."""
        try:
            engine = self._engine_factory()
        except ReportingConnectionMissing as exc:
            log.warning("InExchange dispatch page: %s", exc)
            raise _DatabaseUnavailable(UNDEFINED_CONNECTION.format(conn_id=exc.conn_id)) from None
        except Exception as exc:  # connection unusable: never echo its details
            log.exception("InExchange dispatch page: no reporting database engine")
            raise _DatabaseUnavailable from exc
        try:
            yield engine
        except SQLAlchemyError as exc:
            log.exception("InExchange dispatch page: reading the reporting database failed")
            raise _DatabaseUnavailable from exc
        finally:
            engine.dispose()

    def _render(self, template: str, request: Request, code: int, **context: Any) -> HTMLResponse:
        """Render ``template`` with the page's links and send it with the security headers."""
        html = self._templates.get_template(template).render(
            report_url=str(request.url_for("report").path), invoice_path=_invoice_path(request), **context
        )
        return HTMLResponse(html, status_code=code, headers=SECURITY_HEADERS)

    def error(self, request: Request, exc: Exception) -> HTMLResponse:
        """The page shown when the reporting database cannot be read.

        :param exc: the :class:`_DatabaseUnavailable` raised, with the message to show.
        """
        message = exc.message if isinstance(exc, _DatabaseUnavailable) else DATABASE_ERROR
        return self._render("error.html", request, status.HTTP_503_SERVICE_UNAVAILABLE, message=message)


class _DatabaseUnavailable(Exception):
    """The reporting database could not be reached or read (the cause is logged, not shown).

    :param message: what the page says: :data:`DATABASE_ERROR`, or a message that names no host,
        file or secret.
    """

    def __init__(self, message: str = DATABASE_ERROR) -> None:
        super().__init__(message)
        self.message = message


def _invoice_path(request: Request) -> Callable[[int], str]:
    """A function giving the path (no host) of an invoice's history page."""
    return lambda invoice_id: str(request.url_for("invoice", invoice_id=str(invoice_id)).path)


def _page_links(request: Request, report_filter: ReportFilter, pages: int) -> dict[str, str | None]:
    """Query strings of the previous and next pages, keeping the filter (its state named explicitly)."""

    def link(page: int) -> str | None:
        if page < 1 or page > pages:
            return None
        return "?" + urlencode({**request.query_params, "state": report_filter.state, "page": str(page)})

    return {"previous": link(report_filter.page - 1), "next": link(report_filter.page + 1)}


def _state_links(request: Request) -> dict[str, str]:
    """Query strings of the "needs a person" and "all states" views, keeping the other filters."""
    kept = {key: value for key, value in request.query_params.items() if key not in ("state", "page")}
    return {choice: "?" + urlencode({**kept, "state": choice}) for choice in (ATTENTION, ALL_STATES)}
