"""Helpers of the reliability tests: a webhook receiver on raw sockets that misbehaves on
purpose, and a transport wrapper that counts what the service has in flight.

:class:`FaultyReceiver` is a tiny HTTP/1.1 server on 127.0.0.1 written on bare trio
sockets, so that it can do what a well-behaved server library would not: refuse the
connection (a bound socket that does not listen yet), hang without answering, close or
reset the connection before or in the middle of its answer. Its ``plan`` decides, per
request, what to do; the tests switch it between a fault and a healthy answer.
"""

from __future__ import annotations

import json
import socket
import struct
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

TERMINAL = frozenset({"succeeded", "failed", "canceled"})


@dataclass(frozen=True)
class Reply:
    """A complete answer, after ``delay`` seconds."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    body: bytes = b""


#: Read the request, then never answer (until the client gives up and closes).
HANG = "hang"
#: Close the connection without a byte of answer.
CLOSE = "close"
#: Reset the connection (RST) without a byte of answer.
RESET = "reset"
#: Send half a status line and headers ("HTTP/1.1 200 OK" included), then close.
CUT_HEAD = "cut-head"
#: Send a 200 status line and headers announcing 100 bytes, 10 of them, then close.
CUT_BODY = "cut-body"

#: Answer 200 with a chunked body that never ends, as fast as the client reads it.
ENDLESS = "endless"
#: Answer 200, then trickle the body a byte every 0.1 s, never finishing it.
TRICKLE = "trickle"

Answer = Reply | str
OK = Reply(200)


@dataclass
class Hit:
    """One request the receiver read in full."""

    at: float  # trio.current_time() when it was read
    nth: int  # how many earlier requests carried the same prediction id
    path: str
    headers: dict[str, str]
    body: bytes
    answer: Answer = OK

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def terminal(self) -> bool:
        return self.json["status"] in TERMINAL


@dataclass
class FaultyReceiver:
    """A webhook receiver whose every answer ``plan(hit)`` chooses (default: 200).

    ``hits`` are all requests read; ``accepted`` those answered 2xx in full (what a real
    receiver would have processed). A receiver made with ``listening=False`` refuses
    connections until :meth:`listen` is called."""

    plan: Callable[[Hit], Answer] = lambda hit: OK
    hits: list[Hit] = field(default_factory=list)
    accepted: list[Hit] = field(default_factory=list)
    holding: int = 0  # requests read and not answered yet
    sent_bytes: int = 0  # of endless and trickling bodies
    connections: int = 0  # accepted so far
    url: str = ""
    _hangs: set[trio.CancelScope] = field(default_factory=set)
    _sock: trio.socket.SocketType | None = None
    _listening: trio.Event = field(default_factory=trio.Event)
    _changed: trio.Event = field(default_factory=trio.Event)
    _per_id: Counter[str] = field(default_factory=Counter)

    async def run(
        self,
        listening: bool = True,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await sock.bind(("127.0.0.1", 0))
        self._sock = sock
        host, port = sock.getsockname()
        self.url = f"http://{host}:{port}/hook"
        if listening:
            self.listen()
        task_status.started()
        # A bound socket that does not listen answers a connect with RST: "refused".
        await self._listening.wait()
        sock.listen(128)
        await trio.serve_listeners(self._connection, [trio.SocketListener(sock)])

    def listen(self) -> None:
        self._listening.set()

    def release(self) -> None:
        """End every hanging request now (by closing its connection)."""
        for scope in self._hangs:
            scope.cancel()

    @property
    def terminal_accepted(self) -> list[Hit]:
        return [h for h in self.accepted if h.terminal]

    async def wait_for(self, predicate: Callable[[FaultyReceiver], bool], timeout: float) -> None:
        with trio.fail_after(timeout):
            while not predicate(self):
                await self._changed.wait()

    def _note_change(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        buffer = b""
        async with stream:
            while True:
                request, buffer = await _read_request(stream, buffer)
                if request is None:
                    return
                path, headers, body = request
                pid = str(json.loads(body).get("id")) if body else ""
                hit = Hit(trio.current_time(), self._per_id[pid], path, headers, body)
                self._per_id[pid] += 1
                hit.answer = self.plan(hit)
                self.hits.append(hit)
                self.holding += 1
                self._note_change()
                try:
                    keep_open = await self._answer(stream, hit)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    keep_open = False
                finally:
                    self.holding -= 1
                    self._note_change()
                if not keep_open:
                    return

    async def _answer(self, stream: trio.SocketStream, hit: Hit) -> bool:
        answer = hit.answer
        if isinstance(answer, Reply):
            await trio.sleep(answer.delay)
            head = [f"HTTP/1.1 {answer.status} Whatever", f"Content-Length: {len(answer.body)}"]
            head += [f"{name}: {value}" for name, value in answer.headers]
            await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode() + answer.body)
            if 200 <= answer.status < 300:
                self.accepted.append(hit)
            return True
        if answer == HANG:
            with trio.CancelScope() as scope:
                self._hangs.add(scope)
                try:
                    while await _receive(stream):  # until the client closes, or release()
                        pass
                finally:
                    self._hangs.discard(scope)
        elif answer == RESET:
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif answer in (ENDLESS, TRICKLE):
            await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536) if answer == ENDLESS else b"1\r\nx\r\n"
            with trio.CancelScope() as scope:
                self._hangs.add(scope)
                try:
                    while True:  # until the client closes, or release()
                        await stream.send_all(chunk)
                        self.sent_bytes += len(chunk)
                        if answer == TRICKLE:
                            await trio.sleep(0.1)
                finally:
                    self._hangs.discard(scope)
        elif answer == CUT_HEAD:
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Len")
        elif answer == CUT_BODY:
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        return False


async def _read_request(
    stream: trio.SocketStream, buffer: bytes
) -> tuple[tuple[str, dict[str, str], bytes] | None, bytes]:
    while b"\r\n\r\n" not in buffer:
        data = await _receive(stream)
        if not data:
            return None, b""
        buffer += data
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(buffer) < length:
        data = await _receive(stream)
        if not data:
            return None, b""
        buffer += data
    return (path, headers, buffer[:length]), buffer[length:]


async def _receive(stream: trio.SocketStream) -> bytes:
    try:
        return await stream.receive_some(65536)
    except trio.BrokenResourceError:
        return b""


class InFlight(httpx.AsyncBaseTransport):
    """The real HTTP transport, counting per prediction the requests the service has in
    flight (from the first byte out to the answer's body closed) and the attempts that
    failed below HTTP (refused, reset, timed out...)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.now: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.attempts = 0
        self.errors: list[str] = []
        #: Attempts at a terminal request that failed below HTTP.
        self.terminal_errors = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        pid = str(body["id"])
        self.attempts += 1
        self.now[pid] += 1
        self.most[pid] = max(self.most[pid], self.now[pid])
        done = False

        def finish() -> None:
            nonlocal done
            if not done:
                done = True
                self.now[pid] -= 1

        try:
            response = await self.inner.handle_async_request(request)
        except BaseException as exc:
            finish()
            if isinstance(exc, Exception):
                self.errors.append(type(exc).__name__)
                self.terminal_errors += body["status"] in TERMINAL
            raise
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Closing(response.stream, finish, self.errors),  # type: ignore[arg-type]
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Closing(httpx.AsyncByteStream):
    def __init__(self, inner: Any, on_close: Callable[[], None], errors: list[str]) -> None:
        self.inner, self.on_close, self.errors = inner, on_close, errors

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.inner:
                yield chunk
        except Exception as exc:
            self.errors.append(type(exc).__name__)
            raise

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            self.on_close()
