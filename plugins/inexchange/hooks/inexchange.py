"""InExchangeHook: authenticated, retrying HTTP access to the InExchange REST API v1."""

from __future__ import annotations

import json
import random
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator

import httpx
import tenacity
from airflow.sdk import BaseHook

from inexchange.api import LookupResult, OutboundDocument, OutboundPage
from inexchange.exceptions import (
    InExchangeApiError,
    InExchangeConfigError,
    InExchangeError,
    InExchangeTransportError,
)

if TYPE_CHECKING:
    from airflow.sdk import Connection

#: failures after which the request certainly never reached InExchange
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class ApiSettings:
    """What the hook needs from the ``inexchange`` connection."""

    base_url: str
    api_key: str
    erp_id: str

    def __repr__(self) -> str:  # keep the key out of any repr that reaches a log
        return f"ApiSettings(base_url={self.base_url!r}, erp_id={self.erp_id!r}, api_key='***')"


def settings_from_connection(conn: Connection) -> ApiSettings:
    """Read base URL, API key and ERP id from an ``inexchange`` connection.

    :param conn: connection whose host is the API base URL, password the API key and
        extra ``{"erp_id": ...}`` the ERP id InExchange knows the sender by.
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
        host = f"{conn.schema or 'https'}://{netloc}{slash}{path}"
    if not conn.password:
        raise InExchangeConfigError(f"connection {conn.conn_id!r}: 'API key' (password) is empty")
    extra = conn.extra_dejson or {}
    # the connection form stores its field as extra "erp_id" (older forms: "extra__inexchange__erp_id")
    erp_id = str(extra.get("erp_id") or extra.get("extra__inexchange__erp_id") or conn.login or "").strip()
    if not erp_id:
        raise InExchangeConfigError(
            f"connection {conn.conn_id!r}: 'ERP id' is empty (extra {{\"erp_id\": ...}})"
        )
    return ApiSettings(base_url=host.rstrip("/") + "/", api_key=conn.password, erp_id=erp_id)


class _Unauthorized(Exception):
    """A 401 on a ClientToken call: the token is renewed once and the call repeated."""


class InExchangeHook(BaseHook):
    """Talk to the InExchange REST API v1 with client tokens, retries and backoff.

    The connection is read when first needed. A client token is created with the API key on the
    first call, reused for every later call, renewed once on 401 and revoked by :meth:`close`.
    Retries (exponential backoff with jitter, ``Retry-After`` honoured) cover connect errors,
    timeouts, 429 and 5xx; other 4xx fail at once with InExchange's ``message`` and ``modelState``.
    Calls that are not idempotent (sending a document) are retried only when the request certainly
    never reached InExchange (connect errors, 429); every other failure is left to the caller, who
    reconciles through ``invoices/outbound/byerpid`` before sending again.

    :param inexchange_conn_id: connection with the API base URL, API key and ERP id.
    :param timeout: read/write timeout of one request, in seconds.
    :param connect_timeout: connect timeout, in seconds.
    :param max_attempts: attempts per call, the first one included.
    :param backoff: base of the exponential backoff, in seconds.
    :param max_backoff: longest wait between two attempts, in seconds.
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
        max_attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        super().__init__()
        self.inexchange_conn_id = inexchange_conn_id
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._token: str | None = None
        self._settings: ApiSettings | None = None
        self._async_client: httpx.AsyncClient | None = None

    # ---- connection UI -------------------------------------------------------------------
    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel the connection form's fields for InExchange (the ERP id is a provider conn-field)."""
        from inexchange.get_provider_info import CONNECTION_FORM

        return dict(CONNECTION_FORM)

    # ---- settings and clients ----------------------------------------------------------
    @property
    def settings(self) -> ApiSettings:
        """Base URL, API key and ERP id, read from the connection on first use."""
        if self._settings is None:
            self._settings = self._load_settings(self.get_connection(self.inexchange_conn_id))
        return self._settings

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
    def client(self) -> httpx.Client:
        """The synchronous client, one connection pool for the hook's life."""
        return httpx.Client(base_url=self.settings.base_url, timeout=self.timeout)

    async def _aclient(self) -> httpx.AsyncClient:
        if self._async_client is None:
            settings = await self._asettings()
            self._async_client = httpx.AsyncClient(base_url=settings.base_url, timeout=self.timeout)
        return self._async_client

    # ---- the one request path (sync and async) -------------------------------------------
    def _retrying(self, idempotent: bool, cls: type = tenacity.Retrying) -> Any:
        return cls(
            retry=tenacity.retry_if_exception(lambda exc: _retryable(exc, idempotent)),
            wait=self._wait,
            stop=tenacity.stop_after_attempt(self.max_attempts),
            reraise=True,
        )

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        ceiling = min(self.max_backoff, self.backoff * 2 ** (state.attempt_number - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _request(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> httpx.Response:
        """Send one API call with retries; ``auth`` is ``"token"`` (default) or ``"apikey"``."""
        for attempt in self._retrying(idempotent):
            with attempt:
                return self._request_once(method, path, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    def _request_once(
        self, method: str, path: str, *, auth: str = "token", headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        for renewed in (False, True):
            token = self._token or (self._create_token() if auth == "token" else None)
            with _transport_errors(path):
                response = self.client.request(
                    method, path, headers={**self._auth_headers(auth, token), **(headers or {})}, **kwargs
                )
            if self._settled(response, path, auth, renewed):
                return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _arequest(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> httpx.Response:
        """Async twin of :meth:`_request`, same retry policy and checks."""
        async for attempt in self._retrying(idempotent, tenacity.AsyncRetrying):
            with attempt:
                return await self._arequest_once(method, path, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _arequest_once(
        self, method: str, path: str, *, auth: str = "token", headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        client = await self._aclient()
        for renewed in (False, True):
            token = self._token or (await self._acreate_token() if auth == "token" else None)
            with _transport_errors(path):
                response = await client.request(
                    method, path, headers={**self._auth_headers(auth, token), **(headers or {})}, **kwargs
                )
            if self._settled(response, path, auth, renewed):
                return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _settled(self, response: httpx.Response, path: str, auth: str, renewed: bool) -> bool:
        """True for a successful reply; False when the token was refused and is to be renewed once.

        Every other failure raises the error the reply carries (shared by the sync and async paths).
        """
        try:
            _checked(response, path, token_call=auth == "token")
        except _Unauthorized:
            if renewed:
                raise InExchangeApiError(401, "client token refused after renewal", path=path) from None
            self._token = None
            return False
        return True

    def _auth_headers(self, auth: str, token: str | None) -> dict[str, str]:
        if auth == "apikey":
            return {"APIKey": self.settings.api_key}
        return {"ClientToken": token or ""}

    # ---- client tokens ---------------------------------------------------------------------
    def _create_token(self) -> str:
        try:
            response = self._request(
                "POST", "clientTokens/create", auth="apikey", json={"erpId": self.settings.erp_id}
            )
        except InExchangeError as exc:
            _spent(exc)
            raise
        self._token = _token_from(response)
        return self._token

    async def _acreate_token(self) -> str:
        settings = await self._asettings()
        try:
            response = await self._arequest(
                "POST", "clientTokens/create", auth="apikey", json={"erpId": settings.erp_id}
            )
        except InExchangeError as exc:
            _spent(exc)
            raise
        self._token = _token_from(response)
        return self._token

    def close(self) -> None:
        """Revoke the client token (best effort) and close the connection pool."""
        if self._token is not None:
            token, self._token = self._token, None
            try:
                self._request_once("POST", "clientTokens/revoke", auth="apikey", json={"clientToken": token})
            except Exception as exc:  # a token that outlives us expires by itself
                self.log.warning("could not revoke the InExchange client token: %s", type(exc).__name__)
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        if self._token is not None:
            token, self._token = self._token, None
            try:
                await self._arequest_once("POST", "clientTokens/revoke", auth="apikey", json={"clientToken": token})
            except Exception as exc:
                self.log.warning("could not revoke the InExchange client token: %s", type(exc).__name__)
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None

    # ---- endpoints -----------------------------------------------------------------------
    def lookup_buyer(self, *, party_id: str, org_no: str | None = None, gln: str | None = None,
                     vat_no: str | None = None, name: str | None = None) -> LookupResult:
        """Look a buyer up in InExchange's party register (``buyerparties/lookup``).

        :param party_id: our own id of the party (the customer number).
        """
        body = {"PartyId": party_id, "orgNo": org_no, "gln": gln, "vatNo": vat_no, "name": name}
        response = self._request("POST", "buyerparties/lookup", json={k: v for k, v in body.items() if v})
        return LookupResult.from_json(_json(response, "buyerparties/lookup"))

    def upload_document(self, content: bytes) -> str:
        """Upload a UBL file (``POST documents``) and return its ``urn:inexchangedocument:`` URI."""
        response = self._request(
            "POST", "documents", content=content, headers={"Content-Type": "application/xml"}
        )
        location = response.headers.get("Location")
        if not location:
            raise InExchangeApiError(response.status_code, "no Location header in the upload reply", path="documents")
        return location

    def send_outbound(self, body: dict[str, Any]) -> str:
        """Send an uploaded document (``POST documents/outbound``) and return its document id.

        Not retried once the request may have reached InExchange: the caller reconciles by ERP id.
        """
        response = self._request("POST", "documents/outbound", idempotent=False, json=body)
        location = response.headers.get("Location") or ""
        document_id = location.rstrip("/").rsplit("/", 1)[-1]
        if not document_id:
            raise InExchangeApiError(response.status_code, "no Location header in the send reply", path="documents/outbound")
        return document_id

    def get_outbound(self, document_id: str) -> OutboundDocument:
        """Return one outbound document (``GET documents/outbound/{id}``)."""
        path = f"documents/outbound/{document_id}"
        return OutboundDocument.from_json(_json(self._request("GET", path), path))

    def find_by_erp_id(self, erp_id: str) -> OutboundDocument | None:
        """Return the invoice InExchange received under our ERP id, or None if it never did."""
        path = f"invoices/outbound/byerpid/{erp_id}"
        try:
            response = self._request("POST", path)
        except InExchangeApiError as exc:
            if exc.status_code == 404:
                return None
            raise
        return OutboundDocument.from_json(_json(response, path))

    def list_outbound(self, **filters: Any) -> OutboundPage:
        """Return one page of ``documents/outbound/list``; filters as in :func:`list_body`."""
        return _page(_json(self._request("POST", "documents/outbound/list", json=list_body(**filters)), "list"))

    async def alist_outbound(self, **filters: Any) -> OutboundPage:
        """Async twin of :meth:`list_outbound`."""
        response = await self._arequest("POST", "documents/outbound/list", json=list_body(**filters))
        return _page(_json(response, "list"))

    def iter_outbound(self, *, page_size: int = 100, **filters: Any) -> Iterator[OutboundDocument]:
        """Yield every document matching the filters, page by page up to ``totalCount``."""
        skip = 0
        while True:
            page = self.list_outbound(take=page_size, skip=skip, **filters)
            yield from page.documents
            skip += len(page.documents)
            if not page.documents or skip >= page.total_count:
                return

    async def aiter_outbound(self, *, page_size: int = 100, **filters: Any) -> AsyncIterator[OutboundDocument]:
        """Async twin of :meth:`iter_outbound`."""
        skip = 0
        while True:
            page = await self.alist_outbound(take=page_size, skip=skip, **filters)
            for document in page.documents:
                yield document
            skip += len(page.documents)
            if not page.documents or skip >= page.total_count:
                return


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


@contextmanager
def _transport_errors(path: str) -> Iterator[None]:
    """Turn httpx transport failures into :class:`InExchangeTransportError` (no secrets in it)."""
    try:
        yield
    except httpx.TransportError as exc:
        raise InExchangeTransportError(path, exc) from exc


def _retryable(exc: BaseException, idempotent: bool) -> bool:
    if getattr(exc, "retries_spent", False):
        return False
    if isinstance(exc, InExchangeApiError):
        return exc.status_code == 429 or (idempotent and exc.retryable)
    if isinstance(exc, InExchangeTransportError):
        return idempotent or isinstance(exc.__cause__, _NOT_SENT_ERRORS)
    return False


def _checked(response: httpx.Response, path: str, *, token_call: bool) -> httpx.Response:
    """Return a successful response, or raise the error it carries."""
    if response.status_code < 400:
        return response
    if response.status_code == 401 and token_call:
        raise _Unauthorized()
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or body.get("Message") or response.reason_phrase or "error")[:500]
    model_state = body.get("modelState") or body.get("ModelState")
    error = InExchangeApiError(
        response.status_code, message,
        model_state=model_state if isinstance(model_state, dict) else None, path=path,
    )
    retry_after = response.headers.get("Retry-After")
    error.retry_after = float(retry_after) if retry_after and retry_after.isdigit() else None  # type: ignore[attr-defined]
    raise error


def _json(response: httpx.Response, path: str) -> dict[str, Any]:
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        raise InExchangeApiError(response.status_code, "reply is not JSON", path=path) from None
    if not isinstance(body, dict):
        raise InExchangeApiError(response.status_code, "reply is not a JSON object", path=path)
    return body


def _token_from(response: httpx.Response) -> str:
    token = _json(response, "clientTokens/create").get("token")
    if not token:
        raise InExchangeApiError(response.status_code, "no token in the reply", path="clientTokens/create")
    _mask(token)
    return str(token)


def _page(body: dict[str, Any]) -> OutboundPage:
    documents = tuple(OutboundDocument.from_json(d) for d in body.get("documents") or ())
    return OutboundPage(documents=documents, total_count=int(body.get("totalCount") or 0))


def _mask(secret: str) -> None:
    """Register a secret with Airflow's log masker so it never shows in task logs."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - outside Airflow
        return
    mask_secret(secret)
