"""The Slack outbox worker: same durable outbox as email, its own pace and failures."""

from __future__ import annotations

import json

from receiver.channels.slack import SlackClient, SlackPermanent, SlackRetryable
from receiver.config import RetryPolicy
from receiver.delivery import OutboxWorker
from receiver.store import AttemptRecord, OutboxRow

# Posts to one target are paced 1/s by the client; several targets go in parallel.
MAX_CONCURRENT_POSTS = 8


class SlackWorker(OutboxWorker):
    channel = "slack"
    client: SlackClient | None = None

    def concurrency(self) -> int:
        if self.client is None or not self.runtime.config.slack.webhooks:
            return 0
        return MAX_CONCURRENT_POSTS

    def retry_policy(self) -> RetryPolicy:
        return self.runtime.config.slack.retry

    async def deliver(self, row: OutboxRow) -> None:
        assert self.client is not None
        target = self.runtime.config.slack.webhooks.get(row.target)
        if target is None:
            await self._dead(row, f"slack target {row.target!r} is no longer configured", [])
            return
        payload = json.loads(row.payload)
        store = self.store.store
        uses_api = target.token is not None
        thread_ts = None
        if uses_api and row.thread_id is not None:
            # Known only once the group's first message is posted: added at send time.
            thread_ts = await self.store.run(store.slack_thread, row.thread_id, row.target)
            if thread_ts:
                payload["thread_ts"] = thread_ts
        try:
            result = await self.client.post(row.target, target, payload)
        except SlackRetryable as exc:
            attempt = AttemptRecord(row.target, False, "post", exc.status, str(exc), 0.0)
            await self._retry_or_die(row, str(exc), [attempt], retry_after=exc.retry_after)
            return
        except SlackPermanent as exc:
            attempt = AttemptRecord(row.target, False, "post", exc.status, str(exc), 0.0)
            await self._dead(row, f"slack refused it: {exc.error} ({exc})", [attempt])
            return
        attempt = AttemptRecord(
            row.target, True, "post", result.status, result.body[:200], result.elapsed
        )
        if uses_api and row.thread_id is not None and result.ts and not thread_ts:
            await self.store.run(
                store.set_slack_thread, row.thread_id, row.target, result.ts, result.channel
            )
        await self._sent(
            row,
            [attempt],
            server=f"slack:{row.target}",
            reply=f"{result.status} {result.body[:200]}",
        )
