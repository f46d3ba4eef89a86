"""SQLite schema versions. Index i migrates version i to i+1 (PRAGMA user_version)."""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # v1
    """
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY,
        received_at REAL NOT NULL,
        receiver TEXT NOT NULL,
        group_key TEXT NOT NULL,
        status TEXT NOT NULL,
        dedup_key TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',   -- pending | processed | duplicate
        reason TEXT
    );
    CREATE INDEX notifications_pending ON notifications(state) WHERE state = 'pending';
    CREATE INDEX notifications_received ON notifications(received_at);

    -- The last notification accepted per group: the unique key duplicates are checked on.
    CREATE TABLE group_last (
        receiver TEXT NOT NULL,
        group_key TEXT NOT NULL,
        dedup_key TEXT NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (receiver, group_key)
    );

    CREATE TABLE alerts (
        fingerprint TEXT NOT NULL,
        starts_at TEXT NOT NULL,
        alertname TEXT NOT NULL,
        severity TEXT NOT NULL,
        status TEXT NOT NULL,
        labels TEXT NOT NULL,
        annotations TEXT NOT NULL,
        ends_at TEXT,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        last_notification_id INTEGER,
        PRIMARY KEY (fingerprint, starts_at)
    );
    CREATE INDEX alerts_last_seen ON alerts(last_seen);

    CREATE TABLE threads (
        id INTEGER PRIMARY KEY,
        route TEXT NOT NULL,
        group_key TEXT NOT NULL,
        opened_at REAL NOT NULL,
        closed_at REAL,
        subject TEXT,
        root_message_id TEXT
    );
    CREATE UNIQUE INDEX threads_open ON threads(route, group_key) WHERE closed_at IS NULL;

    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        target TEXT NOT NULL,                 -- JSON list of recipients / Slack target name
        kind TEXT NOT NULL,                   -- alert | digest | catchup | report | deadman | test
        priority INTEGER NOT NULL,
        state TEXT NOT NULL,                  -- queued|sending|retrying|sent|superseded|dead
        supersede_key TEXT,
        thread_id INTEGER,
        notification_id INTEGER,
        message_id TEXT,
        subject TEXT,
        payload BLOB NOT NULL,
        created_at REAL NOT NULL,
        received_at REAL NOT NULL,            -- when its webhook arrived (delivery latency)
        next_attempt_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        server TEXT,
        reply TEXT,
        recipients_result TEXT,
        finished_at REAL,
        reason TEXT
    );
    CREATE INDEX outbox_due ON outbox(channel, state, priority, next_attempt_at)
        WHERE state IN ('queued', 'retrying');
    CREATE INDEX outbox_supersede ON outbox(supersede_key)
        WHERE state IN ('queued', 'retrying');
    CREATE INDEX outbox_created ON outbox(created_at);

    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        outbox_id INTEGER NOT NULL REFERENCES outbox(id) ON DELETE CASCADE,
        at REAL NOT NULL,
        server TEXT NOT NULL,
        ok INTEGER NOT NULL,
        stage TEXT NOT NULL,
        code INTEGER,
        message TEXT NOT NULL,
        elapsed REAL NOT NULL
    );
    CREATE INDEX attempts_outbox ON attempts(outbox_id);

    CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # v2: digests, flood control, Slack threads
    """
    CREATE TABLE digest_entries (
        id INTEGER PRIMARY KEY,
        route TEXT NOT NULL,
        bucket REAL NOT NULL,                 -- start of the digest window it belongs to
        notification_id INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX digest_entries_bucket ON digest_entries(route, bucket);

    -- One row per flushed digest window: the unique key that makes a restart neither lose
    -- nor double-send a digest.
    CREATE TABLE digests (
        route TEXT NOT NULL,
        bucket REAL NOT NULL,
        flushed_at REAL NOT NULL,
        entries INTEGER NOT NULL,
        PRIMARY KEY (route, bucket)
    );

    -- Immediate emails counted against each recipient's flood budget.
    CREATE TABLE flood_budget (
        recipient TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX flood_budget_recipient ON flood_budget(recipient, at);

    -- Notifications over a recipient's budget, waiting for that recipient's catch-up email.
    CREATE TABLE folded (
        id INTEGER PRIMARY KEY,
        recipient TEXT NOT NULL,
        route TEXT NOT NULL,
        notification_id INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        created_at REAL NOT NULL,
        catchup_outbox_id INTEGER
    );
    CREATE INDEX folded_pending ON folded(recipient) WHERE catchup_outbox_id IS NULL;

    CREATE TABLE slack_threads (
        thread_id INTEGER NOT NULL,
        target TEXT NOT NULL,
        ts TEXT NOT NULL,
        channel TEXT,
        PRIMARY KEY (thread_id, target)
    );
    """,
    # v3: scheduled reports
    """
    -- One row per report period queued: (name, period_end) is the unique key that makes a
    -- restart never send the same period twice. Written in the transaction that queues the
    -- email, so a crash while a report is being built leaves no row and it is built again.
    CREATE TABLE report_runs (
        name TEXT NOT NULL,
        period_end REAL NOT NULL,
        period_start REAL NOT NULL,
        queued_at REAL NOT NULL,
        outbox_id INTEGER,
        PRIMARY KEY (name, period_end)
    );

    -- When a report was first scheduled: periods that ended before it are not "missed" ones
    -- (adding a report on Wednesday does not send last Monday's report at once).
    CREATE TABLE report_schedules (
        name TEXT PRIMARY KEY,
        first_seen REAL NOT NULL
    );
    """,
    # v4: replacing a thread's first message that nobody received
    """
    -- A message queued while its thread's first message was undelivered carries two
    -- renderings: as the thread's new first message (payload) and as a reply to the old one
    -- (reply_payload). Which one is sent is decided when it is first claimed.
    ALTER TABLE outbox ADD COLUMN replaces_root TEXT;
    ALTER TABLE outbox ADD COLUMN reply_payload BLOB;
    CREATE INDEX outbox_message ON outbox(message_id) WHERE message_id IS NOT NULL;
    -- One message per thread and recipients in flight at a time: sent in order.
    CREATE INDEX outbox_sending ON outbox(supersede_key) WHERE state = 'sending';
    """,
    # v5: a batch of webhooks written by one statement
    """
    -- Inserting into this view writes a batch of ingested webhooks: each row says by its
    -- kind which table it goes to (n: notifications, and group_last unless a duplicate;
    -- a: alert history; d: digest entries; k: kv). One multi-row INSERT is one statement
    -- step, so the store thread gives up the GIL (and must win it back from the event
    -- loop) once per batch rather than once per table. Rows go in the order given. A row
    -- of another kind is ignored (the padding rows' kind is NULL); a trigger refusing them
    -- would cost a statement journal on every batch.
    CREATE VIEW ingest_rows (kind, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10) AS
        SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0;
    CREATE TRIGGER ingest_notification INSTEAD OF INSERT ON ingest_rows WHEN NEW.kind = 'n'
    BEGIN
        INSERT INTO notifications (id, received_at, receiver, group_key, status, dedup_key,
            payload, state, reason)
        VALUES (NEW.c1, NEW.c2, NEW.c3, NEW.c4, NEW.c5, NEW.c6, NEW.c7, NEW.c8, NEW.c9);
        INSERT INTO group_last (receiver, group_key, dedup_key, received_at)
        SELECT NEW.c3, NEW.c4, NEW.c6, NEW.c2 WHERE NEW.c8 != 'duplicate'
        ON CONFLICT (receiver, group_key) DO UPDATE SET
            dedup_key = excluded.dedup_key, received_at = excluded.received_at;
    END;
    -- Plans commit out of id order (one settled at ingest overtakes an older one still
    -- being rendered): an alert keeps the newest notification's state, and the earliest
    -- first_seen.
    CREATE TRIGGER ingest_alert INSTEAD OF INSERT ON ingest_rows WHEN NEW.kind = 'a'
    BEGIN
        INSERT INTO alerts (fingerprint, starts_at, alertname, severity, status, labels,
            annotations, ends_at, first_seen, last_seen, last_notification_id)
        VALUES (NEW.c1, NEW.c2, NEW.c3, NEW.c4, NEW.c5, NEW.c6, NEW.c7, NEW.c8, NEW.c9,
            NEW.c9, NEW.c10)
        ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
            first_seen = min(alerts.first_seen, excluded.first_seen),
            last_seen = max(alerts.last_seen, excluded.last_seen),
            status = CASE WHEN alerts.last_notification_id > excluded.last_notification_id
                THEN alerts.status ELSE excluded.status END,
            annotations = CASE WHEN alerts.last_notification_id > excluded.last_notification_id
                THEN alerts.annotations ELSE excluded.annotations END,
            ends_at = CASE WHEN alerts.last_notification_id > excluded.last_notification_id
                THEN alerts.ends_at ELSE excluded.ends_at END,
            last_notification_id = max(coalesce(alerts.last_notification_id, 0),
                excluded.last_notification_id);
    END;
    CREATE TRIGGER ingest_digest_entry INSTEAD OF INSERT ON ingest_rows WHEN NEW.kind = 'd'
    BEGIN
        INSERT INTO digest_entries (route, bucket, notification_id, created_at)
        VALUES (NEW.c1, NEW.c2, NEW.c3, NEW.c4);
    END;
    CREATE TRIGGER ingest_kv INSTEAD OF INSERT ON ingest_rows WHEN NEW.kind = 'k'
    BEGIN
        INSERT INTO kv (key, value) VALUES (NEW.c1, NEW.c2)
        ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    END;
    """,
    # v6: superseding and ordering per thread and recipient
    """
    -- A newer email of a thread takes its recipients from the thread's older undelivered
    -- ones, and a thread's messages are sent one at a time: both look messages up by thread.
    CREATE INDEX outbox_thread ON outbox(thread_id, channel, state) WHERE thread_id IS NOT NULL;
    -- A copy of a message re-sent to recipients deferred at RCPT: the row it copies, whose
    -- place in the thread it keeps (what is newer than it is decided by that place).
    ALTER TABLE outbox ADD COLUMN origin_id INTEGER;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
