"""A small, bounded HTTP/1.1 client for talking to an untrusted server on loopback.

Shared by the load generator (persistent keep-alive connections) and the endpoint probe (one
request per connection, `fetch`). Every read is bounded: a response head of at most 64 KiB, a body
of at most `max_body` bytes (1 MiB by default), whatever the server claims or streams. Responses
are parsed from a buffer that keeps every byte received, so an answer sent just before the server
resets the connection (a 413 to an upload it did not read, say) is still seen. Only loopback IP
addresses are accepted: nothing here sends traffic anywhere else.

Why not a maintained parser (issue 12; `python bench/http_clients.py`, which runs the load
generator with this client, with one on h11 0.16 and with one on httptools 0.9, same bounds, 32
connections, against a loopback stub; three runs on 2026-12-01, 2 cores shared with other work
using 0.45 to 0.9 of a core). h11 costs more: 252-300 us of client CPU per request at 1600 req/s
against 166-173 us here, +86 to +132 us, which at the capacity search's top step (1600 req/s) is
14-21% of the probe's one core, and it raised the measured p50 by 0.12-0.29 ms in the two least
disturbed runs (parsing alone: 38-58 us per response against 7-8 us). httptools (llhttp, in C) is
level with this client within the noise (161-180 us per request, -8 to +11 us; p50 -0.03 to +0.08
ms; parsing alone 3-8 us), so measurement accuracy is no reason to prefer this client to it. This
one is kept because httptools would be a compiled package in the sandbox image (the probe runs on
the standard library and hdrhistogram), and its Python API can neither mark a response as the
answer to a HEAD request nor end a body at the end of the connection, which `fetch` needs and
which would stay hand-written beside it.

Exceptions: `ProtocolError` (a ValueError: not HTTP/1.x, or over a bound), `ClosedEarly` (an
EOFError: the connection ended before a complete response), OSError from connecting, and, from
`fetch` only, `FetchError` carrying a one-line description of any of these or of a timeout.
Runs inside the sandbox: standard library only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from dataclasses import dataclass

MAX_HEAD = 64 << 10
MAX_BODY = 1 << 20
_MAX_INTERIM = 8  # 1xx answers skipped before the real one
_MAX_CHUNK_LINE = 1024
# ASCII digits only: str.isdigit() also accepts "²" or "٣", which int() then refuses
_STATUS_LINE = re.compile(r"(HTTP/1\.[01]) ([0-9]{3})(?: [\t -~\x80-\xff]*)?")
_DECIMAL = re.compile(r"[0-9]{1,18}")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")


class ProtocolError(ValueError):
    """The server's bytes are not a valid HTTP/1.x response, or break a size bound."""


class ClosedEarly(EOFError):
    """The connection ended before a complete response arrived."""


class FetchError(Exception):
    """A request that got no usable response; `str()` is a one-line description for a report."""

    def __init__(self, problem: str, *, timed_out: bool = False) -> None:
        super().__init__(problem)
        self.timed_out = timed_out


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes
    keep_alive: bool


def check_loopback(host: str) -> None:
    """Raises ValueError unless `host` is a loopback IP literal (127.0.0.0/8 or ::1)."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"only loopback IP addresses are allowed as targets, not {host!r}")


def build_request(host: str, port: int, method: str, path: str, body: bytes = b"", *,
                  content_type: str | None = "application/json", close: bool = False) -> bytes:
    """The bytes of one request. Raises ValueError for a path or header that would break framing."""
    if not path.startswith("/") or any(c in path for c in " \r\n"):
        raise ValueError(f"bad request path {path!r}")
    if not method.isalpha() or (content_type and any(c in content_type for c in "\r\n")):
        raise ValueError("bad method or content type")
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    head = f"{method} {path} HTTP/1.1\r\nHost: {authority}\r\n"
    if body or method not in ("GET", "HEAD"):
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        head += f"Content-Length: {len(body)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return (head + "\r\n").encode("ascii") + body


def parse_head(raw: bytes) -> tuple[int, dict[str, str], bool]:
    """Status, headers and HTTP/1.1-ness of a response head (without the blank line). Raises ProtocolError."""
    lines = raw.decode("latin-1").split("\r\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None or not 100 <= int(match[2]) <= 599:
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return int(match[2]), headers, match[1] == "HTTP/1.1"


def _content_length(value: str, max_body: int) -> int:
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not _DECIMAL.fullmatch(next(iter(values))):
        raise ProtocolError(f"bad Content-Length {value[:40]!r}")
    length = int(values.pop())
    if length > max_body:
        raise ProtocolError(f"Content-Length {length} is over the {max_body}-byte bound")
    return length


def _parse_chunked(buf: bytes | bytearray, pos: int, max_body: int) -> tuple[bytes, int] | None:
    """The de-chunked body starting at `pos` and the end offset, or None if incomplete."""
    body = bytearray()
    while True:
        end = buf.find(b"\r\n", pos, pos + _MAX_CHUNK_LINE)
        if end < 0:
            if len(buf) - pos >= _MAX_CHUNK_LINE:
                raise ProtocolError("chunk-size line too long")
            return None
        digits = bytes(buf[pos:end]).split(b";", 1)[0].strip(b" \t")
        if not _CHUNK_SIZE.fullmatch(digits):
            raise ProtocolError(f"bad chunk size {bytes(buf[pos:end])[:20]!r}")
        size = int(digits, 16)
        if len(body) + size > max_body:
            raise ProtocolError(f"chunked body over the {max_body}-byte bound")
        pos = end + 2
        if size == 0:
            return _skip_trailers(buf, pos, body)
        if len(buf) < pos + size + 2:
            return None
        if buf[pos + size:pos + size + 2] != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")
        body += buf[pos:pos + size]
        pos += size + 2


def _skip_trailers(buf: bytes | bytearray, pos: int, body: bytearray) -> tuple[bytes, int] | None:
    while True:
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None
        if end == pos:
            return bytes(body), end + 2
        pos = end + 2


def parse_response(buf: bytes | bytearray, *, eof: bool, max_body: int = MAX_BODY,
                   head_request: bool = False) -> tuple[Response, int] | None:
    """One complete response from the start of `buf` and the bytes it used, or None if more are needed.

    `eof` says the connection has ended (a body without length or chunking runs to it). 1xx
    answers are skipped. Raises ProtocolError for anything that is not HTTP/1.x or breaks a bound.
    """
    pos = 0
    for _ in range(_MAX_INTERIM + 1):
        if len(buf) - pos >= 8 and not buf.startswith(b"HTTP/1.", pos):
            raise ProtocolError(f"not an HTTP/1.x response: {bytes(buf[pos:pos + 40])!r}")
        end = buf.find(b"\r\n\r\n", pos, pos + MAX_HEAD + 4)
        if end < 0:
            if len(buf) - pos > MAX_HEAD:
                raise ProtocolError(f"response head longer than {MAX_HEAD} bytes")
            return None
        status, headers, http11 = parse_head(bytes(buf[pos:end]))
        pos = end + 4
        if status >= 200:
            return _parse_body(buf, pos, status, headers, http11, eof=eof, max_body=max_body,
                               head_request=head_request)
    raise ProtocolError(f"more than {_MAX_INTERIM} interim (1xx) answers")


def _parse_body(buf: bytes | bytearray, pos: int, status: int, headers: dict[str, str], http11: bool, *,
                eof: bool, max_body: int, head_request: bool) -> tuple[Response, int] | None:
    tokens = headers.get("connection", "").lower()
    keep_alive = "close" not in tokens if http11 else "keep-alive" in tokens
    if head_request or status in (204, 304):
        return Response(status, headers, b"", keep_alive), pos
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parsed = _parse_chunked(buf, pos, max_body)
        return None if parsed is None else (Response(status, headers, parsed[0], keep_alive), parsed[1])
    if "content-length" in headers:
        end = pos + _content_length(headers["content-length"], max_body)
        return None if len(buf) < end else (Response(status, headers, bytes(buf[pos:end]), keep_alive), end)
    if len(buf) - pos > max_body:  # the body runs to the end of the connection
        raise ProtocolError(f"response body over the {max_body}-byte bound")
    return (Response(status, headers, bytes(buf[pos:]), False), len(buf)) if eof else None


def _parse_untrusted(buf: bytearray, *, eof: bool, max_body: int,
                     head_request: bool) -> tuple[Response, int] | None:
    """parse_response, with any other error it might raise on the server's bytes made a ProtocolError:
    whatever a server sends ends that request, never the client."""
    try:
        return parse_response(buf, eof=eof, max_body=max_body, head_request=head_request)
    except ProtocolError:
        raise
    except Exception as exc:  # noqa: BLE001 - a parser bug on hostile bytes is still the server's bad answer
        raise ProtocolError(f"unparseable answer ({type(exc).__name__})") from None


class _Inbox(asyncio.Protocol):
    """Keeps every byte received (up to a bound) and whether and how the connection ended."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = bytearray()
        self.eof = False
        self.overflow = False
        self.error: BaseException | None = None
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - a TCP connection always gives one
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > self.limit:
            self.overflow = True
            assert self.transport is not None  # connection_made comes first
            self.transport.abort()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self) -> None:
        """Until more bytes arrive or the connection ends."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class Connection:
    """One HTTP/1.1 connection to a loopback server, opened lazily and again after it ends."""

    def __init__(self, host: str, port: int, *, max_body: int = MAX_BODY) -> None:
        check_loopback(host)
        self.host, self.port, self.max_body = host, port, max_body
        self._inbox: _Inbox | None = None

    async def open(self) -> None:
        """Connect unless a usable connection is open. Raises OSError."""
        inbox = self._inbox
        if inbox is not None and (inbox.eof or inbox.buffer):  # closed by the server, or unasked-for bytes
            self.close()
        if self._inbox is None:
            loop = asyncio.get_running_loop()
            limit = MAX_HEAD + 2 * self.max_body + 4096  # room for chunk framing
            _, self._inbox = await loop.create_connection(lambda: _Inbox(limit), self.host, self.port)

    async def exchange(self, payload: bytes, *, head_request: bool = False) -> Response:
        """Send one request and read its response. Raises OSError, ProtocolError, ClosedEarly."""
        await self.open()
        inbox = self._inbox
        assert inbox is not None and inbox.transport is not None  # open() connected
        inbox.transport.write(payload)
        while True:
            if inbox.overflow:
                raise ProtocolError(f"response larger than {inbox.limit} bytes")
            parsed = _parse_untrusted(inbox.buffer, eof=inbox.eof, max_body=self.max_body,
                                      head_request=head_request)
            if parsed is not None:
                response, used = parsed
                del inbox.buffer[:used]
                if not response.keep_alive:
                    self.close()
                return response
            if inbox.eof:
                raise ClosedEarly(self._closed_early(inbox))
            await inbox.wait()

    @staticmethod
    def _closed_early(inbox: _Inbox) -> str:
        text = "connection closed before a complete answer"
        if inbox.buffer:
            text += f" (after {len(inbox.buffer)} bytes: {bytes(inbox.buffer[:40])!r})"
        if inbox.error is not None:
            text += f": {inbox.error}"
        return text

    def received(self) -> bytes:
        """The bytes received and not yet consumed (for describing a failure)."""
        return bytes(self._inbox.buffer) if self._inbox is not None else b""

    def close(self) -> None:
        """Drop the connection at once, unsent bytes included (the exchange is over either way)."""
        if self._inbox is not None and self._inbox.transport is not None:
            self._inbox.transport.abort()
        self._inbox = None


async def fetch(host: str, port: int, method: str, path: str, *, body: bytes = b"",
                content_type: str | None = "application/json", timeout_s: float,
                max_body: int = MAX_BODY) -> Response:
    """One request on a fresh connection (`Connection: close`), answered within `timeout_s` seconds.

    The body is written while the response is read, so a server may answer before reading it all.
    Raises ValueError for a non-loopback host or a bad request, FetchError for anything the server did.
    """
    conn = Connection(host, port, max_body=max_body)
    payload = build_request(host, port, method, path, body, content_type=content_type, close=True)
    try:
        async with asyncio.timeout(timeout_s):
            return await conn.exchange(payload, head_request=method == "HEAD")
    except TimeoutError:
        got = conn.received()
        seen = f" (got {len(got)} bytes: {got[:40]!r})" if got else ""
        raise FetchError(f"no complete answer within {timeout_s:g} s{seen}", timed_out=True) from None
    except ConnectionRefusedError:
        raise FetchError("connection refused") from None
    except ProtocolError as exc:
        raise FetchError(f"bad HTTP answer: {exc}") from None
    except (OSError, ClosedEarly) as exc:
        raise FetchError(str(exc) or type(exc).__name__) from None
    finally:
        conn.close()
