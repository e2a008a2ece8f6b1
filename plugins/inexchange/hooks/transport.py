"""The clients' transports: aiohttp under the async clients, httpx's own engine with a deadline under the sync one.

httpx's own async engine (httpcore) spends about a millisecond of CPU per small request on
loopback, most of the submit task's CPU on a small worker. aiohttp's engine (C HTTP parser, one
connector per pool) does the same request for a fraction of that. :class:`AiohttpTransport` keeps
everything above the transport as it is (``httpx.AsyncClient``, its timeouts, requests, responses
and error classes) and hands the bytes to aiohttp. The client's own request layer (``httpx.Request``,
URL merging, cookies, auth and redirect hooks) costs about as much again, so the hook hands its POSTs
to :meth:`AiohttpTransport.send` from the request's parts and gets an ``httpx.Response`` back.

The error mapping decides whether a failed ``POST documents/outbound`` may be retried, so it
separates what failed before the request left (connecting, waiting for a pooled connection: the
``Connect*`` classes) from what failed after (a read timeout, a dropped connection, a broken
reply), which the hook treats as "maybe sent" and reconciles.

Both clients bound what one request may cost, whatever the server does: every request has an
overall ``deadline`` (a server that sends its headers or body a byte at a time never lets a per-read
timeout expire), and a reply is refused beyond :data:`MAX_REPLY_BYTES`, as received and as decoded
(gzip or deflate; a reply in any other content coding is refused). :class:`DeadlineTransport` is the
synchronous client's engine: httpx's own, with every socket operation bounded by the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ssl
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

if TYPE_CHECKING:  # aiohttp loads with the first request, not when a DAG file imports the hook
    import aiohttp


@lru_cache(maxsize=1)
def _errors() -> tuple[tuple[type[BaseException], type[httpx.TransportError]], ...]:
    """aiohttp's error classes, most specific first, and the httpx class each becomes."""
    import aiohttp

    return (
        (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),  # connecting or waiting for a pooled connection
        (aiohttp.ServerTimeoutError, httpx.ReadTimeout),  # the request was sent, no reply in time
        (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, DNS, TLS handshake: nothing sent
        (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),  # closed by the server after the request
        (aiohttp.ClientPayloadError, httpx.ReadError),
        (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # a reply that is not HTTP
        (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
        (aiohttp.ClientOSError, httpx.ReadError),  # reset while writing or reading: maybe sent
        (aiohttp.ClientError, httpx.TransportError),
    )


_AS_HTTPX_SENDS = ("Content-Type",)
#: the methods aiohttp sends a second time by itself when the connection drops (its IDEMPOTENT_METHODS)
_REPEATED_BY_AIOHTTP = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: the largest reply read (the API's replies are small JSON; a page of 100 documents is tens of kB)
MAX_REPLY_BYTES = 16 * 1024 * 1024
#: the content codings a reply may come in, and zlib's ``wbits`` for each; the clients ask for these only
_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
ACCEPT_ENCODING = "gzip, deflate"


def httpx_error(exc: BaseException) -> httpx.TransportError | None:
    """The httpx error an aiohttp failure stands for, or None when ``exc`` is not aiohttp's."""
    for source, target in _errors():
        if isinstance(exc, source):
            return target(f"{type(exc).__name__}: {exc}")
    return None


def _proxy_of(url: str) -> str | None:
    """:func:`proxy_for` an absolute URL."""
    parts = urllib.parse.urlsplit(url)
    return proxy_for(parts.scheme, parts.hostname or "")


@lru_cache(maxsize=64)
def proxy_for(scheme: str, host: str) -> str | None:
    """The proxy the environment (``HTTPS_PROXY``, ``NO_PROXY`` and friends) sets for a host, if any.

    Read once per host: aiohttp's own ``trust_env`` reads the environment and ``~/.netrc`` on every
    request, which costs more CPU than the request itself.
    """
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(scheme)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Send httpx requests over one aiohttp connection pool of ``max_connections``.

    The reply is read whole before it is returned (the InExchange API answers with small JSON
    bodies), so a failure while reading the body is mapped like any other; a reply larger than
    ``max_reply_bytes`` is refused as a protocol error instead of being held in memory. Proxies are taken from
    the environment (``HTTPS_PROXY``, ``NO_PROXY``...), as httpx does (see :func:`proxy_for`). The
    pool is created on the first request, inside the running event loop.

    :param max_connections: size of the connection pool.
    :param verify: the TLS context.
    :param keepalive_expiry: seconds an idle connection is kept.
    :param max_reply_bytes: the largest reply accepted, received or decoded.
    :param deadline: seconds one request may take in all, from connecting to the last byte of the
        reply (aiohttp's ``ClientTimeout.total``); a request still unfinished then fails with
        ``httpx.ReadTimeout``, as the request may have been sent. None for no deadline.

    aiohttp sends a request of an idempotent method (GET, PUT, DELETE...) a second time by itself when
    its connection drops, and offers no public switch for it. Those requests go through httpx's own
    engine instead (:meth:`_without_aiohttp`), with the same deadline and bounds, so that the hook's
    retry policy stays the only one. The pipeline's requests are all POSTs; only the hook's
    ``get_outbound`` takes the other path.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        verify: ssl.SSLContext,
        keepalive_expiry: float = 5.0,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        deadline: float | None = None,
    ) -> None:
        self._max_reply_bytes = max_reply_bytes
        self._deadline = deadline
        self._max_connections = max_connections
        self._ssl = verify
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._httpx: httpx.AsyncHTTPTransport | None = None
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}

    def _pool(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, ssl=self._ssl, keepalive_timeout=self._keepalive_expiry
            )
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method in _REPEATED_BY_AIOHTTP:
            return await self._without_aiohttp(request)
        return await self.send(
            request.method,
            str(request.url),
            request.headers.multi_items(),
            await request.aread() or None,
            request.extensions.get("timeout", {}),
        )

    def takes(self, method: str) -> bool:
        """Whether :meth:`send` may carry a request of ``method`` (one aiohttp never sends twice by itself)."""
        return method not in _REPEATED_BY_AIOHTTP

    async def send(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        timeout: dict[str, float | None],
    ) -> httpx.Response:
        """Send one request with aiohttp and return the whole reply as an ``httpx.Response``.

        The engine of :meth:`handle_async_request`, open to a caller that has the request's parts
        already and has no use for an ``httpx.Request`` (building one, with the client's URL
        merging, cookies and hooks, costs more CPU than aiohttp's whole request on loopback). The
        reply carries no ``request``. Errors are mapped as for any request (:func:`httpx_error`).

        :param method: a method :meth:`takes`.
        :param url: the absolute URL.
        :param headers: every header to send; aiohttp adds only ``Host`` and ``Content-Length``.
        :param body: the body, or None.
        :param timeout: httpx's timeout extension (``connect``, ``read``, ``write``, ``pool``).
        """
        import aiohttp

        if not self.takes(method):
            raise ValueError(f"{method} goes through httpx's engine (handle_async_request), not send")
        try:
            async with self._pool().request(
                method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                proxy=_proxy_of(url),
                skip_auto_headers=_AS_HTTPX_SENDS,  # no Content-Type where httpx sends none
                timeout=self._timeout(timeout.get("pool"), timeout.get("connect"), timeout.get("read")),
            ) as reply:
                raw = await _read_capped(reply, self._max_reply_bytes)
                kept = [(name, value) for name, value in reply.raw_headers if name.lower() != b"content-encoding"]
                content = decoded(reply.headers.getall("Content-Encoding", []), raw, self._max_reply_bytes)
        except aiohttp.ClientError as exc:
            error = httpx_error(exc)
            assert error is not None
            raise error from exc
        except TimeoutError as exc:  # aiohttp's total timeout: the request may have been sent
            raise httpx.ReadTimeout(f"no complete reply within the deadline of {self._deadline} s") from exc
        return httpx.Response(
            reply.status,
            headers=kept,
            content=content,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (reply.reason or "").encode("utf-8", "surrogateescape"),
            },
        )

    def _timeout(self, pool: float | None, connect: float | None, read: float | None) -> aiohttp.ClientTimeout:
        """aiohttp's timeouts for httpx's (one object per distinct set: a client has one)."""
        key = (pool, connect, read)
        timeout = self._timeouts.get(key)
        if timeout is None:
            import aiohttp

            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=self._deadline, connect=pool, sock_connect=connect, sock_read=read
            )
        return timeout

    async def _without_aiohttp(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through httpx's own engine, read whole within the deadline and the bounds."""
        if self._httpx is None:
            self._httpx = httpx.AsyncHTTPTransport(
                verify=self._ssl,
                trust_env=False,
                proxy=proxy_for(request.url.scheme, request.url.host),
                limits=httpx.Limits(max_connections=self._max_connections, keepalive_expiry=self._keepalive_expiry),
            )
        try:
            async with asyncio.timeout(self._deadline):
                reply = await self._httpx.handle_async_request(request)
                try:
                    raw = await _stream_capped(reply, self._max_reply_bytes)
                finally:
                    await reply.aclose()
        except TimeoutError as exc:  # the deadline: the request may have been sent
            raise httpx.ReadTimeout(f"no complete reply within the deadline of {self._deadline} s") from exc
        return httpx.Response(
            reply.status_code,
            headers=[(name, value) for name, value in reply.headers.raw if name.lower() != b"content-encoding"],
            stream=httpx.ByteStream(decoded(reply.headers.get_list("Content-Encoding"), raw, self._max_reply_bytes)),
            request=request,
            extensions=reply.extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        if self._httpx is not None:
            engine, self._httpx = self._httpx, None
            await engine.aclose()


def _refused(limit: int, announced: int | None = None) -> httpx.RemoteProtocolError:
    """The error of a reply over ``limit`` bytes (announced by its Content-Length, or found while reading)."""
    if announced is not None:
        return httpx.RemoteProtocolError(f"reply of {announced} bytes refused (at most {limit})")
    return httpx.RemoteProtocolError(f"reply longer than {limit} bytes refused")


async def _stream_capped(reply: httpx.Response, limit: int) -> bytes:
    """The whole raw body of a streamed httpx reply, or :func:`_refused` once it exceeds ``limit`` bytes."""
    announced = reply.headers.get("Content-Length", "")
    if announced.isdigit() and int(announced) > limit:
        raise _refused(limit, int(announced))
    chunks, size = [], 0
    async for chunk in reply.aiter_raw():
        size += len(chunk)
        if size > limit:
            raise _refused(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_capped(reply: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body of ``reply``, or :func:`_refused` once it exceeds ``limit`` bytes."""
    announced = reply.content_length
    if announced is not None and announced <= limit:
        return await reply.read()
    if announced is not None:
        raise _refused(limit, announced)
    chunks, size = [], 0
    async for chunk in reply.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise _refused(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def read_capped(response: httpx.Response, limit: int) -> httpx.Response:
    """Read a streamed synchronous httpx reply whole, or raise :func:`_refused` past ``limit`` bytes.

    The same bound as the async transport's, so that no reply is ever held in memory above it,
    received or decoded (see :func:`decoded`).
    """
    announced = response.headers.get("Content-Length", "")
    if announced.isdigit() and int(announced) > limit:
        raise _refused(limit, int(announced))
    if response.is_stream_consumed:  # read in full already (a transport that does not stream)
        if len(response.content) > limit:
            raise _refused(limit)
        return response
    chunks, size = [], 0
    for chunk in response.iter_raw():
        size += len(chunk)
        if size > limit:
            raise _refused(limit)
        chunks.append(chunk)
    body = decoded(response.headers.get_list("Content-Encoding"), b"".join(chunks), limit)
    headers = [(name, value) for name, value in response.headers.raw if name.lower() != b"content-encoding"]
    whole = httpx.Response(
        response.status_code, headers=headers, content=body, request=response.request, extensions=response.extensions
    )
    whole.read()
    return whole


def decoded(content_encoding: list[str], raw: bytes, limit: int) -> bytes:
    """The body of a reply decoded from its content coding, or a protocol error.

    gzip and deflate (the codings the clients ask for) are decoded at most ``limit`` bytes far, so
    a small compressed reply cannot expand beyond the reply bound in memory ("zip bomb"). A reply
    in any other coding, or in more than one, is refused: httpx would pass one it does not know
    undecoded and decode stacked ones without a bound.

    :param content_encoding: the reply's ``Content-Encoding`` header values.
    :param raw: the body as received.
    :param limit: the most bytes the decoded body may have.
    """
    codings = [c.strip().lower() for value in content_encoding for c in value.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings or not raw:
        return raw
    if len(codings) > 1 or codings[0] not in _CODINGS:
        raise httpx.RemoteProtocolError("reply in a content coding that was not asked for")
    try:
        return _inflated(raw, _CODINGS[codings[0]], limit)
    except zlib.error:
        if codings[0] != "deflate":
            raise httpx.RemoteProtocolError(f"reply body is not valid {codings[0]}") from None
    try:  # "deflate" sent without its zlib header, as some servers do (httpx accepts it too)
        return _inflated(raw, -zlib.MAX_WBITS, limit)
    except zlib.error:
        raise httpx.RemoteProtocolError("reply body is not valid deflate") from None


def _inflated(raw: bytes, wbits: int, limit: int) -> bytes:
    """Decompress ``raw``, refusing (:func:`_refused`) once the output exceeds ``limit`` bytes.

    A step makes at most 1 MiB, so that a refused reply costs the bound and a step, not twice the bound.
    """
    inflater = zlib.decompressobj(wbits)
    parts, size, pending = [], 0, raw
    while True:
        part = inflater.decompress(pending, min(limit + 1 - size, 1 << 20))
        size += len(part)
        if size > limit:
            raise _refused(limit)
        parts.append(part)
        pending = inflater.unconsumed_tail
        if not part and not pending:
            return b"".join(parts)


#: when the request being performed on this thread must be over (``time.monotonic()``), if bounded
_ENDS_AT: contextvars.ContextVar[float | None] = contextvars.ContextVar("inexchange_request_ends_at", default=None)


_DEADLINE_PASSED = "no complete reply within the request's deadline"


def _bounded(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    """``timeout`` shortened to the time left before the current request's deadline, or ``expired`` raised."""
    ends_at = _ENDS_AT.get()
    if ends_at is None:
        return timeout
    left = ends_at - time.monotonic()
    if left <= 0:
        raise expired(_DEADLINE_PASSED)
    return left if timeout is None else min(timeout, left)


@contextlib.contextmanager
def _named_after_the_deadline() -> Iterator[None]:
    """Say so when a socket operation timed out because the deadline shortened it."""
    try:
        yield
    except httpcore.TimeoutException as exc:
        ends_at = _ENDS_AT.get()
        if ends_at is None or time.monotonic() < ends_at:
            raise
        raise type(exc)(_DEADLINE_PASSED) from exc


class _BoundedStream(httpcore.NetworkStream):
    """A socket stream whose reads and writes wait no longer than the current request's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _named_after_the_deadline():
            return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        with _named_after_the_deadline():
            self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _BoundedStream(
            self._stream.start_tls(ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout))
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, connecting no longer than the current request's deadline."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        return _BoundedStream(
            self._backend.connect_tcp(
                host, port, _bounded(timeout, httpcore.ConnectTimeout), local_address, socket_options
            )
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        return _BoundedStream(
            self._backend.connect_unix_socket(path, _bounded(timeout, httpcore.ConnectTimeout), socket_options)
        )

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


#: httpcore's errors, most specific first, and the httpx class each becomes (as httpx's own transport maps them)
_HTTPCORE_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    """Raise httpcore's errors as httpx's classes, as httpx's own transport does."""
    try:
        yield
    except Exception as exc:
        for source, target in _HTTPCORE_ERRORS:
            if isinstance(exc, source):
                raise target(str(exc), request=request) from exc
        raise


def _httpcore_proxy(url: str | None) -> httpcore.Proxy | None:
    """httpcore's proxy for a proxy URL (its user and password, if any, become Proxy-Authorization)."""
    if url is None:
        return None
    proxy = httpx.Proxy(url)
    return httpcore.Proxy(
        url=httpcore.URL(
            scheme=proxy.url.raw_scheme, host=proxy.url.raw_host, port=proxy.url.port, target=proxy.url.raw_path
        ),
        auth=proxy.raw_auth,
        headers=proxy.headers.raw,
    )


class DeadlineTransport(httpx.BaseTransport):
    """The synchronous client's engine: httpcore's connection pool, with an overall deadline on each request.

    httpx's timeouts bound each socket operation: a server that sends a byte every half second,
    in its headers or its body, keeps a request going for as long as it likes. Here every socket
    operation of a request (connecting, the TLS handshake, writing, each read of the headers and of
    the body) waits at most until ``deadline`` seconds after the request started, then fails with
    httpx's own timeout class: ``ConnectTimeout`` while connecting (nothing was sent), ``WriteTimeout``
    or ``ReadTimeout`` after that (maybe sent). The pool opens its connections through
    :class:`_BoundedBackend`, handed to it as httpcore's ``network_backend``; requests, replies and
    errors are httpx's, as with ``httpx.HTTPTransport``.

    :param deadline: seconds one request may take in all, reading its reply included.
    :param verify: the TLS context.
    :param proxy: the proxy URL, if any (see :func:`proxy_for`).
    :param max_connections: size of the connection pool.
    :param keepalive_expiry: seconds an idle connection is kept.
    """

    def __init__(
        self,
        *,
        deadline: float,
        verify: ssl.SSLContext,
        proxy: str | None = None,
        max_connections: int = 10,
        keepalive_expiry: float = 5.0,
    ) -> None:
        self._deadline = deadline
        self._pool = httpcore.ConnectionPool(
            ssl_context=verify,
            proxy=_httpcore_proxy(proxy),
            max_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
            network_backend=_BoundedBackend(httpcore.SyncBackend()),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        ends_at = time.monotonic() + self._deadline
        token = _ENDS_AT.set(ends_at)
        try:
            with _as_httpx_errors(request):
                reply = self._pool.handle_request(
                    httpcore.Request(
                        method=request.method,
                        url=httpcore.URL(
                            scheme=request.url.raw_scheme,
                            host=request.url.raw_host,
                            port=request.url.port,
                            target=request.url.raw_path,
                        ),
                        headers=request.headers.raw,
                        content=request.stream,
                        extensions=request.extensions,
                    )
                )
        finally:
            _ENDS_AT.reset(token)
        return httpx.Response(
            status_code=reply.status,
            headers=reply.headers,
            stream=_BoundedBody(reply.stream, ends_at, request),
            extensions=reply.extensions,
        )

    def close(self) -> None:
        self._pool.close()


class _BoundedBody(httpx.SyncByteStream):
    """A reply body whose reads wait no longer than its request's deadline, failing with httpx's errors."""

    def __init__(self, stream: Any, ends_at: float, request: httpx.Request) -> None:
        self._stream = stream
        self._ends_at = ends_at
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._stream)
        while True:
            token = _ENDS_AT.set(self._ends_at)
            try:
                with _as_httpx_errors(self._request):
                    chunk = next(chunks, None)
            finally:
                _ENDS_AT.reset(token)
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        self._stream.close()
