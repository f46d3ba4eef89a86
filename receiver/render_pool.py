"""Alert emails rendered in worker processes.

Jinja, CSS inlining and MIME building cost a few milliseconds of CPU per email; in a thread
they hold the interpreter lock the event loop needs to answer webhooks, and a storm of
notifications would make Alertmanager wait. Worker processes take that work off the main
interpreter entirely. Each worker builds its own Renderer from the same templates; a
config reload starts a new pool, so edited templates are picked up.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from email.policy import SMTP
from pathlib import Path
from zoneinfo import ZoneInfo

from receiver.fallback import fallback_email
from receiver.model import Notification
from receiver.render import InlineImage, Renderer, ThreadRef, make_message_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertJob:
    """Everything one alert email needs: plain, picklable data."""

    n: Notification
    sender: str
    recipients: tuple[str, ...]
    thread_root: str | None
    thread_subject: str | None
    now: datetime
    graphs: dict[str, InlineImage]
    message_id: str | None = None  # set when two variants of one message are rendered


Rendered = tuple[bytes, str, str]
"""(message bytes, Message-ID, Subject)"""


def render_alert(renderer: Renderer, job: AlertJob) -> Rendered:
    n = job.n
    message_id = job.message_id or make_message_id(job.sender)
    try:
        wire = renderer.alert_wire(
            n,
            sender=job.sender,
            recipients=job.recipients,
            message_id=message_id,
            thread=ThreadRef(root_message_id=job.thread_root, subject=job.thread_subject),
            now=job.now,
            images=list({g.cid: g for g in job.graphs.values()}.values()),
            graph_cids={fp: g.cid for fp, g in job.graphs.items()},
        )
    except Exception:
        # A broken user template must not swallow the page: send a plain one instead.
        log.exception("rendering %s failed; sending the built-in plain email", n.group_key)
        msg = fallback_email(
            n,
            sender=job.sender,
            recipients=job.recipients,
            message_id=message_id,
            subject=job.thread_subject or renderer.thread_subject(n),
            root=job.thread_root,
            now=job.now,
        )
        return msg.as_bytes(policy=SMTP), str(msg["Message-ID"]), str(msg["Subject"])
    return wire.data, wire.message_id, wire.subject


# One Renderer per worker process, made by the pool's initializer: state of that process,
# never of the receiver's own.
_worker_renderer: Renderer | None = None


def _init_worker(templates_dir: str | None, timezone: str) -> None:
    global _worker_renderer
    _worker_renderer = Renderer(Path(templates_dir) if templates_dir else None, ZoneInfo(timezone))


def _ready() -> bool:
    return _worker_renderer is not None


def _render_in_worker(jobs: list[AlertJob]) -> list[Rendered | Exception]:
    renderer = _worker_renderer
    assert renderer is not None
    return [_render_here(renderer, job) for job in jobs]


# Renders asked for in one turn of the event loop (a dispatcher chunk) are sent to the
# workers in about this many batches per worker: each batch is one pickle and one pipe
# round trip instead of one per email, and more batches than workers keep both busy when
# one runs slower.
BATCHES_PER_WORKER = 2

_Waiting = tuple[AlertJob, "asyncio.Future[Rendered]"]


class RenderPool:
    """Renders in ``workers`` processes (started on first use); 0 renders in a thread."""

    def __init__(self, renderer: Renderer, workers: int) -> None:
        self.renderer = renderer
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._waiting: list[_Waiting] = []
        self._batches: set[asyncio.Task[None]] = set()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            tdir = self.renderer.templates_dir
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                # spawn: forking a process that runs threads and an event loop can copy
                # held locks into the child.
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(str(tdir) if tdir else None, self.renderer.timezone.key),
            )
        return self._pool

    def warm_up(self) -> None:
        """Start the workers now: a storm's first emails should not wait for interpreters
        to start (a few hundred milliseconds each)."""
        if self.workers > 0:
            pool = self._executor()
            for _ in range(self.workers):
                pool.submit(_ready)

    async def render(self, job: AlertJob) -> Rendered:
        if self.workers <= 0:
            return await asyncio.to_thread(render_alert, self.renderer, job)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Rendered] = loop.create_future()
        self._waiting.append((job, fut))
        if len(self._waiting) == 1:
            loop.call_soon(self._submit_waiting)
        return await fut

    def _submit_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        size = -(-len(waiting) // (BATCHES_PER_WORKER * self.workers))
        for i in range(0, len(waiting), size):
            task = asyncio.create_task(self._render_batch(waiting[i : i + size]))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _render_batch(self, batch: list[_Waiting]) -> None:
        jobs = [job for job, _ in batch]
        executor = self._executor()
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                executor, _render_in_worker, jobs
            )
        except BrokenProcessPool:
            # A worker died (OOM killer, a crash in a C extension): render here this time
            # and start a fresh pool for the next email.
            log.error("render worker died; rendering in-process and restarting the pool")
            if self._pool is executor:  # not a fresh one another batch already started
                self.close()
            results = [await asyncio.to_thread(_render_here, self.renderer, j) for j in jobs]
        except Exception as exc:  # the batch could not be sent or its answer read
            results = [exc] * len(jobs)
        except BaseException:
            for _, fut in batch:  # cancelled (shutdown): so are its callers
                fut.cancel()
            raise
        for (_, fut), result in zip(batch, results, strict=True):
            if fut.done():  # its caller was cancelled
                continue
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    def close(self) -> None:
        if self._pool is not None:
            # Jobs already submitted finish; their results still reach their callers.
            self._pool.shutdown(wait=False)
            self._pool = None


def _render_here(renderer: Renderer, job: AlertJob) -> Rendered | Exception:
    """One email, or its failure: that email's alone, not its batch's."""
    try:
        return render_alert(renderer, job)
    except Exception as exc:
        return exc
