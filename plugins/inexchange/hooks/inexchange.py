"""InExchangeHook: authenticated, retrying HTTP access to the InExchange REST API v1.

The client in layers, each a module of its own:

- :mod:`inexchange.hooks.transport`: the I/O engines (aiohttp under the async clients, httpx's own with
  a deadline under the sync one);
- :mod:`inexchange.hooks.protocol`: one attempt at a call (client token, rate limit, the reply's
  meaning) and the retry policy;
- :mod:`inexchange.hooks.endpoints`: each endpoint, written once;
- :mod:`inexchange.replies`: the replies read into the types of :mod:`inexchange.api`.

This module holds what is Airflow's: the connection, and the hook that runs the calls with its clients.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cached_property
from itertools import islice
from typing import TYPE_CHECKING, Any

import httpx
import tenacity
from airflow.sdk import BaseHook

from inexchange.exceptions import InExchangeConfigError
from inexchange.get_provider_info import CONNECTION_FORM
from inexchange.hooks import endpoints
from inexchange.hooks.protocol import (
    IO_ERRORS,
    Call,
    Drive,
    RateLimit,
    RetryPolicy,
    Send,
    Sleep,
    Steps,
    Token,
    attempt,
    retries_spent,
)
from inexchange.hooks.transport import (
    ACCEPT_ENCODING,
    MAX_REPLY_BYTES,
    AiohttpTransport,
    DeadlineTransport,
    proxy_for,
    read_capped,
)

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from inexchange.api import LookupResult, OutboundDocument, OutboundPage, UnreadableDocument

#: headers of every request: JSON replies asked for, and only the content codings the transports can bound
_CLIENT_HEADERS = {"Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING}


@dataclass(frozen=True)
class ApiSettings:
    """What the hook needs from the ``inexchange`` connection."""

    base_url: str
    api_key: str
    erp_id: str
    portal_url: str = "https://www.inexchange.se/"

    def __repr__(self) -> str:  # keep the key out of any repr that reaches a log
        return f"ApiSettings(base_url={self.base_url!r}, erp_id={self.erp_id!r}, api_key='***')"


#: what the ``schema`` field of a connection may name as the URL scheme
_URL_SCHEMES = ("http", "https")


def settings_from_connection(conn: Connection) -> ApiSettings:
    """Read base URL, API key and ERP id from an ``inexchange`` or a standard ``http`` connection.

    Both kinds hold the same fields: the host is the API base URL (with its scheme and path, or a
    host name alone), the password the API key, extra ``{"erp_id": ...}`` the ERP id InExchange
    knows the sender by (the login, when the extra has none), and the optional extra
    ``portal_url`` the web portal the submit task links to. ``schema`` may name the URL scheme
    (``https`` when it names none); in a connection URI such as
    ``https://:KEY@api.inexchange.com/v1/api/?erp_id=ERP`` Airflow puts the URL's path there, and it
    is taken as the path.

    :param conn: the connection.
    """
    host = (conn.host or "").strip()
    if not host:
        raise InExchangeConfigError(
            f"connection {conn.conn_id!r}: 'API base URL' (host) is empty; "
            "use https://testapi.inexchange.se/v1/api/ for InExchange's test API"
        )
    if "://" not in host:
        netloc, slash, path = host.partition("/")
        if conn.port:
            netloc = f"{netloc}:{conn.port}"  # after the host name, before any path
        schema = (conn.schema or "").strip()
        scheme = schema.lower() if schema.lower() in _URL_SCHEMES else "https"
        if schema and scheme != schema.lower() and not path:  # a connection URI's path
            slash, path = "/", schema.strip("/")
        host = f"{scheme}://{netloc}{slash}{path}"
    if not conn.password:
        raise InExchangeConfigError(f"connection {conn.conn_id!r}: 'API key' (password) is empty")
    extra = conn.extra_dejson or {}
    # the connection form stores its field as extra "erp_id" (older forms: "extra__inexchange__erp_id")
    erp_id = str(extra.get("erp_id") or extra.get("extra__inexchange__erp_id") or conn.login or "").strip()
    if not erp_id:
        raise InExchangeConfigError(f"connection {conn.conn_id!r}: 'ERP id' is empty (extra {{\"erp_id\": ...}})")
    settings = ApiSettings(base_url=host.rstrip("/") + "/", api_key=conn.password, erp_id=erp_id)
    portal_url = str(extra.get("portal_url") or "").strip()
    return replace(settings, portal_url=portal_url) if portal_url else settings


class InExchangeHook(BaseHook):
    """Talk to the InExchange REST API v1 with client tokens, retries, backoff and a rate limit.

    The connection is read when first needed. A client token is created with the API key on the
    first call, reused for every later call (and by every concurrent call: one creation at a time),
    renewed once on 401 and revoked by :meth:`close` / :meth:`aclose`.

    Every call, sync or async, is one :class:`~inexchange.hooks.protocol.Call` of
    :mod:`~inexchange.hooks.endpoints`, attempted by :func:`~inexchange.hooks.protocol.attempt` and
    repeated under the :class:`~inexchange.hooks.protocol.RetryPolicy` (tenacity: exponential backoff
    with jitter, ``Retry-After`` honoured) on connect errors, timeouts, 429 and 5xx; other 4xx fail at
    once with InExchange's ``message`` and ``modelState``. Calls that are not idempotent (sending a
    document) are retried only when the request certainly never reached InExchange (connect errors,
    429); every other failure is left to the caller, who reconciles through
    ``invoices/outbound/byerpid`` before sending again. The hook's two drivers do only the I/O
    (:meth:`_drive` with ``httpx.Client``, :meth:`_adrive` with ``httpx.AsyncClient``).

    A reply counts as InExchange's answer only when it is one (:mod:`inexchange.replies`); any other
    reply fails the attempt with an :class:`~inexchange.exceptions.InExchangeApiError` carrying its
    status, and is retried like a 5xx when the call is idempotent.

    :param inexchange_conn_id: connection with the API base URL, API key and ERP id.
    :param timeout: read/write timeout of one request (each socket operation), in seconds.
    :param connect_timeout: connect timeout, in seconds.
    :param deadline: seconds one request may take in all, from connecting to the last byte of its
        reply (default: three times ``timeout``). A server that answers a byte at a time never lets
        the read timeout expire; at the deadline the request fails like a read timeout: retried
        when the call is idempotent, reconciled (never resent blindly) when it is a send.
    :param max_attempts: attempts per call, the first one included.
    :param backoff: base of the exponential backoff, in seconds.
    :param max_backoff: longest wait between two attempts, in seconds.
    :param rate_limit: most requests per second this hook starts (a moving one-second window);
        None for no limit.
    :param concurrency: most requests in flight at once on the async clients (and their pool size).
    :param clients: number of async clients (connection pools) the requests are spread over
        (default 1). The async clients send over aiohttp (:class:`~inexchange.hooks.transport.AiohttpTransport`):
        httpx's own engine costs about a millisecond of CPU per request on loopback, the largest part
        of the submit task's CPU, and its pool grows costlier the more connections it manages.
    """

    conn_name_attr = "inexchange_conn_id"
    default_conn_name = "inexchange_default"
    conn_type = "inexchange"
    hook_name = "InExchange"

    def __init__(
        self,
        inexchange_conn_id: str = default_conn_name,
        *,
        # one request
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        deadline: float | None = None,
        # the retry policy
        max_attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        # the load on InExchange
        rate_limit: int | None = None,
        concurrency: int = 16,
        clients: int = 1,
    ) -> None:
        super().__init__()
        if rate_limit is not None and rate_limit < 1:
            raise ValueError(f"rate_limit must be at least 1 request per second (or None), got {rate_limit}")
        if concurrency < 1 or clients < 1:
            raise ValueError("concurrency and clients must be at least 1")
        deadline = 3 * timeout if deadline is None else deadline
        if not deadline > 0:
            raise ValueError(f"deadline must be a positive number of seconds, got {deadline}")
        self.inexchange_conn_id = inexchange_conn_id
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.deadline = float(deadline)
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retry_policy = RetryPolicy(max_attempts=max_attempts, backoff=backoff, max_backoff=max_backoff)
        self.rate_limit = rate_limit
        self.concurrency = concurrency
        self.clients = min(clients, concurrency)
        self._rate_limit = RateLimit(rate_limit) if rate_limit else None
        self._token: str | None = None
        self._settings: ApiSettings | None = None
        self._async_clients: list[httpx.AsyncClient] = []
        self._busy: list[int] = []  # requests in flight per async client
        self._in_flight: asyncio.Semaphore | None = None
        self._token_lock: asyncio.Lock | None = None
        #: documents of ``documents/outbound/list`` pages that could not be read and were skipped
        self.unreadable: list[UnreadableDocument] = []

    # ---- connection UI -------------------------------------------------------------------
    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel the connection form's fields for InExchange (the ERP id is a provider conn-field)."""
        return dict(CONNECTION_FORM)

    def test_connection(self) -> tuple[bool, str]:
        """Check the API base URL, API key and ERP id, as the connection form's "Test" button and
        ``airflow connections test`` do (with ``[core] test_connection = Enabled``): create a client
        token, then revoke it. Nothing else is called; the key never appears in the answer.
        """
        try:
            self.authenticate()
            self._revoke()
        except Exception as exc:
            return False, f"InExchange did not accept the connection {self.inexchange_conn_id!r}: {exc}"
        finally:
            self.close()
        return True, (
            f"InExchange at {self.settings.base_url} accepted the API key and ERP id "
            f"{self.settings.erp_id!r} (a client token was created and revoked)"
        )

    # ---- settings and clients ----------------------------------------------------------
    @property
    def settings(self) -> ApiSettings:
        """Base URL, API key and ERP id, read from the connection on first use."""
        if self._settings is None:
            self._settings = self._load_settings(self.get_connection(self.inexchange_conn_id))
        return self._settings

    def load_settings(self) -> ApiSettings:
        """Read the connection now (from synchronous code), so that async calls find it read."""
        return self.settings

    @staticmethod
    def _load_settings(conn: Connection) -> ApiSettings:
        settings = settings_from_connection(conn)
        _masked(settings.api_key)
        return settings

    async def _asettings(self) -> ApiSettings:
        if self._settings is None:
            self._settings = self._load_settings(await self.aget_connection(self.inexchange_conn_id))
        return self._settings

    @cached_property
    def _ssl_context(self) -> ssl.SSLContext:
        """One TLS context for every client of the hook (loading the CA bundle takes tens of ms)."""
        return httpx.create_ssl_context()

    @cached_property
    def client(self) -> httpx.Client:
        """The synchronous client, one connection pool for the hook's life.

        It sends through :class:`~inexchange.hooks.transport.DeadlineTransport`, with the proxy the
        environment sets for the API's host (read here once, as for the async clients).
        """
        base_url = httpx.URL(self.settings.base_url)
        transport = DeadlineTransport(
            deadline=self.deadline, verify=self._ssl_context, proxy=proxy_for(base_url.scheme, base_url.host)
        )
        return httpx.Client(
            base_url=base_url, timeout=self.timeout, headers=_CLIENT_HEADERS, transport=transport, trust_env=False
        )

    def _async_transport(self, max_connections: int) -> httpx.AsyncBaseTransport:
        """The engine under one async client: aiohttp's (bench/bench_submit.py weighs it against httpx's)."""
        return AiohttpTransport(max_connections=max_connections, verify=self._ssl_context, deadline=self.deadline)

    async def _aclients(self) -> list[httpx.AsyncClient]:
        """The async clients, created with the event loop's first call."""
        if not self._async_clients:
            settings = await self._asettings()
        if not self._async_clients:  # not created by a concurrent call while the settings loaded
            per_client = -(-self.concurrency // self.clients)
            self._async_clients = [
                httpx.AsyncClient(
                    base_url=settings.base_url,
                    timeout=self.timeout,
                    headers=_CLIENT_HEADERS,
                    transport=self._async_transport(per_client),
                )
                for _ in range(self.clients)
            ]
            self._busy = [0] * self.clients
            self._in_flight = asyncio.Semaphore(self.concurrency)
            self._token_lock = asyncio.Lock()
        return self._async_clients

    # ---- the drivers: I/O only -------------------------------------------------------------
    def _call(self, call: Call) -> Any:
        """Perform ``call`` with the synchronous client, repeated under the retry policy."""
        for trial in tenacity.Retrying(**self.retry_policy.arguments(call, self._sleep)):
            with trial:
                result = self._drive(attempt(call, api_key=self.settings.api_key, rate_limit=self._rate_limit))
        return result

    async def _acall(self, call: Call) -> Any:
        """Perform ``call`` with the async clients, repeated under the retry policy."""
        settings = await self._asettings()
        async for trial in tenacity.AsyncRetrying(**self.retry_policy.arguments(call, self._asleep)):
            with trial:
                result = await self._adrive(attempt(call, api_key=settings.api_key, rate_limit=self._rate_limit))
        return result

    def _drive(self, steps: Steps) -> Any:
        """Run an attempt (or a composite of calls) with the synchronous client."""
        drive = Drive(steps)
        for step in drive:
            if isinstance(step, Sleep):
                self._sleep(step.seconds)
            elif isinstance(step, Call):
                drive.reply = self._call(step)
            elif isinstance(step, Send):
                try:
                    with self.client.stream(step.method, step.path, **step.options) as response:
                        drive.reply = read_capped(response, MAX_REPLY_BYTES)
                except IO_ERRORS as exc:
                    drive.error = exc
            else:
                if self._token is None or self._token == step.stale:
                    self._token = self._new_token()
                drive.reply = self._token
        return drive.result

    async def _adrive(self, steps: Steps) -> Any:
        """Run an attempt (or a composite of calls) with the async clients (at most ``concurrency`` requests at once)."""
        clients = await self._aclients()
        assert self._in_flight is not None and self._token_lock is not None
        drive = Drive(steps)
        for step in drive:
            if isinstance(step, Sleep):
                await self._asleep(step.seconds)
            elif isinstance(step, Call):
                drive.reply = await self._acall(step)
            elif isinstance(step, Send):
                async with self._in_flight:
                    # the least busy pool: with at most `concurrency` requests in flight, it has a free connection
                    index = min(range(len(clients)), key=self._busy.__getitem__)
                    self._busy[index] += 1
                    try:
                        drive.reply = await self._asend(clients[index], step)
                    except IO_ERRORS as exc:
                        drive.error = exc
                    finally:
                        self._busy[index] -= 1
            else:
                async with self._token_lock:  # one creation for every waiting call
                    if self._token is None or self._token == step.stale:
                        self._token = await self._anew_token()
                drive.reply = self._token
        return drive.result

    async def _asend(self, client: httpx.AsyncClient, step: Send) -> httpx.Response:
        """Perform one request with ``client``.

        A request the client's aiohttp engine takes (a POST) goes to it straight from the step's
        parts: the client's headers under the step's, the URL joined to the client's base, the body
        encoded as httpx encodes it. The wire request is the same; what is skipped is the httpx
        client's request layer (URL merging, ``httpx.Request``, cookies, auth and redirect hooks,
        none of which the API uses), which costs more CPU than aiohttp's whole request. Any other
        request, or a client with another engine (httpx's own, a test's mock), goes through the client.
        """
        engine = client._transport_for_url(client.base_url)  # what the client sends through, a mock included
        if not (isinstance(engine, AiohttpTransport) and engine.takes(step.method)):
            return await client.request(step.method, step.path, **step.options)
        headers = dict(client.headers.items())  # lower-case names, as httpx sends them
        headers.update((name.lower(), value) for name, value in step.headers)
        body = step.content
        if body is None and step.json is not None:
            body = json.dumps(step.json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
            headers.setdefault("content-type", "application/json")
        url = f"{client.base_url}{step.path.lstrip('/')}"
        return await engine.send(step.method, url, list(headers.items()), body or None, client.timeout.as_dict())

    def _new_token(self) -> str:
        """Create a client token with the API key (after its own retries, the enclosing call gives up too)."""
        self._token = None
        with retries_spent():
            return _masked(self._call(endpoints.create_token(self.settings.erp_id)))

    async def _anew_token(self) -> str:
        """Async twin of :meth:`_new_token`."""
        self._token = None
        with retries_spent():
            return _masked(await self._acall(endpoints.create_token((await self._asettings()).erp_id)))

    @staticmethod
    def _sleep(seconds: float) -> None:
        time.sleep(seconds)

    @staticmethod
    async def _asleep(seconds: float) -> None:
        await asyncio.sleep(seconds)

    def _revoke(self) -> None:
        """One attempt at revoking the client token, if the hook holds one."""
        if self._token is not None:
            token, self._token = self._token, None
            self._drive(attempt(endpoints.revoke_token(token), api_key=self.settings.api_key, rate_limit=None))

    async def _arevoke(self) -> None:
        """Async twin of :meth:`_revoke`."""
        if self._token is not None:
            token, self._token = self._token, None
            api_key = (await self._asettings()).api_key
            await self._adrive(attempt(endpoints.revoke_token(token), api_key=api_key, rate_limit=None))

    def close(self) -> None:
        """Revoke the client token (best effort) and close the connection pool."""
        try:
            self._revoke()
        except Exception as exc:  # a token that outlives us expires by itself
            self.log.warning("could not revoke the InExchange client token: %s", type(exc).__name__)
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        try:
            await self._arevoke()
        except Exception as exc:
            self.log.warning("could not revoke the InExchange client token: %s", type(exc).__name__)
        clients, self._async_clients = self._async_clients, []
        for client in clients:
            await client.aclose()

    # ---- the endpoints (inexchange.hooks.endpoints), sync and async -------------------------
    def authenticate(self) -> None:
        """Create the client token now (with the API key and ERP id), unless the hook holds one.

        A wrong API key or ERP id fails here with InExchange's 401, before any other call.
        """
        self._drive(_token_needed())

    async def aauthenticate(self) -> None:
        """Async twin of :meth:`authenticate`."""
        await self._adrive(_token_needed())

    def lookup_buyer(self, **party: str | None) -> LookupResult:
        """Look a buyer up in InExchange's party register (:func:`~inexchange.hooks.endpoints.lookup_buyer`)."""
        return self._call(endpoints.lookup_buyer(**party))  # type: ignore[arg-type]

    async def alookup_buyer(self, **party: str | None) -> LookupResult:
        """Async twin of :meth:`lookup_buyer`."""
        return await self._acall(endpoints.lookup_buyer(**party))  # type: ignore[arg-type]

    def upload_document(self, content: bytes) -> str:
        """Upload a UBL file and return its ``urn:inexchangedocument:`` URI (:func:`~inexchange.hooks.endpoints.upload_document`)."""
        return self._call(endpoints.upload_document(content))

    async def aupload_document(self, content: bytes) -> str:
        """Async twin of :meth:`upload_document`."""
        return await self._acall(endpoints.upload_document(content))

    def send_outbound(self, body: dict[str, Any]) -> str:
        """Send an uploaded document and return its document id (:func:`~inexchange.hooks.endpoints.send_outbound`).

        Not retried once the request may have reached InExchange: the caller reconciles by ERP id.
        """
        return self._call(endpoints.send_outbound(body))

    async def asend_outbound(self, body: dict[str, Any]) -> str:
        """Async twin of :meth:`send_outbound`."""
        return await self._acall(endpoints.send_outbound(body))

    def get_outbound(self, document_id: str) -> OutboundDocument:
        """Return one outbound document (:func:`~inexchange.hooks.endpoints.get_outbound`)."""
        return self._call(endpoints.get_outbound(document_id))

    async def aget_outbound(self, document_id: str) -> OutboundDocument:
        """Async twin of :meth:`get_outbound`."""
        return await self._acall(endpoints.get_outbound(document_id))

    def find_by_erp_id(self, erp_id: str) -> OutboundDocument | None:
        """The invoice InExchange received under our ERP id, or None if it never did
        (:func:`~inexchange.hooks.endpoints.find_by_erp_id`)."""
        return self._call(endpoints.find_by_erp_id(erp_id))

    async def afind_by_erp_id(self, erp_id: str) -> OutboundDocument | None:
        """Async twin of :meth:`find_by_erp_id`."""
        return await self._acall(endpoints.find_by_erp_id(erp_id))

    def list_outbound(self, **filters: Any) -> OutboundPage:
        """Return one page of ``documents/outbound/list``; filters as in :func:`~inexchange.hooks.endpoints.list_body`."""
        return self._call(endpoints.list_outbound(**filters))

    async def alist_outbound(self, **filters: Any) -> OutboundPage:
        """Async twin of :meth:`list_outbound`."""
        return await self._acall(endpoints.list_outbound(**filters))

    def all_outbound(self, *, page_size: int = 100, **filters: Any) -> list[OutboundDocument]:
        """Every document matching the filters, page by page (:func:`~inexchange.hooks.endpoints.all_outbound`).

        A document that cannot be read is logged with its id, left out and kept in :attr:`unreadable`.
        """
        return self._drive(endpoints.all_outbound(page_size, filters, self._skipped))

    def iter_outbound(
        self, *, page_size: int = 100, workers: int = 4, ahead: int | None = None, **filters: Any
    ) -> Iterator[OutboundDocument]:
        """Every document matching the filters, as :meth:`all_outbound` lists them, read ``workers`` pages at a time.

        The first page gives ``totalCount`` and the page length the server keeps to; the pages after
        it are asked for at once, at most ``workers`` in flight and ``ahead`` pages ahead of the
        reader, and their documents are yielded in listing order as the reader takes them, so a long
        listing costs ``ahead`` pages of memory and one round trip per ``workers`` pages. A page
        shorter than the first (documents gone while listing) has what it left out read one call at a
        time; a listing that grew while read is read on to its new ``totalCount``. Every page goes
        through the same :class:`~inexchange.hooks.endpoints.ListingCheck` as :meth:`all_outbound`'s.

        :param ahead: the pages read ahead of the reader: ``2 * workers`` unless given, never fewer
            than ``workers``. A reader that stops to write what it took finds that many listed meanwhile.
        """
        check = endpoints.ListingCheck(self._skipped)

        def read(skip: int, take: int = page_size) -> OutboundPage:
            return self.list_outbound(take=take, skip=skip, **filters)

        first = read(0)  # creates the client and the token before any thread shares them
        yield from check.accept(first, 0)
        step, total = first.size, first.total_count
        if not step:
            return
        offsets = iter(range(step, total, step))
        listed, workers = step, max(1, workers)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inexchange-list")
        try:
            depth = max(workers, ahead or 2 * workers)
            pending = deque((skip, pool.submit(read, skip)) for skip in islice(offsets, depth))
            while pending:
                skip, future = pending.popleft()
                page = future.result()
                if (following := next(offsets, None)) is not None:
                    pending.append((following, pool.submit(read, following)))
                yield from check.accept(page, skip)
                total, listed = max(total, page.total_count), skip + page.size
                end = min(skip + step, first.total_count)
                while page.size and listed < end:  # a short page: read the gap it left
                    page = read(listed, end - listed)
                    yield from check.accept(page, listed)
                    listed += page.size
        finally:  # a reader that stops early, or a failed page: the calls not yet started never start
            pool.shutdown(wait=True, cancel_futures=True)
        while listed < total:  # the listing grew while it was read
            page = read(listed)
            yield from check.accept(page, listed)
            if not page.size:
                return
            listed += page.size
            total = page.total_count

    async def aall_outbound(self, *, page_size: int = 100, **filters: Any) -> list[OutboundDocument]:
        """Async twin of :meth:`all_outbound`."""
        return await self._adrive(endpoints.all_outbound(page_size, filters, self._skipped))

    def _skipped(self, item: UnreadableDocument) -> None:
        self.unreadable.append(item)
        self.log.warning(
            "documents/outbound/list: document %s cannot be read (%s); skipped",
            item.id or "(without a readable id)",
            item.problem,
        )


def _token_needed() -> Steps:
    """Steps that only ask the driver for the client token (created if the hook holds none)."""
    yield Token(None)


def _masked(secret: str) -> str:
    """Register a secret with Airflow's log masker so it never shows in task logs; return it."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - outside Airflow
        return secret
    mask_secret(secret)
    return secret
