"""SMTP connections opened stage by stage, and the pool an `SmtpChain` shares between sends.

Every failure while talking to a server is turned into a `Fault` naming the stage, so the
chain can tell "this server is broken, try the next one" from "this message or recipient
is refused". The pool caps the open connections of a whole chain and keeps idle ones per
server for reuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Awaitable
from typing import TypeVar

from aiosmtplib import (
    SMTP,
    SMTPConnectResponseError,
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
)

from receiver.config import SmtpServer

log = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_TEXT = 300

# Seconds for which a connection whose last message was accepted is reused without RSET.
# Servers drop idle sessions after tens of seconds or minutes; within a moment of a reply
# one is rarely gone, and when it is the send retries on a checked connection anyway.
TRUST_CLEAN_FOR = 2.0


class Fault(Exception):
    """A failure of one server (or the way to it): the message may go to the next one."""

    def __init__(
        self, stage: str, code: int | None, message: str, *, skipped: bool = False
    ) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.code = code
        self.message = message
        self.skipped = skipped  # not tried now: it failed moments ago


def one_line(text: str, secret: str | None = None) -> str:
    """Server text fit for an Attempt or a log line: one line, bounded, no secret."""
    if secret:
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def password_of(server: SmtpServer) -> str | None:
    return server.password.get_secret_value() if server.password is not None else None


async def step(stage: str, aw: Awaitable[T], secret: str | None = None) -> T:
    """Await one protocol step, turning whatever goes wrong into a `Fault` for `stage`."""
    try:
        return await aw
    except TimeoutError as exc:  # SMTPTimeoutError and asyncio's are both TimeoutError
        raise Fault("timeout", None, one_line(f"{stage}: {exc or 'timed out'}", secret)) from exc
    except SMTPResponseException as exc:
        if exc.code < 100:  # aiosmtplib's -1: the reply was not SMTP at all
            raise Fault("protocol", None, one_line(f"{stage}: {exc.message}", secret)) from exc
        if isinstance(exc, SMTPConnectResponseError):
            stage = "greeting"
        raise Fault(stage, exc.code, one_line(exc.message, secret)) from exc
    except SMTPServerDisconnected as exc:
        raise Fault(stage, None, one_line(f"connection lost: {exc}", secret)) from exc
    except (SMTPException, OSError, ValueError) as exc:
        # OSError covers refused connections and TLS failures; ValueError is what
        # aiosmtplib raises for unusable local settings such as a bad `hello`.
        raise Fault(stage, None, one_line(str(exc) or type(exc).__name__, secret)) from exc


def build_tls_context(server: SmtpServer) -> ssl.SSLContext:
    cfg = server.tls_config
    context = ssl.create_default_context(cafile=cfg.ca_file)
    if cfg.cert_file is not None:
        context.load_cert_chain(cfg.cert_file, cfg.key_file)
    if cfg.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _tcp_connect(host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    last: OSError | None = None
    for family, kind, proto, _, addr in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, addr)
        except OSError as exc:
            sock.close()
            last = exc
        except BaseException:
            sock.close()
            raise
        else:
            return sock
    raise last or OSError(f"cannot resolve {host}")


class Connection:
    """One open SMTP session to one server, used by one send at a time."""

    def __init__(self, server: SmtpServer, smtp: SMTP) -> None:
        self.server = server
        self.smtp = smtp
        self.idle_since = 0.0
        # Its last transaction ended with the message accepted: nothing to reset.
        self.clean = False
        # Handed out without the RSET that proves a reused session alive: a caller whose
        # first command fails on it should try again on a checked one (acquire(check=True)).
        self.unchecked = False

    @property
    def alive(self) -> bool:
        return self.smtp.is_connected


class ConnectionPool:
    """At most `max_connections` open connections over all servers; idle ones kept per server.

    State changes are synchronous (no await between check and update), so no lock is
    needed; waiters for a free slot park on futures that every release wakes.
    """

    def __init__(
        self, max_connections: int, idle_timeout: float, skip_failed_for: float = 0.0
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._max = max_connections
        self._idle_timeout = idle_timeout
        self._skip_failed_for = skip_failed_for
        self._unreachable: dict[int, tuple[float, Fault]] = {}  # id(server) -> (when, why)
        self._open = 0
        self._idle: dict[int, list[Connection]] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._tls: dict[int, ssl.SSLContext] = {}
        self._fqdn: str | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    async def acquire(
        self, server: SmtpServer, *, fail_fast: bool = False, check: bool = False
    ) -> Connection:
        """A live connection to `server`, reused when one is idle; raises `Fault`.

        With `fail_fast`, a server that could not be connected to within the last
        `skip_failed_for` seconds fails at once, also for callers already waiting.

        A reused connection is checked with RSET, unless it finished a transaction moments
        ago (`TRUST_CLEAN_FOR`) and `check` is not asked for: in a storm that round trip
        would be one in five of every send, on both ends. Such a connection is marked
        `unchecked`.
        """
        while True:
            conn = await self._reserve(server, fail_fast)
            if conn is None:
                try:
                    smtp = await self._open_smtp(server)
                except Fault as f:
                    self._unreachable[id(server)] = (time.monotonic(), f)
                    self._free_slot()
                    raise
                except BaseException:
                    self._free_slot()
                    raise
                self._unreachable.pop(id(server), None)
                return Connection(server, smtp)
            trusted = conn.clean and time.monotonic() - conn.idle_since < TRUST_CLEAN_FOR
            conn.clean = False
            conn.unchecked = trusted and not check
            if conn.unchecked:
                return conn
            try:
                # A reused session may have been dropped by the server while idle, and
                # RSET also clears whatever an earlier failed transaction left behind.
                await conn.smtp.rset()
            except (SMTPException, OSError):
                log.debug("smtp %s: idle connection is gone, opening another", server.name)
                self.release(conn, reusable=False)
                continue
            except BaseException:
                self.release(conn, reusable=False)
                raise
            return conn

    def release(self, conn: Connection, *, reusable: bool, clean: bool = False) -> None:
        """Give `conn` back; `clean` when its transaction ended with the message accepted,
        so the next send on it may skip the RSET (see `acquire`)."""
        if reusable and conn.alive and not self._closed:
            conn.idle_since = time.monotonic()
            conn.clean = clean
            self._idle.setdefault(id(conn.server), []).append(conn)
            self._start_reaper()
        else:
            conn.smtp.close()
            self._open -= 1
        self._wake()

    async def close(self) -> None:
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        idle = [c for conns in self._idle.values() for c in conns]
        self._idle.clear()
        await asyncio.gather(*(self._quit(c) for c in idle))
        self._wake()

    async def _reserve(self, server: SmtpServer, fail_fast: bool) -> Connection | None:
        """An idle connection to `server`, or None when a slot for a new one was taken."""
        while True:
            if self._closed:
                raise Fault("connect", None, "SMTP connection pool is closed")
            failed = self._unreachable.get(id(server))
            if fail_fast and failed is not None:
                ago = time.monotonic() - failed[0]
                if ago < self._skip_failed_for:
                    f = failed[1]
                    text = f"not tried: failed {ago:.1f}s ago: {f.message}"
                    raise Fault(f.stage, f.code, text, skipped=True)
            idle = self._idle.get(id(server), [])
            while idle:
                conn = idle.pop()  # most recently used: least likely to have timed out
                if conn.alive and not self._expired(conn, time.monotonic()):
                    return conn
                self.release(conn, reusable=False)
            if self._open < self._max:
                self._open += 1
                return None
            victim = self._oldest_idle()
            if victim is not None:
                # All slots are taken but one sits idle for another server: a send that
                # can go now beats keeping a session warm.
                self._idle[id(victim.server)].remove(victim)
                self.release(victim, reusable=False)
                continue
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)

    def _free_slot(self) -> None:
        self._open -= 1
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _oldest_idle(self) -> Connection | None:
        candidates = [c for conns in self._idle.values() for c in conns]
        return min(candidates, key=lambda c: c.idle_since, default=None)

    def _expired(self, conn: Connection, now: float) -> bool:
        return now - conn.idle_since >= self._idle_timeout

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        while True:
            now = time.monotonic()
            expired: list[Connection] = []
            for conns in self._idle.values():
                expired += [c for c in conns if not c.alive or self._expired(c, now)]
                conns[:] = [c for c in conns if c not in expired]
            # Each quitting connection keeps its slot until it is really closed.
            await asyncio.gather(*(self._quit(c) for c in expired))
            remaining = [c.idle_since for conns in self._idle.values() for c in conns]
            if not remaining:
                return
            due = min(remaining) + self._idle_timeout - time.monotonic()
            await asyncio.sleep(max(due, 0.01))

    async def _quit(self, conn: Connection) -> None:
        try:
            if conn.alive:
                await asyncio.wait_for(conn.smtp.quit(), conn.server.timeout)
        except (SMTPException, OSError):
            pass  # the server may close first; either way the session is over
        finally:
            self.release(conn, reusable=False)

    async def _open_smtp(self, server: SmtpServer) -> SMTP:
        secret = password_of(server)
        hello = server.hello
        if hello is None:
            if self._fqdn is None:
                self._fqdn = await asyncio.to_thread(socket.getfqdn)
            hello = self._fqdn
        server_name = server.tls_config.server_name
        context = await self._tls_context(server, "connect") if server.tls else None
        if server.tls and server_name is not None:
            # aiosmtplib only lets us choose the TLS server name on a socket we connect.
            sock = await step(
                "connect", asyncio.wait_for(_tcp_connect(server.host, server.port), server.timeout)
            )
            smtp = SMTP(
                sock=sock,
                hostname=server_name,
                use_tls=True,
                tls_context=context,
                local_hostname=hello,
                timeout=server.timeout,
                start_tls=False,
            )
        else:
            smtp = SMTP(
                hostname=server.host,
                port=server.port,
                use_tls=server.tls,
                tls_context=context,
                local_hostname=hello,
                timeout=server.timeout,
                start_tls=False,
            )
        try:
            await step("connect", smtp.connect())
            await step("ehlo", smtp.ehlo())
            offered = smtp.supports_extension("starttls")
            if server.starttls or (server.starttls is None and not server.tls and offered):
                if not offered:
                    raise Fault("starttls", None, "server does not offer STARTTLS")
                context = await self._tls_context(server, "starttls")
                await step(
                    "starttls",
                    smtp.starttls(server_hostname=server_name or server.host, tls_context=context),
                )
                await step("ehlo", smtp.ehlo())  # RFC 3207: forget what was said in clear
            if server.username is not None:
                await step("auth", smtp.login(server.username, secret or ""), secret)
        except BaseException:
            smtp.close()
            raise
        log.debug("smtp %s: connected", server.name)
        return smtp

    async def _tls_context(self, server: SmtpServer, stage: str) -> ssl.SSLContext:
        context = self._tls.get(id(server))
        if context is None:
            try:
                context = await asyncio.to_thread(build_tls_context, server)
            except (OSError, ValueError) as exc:
                raise Fault(stage, None, one_line(f"tls_config: {exc}")) from exc
            self._tls[id(server)] = context
        return context
