"""InExchangeHook: authenticated, retrying HTTP access to the InExchange REST API v1."""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import ssl
import sys
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import tenacity
from airflow.sdk import BaseHook

from inexchange.api import LookupResult, OutboundDocument, OutboundPage, ReplyShapeError, UnreadableDocument
from inexchange.exceptions import (
    InExchangeApiError,
    InExchangeConfigError,
    InExchangeError,
    InExchangeTransportError,
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

#: failures after which the request certainly never reached InExchange
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: what a driver's I/O raises when no usable reply came: the transports' errors, a body httpx could not
#: decode, and a 3xx whose ``Location`` httpx cannot parse (it builds the redirect it will not follow)
_IO_ERRORS = (httpx.TransportError, httpx.DecodingError, httpx.InvalidURL)
#: headers of every request: JSON replies asked for, and only the content codings the transports can bound
_CLIENT_HEADERS = {"Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING}
#: the body of ``invoices/outbound/byerpid/{erpId}``, as public clients send it
BY_ERP_ID_BODY = {"includeFileInfo": False}
#: the longest text taken from a reply into an error (InExchange's message, one modelState reason)
_MAX_TEXT = 500
#: the most modelState fields, and reasons per field, kept in an error
_MAX_FIELDS = 20
_MAX_REASONS = 5


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
        raise InExchangeConfigError(
            f"connection {conn.conn_id!r}: 'ERP id' is empty (extra {{\"erp_id\": ...}})"
        )
    settings = ApiSettings(base_url=host.rstrip("/") + "/", api_key=conn.password, erp_id=erp_id)
    portal_url = str(extra.get("portal_url") or "").strip()
    return replace(settings, portal_url=portal_url) if portal_url else settings


class _Unauthorized(Exception):
    """A 401 on a ClientToken call: the token is renewed once and the call repeated."""


@dataclass(frozen=True)
class _Call:
    """One HTTP request as the request path describes it; a driver performs it."""

    method: str
    path: str
    auth: str = "token"  # "token" (ClientToken header) or "apikey" (APIKey header)
    idempotent: bool = True
    json: Any = None
    content: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    #: turns the successful reply into the result, inside the attempt: a reply that cannot be read
    #: (cut off, not JSON, of another shape) fails the attempt and is retried like a 5xx when the
    #: call is idempotent
    read: Callable[[httpx.Response], Any] | None = None
    #: error statuses that are an answer of the call and go to ``read`` (404 of a look-up by ERP id)
    answers: frozenset[int] = frozenset()

    @property
    def options(self) -> dict[str, Any]:
        """Keyword arguments of ``httpx.Client.request`` besides method and path."""
        return {"headers": dict(self.headers), "json": self.json, "content": self.content}


@dataclass(frozen=True)
class _Sleep:
    """Wait before going on (backoff between attempts, or the rate limit)."""

    seconds: float


@dataclass(frozen=True)
class _Token:
    """A client token is needed; ``stale`` is the one InExchange just refused, if any."""

    stale: str | None


#: what the request path yields to its driver, and what the driver sends back
_Step = _Call | _Sleep | _Token
_Steps = Generator[_Step, Any, Any]


class InExchangeHook(BaseHook):
    """Talk to the InExchange REST API v1 with client tokens, retries, backoff and a rate limit.

    The connection is read when first needed. A client token is created with the API key on the
    first call, reused for every later call (and by every concurrent call: one creation at a time),
    renewed once on 401 and revoked by :meth:`close` / :meth:`aclose`.

    Every call, sync or async, goes through one request path (:meth:`_exchange`): a generator that
    decides what to send, how long to wait and what a reply means, and yields each request to a thin
    driver that only does the I/O (:meth:`_run` with ``httpx.Client``, :meth:`_arun` with
    ``httpx.AsyncClient``). Retries (tenacity: exponential backoff with jitter, ``Retry-After``
    honoured) cover connect errors, timeouts, 429 and 5xx; other 4xx fail at once with InExchange's
    ``message`` and ``modelState``. Calls that are not idempotent (sending a document) are retried
    only when the request certainly never reached InExchange (connect errors, 429); every other
    failure is left to the caller, who reconciles through ``invoices/outbound/byerpid`` before
    sending again.

    A reply counts as InExchange's answer only when it is one: a success is a 2xx status (not 206)
    whose body, for the calls that return data, is a JSON object of the documented shape
    (:class:`~inexchange.api.ReplyShapeError`), and whose ``Location`` header, for upload and send, has
    the documented form (``urn:inexchangedocument:{guid}``, ``.../documents/outbound/{guid}``). The ``Content-Type`` is not consulted: JSON is asked for (``Accept``), the body
    is parsed as JSON (UTF-8, as RFC 8259 requires; ``NaN`` and ``Infinity`` are not JSON) whatever
    type it is labelled with, so an HTML page fails as "not JSON" even under ``application/json``, and
    a JSON object of the right shape is read even under ``text/plain`` (gateways relabel bodies; the
    shape, not the label, shows the reply is InExchange's). Any other reply fails the attempt with an
    :class:`~inexchange.exceptions.InExchangeApiError` carrying its status, and is retried like a 5xx
    when the call is idempotent.

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
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        deadline: float | None = None,
        max_attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
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
        self.rate_limit = rate_limit
        self.concurrency = concurrency
        self.clients = min(clients, concurrency)
        self._limiter, self._rate = _rate_limiter(rate_limit) if rate_limit else (None, None)
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
        from inexchange.get_provider_info import CONNECTION_FORM

        return dict(CONNECTION_FORM)

    def test_connection(self) -> tuple[bool, str]:
        """Check the API base URL, API key and ERP id, as the connection form's "Test" button and
        ``airflow connections test`` do (with ``[core] test_connection = Enabled``): create a client
        token, then revoke it. Nothing else is called; the key never appears in the answer.
        """
        try:
            self.authenticate()
            steps = self._revoke()
            if steps is not None:
                self._run(steps)
        except Exception as exc:
            return False, f"InExchange did not accept the connection {self.inexchange_conn_id!r}: {exc}"
        finally:
            self.close()
        return True, (f"InExchange at {self.settings.base_url} accepted the API key and ERP id "
                      f"{self.settings.erp_id!r} (a client token was created and revoked)")

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
        _mask(settings.api_key)
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
        transport = DeadlineTransport(deadline=self.deadline, verify=self._ssl_context,
                                      proxy=proxy_for(base_url.scheme, base_url.host))
        return httpx.Client(base_url=base_url, timeout=self.timeout, headers=_CLIENT_HEADERS, transport=transport,
                            trust_env=False)

    async def _aclients(self) -> list[httpx.AsyncClient]:
        """The async clients, created with the event loop's first call."""
        if not self._async_clients:
            settings = await self._asettings()
        if not self._async_clients:  # not created by a concurrent call while the settings loaded
            per_client = -(-self.concurrency // self.clients)
            self._async_clients = [
                httpx.AsyncClient(base_url=settings.base_url, timeout=self.timeout, headers=_CLIENT_HEADERS,
                                  transport=AiohttpTransport(max_connections=per_client, verify=self._ssl_context,
                                                             deadline=self.deadline))
                for _ in range(self.clients)
            ]
            self._busy = [0] * self.clients
            self._in_flight = asyncio.Semaphore(self.concurrency)
            self._token_lock = asyncio.Lock()
        return self._async_clients

    # ---- the one request path ------------------------------------------------------------
    def _exchange(self, call: _Call) -> _Steps:
        """Perform ``call`` with retries; yields requests, waits and token needs to a driver.

        Returns the successful ``httpx.Response`` (read by ``call.read`` when given) or raises the last error.
        """
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda exc: _retryable(exc, call.idempotent)),
            wait=self._wait,
            stop=tenacity.stop_after_attempt(self.max_attempts),
            reraise=True,
        )
        retrying.begin()
        state = tenacity.RetryCallState(retrying, fn=None, args=(), kwargs={})
        while True:
            action = retrying.iter(retry_state=state)
            if isinstance(action, tenacity.DoAttempt):
                try:
                    response = yield from self._attempt(call)
                    result = call.read(response) if call.read is not None else response
                except Exception:
                    state.set_exception(sys.exc_info())  # type: ignore[arg-type]
                else:
                    state.set_result(result)
            elif isinstance(action, tenacity.DoSleep):
                state.prepare_for_next_attempt()
                yield _Sleep(float(action))
            else:
                return action

    def _attempt(self, call: _Call) -> _Steps:
        """One attempt: the token, the rate limit, the request, the reply's meaning."""
        stale: str | None = None
        for renewed in (False, True):
            token = (yield _Token(stale)) if call.auth == "token" else None
            yield from self._throttle()
            failure: InExchangeTransportError | None = None
            try:
                response = yield replace(call, headers=(*self._auth_headers(call.auth, token), *call.headers))
            except _IO_ERRORS as exc:  # the driver's I/O failed
                failure = _transport_error(call.path, exc, self._secrets(token))
            if failure is not None:
                raise failure  # outside the handler: the httpx error, with its unredacted text, is not chained
            try:
                _checked(response, call.path, token_call=call.auth == "token", answers=call.answers,
                         secrets=self._secrets(token))
            except _Unauthorized:
                if renewed:
                    raise InExchangeApiError(401, "client token refused after renewal", path=call.path) from None
                stale = token
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _throttle(self) -> _Steps:
        """Wait until the rate limit lets one more request start."""
        if self._limiter is None or self._rate is None:
            return
        while not self._limiter.hit(self._rate, "inexchange"):
            reset_time, _ = self._limiter.get_window_stats(self._rate, "inexchange")
            yield _Sleep(max(reset_time - time.time(), 0.001))

    def _secrets(self, token: str | None) -> tuple[str, ...]:
        """The API key and the client token, for keeping them out of error texts."""
        key = self._settings.api_key if self._settings is not None else None
        return tuple(secret for secret in (key, token) if secret)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        ceiling = min(self.max_backoff, self.backoff * 2 ** (state.attempt_number - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _auth_headers(self, auth: str, token: str | None) -> tuple[tuple[str, str], ...]:
        if auth == "apikey":
            return (("APIKey", self.settings.api_key),)
        return (("ClientToken", token or ""),)

    # ---- the drivers: I/O only -------------------------------------------------------------
    def _run(self, steps: _Steps) -> Any:
        """Drive the request path with the synchronous client."""
        drive = _Drive(steps)
        for step in drive:
            if isinstance(step, _Sleep):
                self._sleep(step.seconds)
            elif isinstance(step, _Token):
                if self._token is None or self._token == step.stale:
                    self._token = self._run(self._created_token())
                drive.reply = self._token
            else:
                try:
                    with self.client.stream(step.method, step.path, **step.options) as response:
                        drive.reply = read_capped(response, MAX_REPLY_BYTES)
                except _IO_ERRORS as exc:
                    drive.error = exc
        return drive.result

    async def _arun(self, steps: _Steps) -> Any:
        """Drive the request path with the async clients (at most ``concurrency`` requests at once)."""
        clients = await self._aclients()
        assert self._in_flight is not None and self._token_lock is not None
        drive = _Drive(steps)
        for step in drive:
            if isinstance(step, _Sleep):
                await self._asleep(step.seconds)
            elif isinstance(step, _Token):
                async with self._token_lock:  # one creation for every waiting call
                    if self._token is None or self._token == step.stale:
                        self._token = await self._arun(self._created_token())
                drive.reply = self._token
            else:
                async with self._in_flight:
                    # the least busy pool: with at most `concurrency` requests in flight, it has a free connection
                    index = min(range(len(clients)), key=self._busy.__getitem__)
                    self._busy[index] += 1
                    try:
                        drive.reply = await clients[index].request(step.method, step.path, **step.options)
                    except _IO_ERRORS as exc:
                        drive.error = exc
                    finally:
                        self._busy[index] -= 1
        return drive.result

    @staticmethod
    def _sleep(seconds: float) -> None:
        time.sleep(seconds)

    @staticmethod
    async def _asleep(seconds: float) -> None:
        await asyncio.sleep(seconds)

    def _created_token(self) -> _Steps:
        """Create a client token with the API key (run by either driver).

        The reply is read inside the retried attempt, like every other call's: a token reply that
        cannot be read (not JSON, no token, a token that cannot be a header value) is retried, as a
        second token is harmless.
        """
        self._token = None
        try:
            return (yield from self._exchange(
                _Call("POST", "clientTokens/create", auth="apikey", json={"erpId": self.settings.erp_id},
                      read=_token_from)
            ))
        except InExchangeError as exc:
            _spent(exc)
            raise

    def _revoke(self) -> _Steps | None:
        """One attempt at revoking the token, or None when there is none."""
        if self._token is None:
            return None
        token, self._token = self._token, None
        return self._attempt(_Call("POST", "clientTokens/revoke", auth="apikey", json={"clientToken": token}))

    def close(self) -> None:
        """Revoke the client token (best effort) and close the connection pool."""
        steps = self._revoke()
        if steps is not None:
            try:
                self._run(steps)
            except Exception as exc:  # a token that outlives us expires by itself
                self.log.warning("could not revoke the InExchange client token: %s", type(exc).__name__)
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        steps = self._revoke()
        if steps is not None:
            try:
                await self._arun(steps)
            except Exception as exc:
                self.log.warning("could not revoke the InExchange client token: %s", type(exc).__name__)
        clients, self._async_clients = self._async_clients, []
        for client in clients:
            await client.aclose()

    # ---- endpoints: each written once, run by either driver -----------------------------
    def authenticate(self) -> None:
        """Create the client token now (with the API key and ERP id), unless the hook holds one.

        A wrong API key or ERP id fails here with InExchange's 401, before any other call.
        """
        self._run(self._authenticate())

    async def aauthenticate(self) -> None:
        """Async twin of :meth:`authenticate`."""
        await self._arun(self._authenticate())

    def _authenticate(self) -> _Steps:
        yield _Token(None)


    def lookup_buyer(self, **party: str | None) -> LookupResult:
        """Look a buyer up in InExchange's party register (``buyerparties/lookup``).

        :param party: ``party_id`` (our own id of the party: the customer number), and any of
            ``org_no``, ``gln``, ``vat_no``, ``name``.
        """
        return self._run(self._lookup_buyer(**party))

    async def alookup_buyer(self, **party: str | None) -> LookupResult:
        """Async twin of :meth:`lookup_buyer`."""
        return await self._arun(self._lookup_buyer(**party))

    def _lookup_buyer(self, *, party_id: str, org_no: str | None = None, gln: str | None = None,
                      vat_no: str | None = None, name: str | None = None) -> _Steps:
        body = {"PartyId": party_id, "orgNo": org_no, "gln": gln, "vatNo": vat_no, "name": name}
        return (yield from self._exchange(_Call("POST", "buyerparties/lookup", json={k: v for k, v in body.items() if v},
                                                read=_reading("buyerparties/lookup", LookupResult.from_json))))

    def upload_document(self, content: bytes) -> str:
        """Upload a UBL file (``POST documents``) and return its ``urn:inexchangedocument:`` URI."""
        return self._run(self._upload_document(content))

    async def aupload_document(self, content: bytes) -> str:
        """Async twin of :meth:`upload_document`."""
        return await self._arun(self._upload_document(content))

    def _upload_document(self, content: bytes) -> _Steps:
        return (yield from self._exchange(_Call("POST", "documents", content=content,
                                                headers=(("Content-Type", "application/xml"),),
                                                read=_document_uri)))

    def send_outbound(self, body: dict[str, Any]) -> str:
        """Send an uploaded document (``POST documents/outbound``) and return its document id.

        Not retried once the request may have reached InExchange: the caller reconciles by ERP id.
        """
        return self._run(self._send_outbound(body))

    async def asend_outbound(self, body: dict[str, Any]) -> str:
        """Async twin of :meth:`send_outbound`."""
        return await self._arun(self._send_outbound(body))

    def _send_outbound(self, body: dict[str, Any]) -> _Steps:
        return (yield from self._exchange(_Call("POST", "documents/outbound", idempotent=False, json=body,
                                                read=_sent_document_id)))

    def get_outbound(self, document_id: str) -> OutboundDocument:
        """Return one outbound document (``GET documents/outbound/{id}``)."""
        return self._run(self._get_outbound(document_id))

    async def aget_outbound(self, document_id: str) -> OutboundDocument:
        """Async twin of :meth:`get_outbound`."""
        return await self._arun(self._get_outbound(document_id))

    def _get_outbound(self, document_id: str) -> _Steps:
        path = f"documents/outbound/{document_id}"
        return (yield from self._exchange(_Call("GET", path, read=_reading(path, OutboundDocument.from_json))))

    def find_by_erp_id(self, erp_id: str) -> OutboundDocument | None:
        """Return the invoice InExchange received under our ERP id, or None if it never did.

        None only for a 404 that is InExchange's own (an empty body or a JSON object): a 404 page of
        something in between (HTML, text) proves nothing about the invoice and fails the call, since
        "never received" lets the caller send the invoice again.
        """
        return self._run(self._find_by_erp_id(erp_id))

    async def afind_by_erp_id(self, erp_id: str) -> OutboundDocument | None:
        """Async twin of :meth:`find_by_erp_id`."""
        return await self._arun(self._find_by_erp_id(erp_id))

    def _find_by_erp_id(self, erp_id: str) -> _Steps:
        path = f"invoices/outbound/byerpid/{erp_id}"
        found = _reading(path, OutboundDocument.from_json)

        def read(response: httpx.Response) -> OutboundDocument | None:
            if response.status_code != 404:
                return found(response)
            if response.content.strip() and not isinstance(_parsed_json(response.content), dict):
                raise InExchangeApiError(404, "a 404 reply that is not InExchange's (not a JSON object)", path=path)
            return None

        return (yield from self._exchange(_Call("POST", path, json=BY_ERP_ID_BODY, read=read,
                                                answers=frozenset({404}))))

    def list_outbound(self, **filters: Any) -> OutboundPage:
        """Return one page of ``documents/outbound/list``; filters as in :func:`list_body`."""
        return self._run(self._list_outbound(**filters))

    async def alist_outbound(self, **filters: Any) -> OutboundPage:
        """Async twin of :meth:`list_outbound`."""
        return await self._arun(self._list_outbound(**filters))

    def _list_outbound(self, **filters: Any) -> _Steps:
        return (yield from self._exchange(_Call("POST", "documents/outbound/list", json=list_body(**filters),
                                                read=_reading("documents/outbound/list", OutboundPage.from_json))))

    def all_outbound(self, *, page_size: int = 100, **filters: Any) -> list[OutboundDocument]:
        """Every document matching the filters, page by page (``take``/``skip``) up to ``totalCount``.

        A page that lists only documents already listed (a server that ignores ``skip``) fails the
        call instead of paging forever. A document that cannot be read is logged with its id, left
        out and kept in :attr:`unreadable`; the rest of its page counts.
        """
        return self._run(self._all_outbound(page_size, filters))

    async def aall_outbound(self, *, page_size: int = 100, **filters: Any) -> list[OutboundDocument]:
        """Async twin of :meth:`all_outbound`."""
        return await self._arun(self._all_outbound(page_size, filters))

    def _all_outbound(self, page_size: int, filters: dict[str, Any]) -> _Steps:
        documents: list[OutboundDocument] = []
        seen: set[str] = set()
        listed = 0  # items stepped over, readable or not
        while True:
            page = yield from self._list_outbound(take=page_size, skip=listed, **filters)
            if documents and page.documents and seen.issuperset(d.id for d in page.documents):
                raise InExchangeApiError(200, f"the page at skip={listed} repeats documents already listed",
                                         path="documents/outbound/list")
            for item in page.unreadable:
                self.unreadable.append(item)
                self.log.warning("documents/outbound/list: document %s cannot be read (%s); skipped",
                                 item.id or "(without a readable id)", item.problem)
            documents.extend(page.documents)
            seen.update(d.id for d in page.documents)
            listed += page.size
            if not page.size or listed >= page.total_count:
                return documents


class _Drive:
    """Iterate over the steps of a request path; a driver sets ``reply`` or ``error`` for each step.

    When the path finishes, its return value is in ``result``; an error it raises propagates.
    """

    def __init__(self, steps: _Steps) -> None:
        self._steps = steps
        self.reply: Any = None
        self.error: BaseException | None = None
        self.result: Any = None

    def __iter__(self) -> Iterator[_Step]:
        while True:
            reply, error, self.reply, self.error = self.reply, self.error, None, None
            try:
                step = self._steps.throw(error) if error is not None else self._steps.send(reply)
            except StopIteration as stop:
                self.result = stop.value
                return
            yield step


def list_body(
    *,
    take: int = 100,
    skip: int = 0,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    updated_after: datetime | None = None,
    status: str | None = None,
    document_type: str | None = None,
) -> dict[str, Any]:
    """Build the body of ``documents/outbound/list`` (error details always included)."""
    body: dict[str, Any] = {"take": take, "skip": skip, "includeErrorInfo": True}
    for key, value in (("createdFrom", created_from), ("createdTo", created_to), ("updatedAfter", updated_after)):
        if value is not None:
            body[key] = value.isoformat()
    if status:
        body["status"] = status
    if document_type:
        body["documentType"] = document_type
    return body


def _spent(exc: InExchangeError) -> None:
    """Mark an error whose own retries are spent, so that an enclosing retry loop gives up too.

    Token creation runs its own retry loop inside the attempt of the call that needs the token;
    without the mark, ``max_attempts`` failing creations would be repeated ``max_attempts`` times.
    """
    exc.retries_spent = True  # type: ignore[attr-defined]


def _transport_error(path: str, exc: Exception, secrets: tuple[str, ...]) -> InExchangeTransportError:
    """Turn an httpx transport failure into :class:`InExchangeTransportError` (no secrets in it).

    Its cause is a copy of the httpx error whose text has the key and token cut out: a parser's
    error can quote the reply's bytes, and a server can echo what it was sent.
    """
    cause: Exception
    try:
        cause = type(exc)(_redacted(str(exc), secrets))  # type: ignore[misc,call-arg]
    except Exception:
        cause = httpx.TransportError(_redacted(str(exc), secrets))
    error = InExchangeTransportError(path, cause)
    error.__cause__ = cause
    return error


def _retryable(exc: BaseException, idempotent: bool) -> bool:
    if getattr(exc, "retries_spent", False):
        return False
    if isinstance(exc, InExchangeApiError):
        return exc.status_code == 429 or (idempotent and exc.retryable)
    if isinstance(exc, InExchangeTransportError):
        return idempotent or isinstance(exc.__cause__, _NOT_SENT_ERRORS)
    return False


def _checked(response: httpx.Response, path: str, *, token_call: bool, answers: frozenset[int] = frozenset(),
             secrets: tuple[str, ...] = ()) -> httpx.Response:
    """Return a successful response (or one whose status is in ``answers``), or raise the error it carries.

    Success is a 2xx other than 206 (a part of a reply, never asked for). A 1xx or 3xx (the clients
    follow no redirect) is no answer either: an error with that status, retried like a reply that
    cannot be read when the call is idempotent. Text taken from the reply is cut to a line of at most
    500 characters with the key and token removed.
    """
    status = response.status_code
    if (200 <= status < 300 and status != 206) or status in answers:
        return response
    if status == 401 and token_call:
        raise _Unauthorized()
    if status < 400:
        kind = "a redirect (check the API base URL)" if 300 <= status < 400 else "not a complete reply"
        raise InExchangeApiError(status, f"unexpected status: {kind}", path=path)
    body = _parsed_json(response.content)
    body = body if isinstance(body, dict) else {}
    message = next((m for m in (body.get("message"), body.get("Message")) if isinstance(m, str) and m.strip()),
                   response.reason_phrase or "error")
    error = InExchangeApiError(
        status, _clean(message, secrets) or "error",
        model_state=_model_state(body.get("modelState") or body.get("ModelState"), secrets), path=path,
    )
    error.retry_after = _retry_after(response.headers.get("Retry-After"))  # type: ignore[attr-defined]
    raise error


#: what :func:`_parsed_json` returns for a body that is not JSON
_NOT_JSON = object()


def _parsed_json(content: bytes) -> Any:
    """The JSON value of a body, or ``_NOT_JSON`` when the body is no JSON text.

    Strict RFC 8259 whatever the ``Content-Type`` says: UTF-8 (UTF-16 and UTF-32 are recognised
    too), no ``NaN`` or ``Infinity``; nesting deeper than Python's parser goes (RecursionError) and
    integers longer than Python converts are "not JSON" as well.
    """
    try:
        return json.loads(content, parse_constant=_not_a_json_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and too long integers are ValueErrors
        return _NOT_JSON


def _not_a_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json(response: httpx.Response, path: str) -> dict[str, Any]:
    body = _parsed_json(response.content)
    if body is _NOT_JSON:
        raise InExchangeApiError(response.status_code, "reply is not JSON", path=path)
    if not isinstance(body, dict):
        raise InExchangeApiError(response.status_code, "reply is not a JSON object", path=path)
    return body


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _clean(text: str, secrets: tuple[str, ...]) -> str:
    """Text from a reply made fit for an error: secrets removed, one line, at most ``_MAX_TEXT`` characters."""
    return _CONTROL.sub(" ", _redacted(text, secrets)).strip()[:_MAX_TEXT]


def _redacted(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _model_state(value: Any, secrets: tuple[str, ...]) -> dict[str, list[str]] | None:
    """InExchange's ``modelState`` (field -> reasons) as far as it has that shape: strings only, bounded."""
    if not isinstance(value, dict):
        return None
    state: dict[str, list[str]] = {}
    for field, reasons in value.items():
        reasons = [reasons] if isinstance(reasons, str) else reasons
        if not isinstance(reasons, list):
            continue
        kept = [_clean(r, secrets) for r in reasons if isinstance(r, str)][:_MAX_REASONS]
        if kept:
            state[_clean(field, secrets)] = kept
        if len(state) == _MAX_FIELDS:
            break
    return state or None


_SECONDS = re.compile(r"\d{1,9}(\.\d{1,9})?", re.ASCII)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), or None when it says nothing usable."""
    if not value:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    seconds = (moment - datetime.now(timezone.utc)).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _rate_limiter(per_second: int) -> tuple[Any, Any]:
    """A moving-window limiter and its rate (``limits`` loads here, not when a DAG file imports the hook)."""
    from limits import RateLimitItemPerSecond
    from limits.storage import MemoryStorage
    from limits.strategies import MovingWindowRateLimiter

    return MovingWindowRateLimiter(MemoryStorage()), RateLimitItemPerSecond(per_second)


def _reading(path: str, parse: Callable[[dict[str, Any]], Any]) -> Callable[[httpx.Response], Any]:
    """A ``_Call.read`` that parses the JSON object of the reply; any reply it cannot parse is an API error."""

    def read(response: httpx.Response) -> Any:
        body = _json(response, path)
        try:
            return parse(body)
        except ReplyShapeError as exc:  # its text names the field, never a value from the reply
            problem = str(exc)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            problem = type(exc).__name__
        # raised outside the handler, so that nothing quoting the reply is chained to it
        raise InExchangeApiError(response.status_code, f"reply of an unexpected shape: {problem}", path=path)

    return read


#: what a ``Location`` header or an id in it may contain: visible ASCII, no spaces
_VISIBLE = re.compile(r"[\x21-\x7e]+")
#: InExchange names documents by GUID, in the upload's URN and in the send's Location
_GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
#: the document id in a send's ``Location``: ``.../documents/outbound/{guid}`` (a trailing slash allowed)
_SENT_PATH = re.compile(rf"(?:^|/)documents/outbound/({_GUID})/?$", re.IGNORECASE)
#: the ``Location`` of an upload: ``urn:inexchangedocument:{guid}``
_DOCUMENT_URN = re.compile(rf"urn:inexchangedocument:{_GUID}", re.IGNORECASE)


def _location(response: httpx.Response, path: str) -> str:
    """The reply's ``Location`` header, which upload and send answer with, or an API error."""
    location = response.headers.get("Location", "").strip()
    if not location.rstrip("/"):
        raise InExchangeApiError(response.status_code, "no Location header in the reply", path=path)
    if not _VISIBLE.fullmatch(location) or len(location) > 2048:
        raise InExchangeApiError(response.status_code, "a Location header that is not a URI", path=path)
    return location


def _document_uri(response: httpx.Response) -> str:
    """The ``urn:inexchangedocument:{guid}`` an upload answers with in ``Location``."""
    location = _location(response, "documents")
    if not _DOCUMENT_URN.fullmatch(location):
        raise InExchangeApiError(response.status_code, "Location is not a urn:inexchangedocument:{guid}",
                                 path="documents")
    return location


def _sent_document_id(response: httpx.Response) -> str:
    """The document id a send answers with: the GUID of ``.../documents/outbound/{guid}`` in ``Location``."""
    location = _location(response, "documents/outbound")
    try:
        found = _SENT_PATH.search(urlsplit(location).path)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        found = None
    if found is None:
        raise InExchangeApiError(response.status_code, "Location does not name a documents/outbound/{guid}",
                                 path="documents/outbound")
    return found.group(1)


#: the longest client token accepted (InExchange's are tens of characters)
_MAX_TOKEN = 4096


def _token_from(response: httpx.Response) -> str:
    """The client token of a ``clientTokens/create`` reply; it must be fit for a header (visible ASCII)."""
    token = _json(response, "clientTokens/create").get("token")
    if not isinstance(token, str) or not token:
        raise InExchangeApiError(response.status_code, "no token in the reply", path="clientTokens/create")
    if len(token) > _MAX_TOKEN or not _VISIBLE.fullmatch(token):
        raise InExchangeApiError(response.status_code, "a token that is not a header value", path="clientTokens/create")
    _mask(token)
    return token


def _mask(secret: str) -> None:
    """Register a secret with Airflow's log masker so it never shows in task logs."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - outside Airflow
        return
    mask_secret(secret)
