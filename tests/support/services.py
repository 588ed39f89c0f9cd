"""Real PostgreSQL and S3-compatible servers for tests: a throwaway cluster and a moto server.

PostgreSQL refuses to run as root, so as root the cluster is made and run as the `postgres`
user (Debian's package creates it) in a temporary directory that user owns.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrospec.bench.pgcluster import as_owner
from tests.support.servers import free_port

PG_USER = "postgres"
PG_PASSWORD = "retrospec-test-pw"
TEMPLATE_DB = "retrospec_template"


@dataclass
class PgCluster:
    """A PostgreSQL server in a temp directory on a loopback port, password auth over TCP."""

    bindir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="retrospec-pg-")))
    port: int = field(default_factory=free_port)
    owner: str | None = None
    _names: Any = field(default_factory=lambda: itertools.count(1))

    def start(self) -> None:
        """initdb and start; the template database is made and migrated by the caller."""
        if os.geteuid() == 0:
            self.owner = PG_USER
            pw = pwd.getpwnam(PG_USER)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.root.chmod(0o700)
        pwfile = self.root / "pwfile"
        pwfile.write_text(PG_PASSWORD + "\n")
        if self.owner:
            pw = pwd.getpwnam(self.owner)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        data = self.root / "data"
        subprocess.run(
            as_owner(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    PG_USER,
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ],
                self.owner,
            ),
            check=True,
            capture_output=True,
        )
        # Durability off: a test cluster, thrown away at the end.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        subprocess.run(
            as_owner(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-l",
                    str(self.root / "server.log"),
                    "-w",
                    "start",
                ],
                self.owner,
            ),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        """Stop the server (fast) and remove its directory."""
        subprocess.run(
            as_owner(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.root / "data"),
                    "-m",
                    "immediate",
                    "stop",
                ],
                self.owner,
            ),
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", *, password: str = PG_PASSWORD) -> str:
        """A connection URL for database."""
        return f"postgresql://{PG_USER}:{password}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement as the superuser, outside a transaction."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.encode())

    def new_database(self, template: str | None = TEMPLATE_DB) -> str:
        """A fresh database (a copy of the migrated template); returns its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        clause = f" TEMPLATE {template}" if template else ""
        self.admin(f"CREATE DATABASE {name}{clause}")
        return self.url(name)


class S3Server:
    """moto's S3 on a loopback port (a real HTTP server, in a thread of the test process)."""

    access_key = "retrospec-test"
    secret_key = "retrospec-test-secret"
    region = "us-east-1"

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def endpoint(self) -> str:
        """The endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start serving and make the shared test bucket."""
        self._server.start()
        self.client().create_bucket(Bucket="retrospec-test")

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()

    def client(self) -> Any:
        """A boto3 S3 client for assertions and setup."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def new_prefix(self) -> str:
        """A fresh blob_url in the test bucket."""
        return f"s3://retrospec-test/{uuid.uuid4().hex[:12]}"

    def settings_env(self) -> dict[str, str]:
        """The S3 settings (names as in Settings) that reach this server."""
        return {
            "s3_endpoint_url": self.endpoint,
            "s3_region": self.region,
            "s3_access_key_id": self.access_key,
            "s3_secret_access_key": self.secret_key,
        }


def read_only_bucket(s3: S3Server) -> str:
    """A new bucket on s3 whose policy denies every PutObject (reads and lists still work)."""
    import json

    name = f"read-only-{uuid.uuid4().hex[:10]}"
    client = s3.client()
    client.create_bucket(Bucket=name)
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{name}/*",
            }
        ],
    }
    client.put_bucket_policy(Bucket=name, Policy=json.dumps(deny))
    return name
