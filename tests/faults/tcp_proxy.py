"""A TCP proxy between a client and Valkey that can lose the server's replies.

Every byte the client sends reaches the server, so a command runs there; a reply the proxy is
told to lose never reaches the client. The proxy runs on an event loop in a thread of its own, so
it serves clients on any loop or thread (the test's, the app's, a subprocess).

A rule names a byte pattern (an operation id, a SKU): once a client sends a chunk that contains
it, that connection's next reply is lost, and the connection is either closed at once (``close``:
the client sees the connection drop) or left open with nothing forwarded on it any more (``stall``:
the client times out). ``times`` says how many connections the rule cuts this way (``None``: until
it is removed); ``hits`` counts the replies actually lost, so a test can tell that its fault
happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

Mode = Literal["close", "stall"]
_CHUNK = 65536


@dataclass
class DropRule:
    pattern: bytes
    mode: Mode = "close"
    times: int | None = 1
    hits: int = 0
    armed_on: int = 0  # connections cut so far, or marked to be cut

    def wants_more(self) -> bool:
        return self.times is None or self.armed_on < self.times


@dataclass(eq=False)
class _Pair:
    """One client connection and its upstream connection."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    doomed: DropRule | None = None  # the rule whose next reply on this connection is lost
    stalled: bool = False
    tail: bytes = b""  # the last bytes sent, so a pattern split across two chunks still matches
    tasks: list[asyncio.Task] = field(default_factory=list)


class ReplyDroppingProxy:
    """Listens on 127.0.0.1 and forwards every connection to ``upstream_host:upstream_port``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = "127.0.0.1"
        self.port = 0
        self._rules: list[DropRule] = []
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self.connections = 0

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    # -- rules ------------------------------------------------------------------------------------

    def drop_replies(
        self, pattern: bytes | str, *, times: int | None = 1, mode: Mode = "close"
    ) -> DropRule:
        """Loses the next reply on each of the next ``times`` connections that send ``pattern``."""
        raw = pattern.encode() if isinstance(pattern, str) else pattern
        rule = DropRule(raw, mode, times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Removes every rule; connections already marked or stalled stay so."""
        with self._lock:
            self._rules.clear()

    def _match(self, pair: _Pair, data: bytes) -> None:
        window = pair.tail + data
        with self._lock:
            for rule in self._rules:
                if pair.doomed is None and rule.wants_more() and rule.pattern in window:
                    rule.armed_on += 1
                    pair.doomed = rule
            longest = max((len(r.pattern) for r in self._rules), default=1)
        pair.tail = window[-max(0, longest - 1) :] if longest > 1 else b""

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, self.host, 0)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="reply-dropping-proxy", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the proxy did not start")
        if failure:
            raise failure[0]

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in list(self._pairs):
            self._close(pair)
        tasks = [t for pair in self._pairs for t in pair.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- forwarding -------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()  # the server is down: so is the proxy, for this client
            return
        self.connections += 1
        pair = _Pair(writer, up_writer)
        self._pairs.add(pair)
        pair.tasks = [
            asyncio.create_task(self._to_server(pair, reader)),
            asyncio.create_task(self._to_client(pair, up_reader)),
        ]
        await asyncio.gather(*pair.tasks, return_exceptions=True)
        self._close(pair)
        self._pairs.discard(pair)

    async def _to_server(self, pair: _Pair, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(_CHUNK):
                if pair.stalled:
                    continue  # the client gave up on this connection; keep it from the server
                self._match(pair, data)
                pair.upstream.write(data)
                await pair.upstream.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._close(pair)

    async def _to_client(self, pair: _Pair, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(_CHUNK):
                if pair.stalled:
                    continue
                rule = pair.doomed
                if rule is not None:
                    with self._lock:
                        rule.hits += 1
                    if rule.mode == "stall":
                        pair.stalled = True
                        continue
                    self._close(pair)
                    return
                pair.client.write(data)
                await pair.client.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not pair.stalled:
                self._close(pair)

    @staticmethod
    def _close(pair: _Pair) -> None:
        for writer in (pair.client, pair.upstream):
            with contextlib.suppress(Exception):
                writer.close()
