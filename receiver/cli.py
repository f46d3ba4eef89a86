"""The ``alertmail`` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from receiver import __version__
from receiver.errors import AlertmailError, ConfigError, DeliveryError
from receiver.logsetup import configure_logging

if TYPE_CHECKING:
    from receiver.config import Config
    from receiver.store import OutboxRow

# asyncio, email and the config models (pydantic) are imported by the commands that use
# them: `alertmail export --one-shot` pays none of that start-up (~0.15 s of CPU).

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "alertmail.yml"
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"config file (default: {DEFAULT_CONFIG})",
    )
    common.add_argument("--log-format", choices=("text", "json"), default="text")
    common.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )

    p = argparse.ArgumentParser(
        prog="alertmail",
        description="Email and Slack alerting for Prometheus and Alertmanager.",
    )
    p.add_argument("--version", action="version", version=f"alertmail {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("receive", parents=[common], help="run the webhook receiver service")
    sub.add_parser("check", parents=[common], help="validate the config and templates")

    ex = sub.add_parser("export", parents=[common], help="run the log-metrics exporter")
    ex.add_argument(
        "--one-shot", action="store_true", help="read the sources once, print the metrics, exit"
    )

    ob = sub.add_parser("outbox", parents=[common], help="inspect, re-queue or drop deliveries")
    ob_sub = ob.add_subparsers(dest="outbox_command", metavar="ACTION")
    ls = ob_sub.add_parser("list", parents=[common], help="list messages (newest first)")
    ls.add_argument(
        "--state",
        action="append",
        choices=("queued", "sending", "retrying", "sent", "superseded", "dead"),
    )
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    rt = ob_sub.add_parser("retry", parents=[common], help="re-queue one message, or --dead")
    rt.add_argument("id", nargs="?", type=int)
    rt.add_argument("--dead", action="store_true", help="re-queue every dead message")
    dr = ob_sub.add_parser("drop", parents=[common], help="stop trying to send a message")
    dr.add_argument("id", type=int)

    rp = sub.add_parser("report", parents=[common], help="build one report now")
    rp.add_argument("name", metavar="NAME")
    rp.add_argument(
        "--out", type=Path, metavar="DIR", help="write NAME.eml and its PNGs, don't send"
    )
    rp.add_argument("--send", action="store_true", help="queue it in the outbox now")

    te = sub.add_parser(
        "test-email", parents=[common], help="send a test email through each configured SMTP server"
    )
    te.add_argument("--to", required=True, metavar="ADDR")

    dm = sub.add_parser(
        "demo", help="the whole stack on this machine with demo traffic (docs/demo.md)"
    )
    dm.add_argument(
        "--port-base",
        type=int,
        metavar="N",
        help="ports N..N+4 instead of 9090, 9093, 9095, 9146, 2525",
    )
    dm.add_argument(
        "--data-dir", default=".demo", metavar="DIR", help="configs, data, process logs"
    )
    dm.add_argument("--mail-dir", default="demo-mail", metavar="DIR", help="emails as .eml files")
    dm.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop by itself (default: Ctrl-C)"
    )
    dm.add_argument("--log-format", choices=("text", "json"), default="text")
    dm.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))

    ro = sub.add_parser("routes", parents=[common], help="which routes a label set reaches")
    ro_sub = ro.add_subparsers(dest="routes_command", metavar="ACTION", required=True)
    rtest = ro_sub.add_parser("test", parents=[common], help="like `amtool config routes test`")
    rtest.add_argument("labels", nargs="*", metavar="LABEL=VALUE")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"alertmail: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except AlertmailError as exc:
        print(f"alertmail: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "export":
        from exporters.cli import run as run_exporter

        return run_exporter(args.config, one_shot=args.one_shot)
    if cmd == "demo":
        from receiver.demo import run_demo

        return run_demo(args)
    from receiver.config import load_config

    config = load_config(args.config)
    if cmd == "check":
        return _check(config, args.config)
    if cmd == "receive":
        from receiver.event_loop import run
        from receiver.serve import serve

        run(serve(config, Path(args.config)))
        return 0
    if cmd == "outbox":
        return _outbox(config, args)
    import asyncio

    if cmd == "test-email":
        return asyncio.run(_test_email(config, args.to))
    if cmd == "report":
        from receiver.reports import report_command

        return asyncio.run(
            report_command(config, args.name, args.out, args.send, config_path=Path(args.config))
        )
    if cmd == "routes":
        return _routes_test(config, args.labels)
    raise AssertionError(cmd)


def _check(config: Config, path: str) -> int:
    from receiver.runtime import build_renderer

    build_renderer(config, path)
    print(f"{path}: OK ({len(config.routes)} routes, templates OK)")
    return 0


def _outbox(config: Config, args: argparse.Namespace) -> int:
    from receiver.store import Store

    store = Store(config.storage.path)
    try:
        action = args.outbox_command or "list"
        now = time.time()
        if action == "list":
            rows = store.list_outbox(
                args.state if "state" in args else None, getattr(args, "limit", 50)
            )
            if getattr(args, "json", False):
                print(json.dumps([_row_json(r) for r in rows], indent=2))
            else:
                _print_rows(rows, config)
                for recipient, count in sorted(store.waiting_folds().items()):
                    print(
                        f"flood limit: {count} notification(s) for {recipient} folded, "
                        "waiting for the next catch-up email"
                    )
                for route, bucket, count in store.pending_digests():
                    print(
                        f"digest {route}: {count} notification(s) in the window from "
                        f"{_fmt_time(bucket, config)}"
                    )
            return 0
        if action == "retry":
            if args.dead:
                n = store.requeue(now, dead=True)
            elif args.id is not None:
                n = store.requeue(now, args.id)
            else:
                print("alertmail outbox retry: give an ID or --dead", file=sys.stderr)
                return EXIT_CONFIG
            print(f"re-queued {n} message(s); a running receiver sends them within a second")
            if not n and args.id is not None:
                _why_unchanged(store.get_outbox(args.id), args.id)
            return 0 if n or args.dead else 1
        if action == "drop":
            n = store.drop(args.id, now)
            print(f"dropped {n} message(s)")
            if not n:
                _why_unchanged(store.get_outbox(args.id), args.id)
            return 0 if n else 1
        raise AssertionError(action)
    finally:
        store.close()


def _why_unchanged(row: OutboxRow | None, outbox_id: int) -> None:
    if row is None:
        print(f"no message {outbox_id} in the outbox", file=sys.stderr)
    elif row.state == "sending":
        print(f"message {outbox_id} is being sent right now; try again after", file=sys.stderr)
    else:
        print(f"message {outbox_id} is {row.state}: nothing to do", file=sys.stderr)


def _fmt_time(ts: float | None, config: Config) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=config.tz).strftime("%Y-%m-%d %H:%M:%S")


def _row_json(r: object) -> dict[str, object]:
    from receiver.store import OutboxRow

    assert isinstance(r, OutboxRow)
    return {
        "id": r.id,
        "channel": r.channel,
        "kind": r.kind,
        "state": r.state,
        "recipients": r.recipients,
        "subject": r.subject,
        "message_id": r.message_id,
        "priority": r.priority,
        "attempts": r.attempts,
        "created_at": r.created_at,
        "next_attempt_at": r.next_attempt_at if r.state in ("queued", "retrying") else None,
        "last_error": r.last_error,
        "server": r.server,
        "reply": r.reply,
        "recipients_result": json.loads(r.recipients_result) if r.recipients_result else None,
        "reason": r.reason,
        "finished_at": r.finished_at,
    }


def _print_rows(rows: Sequence[object], config: Config) -> None:
    from receiver.store import OutboxRow

    if not rows:
        print("outbox is empty")
        return
    print(f"{'ID':>6}  {'STATE':<10} {'CHANNEL':<6} {'CREATED':<19}  {'TRIES':>5}  TO / DETAIL")
    for r in rows:
        assert isinstance(r, OutboxRow)
        to = ", ".join(r.recipients)
        print(
            f"{r.id:>6}  {r.state:<10} {r.channel:<6} {_fmt_time(r.created_at, config):<19}  "
            f"{r.attempts:>5}  {to}"
        )
        print(f"{'':>8}subject: {r.subject or '-'}")
        if r.state == "sent":
            print(f"{'':>8}sent {_fmt_time(r.finished_at, config)} via {r.server}: {r.reply}")
            results = json.loads(r.recipients_result) if r.recipients_result else {}
            for addr, reply in sorted(results.items()):
                if not str(reply).startswith("2"):
                    print(f"{'':>8}not to {addr}: {reply}")
        elif r.state == "queued" and r.next_attempt_at > time.time():
            print(f"{'':>8}held until {_fmt_time(r.next_attempt_at, config)}")
        elif r.state == "retrying":
            print(
                f"{'':>8}next attempt {_fmt_time(r.next_attempt_at, config)}; "
                f"last error: {r.last_error}"
            )
        elif r.state in ("dead", "superseded"):
            print(f"{'':>8}{r.state}: {r.reason}")


async def _test_email(config: Config, to: str) -> int:
    import email.policy

    from receiver.channels.email import SendResult
    from receiver.render import Renderer, envelope_address, make_message_id
    from receiver.runtime import build_smtp

    chain = build_smtp(config, None)
    if chain is None or config.smtp is None:
        raise ConfigError("<config>", "smtp", "no smtp section: nothing to test")
    renderer = Renderer(config.templates_dir, config.tz)
    ok = True
    try:
        msg = renderer.test_email(
            sender=config.smtp.from_,
            to=to,
            message_id=make_message_id(config.smtp.from_),
            now=datetime.now(UTC),
        )
        try:
            results = await chain.probe(
                msg.as_bytes(policy=email.policy.SMTP), envelope_address(config.smtp.from_), [to]
            )
        except DeliveryError as exc:
            print(f"not sent: {exc}", file=sys.stderr)
            return 1
        for server, res in zip(config.smtp.servers, results, strict=False):
            if isinstance(res, SendResult):
                rejected = f" (refused: {res.rejected})" if res.rejected else ""
                print(f"{server.name}: OK {res.reply}{rejected}")
                ok = ok and not res.rejected
            else:
                code = f"{res.code} " if res.code else ""
                print(f"{server.name}: FAILED at {res.stage}: {code}{res.message}")
                ok = False
    finally:
        await chain.close()
    return 0 if ok else 1


def _routes_test(config: Config, pairs: Sequence[str]) -> int:
    from receiver.routing import select_routes

    labels: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            print(f"alertmail routes test: expected LABEL=VALUE, got {pair!r}", file=sys.stderr)
            return EXIT_CONFIG
        labels[name] = value.strip('"')
    matches = select_routes(config.routes, labels)
    if not matches:
        print("no route matches: notifications with these labels are recorded, not sent")
        return 1
    for m in matches:
        r = m.route
        matchers = ", ".join(str(x) for x in r.matchers) or "(default route)"
        channels = [f"email: {', '.join(r.email)}"] if r.email else []
        if r.slack:
            channels.append(f"slack: {', '.join(r.slack)}")
        mode = r.mode if r.mode == "immediate" else f"digest every {r.every:.0f}s"
        print(f"{m.key}  [{matchers}]  {mode}  {'; '.join(channels) or 'no channels'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
