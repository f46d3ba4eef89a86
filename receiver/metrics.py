"""The receiver's own metrics, on an explicit registry (never the global one)."""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from receiver import __version__

OUTBOX_STATES = ("queued", "sending", "retrying", "sent", "superseded", "dead")
CHANNELS = ("email", "slack")


class ReceiverMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.build_info = Gauge(
            "alertmail_build_info",
            "alertmail version and Python it runs on; always 1.",
            ["version", "python_version"],
            registry=r,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.webhooks = Counter(
            "alertmail_webhooks_received",
            "Webhook requests by receiver and result "
            "(accepted, duplicate, invalid, unauthorized, too_large, store_error).",
            ["receiver", "result"],
            registry=r,
        )
        self.alerts = Counter(
            "alertmail_alerts_received",
            "Alerts received in accepted webhooks, by status.",
            ["status"],
            registry=r,
        )
        # Children the webhook handler bumps on every request, looked up once.
        self.firing_alerts = self.alerts.labels("firing")
        self.resolved_alerts = self.alerts.labels("resolved")
        self._webhook_children: dict[tuple[str, str], Counter] = {}
        self.deliveries = Counter(
            "alertmail_deliveries",
            "Delivery outcomes by channel (sent, retry, dead, superseded, duplicate, folded).",
            ["channel", "result"],
            registry=r,
        )
        for ch in CHANNELS:
            for result in ("sent", "retry", "dead", "superseded"):
                self.deliveries.labels(ch, result)
        self.duplicate_emails = self.deliveries.labels("email", "duplicate")
        self.outbox = Gauge(
            "alertmail_outbox_messages",
            "Messages in the outbox by channel and state.",
            ["channel", "state"],
            registry=r,
        )
        self.oldest_queued = Gauge(
            "alertmail_outbox_oldest_queued_age_seconds",
            "Age of the oldest message not yet delivered, 0 when none.",
            ["channel"],
            registry=r,
        )
        self.latency = Histogram(
            "alertmail_delivery_latency_seconds",
            "From webhook receipt to the message accepted by the server.",
            ["channel"],
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
        )
        self.failovers = Counter(
            "alertmail_smtp_failovers",
            "Sends that failed on this server and moved on.",
            ["server"],
            registry=r,
        )
        self.reload_ok = Gauge(
            "alertmail_config_last_reload_successful",
            "1 when the last config reload succeeded.",
            registry=r,
        )
        self.reload_ok.set(1)
        self.reload_time = Gauge(
            "alertmail_config_last_reload_success_timestamp_seconds",
            "When the config was last loaded successfully.",
            registry=r,
        )
        self.reload_time.set_to_current_time()
        self.reloads = Counter(
            "alertmail_config_reloads",
            "Config reload attempts by result.",
            ["result"],
            registry=r,
        )
        self.graphs = Counter(
            "alertmail_alert_graphs",
            "Alert graphs attached to emails (result=drawn) or left out, and why "
            "(host_not_allowed, no_expr, timeout, query_error, draw_error).",
            ["result"],
            registry=r,
        )
        for result in ("drawn", "timeout", "query_error", "draw_error"):
            self.graphs.labels(result)
        self.deadman_seen = Gauge(
            "alertmail_deadman_last_seen_timestamp_seconds",
            "When the dead man's switch alert was last received.",
            registry=r,
        )

    def webhook(self, receiver: str, result: str) -> Counter:
        """The webhooks counter of (receiver, result), looked up once per pair. Only for
        authenticated requests: the receiver name comes from the request."""
        key = (receiver, result)
        child = self._webhook_children.get(key)
        if child is None:
            child = self._webhook_children[key] = self.webhooks.labels(receiver, result)
        return child

    def set_outbox(
        self, counts: dict[tuple[str, str], int], oldest: dict[str, float], now: float
    ) -> None:
        for ch in CHANNELS:
            for state in OUTBOX_STATES:
                self.outbox.labels(ch, state).set(counts.get((ch, state), 0))
            created = oldest.get(ch)
            self.oldest_queued.labels(ch).set(0 if created is None else max(0.0, now - created))
