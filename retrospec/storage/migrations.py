"""Numbered, append-only schema migrations (never edit a shipped one; add the next number)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from retrospec.clock import now_ms
from retrospec.storage.db import connect, transaction

# Conventions: every *_at column is INTEGER epoch milliseconds UTC; ids a client chooses are
# validated TEXT; JSON columns are TEXT holding compact JSON.
MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial schema",
        """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE sites (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    origins TEXT NOT NULL DEFAULT '[]',
    promote_after INTEGER,
    retention_days REAL,
    created_at INTEGER NOT NULL
);

CREATE TABLE site_keys (
    id INTEGER PRIMARY KEY,
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX site_keys_site ON site_keys(site_id);

-- One row per browser session (id chosen by the SDK, validated).
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    started_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    user_id TEXT,
    user_email TEXT,
    user_name TEXT,
    anonymous_id TEXT,
    user_key TEXT,
    user_agent TEXT,
    browser TEXT,
    os TEXT,
    entry_url TEXT,
    last_url TEXT,
    release TEXT,
    environment TEXT,
    sdk TEXT,
    batches INTEGER NOT NULL DEFAULT 0,
    chunks INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    raw_bytes INTEGER NOT NULL DEFAULT 0,
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    -- replay: none (no events yet) | pending | ready | no_snapshot | error | expired
    replay_status TEXT NOT NULL DEFAULT 'none',
    replay_reason TEXT,
    replay_chunks INTEGER NOT NULL DEFAULT 0,
    replay_key TEXT,
    replay_bytes INTEGER,
    replay_events INTEGER,
    replay_start_ts INTEGER,
    replay_end_ts INTEGER,
    duration_ms INTEGER,
    active_ms INTEGER,
    pages TEXT,
    clicks INTEGER,
    rage_clicks INTEGER,
    replay_built_at INTEGER,
    expired_at INTEGER
);
CREATE INDEX sessions_site_seen ON sessions(site_id, last_seen_at);
CREATE INDEX sessions_seen ON sessions(last_seen_at);
CREATE INDEX sessions_replay_dirty ON sessions(last_seen_at) WHERE chunks > replay_chunks;

-- One row per ingest batch (the idempotency record); blob_key is NULL for failure-only batches
-- and after purge.
CREATE TABLE chunks (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    site_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    raw_bytes INTEGER NOT NULL DEFAULT 0,
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    failure_count INTEGER NOT NULL DEFAULT 0,
    blob_key TEXT,
    purged_at INTEGER,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
CREATE INDEX chunks_blob_age ON chunks(received_at) WHERE blob_key IS NOT NULL;

-- Failures keep a short summary forever; payload (stack, context, tags) is purged with
-- the replay data. Session facts are copied in so clustering needs no join.
CREATE TABLE failures (
    id INTEGER PRIMARY KEY,
    site_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    type TEXT,
    message TEXT,
    url TEXT,
    ts INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    method TEXT,
    request_url TEXT,
    status INTEGER,
    duration_ms REAL,
    release TEXT,
    environment TEXT,
    browser TEXT,
    os TEXT,
    user_key TEXT,
    fingerprint TEXT,
    cluster_id INTEGER,
    payload TEXT
);
CREATE INDEX failures_unclustered ON failures(id) WHERE cluster_id IS NULL;
CREATE INDEX failures_cluster ON failures(cluster_id, received_at);
CREATE INDEX failures_session ON failures(session_id, ts);
CREATE INDEX failures_payload_age ON failures(received_at) WHERE payload IS NOT NULL;

-- A cluster groups failures by (site, fingerprint). It is a candidate until promote_after
-- similar failures arrive; from then on it is an issue (same id) with a lifecycle status.
CREATE TABLE clusters (
    id INTEGER PRIMARY KEY,
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    fingerprint TEXT NOT NULL,
    kind TEXT NOT NULL,
    basis TEXT NOT NULL,
    title TEXT NOT NULL,
    culprit TEXT,
    frames TEXT,
    status TEXT NOT NULL DEFAULT 'candidate',
    failure_count INTEGER NOT NULL DEFAULT 0,
    session_count INTEGER NOT NULL DEFAULT 0,
    user_count INTEGER NOT NULL DEFAULT 0,
    first_seen_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    promoted_at INTEGER,
    resolved_at INTEGER,
    ignored_at INTEGER,
    regression INTEGER NOT NULL DEFAULT 0,
    regressed_at INTEGER,
    sample_failure_id INTEGER,
    updated_at INTEGER NOT NULL,
    UNIQUE (site_id, fingerprint)
);
CREATE INDEX clusters_status_seen ON clusters(status, last_seen_at);
CREATE INDEX clusters_site_status_seen ON clusters(site_id, status, last_seen_at);

CREATE TABLE cluster_sessions (
    cluster_id INTEGER NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    session_id TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    first_failure_id INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    PRIMARY KEY (cluster_id, session_id)
) WITHOUT ROWID;

CREATE TABLE cluster_users (
    cluster_id INTEGER NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    user_key TEXT NOT NULL,
    PRIMARY KEY (cluster_id, user_key)
) WITHOUT ROWID;

-- Top browsers, OSes, URLs and releases of a cluster.
CREATE TABLE cluster_facets (
    cluster_id INTEGER NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    facet TEXT NOT NULL,
    value TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (cluster_id, facet, value)
) WITHOUT ROWID;

-- Failures per UTC day, for sparklines.
CREATE TABLE cluster_days (
    cluster_id INTEGER NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    day INTEGER NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (cluster_id, day)
) WITHOUT ROWID;

-- Lifecycle history: promoted, resolved, ignored, reopened, regressed.
CREATE TABLE issue_events (
    id INTEGER PRIMARY KEY,
    cluster_id INTEGER NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    at INTEGER NOT NULL,
    action TEXT NOT NULL,
    actor TEXT
);
CREATE INDEX issue_events_cluster ON issue_events(cluster_id, at);

-- Replay timeline markers built by the replay job: failure, click, rage_click, navigation, input.
CREATE TABLE replay_markers (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    ts INTEGER NOT NULL,
    offset_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    label TEXT,
    failure_id INTEGER
);
CREATE INDEX replay_markers_session ON replay_markers(session_id, ts);

CREATE TABLE job_runs (
    id INTEGER PRIMARY KEY,
    job TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    status TEXT NOT NULL DEFAULT 'running',
    items INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    message TEXT
);
CREATE INDEX job_runs_job ON job_runs(job, started_at);

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_login_at INTEGER
);

CREATE TABLE auth_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
""",
    ),
    (
        2,
        "purge queue",
        """
-- Blob keys whose rows were already detached by purge, written in the same transaction that
-- nulls them; the blobs are deleted afterwards and the entries removed, so a purge killed at
-- any point is finished by the next run (no journal file, no dangling rows).
CREATE TABLE purge_queue (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0,
    queued_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Sessions that still hold replay data, by age: purge finds expired replays without walking
-- every session that already expired.
CREATE INDEX sessions_replay_live ON sessions(last_seen_at)
    WHERE replay_status NOT IN ('none', 'expired');
""",
    ),
    (
        3,
        "issue list and evidence indexes",
        """
-- Normalised frames of each cluster's sample (up to ~10 KB of JSON) live beside the cluster,
-- not in it: the issue list scans and sorts clusters rows, which must stay small.
-- clusters.frames is no longer written (readers fall back to it for old rows).
CREATE TABLE cluster_frames (
    cluster_id INTEGER PRIMARY KEY REFERENCES clusters(id) ON DELETE CASCADE,
    frames TEXT NOT NULL
);
INSERT INTO cluster_frames (cluster_id, frames)
    SELECT id, frames FROM clusters WHERE frames IS NOT NULL;
UPDATE clusters SET frames = NULL WHERE frames IS NOT NULL;

-- The issue list's other sort orders (sort=failures|sessions|first_seen) read LIMIT rows in
-- index order instead of sorting every issue (or every candidate).
CREATE INDEX clusters_status_failures ON clusters(status, failure_count);
CREATE INDEX clusters_status_sessions ON clusters(status, session_count);
CREATE INDEX clusters_status_first ON clusters(status, first_seen_at);

-- An issue's newest sessions (evidence page: affected sessions, shared last step) without
-- sorting all of a busy issue's sessions.
CREATE INDEX cluster_sessions_seen ON cluster_sessions(cluster_id, last_seen_at);

-- The issue list's text search (q on title/culprit) and its total, answered from the index
-- alone: no clusters rows are read until the page's ids are known.
CREATE INDEX clusters_search ON clusters(status, last_seen_at, title, culprit);
""",
    ),
    (
        4,
        "chunk segments",
        """
-- Chunks are stored many to a segment file (one per writer group and site): a row's events are
-- the zstd frame at blob_offset, blob_length bytes long. NULL for rows written before segments,
-- which own their whole blob.
ALTER TABLE chunks ADD COLUMN blob_offset INTEGER;
ALTER TABLE chunks ADD COLUMN blob_length INTEGER;

-- "Does any live row still point at this blob?": purge deletes a segment only after its last
-- row is detached, and the orphan sweep keeps referenced ones.
CREATE INDEX chunks_blob_key ON chunks(blob_key) WHERE blob_key IS NOT NULL;
""",
    ),
    (
        7,
        "grouping versions, aliases and merges",
        """
-- The grouping rules a cluster was created under (issues/fingerprint.py GROUPING_VERSION).
-- Clusters from before versions existed were made by version 1.
ALTER TABLE clusters ADD COLUMN grouping_version INTEGER NOT NULL DEFAULT 1;
-- A merged cluster: its failures moved to merged_into and its own fingerprint (and aliases)
-- lead there; merged_status is the status it had, restored by unmerge.
ALTER TABLE clusters ADD COLUMN merged_into INTEGER;
ALTER TABLE clusters ADD COLUMN merged_status TEXT;
CREATE INDEX clusters_merged_into ON clusters(merged_into) WHERE merged_into IS NOT NULL;
CREATE INDEX clusters_grouping_version ON clusters(grouping_version, status);

-- More fingerprints that lead to a cluster besides its own: the newer-version keys of an issue
-- created under older grouping rules (so new failures find it).
CREATE TABLE cluster_aliases (
    site_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    cluster_id INTEGER NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    grouping_version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (site_id, fingerprint)
) WITHOUT ROWID;
CREATE INDEX cluster_aliases_cluster ON cluster_aliases(cluster_id);

-- Exact code positions (deployed file, line, column) of engine errors naming a property, and
-- the cluster failing there: other property names at that position are the same bug.
CREATE TABLE cluster_positions (
    site_id TEXT NOT NULL,
    position TEXT NOT NULL,
    cluster_id INTEGER NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (site_id, position)
) WITHOUT ROWID;
CREATE INDEX cluster_positions_cluster ON cluster_positions(cluster_id);

-- What a history entry refers to (merged: the other issue's id).
ALTER TABLE issue_events ADD COLUMN detail TEXT;
""",
    ),
    (
        8,
        "alerts, their outbox and delivery log; API tokens",
        """
-- Who is told about what, and how. site_id NULL: every site. format: email for e-mail rules,
-- slack | discord | json for webhooks. secret signs webhook bodies (HMAC-SHA256); it has to be
-- kept in the clear to sign with, unlike keys and tokens, which are stored as digests.
-- events: comma-separated subset of promoted,regression,spike.
CREATE TABLE alert_rules (
    id INTEGER PRIMARY KEY,
    site_id TEXT REFERENCES sites(id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    format TEXT NOT NULL,
    secret TEXT,
    events TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- The outbox: one row per message to send. Promotions and regressions write theirs in the same
-- transaction as the status change; the deliver job adds spikes and digests. status: pending
-- (due_at says when) | sending (claimed until due_at, the lease) | sent | failed | digested
-- (carried by the digest row digest_id). dedupe_key is unique, so no event is queued twice, and
-- is what receivers see as the idempotency key (Message-ID, X-Retrospec-Delivery).
CREATE TABLE alert_outbox (
    id INTEGER PRIMARY KEY,
    rule_id INTEGER NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    cluster_id INTEGER REFERENCES clusters(id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    detail TEXT,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    due_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    digest_id INTEGER,
    last_error TEXT,
    sent_at INTEGER
);
CREATE INDEX alert_outbox_due ON alert_outbox(due_at) WHERE status IN ('pending', 'sending');
CREATE INDEX alert_outbox_rule ON alert_outbox(rule_id, created_at);
CREATE INDEX alert_outbox_cluster ON alert_outbox(cluster_id, event, created_at);
CREATE INDEX alert_outbox_digest ON alert_outbox(digest_id) WHERE digest_id IS NOT NULL;

-- Every delivery attempt and its outcome (sent | retry | failed), kept after the rule is gone.
CREATE TABLE alert_deliveries (
    id INTEGER PRIMARY KEY,
    outbox_id INTEGER,
    rule_id INTEGER NOT NULL,
    cluster_id INTEGER,
    event TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT,
    duration_ms INTEGER
);
CREATE INDEX alert_deliveries_at ON alert_deliveries(at);

-- Personal tokens for the JSON API: shown once, stored as SHA-256 digests. scope: read | write.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    scope TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    token_prefix TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at INTEGER
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens(name) WHERE revoked_at IS NULL;
""",
    ),
]


def _statements(script: str) -> list[str]:
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement in migration: {buffer[:80]!r}")
    return statements


def current_version(conn: sqlite3.Connection) -> int:
    """Highest applied migration number (0 on a fresh database)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def applied_versions(conn: sqlite3.Connection) -> set[int]:
    """The migration numbers recorded as applied."""
    current_version(conn)  # creates the table on a fresh database
    return {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Apply every pending migration, each in its own transaction; return the numbers applied.

    A migration is pending when its number is not recorded, not merely when it is above the
    highest one: numbers are reserved per change, so one may land after a higher one.
    """
    applied: list[int] = []
    for version, name, script in MIGRATIONS:
        with transaction(conn):
            # Re-read inside the write lock so two processes starting at once cannot both apply.
            if version in applied_versions(conn):
                continue
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, now_ms()),
            )
        applied.append(version)
    return applied


def latest_version() -> int:
    """The newest migration this code knows."""
    return MIGRATIONS[-1][0]


def prepare_database(path: Path, *, synchronous: str = "normal") -> list[int]:
    """Create the data directory and database if needed and bring the schema up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path, synchronous=synchronous)
    try:
        version = current_version(conn)
        if version > latest_version():
            raise RuntimeError(
                f"database schema {version} is newer than this RetroSpec ({latest_version()}); "
                "upgrade RetroSpec"
            )
        return migrate(conn)
    finally:
        conn.close()
