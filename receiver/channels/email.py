"""Email delivery: an SMTP failover chain over a shared pool of connections.

Servers are tried in the configured order. Whatever is a fault of one server (it cannot be
reached, does not greet, times out, answers garbage or 4xx anywhere, refuses us with 5xx
at greeting, EHLO, STARTTLS, AUTH or MAIL FROM) is recorded as an `Attempt` and the next
server is tried. What is a verdict on the message itself ends the chain:

* 5xx at RCPT rejects that recipient only; the others still get the message. When every
  recipient is rejected with 5xx the message is dead (`PermanentFailure`).
* 4xx at RCPT: when no recipient was accepted the whole message fails over like any
  other server fault. When some were accepted, the message goes to them and the deferred
  ones are reported in `SendResult.rejected` with their 4xx reply, so the caller can queue
  a retry for just those (a reply starting with "4" is temporary, "5" permanent).
* 5xx after DATA refuses the message (`PermanentFailure`); 4xx after DATA fails over.

When the final reply to DATA is lost (timeout, dropped connection) the server may have
taken the message anyway; failing over then risks a duplicate, which at-least-once
delivery accepts. EHLO is not retried as HELO: a server that refuses EHLO fails over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from receiver.channels.smtp_pool import (
    Connection,
    ConnectionPool,
    Fault,
    one_line,
    password_of,
    step,
)
from receiver.config import SmtpServer
from receiver.errors import DeliveryError

log = logging.getLogger(__name__)

__all__ = ["Attempt", "PermanentFailure", "SendResult", "SmtpChain", "TemporaryFailure"]


@dataclass(frozen=True)
class Attempt:
    server: str  # "host:port"
    ok: bool
    stage: str  # connect|greeting|ehlo|starttls|auth|mail|rcpt|data|timeout|protocol
    code: int | None  # SMTP code when there was one
    message: str  # server reply text (without the code) or the error, one line, no secrets
    elapsed: float  # seconds


@dataclass(frozen=True)
class SendResult:
    server: str  # which server accepted
    reply: str  # final reply after DATA, e.g. "250 2.0.0 Ok: queued as 1234"
    accepted: tuple[str, ...]
    rejected: dict[str, str]  # recipient -> "550 5.1.1 <x@y>: user unknown" (or a 4xx)
    attempts: tuple[Attempt, ...]  # every server tried, in order


class TemporaryFailure(DeliveryError):
    """Every server failed with a fault of that server: retry later."""

    def __init__(self, message: str, attempts: tuple[Attempt, ...]) -> None:
        super().__init__(message, permanent=False)
        self.attempts = attempts


class PermanentFailure(DeliveryError):
    """The message is refused (5xx after DATA, or every recipient 5xx): do not retry."""

    def __init__(
        self, message: str, attempts: tuple[Attempt, ...], rejected: dict[str, str]
    ) -> None:
        super().__init__(message, permanent=True)
        self.attempts = attempts
        self.rejected = rejected


@dataclass
class _Outcome:
    attempt: Attempt
    permanent: bool = False
    accepted: tuple[str, ...] = ()
    rejected: dict[str, str] = field(default_factory=dict)
    skipped: bool = False


def _reply(a: Attempt) -> str:
    return f"{a.code} {a.message}" if a.code is not None else a.message


def _bad_address(addr: str) -> bool:
    # Catch here what aiosmtplib would refuse mid-transaction (and what no server accepts
    # without SMTPUTF8), so one bad recipient cannot look like a server fault.
    return (
        not addr
        or not addr.isascii()
        or any(c.isspace() or c in "<>" for c in addr)
        or any(not c.isprintable() for c in addr)
    )


class SmtpChain:
    """Sends rendered messages through `servers` in order, over one shared connection pool."""

    def __init__(
        self,
        servers: Sequence[SmtpServer],
        *,
        max_connections: int = 20,
        idle_timeout: float = 30.0,
        on_failover: Callable[[str], None] | None = None,
        skip_failed_for: float = 10.0,
    ) -> None:
        """`skip_failed_for`: for that many seconds after a server could not be connected
        to, `send` does not try it again (its Attempt says "not tried") unless it is the
        last one. Otherwise every message of a storm would first wait for a dead server
        (its whole timeout when it hangs) and take pool slots from the idle connections
        of the server that works. 0 tries every server on every send."""
        if not servers:
            raise ValueError("an SMTP chain needs at least one server")
        self._servers = tuple(servers)
        self._pool = ConnectionPool(max_connections, idle_timeout, skip_failed_for)
        self._on_failover = on_failover

    async def __aenter__(self) -> SmtpChain:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(self, message: bytes, sender: str, recipients: Sequence[str]) -> SendResult:
        """Deliver `message` to the first server that takes it; see the module docstring.

        Raises `PermanentFailure` when the message or all its recipients are refused and
        `TemporaryFailure` when every server failed.
        """
        rcpts, invalid = self._check_envelope(sender, recipients)
        attempts: list[Attempt] = []
        for i, server in enumerate(self._servers):
            if i:
                self._failed_over(self._servers[i - 1].name)
            fail_fast = i < len(self._servers) - 1
            outcome = await self._try_server(server, message, sender, rcpts, fail_fast=fail_fast)
            attempts.append(outcome.attempt)
            rejected = {**invalid, **outcome.rejected}
            if outcome.attempt.ok:
                log.debug("smtp %s: sent, %s", server.name, _reply(outcome.attempt))
                return SendResult(
                    server.name,
                    _reply(outcome.attempt),
                    outcome.accepted,
                    rejected,
                    tuple(attempts),
                )
            a = outcome.attempt
            if outcome.permanent:
                log.warning("smtp %s refused the message at %s: %s", a.server, a.stage, _reply(a))
                raise PermanentFailure(
                    f"{a.server} refused the message at {a.stage}: {_reply(a)}",
                    tuple(attempts),
                    rejected,
                )
            level = logging.DEBUG if outcome.skipped else logging.WARNING
            log.log(level, "smtp %s failed at %s: %s", a.server, a.stage, _reply(a))
        last = attempts[-1]
        raise TemporaryFailure(
            f"all {len(attempts)} SMTP servers failed; last {last.server} at {last.stage}: "
            f"{_reply(last)}",
            tuple(attempts),
        )

    async def probe(
        self, message: bytes, sender: str, recipients: Sequence[str]
    ) -> list[Attempt | SendResult]:
        """For `alertmail test-email`: send through EACH server independently, report each
        server's answer (a `SendResult` where it was sent, else the failed `Attempt`)."""
        rcpts, invalid = self._check_envelope(sender, recipients)
        outcomes = await asyncio.gather(
            *(self._try_server(s, message, sender, rcpts) for s in self._servers)
        )
        return [
            SendResult(
                o.attempt.server,
                _reply(o.attempt),
                o.accepted,
                {**invalid, **o.rejected},
                (o.attempt,),
            )
            if o.attempt.ok
            else o.attempt
            for o in outcomes
        ]

    async def close(self) -> None:
        """Say QUIT on idle connections; connections in use close when their send ends."""
        await self._pool.close()

    def _check_envelope(
        self, sender: str, recipients: Sequence[str]
    ) -> tuple[list[str], dict[str, str]]:
        if _bad_address(sender):
            raise PermanentFailure(f"invalid envelope sender {sender!r}", (), {})
        rcpts = list(dict.fromkeys(recipients))
        invalid = {
            r: "553 5.1.3 not a valid SMTP address (refused locally)"
            for r in rcpts
            if _bad_address(r)
        }
        valid = [r for r in rcpts if r not in invalid]
        if not valid:
            raise PermanentFailure("no valid recipient", (), invalid)
        return valid, invalid

    def _failed_over(self, name: str) -> None:
        if self._on_failover is None:
            return
        try:
            self._on_failover(name)
        except Exception:
            log.exception("on_failover callback failed for %s", name)

    async def _try_server(
        self,
        server: SmtpServer,
        message: bytes,
        sender: str,
        recipients: Sequence[str],
        *,
        fail_fast: bool = False,
    ) -> _Outcome:
        started = time.monotonic()

        def attempt(ok: bool, stage: str, code: int | None, text: str) -> Attempt:
            return Attempt(server.name, ok, stage, code, text, time.monotonic() - started)

        secret = password_of(server)
        try:
            conn = await self._mail(server, message, sender, fail_fast=fail_fast, secret=secret)
        except Fault as f:
            return _Outcome(attempt(False, f.stage, f.code, f.message), skipped=f.skipped)
        smtp = conn.smtp
        accepted: list[str] = []
        rejected: dict[str, str] = {}
        codes: list[int] = []
        reusable = clean = False
        try:
            for rcpt in recipients:
                try:
                    await step("rcpt", smtp.rcpt(rcpt), secret)
                except Fault as f:
                    if f.stage != "rcpt" or f.code is None or not 400 <= f.code < 600:
                        raise
                    rejected[rcpt] = f"{f.code} {f.message}"
                    codes.append(f.code)
                else:
                    accepted.append(rcpt)
            if not accepted:
                first = next(iter(rejected.values()))
                if any(c < 500 for c in codes):
                    raise Fault("rcpt", min(codes), f"no recipient accepted: {first}")
                reusable = True  # the pool sends RSET before the next transaction
                text = f"all recipients rejected: {first}"
                return _Outcome(attempt(False, "rcpt", codes[0], text), True, (), rejected)
            reply = await step("data", smtp.data(message), secret)
            reusable = clean = True
            text = one_line(reply.message, secret)
            return _Outcome(
                attempt(True, "data", reply.code, text), False, tuple(accepted), rejected
            )
        except Fault as f:
            if f.stage == "data" and f.code is not None and 500 <= f.code < 600:
                reusable = True
                return _Outcome(attempt(False, "data", f.code, f.message), True, (), rejected)
            return _Outcome(attempt(False, f.stage, f.code, f.message))
        finally:
            self._pool.release(conn, reusable=reusable, clean=clean)

    async def _mail(
        self,
        server: SmtpServer,
        message: bytes,
        sender: str,
        *,
        fail_fast: bool,
        secret: str | None,
    ) -> Connection:
        """A pooled connection to `server` on which MAIL FROM was accepted; raises `Fault`."""
        conn = await self._pool.acquire(server, fail_fast=fail_fast)
        while True:
            options = []
            if not message.isascii() and conn.smtp.supports_extension("8bitmime"):
                options.append("BODY=8BITMIME")
            try:
                await step("mail", conn.smtp.mail(sender, options=options), secret)
            except Fault as f:
                self._pool.release(conn, reusable=False)
                if not conn.unchecked:
                    raise
                # Reused without RSET: the server may have ended the session since. That
                # is no fault of the server; ask again on a checked connection.
                log.debug("smtp %s: reused connection failed at MAIL (%s)", server.name, f)
            except BaseException:
                self._pool.release(conn, reusable=False)
                raise
            else:
                return conn
            conn = await self._pool.acquire(server, fail_fast=fail_fast, check=True)
