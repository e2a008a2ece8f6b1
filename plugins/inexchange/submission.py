"""The submission: claim -> build -> upload -> send -> record, for the ledger's due invoices.

The domain's side of :class:`~inexchange.operators.submit.SubmitInvoicesOperator`, which imports it
when its task runs: with the hook, the ledger, lxml and pandas, none of it is imported when a DAG
file declaring the operator is parsed. It knows no operator and no task context: it takes the
task's arguments as :class:`SubmitSettings`, the run as a :class:`~inexchange.ledger.RunScope`, and
what it asks of Airflow as plain functions.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from airflow.sdk import DagRunState

from inexchange.api import InvoiceCheck, SendMethod
from inexchange.db import erp_engine, reporting_engine
from inexchange.exceptions import InExchangeApiError, InExchangeError, SystematicFailure
from inexchange.invoice_checks import failed_checks, refusal
from inexchange.ledger import Ledger, RunScope, Transition
from inexchange.peppol import PeppolRules, configured_rules, rejection
from inexchange.states import LedgerState
from inexchange.times import parse_utc, utc_text
from inexchange.values import TaskLog, TaskSettings, integer_id, text_or_empty

if TYPE_CHECKING:
    import pandas as pd

    from inexchange.api import BuyerParty
    from inexchange.erp import InvoiceBatch
    from inexchange.hooks.inexchange import InExchangeHook
    from inexchange.ledger import LedgerRow
    from inexchange.ubl import Seller

SOURCE = "submit"
#: Dag run states after which nothing of the run is in flight
FINISHED_RUN_STATES = frozenset({DagRunState.SUCCESS, DagRunState.FAILED})
#: other runs with claims left whose state is asked for, per task
MAX_CLAIMING_RUNS = 50
#: the message of a row whose send may or may not have reached InExchange
IN_DOUBT_MESSAGE = (
    "Svaret på sändningen kom aldrig fram; fakturan slås upp hos InExchange och skickas igen "
    "bara om InExchange inte har fått den"
)


class Outcome(StrEnum):
    """What became of an invoice in a submission: the name it is counted under in the task's result.

    The values are the result's keys (XCom) and the words of its log lines.
    """

    #: InExchange took it (or, found after a send in doubt, had taken it): now ``waiting``
    SENT = "sent"
    #: a row left ``submitting`` that InExchange turned out to have: recorded as InExchange has it
    RECONCILED = "reconciled"
    #: refused for good (by InExchange, or its document cannot be built): ``rejected``
    REJECTED = "rejected"
    #: not sent, for a cause that may pass: ``failed`` with a next-retry time
    FAILED = "failed"
    #: sent, and whether InExchange got it is not known yet: left ``submitting``
    IN_DOUBT = "in doubt"
    #: its look-ups by ERP id failed too often: ``in_doubt`` for a person
    UNRESOLVED = "unresolved"
    #: claimed by another worker first
    SKIPPED = "skipped"
    #: a look-up by ERP id: InExchange never received it (counted nowhere)
    NOT_FOUND = "not found"
    #: a look-up by ERP id that failed (counted nowhere)
    UNKNOWN = "unknown"
    #: a dry run: its document builds, a real run would send it
    WOULD_SEND = "would send"
    #: a dry run: its document cannot be built, a real run would reject it
    WOULD_REJECT = "would reject"


#: the counts of a real run's result, in this order
COUNTED = (
    Outcome.SENT,
    Outcome.RECONCILED,
    Outcome.REJECTED,
    Outcome.FAILED,
    Outcome.IN_DOUBT,
    Outcome.UNRESOLVED,
    Outcome.SKIPPED,
)


@dataclass(frozen=True)
class _Job:
    """A claimed invoice, its document, its customer and its ERP row, ready to go out."""

    row: LedgerRow
    document: bytes
    customer: dict[str, Any]
    invoice: dict[str, Any] = field(default_factory=dict)


#: what became of one invoice: its outcome and the ledger change to record (None: none)
_Outcome = tuple[Outcome, "Transition | None"]

#: same refusals in a row, with no other outcome, after which a task stops sending (or all its rows, if fewer)
TRIP_AFTER = 5
#: invoices refused with the same 4xx, and nothing else, that make the refusal the task's, not the invoices'
MIN_SAME_REFUSALS = 3


class RefusalCause(NamedTuple):
    """A failure that may be systematic, as :func:`refusal_cause` names it.

    :param cause: one line naming the cause.
    :param needed: how many same refusals, with nothing else happening, prove it the task's.
    """

    cause: str
    needed: int


@dataclass(frozen=True)
class _Refusal:
    """An invoice that failed before anything of it was sent, for a cause that may not be its own.

    When every invoice a task attempted failed for the same such cause, the cause is the task's
    (a wrong API key, a reply the client cannot read, a body InExchange refuses whatever the
    invoice): the task fails at once and the invoices are handed back untouched. Otherwise each is
    recorded as its ``key`` and ``change`` say, like any other failure.

    :param cause: one line naming the cause (the error's own description: no secret, no reply text beyond it).
    :param needed: how many invoices refused for this cause, with nothing else happening, make it the task's.
    :param job: the claimed invoice.
    :param key: the outcome it is counted as when recorded as its own failure.
    :param change: the ledger change recorded then.
    """

    cause: str
    needed: int
    job: _Job
    key: Outcome
    change: Transition


def refusal_cause(exc: Exception) -> RefusalCause | None:
    """The cause of a failure that may be systematic, and how many same refusals prove it; None for a passing fault.

    401 (a client token refused: a wrong API key or ERP id, or a token refused again after renewal)
    and a reply the client cannot use (not JSON, another shape, no usable ``Location``, a redirect)
    do not depend on the invoice: one is enough. Another 4xx may be the invoice's own, so it takes
    :data:`MIN_SAME_REFUSALS` of the same. 5xx, 429, 408, timeouts and dropped connections pass.

    :param exc: the error of a call made before anything of the invoice was sent.
    """
    if not isinstance(exc, InExchangeApiError):
        return None
    if exc.status_code == 401 or exc.status_code < 400:
        return RefusalCause(cause=exc.describe(), needed=1)
    if exc.permanent:
        return RefusalCause(cause=exc.describe(), needed=MIN_SAME_REFUSALS)
    return None


def _hint(cause: str, conn_id: str) -> str:
    """What a person checks for a systematic cause."""
    if cause.startswith("HTTP 401 "):
        return (
            f"Check the API key (password) and the ERP id (extra erp_id) of connection {conn_id!r}; "
            "`airflow connections get` shows them, InExchange's portal lists the ERP ids of the key."
        )
    if cause.startswith("HTTP 3"):
        return f"Check the API base URL (host) of connection {conn_id!r}."
    if cause.startswith(("HTTP 2", "HTTP 1")):
        return (
            "InExchange (or something in between) answered in a shape this client cannot use; check the "
            f"API base URL of connection {conn_id!r} and any proxy, and report the reply if the URL is right."
        )
    return "InExchange refused every request the same way; its message above says what it wants changed."


class _Breaker:
    """Watches a task's outcomes for one refusal that every attempted invoice met (see :class:`_Refusal`)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.refusals: list[_Refusal] = []
        self.others = 0
        self.unattempted: list[_Job] = []

    def add(self, refusal: _Refusal) -> None:
        self.refusals.append(refusal)

    @property
    def systematic(self) -> bool:
        """Every attempted invoice met one and the same refusal, often enough to be the task's."""
        causes = {r.cause for r in self.refusals}
        return self.others == 0 and len(causes) == 1 and len(self.refusals) >= min(self.refusals[0].needed, self.total)

    @property
    def tripped(self) -> bool:
        """Stop sending: enough of the same refusal and nothing else (the rest would meet it too)."""
        return self.systematic and len(self.refusals) >= min(TRIP_AFTER, self.total)


@dataclass(frozen=True)
class SubmitSettings(TaskSettings):
    """The arguments of a submit task a submission works with; see
    :class:`~inexchange.operators.submit.SubmitInvoicesOperator` for each."""

    erp_conn_id: str
    #: the seller configuration: the task's ``seller``, else the Variable ``inexchange_seller``
    seller: dict[str, Any]
    let_inexchange_choose: bool
    max_attempts: int
    retry_delay_base: timedelta
    concurrency: int
    claim_batch: int
    shard: int
    shards: int
    #: the shard's range of invoice ids (inclusive; None: open), else the shard is ``invoice_id % shards``
    first_id: int | None
    last_id: int | None
    claim_lease: timedelta
    settle_time: timedelta
    settle_rounds: int
    max_doubt_lookups: int
    dry_run: bool
    #: run the official Peppol BIS 3 rules over each document and reject one that breaks a fatal rule
    check_peppol: bool = False
    #: the folder of the Peppol rules (the option ``[inexchange] peppol_rules``), needed with ``check_peppol``
    peppol_rules: str | None = None


@dataclass(eq=False)
class Submission:
    """One execution of a submit task (see :class:`~inexchange.operators.submit.SubmitInvoicesOperator`).

    :param settings: the task's arguments.
    :param scope: the DAG run the task belongs to.
    :param get_hook: returns the task's InExchange hook (called on first use: a dry run needs none).
    :param log: the task's logger.
    :param run_state: asks Airflow for the state of one of the DAG's runs, by its run id (``"success"``,
        ``"failed"``, ``"running"``...); None when Airflow cannot be asked (then every other run's
        claims are respected for the lease).
    :param show_portal: takes InExchange's portal URL once the connection is read (a dry run reads
        none), for the task's extra link.
    """

    settings: SubmitSettings
    scope: RunScope
    get_hook: Callable[[], InExchangeHook]
    log: TaskLog
    run_state: Callable[[str], str] | None = None
    show_portal: Callable[[str], None] | None = None
    #: the official Peppol BIS 3 rules, when the settings ask for the check
    peppol: PeppolRules | None = field(default=None, init=False)

    @property
    def hook(self) -> InExchangeHook:
        """The task's hook (created on first use: a dry run needs none)."""
        return self.get_hook()

    def run(self) -> dict[str, int]:
        """Send the due rows of the task's shard (or, in a dry run, say what would be sent)."""
        # pandas, pandera and lxml load here, when the task runs
        from inexchange.ubl import Seller

        settings = self.settings
        seller = Seller.from_config(settings.seller)
        if settings.check_peppol:
            self.peppol = configured_rules(settings.peppol_rules)
        ledger = Ledger(reporting_engine(settings.reporting_conn_id), self.scope)
        ledger.ensure_schema()
        rows = self._due_rows(ledger, settle=settings.settle_time, finished_runs=self._finished_runs(ledger))
        if settings.dry_run:
            return self._dry_run(rows, seller)
        api = self.hook.load_settings()  # read the connection here, in the task's own (sync) path
        if self.show_portal is not None:
            self.show_portal(api.portal_url)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            try:
                counts = _plain(runner.run(self._submit_all(ledger, rows, seller)))
            except SystematicFailure as exc:  # fails the task without retries
                self.log.error("%s", exc)
                raise
        self.log.info(
            "submission (shard %d of %d): %s (of %d due rows)", settings.shard, settings.shards, counts, len(rows)
        )
        return counts

    def _due_rows(self, ledger: Ledger, *, settle: timedelta, finished_runs: Sequence[str] = ()) -> list[LedgerRow]:
        """The rows of the task's shard that are due (see :meth:`Ledger.due_rows`)."""
        settings = self.settings
        return ledger.due_rows(
            max_attempts=settings.max_attempts,
            shard=settings.shard,
            shards=settings.shards,
            first_id=settings.first_id,
            last_id=settings.last_id,
            lease=settings.claim_lease,
            settle=settle,
            finished_runs=finished_runs,
        )

    def _finished_runs(self, ledger: Ledger) -> list[str]:
        """The other runs holding claims in the ledger that Airflow says have ended.

        Rows another run left ``submitting`` (its worker died, or its sends stayed in doubt after its
        settle rounds) are respected for the lease, in case that run is still sending them. Once the
        run has ended nothing of it is in flight, so such rows are reconciled now (the next daily run,
        or a backfill of the failed day, settles them). A run Airflow does not know, or a question
        that fails, keeps the lease.
        """
        if self.run_state is None:
            return []
        finished = []
        for run_id in ledger.claiming_runs()[:MAX_CLAIMING_RUNS]:
            try:
                state = self.run_state(run_id)
            except Exception as exc:  # an unknown run (another DAG's) keeps its lease
                self.log.info("run %s holds claims; its state is unknown (%s): its lease is respected", run_id, exc)
                continue
            if state in FINISHED_RUN_STATES:
                finished.append(run_id)
        if finished:
            self.log.info("runs that ended with claims left (reconciled now): %s", ", ".join(finished))
        return finished

    # ---- the pipeline: claim -> build -> upload -> send -> record ------------------------------
    async def _submit_all(self, ledger: Ledger, rows: list[LedgerRow], seller: Seller) -> Counter[Outcome]:
        counts: Counter[Outcome] = Counter(dict.fromkeys(COUNTED, 0))
        ledger_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inexchange-ledger")
        loop = asyncio.get_running_loop()

        def in_ledger_thread(function: Any, *args: Any) -> Any:
            return loop.run_in_executor(ledger_thread, function, *args)

        recorder = _Recorder(lambda changes: in_ledger_thread(partial(ledger.transition_many, source=SOURCE), changes))
        shared = _Shared(ledger, seller, counts, recorder, in_ledger_thread)
        try:
            await self._authenticate(len(rows))
            await self._pass(rows, shared)
            counts[Outcome.IN_DOUBT] = await self._settle(shared)
        finally:
            try:
                await recorder.close()
            finally:
                await self.hook.aclose()
                ledger_thread.shutdown(wait=True)
        return counts

    async def _authenticate(self, due: int) -> None:
        """Create the client token before touching any row: a wrong API key or ERP id fails the task here.

        A passing fault (5xx, timeout) is left to the calls that follow, which retry as usual.
        """
        if not due:
            return
        try:
            await self.hook.aauthenticate()
        except InExchangeError as exc:
            found = refusal_cause(exc)
            if found is None:
                self.log.warning("could not create a client token yet (%s); the sends try again", exc)
                return
            raise SystematicFailure(found.cause, due, _hint(found.cause, self.settings.inexchange_conn_id)) from None

    async def _pass(self, rows: list[LedgerRow], shared: _Shared, *, settled: bool = True) -> None:
        """Reconcile the rows left ``submitting`` (resending those InExchange never got, when ``settled``),
        then send the others."""
        counts, recorder = shared.counts, shared.recorder
        to_send, stuck = _split_stuck(rows)
        outcomes = await asyncio.gather(*(self._reconcile(r, resend=settled) for r in stuck))
        for row, (key, change) in zip(stuck, outcomes, strict=True):
            counts[key] += key in (Outcome.RECONCILED, Outcome.UNRESOLVED)
            recorder.add(change)
            if key is Outcome.NOT_FOUND and settled:
                to_send.append({**row, "state": LedgerState.FAILED.value})
        await recorder.flush()
        if to_send:
            await self._send_all(to_send, shared)

    async def _settle(self, shared: _Shared) -> int:
        """Look up this task's sends in doubt again before it ends; return how many are still in doubt.

        A send whose outcome is unknown stays ``submitting``, stamped with the time the doubt arose.
        Each round looks every such row up: found, it is recorded; not found, it is sent again only
        once ``settle_time`` has passed since its doubt (the request may still be processed until
        then), else the task waits for the earliest of them to settle. A last round lets what is
        still in doubt settle and looks it up once more, sending nothing. What is left after that
        (sends in doubt again and again, look-ups failing) stays for the next try, or for the next
        run, which reconciles it the same way once this run has ended (or after the lease).
        """
        settings = self.settings

        async def in_doubt() -> list[LedgerRow]:
            await shared.recorder.flush()
            due = await shared.in_ledger_thread(partial(self._due_rows, shared.ledger, settle=timedelta(0)))
            return [r for r in due if r["state"] == LedgerState.SUBMITTING.value]

        remaining: list[LedgerRow] = []
        for round_ in range(settings.settle_rounds + 1):
            remaining = await in_doubt()
            if not remaining:
                break
            now = _now()
            # updated_at is always set: when the doubt arose
            ready_at = {
                int(r["invoice_id"]): cast("datetime", parse_utc(r["updated_at"])) + settings.settle_time
                for r in remaining
            }
            if round_ == settings.settle_rounds:
                if round_:  # the last round: let them settle, record what InExchange got, send nothing more
                    wait = (max(ready_at.values()) - now).total_seconds()
                    if wait > 0:
                        await asyncio.sleep(min(wait, settings.settle_time.total_seconds()))
                    await self._pass(remaining, shared, settled=False)
                    remaining = await in_doubt()
                break
            settled = [r for r in remaining if ready_at[int(r["invoice_id"])] <= now]
            unsettled = [r for r in remaining if ready_at[int(r["invoice_id"])] > now]
            self.log.info(
                "%d sends in doubt: looking them up again (%d settled, sent again if InExchange never got them)",
                len(remaining),
                len(settled),
            )
            await self._pass(settled, shared)
            await self._pass(unsettled, shared, settled=False)
            if unsettled:
                wait = max(1.0, (min(ready_at[int(r["invoice_id"])] for r in unsettled) - _now()).total_seconds())
                await asyncio.sleep(min(wait, settings.settle_time.total_seconds()))
        if remaining:
            self.log.warning(
                "%d sends still in doubt; the next try or run looks them up: %s",
                len(remaining),
                ", ".join(str(r["invoice_number"]) for r in remaining[:20]),
            )
        return len(remaining)

    async def _send_all(self, rows: list[LedgerRow], shared: _Shared) -> None:
        from inexchange.erp import ErpReader

        ledger, seller, counts, recorder, in_ledger_thread = (
            shared.ledger,
            shared.seller,
            shared.counts,
            shared.recorder,
            shared.in_ledger_thread,
        )

        reader = ErpReader(erp_engine(self.settings.erp_conn_id))
        batch = await in_ledger_thread(reader.load, [r["invoice_id"] for r in rows])
        jobs: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=self.settings.claim_batch)
        inputs = self._recipient_inputs(batch.customers)
        known = await in_ledger_thread(ledger.recipients, inputs)
        recipients: dict[int, asyncio.Future[dict[str, Any]]] = {}
        for customer_id, (read, resolved) in known.items():
            if read == inputs[customer_id]:  # the customer's values are those the run resolved
                recipients[customer_id] = asyncio.get_running_loop().create_future()
                recipients[customer_id].set_result(resolved)
        reused = set(recipients)
        breaker = _Breaker(len(rows))
        unclaimed = len(rows)

        async def produce() -> None:
            nonlocal unclaimed
            try:
                for start in range(0, len(rows), self.settings.claim_batch):
                    if breaker.tripped:
                        break
                    chunk = rows[start : start + self.settings.claim_batch]
                    claimed, prepared = await in_ledger_thread(self._claim, ledger, batch, chunk, seller)
                    unclaimed -= len(chunk)
                    counts.update(prepared)
                    breaker.others += prepared[Outcome.REJECTED]
                    for job in claimed:
                        await jobs.put(job)
            finally:
                for _ in range(self.settings.concurrency):
                    await jobs.put(None)

        async def work() -> None:
            while (job := await jobs.get()) is not None:
                if breaker.tripped:  # claimed, never tried: handed back below
                    breaker.unattempted.append(job)
                    continue
                recorder.check()
                outcome = await self._send(job, recipients)
                if isinstance(outcome, _Refusal):
                    breaker.add(outcome)
                    continue
                key, change = outcome
                breaker.others += 1
                counts[key] += 1
                recorder.add(change)

        async with asyncio.TaskGroup() as group:  # one failing worker cancels the others
            group.create_task(produce())
            for _ in range(self.settings.concurrency):
                group.create_task(work())
        await self._remember_recipients(shared, inputs, {k: f for k, f in recipients.items() if k not in reused})
        await self._settle_refusals(breaker, counts, recorder, unclaimed)

    async def _settle_refusals(
        self, breaker: _Breaker, counts: Counter[Outcome], recorder: _Recorder, unclaimed: int
    ) -> None:
        """Record the refusals as the invoices' own failures, or hand them all back and fail the task.

        Invoices handed back return to the state they were claimed from, their attempt undone, with
        a message naming the cause; nothing of them was sent.
        """
        systematic = breaker.systematic
        held = list(breaker.unattempted)
        if systematic:
            held += [refusal.job for refusal in breaker.refusals]
        else:
            for refusal in breaker.refusals:
                counts[refusal.key] += 1
                recorder.add(refusal.change)
        cause = breaker.refusals[0].cause if breaker.refusals else ""
        for job in held:
            recorder.add(
                Transition(
                    int(job.row["invoice_id"]),
                    [LedgerState.SUBMITTING],
                    LedgerState(job.row["state"]),
                    {"attempt": -1, "message": f"Inte skickad, sändningen stoppades: {cause}" if cause else None},
                )
            )
        await recorder.flush()
        if systematic:
            raise SystematicFailure(cause, len(held) + unclaimed, _hint(cause, self.settings.inexchange_conn_id))

    def _claim(
        self, ledger: Ledger, batch: InvoiceBatch, chunk: list[LedgerRow], seller: Seller
    ) -> tuple[list[_Job], Counter[Outcome]]:
        """Build the chunk's documents and claim the buildable rows, in one committed transaction.

        Runs in the ledger thread. Invoices that cannot be built are rejected in the same transaction.
        """
        changes: list[Transition] = []
        candidates: list[_Job] = []
        counts: Counter[Outcome] = Counter()
        submitted_at = utc_text(_now())
        for row in chunk:
            invoice_id = int(row["invoice_id"])
            from_states = [LedgerState(row["state"])]
            job = _built(batch, row, seller, self.peppol)
            if isinstance(job, str):
                changes.append(Transition(invoice_id, from_states, LedgerState.REJECTED, {"message": job}))
                continue
            candidates.append(job)
            changes.append(
                Transition(
                    invoice_id, from_states, LedgerState.SUBMITTING, {"attempt": 1, "submitted_at": submitted_at}
                )
            )
        moved = ledger.transition_many(changes, source=SOURCE)
        results = list(zip(changes, moved, strict=True))
        claimed = {change.invoice_id for change, ok in results if ok and change.to_state is LedgerState.SUBMITTING}
        counts[Outcome.REJECTED] = sum(ok for change, ok in results if change.to_state is LedgerState.REJECTED)
        jobs = [job for job in candidates if int(job.row["invoice_id"]) in claimed]
        counts[Outcome.SKIPPED] = len(candidates) - len(jobs)
        if counts[Outcome.SKIPPED]:
            self.log.warning("%d invoices were claimed by another worker; skipped", counts[Outcome.SKIPPED])
        return jobs, counts

    def _dry_run(self, rows: list[LedgerRow], seller: Seller) -> dict[str, int]:
        """Build every due invoice's document and say what a real run would do; send and record nothing."""
        from inexchange.erp import ErpReader

        to_send, stuck = _split_stuck(rows)
        batch = ErpReader(erp_engine(self.settings.erp_conn_id)).load([r["invoice_id"] for r in to_send])
        problems = {
            str(r["invoice_number"]): job
            for r in to_send
            if isinstance(job := _built(batch, r, seller, self.peppol), str)
        }
        for message in problems.values():
            self.log.warning("dry run: would reject: %s", message)
        if stuck:
            self.log.info("dry run: %d invoices left in submitting are reconciled by the next real run", len(stuck))
        counts = _plain(
            {
                Outcome.WOULD_SEND: len(to_send) - len(problems),
                Outcome.WOULD_REJECT: len(problems),
                Outcome.IN_DOUBT: len(stuck),
            }
        )
        self.log.info(
            "dry run (shard %d of %d): %s; nothing was sent or recorded",
            self.settings.shard,
            self.settings.shards,
            counts,
        )
        return counts

    async def _send(self, job: _Job, recipients: dict[int, asyncio.Future[dict[str, Any]]]) -> _Outcome | _Refusal:
        """Resolve the recipient, upload and send one claimed invoice; say what to record.

        A failure before anything was sent that may be the task's rather than the invoice's comes
        back as a :class:`_Refusal`, decided on once the task's other outcomes are known.
        """
        row, invoice_id = job.row, int(job.row["invoice_id"])
        try:
            recipient = await self._recipient(job.customer, recipients)
            if (refused := self._refused_by_checks(job, recipient)) is not None:
                return refused
            document_uri = await self.hook.aupload_document(job.document)
        except InExchangeApiError as exc:
            outcome = self._rejected(invoice_id, exc) if exc.permanent else (Outcome.FAILED, self._failed(row, exc))
            return _refusal_or(outcome, exc, job)
        except InExchangeError as exc:  # nothing was sent yet: safe to retry later
            return Outcome.FAILED, self._failed(row, exc)
        try:
            document_id = await self.hook.asend_outbound(_send_body(row, job.customer, recipient, document_uri))
        except InExchangeApiError as exc:
            if exc.permanent or exc.status_code == 401:  # refused: the document was not taken
                outcome = self._rejected(invoice_id, exc) if exc.permanent else (Outcome.FAILED, self._failed(row, exc))
                return _refusal_or(outcome, exc, job)
            return await self._after_uncertain_send(row, exc)
        except InExchangeError as exc:
            return await self._after_uncertain_send(row, exc)
        return Outcome.SENT, Transition(
            invoice_id,
            [LedgerState.SUBMITTING],
            LedgerState.WAITING,
            {
                "inexchange_document_id": document_id,
                "document_uri": document_uri,
                "delivery_method": recipient["method"],
            },
        )

    async def _after_uncertain_send(self, row: LedgerRow, exc: Exception) -> _Outcome:
        """The send may have reached InExchange: look it up before deciding anything.

        When InExchange has it, it is recorded. When it does not (yet), the request may still be
        processed there, so the row stays ``submitting``: a later try looks it up again once
        ``settle_time`` has passed, and only then sends it again if InExchange never got it.
        """
        key, change = await self._reconcile(row, resend=False)
        if key is Outcome.RECONCILED:
            return Outcome.SENT, change
        if key is Outcome.UNRESOLVED:
            return key, change
        self.log.warning(
            "invoice %s: outcome of the send unknown (%s); left submitting until it is looked up again",
            row["invoice_number"],
            exc,
        )
        # the row stays submitting, stamped now: the settle time counts from the doubt, not from the claim
        return Outcome.IN_DOUBT, Transition(
            int(row["invoice_id"]),
            [LedgerState.SUBMITTING],
            LedgerState.SUBMITTING,
            {"message": IN_DOUBT_MESSAGE, "doubt_lookup": int(key is Outcome.UNKNOWN)},
        )

    async def _reconcile(self, row: LedgerRow, *, resend: bool) -> _Outcome:
        """Settle a ``submitting`` row through ``invoices/outbound/byerpid``.

        Returns ``reconciled`` (InExchange has it: now waiting or final), ``not found`` (InExchange
        never received it; with ``resend`` the row becomes ``failed`` and is sent again now),
        ``unknown`` (the look-up failed; the row stays ``submitting``, the failed look-up counted) or
        ``unresolved`` (the look-up failed for the ``max_doubt_lookups``-th time: the row becomes
        ``in_doubt`` for a person, and is never sent again automatically).
        """
        invoice_id = int(row["invoice_id"])
        try:
            found = await self.hook.afind_by_erp_id(row["erp_document_id"])
        except InExchangeError as exc:
            failed = int(row.get("doubt_lookups") or 0) + 1
            limit = self.settings.max_doubt_lookups
            if failed >= limit:
                self.log.warning(
                    "invoice %s: look-up by ERP id failed %d times (%s); in doubt for a person",
                    row["invoice_number"],
                    failed,
                    exc,
                )
                return Outcome.UNRESOLVED, Transition(
                    invoice_id,
                    [LedgerState.SUBMITTING],
                    LedgerState.IN_DOUBT,
                    {"message": in_doubt_message(row, exc, failed)},
                )
            self.log.warning(
                "invoice %s: could not reconcile (%s); left submitting (failed look-up %d of at most %d)",
                row["invoice_number"],
                exc,
                failed,
                limit,
            )
            return Outcome.UNKNOWN, Transition(
                invoice_id,
                [LedgerState.SUBMITTING],
                LedgerState.SUBMITTING,
                {"message": IN_DOUBT_MESSAGE, "doubt_lookup": 1},
            )
        if found is None:
            change = Transition(
                invoice_id,
                [LedgerState.SUBMITTING],
                LedgerState.FAILED,
                {"message": "InExchange tog aldrig emot fakturan; den skickas igen"},
            )
            return Outcome.NOT_FOUND, change if resend else None
        self.log.info("invoice %s: InExchange already had it as %s", row["invoice_number"], found.id)
        return Outcome.RECONCILED, Transition(
            invoice_id,
            [LedgerState.SUBMITTING],
            found.ledger_state,
            {
                "inexchange_document_id": found.id,
                "inexchange_status": found.status,
                "message": found.message,
                "status_time": utc_text(found.status_time) if found.status_time else None,
            },
        )

    def _refused_by_checks(self, job: _Job, recipient: Mapping[str, Any]) -> _Outcome | None:
        """The rejection of an invoice that its recipient's invoice checks would stop, or None when it passes.

        Nothing of it has been uploaded: its claim's attempt is undone, and it is sent once the ERP is
        fixed and a run takes it again (a rerun of its day, or a manual run listing it).
        """
        checks = recipient.get("checks") or ()
        failed = failed_checks(checks, job.invoice, job.customer, recipient.get("party_name"))
        message = refusal(failed, job.invoice, job.customer, recipient.get("party_name"))
        if message is None:
            return None
        self.log.warning(
            "invoice %s: refused before upload, it fails the recipient's invoice checks %s",
            job.row["invoice_number"],
            ", ".join(check.value for check in failed),
        )
        return Outcome.REJECTED, Transition(
            int(job.row["invoice_id"]),
            [LedgerState.SUBMITTING],
            LedgerState.REJECTED,
            {"message": message, "attempt": -1},
        )

    @staticmethod
    def _rejected(invoice_id: int, exc: InExchangeApiError) -> _Outcome:
        return Outcome.REJECTED, Transition(
            invoice_id,
            [LedgerState.SUBMITTING],
            LedgerState.REJECTED,
            {"message": f"InExchange avvisade fakturan: {exc.describe()}"},
        )

    def _failed(self, row: LedgerRow, exc: Exception) -> Transition:
        delay = self.settings.retry_delay_base * 2 ** int(row["attempts"] or 0)
        return Transition(
            int(row["invoice_id"]),
            [LedgerState.SUBMITTING],
            LedgerState.FAILED,
            {
                "message": f"Sändningen misslyckades, nytt försök senare: {exc}",
                "next_retry_at": utc_text(_now() + delay),
            },
        )

    # ---- recipients ---------------------------------------------------------------------------
    def _recipient_inputs(self, customers: pd.DataFrame) -> dict[int, str]:
        """Per customer of a batch, the values :meth:`_resolve` reads (and the setting that changes its
        choice), as the key of the run's resolved recipients (:meth:`Ledger.recipients`)."""
        columns = ["customer_id", *(c for c in _RESOLVED_FROM if c in customers.columns)]
        inputs: dict[int, str] = {}
        for customer in customers[columns].to_dict("records"):
            customer_id = integer_id(customer["customer_id"])
            if customer_id is not None and customer_id not in inputs:
                values = [text_or_empty(customer.get(column)) for column in _RESOLVED_FROM]
                inputs[customer_id] = json.dumps([*values, self.settings.let_inexchange_choose])
        return inputs

    async def _remember_recipients(
        self, shared: _Shared, inputs: Mapping[int, str], resolved: Mapping[int, asyncio.Future[dict[str, Any]]]
    ) -> None:
        """Keep the recipients this pass resolved for the run's other batches; losing them costs look-ups only."""
        found = {
            key: (inputs[key], future.result())
            for key, future in resolved.items()
            if key in inputs and future.done() and not future.cancelled() and future.exception() is None
        }
        try:
            await shared.in_ledger_thread(shared.ledger.remember_recipients, found)
        except Exception as exc:  # the sends are recorded; the other batches look the customers up again
            self.log.warning(
                "could not keep %d resolved recipients for the run's other batches: %s", len(found), type(exc).__name__
            )

    async def _recipient(
        self, customer: Mapping[str, Any], cache: dict[int, asyncio.Future[dict[str, Any]]]
    ) -> dict[str, Any]:
        """The customer's delivery method and its recipient's invoice checks, resolved once per run (concurrent
        invoices share the look-up)."""
        key = int(customer["customer_id"])
        future = cache.get(key)
        if future is None:
            future = cache[key] = asyncio.ensure_future(self._resolve(customer))
            future.add_done_callback(lambda done: cache.pop(key, None) if _failed_future(done) else None)
        return await asyncio.shield(future)

    async def _resolve(self, customer: Mapping[str, Any]) -> dict[str, Any]:
        """Choose how InExchange delivers to a customer (e-invoice, PDF by e-mail, or paper) and what the
        recipient checks.

        A GLN, else the org number, is looked up; an exact hit that can receive e-invoices is the
        e-invoice recipient, and its invoice checks (``checks``, with the party's name as
        ``party_name``) are what each invoice to it must pass. With ``let_inexchange_choose`` the
        type is left to InExchange, which delivers an e-invoice to such a party: it is looked up all
        the same, for its checks. A PDF or paper delivery reaches no party's checks.
        """
        email = text_or_empty(customer.get("invoice_email"))
        gln, org = text_or_empty(customer.get("gln")), text_or_empty(customer.get("org_number"))
        party = None
        if gln or org:
            result = await self.hook.alookup_buyer(
                party_id=text_or_empty(customer["customer_number"]),
                gln=gln or None,
                org_no=None if gln else org or None,
            )
            party = next((p for p in result.parties if p.can_receive_einvoice), None) if result.exact_hit else None
            if party is not None and not party.company_id:
                party = None
        checks = self._checks(customer, party)
        if self.settings.let_inexchange_choose:
            return {"method": SendMethod.AUTO.value, "email": email, **checks}
        if party is not None:
            return {"method": SendMethod.ELECTRONIC.value, "recipient_id": party.company_id, **checks}
        if email:
            return {"method": SendMethod.PDF.value, "email": email}
        return {"method": SendMethod.PAPER.value}

    def _checks(self, customer: Mapping[str, Any], party: BuyerParty | None) -> dict[str, Any]:
        """The invoice checks of the customer's e-invoice recipient, for the recipient's cache entry."""
        if party is None:
            return {}
        checks = sorted(check.value for check in party.invoice_checks)
        if party.has_invoice_checks and not checks:
            self.log.warning(
                "customer %s: InExchange says the recipient has invoice checks but names none that can be read; "
                "its invoices go out unchecked",
                customer["customer_number"],
            )
        if InvoiceCheck.BUYER_NAME.value in checks and not (party.name or "").strip():
            self.log.warning(
                "customer %s: the recipient checks the buyer's name, but InExchange gives no name to compare with",
                customer["customer_number"],
            )
        if checks:
            self.log.info(
                "customer %s: the recipient demands on every invoice: %s",
                customer["customer_number"],
                ", ".join(checks),
            )
        return {"checks": checks, "party_name": party.name}


#: the customer's values a recipient is resolved from (:meth:`Submission._resolve`)
_RESOLVED_FROM = ("customer_number", "gln", "org_number", "invoice_email")


@dataclass(frozen=True)
class _Shared:
    """What every pass of one submission works with: the ledger, the seller, the outcome counts, the
    recorder of ledger changes and the ledger's thread (``in_ledger_thread(function, *args)``)."""

    ledger: Ledger
    seller: Seller
    counts: Counter[Outcome]
    recorder: _Recorder
    in_ledger_thread: Callable[..., Awaitable[Any]]


class _Recorder:
    """Collects ledger changes and writes them in batches, one transaction per batch, in order."""

    def __init__(self, write: Any) -> None:
        self._write = write
        self._pending: list[Transition] = []
        self._closing = asyncio.Event()
        self._task = asyncio.ensure_future(self._loop())

    def add(self, change: Transition | None) -> None:
        if change is not None:
            self._pending.append(change)

    def check(self) -> None:
        """Raise the writer's error, if it failed: sending more would only leave more to reconcile."""
        if self._task.done() and self._task.exception() is not None:
            raise self._task.exception()  # type: ignore[misc]

    async def flush(self) -> None:
        """Write what is pending now."""
        self.check()
        batch, self._pending = self._pending, []
        if batch:
            await self._write(batch)

    async def close(self) -> None:
        """Write everything left and stop."""
        self._closing.set()
        await self._task
        await self.flush()

    async def _loop(self) -> None:
        while not self._closing.is_set():
            if self._pending:
                await self.flush()
            else:
                await asyncio.sleep(0.02)


def _loop_factory() -> Any:
    """uvloop's event loop when it is installed (less CPU per request), else asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return None
    return uvloop.new_event_loop


def _plain(counts: Mapping[Outcome, int]) -> dict[str, int]:
    """Counts by outcome as the task's result: keyed by the outcomes' values, plain text for XCom and the log."""
    return {outcome.value: count for outcome, count in counts.items()}


def _failed_future(future: asyncio.Future[Any]) -> bool:
    return future.cancelled() or future.exception() is not None


def _send_body(
    row: LedgerRow, customer: Mapping[str, Any], recipient: dict[str, Any], document_uri: str
) -> dict[str, Any]:
    """The body of ``documents/outbound`` for one invoice."""
    method = recipient["method"]
    send_as: dict[str, Any] = {"type": None if method == SendMethod.AUTO.value else method}
    if method == SendMethod.ELECTRONIC.value:
        send_as["electronic"] = {"recipientId": recipient["recipient_id"]}
    elif recipient.get("email"):
        send_as["pdf"] = {"recipientEmail": recipient["email"]}
    language = text_or_empty(customer.get("language")) or "sv"
    return {
        "sendDocumentAs": send_as,
        "recipientInformation": {
            "gln": text_or_empty(customer.get("gln")) or None,
            "orgNo": text_or_empty(customer.get("org_number")) or None,
            "vatNo": text_or_empty(customer.get("vat_number")) or None,
            "name": text_or_empty(customer.get("name")),
            "recipientNo": text_or_empty(customer.get("customer_number")),
            "countryCode": text_or_empty(customer.get("country_code")) or "SE",
        },
        "document": {
            "documentFormat": "bis3",
            "erpDocumentId": row["erp_document_id"],
            "documentUri": document_uri,
            "language": language,
            "culture": "sv-SE" if language == "sv" else "en-GB",
        },
    }


def _refusal_or(outcome: _Outcome, exc: Exception, job: _Job) -> _Outcome | _Refusal:
    """The outcome as a :class:`_Refusal` when its cause may be the task's, else as it is."""
    found = refusal_cause(exc)
    key, change = outcome
    if found is None or change is None:
        return outcome
    return _Refusal(cause=found.cause, needed=found.needed, job=job, key=key, change=change)


def in_doubt_message(row: Mapping[str, Any], exc: Exception, lookups: int) -> str:
    """What a person reads on an invoice whose send stayed in doubt: what to check in InExchange's portal."""
    erp_id = row["erp_document_id"]
    return (
        f"Faktura {row['invoice_number']}: okänt om InExchange tog emot fakturan; uppslaget på ERP-id {erp_id} "
        f"misslyckades {lookups} gånger (senast: {exc}). Sök på ERP-id {erp_id} bland utgående dokument i "
        "InExchanges portal. Finns fakturan där behöver inget göras (nästa körning hämtar dess status). Finns den "
        "inte, skicka den med en manuell körning med invoice_numbers. Den skickas aldrig igen automatiskt."
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _built(batch: InvoiceBatch, row: LedgerRow, seller: Seller, peppol: PeppolRules | None = None) -> _Job | str:
    """The invoice's document ready to send, or the message saying why it cannot be built (or, with
    ``peppol``, which official rules it breaks)."""
    from inexchange.ubl import DocumentError, build_from_batch

    invoice_id = int(row["invoice_id"])
    invoice = batch.invoice(invoice_id) if invoice_id in batch.invoices.index else None
    if invoice is None:
        return (
            f"Faktura {row['invoice_number']}: fakturan finns inte längre i ERP; "
            "lägg tillbaka den eller bortse från den här raden"
        )
    if invoice["customer_id"] not in batch.customers.index:
        return (
            f"Faktura {row['invoice_number']}: kunden {row['customer_number']} {row['customer_name']} finns inte "
            "längre i ERP; lägg tillbaka kunden eller koppla fakturan till en befintlig kund"
        )
    try:
        document = build_from_batch(batch, invoice_id, seller)
    except DocumentError as exc:  # names the invoice, the rule and what to fix
        return str(exc)
    if peppol is not None:
        broken = rejection(row["invoice_number"], peppol.check(document))
        if broken is not None:
            return broken
    return _Job(row, document, batch.customer(invoice["customer_id"]), invoice)


def _split_stuck(rows: list[LedgerRow]) -> tuple[list[LedgerRow], list[LedgerRow]]:
    """The due rows to send, and those left ``submitting`` that must be reconciled first."""
    stuck = [r for r in rows if r["state"] == LedgerState.SUBMITTING.value]
    return [r for r in rows if r["state"] != LedgerState.SUBMITTING.value], stuck
