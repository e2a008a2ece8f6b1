"""SubmitInvoicesOperator: build, upload and send the ledger's ready invoices exactly once.

This module is what a DAG file imports: the operator's arguments, template fields and extra link.
The submission itself (:mod:`inexchange.submission`, with the hook, the ledger, lxml and pandas) is
imported by :meth:`SubmitInvoicesOperator.execute`, so parsing a DAG does not load it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from inexchange.links.portal import InExchangePortalLink
from inexchange.times import TIMEZONE
from inexchange.values import as_flag, keep_arguments

if TYPE_CHECKING:
    from airflow.sdk import Context

    from inexchange.hooks.inexchange import InExchangeHook

#: ``InExchangeHook.default_conn_name``, written out so that declaring the operator does not import the hook
DEFAULT_INEXCHANGE_CONN_ID = "inexchange_default"


class SubmitInvoicesOperator(BaseOperator):
    """Send the ledger's ``ready`` invoices (and ``failed`` ones whose retry is due) to InExchange.

    Per invoice: build the UBL document, claim the row (``submitting``, committed), resolve the
    recipient, upload the document, send it with ``erpDocumentId`` = the invoice's stable key, and
    record ``waiting`` with InExchange's document id and the delivery method. A row found in
    ``submitting`` is first looked up at InExchange by its ERP id and only sent again when InExchange
    never received it. Permanent refusals (4xx) end ``rejected`` with InExchange's message; other
    failures end ``failed`` with a next-retry time.

    Invoices go out concurrently (``concurrency`` at a time, over async httpx clients sending through aiohttp). Claims and
    results are written in batches by one ledger thread, and a batch of claims is committed before any
    of its invoices is sent, so a worker that dies leaves at most claimed rows behind, which the next
    try reconciles. For scale-out, map the operator over shards (``shard``/``shards``) of the due rows
    (see :func:`inexchange.pipeline.plan_batches`).

    :param erp_conn_id: connection of the ERP database (only read).
    :param reporting_conn_id: connection of the database holding the ledger and the report (it must be defined).
    :param inexchange_conn_id: ``inexchange`` connection (API base URL, API key, ERP id).
    :param seller: seller configuration; by default the Airflow Variable ``inexchange_seller``.
    :param let_inexchange_choose: send ``sendDocumentAs.type`` empty and let InExchange pick
        e-invoice, PDF or paper, instead of choosing here. The buyer is looked up all the same, once
        per customer and run, for the invoice checks of the party InExchange would deliver to.
    :param max_attempts: attempts per invoice before it stays ``failed`` for a person.
    :param retry_delay_base: wait before the first retry of a failed invoice; doubles per attempt.
    :param timezone: time zone of the ERP's invoice dates.
    :param request_timeout: read timeout of one API request, in seconds.
    :param concurrency: invoices in flight at once (and the most concurrent API requests).
    :param rate_limit: most API requests per second, or None for no limit.
    :param clients: async clients (connection pools) the requests are spread over (default 1, see
        :class:`~inexchange.hooks.inexchange.InExchangeHook`).
    :param claim_batch: invoices claimed (and their documents built) per ledger transaction.
    :param shard: which shard of the due rows this task sends: the range ``first_id``..``last_id``
        when either is given, else ``invoice_id % shards == shard``.
    :param shards: into how many shards the due rows are split.
    :param first_id: the shard's lowest invoice id (inclusive; None: no lower bound), as
        :func:`inexchange.pipeline.plan_batches` plans it.
    :param last_id: the shard's highest invoice id (inclusive; None: no upper bound).
    :param claim_lease: how long another run's ``submitting`` claim is respected before it is
        reconciled, unless Airflow says that run has ended (then only ``settle_time`` is waited for).
    :param settle_time: how long a send whose outcome is unknown (timeout, lost reply) may still be
        processed by InExchange after the doubt arose; such a row stays ``submitting`` and is looked up
        again, and only resent when InExchange has not got it, once this time has passed (default:
        three request timeouts, the hook's deadline of one request).
    :param settle_rounds: how often the task looks its sends in doubt up again (waiting for them to
        settle) before it ends, the last of them a look-up only; what is still in doubt then is left to
        the next try or run (0: all of it).
    :param max_doubt_lookups: failed look-ups by ERP id (answers that are neither the invoice nor
        InExchange's clear 404, or no answer at all) after which a send in doubt stops being looked up
        and becomes ``in_doubt``: a person checks InExchange's portal; it is never sent again
        automatically (default 10: with the settle rounds, about two tries of one run).
    :param dry_run: build every due invoice's document and log what would be sent or rejected, but
        call no API and change no ledger row.
    :param check_peppol: run the official Peppol BIS 3 rules (:mod:`inexchange.peppol`, the extra
        ``[peppol]`` and the folder ``[inexchange] peppol_rules``) over each document before it is
        uploaded: one that breaks a fatal rule is ``rejected`` with the rules' ids and texts (templated,
        e.g. ``"{{ params.check_peppol }}"``).

    When every invoice the task attempted failed for the same cause that is not a passing fault
    (InExchange refusing the API key or ERP id, a reply the client cannot read, the same 4xx for
    at least three invoices) the task fails at once, without retries, with one message naming the
    cause; the invoices are handed back with their attempts kept, as nothing of them was sent.
    """

    template_fields: Sequence[str] = ("erp_conn_id", "reporting_conn_id", "inexchange_conn_id", "check_peppol")
    ui_color = "#d6e9f8"
    operator_extra_links = (InExchangePortalLink(),)

    # every argument is kept as an attribute of its name (the submission's settings are read from them);
    # these the operator reads itself: the InExchange hook's, and the seller configuration
    inexchange_conn_id: str
    request_timeout: float
    rate_limit: int | None
    concurrency: int
    clients: int
    check_peppol: bool | str
    seller: dict[str, Any] | None

    def __init__(
        self,
        *,
        erp_conn_id: str = "erp_default",
        reporting_conn_id: str = "inexchange_reporting",
        inexchange_conn_id: str = DEFAULT_INEXCHANGE_CONN_ID,
        seller: dict[str, Any] | None = None,
        let_inexchange_choose: bool = False,
        timezone: str = TIMEZONE,
        dry_run: bool = False,
        check_peppol: bool | str = False,
        # the batch
        claim_lease: timedelta = timedelta(minutes=15),
        shard: int = 0,
        shards: int = 1,
        first_id: int | None = None,
        last_id: int | None = None,
        claim_batch: int = 256,
        # retries and sends in doubt
        retry_delay_base: timedelta = timedelta(minutes=5),
        max_attempts: int = 5,  # inexchange.states.MAX_ATTEMPTS (not imported: parsing the DAG stays light)
        max_doubt_lookups: int = 10,
        settle_rounds: int = 3,
        settle_time: timedelta = timedelta(seconds=90),
        # the requests to InExchange
        request_timeout: float = 30.0,
        concurrency: int = 32,
        rate_limit: int | None = None,
        clients: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0 <= shard < shards:
            raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
        if settle_rounds < 0:
            raise ValueError(f"settle_rounds must not be negative, got {settle_rounds}")
        if concurrency < 1 or claim_batch < 1:
            raise ValueError("concurrency and claim_batch must be at least 1")
        if max_doubt_lookups < 1:
            raise ValueError(f"max_doubt_lookups must be at least 1, got {max_doubt_lookups}")
        keep_arguments(self, locals())  # every argument above, as an attribute of its name

    @cached_property
    def hook(self) -> InExchangeHook:
        """The InExchange hook, created at run time."""
        from inexchange.hooks.inexchange import InExchangeHook

        return InExchangeHook(
            self.inexchange_conn_id,
            timeout=self.request_timeout,
            rate_limit=self.rate_limit,
            concurrency=self.concurrency,
            clients=self.clients,
        )

    def execute(self, context: Context) -> dict[str, int]:
        from inexchange.operators.airflow_reads import peppol_rules_folder, read_seller_variable
        from inexchange.operators.scope import run_scope
        from inexchange.submission import Submission, SubmitSettings

        settings = SubmitSettings.of(
            self,
            seller=self.seller if self.seller is not None else read_seller_variable(),
            check_peppol=as_flag(self.check_peppol, "check_peppol"),
            peppol_rules=peppol_rules_folder(),
        )
        submission = Submission(
            settings,
            run_scope(context, settings.timezone),
            get_hook=lambda: self.hook,
            log=self.log,
            run_state=_dag_run_state(context),
            show_portal=partial(InExchangePortalLink.persist, context),
        )
        return submission.run()


def _dag_run_state(context: Context) -> Callable[[str], str] | None:
    """What asks Airflow for the state of one of the task's DAG's runs, by its run id (the state's value:
    ``"success"``, ``"failed"``, ``"running"``...); None when the context has no task instance that can
    ask (``execute`` called directly)."""
    ti = context.get("ti") if hasattr(context, "get") else None
    ask = getattr(ti, "get_dagrun_state", None)
    dag_id = getattr(ti, "dag_id", None)
    if not callable(ask) or not isinstance(dag_id, str):
        return None

    def state(run_id: str) -> str:
        found = ask(dag_id=dag_id, run_id=run_id)
        return str(getattr(found, "value", found))  # an enum of the Task SDK

    return state
