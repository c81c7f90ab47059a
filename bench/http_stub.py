"""A tiny loopback HTTP/1.1 keep-alive server for testing and benchmarking the load generator.

It answers every request with a small JSON body. Knobs model the servers a load generator must
measure honestly: a blocking per-request service time (requests served one at a time, so the
capacity is known), a non-blocking delay (requests overlap), and a one-off stall that freezes the
whole server (a GC pause or a lock), which a closed-loop client under-reports.

    python -m bench.http_stub [--service-ms 5] [--delay-ms 1] [--stall-at 2 --stall-ms 1000]

prints `PORT <n>` on its first line and serves on 127.0.0.1 until `--lifetime` seconds pass.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_MAX_BUFFER = 1 << 20  # a request larger than this closes the connection
_BODY = b'{"status":"ok"}'
_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
             + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY)


@dataclass(frozen=True)
class StubConfig:
    """How the stub misbehaves. All times in seconds; zero means off."""

    service_s: float = 0.0  # blocking: the server does nothing else meanwhile (capacity = 1/service_s)
    delay_s: float = 0.0  # non-blocking: the answer is sent this long after the request arrives
    stall_at_s: float | None = None  # once, this long after the first request...
    stall_s: float = 0.0  # ...the whole server freezes for this long


class _StubState:
    """Shared by all connections: when the first request came and whether the stall happened."""

    def __init__(self, config: StubConfig) -> None:
        self.config = config
        self.first_request: float | None = None
        self.stalled = False

    def before_request(self) -> None:
        now = time.monotonic()
        if self.first_request is None:
            self.first_request = now
        cfg = self.config
        if cfg.stall_at_s is not None and not self.stalled and now - self.first_request >= cfg.stall_at_s:
            self.stalled = True
            time.sleep(cfg.stall_s)  # deliberately blocks the event loop: every connection freezes
        if cfg.service_s > 0:
            time.sleep(cfg.service_s)


def _content_length(head: bytes) -> int:
    """Content-Length of a request head (0 when absent). Raises ValueError when malformed."""
    lowered = head.lower()
    at = lowered.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    start = at + len(b"\r\ncontent-length:")
    end = lowered.find(b"\r\n", start)
    return int(lowered[start:] if end < 0 else lowered[start:end])


class _StubProtocol(asyncio.Protocol):
    def __init__(self, state: _StubState) -> None:
        self.state = state
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a TCP server always gives one
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _MAX_BUFFER:
            self.transport.close()
            return
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            try:
                total = end + 4 + _content_length(bytes(self.buffer[:end]))
            except ValueError:
                self.transport.close()
                return
            if len(self.buffer) < total:
                return
            del self.buffer[:total]
            self._answer()

    def _answer(self) -> None:
        self.state.before_request()
        delay = self.state.config.delay_s
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._write)
        else:
            self._write()

    def _write(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(_RESPONSE)


async def start_stub(config: StubConfig, port: int = 0) -> asyncio.Server:
    """Start serving on 127.0.0.1 in the running loop; `port=0` picks a free port."""
    state = _StubState(config)
    return await asyncio.get_running_loop().create_server(lambda: _StubProtocol(state), "127.0.0.1", port)


@contextmanager
def stub_in_thread(config: StubConfig) -> Iterator[int]:
    """Serve in a background thread with its own event loop; yields the port. Stops on exit."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(start_stub(config))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()


async def _serve(config: StubConfig, port: int, lifetime_s: float) -> None:
    server = await start_stub(config, port)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await asyncio.sleep(lifetime_s)


def main() -> None:
    parser = argparse.ArgumentParser(description="Loopback HTTP stub for load-generator tests.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--service-ms", type=float, default=0.0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--stall-at", type=float, default=None, help="seconds after the first request")
    parser.add_argument("--stall-ms", type=float, default=0.0)
    parser.add_argument("--lifetime", type=float, default=600.0, help="exit after this many seconds")
    args = parser.parse_args()
    config = StubConfig(service_s=args.service_ms / 1000, delay_s=args.delay_ms / 1000,
                        stall_at_s=args.stall_at, stall_s=args.stall_ms / 1000)
    asyncio.run(_serve(config, args.port, args.lifetime))


if __name__ == "__main__":
    main()
