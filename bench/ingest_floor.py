"""The floor of durable ingest: what a webhook receiver costs on this machine with no logic.

    python bench/ingest_floor.py --port PORT --db FILE

An aiohttp app set up as the bare baseline is, whose handler checks the bearer token,
reads and parses the body (orjson), writes one row into SQLite (WAL, synchronous=FULL)
and answers 200 only after the commit. Concurrent requests share a transaction, written
by one thread, as the issue asks ("commit concurrent requests together"). No dedup,
history, routing or dispatch: every receiver that answers after its data is on disk
pays at least this much, so `bench/receiver.py` prints it next to alertmail and bare.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import queue
import signal
import sqlite3
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

try:  # the loop receiver/event_loop.py runs `alertmail receive` on
    from uvloop import new_event_loop as server_loop
except ImportError:
    from asyncio import new_event_loop as server_loop

HOST = "127.0.0.1"
EXPECTED = b"Bearer bench-token"  # bench/receiver.py's TOKEN
BACKLOG = 2048  # receiver/serve.py's

Row = tuple[float, str, str, str, str]
_Job = tuple[list[Row], "Future[list[int]]"]


def _writer(path: Path, jobs: queue.SimpleQueue[_Job | None]) -> None:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS notifications (id INTEGER PRIMARY KEY, received_at REAL,"
        " receiver TEXT, group_key TEXT, status TEXT, payload TEXT)"
    )
    while (job := jobs.get()) is not None:
        rows, fut = job
        try:
            db.execute("BEGIN IMMEDIATE")
            ids = [
                int(
                    db.execute(
                        "INSERT INTO notifications (received_at, receiver, group_key, status,"
                        " payload) VALUES (?,?,?,?,?)",
                        row,
                    ).lastrowid
                    or 0
                )
                for row in rows
            ]
            db.execute("COMMIT")
            fut.set_result(ids)
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            fut.set_exception(exc)
    db.close()


class GroupCommit:
    """Rows arriving while a commit runs go into the next one (as receiver/store_async)."""

    def __init__(self, jobs: queue.SimpleQueue[_Job | None]) -> None:
        self._jobs = jobs
        self._pending: list[tuple[Row, asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, row: Row) -> int:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((row, fut))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                done: Future[list[int]] = Future()
                self._jobs.put(([row for row, _ in batch], done))
                try:
                    ids = await asyncio.wrap_future(done)
                except sqlite3.Error as exc:
                    for _, fut in batch:
                        fut.set_exception(exc)
                    continue
                for (_, fut), i in zip(batch, ids, strict=True):
                    fut.set_result(i)
        finally:
            self._flusher = None


COMMIT = web.AppKey("commit", GroupCommit)


async def _webhook(request: web.Request) -> web.Response:
    auth = request.headers.get("Authorization", "").encode()
    if not hmac.compare_digest(auth, EXPECTED):
        return web.Response(status=401)
    body = await request.read()
    try:
        data: Any = orjson.loads(body)
        row = (
            asyncio.get_running_loop().time(),
            str(data["receiver"]),
            str(data["groupKey"]),
            str(data["status"]),
            body.decode(),
        )
    except (ValueError, KeyError, TypeError):
        return web.Response(status=400)
    try:
        notification_id = await request.app[COMMIT].write(row)
    except sqlite3.Error:
        return web.Response(status=503)
    answer = {"status": "ok", "id": notification_id}
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve(port: int, db: Path) -> None:
    jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
    writer = threading.Thread(target=_writer, args=(db, jobs), daemon=True)
    writer.start()
    app = web.Application(client_max_size=1 << 30)
    app[COMMIT] = GroupCommit(jobs)
    app.router.add_post("/webhook", _webhook)
    app.router.add_get("/healthz", _health)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, HOST, port, backlog=BACKLOG, reuse_address=True)
        await site.start()
        await stop.wait()
    finally:
        await runner.cleanup()
        jobs.put(None)
        await asyncio.to_thread(writer.join)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--db", type=Path, required=True)
    args = p.parse_args(argv)
    with asyncio.Runner(loop_factory=server_loop) as runner:
        runner.run(serve(args.port, args.db))
    return 0


if __name__ == "__main__":
    sys.exit(main())
