"""The SMTP failover chain against real servers (aiosmtpd sinks and raw fault servers)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from receiver.channels import smtp_pool
from receiver.channels.email import (
    Attempt,
    PermanentFailure,
    SendResult,
    SmtpChain,
    TemporaryFailure,
)
from receiver.config import SmtpServer, TlsClientConfig
from receiver.errors import AlertmailError, DeliveryError
from tests.smtp_servers import (
    FaultServer,
    Sink,
    closed_port,
    garbage_server,
    greeting_server,
    hanging_server,
    raw_server,
    self_signed_cert,
    server_tls_context,
    smtp_sink,
)

SENDER = "alerts@example.com"
MESSAGE = (
    b"From: Alerts <alerts@example.com>\r\n"
    b"To: ops@example.com\r\n"
    b"Subject: [FIRING:1] DiskFull\r\n"
    b"Message-ID: <1@alertmail.test>\r\n"
    b"\r\n"
    b"disk is full\r\n"
    b".a line that starts with a dot\r\n"
)


def server(
    target: Sink | FaultServer, *, timeout: float = 5.0, hello: str = "alertmail.test", **kw: Any
) -> SmtpServer:
    return SmtpServer(
        host=target.host, port=target.port, timeout=timeout, hello=hello, starttls=False, **kw
    )


@contextlib.asynccontextmanager
async def chain_of(*servers: SmtpServer, **kw: Any) -> AsyncIterator[SmtpChain]:
    chain = SmtpChain(servers, **kw)
    try:
        yield chain
    finally:
        await chain.close()


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


async def test_delivers_message_with_envelope_and_bytes() -> None:
    async with smtp_sink() as sink, chain_of(server(sink)) as chain:
        result = await chain.send(MESSAGE, SENDER, ["ops@example.com", "dev@example.com"])

    assert isinstance(result, SendResult)
    assert result.server == sink.name
    assert result.reply.startswith("250 2.0.0 Ok: queued as 1")
    assert result.accepted == ("ops@example.com", "dev@example.com")
    assert result.rejected == {}
    assert [(a.server, a.ok, a.stage, a.code) for a in result.attempts] == [
        (sink.name, True, "data", 250)
    ]
    [got] = sink.messages
    assert got.mail_from == SENDER
    assert got.rcpt_tos == ["ops@example.com", "dev@example.com"]
    assert got.data == MESSAGE  # dot-stuffing undone by the server: bytes arrive unchanged
    assert not got.tls


async def test_is_a_delivery_error() -> None:
    assert issubclass(TemporaryFailure, DeliveryError)
    assert issubclass(PermanentFailure, AlertmailError)
    assert PermanentFailure("x", (), {}).permanent
    assert not TemporaryFailure("x", ()).permanent


@contextlib.asynccontextmanager
async def wrong_password_sink() -> AsyncIterator[Sink]:
    async with smtp_sink(auth=("alerts", "right-password")) as sink:
        yield sink


FAULTS: list[tuple[str, Callable[[], Any], str, int | None, str]] = [
    ("down", closed_port, "connect", None, ""),
    ("hangs", hanging_server, "timeout", None, "connect"),
    ("421", greeting_server, "greeting", 421, "Service not available"),
    ("garbage", garbage_server, "protocol", None, "hello there"),
    ("535", wrong_password_sink, "auth", 535, ""),
]


@pytest.mark.parametrize(
    ("fault", "stage", "code", "text"),
    [pytest.param(f, s, c, t, id=name) for name, f, s, c, t in FAULTS],
)
async def test_fails_over_to_the_next_server(
    fault: Callable[[], Any], stage: str, code: int | None, text: str
) -> None:
    failed_over: list[str] = []
    async with fault() as bad, smtp_sink() as good:
        first = server(bad, timeout=0.5, username="alerts", password=SecretStr("wrong"))
        second = server(good)
        async with chain_of(first, second, on_failover=failed_over.append) as chain:
            result = await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    assert result.server == good.name
    assert [m.rcpt_tos for m in good.messages] == [["ops@example.com"]]
    failed, ok = result.attempts
    assert (failed.server, failed.ok, failed.stage, failed.code) == (bad.name, False, stage, code)
    assert text in failed.message
    assert "\n" not in failed.message and "\r" not in failed.message
    assert ok.server == good.name and ok.ok
    assert failed_over == [bad.name]
    assert 0.0 <= failed.elapsed < 5.0


async def test_one_recipient_refused_others_delivered() -> None:
    async with smtp_sink(reject={"ghost@example.com"}) as sink, chain_of(server(sink)) as chain:
        result = await chain.send(
            MESSAGE, SENDER, ["ops@example.com", "ghost@example.com", "dev@example.com"]
        )

    assert result.accepted == ("ops@example.com", "dev@example.com")
    assert list(result.rejected) == ["ghost@example.com"]
    assert result.rejected["ghost@example.com"].startswith("550 5.1.1 <ghost@example.com>")
    assert [m.rcpt_tos for m in sink.messages] == [["ops@example.com", "dev@example.com"]]


async def test_all_recipients_refused_is_permanent_and_does_not_fail_over() -> None:
    rcpts = ["a@example.com", "b@example.com"]
    async with (
        smtp_sink(reject=rcpts) as first,
        smtp_sink() as second,
        chain_of(server(first), server(second)) as chain,
    ):
        with pytest.raises(PermanentFailure) as info:
            await chain.send(MESSAGE, SENDER, rcpts)
        # The connection survives a refused transaction and is reused after RSET.
        result = await chain.send(MESSAGE, SENDER, ["ok@example.com"])

    assert set(info.value.rejected) == set(rcpts)
    assert all(r.startswith("550 ") for r in info.value.rejected.values())
    [attempt] = info.value.attempts
    assert (attempt.server, attempt.stage, attempt.code) == (first.name, "rcpt", 550)
    assert second.messages == []
    assert result.server == first.name and first.connections == 1


async def test_5xx_after_data_is_permanent() -> None:
    async with (
        smtp_sink(data_reply="554 5.7.1 Message rejected as spam") as first,
        smtp_sink() as second,
        chain_of(server(first), server(second)) as chain,
    ):
        with pytest.raises(PermanentFailure) as info:
            await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    [attempt] = info.value.attempts
    assert (attempt.stage, attempt.code) == ("data", 554)
    assert "rejected as spam" in attempt.message
    assert "spam" in str(info.value)
    assert second.messages == []


async def test_4xx_after_data_fails_over() -> None:
    async with (
        smtp_sink(data_reply="451 4.3.0 Temporary local problem") as first,
        smtp_sink() as second,
        chain_of(server(first), server(second)) as chain,
    ):
        result = await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    assert [(a.stage, a.code) for a in result.attempts] == [("data", 451), ("data", 250)]
    assert result.server == second.name and len(second.messages) == 1


async def test_4xx_at_rcpt_for_some_is_reported_for_retry() -> None:
    async with smtp_sink(defer={"busy@example.com"}) as sink, chain_of(server(sink)) as chain:
        result = await chain.send(MESSAGE, SENDER, ["ops@example.com", "busy@example.com"])

    assert result.accepted == ("ops@example.com",)
    assert result.rejected["busy@example.com"].startswith("450 ")
    assert [m.rcpt_tos for m in sink.messages] == [["ops@example.com"]]


async def test_4xx_at_rcpt_for_all_fails_over() -> None:
    async with (
        smtp_sink(defer={"ops@example.com"}) as first,
        smtp_sink() as second,
        chain_of(server(first), server(second)) as chain,
    ):
        result = await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    deferred = result.attempts[0]
    assert (deferred.server, deferred.stage, deferred.code) == (first.name, "rcpt", 450)
    assert result.server == second.name and result.rejected == {}
    assert first.messages == [] and len(second.messages) == 1


async def test_all_servers_down_is_temporary() -> None:
    async with (
        closed_port() as a,
        hanging_server() as b,
        chain_of(server(a, timeout=0.5), server(b, timeout=0.5)) as chain,
    ):
        with pytest.raises(TemporaryFailure) as info:
            await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    attempts = info.value.attempts
    assert [(x.server, x.ok, x.stage) for x in attempts] == [
        (a.name, False, "connect"),
        (b.name, False, "timeout"),
    ]
    assert not info.value.permanent
    assert b.name in str(info.value)


async def test_invalid_addresses_never_reach_the_server() -> None:
    async with smtp_sink() as sink, chain_of(server(sink)) as chain:
        result = await chain.send(MESSAGE, SENDER, ["ops@example.com", "bad\r\nRCPT@x"])
        with pytest.raises(PermanentFailure):
            await chain.send(MESSAGE, SENDER, ["with space@example.com"])
        with pytest.raises(PermanentFailure):
            await chain.send(MESSAGE, "evil>@example.com", ["ops@example.com"])

    assert result.accepted == ("ops@example.com",)
    assert result.rejected["bad\r\nRCPT@x"].startswith("553 ")
    assert [m.rcpt_tos for m in sink.messages] == [["ops@example.com"]]


async def test_sequential_sends_reuse_one_connection() -> None:
    async with smtp_sink() as sink, chain_of(server(sink)) as chain:
        for i in range(10):
            await chain.send(MESSAGE, SENDER, [f"user{i}@example.com"])

    assert len(sink.messages) == 10
    assert sink.connections == 1


async def test_idle_connections_are_closed_after_idle_timeout() -> None:
    async with smtp_sink() as sink, chain_of(server(sink), idle_timeout=0.2) as chain:
        await chain.send(MESSAGE, SENDER, ["ops@example.com"])
        for _ in range(100):  # the server sees the QUIT within a few tenths of a second
            if sink.peak_connections and not sink.active:
                break
            await asyncio.sleep(0.05)
        assert sink.active == 0
        await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    assert sink.connections == 2 and len(sink.messages) == 2


async def test_concurrent_sends_share_a_capped_pool() -> None:
    async with (
        smtp_sink(data_delay=0.02) as sink,
        chain_of(server(sink), max_connections=5) as chain,
    ):
        results = await asyncio.gather(
            *(chain.send(MESSAGE, SENDER, [f"u{i}@example.com"]) for i in range(50))
        )

    assert len(results) == 50 and len(sink.messages) == 50
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == sorted(
        f"u{i}@example.com" for i in range(50)
    )
    assert sink.peak_connections <= 5
    assert 2 <= sink.connections <= 5  # more than one: the sends really ran side by side


async def test_cap_counts_connections_to_all_servers() -> None:
    """One slot in all: the idle connection to one server is closed to free it for another."""
    async with (
        smtp_sink() as a,
        smtp_sink() as b,
        chain_of(server(a), server(b), max_connections=1) as chain,
    ):
        results = await asyncio.wait_for(
            chain.probe(MESSAGE, SENDER, ["ops@example.com"]), timeout=20
        )
        for _ in range(100):
            if not a.active:
                break
            await asyncio.sleep(0.05)
        assert (a.active, b.active) == (0, 1)

    assert all(isinstance(r, SendResult) for r in results)
    assert len(a.messages) == len(b.messages) == 1


async def test_a_server_that_just_failed_is_skipped_for_a_while() -> None:
    failed_over: list[str] = []
    async with (
        hanging_server() as hang,
        smtp_sink() as good,
        chain_of(server(hang, timeout=0.5), server(good), on_failover=failed_over.append) as chain,
    ):
        first = await chain.send(MESSAGE, SENDER, ["ops@example.com"])
        second = await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    assert first.attempts[0].stage == "timeout" and first.attempts[0].elapsed >= 0.4
    skipped = second.attempts[0]
    assert (skipped.server, skipped.ok, skipped.stage) == (hang.name, False, "timeout")
    assert skipped.message.startswith("not tried: failed")
    assert hang.connections == 1  # the second send did not wait for it again
    assert failed_over == [hang.name, hang.name]
    assert len(good.messages) == 2


async def test_skipping_can_be_turned_off_and_spares_the_last_server() -> None:
    async with closed_port() as a, closed_port() as b:
        async with chain_of(server(a), server(b), skip_failed_for=0) as chain:
            for _ in range(2):
                with pytest.raises(TemporaryFailure) as off:
                    await chain.send(MESSAGE, SENDER, ["ops@example.com"])
        async with chain_of(server(a), server(b)) as chain:
            for _ in range(2):
                with pytest.raises(TemporaryFailure) as on:
                    await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    assert not any(x.message.startswith("not tried") for x in off.value.attempts)
    first, last = on.value.attempts
    assert first.message.startswith("not tried") and first.stage == "connect"
    assert not last.message.startswith("not tried")  # the last server is always tried


async def test_storm_with_the_first_server_down_reuses_the_second() -> None:
    async with (
        closed_port() as down,
        smtp_sink() as sink,
        chain_of(server(down), server(sink), max_connections=20) as chain,
    ):
        results = await asyncio.gather(
            *(chain.send(MESSAGE, SENDER, [f"u{i}@example.com"]) for i in range(200))
        )

    assert all(r.server == sink.name for r in results)
    assert len(sink.messages) == 200
    assert sink.connections <= 20 and sink.peak_connections <= 20


async def test_connection_dropped_by_the_server_while_idle_is_replaced() -> None:
    async with smtp_sink(session_timeout=0.3) as sink, chain_of(server(sink)) as chain:
        await chain.send(MESSAGE, SENDER, ["ops@example.com"])
        for _ in range(100):
            if not sink.active:
                break
            await asyncio.sleep(0.05)
        assert sink.active == 0  # the server hung up on our idle connection
        result = await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    assert [a.ok for a in result.attempts] == [True]  # not counted as a server fault
    assert sink.connections == 2 and len(sink.messages) == 2


def scripted_smtp(
    *, refuse: str = "", mails_per_session: int = 0
) -> Callable[[bytes], bytes | None]:
    """A minimal SMTP server for raw_server: accepts everything but RCPT TO `refuse`, and
    answers 421 to the MAIL after `mails_per_session` of them in one session (0: never)."""
    state = {"data": False, "mails": 0}

    def respond(line: bytes) -> bytes | None:
        if state["data"]:
            if line == b".":
                state["data"] = False
                return b"250 2.0.0 queued\r\n"
            return None
        verb = line.split(b":")[0].split(b" ")[0].upper()
        if verb == b"EHLO":
            state["mails"] = 0
            return b"250-test\r\n250 8BITMIME\r\n"
        if verb == b"MAIL":
            state["mails"] += 1
            if mails_per_session and state["mails"] > mails_per_session:
                return b"421 4.4.2 too many messages, closing\r\n"
        if verb == b"RCPT" and refuse and refuse.encode() in line:
            return b"550 5.1.1 no such user\r\n"
        if verb == b"DATA":
            state["data"] = True
            return b"354 go ahead\r\n"
        if verb == b"QUIT":
            return b"221 bye\r\n"
        return b"250 ok\r\n"

    return respond


def commands(fault: FaultServer) -> list[str]:
    known = {"EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT"}
    verbs = [line.split(b":")[0].split(b" ")[0].decode().upper() for line in fault.received]
    return [v for v in verbs if v in known]


async def test_a_connection_that_just_sent_is_reused_without_rset() -> None:
    async with (
        raw_server(b"220 test\r\n", respond=scripted_smtp()) as srv,
        chain_of(server(srv)) as chain,
    ):
        for _ in range(3):
            await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    assert srv.connections == 1
    assert "RSET" not in commands(srv)
    assert commands(srv).count("MAIL") == 3


async def test_rset_after_a_refused_transaction() -> None:
    async with (
        raw_server(b"220 test\r\n", respond=scripted_smtp(refuse="bad@")) as srv,
        chain_of(server(srv)) as chain,
    ):
        with pytest.raises(PermanentFailure):
            await chain.send(MESSAGE, SENDER, ["bad@example.com"])
        await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    assert srv.connections == 1
    assert commands(srv)[:6] == ["EHLO", "MAIL", "RCPT", "RSET", "MAIL", "RCPT"]


async def test_rset_after_a_longer_idle_spell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smtp_pool, "TRUST_CLEAN_FOR", 0.0)
    async with (
        raw_server(b"220 test\r\n", respond=scripted_smtp()) as srv,
        chain_of(server(srv)) as chain,
    ):
        for _ in range(2):
            await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    assert srv.connections == 1 and commands(srv).count("RSET") == 1


async def test_reused_connection_refusing_mail_is_replaced_not_failed_over() -> None:
    """A server may end a session after some messages: without the RSET that would have
    noticed, the send tries again on a fresh connection instead of failing over."""
    failed_over: list[str] = []
    async with (
        raw_server(b"220 test\r\n", respond=scripted_smtp(mails_per_session=1)) as srv,
        smtp_sink() as second,
        chain_of(server(srv), server(second), on_failover=failed_over.append) as chain,
    ):
        first = await chain.send(MESSAGE, SENDER, ["ops@example.com"])
        again = await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    assert first.server == again.server == srv.name
    assert [a.ok for a in again.attempts] == [True]
    assert srv.connections == 2 and failed_over == [] and second.messages == []


async def test_mail_refused_on_a_checked_connection_still_fails_over() -> None:
    async with (
        raw_server(
            b"220 test\r\n",
            respond=lambda line: (
                b"250 ok\r\n" if line.startswith(b"EHLO") else b"451 4.3.0 try later\r\n"
            ),
        ) as srv,
        smtp_sink() as second,
        chain_of(server(srv), server(second)) as chain,
    ):
        result = await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    refused = result.attempts[0]
    assert (refused.server, refused.stage, refused.code) == (srv.name, "mail", 451)
    assert result.server == second.name and srv.connections == 1


async def test_cancelled_send_gives_its_connection_back() -> None:
    async with (
        smtp_sink(data_delay=1.0) as slow,
        chain_of(server(slow), max_connections=1) as chain,
    ):
        task = asyncio.create_task(chain.send(MESSAGE, SENDER, ["ops@example.com"]))
        for _ in range(100):
            if slow.connections:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # in DATA now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # With the only slot leaked, this would wait forever.
        result = await asyncio.wait_for(
            chain.send(MESSAGE, SENDER, ["ops@example.com"]), timeout=20
        )

    assert result.server == slow.name
    assert slow.connections == 2  # the interrupted session was not reused


async def test_starttls_with_insecure_skip_verify(cert: tuple[Path, Path]) -> None:
    ctx = server_tls_context(*cert)
    async with smtp_sink(starttls=ctx, require_starttls=True) as sink:
        cfg = server(sink).model_copy(
            update={"tls_config": TlsClientConfig(insecure_skip_verify=True), "starttls": None}
        )
        async with chain_of(cfg) as chain:
            result = await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    assert result.server == sink.name
    assert sink.messages[0].tls


async def test_starttls_verifies_with_ca_file(cert: tuple[Path, Path]) -> None:
    ctx = server_tls_context(*cert)
    crt = str(cert[0])
    async with smtp_sink(starttls=ctx, require_starttls=True) as sink:
        good = server(sink).model_copy(
            update={"starttls": True, "tls_config": TlsClientConfig(ca_file=crt)}
        )
        named = server(sink).model_copy(
            update={
                "starttls": True,
                "tls_config": TlsClientConfig(ca_file=crt, server_name="localhost"),
            }
        )
        unverified = server(sink).model_copy(update={"starttls": True})
        async with chain_of(good) as chain:
            result = await chain.send(MESSAGE, SENDER, ["ops@example.com"])
        async with chain_of(named) as chain:
            await chain.send(MESSAGE, SENDER, ["ops@example.com"])
        async with chain_of(unverified) as chain:
            with pytest.raises(TemporaryFailure) as info:
                await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    assert result.server == sink.name
    assert [m.tls for m in sink.messages] == [True, True]
    [attempt] = info.value.attempts
    assert attempt.stage == "starttls"
    assert "certificate" in attempt.message.lower()


async def test_required_starttls_not_offered_fails_over() -> None:
    async with smtp_sink() as plain, smtp_sink() as other:
        required = server(plain).model_copy(update={"starttls": True})
        async with chain_of(required, server(other)) as chain:
            result = await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    assert (result.attempts[0].stage, result.attempts[0].server) == ("starttls", plain.name)
    assert plain.messages == [] and result.server == other.name


async def test_implicit_tls_with_server_name(cert: tuple[Path, Path]) -> None:
    ctx = server_tls_context(*cert)
    async with smtp_sink(implicit_tls=ctx) as sink:
        tls = TlsClientConfig(ca_file=str(cert[0]), server_name="localhost")
        cfg = SmtpServer(host=sink.host, port=sink.port, tls=True, tls_config=tls, timeout=5)
        async with chain_of(cfg) as chain:
            result = await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    assert result.server == sink.name
    assert sink.messages[0].tls


async def test_implicit_tls_with_a_client_certificate(
    cert: tuple[Path, Path], tmp_path: Path
) -> None:
    client_cert, client_key = self_signed_cert(tmp_path, "alertmail-client")
    ctx = server_tls_context(*cert)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(client_cert)
    async with smtp_sink(implicit_tls=ctx) as sink:
        base = TlsClientConfig(ca_file=str(cert[0]))
        with_cert = base.model_copy(
            update={"cert_file": str(client_cert), "key_file": str(client_key)}
        )
        configs = [
            SmtpServer(host=sink.host, port=sink.port, tls=True, tls_config=tls, timeout=5)
            for tls in (with_cert, base)
        ]
        async with chain_of(configs[0]) as chain:
            result = await chain.send(MESSAGE, SENDER, ["ops@example.com"])
        async with chain_of(configs[1]) as chain:
            with pytest.raises(TemporaryFailure):
                await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    assert result.server == sink.name
    assert len(sink.messages) == 1  # the one without a client certificate got nowhere


async def test_auth_with_the_right_password() -> None:
    async with smtp_sink(auth=("alerts", "s3cret-pw")) as sink:
        cfg = server(sink, username="alerts", password=SecretStr("s3cret-pw"))
        async with chain_of(cfg) as chain:
            await chain.send(MESSAGE, SENDER, ["ops@example.com"])

    assert sink.messages[0].login == "alerts"
    assert sink.auth_failures == 0


async def test_probe_reports_every_server() -> None:
    async with (
        closed_port() as down,
        smtp_sink() as a,
        smtp_sink(reject={"x@example.com"}) as b,
        chain_of(server(down), server(a), server(b)) as chain,
    ):
        results = await chain.probe(MESSAGE, SENDER, ["x@example.com"])

    first, second, third = results
    assert isinstance(first, Attempt) and (first.server, first.stage) == (down.name, "connect")
    assert isinstance(second, SendResult) and second.server == a.name
    assert second.reply.startswith("250")
    assert isinstance(third, Attempt) and (third.stage, third.code) == ("rcpt", 550)
    assert len(a.messages) == 1 and b.messages == []  # each server independently


def _echoing_auth_server(line: bytes) -> bytes | None:
    """Greets, offers AUTH PLAIN, and refuses it quoting the password back (a worst case)."""
    if line.upper().startswith(b"EHLO"):
        return b"250-echo.test\r\n250 AUTH PLAIN\r\n"
    if line.upper().startswith(b"AUTH PLAIN"):
        creds = base64.b64decode(line.split()[2]).split(b"\0")[2]
        return b"535 5.7.8 bad password " + creds + b"\r\n"
    return b"500 5.5.1 what\r\n"


async def test_password_never_in_attempts_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    password = "Tr0ub4dor-and-3"
    async with (
        raw_server(b"220 echo.test ESMTP\r\n", respond=_echoing_auth_server) as echo,
        smtp_sink(auth=("alerts", "another")) as refusing,
        smtp_sink() as good,
    ):
        servers = [
            server(s, username="alerts", password=SecretStr(password)) for s in (echo, refusing)
        ]
        async with chain_of(*servers, server(good)) as chain:
            result = await chain.send(MESSAGE, SENDER, ["ops@example.com"])
            probed = await chain.probe(MESSAGE, SENDER, ["ops@example.com"])

    assert [(a.stage, a.code) for a in result.attempts[:2]] == [("auth", 535), ("auth", 535)]
    assert any(b"AUTH PLAIN" in line for line in echo.received)  # the secret was sent
    texts = [repr(a) for a in result.attempts] + [repr(p) for p in probed]
    texts += [r.getMessage() for r in caplog.records]
    assert texts and caplog.records
    assert not [t for t in texts if password in t]
    assert "***" in result.attempts[0].message
