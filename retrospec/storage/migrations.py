"""Numbered, append-only schema migrations (never edit a shipped one; add the next number)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from retrospec.clock import now_ms
from retrospec.storage.db import connect, is_postgres, is_postgres_url, transaction

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
        5,
        "hardening: site quotas, replay assets, session event counts",
        """
-- What each site stored per UTC day (day = epoch ms // 86400000): ingest checks its quotas
-- against these counters and bumps them in the transaction that stores a batch.
CREATE TABLE site_usage (
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    day INTEGER NOT NULL,
    batches INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, day)
) WITHOUT ROWID;

-- Whether a replay may load the recorded page's remote assets (stylesheets' url(), fonts,
-- images) into the viewer's browser: 'blocked' (the default: a CSP keeps every request on this
-- server) or 'remote' (the viewer's browser fetches them from their hosts, as recorded).
ALTER TABLE sites ADD COLUMN replay_assets TEXT NOT NULL DEFAULT 'blocked';

-- rrweb events a session stored (its cap is max_session_events).
ALTER TABLE sessions ADD COLUMN events INTEGER NOT NULL DEFAULT 0;

-- The replay job takes dirty sessions site by site in turn (oldest first within a site), so
-- one site's backlog cannot starve another's replays; this reads them in that order.
CREATE INDEX sessions_replay_dirty_site ON sessions(site_id, last_seen_at)
    WHERE chunks > replay_chunks;

-- The demo site used to promote on a single failure; it follows the normal rule now.
UPDATE sites SET promote_after = NULL WHERE id = 'demo' AND promote_after = 1;
""",
    ),
    (
        6,
        "source maps, upload tokens, releases",
        """
-- Uploaded (or fetched) minified files and their source maps, per site and release. Blobs are
-- content-addressed (sha256) per site, so identical files of two releases share one blob; a
-- blob goes when no row points at its digest any more. name is the artifact name: "~/path"
-- (any origin) or a full URL without query.
CREATE TABLE sourcemap_files (
    id INTEGER PRIMARY KEY,
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    release TEXT NOT NULL,
    dist TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    debug_id TEXT,
    map_digest TEXT NOT NULL,
    map_bytes INTEGER NOT NULL,
    js_digest TEXT,
    js_bytes INTEGER,
    scopes_digest TEXT,
    sources INTEGER NOT NULL DEFAULT 0,
    sources_with_content INTEGER NOT NULL DEFAULT 0,
    origin TEXT NOT NULL DEFAULT 'upload',
    uploaded_at INTEGER NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0,
    UNIQUE (site_id, release, dist, name)
);
CREATE INDEX sourcemap_files_debug_id ON sourcemap_files(site_id, debug_id)
    WHERE debug_id IS NOT NULL;
CREATE INDEX sourcemap_files_map_digest ON sourcemap_files(site_id, map_digest);
CREATE INDEX sourcemap_files_js_digest ON sourcemap_files(site_id, js_digest)
    WHERE js_digest IS NOT NULL;
CREATE INDEX sourcemap_files_scopes_digest ON sourcemap_files(site_id, scopes_digest)
    WHERE scopes_digest IS NOT NULL;

-- (site, release) whose maps arrived after some of its failures: the cluster job re-symbolicates
-- those clusters' stored frames for display (grouping is not changed retroactively).
-- release '' means any release (maps matched by debug ID).
CREATE TABLE sourcemap_refresh (
    site_id TEXT NOT NULL,
    release TEXT NOT NULL,
    queued_at INTEGER NOT NULL,
    PRIMARY KEY (site_id, release)
) WITHOUT ROWID;

-- Per-site tokens for CI uploads of source maps; never the public ingest key. Stored hashed.
CREATE TABLE upload_tokens (
    id INTEGER PRIMARY KEY,
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    token_prefix TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    last_used_at INTEGER
);
CREATE INDEX upload_tokens_site ON upload_tokens(site_id);

ALTER TABLE sites ADD COLUMN fetch_sourcemaps INTEGER NOT NULL DEFAULT 0;

-- Releases per site in first-seen order (release strings are arbitrary, so "newer" means
-- "first seen later"); fed by the cluster job from sessions and failures.
CREATE TABLE releases (
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    release TEXT NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, release)
) WITHOUT ROWID;
CREATE INDEX releases_site_first ON releases(site_id, first_seen_at);

-- Sessions of one release (releases list, source map retention).
CREATE INDEX sessions_site_release ON sessions(site_id, release, started_at);

ALTER TABLE clusters ADD COLUMN first_release TEXT;
ALTER TABLE clusters ADD COLUMN last_release TEXT;
-- Set by "resolve in next release": failures from this release or older ones do not reopen.
ALTER TABLE clusters ADD COLUMN resolved_in_release TEXT;
ALTER TABLE issue_events ADD COLUMN release TEXT;
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
    (
        9,
        "sentry: project ids, DSN keys, item counts, error links",
        """
-- Sentry SDKs name a site by a DSN, http(s)://<public key>@<host>/<project id>, whose project
-- id must be a number. The DSN key is public by design (every page that loads the SDK carries
-- it, and Sentry shows it at any time), so it is kept as is and the sites page can always show
-- the DSN; ingest keys stay hashed.
ALTER TABLE sites ADD COLUMN project_id INTEGER;
ALTER TABLE sites ADD COLUMN dsn_key TEXT;
UPDATE sites SET project_id = (
    SELECT count(*) FROM sites o
    WHERE o.created_at < sites.created_at OR (o.created_at = sites.created_at AND o.id <= sites.id)
);
-- 128 random bits as 32 hex digits, Sentry's own key format (PostgreSQL: gen_random_uuid()).
UPDATE sites SET dsn_key = lower(hex(randomblob(16)));
CREATE UNIQUE INDEX sites_project_id ON sites(project_id);
CREATE UNIQUE INDEX sites_dsn_key ON sites(dsn_key);

-- Sentry envelope items RetroSpec accepts without storing them (session, client_report,
-- transaction, span, attachment, unknown types): counted per site, UTC day and item type.
CREATE TABLE sentry_item_counts (
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    day INTEGER NOT NULL,
    item_type TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, day, item_type)
) WITHOUT ROWID;

-- Error event ids a replay segment named (replay_event.error_ids) with the session the replay
-- is stored as: an error without a replay tag that arrives later joins that session. Rows are
-- only needed for minutes; writes delete those older than a day.
CREATE TABLE sentry_error_links (
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (site_id, event_id)
) WITHOUT ROWID;
CREATE INDEX sentry_error_links_age ON sentry_error_links(created_at);
""",
    ),
    (
        10,
        "replays: segment index of the artifact",
        """
-- The replay artifact's segments as compact JSON [[start_ts, end_ts, offset, length, events,
-- checkpoint], ...] (replay/artifact.py); NULL for an artifact written before segments, which
-- is one frame played as a whole.
ALTER TABLE sessions ADD COLUMN replay_segments TEXT;
""",
    ),
    (
        12,
        "replay clips of issues",
        """
-- One rendered clip per issue: the representative session's seconds before the failure, as
-- an MP4 and a poster PNG in the blob store (clips/...). status: ready | failed (reason says
-- why; not retried) | expired (the replay, and with it the clip, is past retention). Keys go
-- NULL when purge detaches them, like sessions.replay_key.
CREATE TABLE issue_clips (
    cluster_id INTEGER PRIMARY KEY REFERENCES clusters(id) ON DELETE CASCADE,
    session_id TEXT NOT NULL,
    failure_id INTEGER,
    status TEXT NOT NULL,
    reason TEXT,
    video_key TEXT,
    poster_key TEXT,
    video_bytes INTEGER NOT NULL DEFAULT 0,
    poster_bytes INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER,
    created_at INTEGER NOT NULL,
    expired_at INTEGER
);
CREATE INDEX issue_clips_session ON issue_clips(session_id);
CREATE INDEX issue_clips_video_key ON issue_clips(video_key);
CREATE INDEX issue_clips_poster_key ON issue_clips(poster_key);
""",
    ),
    (
        13,
        "failures_cluster leaves out unclustered failures",
        """
-- With unclustered rows in failures_cluster, `cluster_id IS NULL` matched it as an equality:
-- the cluster job's batch read then sorted the whole backlog on every batch (quadratic in
-- the backlog) instead of walking failures_unclustered. `cluster_id = ?` implies NOT NULL,
-- so every per-issue query still uses this index.
DROP INDEX failures_cluster;
CREATE INDEX failures_cluster ON failures(cluster_id, received_at) WHERE cluster_id IS NOT NULL;
""",
    ),
    (
        14,
        "drop clusters_status_seen, a prefix of clusters_search",
        """
-- clusters_search (status, last_seen_at, title, culprit) answers every query this one did:
-- one index fewer to write for each new issue and each counter update (issue 19).
DROP INDEX clusters_status_seen;
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
    ddl = (
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    if is_postgres(conn):
        from retrospec.storage.postgres import translate_ddl

        # Read-only connections (/healthz, the CLI) may not even run CREATE ... IF NOT EXISTS.
        if conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:
            conn.execute(translate_ddl(ddl))
    else:
        conn.execute(ddl)
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
    if is_postgres(conn):
        return _migrate_postgres(conn)
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


def _migrate_postgres(conn: sqlite3.Connection) -> list[int]:
    """The same migrations on PostgreSQL: each statement translated (storage/postgres.py)."""
    from retrospec.storage.postgres import MIGRATION_LOCK, NOCASE_COLLATION, translate_ddl

    # A session lock around the whole run: several servers starting on one database at once
    # wait for the first one instead of racing to create the same tables.
    conn.execute(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
    try:
        conn.execute(NOCASE_COLLATION)
        applied: list[int] = []
        for version, name, script in MIGRATIONS:
            if version in applied_versions(conn):
                continue
            with transaction(conn):
                for statement in _statements(script):
                    translated = translate_ddl(statement)
                    if translated:
                        conn.execute(translated)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, now_ms()),
                )
            applied.append(version)
        return applied
    finally:
        conn.execute(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")


def latest_version() -> int:
    """The newest migration this code knows."""
    return MIGRATIONS[-1][0]


def make_private_dirs(path: Path) -> None:
    """Create path and any missing parents as 0700 (only the directories created here)."""
    missing = []
    at = path
    while not at.exists() and at != at.parent:
        missing.append(at)
        at = at.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)


def private_database_files(path: Path) -> None:
    """The database file exists as 0600 before SQLite opens it (its -wal and -shm files copy
    the database's mode), and files an older version left readable are tightened."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for suffix in ("", "-wal", "-shm", "-journal"):
        target = path.with_name(path.name + suffix)
        try:
            if target.stat().st_mode & 0o077:
                target.chmod(0o600)
        except OSError:  # missing, or not ours to change
            continue


def prepare_database(path: Path | str, *, synchronous: str = "normal") -> list[int]:
    """Create the data directory (0700) and database (0600) if needed; migrate the schema.

    A data directory that already exists is tightened to 0700 as well: it holds recorded
    sessions and the instance secret, for the server's user only. A PostgreSQL URL is
    migrated in place (the database itself must exist).
    """
    if is_postgres_url(path):
        return _check_and_migrate(connect(path))
    path = Path(path)
    make_private_dirs(path.parent)
    if path.parent.stat().st_mode & 0o077:
        with contextlib.suppress(OSError):  # not ours to change (another user's CLI run)
            path.parent.chmod(0o700)
    private_database_files(path)
    return _check_and_migrate(connect(path, synchronous=synchronous))


def _check_and_migrate(conn: sqlite3.Connection) -> list[int]:
    postgres = is_postgres(conn)
    try:
        if postgres:  # before schema_migrations is created: see _migrate_postgres
            from retrospec.storage.postgres import MIGRATION_LOCK

            conn.execute(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
        version = current_version(conn)
        if version > latest_version():
            raise RuntimeError(
                f"database schema {version} is newer than this RetroSpec ({latest_version()}); "
                "upgrade RetroSpec"
            )
        return migrate(conn)
    finally:
        conn.close()
