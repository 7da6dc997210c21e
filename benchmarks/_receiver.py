"""The webhook receiver: a small HTTP/1.1 server on 127.0.0.1 (Trio + raw h11).

It answers every request ``200`` with an empty body and records when the request's body
had fully arrived (``time.monotonic()``, the clock the benchmark models stamp their
outputs with, shared by every process on the machine). It is raw h11 rather than an ASGI
server so that the receiver costs as little CPU as possible on a 2-core machine that also
runs the server under test and the load driver.

The path says who a request is for and how to answer: ``/hook/<key>`` records under
``key``; ``/hook/<key>/slow/<seconds>`` also waits that long before answering, to play a
slow receiver.

A server may send thousands of bodies of megabytes each, so bodies are not kept: each
arrival records its time, size, whether its status is terminal and how many outputs and
log lines it carries, read from the benchmark models' markers (``"#<i> `` ends the last
output, ``@<i> `` the last log line; see ``models/project.py``) by searching backwards for
the last one rather than parsing the JSON. Per key, only two bodies are kept: the fullest
so far and the first terminal one, from which the production times are read afterwards.
"""

from __future__ import annotations

import math
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import h11
import trio

__all__ = ["Arrival", "WebhookReceiver", "carried"]

#: Most requests served on one connection, and most h11 events read for one request:
#: loop bounds far above anything a benchmark produces.
MAX_REQUESTS_PER_CONNECTION = 1_000_000
MAX_EVENTS_PER_REQUEST = 1_000_000
MAX_BODY_BYTES = 512 * 1024 * 1024
RECEIVE_CHUNK = 256 * 1024

_STATUS = b'"status":"'
_TERMINAL = (b"succeeded", b"failed", b"canceled")
_DIGITS = re.compile(rb"\d+")


def is_terminal(body: bytes) -> bool:
    """Whether a (compact JSON) prediction body has a terminal status. Both servers put
    ``status`` near one end of the body; a quote inside a string value is escaped, so
    the first raw match is the top-level key."""
    i = body.find(_STATUS, 0, 512)
    if i < 0:
        i = body.rfind(_STATUS)
    if i < 0:
        return False
    return body.startswith(_TERMINAL, i + len(_STATUS))


def carried(body: bytes) -> tuple[int, int]:
    """(outputs, log lines) a benchmark model's prediction body carries: one more than
    the index of the last output ``"#<i> ...`` and of the last log line ``@<i> ...``."""
    return _last_index(body, b'"#') + 1, _last_index(body, b"@") + 1


def _last_index(body: bytes, marker: bytes) -> int:
    i = body.rfind(marker)
    if i < 0:
        return -1
    m = _DIGITS.match(body, i + len(marker))
    return int(m.group()) if m else -1


@dataclass(slots=True)
class Arrival:
    at: float  # time.monotonic() when the whole body had arrived
    size: int
    terminal: bool  # the body's status is terminal
    outputs: int  # outputs the body carries (benchmark models only)
    logs: int  # log lines the body carries (benchmark models only)


@dataclass
class WebhookReceiver:
    arrivals: defaultdict[str, list[Arrival]] = field(default_factory=lambda: defaultdict(list))
    #: Per key, the body carrying the most outputs and log lines so far.
    fullest: dict[str, bytes] = field(default_factory=dict)
    #: Per key, the first terminal body and when it arrived.
    terminal_body: dict[str, bytes] = field(default_factory=dict)
    terminal_at: dict[str, float] = field(default_factory=dict)
    total_requests: int = 0
    total_bytes: int = 0
    port: int = 0
    _fullest_score: dict[str, int] = field(default_factory=dict)
    _changed: trio.Event = field(default_factory=trio.Event)

    def url(self, key: str, *, delay: float = 0.0) -> str:
        suffix = f"/slow/{delay:g}" if delay > 0 else ""
        return f"http://127.0.0.1:{self.port}/hook/{key}{suffix}"

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started`` reports the port."""
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1")
            )
            self.port = listeners[0].socket.getsockname()[1]
            task_status.started(self.port)

    def clear(self) -> None:
        self.arrivals.clear()
        self.fullest.clear()
        self._fullest_score.clear()
        self.terminal_body.clear()
        self.terminal_at.clear()

    def forget(self, key: str) -> None:
        for table in (
            self.arrivals,
            self.fullest,
            self._fullest_score,
            self.terminal_body,
            self.terminal_at,
        ):
            table.pop(key, None)

    async def wait_terminal(self, key: str, deadline: float) -> bool:
        """Wait (until ``deadline``, trio time) for a terminal body for ``key``."""
        return await self.wait_until(lambda: key in self.terminal_at, deadline)

    async def wait_quiet(self, quiet: float, deadline: float) -> None:
        """Wait until no request has arrived for ``quiet`` s, or until ``deadline``: the
        stragglers a server sends after the terminal request are counted too."""
        with trio.move_on_at(deadline):
            for _ in range(10_000_000):
                with trio.move_on_after(quiet) as idle:
                    await self._changed.wait()
                if idle.cancelled_caught:
                    return

    async def wait_until(self, predicate: Callable[[], bool], deadline: float) -> bool:
        """Wait (until ``deadline``, trio time) for ``predicate()``, checked after each
        request; returns whether it became true."""
        with trio.move_on_at(deadline):
            for _ in range(10_000_000):
                if predicate():
                    return True
                await self._changed.wait()
        return bool(predicate())

    # -- one connection ----------------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                request = await self._read_request(conn, stream)
                if request is None:
                    return
                target, body = request
                self._record(target, body)
                delay = _delay_of(target)
                if delay:
                    await trio.sleep(delay)
                response = h11.Response(status_code=200, headers=[("content-length", "0")])
                await stream.send_all(conn.send(response) + conn.send(h11.EndOfMessage()))
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await stream.aclose()

    async def _read_request(
        self, conn: h11.Connection, stream: trio.SocketStream
    ) -> tuple[str, bytes] | None:
        target = ""
        chunks: list[bytes] = []
        size = 0
        for _ in range(MAX_EVENTS_PER_REQUEST):
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(RECEIVE_CHUNK))
            elif isinstance(event, h11.Request):
                target = event.target.decode("latin-1")
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
                size += len(event.data)
                if size > MAX_BODY_BYTES:
                    return None
            elif isinstance(event, h11.EndOfMessage):
                return target, b"".join(chunks)
            else:  # ConnectionClosed, or PAUSED after a protocol mix-up
                return None
        return None

    def _record(self, target: str, body: bytes) -> None:
        at = time.monotonic()
        self.total_requests += 1
        self.total_bytes += len(body)
        key = _key_of(target)
        terminal = is_terminal(body)
        outputs, logs = carried(body)
        arrivals = self.arrivals[key]
        if outputs + logs >= self._fullest_score.get(key, -1):
            self.fullest[key] = body
            self._fullest_score[key] = outputs + logs
        if terminal and key not in self.terminal_at:
            self.terminal_at[key] = at
            self.terminal_body[key] = body
        arrivals.append(Arrival(at, len(body), terminal, outputs, logs))
        self._changed.set()
        self._changed = trio.Event()


def _key_of(target: str) -> str:
    parts = target.split("?", 1)[0].strip("/").split("/")
    return parts[1] if len(parts) >= 2 and parts[0] == "hook" else target


def _delay_of(target: str) -> float:
    parts = target.split("?", 1)[0].strip("/").split("/")
    if len(parts) >= 4 and parts[2] == "slow":
        try:
            delay = float(parts[3])
        except ValueError:
            return 0.0
        return delay if math.isfinite(delay) and 0 < delay <= 60 else 0.0
    return 0.0
