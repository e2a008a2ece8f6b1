"""The protocol of every InExchange call, apart from the I/O: retry policy, client tokens, rate limit.

A call is described by a :class:`Call` (:mod:`inexchange.hooks.endpoints` writes each endpoint's once).
One attempt at it is :func:`attempt`: a generator that decides what to send and what the reply means,
and yields what it needs from its driver: a client token (:class:`Token`), a wait (:class:`Sleep`),
or a request to perform (:class:`Send`). The hook's two drivers, synchronous and async, do only the
I/O, and repeat attempts with tenacity (:class:`RetryPolicy`, through tenacity's public
``Retrying`` / ``AsyncRetrying``).

Retries cover connect errors, timeouts, 429 and 5xx (exponential backoff with jitter,
``Retry-After`` honoured); other 4xx fail at once with InExchange's ``message`` and ``modelState``.
Calls that are not idempotent (sending a document) are retried only when the request certainly never
reached InExchange (connect errors, 429); every other failure is left to the caller, who reconciles
through ``invoices/outbound/byerpid`` before sending again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import tenacity

from inexchange.exceptions import InExchangeApiError, InExchangeError, InExchangeTransportError
from inexchange.replies import Unauthorized, checked, redacted

if TYPE_CHECKING:
    from limits import RateLimitItem
    from limits.strategies import MovingWindowRateLimiter

#: failures after which the request certainly never reached InExchange
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: what a driver's I/O raises when no usable reply came: the transports' errors, a body httpx could not
#: decode, and a 3xx whose ``Location`` httpx cannot parse (it builds the redirect it will not follow)
IO_ERRORS = (httpx.TransportError, httpx.DecodingError, httpx.InvalidURL)


@dataclass(frozen=True)
class Call:
    """One call of the API: the request, and how its reply is read.

    :param method: the HTTP method.
    :param path: the path below the API base URL.
    :param auth: ``"token"`` (a ``ClientToken`` header) or ``"apikey"`` (an ``APIKey`` header).
    :param idempotent: whether repeating the request is harmless (everything but sending a document).
    :param json: the JSON body, if any.
    :param content: the raw body, if any.
    :param headers: headers besides the authentication.
    :param read: turns the successful reply into the call's result, inside the attempt: a reply that
        cannot be read (cut off, not JSON, of another shape) fails the attempt and is retried like a
        5xx when the call is idempotent. Without it the result is the ``httpx.Response``.
    :param answers: error statuses that are an answer of the call and go to ``read`` (404 of a look-up
        by ERP id).
    """

    method: str
    path: str
    auth: str = "token"
    idempotent: bool = True
    json: Any = None
    content: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    read: Callable[[httpx.Response], Any] | None = None
    answers: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Send:
    """Perform one HTTP request; the driver sends back the ``httpx.Response`` or throws its I/O error."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    json: Any = None
    content: bytes | None = None

    @property
    def options(self) -> dict[str, Any]:
        """Keyword arguments of ``httpx.Client.request`` besides method and path."""
        return {"headers": dict(self.headers), "json": self.json, "content": self.content}


@dataclass(frozen=True)
class Sleep:
    """Wait before going on (the rate limit)."""

    seconds: float


@dataclass(frozen=True)
class Token:
    """A client token is needed; ``stale`` is the one InExchange just refused, if any."""

    stale: str | None


#: what an attempt yields to its driver (and a composite call, :class:`Call` as well), and what it is sent back
Step = Call | Send | Sleep | Token
Steps = Generator[Step, Any, Any]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a call is repeated.

    :param max_attempts: attempts per call, the first one included.
    :param backoff: base of the exponential backoff, in seconds.
    :param max_backoff: longest wait between two attempts, in seconds (a longer ``Retry-After`` too).
    """

    max_attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0

    def arguments(self, call: Call, sleep: Callable[[float], Any]) -> dict[str, Any]:
        """Keyword arguments of ``tenacity.Retrying`` / ``tenacity.AsyncRetrying`` for ``call``.

        :param sleep: the waiting function of the driver (``time.sleep`` or ``asyncio.sleep``).
        """
        return {
            "retry": tenacity.retry_if_exception(lambda exc: retryable(exc, call.idempotent)),
            "wait": self.wait,
            "stop": tenacity.stop_after_attempt(self.max_attempts),
            "sleep": sleep,
            "reraise": True,
        }

    def wait(self, state: tenacity.RetryCallState) -> float:
        """Seconds before the next attempt: the ``Retry-After`` InExchange asked for, or a jittered backoff."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, InExchangeApiError) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_backoff)
        ceiling = min(self.max_backoff, self.backoff * 2 ** (state.attempt_number - 1))
        return random.uniform(ceiling / 2, ceiling)


def retryable(exc: BaseException, idempotent: bool) -> bool:
    """Whether a failed attempt is repeated."""
    if isinstance(exc, InExchangeError) and exc.retries_spent:
        return False
    if isinstance(exc, InExchangeApiError):
        return exc.status_code == 429 or (idempotent and exc.retryable)
    if isinstance(exc, InExchangeTransportError):
        return idempotent or isinstance(exc.__cause__, _NOT_SENT_ERRORS)
    return False


class RateLimit:
    """At most ``per_second`` requests started in any one-second window (``limits``' moving window).

    ``limits`` loads here, when a hook with a rate limit is made, not when a DAG file imports the hook.
    """

    def __init__(self, per_second: int) -> None:
        from limits import RateLimitItemPerSecond
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self._limiter: MovingWindowRateLimiter = MovingWindowRateLimiter(MemoryStorage())
        self._rate: RateLimitItem = RateLimitItemPerSecond(per_second)

    def waits(self) -> Generator[Sleep, None, None]:
        """Yield waits until one more request may start, and count it."""
        while not self._limiter.hit(self._rate, "inexchange"):
            reset_time, _ = self._limiter.get_window_stats(self._rate, "inexchange")
            yield Sleep(max(reset_time - time.time(), 0.001))


def attempt(call: Call, *, api_key: str, rate_limit: RateLimit | None) -> Steps:
    """One attempt at ``call``: the token, the rate limit, the request, the reply's meaning.

    A 401 on a token call renews the token once. Returns the result of ``call.read`` (or the
    response), or raises the error the reply carries; nothing raised quotes the key or the token.
    """
    stale: str | None = None
    for renewed in (False, True):
        token = (yield Token(stale)) if call.auth == "token" else None
        if rate_limit is not None:
            yield from rate_limit.waits()
        secrets = tuple(secret for secret in (api_key, token) if secret)
        auth = ("APIKey", api_key) if call.auth == "apikey" else ("ClientToken", token or "")
        failure: InExchangeTransportError | None = None
        try:
            response = yield Send(call.method, call.path, (auth, *call.headers), call.json, call.content)
        except IO_ERRORS as exc:  # the driver's I/O failed
            failure = transport_error(call.path, exc, secrets)
        if failure is not None:
            raise failure  # outside the handler: the httpx error, with its unredacted text, is not chained
        try:
            checked(response, call.path, token_call=call.auth == "token", answers=call.answers, secrets=secrets)
        except Unauthorized:
            if renewed:
                raise InExchangeApiError(401, "client token refused after renewal", path=call.path) from None
            stale = token
            continue
        return call.read(response) if call.read is not None else response
    raise AssertionError("unreachable")  # pragma: no cover


def transport_error(path: str, exc: Exception, secrets: tuple[str, ...]) -> InExchangeTransportError:
    """Turn an httpx transport failure into :class:`InExchangeTransportError` (no secrets in it).

    Its cause is a copy of the httpx error whose text has the key and token cut out: a parser's
    error can quote the reply's bytes, and a server can echo what it was sent.
    """
    cause: Exception
    try:
        cause = type(exc)(redacted(str(exc), secrets))
    except Exception:
        cause = httpx.TransportError(redacted(str(exc), secrets))
    error = InExchangeTransportError(path, cause)
    error.__cause__ = cause
    return error


@contextmanager
def retries_spent() -> Iterator[None]:
    """Mark an error raised inside as one whose retries are spent, so that an enclosing retry loop gives up too.

    Token creation runs its own retry loop inside the attempt of the call that needs the token;
    without the mark, ``max_attempts`` failing creations would be repeated ``max_attempts`` times.
    """
    try:
        yield
    except InExchangeError as exc:
        exc.retries_spent = True
        raise


class Drive:
    """Iterate over the steps of a generator; a driver sets ``reply`` or ``error`` for each step.

    When the generator finishes, its return value is in ``result``; an error it raises propagates.
    """

    def __init__(self, steps: Steps) -> None:
        self._steps = steps
        self.reply: Any = None
        self.error: BaseException | None = None
        self.result: Any = None

    def __iter__(self) -> Iterator[Step]:
        while True:
            # the reply or error is handed over without a local name: an error the steps raise keeps this
            # frame in its traceback, and with it a reply or an I/O error's buffers, until the next attempt ends
            try:
                step = (
                    self._steps.throw(self._taken_error())
                    if self.error is not None
                    else self._steps.send(self._taken_reply())
                )
            except StopIteration as stop:
                self.result = stop.value
                return
            yield step

    def _taken_reply(self) -> Any:
        reply, self.reply = self.reply, None
        return reply

    def _taken_error(self) -> BaseException:
        error, self.error = self.error, None
        assert error is not None
        return error
