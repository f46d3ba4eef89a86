"""A tiny local SMTP server that stores every message it accepts as an .eml file.

``python -m receiver.mailsink --listen 127.0.0.1:2525 --dir demo-mail`` — used by
``alertmail demo`` and the end-to-end tests instead of a real mail server. Every
recipient is accepted; nothing is relayed. Files are named
``<UTC time>-<counter>.eml`` and appear atomically (written, then renamed), so a
reader never sees half a message.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

log = logging.getLogger(__name__)


class _Handler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content or b""
        # The envelope is not in the message; keep it as a header, as local MTAs do.
        head = (
            f"X-Mailsink-Envelope: from=<{envelope.mail_from}> to=<{','.join(envelope.rcpt_tos)}>"
        )
        with self._lock:
            n = next(self._counter)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = self.directory / f"{stamp}-{os.getpid()}-{n:04d}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(head.encode() + b"\r\n" + data)
        tmp.replace(path)
        log.info("stored %s (%d bytes, to %s)", path.name, len(data), ", ".join(envelope.rcpt_tos))
        return f"250 2.0.0 Ok: stored as {path.name}"


class MailSink:
    """The SMTP server in a background thread (aiosmtpd's Controller); start()/stop()."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 2525) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # 30 MiB: alert and report emails with inline images fit comfortably.
        self._controller = Controller(
            _Handler(directory), hostname=host, port=port, data_size_limit=30 * 1024 * 1024
        )

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m receiver.mailsink", description=__doc__)
    p.add_argument("--listen", default="127.0.0.1:2525", metavar="HOST:PORT")
    p.add_argument("--dir", default="mail", type=Path, help="where the .eml files go")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s mailsink %(message)s")
    host, _, port = args.listen.rpartition(":")
    sink = MailSink(args.dir, host or "127.0.0.1", int(port))
    sink.start()
    log.info("listening on %s, storing messages in %s", args.listen, args.dir.resolve())
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    sink.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
