"""Two keep-alive clients with http11.Connection's interface, parsing with maintained libraries.

`H11Connection` drives h11's client state machine (it builds the request bytes too, as a real
h11 client would); `HttptoolsConnection` feeds httptools' llhttp response parser from
`data_received`, the way uvicorn feeds its request parser, and sends http11's request bytes
(httptools has no request writer). Both keep the probe client's bounds (a 64 KiB head, a 1 MiB
body) and its errors (ProtocolError, ClosedEarly), so `sandbox/runners/loadgen.py` can run with
either in place of http11.Connection, and only the client differs between measurements.

Two gaps of httptools' Python API for the probe's other use, `http11.fetch`: it cannot be told a
response answers a HEAD request (llhttp would wait for the body its Content-Length announces), and
it has no `finish`, so a body delimited by the end of the connection never completes.
For the bench only (`bench/http_clients.py`): not used by the harness.
"""

from __future__ import annotations

import asyncio

import h11
import httptools
from http11 import MAX_BODY, MAX_HEAD, ClosedEarly, ProtocolError, Response, check_loopback


class _Waiting(asyncio.Protocol):
    """The part both clients share: a transport, one pending response, and how the connection ended."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.broken = False  # ended, or in a state no further request can use

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a TCP connection always gives one
        self.transport = transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self.fail(ClosedEarly(f"connection closed before a complete answer: {exc}"))

    def fail(self, exc: Exception) -> None:
        self.broken = True
        if self.transport is not None:
            self.transport.abort()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def succeed(self, response: Response) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(response)

    async def send(self, data: bytes) -> Response:
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            self.transport.write(data)
            return await self.waiter
        finally:
            self.waiter = None


class _H11Protocol(_Waiting):
    def __init__(self, max_body: int) -> None:
        super().__init__()
        self.max_body = max_body
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self.head: h11.Response | None = None
        self.body = bytearray()

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self._drain()

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        self._drain()
        return False

    def _drain(self) -> None:
        while not self.broken:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                return self.fail(ProtocolError(str(exc)))
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Response):
                self.head, self.body = event, bytearray()
            elif isinstance(event, h11.Data):
                self.body += event.data
                if len(self.body) > self.max_body:
                    return self.fail(ProtocolError(f"response body over the {self.max_body}-byte bound"))
            elif isinstance(event, h11.EndOfMessage):
                self._complete()
            elif isinstance(event, h11.ConnectionClosed):
                return self.fail(ClosedEarly("connection closed before a complete answer"))

    def _complete(self) -> None:
        head, keep_alive = self.head, False
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
            keep_alive = True
        else:
            self.broken = True
        headers: dict[str, str] = {}
        for name, value in head.headers:
            key, text = name.decode("latin-1"), value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        self.succeed(Response(head.status_code, headers, bytes(self.body), keep_alive))

    async def request(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                      body: bytes) -> Response:
        data = self.conn.send(h11.Request(method=method, target=target, headers=headers))
        if body:
            data += self.conn.send(h11.Data(data=body))
        return await self.send(data + self.conn.send(h11.EndOfMessage()))


class _HttptoolsProtocol(_Waiting):
    def __init__(self, max_body: int) -> None:
        super().__init__()
        self.max_body = max_body
        self.parser = httptools.HttpResponseParser(self)
        self.headers: dict[str, str] = {}
        self.head_bytes = 0
        self.body = bytearray()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            cause = exc.__context__ if isinstance(exc.__context__, ProtocolError) else exc
            self.fail(ProtocolError(str(cause)))

    def eof_received(self) -> bool:
        self.fail(ClosedEarly("connection closed before a complete answer"))
        return False

    # llhttp's callbacks; an exception raised in one comes out of feed_data as HttpParserCallbackError
    def on_message_begin(self) -> None:
        self.headers, self.head_bytes, self.body = {}, 0, bytearray()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_HEAD:
            raise ProtocolError(f"response head longer than {MAX_HEAD} bytes")
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_body(self, body: bytes) -> None:
        self.body += body
        if len(self.body) > self.max_body:
            raise ProtocolError(f"response body over the {self.max_body}-byte bound")

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer: the real one follows
            return
        keep_alive = self.parser.should_keep_alive()
        self.broken = not keep_alive
        self.succeed(Response(status, self.headers, bytes(self.body), keep_alive))


def _split_request(payload: bytes) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
    """Method, target, headers and body of a request made by http11.build_request."""
    head, _, body = payload.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, target, _ = lines[0].split(b" ")
    fields = (line.partition(b":") for line in lines[1:])
    headers = [(name.strip(), value.strip()) for name, _, value in fields]
    return method, target, headers, body


class _Pooled:
    """Opening, reopening and closing, shared by both connections."""

    protocol: type[_Waiting]

    def __init__(self, host: str, port: int, *, max_body: int = MAX_BODY) -> None:
        check_loopback(host)
        self.host, self.port, self.max_body = host, port, max_body
        self._proto: _Waiting | None = None

    async def open(self) -> None:
        if self._proto is not None and self._proto.broken:
            self.close()
        if self._proto is None:
            loop = asyncio.get_running_loop()
            _, self._proto = await loop.create_connection(lambda: self.protocol(self.max_body),
                                                          self.host, self.port)

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.abort()
        self._proto = None


class H11Connection(_Pooled):
    """http11.Connection's interface over h11. `exchange` re-sends the request through h11."""

    protocol = _H11Protocol
    _requests: dict[bytes, tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]] = {}

    async def exchange(self, payload: bytes, *, head_request: bool = False) -> Response:
        await self.open()
        parts = self._requests.get(payload)
        if parts is None:  # the load generator's payloads are few and fixed: split each once
            parts = self._requests[payload] = _split_request(payload)
        response = await self._proto.request(*parts)
        if not response.keep_alive:
            self.close()
        return response


class HttptoolsConnection(_Pooled):
    """http11.Connection's interface over httptools' response parser (HEAD is not supported)."""

    protocol = _HttptoolsProtocol

    async def exchange(self, payload: bytes, *, head_request: bool = False) -> Response:
        if head_request:
            raise ValueError("httptools' parser cannot be told a response answers a HEAD request")
        await self.open()
        response = await self._proto.send(payload)
        if not response.keep_alive:
            self.close()
        return response
