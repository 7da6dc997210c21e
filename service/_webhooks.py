"""Webhooks: one sender task per prediction, a trailing 500 ms throttle, ordered delivery.

:meth:`WebhookSender.run` is the webhook task of one prediction, the sibling of its model
task. Its whole life, in order:

1. ``start`` goes out at once: always the first request.
2. Then it sleeps on the prediction's :class:`~service._prediction.ChangeSignal`. When an
   event it reports (``output``, ``logs``) has changed and ``webhook_interval`` has passed
   since the last request started, the latest snapshot goes out now. Otherwise it holds a
   Trio deadline at last-request + interval and sends the latest snapshot then. While it
   holds that deadline (or waits for a request) it does not read the change signal, so
   further changes cost the model a flag check; they all ride in the one pending request.
3. When the model is done the signal's channel ends, and ``completed`` goes out at once,
   superseding any pending throttled request, retried until it is accepted or
   ``webhook_retry_budget`` is spent.

Requests of one prediction go one at a time from this one task, so they arrive in order and
no body is older than the one before it. A slow receiver makes the task send less often
(every request carries the latest state), never queue. The model never waits for any of it.
"""

from __future__ import annotations

import base64
import email.utils
import enum
import hashlib
import hmac
import logging
import math
import random
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any

import httpx
import trio

from ._config import Config
from ._prediction import ChangeSignal, Prediction
from ._schema import to_json

__all__ = ["WebhookSender", "sign", "snapshot_json"]

log = logging.getLogger("service.webhooks")

#: Answers to the terminal request that are worth another attempt (besides 5xx).
RETRYABLE_STATUS = frozenset({408, 429})
#: Transport failures worth another attempt: the receiver may be back soon.
RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

#: How much of an answer's body is read (so the connection can be kept), and how long for.
ANSWER_BODY_LIMIT = 64 * 1024
ANSWER_BODY_WAIT = 1.0

Trace = Callable[[str, dict[str, Any]], Awaitable[None]]


def snapshot_json(snapshot: dict[str, Any]) -> bytes:
    """Serialise a prediction; see :func:`to_json` (NaN, lone surrogates, odd objects)."""
    return to_json(snapshot)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``webhook-signature`` header value for one request."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _retry_after(response: httpx.Response, now: float) -> float | None:
    """Seconds the receiver asked us to wait (``Retry-After``: seconds or an HTTP-date)."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # "Jan 2147483648": overflow
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


#: A trace event of our own: the request got one of the sender's connection slots.
_SLOT_TAKEN = "service.slot_taken"


class _Wire(enum.Enum):
    """How far one request got, as the transport's ``trace`` extension reports it."""

    QUEUED = "queued"  # waiting for one of the ``webhook_max_connections`` slots
    UNKNOWN = "unknown"  # waiting for a pooled connection, or a transport that does not trace
    CONNECTING = "connecting"  # TCP/TLS handshake: the receiver has seen none of the request
    SENT = "sent"  # the request's first byte may be out: it must be allowed to finish


class WebhookSender:
    """Sends the webhooks of every prediction of one app through one shared client."""

    def __init__(self, client: httpx.AsyncClient, config: Config, version: str) -> None:
        self.client = client
        self.config = config
        self.user_agent = f"service/{version}"
        #: One attempt may take at most this long in all, however slowly the receiver
        #: trickles its answer (the client's timeout only bounds each single read/write).
        self.attempt_deadline = 3 * config.webhook_timeout
        #: The clock of ``webhook-timestamp`` and of ``Retry-After`` dates (tests replace it).
        self.wall_clock: Callable[[], float] = time.time
        #: Terminal requests given up after the retry budget or a final answer.
        self.terminal_failures = 0
        #: At most this many requests are handed to the client at once; the rest wait
        #: here, in FIFO order. httpcore's pool does work proportional to its waiting
        #: requests for every request: 10,000 predictions queued there took minutes.
        self._slots = trio.CapacityLimiter(config.webhook_max_connections)
        self._running = 0
        self._idle = trio.Event()
        self._idle.set()

    async def wait_idle(self) -> None:
        """Wait until no webhook task runs: every terminal request is delivered or given up."""
        await self._idle.wait()

    async def run(self, p: Prediction) -> None:
        """The webhook task of prediction ``p``; returns once ``completed`` is settled.

        It never raises (except ``Cancelled``): a bug here must not take the prediction or
        the service down with it.
        """
        if self._running == 0:
            self._idle = trio.Event()
        self._running += 1
        try:
            await self._run(p)
        except Exception:
            log.exception("webhook task of prediction %s failed", p.id)
        finally:
            self._running -= 1
            if self._running == 0:
                self._idle.set()

    async def _run(self, p: Prediction) -> None:
        assert p.signal is not None and p.webhook is not None
        signal, url, events = p.signal, p.webhook, p.webhook_events_filter
        interval = self.config.webhook_interval
        watch_output, watch_logs = "output" in events, "logs" in events
        sent_output = sent_logs = 0
        last_request = -math.inf
        failures = 0

        def changed() -> bool:
            return (watch_output and p.output_version != sent_output) or (
                watch_logs and p.logs_version != sent_logs
            )

        def take_snapshot() -> bytes:
            nonlocal sent_output, sent_logs, last_request
            sent_output, sent_logs = p.output_version, p.logs_version
            last_request = trio.current_time()
            return snapshot_json(p.snapshot())

        with signal.receive:
            if "start" in events:
                failures += not await self._send_once(url, take_snapshot(), p.id, failures)
            while not signal.finished:
                if not changed():
                    await signal.wait()  # a change, or the model is done
                    continue
                window_opens = last_request + interval
                if trio.current_time() < window_opens:
                    # Trailing edge: hold one deadline; a finished model cuts it short.
                    with trio.move_on_at(window_opens):
                        await signal.wait_finished()
                    continue
                body = take_snapshot()
                failures += not await self._send_progress(signal, url, body, p.id, failures)
        if "completed" in events:
            await self._deliver_terminal(url, snapshot_json(p.snapshot()), p.id)

    # -- delivery --------------------------------------------------------------------

    def _headers(self, msg_id: str, body: bytes) -> dict[str, str]:
        headers = {"content-type": "application/json", "user-agent": self.user_agent}
        if self.config.webhook_auth_token:
            headers["authorization"] = f"Bearer {self.config.webhook_auth_token}"
        if self.config.webhook_secret:
            timestamp = int(self.wall_clock())  # fresh for every attempt, as is the signature
            headers["webhook-id"] = msg_id
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = sign(self.config.webhook_secret, msg_id, timestamp, body)
        return headers

    async def _post(
        self, url: str, msg_id: str, body: bytes, trace: Trace | None = None
    ) -> httpx.Response:
        """One attempt, bounded by :attr:`attempt_deadline` (raises ``httpx.TimeoutException``).

        The status line is the receiver's answer. Its body is read only so that the
        connection can be used again, and only up to :data:`ANSWER_BODY_LIMIT` bytes and
        :data:`ANSWER_BODY_WAIT` seconds: a receiver whose body is endless, huge or
        trickling cannot fill memory, nor turn a delivered request into a timeout (and a
        retry). If the body is cut short, the connection is simply not reused.
        """
        extensions = {} if trace is None else {"trace": trace}
        async with self._slots:
            if trace is not None:
                await trace(_SLOT_TAKEN, {})
            with trio.move_on_after(self.attempt_deadline):
                async with self.client.stream(
                    "POST",
                    url,
                    content=body,
                    headers=self._headers(msg_id, body),
                    extensions=extensions,
                ) as response:
                    await _skim(response)
                    return response
        raise httpx.TimeoutException(f"no answer within {self.attempt_deadline:g} s")

    async def _send_once(
        self, url: str, body: bytes, prediction_id: str, failures: int, trace: Trace | None = None
    ) -> bool:
        """A non-terminal request: one attempt; the next snapshot supersedes a lost one.

        Returns whether the receiver accepted it. The first failure of a prediction is
        logged as a warning, later ones only at debug level (a receiver that is down would
        otherwise log twice a second).
        """
        try:
            response = await self._post(url, _new_msg_id(), body, trace)
        except Exception as exc:
            reason = self._describe(exc)
            if not isinstance(exc, httpx.HTTPError):
                log.debug("webhook for %s: %s", prediction_id, self._traceback())
        else:
            if response.is_success:
                return True
            reason = f"HTTP {response.status_code}"
        level = logging.DEBUG if failures else logging.WARNING
        log.log(
            level,
            "webhook for %s failed (%s); the next update supersedes it",
            prediction_id,
            reason,
        )
        return False

    async def _send_progress(
        self, signal: ChangeSignal, url: str, body: bytes, prediction_id: str, failures: int
    ) -> bool:
        """An ``output``/``logs`` request that gives way to ``completed`` when it safely can.

        If the model finishes while this request is still queued or connecting (the
        receiver has seen none of it), it is abandoned: ``completed`` carries everything it
        would have, and need not wait for a slot or a connect timeout. Once its first byte
        may be on the wire it is awaited: cancelling it then could let the receiver handle
        it after ``completed``.
        Where the transport does not say how far the request got, it is awaited too.
        """
        wire = _Wire.QUEUED

        async def trace(event: str, info: dict[str, Any]) -> None:
            nonlocal wire
            if event == _SLOT_TAKEN:
                wire = _Wire.UNKNOWN
            elif event.startswith("connection.") and wire is _Wire.UNKNOWN:
                wire = _Wire.CONNECTING
            elif event.endswith(".send_request_headers.started"):
                # Abandoned just now? Then stop here, before a single byte is written.
                await trio.lowlevel.checkpoint_if_cancelled()
                wire = _Wire.SENT

        accepted = False
        async with trio.open_nursery() as nursery:

            async def abandon_if_unsent() -> None:
                await signal.wait_finished()
                if wire in (_Wire.QUEUED, _Wire.CONNECTING):
                    log.debug("webhook for %s abandoned before sending", prediction_id)
                    nursery.cancel_scope.cancel()

            nursery.start_soon(abandon_if_unsent)
            accepted = await self._send_once(url, body, prediction_id, failures, trace)
            nursery.cancel_scope.cancel()
        return accepted

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with "equal jitter": a random delay in [b/2, b] with b doubling
        each attempt, so predictions that failed together spread out, yet every gap is at
        least half the nominal one. ``Retry-After`` is a floor, never cut short."""
        nominal = min(
            self.config.webhook_backoff_max,
            self.config.webhook_backoff_initial * 2.0 ** min(attempt - 1, 60),
        )
        delay = nominal / 2 + random.uniform(0, nominal / 2)
        return delay if retry_after is None else max(delay, retry_after)

    async def _deliver_terminal(self, url: str, body: bytes, prediction_id: str) -> bool:
        """The ``completed`` request: retried on connection errors, timeouts, 408, 429 and
        5xx, with backoff, until ``webhook_retry_budget`` is spent; the budget bounds the
        whole delivery, attempts included. Other answers (2xx, 3xx, other 4xx) are final.
        """
        msg_id = _new_msg_id()  # the same for every attempt of this request
        give_up_at = trio.current_time() + self.config.webhook_retry_budget
        attempt = 0
        reason = "no attempt finished"
        with trio.move_on_at(give_up_at) as budget:
            while True:
                attempt += 1
                retry_after: float | None = None
                try:
                    response = await self._post(url, msg_id, body)
                except RETRYABLE_ERRORS as exc:
                    reason = self._describe(exc)
                except Exception as exc:
                    reason = f"{self._describe(exc)}; not retried"
                    log.debug("terminal webhook for %s: %s", prediction_id, self._traceback())
                    break
                else:
                    status = response.status_code
                    if response.is_success:
                        return True
                    reason = f"HTTP {status}"
                    if status not in RETRYABLE_STATUS and status < 500:
                        reason += "; not retried"
                        break
                    retry_after = _retry_after(response, self.wall_clock())
                delay = self._retry_delay(attempt, retry_after)
                if trio.current_time() + delay >= give_up_at:
                    reason += f"; next attempt ({delay:.1f} s away) is past the retry budget"
                    break
                log.info(
                    "terminal webhook for %s: %s; attempt %d in %.2f s",
                    prediction_id,
                    reason,
                    attempt + 1,
                    delay,
                )
                await trio.sleep(delay)
        if budget.cancelled_caught:
            reason = f"retry budget spent during attempt {attempt} (before it: {reason})"
        self.terminal_failures += 1
        log.warning(
            "terminal webhook for %s given up after %d attempt(s): %s",
            prediction_id,
            attempt,
            reason,
        )
        return False

    # -- what failures log ----------------------------------------------------------

    def _redact(self, text: str) -> str:
        """``text`` without the token or the signing key: an exception message may quote
        a request's headers (the HTTP library does, for a header it rejects)."""
        for secret in (self.config.webhook_auth_token, self.config.webhook_secret):
            if secret:
                text = text.replace(secret, "[redacted]")
        if self.config.webhook_secret:
            text = text.replace(self.config.webhook_secret.removeprefix("whsec_"), "[redacted]")
        return text

    def _describe(self, exc: Exception) -> str:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return self._redact(text)

    def _traceback(self) -> str:
        return self._redact(traceback.format_exc())


async def _skim(response: httpx.Response) -> None:
    """Read (and drop) the answer's body, within the limits; see :meth:`WebhookSender._post`."""
    if response.is_stream_consumed:  # already read: a transport that answered in full
        return
    received = 0
    with trio.move_on_after(ANSWER_BODY_WAIT):
        try:
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received > ANSWER_BODY_LIMIT:
                    break
        except httpx.HTTPError:
            pass  # the answer is in; the connection is closed, not reused


def _new_msg_id() -> str:
    return f"msg_{uuid.uuid4().hex}"
