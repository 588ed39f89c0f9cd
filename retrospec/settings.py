"""Settings: defaults < retrospec.toml < RETROSPEC_* environment < CLI flags."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrospec.errors import ConfigError


def _f(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob RetroSpec has; each one is documented in retrospec.toml.example."""

    data_dir: str = _f("./retrospec-data", "Directory for the SQLite database, secret and blobs.")
    blob_url: str = _f("", "fsspec URL for blobs (chunks, replays); empty means <data_dir>/blobs.")
    database_url: str = _f(
        "",
        "PostgreSQL URL (postgresql://user:pass@host:5432/db) for metadata; empty means the "
        "SQLite file in data_dir.",
    )
    s3_endpoint_url: str = _f(
        "", "Endpoint of an S3-compatible store for an s3:// blob_url; empty means AWS."
    )
    s3_region: str = _f("", "Region of the s3:// blob_url's bucket; empty means the default.")
    s3_access_key_id: str = _f(
        "", "Access key for the s3:// blob_url; empty means the usual AWS credential chain."
    )
    s3_secret_access_key: str = _f("", "Secret key belonging to s3_access_key_id.")
    host: str = _f("127.0.0.1", "Address `retrospec serve` listens on.")
    port: int = _f(8080, "Port `retrospec serve` listens on.")
    public_url: str = _f("", "Base URL users reach the server at; empty means http://host:port.")
    secret: str = _f("", "Signing secret; empty means generated once into <data_dir>/secret.")
    jobs: bool = _f(True, "Run the replay, cluster and purge jobs inside `retrospec serve`.")
    demo: str = _f(
        "auto",
        "Serve /demo and its demo site: auto (only while listening on loopback), true or false.",
    )
    promote_after: int = _f(
        2, "Similar failures a cluster needs to become an issue (from at least 2 sessions)."
    )
    retention_days: float = _f(7, "Days to keep heavy artifacts (chunks, replays, payloads).")
    grouping_transition_days: float = _f(
        90,
        "Days after a grouping-rules upgrade during which new failures are also matched to "
        "issues by the previous rules' keys.",
    )
    replay_interval_seconds: float = _f(5.0, "How often the replay job looks for new chunks.")
    cluster_interval_seconds: float = _f(1.0, "How often the cluster job looks for new failures.")
    purge_interval_hours: float = _f(24.0, "How often the scheduled purge runs.")
    job_batch_size: int = _f(200, "Items a job handles per transaction (bounded batches).")
    cluster_batch_max: int = _f(
        5000,
        "Failures the cluster job claims at once while a backlog lasts (it starts at "
        "job_batch_size and grows); writes still go in short transactions.",
    )
    hot_cluster_after: int = _f(
        10_000,
        "Failures an issue counts before it is hot; from then on only every "
        "hot_cluster_keep_every-th failure keeps its payload (all are counted); 0 disables.",
    )
    hot_cluster_keep_every: int = _f(
        100, "In a hot issue, keep the payload (stack, context) of every N-th failure."
    )
    max_body_bytes: int = _f(1_048_576, "Largest ingest body accepted as sent (compressed).")
    max_decompressed_bytes: int = _f(16_777_216, "Largest ingest body after gzip decoding.")
    rate_limit_per_second: float = _f(500.0, "Ingest batches per second per site; 0 disables.")
    rate_limit_burst: int = _f(1000, "Ingest batches a site may send at once above its rate.")
    min_free_disk_mb: int = _f(512, "Below this free disk, replay data is refused with 507.")
    disk_reserve_mb: int = _f(
        64, "Below this free disk, every batch (failures too) is refused with 507."
    )
    max_failures_per_batch: int = _f(200, "Failures one ingest batch may carry.")
    max_events_per_batch: int = _f(10_000, "rrweb events one ingest batch may carry.")
    max_session_mb: int = _f(48, "Raw replay data one session may store; more is refused (413).")
    max_session_events: int = _f(500_000, "rrweb events one session may store; more is refused.")
    client_rate_limit_per_second: float = _f(
        20.0, "Ingest batches per second per client address (beneath the site's); 0 disables."
    )
    client_rate_limit_burst: int = _f(200, "Ingest batches one client address may send at once.")
    session_rate_limit_per_second: float = _f(
        5.0, "Ingest batches per second per browser session; 0 disables."
    )
    session_rate_limit_burst: int = _f(100, "Ingest batches one session may send at once.")
    client_address_header: str = _f(
        "", "Header your reverse proxy puts the client address in (e.g. X-Forwarded-For)."
    )
    quota_batches_per_day: int = _f(1_000_000, "Ingest batches per site per UTC day; 0: no quota.")
    quota_failures_per_day: int = _f(100_000, "Failures per site per UTC day; 0: no quota.")
    quota_mb_per_day: int = _f(2048, "Stored MB (events and failures) per site per UTC day.")
    keep_query_params: str = _f(
        "", "Query parameters kept in stored URLs (comma-separated); all others are stripped."
    )
    health_token: str = _f("", "Bearer token that shows /healthz details; empty: never shown.")
    sqlite_synchronous: str = _f(
        "normal",
        "SQLite synchronous mode: 'normal' survives a process crash, 'full' also power loss.",
    )
    sourcemap_max_upload_mb: int = _f(
        100, "Largest source map upload (all files together, CLI or HTTP), in MiB."
    )
    sourcemap_cache_mb: int = _f(
        256, "Memory for parsed source maps in the compute process (estimated), in MiB."
    )
    sourcemap_fetch_timeout_seconds: float = _f(
        5.0, "Fetch mode: time limit for fetching one bundle or map from a site's origin."
    )
    sourcemap_fetch_max_mb: int = _f(
        16, "Fetch mode: largest bundle or map fetched from a site's origin, in MiB."
    )
    login_session_hours: float = _f(336.0, "How long a dashboard login lasts.")
    cookie_secure: bool = _f(False, "Mark dashboard cookies Secure (set when served over HTTPS).")
    log_level: str = _f("info", "Log level: debug, info, warning or error.")
    smtp_url: str = _f(
        "",
        "SMTP server for alert e-mails: smtp://user:pass@host:587 (STARTTLS when the server "
        "offers it) or smtps://user:pass@host:465 (TLS from the start); empty: no e-mail.",
    )
    smtp_from: str = _f("", "Sender of alert e-mails; empty means retrospec@<public_url's host>.")
    alert_interval_seconds: float = _f(2.0, "How often the deliver job sends queued alerts.")
    alert_delay_seconds: float = _f(
        10.0,
        "How long a new alert waits before it is sent, so its replay (the steps before the "
        "failure) is built and a burst of alerts becomes one digest.",
    )
    alert_retry_seconds: float = _f(
        30.0, "Wait before retrying a failed alert delivery; doubles per attempt up to an hour."
    )
    alert_max_attempts: int = _f(12, "Delivery attempts before an alert is given up as failed.")
    alert_timeout_seconds: float = _f(10.0, "Timeout of one SMTP or webhook delivery attempt.")
    alert_digest_threshold: int = _f(
        5, "More alerts than this for one rule within alert_digest_minutes become one digest."
    )
    alert_digest_minutes: float = _f(5.0, "The digest window (see alert_digest_threshold).")
    spike_threshold: int = _f(
        100, "Failures of one open issue within spike_window_minutes that make a spike alert."
    )
    spike_window_minutes: float = _f(
        60.0, "The spike window; at most one spike alert per issue and rule per window."
    )
    chromium: str = _f(
        "",
        "Chromium executable for replay clips; empty: /usr/bin/chromium, else chromium on PATH.",
    )
    clips: bool = _f(
        True, "Render a replay clip of each promoted issue (needs pip install 'retrospec[video]')."
    )
    clip_interval_seconds: float = _f(30.0, "How often the clips job looks for new issues.")
    clip_timeout_seconds: float = _f(
        180.0, "Wall-clock limit of one clip render; a slower one fails with that reason."
    )
    clip_memory_mb: int = _f(
        1536, "Memory cap of each process of a clip render (browser and encoder included)."
    )

    @property
    def data_path(self) -> Path:
        """The data directory as an absolute path."""
        return Path(self.data_dir).expanduser().resolve()

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.data_path / "retrospec.sqlite3"

    @property
    def database(self) -> str:
        """What storage.db opens: the PostgreSQL URL, else the SQLite file's path."""
        return self.database_url or str(self.db_path)

    @property
    def uses_postgres(self) -> bool:
        """Whether metadata lives in PostgreSQL (several processes may share it)."""
        return bool(self.database_url)

    @property
    def blob_options(self) -> dict[str, Any]:
        """fsspec storage options for the blob store (S3 endpoint, region, credentials)."""
        if not self.effective_blob_url.startswith(("s3://", "s3a://")):
            return {}
        # Listings are not cached (several processes write one bucket) and a lost endpoint
        # fails within seconds instead of retrying for minutes.
        options: dict[str, Any] = {
            "use_listings_cache": False,
            "config_kwargs": {
                "connect_timeout": 5,
                "read_timeout": 30,
                "retries": {"max_attempts": 3},
            },
        }
        if self.s3_endpoint_url:
            options["endpoint_url"] = self.s3_endpoint_url
        if self.s3_region:
            options["client_kwargs"] = {"region_name": self.s3_region}
        if self.s3_access_key_id:
            options["key"] = self.s3_access_key_id
            options["secret"] = self.s3_secret_access_key
        return options

    @property
    def effective_blob_url(self) -> str:
        """The blob store root, defaulting to a directory under the data dir."""
        return self.blob_url or str(self.data_path / "blobs")

    @property
    def listens_on_loopback(self) -> bool:
        """Whether `serve` accepts connections from this machine only."""
        return is_loopback(self.host)

    @property
    def demo_enabled(self) -> bool:
        """Whether /demo and its public-by-design key are served."""
        return self.demo == "true" or (self.demo == "auto" and self.listens_on_loopback)

    @property
    def kept_query_params(self) -> frozenset[str]:
        """Parameter names keep_query_params lists."""
        return frozenset(p.strip() for p in self.keep_query_params.split(",") if p.strip())

    @property
    def base_url(self) -> str:
        """Where users reach the dashboard, for links printed by the CLI."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"


def redact_url(url: str) -> str:
    """A URL without the password in its user info (for messages and `retrospec settings`)."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def is_loopback(host: str) -> bool:
    """Whether a listen address is reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Settings)}
ENV_PREFIX = "RETROSPEC_"
_CHOICES = {
    "sqlite_synchronous": ("normal", "full"),
    "log_level": ("debug", "info", "warning", "error"),
    "demo": ("auto", "true", "false"),
}
# Settings that used to be booleans and now take a word: true/false keep working.
_BOOL_WORDS = {"demo"}


@dataclass(frozen=True, slots=True)
class LoadedSettings:
    """Effective settings plus where each value came from."""

    settings: Settings
    sources: Mapping[str, str]
    config_path: Path | None


def field_doc(name: str) -> str:
    """The documentation line of one setting."""
    return str(FIELDS[name].metadata["doc"])


def _coerce(name: str, value: Any, origin: str) -> Any:
    kind = FIELDS[name].type
    if name in _BOOL_WORDS:
        value = _bool_word(value)
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if not isinstance(value, str):
            raise ValueError(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{origin}: {name} must be a {kind}, got {value!r}") from None
    choices = _CHOICES.get(name)
    if choices and value not in choices:
        raise ConfigError(f"{origin}: {name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _bool_word(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return "true"
    if text in ("0", "false", "no", "off"):
        return "false"
    return text


def find_config(explicit: str | Path | None, env: Mapping[str, str]) -> Path | None:
    """Config file: --config, else RETROSPEC_CONFIG, else ./retrospec.toml if present."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    if env.get("RETROSPEC_CONFIG"):
        path = Path(env["RETROSPEC_CONFIG"])
        if not path.is_file():
            raise ConfigError(f"RETROSPEC_CONFIG points to {path}, which does not exist")
        return path
    default = Path("retrospec.toml")
    return default if default.is_file() else None


def load_settings(
    config: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> LoadedSettings:
    """Merge every layer into one frozen Settings, recording the source of each value."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {name: "default" for name in FIELDS}
    path = find_config(config, env)
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        for key, value in data.items():
            if key not in FIELDS:
                raise ConfigError(f"{path}: unknown setting {key!r}")
            values[key] = _coerce(key, value, str(path))
            sources[key] = str(path)
    for name in FIELDS:
        env_name = ENV_PREFIX + name.upper()
        if env_name in env:
            values[name] = _coerce(name, env[env_name], env_name)
            sources[name] = f"env {env_name}"
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name not in FIELDS:
            raise ConfigError(f"unknown setting {name!r}")
        values[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
        sources[name] = f"flag --{name.replace('_', '-')}"
    settings = Settings(**values)
    _validate(settings)
    return LoadedSettings(settings=settings, sources=sources, config_path=path)


def _validate(s: Settings) -> None:
    if not 0 < s.port < 65536:
        raise ConfigError(f"port must be between 1 and 65535, got {s.port}")
    if s.promote_after < 1:
        raise ConfigError("promote_after must be at least 1")
    if s.retention_days <= 0:
        raise ConfigError("retention_days must be positive")
    if s.grouping_transition_days < 0:
        raise ConfigError("grouping_transition_days must not be negative")
    for name in (
        "max_body_bytes",
        "max_decompressed_bytes",
        "job_batch_size",
        "cluster_batch_max",
        "hot_cluster_keep_every",
        "sourcemap_max_upload_mb",
        "sourcemap_cache_mb",
        "sourcemap_fetch_max_mb",
        "max_events_per_batch",
        "max_session_mb",
        "max_session_events",
    ):
        if getattr(s, name) < 1:
            raise ConfigError(f"{name} must be positive")
    for name in (
        "min_free_disk_mb",
        "hot_cluster_after",
        "disk_reserve_mb",
        "quota_batches_per_day",
        "quota_failures_per_day",
        "quota_mb_per_day",
        "rate_limit_per_second",
        "client_rate_limit_per_second",
        "session_rate_limit_per_second",
    ):
        if getattr(s, name) < 0:
            raise ConfigError(f"{name} must not be negative")

    for name in (
        "replay_interval_seconds",
        "cluster_interval_seconds",
        "purge_interval_hours",
        "login_session_hours",
        "alert_interval_seconds",
        "alert_retry_seconds",
        "alert_timeout_seconds",
        "alert_digest_minutes",
        "spike_window_minutes",
        "sourcemap_fetch_timeout_seconds",
        "clip_interval_seconds",
        "clip_timeout_seconds",
        "clip_memory_mb",
    ):
        if getattr(s, name) <= 0:
            raise ConfigError(f"{name} must be positive")
    for name in ("alert_max_attempts", "alert_digest_threshold", "spike_threshold"):
        if getattr(s, name) < 1:
            raise ConfigError(f"{name} must be at least 1")
    if s.alert_delay_seconds < 0:
        raise ConfigError("alert_delay_seconds must not be negative")
    if s.database_url and not s.database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "database_url must be empty (SQLite) or start with postgresql://, "
            "e.g. postgresql://retrospec:secret@db:5432/retrospec"
        )
    if s.s3_access_key_id and not s.s3_secret_access_key:
        raise ConfigError("s3_secret_access_key must be set with s3_access_key_id")
    if s.smtp_url and not s.smtp_url.startswith(("smtp://", "smtps://")):
        raise ConfigError("smtp_url must start with smtp:// or smtps://, e.g. smtp://host:587")


def parse_duration(text: str) -> float:
    """Parse '7d', '36h', '90m', '45s' or a bare number of days into seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    raw = text.strip().lower()
    try:
        if raw and raw[-1] in units:
            amount = float(raw[:-1])
            seconds = amount * units[raw[-1]]
        else:
            seconds = float(raw) * 86400
    except ValueError:
        raise ConfigError(f"cannot read duration {text!r}; use e.g. 7d, 36h, 90m") from None
    if seconds < 0:
        raise ConfigError(f"duration {text!r} must not be negative")
    return seconds
