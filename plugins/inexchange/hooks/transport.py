"""An httpx async transport that sends over aiohttp, with httpx's error classes mapped precisely.

httpx's own async engine (httpcore) spends about a millisecond of CPU per small request on
loopback, most of the submit task's CPU on a small worker. aiohttp's engine (C HTTP parser, one
connector per pool) does the same request for a fraction of that. :class:`AiohttpTransport` keeps
everything above the transport as it is (``httpx.AsyncClient``, its timeouts, requests, responses
and error classes) and hands the bytes to aiohttp.

The error mapping decides whether a failed ``POST documents/outbound`` may be retried, so it
separates what failed before the request left (connecting, waiting for a pooled connection: the
``Connect*`` classes) from what failed after (a read timeout, a dropped connection, a broken
reply), which the hook treats as "maybe sent" and reconciles.
"""

from __future__ import annotations

import ssl
import urllib.request
from functools import lru_cache
from typing import TYPE_CHECKING

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
#: the largest reply read (the API's replies are small JSON; a page of 100 documents is tens of kB)
MAX_REPLY_BYTES = 16 * 1024 * 1024


def httpx_error(exc: BaseException) -> httpx.TransportError | None:
    """The httpx error an aiohttp failure stands for, or None when ``exc`` is not aiohttp's."""
    for source, target in _errors():
        if isinstance(exc, source):
            return target(f"{type(exc).__name__}: {exc}")
    return None


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
    """

    def __init__(self, *, max_connections: int, verify: ssl.SSLContext, keepalive_expiry: float = 5.0,
                 max_reply_bytes: int = MAX_REPLY_BYTES) -> None:
        self._max_reply_bytes = max_reply_bytes
        self._max_connections = max_connections
        self._ssl = verify
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _pool(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl,
                                             keepalive_timeout=self._keepalive_expiry)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import aiohttp

        timeout = request.extensions.get("timeout", {})
        try:
            async with self._pool().request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=await request.aread() or None,
                allow_redirects=False,
                proxy=proxy_for(request.url.scheme, request.url.host),
                skip_auto_headers=_AS_HTTPX_SENDS,  # no Content-Type where httpx sends none
                timeout=aiohttp.ClientTimeout(total=None, connect=timeout.get("pool"),
                                              sock_connect=timeout.get("connect"), sock_read=timeout.get("read")),
            ) as reply:
                body = await _read_capped(reply, self._max_reply_bytes)
        except aiohttp.ClientError as exc:
            error = httpx_error(exc)
            assert error is not None
            raise error from exc
        return httpx.Response(
            reply.status,
            headers=reply.raw_headers,
            stream=httpx.ByteStream(body),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (reply.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def _refused(limit: int, announced: int | None = None) -> httpx.RemoteProtocolError:
    """The error of a reply over ``limit`` bytes (announced by its Content-Length, or found while reading)."""
    if announced is not None:
        return httpx.RemoteProtocolError(f"reply of {announced} bytes refused (at most {limit})")
    return httpx.RemoteProtocolError(f"reply longer than {limit} bytes refused")


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

    The same bound as the async transport's, so that no reply is ever held in memory above it.
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
    # a new response over the raw bytes: httpx decodes any Content-Encoding when it is read
    whole = httpx.Response(response.status_code, headers=response.headers, content=b"".join(chunks),
                           request=response.request, extensions=response.extensions)
    whole.read()
    return whole
