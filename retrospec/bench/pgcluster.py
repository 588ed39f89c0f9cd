"""A throwaway PostgreSQL server for the benchmarks: Debian's binaries, a temp dir, loopback.

PostgreSQL refuses to run as root, so as root the cluster is made and run as the `postgres`
user (Debian's package creates it) in a temporary directory that user owns. Durability matches
what the SQLite rows run with (`sqlite_synchronous = normal` in WAL mode): a COMMIT has reached
the operating system before the 202 (synchronous_commit stays on), not the disk (fsync off).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from retrospec.bench.runner import Unavailable, free_port, tree_cpu_seconds

PG_USER = "postgres"


def pg_bindir() -> Path | None:
    """Directory of PostgreSQL's server binaries (Debian's newest version first), or None."""
    explicit = os.environ.get("RETROSPEC_PG_BINDIR")
    if explicit:
        return Path(explicit)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def as_owner(argv: list[str], owner: str | None) -> list[str]:
    """argv run as `owner` (PostgreSQL refuses root), or as is."""
    return ["runuser", "-u", owner, "--", *argv] if owner else argv


@dataclass
class PgCluster:
    """initdb + pg_ctl in a temp directory on a loopback port, password auth over TCP."""

    bindir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="retrospec-pg-")))
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    owner: str | None = None

    def start(self) -> None:
        """initdb and start (a few seconds); raise Unavailable when that cannot work here."""
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(PG_USER)
            except KeyError:
                raise Unavailable(
                    f"running as root needs the {PG_USER!r} user (apt-get install postgresql)"
                ) from None
            self.owner = PG_USER
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.root.chmod(0o700)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.owner:
            pw = pwd.getpwnam(self.owner)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", PG_USER, "--auth-local=trust",
            "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
            "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200 "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=on"
        )
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    def _run(self, binary: str, *args: str) -> None:
        argv = as_owner([str(self.bindir / binary), *args], self.owner)
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{binary} failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")

    def stop(self) -> None:
        """Stop the server (immediate) and remove its directory."""
        argv = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
        subprocess.run(as_owner(argv, self.owner), capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """A connection URL for database."""
        return f"postgresql://{PG_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A fresh database with C collation (as README advises); returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            # name comes from the benchmark's own table of rows, never from input.
            conn.execute(f"CREATE DATABASE {name} LOCALE 'C.UTF-8' TEMPLATE template0".encode())
        return self.url(name)

    def cpu_seconds(self) -> float:
        """CPU seconds of the postmaster, its live backends and those already gone."""
        pid_line = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
        try:
            return tree_cpu_seconds(psutil.Process(int(pid_line)))
        except psutil.NoSuchProcess:
            return 0.0


def start_cluster() -> PgCluster:
    """A running throwaway cluster, or Unavailable naming what is missing."""
    bindir = pg_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        raise Unavailable(
            "PostgreSQL server binaries not found: apt-get install postgresql, set "
            "RETROSPEC_PG_BINDIR, or pass --database-url"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise Unavailable("needs psycopg: pip install 'retrospec[postgres]'") from None
    cluster = PgCluster(bindir)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster
