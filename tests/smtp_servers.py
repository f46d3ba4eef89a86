"""Real SMTP servers for tests: a recording sink and a few broken ones, all on 127.0.0.1.

Every helper is an async context manager that binds port 0 and always stops::

    async with smtp_sink(reject={"nobody@example.com"}) as sink, hanging_server() as hang:
        ...  # point a client at (hang.host, hang.port) first, then (sink.host, sink.port)
        assert sink.messages[0].rcpt_tos == ["ops@example.com"]
        assert sink.connections == 1

`smtp_sink` is aiosmtpd (its own thread and loop, so a client in the test's loop can
block on it safely); the fault servers are plain asyncio servers in the test's loop.
`self_signed_cert` makes a certificate for STARTTLS/implicit TLS tests with the openssl CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"

__all__ = [
    "HOST",
    "FaultServer",
    "Received",
    "Responder",
    "Sink",
    "closed_port",
    "garbage_server",
    "greeting_server",
    "hanging_server",
    "raw_server",
    "self_signed_cert",
    "server_tls_context",
    "smtp_sink",
]


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # the message as received, line endings as sent (CRLF)
    mail_options: list[str]
    login: str | None  # the AUTH user of the session, if any
    tls: bool  # whether the session was encrypted (STARTTLS or implicit TLS)


@dataclass
class Sink:
    """What a running `smtp_sink` saw. Lists are appended from the server thread."""

    host: str = HOST
    port: int = 0
    messages: list[Received] = field(default_factory=list)
    connections: int = 0  # TCP connections opened by clients
    peak_connections: int = 0  # most connections open at the same time
    active: int = 0  # connections open right now
    auth_failures: int = 0
    # recipients answered 450 at RCPT (lower case); a test may change it while running
    defer: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def _opened(self) -> None:
        with self._lock:
            self.connections += 1
            self.active += 1
            self.peak_connections = max(self.peak_connections, self.active)

    def _closed(self) -> None:
        with self._lock:
            self.active -= 1


class _Handler:
    def __init__(
        self,
        sink: Sink,
        reject: Collection[str],
        defer: Collection[str],
        data_reply: str | None,
        data_delay: float,
    ) -> None:
        self.sink = sink
        self.reject = {a.lower() for a in reject}
        sink.defer.update(a.lower() for a in defer)
        self.defer = sink.defer
        self.data_reply = data_reply
        self.data_delay = data_delay

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.lower() in self.reject:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address.lower() in self.defer:
            return f"450 4.2.1 <{address}>: Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_reply is not None:
            return self.data_reply
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        tls = server.transport is not None and bool(server.transport.get_extra_info("sslcontext"))
        received = Received(
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            data=envelope.original_content or b"",
            mail_options=list(envelope.mail_options),
            login=login,
            tls=tls,
        )
        self.sink.messages.append(received)
        return f"250 2.0.0 Ok: queued as {len(self.sink.messages)}"


class _CountingSMTP(SMTP):
    def __init__(self, sink: Sink | None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sink = sink
        if sink is not None:
            sink._opened()

    def connection_lost(self, error: Exception | None) -> None:
        if self._sink is not None:
            self._sink._closed()
            self._sink = None
        super().connection_lost(error)


class _Controller(Controller):
    """aiosmtpd's Controller on port 0 that counts the connections clients open."""

    def __init__(self, sink: Sink, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, hostname=sink.host, port=0, server_hostname="localhost", **kwargs)
        self._sink = sink
        self._counting = False  # Controller.start() opens one connection of its own

    def _create_server(self) -> Any:
        async def bind() -> asyncio.AbstractServer:
            server = await self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=0, ssl=self.ssl_context
            )
            self.port = server.sockets[0].getsockname()[1]
            return server

        return bind()

    def factory(self) -> SMTP:
        sink = self._sink if self._counting else None
        return _CountingSMTP(sink, self.handler, **self.SMTP_kwargs)


@contextlib.asynccontextmanager
async def smtp_sink(
    *,
    auth: tuple[str, str] | None = None,
    reject: Collection[str] = (),
    defer: Collection[str] = (),
    data_reply: str | None = None,
    data_delay: float = 0.0,
    starttls: ssl.SSLContext | None = None,
    require_starttls: bool = False,
    implicit_tls: ssl.SSLContext | None = None,
    session_timeout: float = 300.0,
) -> AsyncIterator[Sink]:
    """An aiosmtpd server that records every message it accepts.

    auth: (user, password) to offer AUTH and accept only that pair (else 535).
    reject / defer: recipients answered 550 / 450 at RCPT.
    data_reply: a reply such as "554 5.7.1 Spam" or "451 4.3.0 Try later" after DATA,
    instead of accepting. data_delay: seconds to wait before answering DATA.
    starttls: a server context offering STARTTLS; implicit_tls: TLS from the first byte.
    session_timeout: seconds of client silence after which the server drops the connection.
    """
    sink = Sink()
    kwargs: dict[str, Any] = {"ready_timeout": 10.0, "timeout": session_timeout}
    if auth is not None:
        user, password = auth

        def authenticator(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
                user.encode(),
                password.encode(),
            )
            if not ok:
                sink.auth_failures += 1
            return AuthResult(success=ok, handled=False, auth_data=data)

        kwargs.update(authenticator=authenticator, auth_require_tls=False)
    if starttls is not None:
        kwargs.update(tls_context=starttls, require_starttls=require_starttls)
    if implicit_tls is not None:
        kwargs.update(ssl_context=implicit_tls)
    handler = _Handler(sink, reject, defer, data_reply, data_delay)
    controller = _Controller(sink, handler, **kwargs)
    await asyncio.to_thread(controller.start)
    sink.port = controller.port
    controller._counting = True
    try:
        yield sink
    finally:
        await asyncio.to_thread(controller.stop)


@dataclass
class FaultServer:
    host: str = HOST
    port: int = 0
    connections: int = 0
    received: list[bytes] = field(default_factory=list)  # lines the clients sent

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


Responder = Callable[[bytes], bytes | None]


@contextlib.asynccontextmanager
async def raw_server(
    greeting: bytes = b"",
    *,
    close_after_greeting: bool = False,
    respond: Responder | None = None,
) -> AsyncIterator[FaultServer]:
    """A TCP server that writes `greeting` on connect, then stays silent.

    With `respond`, each line the client sends (without CRLF) is passed to it and what it
    returns is written back (None: say nothing), which scripts a server that misbehaves
    mid-session; the connection closes after a reply to QUIT.
    """
    info = FaultServer()
    writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        info.connections += 1
        writers.add(writer)
        try:
            if greeting:
                writer.write(greeting)
                await writer.drain()
            if close_after_greeting:
                return
            while line := await reader.readline():
                line = line.rstrip(b"\r\n")
                info.received.append(line)
                reply = respond(line) if respond is not None else None
                if reply:
                    writer.write(reply)
                    await writer.drain()
                if respond is not None and line.upper() == b"QUIT":
                    return
        except OSError:
            pass
        finally:
            writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    info.port = server.sockets[0].getsockname()[1]
    try:
        yield info
    finally:
        server.close()
        for writer in list(writers):
            writer.close()
        await server.wait_closed()


def hanging_server() -> contextlib.AbstractAsyncContextManager[FaultServer]:
    """Accepts TCP connections and never says a word."""
    return raw_server()


def greeting_server(
    line: bytes = b"421 4.3.2 Service not available, closing channel\r\n",
) -> contextlib.AbstractAsyncContextManager[FaultServer]:
    """Greets with `line` (421 by default) and closes, as a busy server does."""
    return raw_server(line, close_after_greeting=True)


def garbage_server() -> contextlib.AbstractAsyncContextManager[FaultServer]:
    """Answers with something that is not an SMTP reply."""
    return raw_server(b"hello there\r\n")


# What connecting to closed_port() fails with, as asyncio's loop and uvloop word it.
CONNECT_REFUSED = r"Connect call failed|Connection refused"


@contextlib.asynccontextmanager
async def closed_port() -> AsyncIterator[FaultServer]:
    """A port on 127.0.0.1 with nothing listening (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    yield FaultServer(port=port)


def self_signed_cert(directory: Path, name: str = "localhost") -> tuple[Path, Path]:
    """(cert, key) PEM files for `name` and 127.0.0.1, made with the openssl CLI."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name},IP:{HOST}",
         "-addext", "basicConstraints=critical,CA:TRUE"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
